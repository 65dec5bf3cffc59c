//! Approvals and questions: what waits for a human, who decided what, and the rules that
//! decide without one.
//!
//! The child asks with `can_use_tool` control requests ([`Ask`]). A question
//! (`AskUserQuestion`) always waits for an answer; a permission request is allowed at once
//! by the policy ([`Approvals::policy`]: auto-allow opt-in, always-allowed tools, "allow for
//! this session" rules), else it waits. [`Approvals`] keeps the pending list, finds an entry
//! by id prefix, checks a decision or an answer against it, and reports every ending of an
//! approval (decided, cancelled by the CLI, aborted because the child died) as an event,
//! remembering the last [`DECIDED_MEMORY`] so a late answerer is told who won. The actor
//! ([`super::actor`]) writes the reply lines built here to the child.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use common::child;
use common::event::{Decision, EventKind, Question, now_ms};
use common::ids::{ApprovalId, SessionId};
use common::ipc::{ApprovalInfo, ApprovalKind, ErrorBody, ErrorCode};
use serde_json::{Value, json};

use crate::eventlog::EventLog;
use crate::store::SessionRecord;

/// Decided approvals remembered to tell late answerers who won.
const DECIDED_MEMORY: usize = 256;

/// A `can_use_tool` control request of the child, read into the approval it may become.
pub(super) struct Ask {
    /// The approval or question.
    pub(super) info: ApprovalInfo,
    /// Claude's id of the tool call (permission requests only).
    tool_use_id: Option<String>,
}

impl Ask {
    /// Reads a control request; any subtype but `can_use_tool` is returned as the error.
    pub(super) fn read(
        session_id: SessionId,
        request_id: &str,
        req: &Value,
    ) -> Result<Self, String> {
        let subtype = req
            .get("subtype")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if subtype != "can_use_tool" {
            return Err(subtype.to_owned());
        }
        let str_of = |k: &str| req.get(k).and_then(Value::as_str).map(str::to_owned);
        let tool_name = str_of("tool_name").unwrap_or_default();
        let input = req.get("input").cloned().unwrap_or_else(|| json!({}));
        let (kind, questions, tool_use_id) = if tool_name == "AskUserQuestion" {
            let questions: Vec<Question> = input
                .get("questions")
                .cloned()
                .and_then(|q| serde_json::from_value(q).ok())
                .unwrap_or_default();
            (ApprovalKind::Question, questions, None)
        } else {
            (ApprovalKind::Permission, Vec::new(), str_of("tool_use_id"))
        };
        Ok(Self {
            info: ApprovalInfo {
                approval_id: ApprovalId(request_id.to_owned()),
                session_id,
                kind,
                tool_name,
                input,
                description: str_of("description"),
                questions,
                created_ms: now_ms(),
            },
            tool_use_id,
        })
    }

    /// The event that announces the request to every surface.
    pub(super) fn event(&self) -> EventKind {
        let info = &self.info;
        match info.kind {
            ApprovalKind::Question => EventKind::Question {
                approval_id: info.approval_id.clone(),
                questions: info.questions.clone(),
            },
            ApprovalKind::Permission => EventKind::PermissionRequest {
                approval_id: info.approval_id.clone(),
                tool_name: info.tool_name.clone(),
                input: info.input.clone(),
                tool_use_id: self.tool_use_id.clone(),
                description: info.description.clone(),
            },
        }
    }

    /// The event of a permission request the policy (`by`) allowed at once.
    pub(super) fn allowed_by(&self, by: &str) -> EventKind {
        EventKind::PermissionDecision {
            approval_id: self.info.approval_id.clone(),
            tool_name: self.info.tool_name.clone(),
            decision: Decision::Allow,
            by: by.to_owned(),
            message: None,
        }
    }
}

/// The line that allows a tool call, with the input it runs with.
pub(super) fn allow_line(id: &ApprovalId, input: Value) -> Value {
    child::control_success(&id.0, json!({"behavior": "allow", "updatedInput": input}))
}

/// The line that answers a permission request with `decision` (allow or deny).
pub(super) fn decision_line(
    p: &ApprovalInfo,
    decision: Decision,
    message: Option<&str>,
    by: &str,
) -> Value {
    if decision != Decision::Deny {
        return allow_line(&p.approval_id, p.input.clone());
    }
    let msg = message.map_or_else(
        || format!("The user ({by}) denied this tool use."),
        str::to_owned,
    );
    child::control_success(
        &p.approval_id.0,
        json!({"behavior": "deny", "message": msg}),
    )
}

/// The line that answers a question: its input with the answers added.
pub(super) fn answer_line(p: ApprovalInfo, answers: &BTreeMap<String, String>) -> Value {
    let mut input = p.input;
    if let Value::Object(obj) = &mut input {
        obj.insert("answers".to_owned(), json!(answers));
    }
    allow_line(&p.approval_id, input)
}

/// The pending approvals of a session, the ones decided lately, and its session rules.
pub(super) struct Approvals {
    pending: Vec<ApprovalInfo>,
    decided: VecDeque<(ApprovalId, Decision, String)>,
    session_rules: BTreeSet<String>,
}

impl Approvals {
    /// No approval pending yet; `session_rules` are the tools allowed for this session.
    pub(super) fn new(session_rules: &[String]) -> Self {
        Self {
            pending: Vec::new(),
            decided: VecDeque::new(),
            session_rules: session_rules.iter().cloned().collect(),
        }
    }

    /// How many approvals are pending.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none is pending.
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending approvals, oldest first.
    pub(super) fn infos(&self) -> Vec<ApprovalInfo> {
        self.pending.clone()
    }

    /// The tools allowed for this session ("allow for this session"), sorted.
    pub(super) fn session_rules(&self) -> Vec<String> {
        self.session_rules.iter().cloned().collect()
    }

    /// Who allows `tool` without asking, if anyone: the auto-allow opt-in, the session's
    /// always-allowed tools, or a session rule.
    pub(super) fn policy(&self, rec: &SessionRecord, tool: &str) -> Option<&'static str> {
        if rec.auto_allow {
            Some("policy (auto-allow)")
        } else if rec.allowed_tools.iter().any(|t| t == tool) {
            Some("policy (always allowed)")
        } else if self.session_rules.contains(tool) {
            Some("session rule")
        } else {
            None
        }
    }

    /// Adds a request that waits for a human.
    pub(super) fn add(&mut self, info: ApprovalInfo) {
        self.pending.push(info);
    }

    /// Adds a session rule for `tool`; `false` when it had one.
    pub(super) fn add_session_rule(&mut self, tool: &str) -> bool {
        self.session_rules.insert(tool.to_owned())
    }

    /// Takes the permission request that `decision` answers, after checking it fits.
    pub(super) fn take_for_decision(
        &mut self,
        approval: Option<&str>,
        decision: Decision,
        session: &SessionId,
    ) -> Result<ApprovalInfo, ErrorBody> {
        if !matches!(
            decision,
            Decision::Allow | Decision::AllowSession | Decision::Deny
        ) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "decision must be allow, allow_session or deny",
            ));
        }
        let idx = self.find(approval, session)?;
        if self.pending[idx].kind == ApprovalKind::Question && decision != Decision::Deny {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "this is a question: answer it with `ccrm answer` (or deny it)",
            ));
        }
        Ok(self.pending.remove(idx))
    }

    /// Takes the question that `answers` answer, with each question's resolved answer.
    pub(super) fn take_for_answer(
        &mut self,
        approval: Option<&str>,
        answers: &[String],
        session: &SessionId,
    ) -> Result<(ApprovalInfo, BTreeMap<String, String>), ErrorBody> {
        let idx = self.find(approval, session)?;
        if self.pending[idx].kind != ApprovalKind::Question {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "this is a permission request: use `ccrm approve` or `ccrm deny`",
            ));
        }
        let questions = &self.pending[idx].questions;
        if answers.len() != questions.len() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!(
                    "{} question(s) need {} answer(s), got {}",
                    questions.len(),
                    questions.len(),
                    answers.len()
                ),
            ));
        }
        let map = questions
            .iter()
            .zip(answers)
            .map(|(q, a)| (q.question.clone(), resolve_answer(q, a)))
            .collect();
        Ok((self.pending.remove(idx), map))
    }

    /// Takes the request the child withdrew (`control_cancel_request`), if it is pending.
    pub(super) fn withdraw(&mut self, request_id: &str) -> Option<ApprovalInfo> {
        let idx = self
            .pending
            .iter()
            .position(|p| p.approval_id.0 == request_id)?;
        Some(self.pending.remove(idx))
    }

    /// Reports the answers to a question (an event for every surface) and remembers them.
    pub(super) fn answered(
        &mut self,
        id: &ApprovalId,
        answers: BTreeMap<String, String>,
        by: &str,
        log: &EventLog,
    ) {
        log.push(
            EventKind::Answer {
                approval_id: id.clone(),
                answers,
                by: by.to_owned(),
                decision: Decision::Allow,
            },
            None,
        );
        self.remember(id, Decision::Allow, by);
    }

    /// Records how a pending approval ended (an event for every surface) and remembers it,
    /// so a late answer can be told who won.
    pub(super) fn end(
        &mut self,
        p: ApprovalInfo,
        decision: Decision,
        by: &str,
        message: Option<String>,
        log: &EventLog,
    ) {
        let id = p.approval_id;
        if p.kind == ApprovalKind::Question {
            log.push(
                EventKind::Answer {
                    approval_id: id.clone(),
                    answers: BTreeMap::new(),
                    by: by.to_owned(),
                    decision,
                },
                None,
            );
        } else {
            log.push(
                EventKind::PermissionDecision {
                    approval_id: id.clone(),
                    tool_name: p.tool_name,
                    decision,
                    by: by.to_owned(),
                    message,
                },
                None,
            );
        }
        self.remember(&id, decision, by);
    }

    /// Ends every pending approval the same way (the turn ended, or the child died).
    pub(super) fn end_all(&mut self, decision: Decision, by: &str, message: &str, log: &EventLog) {
        for p in std::mem::take(&mut self.pending) {
            self.end(p, decision, by, Some(message.to_owned()), log);
        }
    }

    fn remember(&mut self, id: &ApprovalId, d: Decision, by: &str) {
        if self.decided.len() == DECIDED_MEMORY {
            self.decided.pop_front();
        }
        self.decided.push_back((id.clone(), d, by.to_owned()));
    }

    /// The index of the pending approval `approval` names (an id prefix; `None` when exactly
    /// one is pending). A decided one is reported as such, with who decided it.
    fn find(&self, approval: Option<&str>, session: &SessionId) -> Result<usize, ErrorBody> {
        let short = session.short();
        let Some(prefix) = approval else {
            return match self.pending.len() {
                0 => Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("session {short} has no pending approval"),
                )),
                1 => Ok(0),
                _ => Err(ErrorBody::new(
                    ErrorCode::Ambiguous,
                    format!(
                        "session {short} has {} pending approvals ({}); name one",
                        self.pending.len(),
                        self.pending
                            .iter()
                            .map(|p| p.approval_id.short().to_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            };
        };
        let hits: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.approval_id.0.starts_with(prefix))
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [i] => Ok(*i),
            [] => Err(self.already_decided(prefix).unwrap_or_else(|| {
                ErrorBody::new(
                    ErrorCode::NotFound,
                    format!(
                        "no pending approval `{prefix}` in session {short}; run `ccrm approvals`"
                    ),
                )
            })),
            _ => Err(ErrorBody::new(
                ErrorCode::Ambiguous,
                format!(
                    "`{prefix}` matches {} approvals; give more characters",
                    hits.len()
                ),
            )),
        }
    }

    /// The error for an approval that was decided already, if `prefix` names one.
    fn already_decided(&self, prefix: &str) -> Option<ErrorBody> {
        let (id, d, by) = self
            .decided
            .iter()
            .rev()
            .find(|(id, _, _)| id.0.starts_with(prefix))?;
        let verb = serde_json::to_value(d)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Some(ErrorBody::new(
            ErrorCode::AlreadyDecided,
            format!(
                "approval {} was already answered: {verb} by {by}",
                id.short()
            ),
        ))
    }
}

/// Picks the label an answer names: an option number (1-based), a label (any case), or the
/// text itself (free-form answers are allowed).
fn resolve_answer(q: &Question, answer: &str) -> String {
    let answer = answer.trim();
    if let Ok(n) = answer.parse::<usize>()
        && let Some(opt) = n.checked_sub(1).and_then(|i| q.options.get(i))
    {
        return opt.label.clone();
    }
    q.options
        .iter()
        .find(|o| o.label.eq_ignore_ascii_case(answer))
        .map_or_else(|| answer.to_owned(), |o| o.label.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::event::QuestionOption;

    #[test]
    fn answers_resolve_by_number_label_or_text() {
        let q = Question {
            question: "Pick".into(),
            header: None,
            options: vec![
                QuestionOption {
                    label: "Red".into(),
                    description: None,
                },
                QuestionOption {
                    label: "Blue".into(),
                    description: None,
                },
            ],
            multi_select: false,
        };
        assert_eq!(resolve_answer(&q, "2"), "Blue");
        assert_eq!(resolve_answer(&q, "red"), "Red");
        assert_eq!(resolve_answer(&q, "green"), "green");
        assert_eq!(resolve_answer(&q, "9"), "9");
    }
}
