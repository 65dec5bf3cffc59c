//! Workspaces and one-shot executions (OCC, issue 15): the arguments and replies of the
//! `workspace.*` and `exec.*` commands of [`crate::ipc`], shared by `ccrm`, `ccrmd` and the
//! bot.
//!
//! A workspace is a directory under ccrmd's state dir filled from a zip. An execution is a
//! fresh claude run in a workspace (or a directory) with restricted tools and a timeout;
//! what happens to it is a numbered list of [`ExecItem`]s (`queued`, `started`, `output`,
//! `complete`, `error`) that a follower reads from any position, so a client that lost its
//! stream picks up where it stopped. Error codes that OCC clients match on
//! ([`exec_code`]) are the upper-case names the issue gives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event::Origin;
use crate::ids::SessionId;

/// Longest workspace or execution id.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is a valid workspace or execution id: 1 to 64 letters, digits, `-`, `_`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Stable error codes of executions, as OCC names them.
pub mod exec_code {
    /// The run passed its `timeoutSecs`; the child and its tools were killed.
    pub const EXECUTION_TIMEOUT: &str = "EXECUTION_TIMEOUT";
    /// The run could not start or ended without a result.
    pub const EXECUTION_FAILED: &str = "EXECUTION_FAILED";
    /// Someone cancelled the execution.
    pub const EXECUTION_CANCELLED: &str = "EXECUTION_CANCELLED";
    /// No such workspace on that daemon.
    pub const WORKSPACE_NOT_FOUND: &str = "WORKSPACE_NOT_FOUND";
    /// The daemon has no link to the bot.
    pub const DAEMON_OFFLINE: &str = "DAEMON_OFFLINE";
    /// Every worker is busy and the queue is full.
    pub const WORKERS_BUSY: &str = "WORKERS_BUSY";
    /// The request was malformed.
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
}

/// What `workspace.create` does with a workspace that already exists.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspacePolicy {
    /// Replace it atomically with the new content.
    Overwrite,
    /// Keep it as it is (a missing one is created).
    Reuse,
}

impl std::str::FromStr for WorkspacePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "overwrite" => Ok(Self::Overwrite),
            "reuse" => Ok(Self::Reuse),
            other => Err(format!(
                "policy `{other}` is neither `overwrite` nor `reuse`"
            )),
        }
    }
}

/// `workspace.create`: a workspace from a zip. Over the socket the zip is a file on this
/// machine (`zip_path`); over the bot link it is an earlier `workspace.upload`'s body,
/// named by its `upload_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceCreateArgs {
    /// Letters, digits, `-`, `_`; at most 64.
    pub workspace_id: String,
    /// Human name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `overwrite` or `reuse`.
    pub policy: WorkspacePolicy,
    /// The zip on this machine (CLI only; refused over the bot link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip_path: Option<PathBuf>,
    /// The zip received by `workspace.upload` (taken: an upload serves one create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

/// The result of `workspace.upload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReceived {
    /// Names the staged zip in `workspace.create`.
    pub upload_id: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Names one workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRef {
    /// The workspace id.
    pub workspace_id: String,
}

/// A workspace as `workspaces.list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceInfo {
    /// Its id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its directory on the daemon's machine.
    pub path: PathBuf,
    /// Bytes in its regular files now.
    pub size: u64,
    /// Regular files in it now.
    pub files: u64,
    /// When it was created or last overwritten (Unix ms).
    pub created_ms: u64,
    /// Sessions whose directory it is.
    #[serde(default)]
    pub sessions: Vec<SessionId>,
    /// Executions queued or running in it.
    #[serde(default)]
    pub executions: Vec<String>,
}

/// The result of `workspace.create`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceCreated {
    /// The workspace as it is now.
    pub workspace: WorkspaceInfo,
    /// True when `reuse` kept an existing workspace (nothing was unpacked).
    pub reused: bool,
}

/// `exec.start`: one fresh claude run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecArgs {
    /// Letters, digits, `-`, `_`; at most 64; unique on the daemon.
    pub execution_id: String,
    /// Run in this workspace...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// ...or in this absolute directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// The prompt.
    pub prompt: String,
    /// Seconds the run may take, counted from its start (not from the queue).
    pub timeout_secs: u64,
    /// Model name or alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tools allowed besides the read-only ones: names, or Claude Code rules such as
    /// `Bash(git status:*)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// Who asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Names one execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRef {
    /// The execution id.
    pub execution_id: String,
}

/// `exec.follow`: stream an execution's items after `after` until it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecFollowArgs {
    /// The execution id.
    pub execution_id: String,
    /// Only items numbered above this (0: from the start).
    #[serde(default)]
    pub after: u64,
}

/// Where an execution is.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    /// Waiting for a worker.
    Queued,
    /// Its claude runs.
    Running,
    /// It finished with exit code 0.
    Completed,
    /// It could not run, or claude ended with an error.
    Failed,
    /// It passed its timeout and was killed.
    Timeout,
    /// Someone cancelled it.
    Cancelled,
}

impl ExecStatus {
    /// True once nothing more happens to it.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for ExecStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown execution status `{s}`"))
    }
}

/// The summary of a finished run, as OCC's `complete` event carries it.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    /// What the run cost, as the CLI reported it.
    pub cost_usd: Option<f64>,
    /// How long the run took, as the CLI reported it.
    pub duration_ms: Option<u64>,
    /// Model round trips.
    pub turns: Option<u64>,
    /// True when claude ended the run with an error result (exit code 1).
    #[serde(default)]
    pub is_error: bool,
}

/// Why an execution failed.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecError {
    /// One of [`exec_code`].
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

/// One thing that happened to an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecUpdate {
    /// Waiting for a worker; `position` 1 is next.
    Queued {
        /// Place in the queue.
        position: usize,
    },
    /// A worker took it: claude starts now (the timeout counts from here).
    Started,
    /// A piece of the assistant's text as it streams.
    Output {
        /// The text.
        chunk: String,
    },
    /// Claude finished the run (the last item).
    Complete {
        /// Claude's exit code: 0, or 1 when the run ended in an error result.
        exit_code: i32,
        /// Cost, duration and turns.
        result: ExecResult,
    },
    /// The run could not finish (the last item).
    Error {
        /// One of [`exec_code`].
        code: String,
        /// What happened.
        message: String,
    },
}

impl ExecUpdate {
    /// True for the last item of an execution.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Complete { .. } | Self::Error { .. })
    }
}

/// An [`ExecUpdate`] with its number (from 1) and time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecItem {
    /// Position in the execution's list, from 1.
    pub n: u64,
    /// When it happened (Unix ms).
    pub ts_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub update: ExecUpdate,
}

/// An execution as `exec.get` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecInfo {
    /// Its id.
    pub execution_id: String,
    /// The workspace it runs in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    /// Its directory.
    pub cwd: PathBuf,
    /// Where it is.
    pub status: ExecStatus,
    /// Place in the queue while queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Claude's exit code once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The assistant's whole text so far.
    pub output: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExecError>,
    /// Cost, duration and turns once it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ExecResult>,
    /// Items so far (the `n` of the newest).
    pub items: u64,
    /// Accepted (Unix ms).
    pub created_ms: u64,
    /// A worker took it (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// It ended (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

/// Executions on a daemon now, for `daemon.status` and the bot's daemon health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCounts {
    /// Most executions that run at once (`workers`).
    pub workers: usize,
    /// Running now.
    pub running: usize,
    /// Waiting for a worker.
    pub queued: usize,
    /// Most that may wait (`workers_queue`).
    pub queue_max: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("ws-1_A"));
        assert!(valid_id(&"a".repeat(64)));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id("a b"));
        assert!(!valid_id("é"));
    }

    #[test]
    fn items_read_as_occ_events() {
        let item = ExecItem {
            n: 3,
            ts_ms: 9,
            update: ExecUpdate::Output { chunk: "hi".into() },
        };
        let v = serde_json::to_value(&item).expect("ser");
        assert_eq!(
            v,
            serde_json::json!({"n": 3, "ts_ms": 9, "type": "output", "chunk": "hi"})
        );
        assert_eq!(serde_json::from_value::<ExecItem>(v).expect("de"), item);
        let done = ExecUpdate::Error {
            code: exec_code::EXECUTION_TIMEOUT.into(),
            message: "x".into(),
        };
        assert!(done.is_final());
        assert!(!ExecUpdate::Started.is_final());
        assert_eq!("timeout".parse::<ExecStatus>(), Ok(ExecStatus::Timeout));
        assert!(ExecStatus::Cancelled.is_final() && !ExecStatus::Queued.is_final());
        assert_eq!(
            "reuse".parse::<WorkspacePolicy>(),
            Ok(WorkspacePolicy::Reuse)
        );
        assert!("keep".parse::<WorkspacePolicy>().is_err());
    }
}
