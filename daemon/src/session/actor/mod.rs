//! The session actor ([`Actor`]): the task that owns a session's child, reads its commands
//! and the child's output in one event loop, and publishes a snapshot after each change.
//!
//! The actor is a thin state machine over the session state ([`SessionState`]): this file
//! has its fields, the event loop ([`Actor::run`]), the command dispatch and the
//! bookkeeping (state changes, the published snapshot, the record on disk). The transitions
//! are grouped by what starts them, each in a file of its own: `turns` (prompts, the pump and
//! the child's output), `decisions` (approvals and questions), `stopping` (spawn, stop,
//! kill, resume and the child's exit) and `attaching` (the handover to the TUI and back).
//! The state of each responsibility lives in a small struct of [`super`] that the actor
//! delegates to.

use std::sync::{Arc, Mutex};

use common::event::{EventKind, SessionState, now_ms};
use common::ipc::{ErrorBody, ErrorCode, SessionInfo};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

use super::Ctx;
use super::approvals::Approvals;
use super::child::{Child, FromChild, MAX_CHILD_LINE};
use super::cmd::{Cmd, Reply, Shared, gone};
use super::ending::{EndKind, Ending};
use super::handover::{AfterTui, Handover};
use super::queue::PromptQueue;
use crate::eventlog::EventLog;
use crate::store::{self, SessionRecord};

mod attaching;
mod decisions;
mod stopping;
mod turns;

/// One session: its record and state, the parts it delegates to, and who waits for what.
pub(super) struct Actor {
    ctx: Arc<Ctx>,
    rec: SessionRecord,
    log: Arc<EventLog>,
    shared: Arc<Mutex<Shared>>,
    rx: mpsc::Receiver<Cmd>,
    state: SessionState,
    reason: Option<String>,
    /// The stream-json claude process.
    child: Child,
    /// Prompts waiting for their turn and the turn that runs.
    queue: PromptQueue,
    /// Approvals and questions waiting for a human.
    approvals: Approvals,
    /// A stop or kill of the child in progress.
    ending: Option<Ending>,
    /// An attach waiting for the child to be gone, or the TUI that has the session.
    handover: Handover,
    turns: u64,
    cost: Option<f64>,
    stop_waiters: Vec<Reply<SessionInfo>>,
    ready_waiters: Vec<Reply<SessionInfo>>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
}

impl Actor {
    /// An actor for `rec` that has not started its child yet.
    pub(super) fn new(
        ctx: Arc<Ctx>,
        rec: SessionRecord,
        log: Arc<EventLog>,
        shared: Arc<Mutex<Shared>>,
        rx: mpsc::Receiver<Cmd>,
    ) -> Self {
        Self {
            ctx,
            state: rec.state,
            reason: rec.reason.clone(),
            child: Child::new(log.clone()),
            queue: PromptQueue::new(),
            approvals: Approvals::new(&rec.session_allowed_tools),
            rec,
            log,
            shared,
            rx,
            ending: None,
            handover: Handover::new(),
            turns: 0,
            cost: None,
            stop_waiters: Vec::new(),
            ready_waiters: Vec::new(),
            shutdown_waiters: Vec::new(),
        }
    }

    /// Starts the child of a new session (`--session-id`).
    pub(super) fn spawn_first(&mut self) -> Result<(), ErrorBody> {
        self.spawn_child(false).map_err(|e| {
            ErrorBody::new(ErrorCode::SpawnFailed, format!("cannot start claude: {e}"))
        })
    }

    /// The refusal for a session whose directory no longer exists (deleted, or its
    /// workspace was), which nothing can run in again; `None` while it exists. The session
    /// stays as it is.
    pub(super) fn cwd_gone(&self) -> Option<ErrorBody> {
        (!self.rec.cwd.is_dir()).then(|| {
            ErrorBody::new(
                ErrorCode::BadState,
                format!(
                    "session {}'s directory {} is gone, so it cannot run again; start a new \
                     session in an existing directory",
                    self.rec.id.short(),
                    self.rec.cwd.display()
                ),
            )
        })
    }

    /// Takes a session loaded from disk as stopped until it is resumed.
    pub(super) fn load_stored(&mut self) {
        if self.state.is_live() {
            self.state = SessionState::Stopped;
            self.reason = Some("the daemon restarted".to_owned());
        }
        self.publish();
    }

    /// The event loop: commands, the child's output, stop deadlines and the TUI monitor.
    pub(super) async fn run(mut self) {
        loop {
            let deadline = self.ending.as_ref().map(Ending::deadline);
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    None => {
                        // Every handle is gone: nobody can reach this session any more.
                        self.child.kill_group();
                        break;
                    }
                },
                msg = self.child.recv() => match msg {
                    Some(FromChild::Line(line)) => self.on_line(&line),
                    Some(FromChild::TooLong) => {
                        self.log.push(EventKind::Error { message: format!("claude printed a line longer than {MAX_CHILD_LINE} bytes; it was skipped") }, None);
                    }
                    Some(FromChild::Exited(status)) => self.on_exit(status),
                    None => self.on_exit(None),
                },
                () = sleep_opt(deadline) => self.escalate(),
                msg = self.handover.recv() => self.on_tui(msg),
            }
            self.advance_attach();
            if !self.shutdown_waiters.is_empty()
                && !self.child.is_running()
                && !self.handover.is_attached()
            {
                for w in self.shutdown_waiters.drain(..) {
                    let _ = w.send(());
                }
                break;
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Prompt {
                text,
                images,
                origin,
                reply,
            } => {
                let _ = reply.send(self.prompt(text, images, origin));
            }
            Cmd::Interrupt { by, reply } => {
                let result = if self.handover.is_attached() {
                    Err(self.in_use_at_terminal("interrupt the running turn there (Esc)"))
                } else {
                    Ok(self.interrupt(&by))
                };
                let _ = reply.send(result);
            }
            Cmd::Stop { reply } => self.begin_end(EndKind::Stop, reply),
            Cmd::Kill { reply } => self.begin_end(EndKind::Kill, reply),
            Cmd::Resume { reply } => self.resume(reply),
            Cmd::Decide {
                approval,
                decision,
                message,
                by,
                reply,
            } => {
                let _ = reply.send(self.decide(approval.as_deref(), decision, message, &by));
            }
            Cmd::Answer {
                approval,
                answers,
                by,
                reply,
            } => {
                let _ = reply.send(self.answer(approval.as_deref(), &answers, &by));
            }
            Cmd::Attach { now, reply } => self.attach(now, reply),
            Cmd::WaitReady { reply } => {
                if self.state == SessionState::Starting {
                    self.ready_waiters.push(reply);
                } else {
                    let _ = reply.send(Ok(self.info()));
                }
            }
            Cmd::Shutdown { reply } => {
                self.shutdown_waiters.push(reply);
                self.cancel_attach(&gone());
                if self.handover.is_attached() {
                    self.handover
                        .end(AfterTui::Shutdown, "the daemon stopped", false);
                } else if self.child.is_running() && self.ending.is_none() {
                    self.start_ending(EndKind::Stop);
                }
            }
        }
    }

    // ----- bookkeeping ----------------------------------------------------------------

    fn in_use_at_terminal(&self, what_to_do: &str) -> ErrorBody {
        ErrorBody::new(
            ErrorCode::BadState,
            format!(
                "session {} is in use at the terminal (ccrm attach); {what_to_do}",
                self.rec.id.short()
            ),
        )
    }

    fn answer_ready_waiters(&mut self) {
        let info = self.info();
        for w in self.ready_waiters.drain(..) {
            let _ = w.send(Ok(info.clone()));
        }
    }

    fn answer_stop_waiters(&mut self) {
        let info = self.info();
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(Ok(info.clone()));
        }
    }

    fn set_state(&mut self, state: SessionState, reason: Option<String>) {
        if self.state == state && self.reason == reason {
            return;
        }
        let from = std::mem::replace(&mut self.state, state);
        self.reason = reason.clone();
        self.log.push(EventKind::State { state, reason }, None);
        self.publish();
        // The record is saved when a child is ready (a new session's first record, and what
        // a respawn changed) and when it ends, but not when a turn ends: a live state on
        // disk is read back as stopped ("the daemon restarted") anyway, and that save put an
        // fsync on ccrmd's only thread in front of every turn's result.
        let save = match state {
            SessionState::Stopped | SessionState::Failed | SessionState::Starting => true,
            SessionState::Idle => from == SessionState::Starting,
            _ => false,
        };
        if save {
            self.save();
        }
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.rec.id,
            name: self.rec.name.clone(),
            cwd: self.rec.cwd.clone(),
            model: self.rec.model.clone(),
            permission_mode: self.rec.permission_mode.clone(),
            state: self.state,
            reason: self.reason.clone(),
            pid: self.child.pid().or_else(|| self.handover.pid()),
            queued: self.queue.len(),
            pending: self.approvals.len(),
            turns: self.turns,
            cost_usd: self.cost,
            created_ms: self.rec.created_ms,
            last_event_ms: now_ms(),
            last_seq: self.log.last_seq(),
            session_allowed_tools: self.approvals.session_rules(),
            auto_allow: self.rec.auto_allow,
        }
    }

    fn publish(&self) {
        let info = self.info();
        let pending = self.approvals.infos();
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.info = info;
        shared.pending = pending;
    }

    fn save(&mut self) {
        self.rec.state = self.state;
        self.rec.reason = self.reason.clone();
        if let Err(e) = store::save(&self.ctx.cfg.sessions_dir(), &self.rec) {
            warn!(error = %e, "cannot save session record");
        }
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
