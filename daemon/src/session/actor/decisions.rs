//! The actor's side of approvals and questions: a `can_use_tool` request of the child is
//! allowed by policy or becomes pending ([`Actor::on_control_request`]), a human decides
//! or answers it ([`Actor::decide`], [`Actor::answer`]), or the child withdraws it. The
//! bookkeeping and the reply lines are in [`approvals`]; the actor writes the lines to the
//! child and keeps the session state (`waiting_permission` while any is pending) in step.

use std::collections::BTreeMap;

use common::child;
use common::event::{Decision, SessionState};
use common::ipc::{ApprovalInfo, ApprovalKind, DecisionInfo, ErrorBody};
use serde_json::Value;

use super::Actor;
use crate::session::approvals::{self, Ask};

impl Actor {
    /// A control request of the child: `can_use_tool` asks for a permission or a question.
    pub(super) fn on_control_request(&mut self, request_id: &str, req: &Value, raw: Option<Value>) {
        let ask = match Ask::read(self.rec.id, request_id, req) {
            Ok(ask) => ask,
            Err(subtype) => {
                self.child.send(child::control_error(
                    request_id,
                    &format!("ccrm does not support the `{subtype}` control request"),
                ));
                return;
            }
        };
        if ask.info.kind == ApprovalKind::Permission
            && let Some(by) = self.approvals.policy(&self.rec, &ask.info.tool_name)
        {
            self.child.send(approvals::allow_line(
                &ask.info.approval_id,
                ask.info.input.clone(),
            ));
            self.log.push(ask.allowed_by(by), raw);
            return;
        }
        self.log.push(ask.event(), raw);
        self.add_pending(ask.info);
    }

    /// The child withdrew a request (the turn was interrupted).
    pub(super) fn on_control_cancel(&mut self, request_id: &str) {
        let Some(p) = self.approvals.withdraw(request_id) else {
            return;
        };
        self.approvals.end(
            p,
            Decision::Cancelled,
            "claude",
            Some("withdrawn by claude (the turn was interrupted)".into()),
            &self.log,
        );
        self.after_pending_change();
    }

    /// Answers a permission request: allow (once or for the session) or deny.
    pub(super) fn decide(
        &mut self,
        approval: Option<&str>,
        decision: Decision,
        message: Option<String>,
        by: &str,
    ) -> Result<DecisionInfo, ErrorBody> {
        let p = self
            .approvals
            .take_for_decision(approval, decision, &self.rec.id)?;
        self.child.send(approvals::decision_line(
            &p,
            decision,
            message.as_deref(),
            by,
        ));
        if decision == Decision::AllowSession && self.approvals.add_session_rule(&p.tool_name) {
            self.rec.session_allowed_tools = self.approvals.session_rules();
            self.save();
        }
        let info = DecisionInfo {
            approval_id: p.approval_id.clone(),
            decision,
            by: by.to_owned(),
            answers: BTreeMap::new(),
        };
        self.approvals.end(p, decision, by, message, &self.log);
        self.after_pending_change();
        Ok(info)
    }

    /// Answers a question, one answer per question it asks.
    pub(super) fn answer(
        &mut self,
        approval: Option<&str>,
        answers: &[String],
        by: &str,
    ) -> Result<DecisionInfo, ErrorBody> {
        let (p, map) = self
            .approvals
            .take_for_answer(approval, answers, &self.rec.id)?;
        let id = p.approval_id.clone();
        self.child.send(approvals::answer_line(p, &map));
        self.approvals.answered(&id, map.clone(), by, &self.log);
        self.after_pending_change();
        Ok(DecisionInfo {
            approval_id: id,
            decision: Decision::Allow,
            by: by.to_owned(),
            answers: map,
        })
    }

    fn add_pending(&mut self, info: ApprovalInfo) {
        self.approvals.add(info);
        if self.state == SessionState::Active {
            self.set_state(SessionState::WaitingPermission, None);
        }
        self.publish();
    }

    fn after_pending_change(&mut self) {
        if self.approvals.is_empty() && self.state == SessionState::WaitingPermission {
            self.set_state(SessionState::Active, None);
        }
        self.publish();
    }
}
