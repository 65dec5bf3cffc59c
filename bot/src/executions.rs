//! Following executions on their daemons, for storage and for streams.
//!
//! [`follow`] reads an execution's numbered items from its daemon (`exec.follow` over the
//! link) from any point and, when the link drops or the reader falls behind, waits for the
//! daemon and goes on after the last item it has, so nothing is lost or repeated.
//! [`Recorders`] run one task per execution the bot started: it follows the execution
//! and writes each batch of items to SQLite, independently of any HTTP client, so
//! `GET /api/executions/{id}` has the whole result even when the client that started it
//! went away. At the end it stores the daemon's own summary. After a restart, the bot
//! resumes recording every execution it has not seen end ([`Recorders::resume`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::event::now_ms;
use common::ids::DaemonId;
use common::ipc::{Command, ErrorCode};
use common::workspace::{
    ExecError, ExecFollowArgs, ExecInfo, ExecItem, ExecRef, ExecUpdate, exec_code,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::AppState;

/// How long a recorder waits for an offline daemon before it gives the execution up
/// (longer than the longest timeout an execution may have).
pub const RECORD_PATIENCE: Duration = Duration::from_secs(25 * 60 * 60);

/// Why following stopped before the last item.
#[derive(Debug)]
pub enum Lost {
    /// The daemon stayed offline for longer than allowed.
    Offline,
    /// The daemon knows no such execution.
    NotFound(String),
    /// Whoever took the items went away.
    Closed,
}

/// The last item of a finished execution, rebuilt from its summary.
pub fn last_item(info: &ExecInfo) -> Option<ExecItem> {
    if !info.status.is_final() {
        return None;
    }
    let update = match (&info.error, info.exit_code, &info.result) {
        (_, Some(exit_code), Some(result)) => ExecUpdate::Complete {
            exit_code,
            result: result.clone(),
        },
        (Some(e), _, _) => ExecUpdate::Error {
            code: e.code.clone(),
            message: e.message.clone(),
        },
        _ => return None,
    };
    Some(ExecItem {
        n: info.items,
        ts_ms: info.finished_ms.unwrap_or(info.created_ms),
        update,
    })
}

/// Follows execution `id` on `daemon` after item `after`, sending batches of items to
/// `out` until the last one; returns the number of the last. Waits at most `patience` for
/// an offline daemon at a time.
pub async fn follow(
    state: &AppState,
    daemon: &DaemonId,
    id: &str,
    mut after: u64,
    patience: Duration,
    out: &mpsc::Sender<Vec<ExecItem>>,
) -> Result<u64, Lost> {
    let mut offline_since: Option<Instant> = None;
    loop {
        // Linked here or to another replica (whose stream comes back through it).
        if !crate::replica::online_somewhere(state, daemon).await {
            let since = *offline_since.get_or_insert_with(Instant::now);
            if since.elapsed() > patience {
                return Err(Lost::Offline);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = out.closed() => return Err(Lost::Closed),
            }
            continue;
        }
        offline_since = None;
        let cmd = Command::ExecFollow(ExecFollowArgs {
            execution_id: id.to_owned(),
            after,
        });
        let Ok(mut stream) = state.hub.stream(daemon, cmd).await else {
            continue;
        };
        loop {
            let first = tokio::select! {
                v = stream.items.recv() => v,
                () = out.closed() => return Err(Lost::Closed),
            };
            let Some(first) = first else { break };
            let mut batch: Vec<ExecItem> = Vec::new();
            let mut push = |v: serde_json::Value| match serde_json::from_value::<ExecItem>(v) {
                Ok(item) if item.n > after => batch.push(item),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "bad execution item from a daemon"),
            };
            push(first);
            while let Ok(v) = stream.items.try_recv() {
                push(v);
            }
            let Some(last) = batch.last().map(|i| i.n) else {
                continue;
            };
            after = last;
            let done = batch.iter().any(|i| i.update.is_final());
            if out.send(batch).await.is_err() {
                return Err(Lost::Closed);
            }
            if done {
                return Ok(after);
            }
        }
        match stream.reply.await {
            Ok(Ok(v)) => {
                let info: Option<ExecInfo> = serde_json::from_value(v).ok();
                if let Some(item) = info.as_ref().and_then(last_item).filter(|i| i.n > after) {
                    let n = item.n;
                    if out.send(vec![item]).await.is_err() {
                        return Err(Lost::Closed);
                    }
                    return Ok(n);
                }
                if info.is_some_and(|i| i.status.is_final()) {
                    return Ok(after);
                }
            }
            Ok(Err(e)) if e.code == ErrorCode::NotFound => return Err(Lost::NotFound(e.message)),
            // The link dropped, or this reader fell behind: go on from `after`.
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// See the module docs.
#[derive(Default)]
pub struct Recorders {
    tasks: Mutex<JoinSet<()>>,
    active: Arc<Mutex<HashSet<String>>>,
}

impl Recorders {
    /// Records execution `id` of `daemon` from item `after` on, unless a recorder already
    /// does.
    pub fn spawn(&self, state: Arc<AppState>, id: String, daemon: DaemonId, after: u64) {
        if !self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone())
        {
            return;
        }
        let active = self.active.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            record(&state, &id, &daemon, after).await;
            active.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
    }

    /// Resumes recording every execution the store has not seen end (after a restart).
    pub async fn resume(&self, state: &Arc<AppState>) {
        match state.db.unfinished_executions().await {
            Ok(rows) => {
                for r in rows {
                    info!(execution = %r.id, daemon = %r.daemon_id, "resuming an execution's record");
                    self.spawn(state.clone(), r.id, r.daemon_id, r.items);
                }
            }
            Err(e) => warn!(error = %e, "cannot list unfinished executions"),
        }
    }
}

async fn record(state: &AppState, id: &str, daemon: &DaemonId, after: u64) {
    let (tx, mut rx) = mpsc::channel::<Vec<ExecItem>>(64);
    let store = async {
        while let Some(batch) = rx.recv().await {
            if let Err(e) = state.db.apply_exec_items(id, &batch).await {
                warn!(execution = %id, error = %e, "cannot store execution items");
            }
        }
    };
    let (followed, ()) = tokio::join!(
        async move { follow(state, daemon, id, after, RECORD_PATIENCE, &tx).await },
        store
    );
    match followed {
        Ok(_) => {
            // Keep exactly the daemon's own account of it.
            let cmd = Command::ExecGet(ExecRef {
                execution_id: id.to_owned(),
            });
            if let Ok(v) = state
                .hub
                .command(daemon, cmd, Duration::from_secs(30))
                .await
                && let Ok(info) = serde_json::from_value::<ExecInfo>(v)
                && info.status.is_final()
                && let Err(e) = state.db.replace_execution(&info).await
            {
                warn!(execution = %id, error = %e, "cannot store the execution's summary");
            }
        }
        Err(lost) => {
            let message = match lost {
                Lost::NotFound(m) => format!("the daemon has no record of this execution: {m}"),
                Lost::Offline => "the daemon did not come back to finish this execution".to_owned(),
                Lost::Closed => return,
            };
            let err = ExecError {
                code: exec_code::DAEMON_OFFLINE.to_owned(),
                message,
            };
            if let Err(e) = state.db.fail_execution(id, &err, now_ms()).await {
                warn!(execution = %id, error = %e, "cannot close the execution");
            }
        }
    }
}
