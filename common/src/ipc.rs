//! The `ccrm` ⇄ `ccrmd` protocol: one JSON object per line over the daemon's Unix socket.
//!
//! A request is `{"id": <any>, "cmd": "<name>", "args": {...}}`; the reply is
//! `{"id": <same>, "ok": true, "data": ...}` or `{"id": <same>, "ok": false, "error":
//! {"code": "...", "message": "..."}}`. Streaming calls (`follow`) send
//! `{"id", "ok": true, "event": {...}}` lines and finish with `{"id", "ok": true, "end": true}`.
//! Command names follow the original CCRM (`session.start`, `prompt.send`, ...).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{Decision, Event, Origin, Question, SessionState};
use crate::ids::{ApprovalId, SessionId};
use crate::workspace::{
    ExecArgs, ExecCounts, ExecFollowArgs, ExecRef, WorkspaceCreateArgs, WorkspaceRef,
};

/// A request as sent by a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in every reply line.
    pub id: Value,
    /// The command and its arguments.
    #[serde(flatten)]
    pub cmd: Command,
}

/// Every command the daemon understands. Serialised adjacently as `cmd` + `args`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "args")]
pub enum Command {
    /// Daemon pid, version, protocol, paths and session counts.
    #[serde(rename = "daemon.status")]
    DaemonStatus(NoArgs),
    /// Graceful daemon shutdown (sessions stopped, then the daemon exits).
    #[serde(rename = "daemon.stop")]
    DaemonStop(NoArgs),
    /// Start a new session.
    #[serde(rename = "session.start")]
    SessionStart(StartArgs),
    /// All sessions this daemon knows.
    #[serde(rename = "sessions.list")]
    SessionsList(NoArgs),
    /// One session with its pending approvals.
    #[serde(rename = "session.get")]
    SessionGet(SessionRef),
    /// Graceful stop: interrupt, close stdin, terminate after a grace period.
    #[serde(rename = "session.stop")]
    SessionStop(SessionRef),
    /// Immediate kill of the child's process group.
    #[serde(rename = "session.kill")]
    SessionKill(SessionRef),
    /// Restart a stopped or failed session with its history (`claude --resume`).
    #[serde(rename = "session.resume")]
    SessionResume(SessionRef),
    /// End the running turn; queued prompts stay queued.
    #[serde(rename = "session.interrupt")]
    SessionInterrupt(SessionRef),
    /// Hand the session to the Claude Code TUI in tmux (`claude --resume`), until the TUI
    /// exits or its last client detaches.
    #[serde(rename = "session.attach")]
    SessionAttach(AttachArgs),
    /// Page through (and optionally follow) a session's event log.
    #[serde(rename = "session.events")]
    SessionEvents(EventsArgs),
    /// Queue a prompt; with `follow`, stream its turn's events until its result.
    #[serde(rename = "prompt.send")]
    PromptSend(PromptArgs),
    /// Pending approvals and questions, of one session or all.
    #[serde(rename = "approvals.list")]
    ApprovalsList(ApprovalsArgs),
    /// Answer a permission request.
    #[serde(rename = "approval.decide")]
    ApprovalDecide(DecideArgs),
    /// Answer an `AskUserQuestion`.
    #[serde(rename = "question.answer")]
    QuestionAnswer(AnswerArgs),
    /// Receive a zip as this command's streamed body (bot link only) and keep it, staged,
    /// for a `workspace.create` that names its `upload_id`.
    #[serde(rename = "workspace.upload")]
    WorkspaceUpload(NoArgs),
    /// Create (or reuse, or overwrite) a workspace from a zip.
    #[serde(rename = "workspace.create")]
    WorkspaceCreate(WorkspaceCreateArgs),
    /// Every workspace with its size and users.
    #[serde(rename = "workspaces.list")]
    WorkspacesList(NoArgs),
    /// Delete a workspace (refused while a session or execution uses it).
    #[serde(rename = "workspace.rm")]
    WorkspaceRm(WorkspaceRef),
    /// Accept a one-shot execution: it runs at once or waits in the FIFO queue.
    #[serde(rename = "exec.start")]
    ExecStart(ExecArgs),
    /// Stream an execution's items (`queued`, `started`, `output`, `complete`/`error`).
    #[serde(rename = "exec.follow")]
    ExecFollow(ExecFollowArgs),
    /// One execution with its whole output.
    #[serde(rename = "exec.get")]
    ExecGet(ExecRef),
    /// Cancel a queued or running execution (its child and tools are killed).
    #[serde(rename = "exec.cancel")]
    ExecCancel(ExecRef),
    /// Receive a file as this command's streamed body (bot link only) and save it in the
    /// session's `.ccrm/inbox/` (reply: [`crate::attach::FileSaved`]).
    #[serde(rename = "session.file")]
    SessionFile(crate::attach::FileArgs),
}

impl Command {
    /// The wire name (`session.start`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::DaemonStatus(_) => "daemon.status",
            Self::DaemonStop(_) => "daemon.stop",
            Self::SessionStart(_) => "session.start",
            Self::SessionsList(_) => "sessions.list",
            Self::SessionGet(_) => "session.get",
            Self::SessionStop(_) => "session.stop",
            Self::SessionKill(_) => "session.kill",
            Self::SessionResume(_) => "session.resume",
            Self::SessionInterrupt(_) => "session.interrupt",
            Self::SessionAttach(_) => "session.attach",
            Self::SessionEvents(_) => "session.events",
            Self::PromptSend(_) => "prompt.send",
            Self::ApprovalsList(_) => "approvals.list",
            Self::ApprovalDecide(_) => "approval.decide",
            Self::QuestionAnswer(_) => "question.answer",
            Self::WorkspaceUpload(_) => "workspace.upload",
            Self::SessionFile(_) => "session.file",
            Self::WorkspaceCreate(_) => "workspace.create",
            Self::WorkspacesList(_) => "workspaces.list",
            Self::WorkspaceRm(_) => "workspace.rm",
            Self::ExecStart(_) => "exec.start",
            Self::ExecFollow(_) => "exec.follow",
            Self::ExecGet(_) => "exec.get",
            Self::ExecCancel(_) => "exec.cancel",
        }
    }
}

/// Parses one request line. Missing or `null` `args` count as `{}`, so `{"id":1,"cmd":
/// "sessions.list"}` is valid. The error says what is wrong and carries the id when it could
/// be read, so the reply can still be matched.
pub fn parse_request(line: &str) -> Result<Request, (Value, ErrorBody)> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        (
            Value::Null,
            ErrorBody::new(ErrorCode::ParseError, format!("invalid JSON: {e}")),
        )
    })?;
    let Value::Object(mut map) = value else {
        return Err((
            Value::Null,
            ErrorBody::new(ErrorCode::BadRequest, "a request must be a JSON object"),
        ));
    };
    let id = map.remove("id").unwrap_or(Value::Null);
    let Some(Value::String(cmd)) = map.remove("cmd") else {
        return Err((
            id,
            ErrorBody::new(ErrorCode::BadRequest, "missing string field `cmd`"),
        ));
    };
    let args = match map.remove("args") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(args) => args,
    };
    let envelope = serde_json::json!({"cmd": cmd, "args": args});
    match serde_json::from_value::<Command>(envelope) {
        Ok(cmd) => Ok(Request { id, cmd }),
        Err(e) if e.to_string().starts_with("unknown variant") => Err((
            id,
            ErrorBody::new(
                ErrorCode::UnknownCommand,
                format!("unknown command `{cmd}`"),
            ),
        )),
        Err(e) => Err((
            id,
            ErrorBody::new(ErrorCode::BadRequest, format!("bad args for `{cmd}`: {e}")),
        )),
    }
}

/// Arguments of commands that take none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Names one session: a full id, a unique id prefix, or a session name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// Id, unique id prefix, or exact name.
    pub session: String,
}

/// `session.start`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartArgs {
    /// Working directory (absolute; must exist); empty when `workspace` names it instead.
    #[serde(default)]
    pub cwd: PathBuf,
    /// Model name or alias; the daemon default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Claude Code permission mode (`default`, `acceptEdits`, `plan`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<String>,
    /// Human name; must be unique among this daemon's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Allow every tool without asking (explicit opt-in).
    #[serde(default)]
    pub auto_allow: bool,
    /// Tools allowed without asking, replacing the daemon's default read-only list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    /// Who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Start in this workspace (its directory); `cwd` is then left empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Extra arguments for this session's claude ([`crate::claude_args::check`]).
    pub claude_args: Option<Vec<String>>,
}

/// `session.attach`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachArgs {
    /// Id, unique id prefix, or exact name.
    pub session: String,
    /// Interrupt a running turn instead of waiting for it to finish.
    #[serde(default)]
    pub now: bool,
}

/// `session.events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsArgs {
    /// The session.
    pub session: String,
    /// Only events with `seq` greater than this.
    #[serde(default)]
    pub after: u64,
    /// At most this many events in the page (capped by the daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Keep streaming new events until the client goes away.
    #[serde(default)]
    pub follow: bool,
}

/// `prompt.send`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptArgs {
    /// The session.
    pub session: String,
    /// The prompt text.
    pub text: String,
    /// Stream this prompt's turn (events) and end with its result.
    #[serde(default)]
    pub follow: bool,
    /// Who sent it (defaults to the CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Images sent with the text (image content blocks of the user message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<crate::attach::ImageBlock>,
}

/// `approvals.list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalsArgs {
    /// Only this session's approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// `approval.decide`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideArgs {
    /// The session.
    pub session: String,
    /// Approval id or unique prefix; may be left out when the session has one pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// `allow`, `allow_session` or `deny`.
    pub decision: Decision,
    /// For `deny`: what the model is told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// `question.answer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerArgs {
    /// The session.
    pub session: String,
    /// Question id or unique prefix; may be left out when the session has one pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// One entry per question, in order: an option label, an option number (1-based), or
    /// free text. Several labels for a multi-select question are comma-separated.
    pub answers: Vec<String>,
    /// Who answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// One reply line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id (`null` when the request could not be read).
    pub id: Value,
    /// Success or failure.
    pub ok: bool,
    /// The result of a non-streaming call, or the summary at the end of a stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// One streamed event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// The last line of a stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end: bool,
    /// One streamed item of a stream that is not a session's events (`exec.follow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
}

impl Reply {
    /// A successful reply.
    pub fn ok(id: Value, data: Value) -> Self {
        Self {
            id,
            ok: true,
            data: Some(data),
            error: None,
            event: None,
            end: false,
            item: None,
        }
    }

    /// A failed reply.
    pub fn err(id: Value, error: ErrorBody) -> Self {
        Self {
            id,
            ok: false,
            data: None,
            error: Some(error),
            event: None,
            end: false,
            item: None,
        }
    }

    /// One event of a stream.
    pub fn event(id: Value, event: Event) -> Self {
        Self {
            id,
            ok: true,
            data: None,
            error: None,
            event: Some(event),
            end: false,
            item: None,
        }
    }

    /// One item of a stream that is not a session's events.
    pub fn item(id: Value, item: Value) -> Self {
        Self {
            id,
            ok: true,
            data: None,
            error: None,
            event: None,
            end: false,
            item: Some(item),
        }
    }

    /// The end of a stream, with an optional summary.
    pub fn end(id: Value, data: Option<Value>) -> Self {
        Self {
            id,
            ok: true,
            data,
            error: None,
            event: None,
            end: true,
            item: None,
        }
    }
}

/// Stable error codes; scripts match on these, humans read `message`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line was not JSON.
    ParseError,
    /// The line was longer than [`crate::MAX_IPC_LINE`].
    TooLarge,
    /// Missing or ill-typed fields.
    BadRequest,
    /// No such command.
    UnknownCommand,
    /// No session / approval matched.
    NotFound,
    /// A prefix matched several sessions / approvals.
    Ambiguous,
    /// The session is not in a state that allows this (e.g. prompt to a stopped session).
    BadState,
    /// Something already answered this approval.
    AlreadyDecided,
    /// A name is taken.
    Conflict,
    /// Not implemented yet.
    NotSupported,
    /// The claude binary could not be found or started.
    SpawnFailed,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A bug or an I/O failure on the daemon side.
    Internal,
    /// No workspace has that id.
    #[serde(rename = "WORKSPACE_NOT_FOUND")]
    WorkspaceNotFound,
    /// A session or execution uses the workspace.
    #[serde(rename = "WORKSPACE_IN_USE")]
    WorkspaceInUse,
    /// Every execution worker is busy and the queue is full.
    #[serde(rename = "WORKERS_BUSY")]
    WorkersBusy,
    /// A workspace id that is not 1 to 64 letters, digits, `-`, `_`.
    #[serde(rename = "BAD_WORKSPACE_ID")]
    BadWorkspaceId,
    /// An archive entry with `..` in its path.
    #[serde(rename = "ZIP_PATH_TRAVERSAL")]
    ZipPathTraversal,
    /// An archive entry with an absolute path.
    #[serde(rename = "ZIP_ABSOLUTE_PATH")]
    ZipAbsolutePath,
    /// A symlink entry (or one that would be written through a symlink).
    #[serde(rename = "ZIP_SYMLINK")]
    ZipSymlink,
    /// A device, FIFO or socket entry.
    #[serde(rename = "ZIP_SPECIAL_FILE")]
    ZipSpecialFile,
    /// An entry name with NUL or control characters, or empty.
    #[serde(rename = "ZIP_BAD_NAME")]
    ZipBadName,
    /// Two entries with the same path (or a file where a directory is).
    #[serde(rename = "ZIP_DUPLICATE")]
    ZipDuplicate,
    /// The upload or its unpacked content is over the size cap.
    #[serde(rename = "ZIP_TOO_LARGE")]
    ZipTooLarge,
    /// More entries than the cap.
    #[serde(rename = "ZIP_TOO_MANY_FILES")]
    ZipTooManyFiles,
    /// An entry (or the archive) expands more than the ratio cap allows.
    #[serde(rename = "ZIP_RATIO")]
    ZipRatio,
    /// An encrypted entry.
    #[serde(rename = "ZIP_ENCRYPTED")]
    ZipEncrypted,
    /// A truncated, corrupt or unsupported archive (or a damaged upload).
    #[serde(rename = "ZIP_CORRUPT")]
    ZipCorrupt,
}

/// The `error` object of a failed reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// What went wrong and, where possible, what to do.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// A session as `sessions.list` and `session.get` show it.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session (= Claude Code session) id.
    pub id: SessionId,
    /// Human name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Working directory.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "/home/me/project"))]
    pub cwd: PathBuf,
    /// Model asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Permission mode passed to the CLI.
    pub permission_mode: String,
    /// Current state.
    pub state: SessionState,
    /// Why it is stopped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pid of the claude child while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Prompts waiting behind the running turn.
    #[serde(default)]
    pub queued: usize,
    /// Pending approvals and questions.
    #[serde(default)]
    pub pending: usize,
    /// Turns finished since the daemon started the session.
    #[serde(default)]
    pub turns: u64,
    /// Cumulative cost reported by the CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Creation time (Unix ms).
    pub created_ms: u64,
    /// Last event time (Unix ms).
    pub last_event_ms: u64,
    /// Highest event seq so far.
    #[serde(default)]
    pub last_seq: u64,
    /// Tools allowed for the rest of the session by "allow for this session".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_allowed_tools: Vec<String>,
    /// Every tool is allowed without asking.
    #[serde(default)]
    pub auto_allow: bool,
}

/// What kind of pending item an approval is.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// A `can_use_tool` request.
    Permission,
    /// An `AskUserQuestion`.
    Question,
}

/// A pending approval or question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalInfo {
    /// Id to answer with.
    pub approval_id: ApprovalId,
    /// Its session.
    pub session_id: SessionId,
    /// Permission or question.
    pub kind: ApprovalKind,
    /// Tool name.
    pub tool_name: String,
    /// Tool input.
    pub input: Value,
    /// Claude's description, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The questions of an `AskUserQuestion`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub questions: Vec<Question>,
    /// When it was asked (Unix ms).
    pub created_ms: u64,
}

/// The result of `approval.decide` / `question.answer`.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionInfo {
    /// The approval.
    pub approval_id: ApprovalId,
    /// The outcome.
    pub decision: Decision,
    /// Who decided.
    pub by: String,
    /// Answers, for questions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answers: BTreeMap<String, String>,
}

/// The result of `daemon.status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Daemon pid.
    pub pid: u32,
    /// Daemon version.
    pub version: String,
    /// [`crate::IPC_PROTOCOL_VERSION`] of the daemon.
    pub protocol: u32,
    /// Start time (Unix ms).
    pub started_ms: u64,
    /// Socket path.
    pub socket: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// The claude binary sessions use, if found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_bin: Option<PathBuf>,
    /// Number of sessions by state.
    pub sessions: BTreeMap<String, usize>,
    /// Pending approvals across sessions.
    pub pending_approvals: usize,
    /// The link to the bot, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkStatus>,
    /// One-shot executions: workers, running, queued.
    #[serde(default)]
    pub executions: ExecCounts,
}

/// The state of the daemon's link to the bot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkStatus {
    /// The bot's `/ws/daemon` URL.
    pub url: String,
    /// This daemon's id at the bot.
    pub daemon_id: String,
    /// Whether the link is up (welcome received).
    pub connected: bool,
    /// Highest event seq written to the spool.
    pub last_seq: u64,
    /// Highest seq the bot has committed.
    pub acked: u64,
    /// Why the last connection attempt failed, while the link is down (for `ccrm doctor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The result of `prompt.send` (without follow) and the end line of a followed prompt.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptAccepted {
    /// The session.
    pub session_id: SessionId,
    /// Per-session prompt number.
    pub prompt_id: u64,
    /// Prompts ahead of it.
    pub queued_behind: usize,
    /// Something the sender should know, e.g. that the session is in use at the terminal
    /// (`ccrm attach`) and the prompt runs once the terminal gives it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The result of `session.attach`: where the session's TUI runs in tmux.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachInfo {
    /// The session.
    pub session_id: SessionId,
    /// The tmux server socket (ccrm's own server, not the user's default one).
    pub socket: PathBuf,
    /// The tmux session name.
    pub tmux_session: String,
    /// Pid of the claude TUI in the tmux pane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// True when the session was already attached and this call joined it.
    #[serde(default)]
    pub joined: bool,
}

impl AttachInfo {
    /// The arguments of the `tmux` command that attaches a terminal to the session.
    pub fn attach_args(&self) -> Vec<String> {
        vec![
            "-S".to_owned(),
            self.socket.to_string_lossy().into_owned(),
            "attach-session".to_owned(),
            "-t".to_owned(),
            format!("={}", self.tmux_session),
        ]
    }
}

#[cfg(test)]
mod tests;
