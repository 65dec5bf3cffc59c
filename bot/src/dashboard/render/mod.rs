//! Stored events turned into what the session page shows: one [`EventView`] per event,
//! rendered by `templates/event.html` both for history pages and for the live stream, so
//! an event looks the same however it arrived. Everything untrusted (prompts, model text,
//! tool input and output, file names) reaches the page through askama's escaping, or
//! through [`markdown::to_html`], which sanitises.
//!
//! - [`markdown`]: assistant text → sanitised HTML.
//! - [`diff`]: `Edit`/`MultiEdit`/`Write` input → a unified diff.
//! - [`tools`]: one-line summaries of tool calls, tool input for display, turn summaries.
//! - [`time`]: timestamps, "5 min ago", money and durations.
//! - [`views`](mod@views): the view types the templates render.

pub mod diff;
pub mod markdown;
pub mod time;
pub mod tools;
pub mod views;

use std::collections::HashMap;

use common::event::{Decision, EventKind, Question, SessionState};
use common::ids::SessionId;

pub use self::views::{
    ApprovalView, Body, EventView, OneQuestion, QuestionView, ResultView, ToolView,
};
use crate::db::{ApprovalRow, ApprovalStatus, Db, DbError, StoredEvent};

/// Longest tool result shown inline, in characters.
const MAX_RESULT_CHARS: usize = 20_000;

/// Everything the views of a batch of events need from the store, read up front so
/// rendering itself does no I/O.
#[derive(Default)]
pub struct Lookups {
    approvals: HashMap<String, ApprovalRow>,
    turns: HashMap<i64, Vec<(String, serde_json::Value)>>,
    names: HashMap<SessionId, String>,
}

impl Lookups {
    /// Reads what `events` refer to: the current state of their approvals and the tool
    /// calls of the turns they end.
    pub async fn load(db: &Db, events: &[StoredEvent]) -> Result<Self, DbError> {
        let mut out = Self::default();
        for ev in events {
            match &ev.event.kind {
                EventKind::PermissionRequest { approval_id, .. }
                | EventKind::Question { approval_id, .. } => {
                    match db.get_approval(&approval_id.0).await {
                        Ok(row) => {
                            out.approvals.insert(approval_id.0.clone(), row);
                        }
                        Err(DbError::NotFound) => {}
                        Err(e) => return Err(e),
                    }
                }
                EventKind::TurnResult { .. } => {
                    let tools = db.turn_tools(&ev.event.session_id, ev.id).await?;
                    out.turns.insert(ev.id, tools);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Adds session names for labels (the approvals page shows many sessions).
    pub fn with_names(mut self, names: HashMap<SessionId, String>) -> Self {
        self.names = names;
        self
    }

    fn label(&self, id: &SessionId) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| short_id(&id.to_string()))
    }
}

/// The views of `events` (oldest first). Results whose call is in the batch are nested in
/// it. With `tail` (the newest page), streamed text after the last finished block is kept
/// so a running answer shows; otherwise deltas are left out, as their finished block
/// follows.
pub fn views(events: &[StoredEvent], lookups: &Lookups, tail: bool) -> Vec<EventView> {
    let last_block = events
        .iter()
        .rposition(|e| {
            matches!(
                e.event.kind,
                EventKind::AssistantText { .. }
                    | EventKind::ToolUse { .. }
                    | EventKind::TurnResult { .. }
            )
        })
        .map_or(-1, |p| p as i64);
    let mut out: Vec<EventView> = Vec::with_capacity(events.len());
    let mut tools: HashMap<String, usize> = HashMap::new();
    for (pos, ev) in events.iter().enumerate() {
        if matches!(ev.event.kind, EventKind::AssistantDelta { .. })
            && (!tail || (pos as i64) < last_block)
        {
            continue;
        }
        let view = view(ev, lookups);
        match &view.body {
            Body::Tool(t) => {
                tools.insert(t.tool_use_id.clone(), out.len());
            }
            Body::ToolResult(r) => {
                if let Some(at) = tools.get(&r.tool_use_id)
                    && let Some(Body::Tool(t)) = out.get_mut(*at).map(|v| &mut v.body)
                {
                    t.result = Some(r.clone());
                    continue;
                }
            }
            _ => {}
        }
        out.push(view);
    }
    out
}

/// The view of one event.
pub fn view(ev: &StoredEvent, lookups: &Lookups) -> EventView {
    let e = &ev.event;
    let body = match &e.kind {
        EventKind::Prompt {
            text,
            origin,
            queued_behind,
            ..
        } => Body::Prompt {
            text: text.clone(),
            origin: origin.to_string(),
            surface: origin
                .to_string()
                .split(':')
                .next()
                .unwrap_or("")
                .to_owned(),
            queued_behind: *queued_behind,
        },
        EventKind::TurnStarted { .. } => Body::TurnStarted,
        EventKind::AssistantDelta { text } => Body::Delta(text.clone()),
        EventKind::AssistantText { text } => Body::Text(markdown::to_html(text)),
        EventKind::ToolUse {
            tool_use_id,
            name,
            input,
        } => Body::Tool(Box::new(ToolView {
            tool_use_id: tool_use_id.clone(),
            name: name.clone(),
            summary: tools::summary(name, input),
            detail: tools::detail(name, input),
            result: None,
        })),
        EventKind::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => Body::ToolResult(ResultView {
            id: ev.id,
            tool_use_id: tool_use_id.clone(),
            content: content.chars().take(MAX_RESULT_CHARS).collect(),
            is_error: *is_error,
        }),
        EventKind::PermissionRequest {
            approval_id,
            tool_name,
            input,
            description,
            ..
        } => Body::Approval(Box::new(ApprovalView {
            approval_id: approval_id.0.clone(),
            session_id: e.session_id.to_string(),
            session_label: lookups.label(&e.session_id),
            tool_name: tool_name.clone(),
            summary: tools::summary(tool_name, input),
            description: description.clone(),
            detail: tools::detail(tool_name, input),
            outcome: lookups.approvals.get(&approval_id.0).and_then(outcome),
            created_ms: e.ts_ms,
        })),
        EventKind::PermissionDecision {
            approval_id,
            decision,
            by,
            message,
            ..
        } => Body::Decision {
            approval_id: approval_id.0.clone(),
            label: decision_label(*decision).to_owned(),
            allowed: decision.allows(),
            by: by.clone(),
            message: message.clone(),
        },
        EventKind::Question {
            approval_id,
            questions,
        } => Body::Question(Box::new(QuestionView {
            approval_id: approval_id.0.clone(),
            session_id: e.session_id.to_string(),
            session_label: lookups.label(&e.session_id),
            questions: one_questions(questions),
            outcome: lookups.approvals.get(&approval_id.0).and_then(outcome),
            created_ms: e.ts_ms,
        })),
        EventKind::Answer {
            approval_id,
            answers,
            by,
            decision,
        } => Body::Answer {
            approval_id: approval_id.0.clone(),
            answers: answers
                .iter()
                .map(|(q, a)| (q.clone(), a.clone()))
                .collect(),
            by: by.clone(),
            label: match decision {
                Decision::Allow | Decision::AllowSession => "answered".to_owned(),
                other => decision_label(*other).to_owned(),
            },
        },
        EventKind::TurnResult {
            text: _,
            is_error,
            subtype,
            cost_usd,
            duration_ms,
            num_turns,
            ..
        } => {
            let calls = lookups.turns.get(&ev.id).map_or(&[][..], Vec::as_slice);
            Body::Result(Box::new(tools::turn_summary(
                calls,
                *is_error,
                subtype,
                *cost_usd,
                *duration_ms,
                *num_turns,
            )))
        }
        EventKind::ApiRetry {
            attempt,
            status,
            error,
        } => Body::Retry(format!(
            "API retry {attempt}{}{}",
            status
                .map(|s| format!(" after HTTP {s}"))
                .unwrap_or_default(),
            error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )),
        EventKind::Error { message } => Body::Error(message.clone()),
        EventKind::Interrupted { by } => Body::Interrupted(by.clone()),
        EventKind::Attached { target } => Body::Attached(target.clone()),
        EventKind::Detached { reason } => Body::Detached(reason.clone()),
        EventKind::State { state, reason } => Body::State {
            state: state_label(*state),
            reason: reason.clone(),
        },
    };
    EventView {
        id: ev.id,
        kind: e.kind.name(),
        ts_ms: e.ts_ms,
        time: time::hms(e.ts_ms),
        body,
    }
}

/// The view of a pending or decided approval row (the approvals page), with the same
/// shape as one rendered from its event.
pub fn approval_row_view(row: &ApprovalRow, session_label: String) -> Body {
    let outcome = outcome(row);
    if row.kind == common::ipc::ApprovalKind::Question {
        let questions: Vec<Question> = row
            .input
            .get("questions")
            .cloned()
            .and_then(|q| serde_json::from_value(q).ok())
            .unwrap_or_default();
        return Body::Question(Box::new(QuestionView {
            approval_id: row.id.0.clone(),
            session_id: row.session_id.to_string(),
            session_label,
            questions: one_questions(&questions),
            outcome,
            created_ms: row.created_ms,
        }));
    }
    Body::Approval(Box::new(ApprovalView {
        approval_id: row.id.0.clone(),
        session_id: row.session_id.to_string(),
        session_label,
        tool_name: row.tool_name.clone(),
        summary: tools::summary(&row.tool_name, &row.input),
        description: None,
        detail: tools::detail(&row.tool_name, &row.input),
        outcome,
        created_ms: row.created_ms,
    }))
}

fn one_questions(questions: &[Question]) -> Vec<OneQuestion> {
    questions
        .iter()
        .enumerate()
        .map(|(index, q)| OneQuestion {
            index,
            header: q.header.clone(),
            text: q.question.clone(),
            multi: q.multi_select,
            options: q
                .options
                .iter()
                .map(|o| (o.label.clone(), o.description.clone()))
                .collect(),
        })
        .collect()
}

/// "allowed by cli:root", or `None` while pending.
fn outcome(row: &ApprovalRow) -> Option<String> {
    if row.status == ApprovalStatus::Pending {
        return None;
    }
    let what = match (row.kind, row.decision) {
        (common::ipc::ApprovalKind::Question, Some(Decision::Allow | Decision::AllowSession)) => {
            "answered"
        }
        (_, Some(d)) => decision_label(d),
        (_, None) => "decided",
    };
    let by = row.decided_by.as_deref().unwrap_or("someone");
    let mut s = format!("{what} by {by}");
    if let Some(answers) = &row.answers {
        let list: Vec<String> = answers.values().cloned().collect();
        s.push_str(&format!(": {}", list.join("; ")));
    }
    if let Some(m) = &row.message {
        s.push_str(&format!(" — “{m}”"));
    }
    Some(s)
}

/// How a decision reads on the page.
pub fn decision_label(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allowed",
        Decision::AllowSession => "allowed for this session",
        Decision::Deny => "denied",
        Decision::Cancelled => "cancelled",
        Decision::Aborted => "aborted",
    }
}

/// How a state reads on the page (`attached` is spelled out: the terminal has it).
pub fn state_label(s: SessionState) -> &'static str {
    match s {
        SessionState::Attached => "attached at a terminal",
        SessionState::WaitingPermission => "waiting for approval",
        other => other.as_str(),
    }
}

/// The first 8 characters of an id.
pub fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}
