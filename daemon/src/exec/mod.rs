//! One-shot executions (OCC): a fresh claude run per request in a workspace or directory,
//! with restricted tools and a timeout, capped by a worker pool with a FIFO queue.
//!
//! [`Executions`] is the pool. At most `workers` run at once; more wait in order up to
//! `workers_queue`, each told its place (`queued`, position N) whenever it changes; past
//! that a request is refused at once (`WORKERS_BUSY`). When a run ends, the oldest waiting
//! one starts. Cancelling a waiting execution takes it out of the queue; cancelling a
//! running one kills its child and tools. Every execution has an [`ExecLog`] that any
//! number of followers read from any point, so a client that lost its stream, or the bot
//! after a reconnect, picks up where it stopped. Summaries are written to
//! `<state_dir>/executions/<id>.json` (0600) when accepted and when finished, so
//! `exec.get` still answers after a daemon restart (an execution that was running then is
//! reported failed).
//!
//! - `log`: the items and summary of one execution.
//! - `run`: one run of claude, from spawn to its last item.

mod log;
mod run;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::event::now_ms;
use common::ipc::{ErrorBody, ErrorCode};
use common::workspace::{
    ExecArgs, ExecCounts, ExecError, ExecInfo, ExecItem, ExecStatus, ExecUpdate, exec_code,
    valid_id,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use log::ExecLog;

use crate::config::Config;
use crate::spawn;

/// Longest timeout an execution may ask for (a day).
pub const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;
/// Finished executions kept in memory (older ones are read back from disk).
const KEEP_FINISHED: usize = 256;
/// Execution records kept on disk.
const KEEP_ON_DISK: usize = 2000;

/// What every run needs from the daemon.
pub struct ExecCtx {
    /// The daemon config.
    pub cfg: Config,
    /// The claude binary.
    pub claude_bin: PathBuf,
    /// Binary that understands the exec shim (`ccrmd` itself), if any.
    pub shim: Option<PathBuf>,
    /// [`spawn::daemon_tag`] of this daemon.
    pub tag: String,
}

/// One execution.
pub struct Exec {
    args: ExecArgs,
    cwd: PathBuf,
    log: ExecLog,
    cancel: watch::Sender<bool>,
    /// The daemon's always-allowed tools plus the execution's own.
    allowed: Vec<String>,
}

impl Exec {
    /// Tools this execution may use without asking: names and Claude Code rules.
    fn allowed(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(String::as_str)
    }

    /// The `CCRM_OWNER` marker of its processes.
    fn owner(&self, tag: &str) -> String {
        spawn::owner_value(tag, &format!("exec-{}", self.args.execution_id))
    }
}

struct Pool {
    running: usize,
    queue: VecDeque<Arc<Exec>>,
    live: HashMap<String, Arc<Exec>>,
    finished: VecDeque<Arc<Exec>>,
    tasks: JoinSet<()>,
    closed: bool,
}

/// See the module docs.
pub struct Executions {
    ctx: ExecCtx,
    dir: PathBuf,
    pool: Mutex<Pool>,
}

fn bad(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadRequest, msg)
}

impl Executions {
    /// The pool; its records live in `cfg.executions_dir()` ([`Executions::prepare`]
    /// creates it).
    pub fn new(ctx: ExecCtx) -> Arc<Self> {
        let dir = ctx.cfg.executions_dir();
        Arc::new(Self {
            ctx,
            dir,
            pool: Mutex::new(Pool {
                running: 0,
                queue: VecDeque::new(),
                live: HashMap::new(),
                finished: VecDeque::new(),
                tasks: JoinSet::new(),
                closed: false,
            }),
        })
    }

    /// Creates the records' directory (0700) and closes, as failed, the records of
    /// executions that were still running when an earlier daemon stopped.
    pub fn prepare(&self) -> anyhow::Result<()> {
        crate::fsutil::private_dir(&self.dir)?;
        self.close_stale_records();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Workers, running and queued now.
    pub fn counts(&self) -> ExecCounts {
        let p = self.lock();
        ExecCounts {
            workers: self.ctx.cfg.workers,
            running: p.running,
            queued: p.queue.len(),
            queue_max: self.ctx.cfg.workers_queue,
        }
    }

    /// Ids of the executions queued or running in `dir` (or below it). One whose final
    /// item is out no longer counts, even before its task retires it: that item is pushed
    /// only after claude and its tools are gone, and a client that saw it (a cancel's
    /// reply, the stream's end) may delete the workspace at once.
    pub fn using(&self, dir: &Path) -> Vec<String> {
        let p = self.lock();
        let mut ids: Vec<String> = p
            .live
            .values()
            .filter(|e| e.cwd.starts_with(dir) && !e.log.status().is_final())
            .map(|e| e.args.execution_id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Accepts an execution that runs in `cwd` (an existing directory): it starts at once,
    /// waits in the queue, or is refused with `WORKERS_BUSY`.
    pub fn start(
        self: &Arc<Self>,
        mut args: ExecArgs,
        cwd: PathBuf,
    ) -> Result<ExecInfo, ErrorBody> {
        if !valid_id(&args.execution_id) {
            return Err(bad(format!(
                "executionId `{}` must be 1 to 64 letters, digits, `-` or `_`",
                args.execution_id.escape_debug()
            )));
        }
        if args.prompt.trim().is_empty() {
            return Err(bad("the prompt is empty"));
        }
        if args.timeout_secs == 0 || args.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(bad(format!(
                "timeoutSecs must be between 1 and {MAX_TIMEOUT_SECS}"
            )));
        }
        args.allowed_tools.retain(|t| !t.trim().is_empty());
        if args
            .allowed_tools
            .iter()
            .any(|t| t.len() > 500 || t.starts_with('-'))
        {
            return Err(bad("an allowedTools entry is not a tool name or rule"));
        }
        let mut allowed = self.ctx.cfg.allowed_tools.clone();
        for t in &args.allowed_tools {
            if !allowed.contains(t) {
                allowed.push(t.clone());
            }
        }
        let id = args.execution_id.clone();
        let info = ExecInfo {
            execution_id: id.clone(),
            workspace_id: args.workspace_id.clone(),
            cwd: cwd.clone(),
            status: ExecStatus::Queued,
            position: None,
            exit_code: None,
            output: String::new(),
            error: None,
            result: None,
            items: 0,
            created_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
        };
        let exec = Arc::new(Exec {
            args,
            cwd,
            log: ExecLog::new(info),
            cancel: watch::channel(false).0,
            allowed,
        });
        {
            let mut p = self.lock();
            if p.closed {
                return Err(ErrorBody::new(
                    ErrorCode::ShuttingDown,
                    "ccrmd is shutting down",
                ));
            }
            if p.live.contains_key(&id)
                || p.finished.iter().any(|e| e.args.execution_id == id)
                || self.record_path(&id).exists()
            {
                return Err(ErrorBody::new(
                    ErrorCode::Conflict,
                    format!("an execution `{id}` already exists; pick another executionId"),
                ));
            }
            if p.running < self.ctx.cfg.workers {
                p.running += 1;
                p.live.insert(id, exec.clone());
                exec.log.push(ExecUpdate::Started);
                self.spawn_run(&mut p, exec.clone());
            } else if p.queue.len() < self.ctx.cfg.workers_queue {
                p.queue.push_back(exec.clone());
                p.live.insert(id, exec.clone());
                exec.log.push(ExecUpdate::Queued {
                    position: p.queue.len(),
                });
            } else {
                return Err(ErrorBody::new(
                    ErrorCode::WorkersBusy,
                    format!(
                        "all {} workers are busy and {} executions wait; try again later",
                        self.ctx.cfg.workers,
                        p.queue.len()
                    ),
                ));
            }
        }
        self.save(&exec);
        Ok(exec.log.info())
    }

    /// Starts `exec`'s run on a worker the caller has counted in `running` (and has marked
    /// it started).
    fn spawn_run(self: &Arc<Self>, p: &mut Pool, exec: Arc<Exec>) {
        while p.tasks.try_join_next().is_some() {}
        let me = self.clone();
        p.tasks.spawn(async move {
            let cancel = exec.cancel.subscribe();
            if !*cancel.borrow() {
                run::run(&me.ctx, &exec, cancel).await;
            }
            me.finish(&exec);
        });
    }

    /// A run ended: record it, free its worker, start the next in line, and tell the rest
    /// of the queue their new places.
    fn finish(self: &Arc<Self>, exec: &Arc<Exec>) {
        if !exec.log.status().is_final() {
            exec.log.push(ExecUpdate::Error {
                code: exec_code::EXECUTION_FAILED.to_owned(),
                message: "the execution ended without a result".to_owned(),
            });
        }
        self.save(exec);
        let mut p = self.lock();
        p.running = p.running.saturating_sub(1);
        self.retire(&mut p, exec);
        if !p.closed
            && p.running < self.ctx.cfg.workers
            && let Some(next) = p.queue.pop_front()
        {
            p.running += 1;
            next.log.push(ExecUpdate::Started);
            self.spawn_run(&mut p, next);
            for (i, e) in p.queue.iter().enumerate() {
                e.log.push(ExecUpdate::Queued { position: i + 1 });
            }
        }
    }

    fn retire(&self, p: &mut Pool, exec: &Arc<Exec>) {
        p.live.remove(&exec.args.execution_id);
        p.finished.push_back(exec.clone());
        while p.finished.len() > KEEP_FINISHED {
            p.finished.pop_front();
        }
    }

    fn find(&self, id: &str) -> Option<Arc<Exec>> {
        let p = self.lock();
        p.live.get(id).cloned().or_else(|| {
            p.finished
                .iter()
                .find(|e| e.args.execution_id == id)
                .cloned()
        })
    }

    fn not_found(id: &str) -> ErrorBody {
        ErrorBody::new(ErrorCode::NotFound, format!("no execution `{id}`"))
    }

    /// One execution's summary and whole output.
    pub fn get(&self, id: &str) -> Result<ExecInfo, ErrorBody> {
        match self.find(id) {
            Some(e) => Ok(e.log.info()),
            None => self.load(id).ok_or_else(|| Self::not_found(id)),
        }
    }

    /// Cancels a waiting or running execution; one that already ended stays as it is.
    pub fn cancel(self: &Arc<Self>, id: &str) -> Result<ExecInfo, ErrorBody> {
        let Some(exec) = self.find(id) else {
            return self.load(id).ok_or_else(|| Self::not_found(id));
        };
        let queued = {
            let mut p = self.lock();
            let before = p.queue.len();
            p.queue.retain(|e| !Arc::ptr_eq(e, &exec));
            let was_queued = p.queue.len() != before;
            if was_queued {
                self.retire(&mut p, &exec);
                for (i, e) in p.queue.iter().enumerate() {
                    e.log.push(ExecUpdate::Queued { position: i + 1 });
                }
            }
            was_queued
        };
        if queued {
            exec.log.push(ExecUpdate::Error {
                code: exec_code::EXECUTION_CANCELLED.to_owned(),
                message: "the execution was cancelled before it started".to_owned(),
            });
            self.save(&exec);
        } else {
            exec.cancel.send_replace(true);
        }
        Ok(exec.log.info())
    }

    /// Streams an execution's items after `after` to `tx` until its last one (or until
    /// the receiver goes away). One known only from disk gets its last item at once.
    pub async fn follow(
        &self,
        id: &str,
        after: u64,
        tx: mpsc::Sender<ExecItem>,
    ) -> Result<ExecInfo, ErrorBody> {
        if let Some(exec) = self.find(id) {
            exec.log.follow(after, &tx).await;
            return Ok(exec.log.info());
        }
        let info = self.load(id).ok_or_else(|| Self::not_found(id))?;
        if info.items > after
            && let Some(update) = last_update(&info)
        {
            let _ = tx
                .send(ExecItem {
                    n: info.items,
                    ts_ms: info.finished_ms.unwrap_or(info.created_ms),
                    update,
                })
                .await;
        }
        Ok(info)
    }

    /// Cancels everything (the daemon is stopping) and waits, bounded, for the runs to end.
    pub async fn shutdown(self: &Arc<Self>) {
        let (queued, mut tasks) = {
            let mut p = self.lock();
            p.closed = true;
            for e in p.live.values() {
                e.cancel.send_replace(true);
            }
            let queued: Vec<Arc<Exec>> = p.queue.drain(..).collect();
            (queued, std::mem::take(&mut p.tasks))
        };
        for e in queued {
            e.log.push(ExecUpdate::Error {
                code: exec_code::EXECUTION_CANCELLED.to_owned(),
                message: "ccrmd stopped before the execution started".to_owned(),
            });
            self.save(&e);
        }
        let all = async { while tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), all).await;
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes an execution's summary (atomically, 0600).
    fn save(&self, exec: &Exec) {
        let info = exec.log.info();
        let Ok(bytes) = serde_json::to_vec(&info) else {
            return;
        };
        let tmp = self
            .dir
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let done = crate::fsutil::write_private(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, self.record_path(&info.execution_id)));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(execution = %info.execution_id, error = %e, "cannot write the execution record");
        }
    }

    fn load(&self, id: &str) -> Option<ExecInfo> {
        if !valid_id(id) {
            return None;
        }
        let bytes = std::fs::read(self.record_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// At start: records left running by an earlier daemon are closed as failed, temporary
    /// files removed, and only the newest [`KEEP_ON_DISK`] records kept.
    fn close_stale_records(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut records = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let Some(mut info) = self.load(id) else {
                continue;
            };
            if !info.status.is_final() {
                info.status = ExecStatus::Failed;
                info.items += 1;
                info.finished_ms = Some(now_ms());
                info.error = Some(ExecError {
                    code: exec_code::EXECUTION_FAILED.to_owned(),
                    message: "ccrmd stopped before the execution finished".to_owned(),
                });
                if let Ok(bytes) = serde_json::to_vec(&info) {
                    let _ = std::fs::write(e.path(), bytes);
                }
            }
            records.push((info.created_ms, e.path()));
        }
        if records.len() > KEEP_ON_DISK {
            records.sort();
            for (_, path) in &records[..records.len() - KEEP_ON_DISK] {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The last item of a finished execution, rebuilt from its summary.
fn last_update(info: &ExecInfo) -> Option<ExecUpdate> {
    if !info.status.is_final() {
        return None;
    }
    match (&info.error, info.exit_code, &info.result) {
        (_, Some(exit_code), Some(result)) => Some(ExecUpdate::Complete {
            exit_code,
            result: result.clone(),
        }),
        (Some(e), _, _) => Some(ExecUpdate::Error {
            code: e.code.clone(),
            message: e.message.clone(),
        }),
        _ => None,
    }
}
