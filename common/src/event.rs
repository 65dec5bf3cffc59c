//! The normalised event model: what happened in a session, in a form every surface (CLI,
//! REST, chat) can show without knowing Claude Code's stream-json. Each event keeps the raw
//! CLI line beside it (`raw`) for fidelity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{ApprovalId, SessionId};

/// Lifecycle state of a session (DESIGN.md "Sessions").
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The child is being spawned and has not answered its handshake yet.
    Starting,
    /// The child is up and no turn is running.
    Idle,
    /// A turn is running.
    Active,
    /// A turn is blocked on a permission request or a question.
    WaitingPermission,
    /// The child exited on request; the session can be resumed.
    Stopped,
    /// The session is owned by a terminal (tmux) TUI.
    Attached,
    /// The child died or misbehaved; `reason` says why. It can be resumed.
    Failed,
}

impl SessionState {
    /// True while a child process belongs to the session.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Starting | Self::Idle | Self::Active | Self::WaitingPermission | Self::Attached
        )
    }

    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Idle => "idle",
            Self::Active => "active",
            Self::WaitingPermission => "waiting_permission",
            Self::Stopped => "stopped",
            Self::Attached => "attached",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a prompt or decision came from.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    /// The local `ccrm` CLI.
    Cli,
    /// The REST API.
    Rest,
    /// The web dashboard.
    Dashboard,
    /// A Discord user.
    Discord,
    /// A Telegram user.
    Telegram,
    /// The Claude Code TUI while attached in tmux.
    Tui,
    /// The daemon itself (policy decisions, shutdown).
    Daemon,
}

/// Who did something: the surface and, where known, the user on it.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The surface the action came from.
    pub surface: Surface,
    /// A user name or id on that surface, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's display name on that surface (a chat user's name as people see it),
    /// when it differs from `user`; absent from older peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Origin {
    /// An origin with no user name.
    pub fn new(surface: Surface) -> Self {
        Self {
            surface,
            user: None,
            name: None,
        }
    }

    /// An origin naming its user.
    pub fn user(surface: Surface, user: impl Into<String>) -> Self {
        Self {
            surface,
            user: Some(user.into()),
            name: None,
        }
    }

    /// The same origin with the user's display name (ignored when empty).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.name = (!name.trim().is_empty()).then_some(name);
        self
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let surface = serde_json::to_value(self.surface)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        // A display name reads best: "Alice (discord)"; else the surface and the user
        // id or key name: "rest:alice".
        match (&self.name, &self.user) {
            (Some(name), _) => write!(f, "{name} ({surface})"),
            (None, Some(user)) => write!(f, "{surface}:{user}"),
            (None, None) => f.write_str(&surface),
        }
    }
}

/// How a pending approval ended.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The tool may run.
    Allow,
    /// The tool may run, and later calls of the same tool in this session are allowed too.
    AllowSession,
    /// The tool may not run; the model is told why.
    Deny,
    /// The CLI withdrew the request (the turn was interrupted).
    Cancelled,
    /// The session ended (stop, kill, crash, shutdown) before anyone answered.
    Aborted,
}

impl Decision {
    /// True when the tool was allowed to run.
    pub fn allows(self) -> bool {
        matches!(self, Self::Allow | Self::AllowSession)
    }
}

/// One question of an `AskUserQuestion` tool call.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    /// The question text (also the key of its answer).
    pub question: String,
    /// A short header, when the model gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The choices offered.
    #[serde(default)]
    pub options: Vec<QuestionOption>,
    /// Whether several options may be chosen.
    #[serde(default, rename = "multiSelect")]
    pub multi_select: bool,
}

/// One choice of a [`Question`].
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuestionOption {
    /// What the user picks.
    pub label: String,
    /// Longer explanation, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What happened. Internally tagged by `kind` so a stored event reads well.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The session moved to `state`.
    State {
        /// The new state.
        state: SessionState,
        /// Why, for `failed` and `stopped`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A prompt was accepted into the session's queue.
    Prompt {
        /// Per-session prompt number, starting at 1.
        prompt_id: u64,
        /// The prompt text.
        text: String,
        /// Who sent it.
        origin: Origin,
        /// How many prompts were waiting ahead of it.
        #[serde(default)]
        queued_behind: usize,
    },
    /// A queued prompt was handed to the child: its turn starts now.
    TurnStarted {
        /// The prompt whose turn this is.
        prompt_id: u64,
    },
    /// A piece of assistant text as it streams (partial message).
    AssistantDelta {
        /// The new text.
        text: String,
    },
    /// A finished assistant text block.
    AssistantText {
        /// The block's text.
        text: String,
    },
    /// The model called a tool.
    ToolUse {
        /// Claude's id for the call.
        tool_use_id: String,
        /// Tool name (`Bash`, `Write`, ...).
        name: String,
        /// The tool input as the model sent it.
        input: Value,
    },
    /// A tool finished.
    ToolResult {
        /// The call this answers.
        tool_use_id: String,
        /// The result text (long results are cut; see `raw`).
        content: String,
        /// Whether the tool failed or was refused.
        is_error: bool,
    },
    /// A tool needs approval.
    PermissionRequest {
        /// Id to answer with.
        approval_id: ApprovalId,
        /// Tool name.
        tool_name: String,
        /// Tool input.
        input: Value,
        /// Claude's id for the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
        /// Claude's short description of the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A permission request ended.
    PermissionDecision {
        /// The request.
        approval_id: ApprovalId,
        /// Tool name.
        tool_name: String,
        /// The outcome.
        decision: Decision,
        /// Who decided (a person, `policy`, `session rule`, `claude`, `daemon`).
        by: String,
        /// Message for the model (deny) or explanation (aborted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The model asked the user a question (`AskUserQuestion`).
    Question {
        /// Id to answer with.
        approval_id: ApprovalId,
        /// The questions.
        questions: Vec<Question>,
    },
    /// A question was answered, cancelled or aborted.
    Answer {
        /// The question.
        approval_id: ApprovalId,
        /// Question text → chosen label(s) (comma-joined when several).
        answers: BTreeMap<String, String>,
        /// Who answered.
        by: String,
        /// `allow` when answered; `cancelled`/`aborted`/`deny` otherwise.
        decision: Decision,
    },
    /// A turn ended.
    TurnResult {
        /// The prompt whose turn ended, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt_id: Option<u64>,
        /// Final text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// Whether the turn failed (API error, interrupt, max turns).
        is_error: bool,
        /// The CLI's result subtype.
        subtype: String,
        /// Cumulative session cost in USD.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
        /// Wall time of the turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        /// Model round trips in the turn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        num_turns: Option<u64>,
    },
    /// The CLI is retrying a failed API call.
    ApiRetry {
        /// Attempt number.
        attempt: u64,
        /// HTTP status, if there was a response.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u64>,
        /// Error kind.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Something went wrong that is not a turn result (spawn failure, bad output, stderr).
    Error {
        /// Human-readable text.
        message: String,
    },
    /// An interrupt was requested.
    Interrupted {
        /// Who asked.
        by: String,
    },
    /// The session was handed to a terminal TUI.
    Attached {
        /// tmux target.
        target: String,
    },
    /// The terminal TUI gave the session back.
    Detached {
        /// Why (tui exited, client detached, daemon stop).
        reason: String,
    },
}

impl EventKind {
    /// The `kind` tag as on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Self::State { .. } => "state",
            Self::Prompt { .. } => "prompt",
            Self::TurnStarted { .. } => "turn_started",
            Self::AssistantDelta { .. } => "assistant_delta",
            Self::AssistantText { .. } => "assistant_text",
            Self::ToolUse { .. } => "tool_use",
            Self::ToolResult { .. } => "tool_result",
            Self::PermissionRequest { .. } => "permission_request",
            Self::PermissionDecision { .. } => "permission_decision",
            Self::Question { .. } => "question",
            Self::Answer { .. } => "answer",
            Self::TurnResult { .. } => "turn_result",
            Self::ApiRetry { .. } => "api_retry",
            Self::Error { .. } => "error",
            Self::Interrupted { .. } => "interrupted",
            Self::Attached { .. } => "attached",
            Self::Detached { .. } => "detached",
        }
    }
}

/// One event of one session.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Per-session sequence number, starting at 1, without gaps.
    pub seq: u64,
    /// Unix time in milliseconds.
    pub ts_ms: u64,
    /// The session.
    pub session_id: SessionId,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The raw CLI line this came from, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Value>,
}

/// Milliseconds since the Unix epoch, for event timestamps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(kind: EventKind) {
        let ev = Event {
            seq: 7,
            ts_ms: 1,
            session_id: SessionId::new(),
            kind,
            raw: Some(serde_json::json!({"type": "x"})),
        };
        let text = serde_json::to_string(&ev).expect("serialize");
        let back: Event = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, ev, "{text}");
    }

    #[test]
    fn every_kind_round_trips() {
        let id = ApprovalId("req-1".into());
        let kinds = vec![
            EventKind::State {
                state: SessionState::WaitingPermission,
                reason: Some("x".into()),
            },
            EventKind::Prompt {
                prompt_id: 1,
                text: "hi".into(),
                origin: Origin::user(Surface::Telegram, "42"),
                queued_behind: 2,
            },
            EventKind::TurnStarted { prompt_id: 1 },
            EventKind::AssistantDelta { text: "a".into() },
            EventKind::AssistantText { text: "b".into() },
            EventKind::ToolUse {
                tool_use_id: "t".into(),
                name: "Write".into(),
                input: serde_json::json!({"file_path": "/x"}),
            },
            EventKind::ToolResult {
                tool_use_id: "t".into(),
                content: "ok".into(),
                is_error: false,
            },
            EventKind::PermissionRequest {
                approval_id: id.clone(),
                tool_name: "Write".into(),
                input: serde_json::json!({}),
                tool_use_id: None,
                description: Some("d".into()),
            },
            EventKind::PermissionDecision {
                approval_id: id.clone(),
                tool_name: "Write".into(),
                decision: Decision::AllowSession,
                by: "cli".into(),
                message: None,
            },
            EventKind::Question {
                approval_id: id.clone(),
                questions: vec![Question {
                    question: "Q?".into(),
                    header: None,
                    options: vec![QuestionOption {
                        label: "A".into(),
                        description: None,
                    }],
                    multi_select: false,
                }],
            },
            EventKind::Answer {
                approval_id: id,
                answers: BTreeMap::from([("Q?".into(), "A".into())]),
                by: "cli".into(),
                decision: Decision::Allow,
            },
            EventKind::TurnResult {
                prompt_id: Some(1),
                text: Some("done".into()),
                is_error: false,
                subtype: "success".into(),
                cost_usd: Some(0.5),
                duration_ms: Some(3),
                num_turns: Some(1),
            },
            EventKind::ApiRetry {
                attempt: 1,
                status: Some(529),
                error: None,
            },
            EventKind::Error {
                message: "e".into(),
            },
            EventKind::Interrupted { by: "cli".into() },
            EventKind::Attached {
                target: "ccrm-x".into(),
            },
            EventKind::Detached {
                reason: "exit".into(),
            },
        ];
        for kind in kinds {
            let name = kind.name();
            let value = serde_json::to_value(&kind).expect("value");
            assert_eq!(value["kind"], name);
            round_trip(kind);
        }
    }

    #[test]
    fn origin_displays_user() {
        assert_eq!(
            Origin::user(Surface::Discord, "bob").to_string(),
            "discord:bob"
        );
        assert_eq!(Origin::new(Surface::Cli).to_string(), "cli");
        let alice = Origin::user(Surface::Telegram, "42").named("Alice");
        assert_eq!(alice.to_string(), "Alice (telegram)");
        assert_eq!(Origin::user(Surface::Rest, "k").named(" ").name, None);
        // Older peers send no name, and an origin with one still parses for them.
        let old: Origin =
            serde_json::from_str(r#"{"surface":"discord","user":"7"}"#).expect("old origin");
        assert_eq!(old, Origin::user(Surface::Discord, "7"));
        let v = serde_json::to_value(&alice).expect("json");
        assert_eq!(v["name"], "Alice");
    }
}
