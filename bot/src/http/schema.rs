//! The shapes of the REST bodies as OpenAPI schemas ([`utoipa::ToSchema`]): the error body
//! with every `code` the API gives, the envelopes the handlers wrap rows in
//! (`{"sessions": [...]}`), and the OCC-shaped bodies of daemons, workspaces and
//! executions. The rows inside (sessions, events, approvals, daemons) are the real stored
//! types; schemathesis checks every response against these schemas in CI
//! (`scripts/contract.sh`), so an envelope that drifted from its handler fails there.

use common::ids::{DaemonId, SessionId};
use common::ipc::SessionInfo;
use common::workspace::{ExecError, ExecStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{ApprovalRow, DaemonRow, SessionRow, StoredEvent};

/// Every `code` an error body can carry. Lower-case codes are ccrm's own; upper-case ones
/// are OCC's (workspaces and executions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub enum ErrorCodeName {
    /// The body, query or path does not match the schema (400).
    #[serde(rename = "bad_request")]
    BadRequest,
    /// Schema-valid, but the daemon cannot do it: a `cwd` that is not a directory, a
    /// duplicate session name, answers that do not fit the question (422).
    #[serde(rename = "unprocessable")]
    Unprocessable,
    /// Missing or invalid bearer token (401).
    #[serde(rename = "unauthorized")]
    Unauthorized,
    /// Unknown session, daemon, approval, execution or route (404).
    #[serde(rename = "not_found")]
    NotFound,
    /// An id prefix or hostname that matches several (409).
    #[serde(rename = "ambiguous")]
    Ambiguous,
    /// The session is in the wrong state for this (409).
    #[serde(rename = "bad_state")]
    BadState,
    /// Someone answered this approval first (409).
    #[serde(rename = "already_decided")]
    AlreadyDecided,
    /// The request clashes with what exists (409).
    #[serde(rename = "conflict")]
    Conflict,
    /// The body is larger than `max_body_bytes` (413).
    #[serde(rename = "too_large")]
    TooLarge,
    /// Too many failed token checks from this address in a minute (429, with `Retry-After`).
    #[serde(rename = "too_many_failures")]
    TooManyFailures,
    /// A file sent with a prompt could not be saved in the session's inbox (502).
    #[serde(rename = "file_not_saved")]
    FileNotSaved,
    /// The daemon is too old for this (501).
    #[serde(rename = "not_supported")]
    NotSupported,
    /// The daemon could not start claude (502).
    #[serde(rename = "spawn_failed")]
    SpawnFailed,
    /// The daemon failed internally (502).
    #[serde(rename = "daemon_internal")]
    DaemonInternal,
    /// The owning daemon has no link now (503).
    #[serde(rename = "daemon_offline")]
    DaemonOffline,
    /// The daemon is shutting down (503).
    #[serde(rename = "shutting_down")]
    ShuttingDown,
    /// The daemon did not answer in time (504).
    #[serde(rename = "daemon_timeout")]
    DaemonTimeout,
    /// The bot failed (500; the detail is in its log).
    #[serde(rename = "internal")]
    Internal,
    /// OCC: a bad request to a workspace or execution route (400).
    #[serde(rename = "BAD_REQUEST")]
    OccBadRequest,
    /// OCC: a `workspaceId` that is not 1 to 64 letters, digits, `-` or `_` (400).
    #[serde(rename = "BAD_WORKSPACE_ID")]
    BadWorkspaceId,
    /// OCC: no such workspace (404).
    #[serde(rename = "WORKSPACE_NOT_FOUND")]
    WorkspaceNotFound,
    /// OCC: a session or execution uses the workspace (409).
    #[serde(rename = "WORKSPACE_IN_USE")]
    WorkspaceInUse,
    /// OCC: an execution with this id exists (409).
    #[serde(rename = "EXECUTION_EXISTS")]
    ExecutionExists,
    /// OCC: every worker is busy and the queue is full (429, with `Retry-After`).
    #[serde(rename = "WORKERS_BUSY")]
    WorkersBusy,
    /// OCC: the daemon is offline (503).
    #[serde(rename = "DAEMON_OFFLINE")]
    OccDaemonOffline,
    /// OCC: an archive entry leaves the workspace (422).
    #[serde(rename = "ZIP_PATH_TRAVERSAL")]
    ZipPathTraversal,
    /// OCC: an absolute archive entry (422).
    #[serde(rename = "ZIP_ABSOLUTE_PATH")]
    ZipAbsolutePath,
    /// OCC: a symlink in the archive (422).
    #[serde(rename = "ZIP_SYMLINK")]
    ZipSymlink,
    /// OCC: a device or other special file in the archive (422).
    #[serde(rename = "ZIP_SPECIAL_FILE")]
    ZipSpecialFile,
    /// OCC: an entry name that is not allowed (422).
    #[serde(rename = "ZIP_BAD_NAME")]
    ZipBadName,
    /// OCC: two entries with one name (422).
    #[serde(rename = "ZIP_DUPLICATE")]
    ZipDuplicate,
    /// OCC: the upload or its contents are over the cap (413).
    #[serde(rename = "ZIP_TOO_LARGE")]
    ZipTooLarge,
    /// OCC: too many entries (422).
    #[serde(rename = "ZIP_TOO_MANY_FILES")]
    ZipTooManyFiles,
    /// OCC: a suspicious compression ratio (422).
    #[serde(rename = "ZIP_RATIO")]
    ZipRatio,
    /// OCC: an encrypted entry (422).
    #[serde(rename = "ZIP_ENCRYPTED")]
    ZipEncrypted,
    /// OCC: not a readable zip, or an empty `zip` field (422).
    #[serde(rename = "ZIP_CORRUPT")]
    ZipCorrupt,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no session 4c1e2a7b-5d3f-4e8a-9b21-0f6d7c8e9a10"}}))]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs.
    pub code: ErrorCodeName,
    /// What happened and what to do, for people; 5xx say only "internal error".
    pub message: String,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// True when the bot answers and its database does.
    pub ok: bool,
    /// The bot's version.
    #[schema(example = "0.1.0")]
    pub version: String,
    /// `ok` when the database answered a ping, else `unreachable`.
    #[schema(example = "ok")]
    pub database: String,
    /// The store's backend: `sqlite` or `postgres`.
    #[schema(example = "sqlite")]
    pub backend: String,
}

/// `GET /api/daemons`.
#[derive(Serialize, ToSchema)]
pub struct DaemonList {
    /// Every daemon the bot has seen, with `online` as the hub knows it now.
    pub daemons: Vec<DaemonRow>,
}

/// `GET /api/sessions`.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// The sessions, newest activity first.
    pub sessions: Vec<SessionRow>,
}

/// `POST /api/sessions` (201).
#[derive(Serialize, ToSchema)]
pub struct SessionCreated {
    /// The daemon that runs it.
    pub daemon_id: DaemonId,
    /// The new session as its daemon reported it.
    pub session: SessionInfo,
}

/// `GET /api/sessions/{id}`.
#[derive(Serialize, ToSchema)]
pub struct SessionDetail {
    /// The session as stored.
    pub session: SessionRow,
    /// Whether its daemon has a link now.
    pub online: bool,
    /// Its pending approvals and questions.
    pub approvals: Vec<ApprovalRow>,
}

/// `GET /api/sessions/{id}/events`.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Oldest first.
    pub events: Vec<StoredEvent>,
    /// The `after` of the next page (the last row id), null on an empty page.
    pub next_after: Option<i64>,
    /// The page size used (the one asked for, within 1 and `events_page_max`).
    #[schema(minimum = 1)]
    pub limit: u32,
}

/// `POST /api/sessions/{id}/interrupt`.
#[derive(Serialize, ToSchema)]
pub struct Interrupted {
    /// True when a turn was running and was interrupted.
    pub interrupted: bool,
}

/// `GET /api/approvals`.
#[derive(Serialize, ToSchema)]
pub struct ApprovalList {
    /// Oldest first.
    pub approvals: Vec<ApprovalRow>,
}

/// The heartbeat of a daemon's link.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The last answered ping (ISO 8601).
    pub last_successful_at: String,
    /// Pings missed in a row.
    pub consecutive_failures: u64,
    /// Pings sent on this link.
    pub seq_num: u64,
}

/// A daemon's health in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DaemonStatusName {
    /// It has a link.
    Healthy,
    /// It has none.
    Offline,
}

/// `GET /api/daemons/{daemon}` (OCC's health shape).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DaemonHealth {
    /// The daemon's id.
    pub id: DaemonId,
    /// Its machine's name.
    pub hostname: String,
    /// `healthy` while it has a link, else `offline`.
    pub status: DaemonStatusName,
    /// Whether it has a link.
    pub online: bool,
    /// Its version.
    pub version: String,
    /// Seconds since it started, when online.
    pub uptime: Option<u64>,
    /// Its link's heartbeat, when it has one.
    pub heartbeat: Option<Heartbeat>,
    /// Execution workers.
    pub workers: Option<usize>,
    /// Executions running.
    pub running: Option<usize>,
    /// Executions waiting.
    pub queued: Option<usize>,
    /// Longest queue.
    pub queue_max: Option<usize>,
    /// Whether it runs workspaces and executions.
    pub workspaces: bool,
    /// Last frame (ISO 8601).
    pub last_seen: String,
    /// First hello (ISO 8601).
    pub first_seen: String,
}

/// A workspace as the workspace routes show it.
#[derive(Serialize, ToSchema)]
pub struct Workspace {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its directory on the daemon's machine.
    pub path: String,
    /// Bytes on disk.
    pub size: u64,
    /// Files in it.
    pub files: u64,
    /// Created (ISO 8601).
    pub created: String,
    /// Sessions using it.
    pub sessions: Vec<SessionId>,
    /// Executions using it.
    pub executions: Vec<String>,
}

/// `GET /api/daemons/{daemon}/workspaces`.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceList {
    /// The daemon.
    pub daemon: DaemonId,
    /// Its workspaces.
    pub workspaces: Vec<Workspace>,
}

/// `POST /api/daemons/{daemon}/workspaces`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceUploaded {
    /// `success`.
    pub status: Success,
    /// The workspace.
    pub workspace_id: String,
    /// Its directory.
    pub path: String,
    /// True when `reuse` kept an existing one.
    pub reused: bool,
    /// The workspace.
    pub workspace: Workspace,
}

/// The multipart form of `POST /api/daemons/{daemon}/workspaces` (fields in any order;
/// the handler reads and ignores others, but a client should not send them).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
pub struct WorkspaceForm {
    /// 1 to 64 letters, digits, `-` or `_`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub workspace_id: String,
    /// A name for people (not only spaces).
    #[schema(min_length = 1, pattern = "\\S")]
    pub name: String,
    /// What it is.
    pub description: Option<String>,
    /// `overwrite` replaces an existing workspace; `reuse` keeps it.
    pub process_policy: common::workspace::WorkspacePolicy,
    /// The zip archive.
    #[schema(value_type = String, format = Binary)]
    pub zip: Vec<u8>,
}

/// OCC's `status` of a workspace reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Success {
    /// It worked.
    Success,
}

/// `DELETE /api/daemons/{daemon}/workspaces/{id}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceDeleted {
    /// `success`.
    pub status: Success,
    /// The workspace.
    pub workspace_id: String,
    /// Always true.
    pub deleted: bool,
}

/// Cost, duration and turns of a finished execution.
#[derive(Serialize, ToSchema)]
pub struct ExecSummary {
    /// Cost in USD.
    pub cost_usd: Option<f64>,
    /// Wall time.
    pub duration_ms: Option<u64>,
    /// Model round trips.
    pub turns: Option<u64>,
}

impl From<&common::workspace::ExecResult> for ExecSummary {
    fn from(r: &common::workspace::ExecResult) -> Self {
        Self {
            cost_usd: r.cost_usd,
            duration_ms: r.duration_ms,
            turns: r.turns,
        }
    }
}

/// `GET /api/executions/{id}` and the reply of its cancel.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    /// Its id.
    pub execution_id: String,
    /// Its workspace.
    pub workspace_id: Option<String>,
    /// The daemon it runs on.
    pub daemon: DaemonId,
    /// Its directory.
    pub cwd: String,
    /// The prompt.
    pub prompt: String,
    /// Where it is.
    pub status: ExecStatus,
    /// Claude's exit code once finished.
    pub exit_code: Option<i32>,
    /// The whole answer so far.
    pub output: String,
    /// Why it failed.
    pub error: Option<ExecError>,
    /// Cost, duration and turns once finished.
    pub result: Option<ExecSummary>,
    /// Accepted (ISO 8601).
    pub created: String,
    /// Started (ISO 8601).
    pub started: Option<String>,
    /// Finished (ISO 8601).
    pub finished: Option<String>,
}

/// `data` of an execution's `queued` event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecQueued {
    /// Place in the queue; 1 is next.
    pub position: usize,
    /// When (ISO 8601).
    pub timestamp: String,
    /// The execution.
    pub execution_id: String,
}

/// `data` of an execution's `output` event.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecOutput {
    /// A piece of the answer as it streams.
    pub chunk: String,
    /// When (ISO 8601).
    pub timestamp: String,
    /// The execution.
    pub execution_id: String,
}

/// `data` of an execution's `complete` event (its last).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecComplete {
    /// Claude's exit code: 0, or 1 when the run ended in an error result.
    pub exit_code: i32,
    /// Cost, duration and turns.
    pub result: ExecSummary,
    /// When (ISO 8601).
    pub timestamp: String,
    /// The execution.
    pub execution_id: String,
}

/// `data` of an execution's `error` event (its last, or the stream's when its daemon is
/// lost: `DAEMON_OFFLINE`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecFailed {
    /// OCC's code, such as `EXECUTION_TIMEOUT`, `EXECUTION_CANCELLED`, `EXECUTION_FAILED`
    /// or `DAEMON_OFFLINE`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
    /// When (ISO 8601).
    pub timestamp: String,
    /// The execution.
    pub execution_id: String,
}

/// The decisions a person can give over REST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionChoice {
    /// The tool may run.
    Allow,
    /// The tool may run, and so may later calls of it in this session.
    AllowSession,
    /// The tool may not run.
    Deny,
}

/// `permission_mode` of a new session (what Claude Code accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[allow(dead_code)]
pub enum PermissionMode {
    /// Ask for every tool that needs it.
    #[serde(rename = "default")]
    Default,
    /// Edits allowed without asking.
    #[serde(rename = "acceptEdits")]
    AcceptEdits,
    /// Plan only.
    #[serde(rename = "plan")]
    Plan,
    /// Never ask; refuse what would need asking.
    #[serde(rename = "dontAsk")]
    DontAsk,
    /// Claude decides.
    #[serde(rename = "auto")]
    Auto,
    /// Allow everything.
    #[serde(rename = "bypassPermissions")]
    BypassPermissions,
}

/// True when `code` is one of [`ErrorCodeName`] (checked whenever an [`super::AppError`] is
/// built in a debug build, so a new code cannot go undocumented).
pub fn is_documented(code: &str) -> bool {
    serde_json::from_value::<ErrorCodeName>(serde_json::Value::from(code)).is_ok()
}

/// `GET /api/openapi.json`: an OpenAPI 3.1 document (this one).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OpenApiDocument {
    /// `3.1.0`.
    #[schema(pattern = "^3\\.1\\.")]
    pub openapi: String,
    /// Title, version, description.
    #[schema(value_type = Object)]
    pub info: serde_json::Value,
    /// Every route.
    #[schema(value_type = Object)]
    pub paths: serde_json::Value,
    /// The schemas and the security scheme.
    #[schema(value_type = Object)]
    pub components: serde_json::Value,
}
