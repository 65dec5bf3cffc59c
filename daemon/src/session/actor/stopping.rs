//! The actor's side of the child's life: spawning it, stop (interrupt, close stdin, then
//! SIGTERM and SIGKILL as [`Ending`] says), kill, resume, and what its exit means for the
//! session ([`Actor::on_exit`]: stopped, failed with a reason, or handed to the TUI).

use std::process::ExitStatus;

use common::event::{Decision, EventKind, SessionState};
use common::ipc::{ErrorBody, ErrorCode, SessionInfo};
use tracing::info;

use super::Actor;
use crate::session::cmd::Reply;
use crate::session::ending::{EndKind, Ending};
use crate::session::handover::AfterTui;

impl Actor {
    /// Starts the stream-json child (`resume`: with the session's history); the session is
    /// `starting` until it answers `initialize`.
    pub(super) fn spawn_child(&mut self, resume: bool) -> anyhow::Result<()> {
        self.child.spawn(&self.ctx, &self.rec, resume)?;
        self.ending = None;
        self.set_state(SessionState::Starting, None);
        self.child.initialize();
        Ok(())
    }

    /// Whether a stop or kill (not a handover to the TUI) is in progress.
    pub(super) fn is_stopping(&self) -> bool {
        self.ending
            .as_ref()
            .is_some_and(|e| e.kind != EndKind::Handover)
    }

    /// `ccrm stop` / `ccrm kill`: `reply` is answered once the child (or the TUI) is gone.
    pub(super) fn begin_end(&mut self, kind: EndKind, reply: Reply<SessionInfo>) {
        if self.handover.is_attached() {
            self.stop_waiters.push(reply);
            let reason = format!("the session was {}", kind.outcome());
            self.handover
                .end(AfterTui::End(kind), &reason, kind == EndKind::Kill);
            return;
        }
        self.cancel_attach(&ErrorBody::new(
            ErrorCode::BadState,
            "the session was stopped before the TUI started",
        ));
        if !self.child.is_running() {
            let _ = reply.send(Ok(self.info()));
            return;
        }
        self.stop_waiters.push(reply);
        match &self.ending {
            Some(e) if e.kind == EndKind::Kill || kind == EndKind::Stop => {}
            _ => self.start_ending(kind),
        }
    }

    /// Starts ending the child: gracefully (stop, handover) or at once (kill).
    pub(super) fn start_ending(&mut self, kind: EndKind) {
        if kind == EndKind::Kill {
            self.child.kill_group();
            self.ending = Some(Ending::killed());
            return;
        }
        // Interrupt a running turn, then close stdin: the CLI finishes and exits.
        // Queued prompts stay in our queue for a later resume.
        if self.queue.is_running() {
            self.child.interrupt();
        }
        self.child.close_stdin();
        self.ending = Some(Ending::graceful(kind, self.ctx.cfg.stop_grace));
    }

    /// Called when a stop deadline passes: SIGTERM, then SIGKILL.
    pub(super) fn escalate(&mut self) {
        let Some(pid) = self.child.pid() else {
            self.ending = None;
            return;
        };
        if let Some(e) = &mut self.ending {
            e.escalate(pid);
        }
    }

    /// Restarts a stopped or failed session with its history.
    pub(super) fn resume(&mut self, reply: Reply<SessionInfo>) {
        if self.handover.is_active() {
            let _ = reply.send(Err(self.in_use_at_terminal(
                "it goes back under the daemon when the TUI exits or its last client detaches",
            )));
            return;
        }
        if self.child.is_running() {
            let _ = reply.send(Err(ErrorBody::new(
                ErrorCode::BadState,
                format!(
                    "session {} is {}; only a stopped or failed session can be resumed",
                    self.rec.id.short(),
                    self.state
                ),
            )));
            return;
        }
        if let Some(gone) = self.cwd_gone() {
            // claude would fail with a bare ENOENT that reads like a missing binary.
            let _ = reply.send(Err(gone));
            return;
        }
        let resume = self.rec.has_transcript;
        match self.spawn_child(resume) {
            Ok(()) => self.ready_waiters.push(reply),
            Err(e) => {
                let msg = format!("cannot start claude: {e}");
                self.set_state(SessionState::Failed, Some(msg.clone()));
                let _ = reply.send(Err(ErrorBody::new(ErrorCode::SpawnFailed, msg)));
            }
        }
    }

    /// The child has exited: end what it left open and settle the session's state.
    pub(super) fn on_exit(&mut self, status: Option<ExitStatus>) {
        let Some(mut exit) = self.child.reap(status) else {
            return;
        };
        let ending = self.ending.take();
        let handover = self.handover.is_waiting()
            && ending.as_ref().is_some_and(|e| e.kind == EndKind::Handover);
        let (state, reason) = if let Some(reason) = exit.failed.take() {
            (SessionState::Failed, reason)
        } else if let Some(e) = ending {
            (SessionState::Stopped, e.kind.outcome().to_owned())
        } else {
            (SessionState::Failed, exit.unexpected())
        };
        info!(pid = exit.pid, code = %exit.code, state = %state, "claude exited");
        let why = format!("the session ended before an answer ({reason})");
        self.approvals
            .end_all(Decision::Aborted, "daemon", &why, &self.log);
        if let Some(prompt_id) = self.queue.finish() {
            self.log.push(
                EventKind::TurnResult {
                    prompt_id: Some(prompt_id),
                    text: Some(reason.clone()),
                    is_error: true,
                    subtype: "session_ended".into(),
                    cost_usd: self.cost,
                    duration_ms: None,
                    num_turns: None,
                },
                None,
            );
        }
        if handover {
            // The child is gone: now the TUI may have the session.
            self.start_tui();
        } else {
            self.set_state(state, Some(reason));
        }
        self.answer_ready_waiters();
        self.answer_stop_waiters();
    }
}
