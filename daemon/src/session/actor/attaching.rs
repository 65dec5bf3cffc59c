//! The actor's side of `ccrm attach`: an attach waits for the running turn (or interrupts
//! it), the child is stopped ([`EndKind::Handover`]), and only after its exit does the TUI
//! start ([`Actor::start_tui`]); state `attached`, prompts queue. When the monitor reports
//! the TUI gone, the child is spawned again with `--resume` and the queue drains, or the
//! session stays stopped after `ccrm stop` / `ccrm kill` / a daemon shutdown. The attach
//! state itself is [`Handover`](crate::session::handover::Handover).

use common::event::{EventKind, Origin, SessionState, Surface};
use common::ipc::{AttachInfo, ErrorBody, ErrorCode};

use super::Actor;
use crate::attach::{self, FromTui};
use crate::session::cmd::Reply;
use crate::session::ending::EndKind;
use crate::session::handover::{AfterTui, TuiLaunch, transcript_on_disk};

impl Actor {
    /// Hands the session to the TUI once the running turn is over (`now`: interrupts it),
    /// or joins the TUI that has it.
    pub(super) fn attach(&mut self, now: bool, reply: Reply<AttachInfo>) {
        let Some(reply) = self.handover.join(reply, self.rec.id) else {
            return;
        };
        if self.is_stopping() {
            let _ = reply.send(Err(ErrorBody::new(
                ErrorCode::BadState,
                "the session is stopping; attach once it has stopped",
            )));
            return;
        }
        if attach::find_tmux().is_none() {
            let _ = reply.send(Err(attach::tmux_missing()));
            return;
        }
        if let Some(gone) = self.cwd_gone() {
            // tmux would start the TUI in its own directory instead, without a word.
            let _ = reply.send(Err(gone));
            return;
        }
        if now && self.queue.is_running() {
            self.interrupt(&format!(
                "{} (ccrm attach --now)",
                Origin::new(Surface::Cli)
            ));
        }
        self.handover.wait(reply, self.child.is_running());
    }

    /// Moves a waiting attach on: once no turn runs, stop the child; once it is gone, start
    /// the TUI. Called after every actor step.
    pub(super) fn advance_attach(&mut self) {
        if !self.handover.is_waiting() || self.handover.is_attached() || self.ending.is_some() {
            return;
        }
        if self.child.is_running() {
            if self.state != SessionState::Starting && !self.queue.is_running() {
                self.start_ending(EndKind::Handover);
            }
            return;
        }
        self.start_tui();
    }

    /// Gives up a waiting attach (stop, kill, shutdown); its callers get `err`, and a
    /// handover in progress becomes a plain stop.
    pub(super) fn cancel_attach(&mut self, err: &ErrorBody) {
        if !self.handover.cancel_wait(err) {
            return;
        }
        if let Some(e) = &mut self.ending
            && e.kind == EndKind::Handover
        {
            e.kind = EndKind::Stop;
        }
    }

    /// Starts the TUI for the waiting attach. The child must be gone.
    pub(super) fn start_tui(&mut self) {
        match self.handover.start_tui(&self.ctx, &self.rec) {
            TuiLaunch::NotAsked => {}
            TuiLaunch::NoTmux { was_live } => {
                self.after_failed_tui(was_live, "tmux is not installed".to_owned());
            }
            TuiLaunch::Started { found_transcript } => {
                if found_transcript {
                    self.rec.has_transcript = true;
                    self.save();
                }
                self.set_state(SessionState::Attached, None);
            }
        }
    }

    /// A report of the TUI monitor.
    pub(super) fn on_tui(&mut self, msg: Option<FromTui>) {
        match msg {
            Some(FromTui::Started { pid }) => {
                let Some((target, waiters)) = self.handover.started(pid) else {
                    return;
                };
                self.log.push(EventKind::Attached { target }, None);
                self.publish();
                let info = self.handover.info(self.rec.id, false);
                for w in waiters {
                    let _ = w.send(Ok(info.clone()));
                }
            }
            Some(FromTui::Failed(reason)) => {
                let Some((after, was_live)) = self.handover.failed(&reason, &self.log) else {
                    return;
                };
                match after {
                    AfterTui::Resume => self.after_failed_tui(was_live, reason),
                    AfterTui::End(kind) => self.stopped_after_tui(kind),
                    AfterTui::Shutdown => self.stopped_after_tui(EndKind::Stop),
                }
            }
            Some(FromTui::Items(items)) => {
                self.turns += self.handover.report(items, &mut self.queue, &self.log);
                self.publish();
            }
            Some(FromTui::Ended { reason }) => self.finish_tui(reason),
            None => self.finish_tui("the tmux monitor ended".to_owned()),
        }
    }

    /// The TUI is gone (its process has exited): report it and give the session back.
    fn finish_tui(&mut self, reason: String) {
        let Some((after, turns_ended)) = self.handover.finish(reason, &self.log) else {
            return;
        };
        self.turns += turns_ended;
        match after {
            AfterTui::Resume => self.respawn_after_tui(),
            AfterTui::End(kind) => self.stopped_after_tui(kind),
            AfterTui::Shutdown => {
                self.set_state(
                    SessionState::Stopped,
                    Some("the daemon stopped while the session was attached".to_owned()),
                );
            }
        }
    }

    /// Starts the stream-json child again after the TUI; queued prompts then run.
    fn respawn_after_tui(&mut self) {
        if !self.rec.has_transcript && transcript_on_disk(&self.ctx.cfg.child_env, &self.rec.id) {
            self.rec.has_transcript = true;
        }
        let resume = self.rec.has_transcript;
        if let Err(e) = self.spawn_child(resume) {
            let msg = format!("cannot start claude after the TUI: {e}");
            self.log.push(
                EventKind::Error {
                    message: msg.clone(),
                },
                None,
            );
            self.set_state(SessionState::Failed, Some(msg));
        }
    }

    fn stopped_after_tui(&mut self, kind: EndKind) {
        self.set_state(SessionState::Stopped, Some(kind.outcome().to_owned()));
        self.answer_stop_waiters();
    }

    /// The TUI did not start: a session that had a child gets one again; a stopped one
    /// stays stopped.
    fn after_failed_tui(&mut self, was_live: bool, reason: String) {
        if was_live {
            self.respawn_after_tui();
        } else {
            self.set_state(
                SessionState::Stopped,
                Some(format!("attach failed: {reason}")),
            );
        }
    }
}
