//! [`ExecLog`]: one execution's numbered items and its summary ([`ExecInfo`]), kept
//! together under one std `Mutex` (never held across an await), with a `watch` of the
//! newest item number so followers ([`ExecLog::follow`]) wait without polling and never
//! block the run. Output beyond [`MAX_OUTPUT`] bytes is dropped with a note, so a runaway
//! answer cannot exhaust the daemon's memory.

use std::sync::Mutex;

use common::event::now_ms;
use common::workspace::{ExecError, ExecInfo, ExecItem, ExecStatus, ExecUpdate};
use tokio::sync::{mpsc, watch};

/// Most output text kept per execution (16 MiB).
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

struct State {
    items: Vec<ExecItem>,
    info: ExecInfo,
    truncated: bool,
}

/// See the module docs.
pub struct ExecLog {
    state: Mutex<State>,
    newest: watch::Sender<u64>,
}

impl ExecLog {
    /// A log for an execution whose summary starts as `info`.
    pub fn new(info: ExecInfo) -> Self {
        Self {
            state: Mutex::new(State {
                items: Vec::new(),
                info,
                truncated: false,
            }),
            newest: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The summary now.
    pub fn info(&self) -> ExecInfo {
        self.lock().info.clone()
    }

    /// The status now.
    pub fn status(&self) -> ExecStatus {
        self.lock().info.status
    }

    /// Appends `update` (unless the execution already ended) and keeps the summary in step.
    /// Returns false when it was dropped.
    pub fn push(&self, update: ExecUpdate) -> bool {
        let n = {
            let mut st = self.lock();
            if st.info.status.is_final() {
                return false;
            }
            let now = now_ms();
            let info = &mut st.info;
            match &update {
                ExecUpdate::Queued { position } => info.position = Some(*position),
                ExecUpdate::Started => {
                    info.status = ExecStatus::Running;
                    info.position = None;
                    info.started_ms = Some(now);
                }
                ExecUpdate::Output { chunk } => {
                    if info.output.len() + chunk.len() > MAX_OUTPUT {
                        if !st.truncated {
                            st.truncated = true;
                            tracing::warn!(execution = %st.info.execution_id, "execution output over 16 MiB; the rest is dropped");
                        }
                        return false;
                    }
                    info.output.push_str(chunk);
                }
                ExecUpdate::Complete { exit_code, result } => {
                    info.status = if *exit_code == 0 {
                        ExecStatus::Completed
                    } else {
                        ExecStatus::Failed
                    };
                    info.exit_code = Some(*exit_code);
                    info.result = Some(result.clone());
                    if *exit_code != 0 {
                        info.error = Some(ExecError {
                            code: common::workspace::exec_code::EXECUTION_FAILED.to_owned(),
                            message: format!(
                                "claude ended the run with an error (exit code {exit_code})"
                            ),
                        });
                    }
                    info.finished_ms = Some(now);
                    info.position = None;
                }
                ExecUpdate::Error { code, message } => {
                    info.status = match code.as_str() {
                        common::workspace::exec_code::EXECUTION_TIMEOUT => ExecStatus::Timeout,
                        common::workspace::exec_code::EXECUTION_CANCELLED => ExecStatus::Cancelled,
                        _ => ExecStatus::Failed,
                    };
                    info.error = Some(ExecError {
                        code: code.clone(),
                        message: message.clone(),
                    });
                    info.finished_ms = Some(now);
                    info.position = None;
                }
            }
            let n = st.items.len() as u64 + 1;
            st.info.items = n;
            st.items.push(ExecItem {
                n,
                ts_ms: now,
                update,
            });
            n
        };
        self.newest.send_replace(n);
        true
    }

    /// Items numbered above `after`, at most `max`, and whether the execution has ended
    /// (read together, so an empty list of an ended one means its last item is at or
    /// before `after`).
    fn after(&self, after: u64, max: usize) -> (Vec<ExecItem>, bool) {
        let st = self.lock();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(st.items.len());
        let items = st.items[start..].iter().take(max).cloned().collect();
        (items, st.info.status.is_final())
    }

    /// Sends every item after `after` to `tx`, live, until the final one was sent or the
    /// receiver went away.
    pub async fn follow(&self, mut after: u64, tx: &mpsc::Sender<ExecItem>) {
        let mut newest = self.newest.subscribe();
        loop {
            let (batch, ended) = self.after(after, 256);
            let empty = batch.is_empty();
            if empty && ended {
                // Resumed after the last item: nothing more will come.
                return;
            }
            for item in batch {
                after = item.n;
                let last = item.update.is_final();
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
            if empty && newest.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::workspace::ExecResult;

    fn info() -> ExecInfo {
        ExecInfo {
            execution_id: "e1".into(),
            workspace_id: None,
            cwd: "/tmp".into(),
            status: ExecStatus::Queued,
            position: None,
            exit_code: None,
            output: String::new(),
            error: None,
            result: None,
            items: 0,
            created_ms: 1,
            started_ms: None,
            finished_ms: None,
        }
    }

    #[tokio::test]
    async fn followers_see_every_item_from_any_point_and_stop_at_the_end() {
        let log = std::sync::Arc::new(ExecLog::new(info()));
        log.push(ExecUpdate::Queued { position: 1 });
        log.push(ExecUpdate::Started);
        let l = log.clone();
        let (tx, mut rx) = mpsc::channel(4);
        let follower = tokio::spawn(async move { l.follow(1, &tx).await });
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(item) = rx.recv().await {
                seen.push(item.n);
            }
            seen
        });
        log.push(ExecUpdate::Output { chunk: "a".into() });
        log.push(ExecUpdate::Output { chunk: "b".into() });
        log.push(ExecUpdate::Complete {
            exit_code: 0,
            result: ExecResult::default(),
        });
        assert!(!log.push(ExecUpdate::Output {
            chunk: "late".into()
        }));
        let seen = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("follower ended")
            .expect("join");
        follower.await.expect("join");
        assert_eq!(seen, [2, 3, 4, 5]);
        let i = log.info();
        assert_eq!(
            (i.status, i.output.as_str(), i.items),
            (ExecStatus::Completed, "ab", 5)
        );
    }

    #[tokio::test]
    async fn a_follower_after_the_last_item_of_an_ended_run_returns_at_once() {
        let log = ExecLog::new(info());
        log.push(ExecUpdate::Started);
        log.push(ExecUpdate::Error {
            code: "EXECUTION_CANCELLED".into(),
            message: "cancelled".into(),
        });
        for after in [2, 3, u64::MAX] {
            let (tx, mut rx) = mpsc::channel(4);
            tokio::time::timeout(std::time::Duration::from_secs(5), log.follow(after, &tx))
                .await
                .unwrap_or_else(|_| panic!("a follower after {after} waited for nothing"));
            drop(tx);
            assert!(rx.recv().await.is_none(), "nothing after {after}");
        }
        // From before the end it still gets the last item.
        let (tx, mut rx) = mpsc::channel(4);
        log.follow(1, &tx).await;
        assert_eq!(rx.recv().await.map(|i| i.n), Some(2));
    }
}
