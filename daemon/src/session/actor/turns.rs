//! The actor's turn flow: a prompt is queued ([`Actor::prompt`]) and written to the child
//! only when it is idle ([`Actor::pump`]); the child's output ([`Actor::on_line`], read by
//! [`output::read_line`]) is reported as events until the turn's `result` frees the child
//! for the next prompt.

use common::attach::ImageBlock;
use common::child::{self, ChildMsg, ResultMsg};
use common::event::{Decision, EventKind, Origin, SessionState};
use common::ipc::{ErrorBody, ErrorCode, PromptAccepted};
use serde_json::Value;
use tracing::{debug, warn};

use super::Actor;
use crate::session::output::{self, Output};

impl Actor {
    /// Queues a prompt (also while attached: it runs when the session is given back).
    pub(super) fn prompt(
        &mut self,
        text: String,
        images: Vec<ImageBlock>,
        origin: Origin,
    ) -> Result<PromptAccepted, ErrorBody> {
        let attached = self.handover.is_active();
        if !self.child.is_running() && !attached {
            return Err(ErrorBody::new(
                ErrorCode::BadState,
                format!(
                    "session {} is {}; run `ccrm resume {}` first",
                    self.rec.id.short(),
                    self.state,
                    self.rec.id.short()
                ),
            ));
        }
        if self.is_stopping() {
            return Err(ErrorBody::new(
                ErrorCode::BadState,
                "the session is stopping; resume it once it has stopped",
            ));
        }
        if text.trim().is_empty() && images.is_empty() {
            return Err(ErrorBody::new(ErrorCode::BadRequest, "the prompt is empty"));
        }
        common::attach::check_images(&images)
            .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, e))?;
        let prompt_id = self.queue.next_id();
        let queued_behind = self.queue.ahead();
        self.log.push(
            EventKind::Prompt {
                prompt_id,
                text: text.clone(),
                origin,
                queued_behind,
            },
            None,
        );
        self.queue.push(prompt_id, text, images);
        self.pump();
        self.publish();
        let note = attached.then(|| {
            format!(
                "session {} is in use at the terminal (ccrm attach); the prompt is queued and runs when the terminal gives the session back",
                self.rec.id.short()
            )
        });
        Ok(PromptAccepted {
            session_id: self.rec.id,
            prompt_id,
            queued_behind,
            note,
        })
    }

    /// Interrupts the running turn; `false` when none runs.
    pub(super) fn interrupt(&mut self, by: &str) -> bool {
        if !self.queue.is_running() || !self.child.is_running() {
            return false;
        }
        self.log
            .push(EventKind::Interrupted { by: by.to_owned() }, None);
        self.child.interrupt();
        true
    }

    /// Starts the next queued prompt if the child is idle (and not stopping or handed over).
    pub(super) fn pump(&mut self) {
        if self.state != SessionState::Idle
            || self.queue.is_running()
            || self.ending.is_some()
            || self.handover.is_active()
        {
            return;
        }
        let Some((prompt_id, text, images)) = self.queue.start_next() else {
            return;
        };
        if !self.rec.has_transcript {
            self.rec.has_transcript = true;
            self.save();
        }
        self.child.send(child::user_line_with(&text, &images));
        self.log.push(EventKind::TurnStarted { prompt_id }, None);
        self.set_state(SessionState::Active, None);
    }

    /// Handles one line of the child's stdout.
    pub(super) fn on_line(&mut self, line: &str) {
        match output::read_line(line) {
            Output::Events(events) => {
                for (kind, raw) in events {
                    self.log.push(kind, raw);
                }
            }
            Output::NotJson(reason) => {
                self.log.push(
                    EventKind::Error {
                        message: reason.clone(),
                    },
                    None,
                );
                self.child.fail(reason);
            }
            Output::ForActor(msg, raw) => match msg {
                ChildMsg::Result(r) => self.on_result(&r, raw),
                ChildMsg::ControlRequest {
                    request_id,
                    request,
                } => self.on_control_request(&request_id, &request, raw),
                ChildMsg::ControlResponse {
                    request_id,
                    subtype,
                    body,
                } => self.on_control_response(&request_id, &subtype, &body),
                ChildMsg::ControlCancel { request_id } => self.on_control_cancel(&request_id),
                // `read_line` reports every other message as events.
                _ => {}
            },
        }
    }

    /// The child answered a control request of ours; the answer to `initialize` means it
    /// is ready for prompts.
    fn on_control_response(&mut self, request_id: &str, subtype: &str, body: &Value) {
        if !self.child.is_init_response(request_id) {
            if subtype == "error" {
                debug!(request_id, error = %body, "control request failed");
            }
            return;
        }
        if subtype == "error" {
            warn!(error = %body, "initialize failed; going on without it");
        }
        if self.state == SessionState::Starting {
            self.set_state(SessionState::Idle, None);
            self.answer_ready_waiters();
            self.pump();
        }
    }

    /// A turn ended: report it and start the next prompt.
    fn on_result(&mut self, r: &ResultMsg, raw: Option<Value>) {
        self.turns += 1;
        if r.total_cost_usd.is_some() {
            self.cost = r.total_cost_usd;
        }
        // A pending prompt cannot outlive its turn; the CLI cancels them, but be sure.
        self.approvals
            .end_all(Decision::Cancelled, "claude", "the turn ended", &self.log);
        self.log.push(
            EventKind::TurnResult {
                prompt_id: self.queue.finish(),
                text: r.text(),
                is_error: r.is_error,
                subtype: r.subtype.clone(),
                cost_usd: r.total_cost_usd,
                duration_ms: r.duration_ms,
                num_turns: r.num_turns,
            },
            raw,
        );
        if self.child.is_running() && self.ending.is_none() {
            self.set_state(SessionState::Idle, None);
        }
        self.pump();
        self.publish();
    }
}
