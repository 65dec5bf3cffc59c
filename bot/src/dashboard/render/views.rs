//! The shapes the templates render: one [`EventView`] per event, its kind-specific
//! [`Body`], and the views of tool calls, results, approvals and questions. Plain data;
//! [`super`] builds them from stored events.

use super::tools;

/// One event as the page shows it.
#[derive(Clone, Debug)]
pub struct EventView {
    /// The bot's row id: the DOM id, the live stream's cursor.
    pub id: i64,
    /// The event's kind (`prompt`, `tool_use`, ...): a CSS class.
    pub kind: &'static str,
    /// Event time (Unix ms).
    pub ts_ms: u64,
    /// Event time as `HH:MM:SS` UTC (the page shows local time).
    pub time: String,
    /// What to show.
    pub body: Body,
}

/// The kind-specific part of an [`EventView`].
#[derive(Clone, Debug)]
pub enum Body {
    /// A prompt with where it came from.
    Prompt {
        /// Its text.
        text: String,
        /// `dashboard:alice`, `cli`, `telegram:42`, ...
        origin: String,
        /// The surface alone (`cli`, `rest`, `dashboard`, ...), a CSS class.
        surface: String,
        /// Prompts waiting ahead of it when it was accepted.
        queued_behind: usize,
    },
    /// A turn started.
    TurnStarted,
    /// A piece of streamed text.
    Delta(String),
    /// A finished text block as sanitised HTML.
    Text(String),
    /// A tool call, with its result when it is known.
    Tool(Box<ToolView>),
    /// A tool result whose call is not on the page.
    ToolResult(ResultView),
    /// A permission request.
    Approval(Box<ApprovalView>),
    /// How a permission request ended.
    Decision {
        /// The request.
        approval_id: String,
        /// `allowed`, `denied`, ...
        label: String,
        /// Whether the tool may run.
        allowed: bool,
        /// Who decided.
        by: String,
        /// The message for the model, if any.
        message: Option<String>,
    },
    /// An `AskUserQuestion`.
    Question(Box<QuestionView>),
    /// How a question ended.
    Answer {
        /// The question.
        approval_id: String,
        /// Question → answer.
        answers: Vec<(String, String)>,
        /// Who answered.
        by: String,
        /// `answered`, `cancelled`, ...
        label: String,
    },
    /// The summary line of a turn.
    Result(Box<tools::TurnSummary>),
    /// An API retry.
    Retry(String),
    /// An error.
    Error(String),
    /// An interrupt.
    Interrupted(String),
    /// The session went to a terminal.
    Attached(String),
    /// The terminal gave it back.
    Detached(String),
    /// A state change.
    State {
        /// The new state.
        state: &'static str,
        /// Why, when stopped or failed.
        reason: Option<String>,
    },
}

/// A tool call.
#[derive(Clone, Debug)]
pub struct ToolView {
    /// Claude's id for the call (the result finds its call by it).
    pub tool_use_id: String,
    /// Tool name.
    pub name: String,
    /// One line: the command, file or pattern.
    pub summary: String,
    /// The input: a diff, a command, or JSON.
    pub detail: tools::Detail,
    /// The result, when it is on the same page.
    pub result: Option<ResultView>,
}

/// A tool result.
#[derive(Clone, Debug)]
pub struct ResultView {
    /// Its event's row id (the result keeps its own DOM id inside its call).
    pub id: i64,
    /// The call it answers.
    pub tool_use_id: String,
    /// The output, cut at 20,000 characters.
    pub content: String,
    /// Whether the tool failed or was refused.
    pub is_error: bool,
}

/// A permission request, pending or decided.
#[derive(Clone, Debug)]
pub struct ApprovalView {
    /// The approval id (what the buttons answer).
    pub approval_id: String,
    /// The session (a link on the approvals page).
    pub session_id: String,
    /// The session's name or short id.
    pub session_label: String,
    /// Tool name.
    pub tool_name: String,
    /// One line: the command, file or pattern.
    pub summary: String,
    /// Claude's description of the call.
    pub description: Option<String>,
    /// The input, with the diff of a file edit.
    pub detail: tools::Detail,
    /// `None` while pending, else who decided what.
    pub outcome: Option<String>,
    /// When it was asked (Unix ms).
    pub created_ms: u64,
}

/// A question, pending or answered.
#[derive(Clone, Debug)]
pub struct QuestionView {
    /// The approval id.
    pub approval_id: String,
    /// The session.
    pub session_id: String,
    /// The session's name or short id.
    pub session_label: String,
    /// Every question of the request, in order.
    pub questions: Vec<OneQuestion>,
    /// `None` while pending, else who answered what.
    pub outcome: Option<String>,
    /// When it was asked (Unix ms).
    pub created_ms: u64,
}

/// One question of a [`QuestionView`].
#[derive(Clone, Debug)]
pub struct OneQuestion {
    /// Its position (form fields are `q<index>`).
    pub index: usize,
    /// The short header.
    pub header: Option<String>,
    /// The question.
    pub text: String,
    /// Whether several options may be chosen.
    pub multi: bool,
    /// Option labels and descriptions.
    pub options: Vec<(String, Option<String>)>,
}
