//! [`Work`]: the daemon's workspaces and one-shot executions behind the `workspace.*` and
//! `exec.*` commands. The registry in [`crate::daemon`] owns one and hands it those
//! commands with what it knows of its sessions ([`SessionDir`]s), so this module needs
//! nothing of the registry and the two form no cycle.
//!
//! Over the bot link a workspace comes in two steps, because a multipart form may send
//! its fields after the file: `workspace.upload` streams the zip into a staged file kept
//! here under an upload id (for at most [`UPLOAD_TTL`]), then `workspace.create` names
//! that id with the workspace's settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ids::SessionId;
use common::ipc::{Command, ErrorBody, ErrorCode};
use common::workspace::{ExecArgs, ExecFollowArgs, ExecInfo, ExecItem, UploadReceived};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::exec::{ExecCtx, Executions};
use crate::workspace::{Body, Limits, Source, Staged, Users, Workspaces};

/// How long a staged upload waits for its `workspace.create`.
pub const UPLOAD_TTL: Duration = Duration::from_secs(600);

/// A session's id, directory and whether it has a live child.
pub type SessionDir = (SessionId, PathBuf, bool);

/// See the module docs.
pub struct Work {
    /// The workspaces.
    pub workspaces: Workspaces,
    /// The execution pool.
    pub executions: Arc<Executions>,
    uploads: Mutex<HashMap<String, (Staged, Instant)>>,
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Work {
    /// Both stores for a daemon with `cfg`; [`Work::prepare`] creates their directories.
    pub fn new(cfg: &Config, claude_bin: PathBuf, shim: Option<PathBuf>, tag: String) -> Self {
        let limits = Limits {
            max_bytes: cfg.workspace_max_bytes,
            max_files: cfg.workspace_max_files,
            max_ratio: cfg.workspace_max_ratio,
        };
        Self {
            workspaces: Workspaces::new(cfg.workspaces_dir(), limits),
            executions: Executions::new(ExecCtx {
                cfg: cfg.clone(),
                claude_bin,
                shim,
                tag,
            }),
            uploads: Mutex::default(),
        }
    }

    /// Creates the directories and cleans up after a crash.
    pub fn prepare(&self) -> anyhow::Result<()> {
        self.workspaces.prepare()?;
        self.executions.prepare()
    }

    /// Whether `cmd` is one of the commands this module runs.
    pub fn handles(cmd: &Command) -> bool {
        matches!(
            cmd,
            Command::WorkspaceCreate(_)
                | Command::WorkspacesList(_)
                | Command::WorkspaceRm(_)
                | Command::ExecStart(_)
                | Command::ExecGet(_)
                | Command::ExecCancel(_)
        )
    }

    /// What uses the workspace at `dir`.
    fn users(&self, dir: &Path, sessions: &[SessionDir]) -> Users {
        Users {
            sessions: sessions
                .iter()
                .filter(|(_, cwd, _)| cwd.starts_with(dir))
                .map(|(id, _, live)| (*id, *live))
                .collect(),
            executions: self.executions.using(dir),
        }
    }

    /// Runs one of [`Work::handles`]' commands.
    pub async fn execute(&self, cmd: Command, sessions: &[SessionDir]) -> Result<Value, ErrorBody> {
        let users = |dir: &Path| self.users(dir, sessions);
        match cmd {
            Command::WorkspaceCreate(mut args) => {
                if let Some(upload) = args.upload_id.take() {
                    let staged = self.take_upload(&upload)?;
                    let created = self
                        .workspaces
                        .create(args, Source::Staged(staged), users)
                        .await?;
                    return Ok(to_value(&created));
                }
                let Some(zip) = args.zip_path.take() else {
                    return Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        "workspace.create needs `zip_path` (a zip file on this machine) or an `upload_id`",
                    ));
                };
                if !zip.is_absolute() || !zip.is_file() {
                    return Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        format!(
                            "`{}` is not an existing zip file (absolute path)",
                            zip.display()
                        ),
                    ));
                }
                let created = self
                    .workspaces
                    .create(args, Source::File(zip), users)
                    .await?;
                Ok(to_value(&created))
            }
            Command::WorkspacesList(_) => Ok(to_value(&self.workspaces.list(users).await)),
            Command::WorkspaceRm(r) => {
                self.workspaces.remove(&r.workspace_id, users).await?;
                Ok(serde_json::json!({"deleted": r.workspace_id}))
            }
            Command::ExecStart(args) => self.start(args).map(|i| to_value(&i)),
            Command::ExecGet(r) => self.executions.get(&r.execution_id).map(|i| to_value(&i)),
            Command::ExecCancel(r) => self
                .executions
                .cancel(&r.execution_id)
                .map(|i| to_value(&i)),
            other => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("`{}` is not a workspace command", other.name()),
            )),
        }
    }

    /// `workspace.upload`: receives `body` into a staged file kept for a later create.
    pub async fn upload(&self, body: Body) -> Result<Value, ErrorBody> {
        let staged = self.workspaces.receive(body).await?;
        let size = std::fs::metadata(staged.path())
            .map(|m| m.len())
            .unwrap_or(0);
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        // Uploads nobody claimed in time are dropped (their files with them).
        uploads.retain(|_, (_, at)| at.elapsed() < UPLOAD_TTL);
        uploads.insert(upload_id.clone(), (staged, Instant::now()));
        Ok(to_value(&UploadReceived { upload_id, size }))
    }

    fn take_upload(&self, id: &str) -> Result<Staged, ErrorBody> {
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        uploads.retain(|_, (_, at)| at.elapsed() < UPLOAD_TTL);
        uploads.remove(id).map(|(s, _)| s).ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::NotFound,
                format!("no upload `{id}` (it expired or was used); upload the zip again"),
            )
        })
    }

    /// Resolves an execution's directory and accepts it.
    fn start(&self, args: ExecArgs) -> Result<ExecInfo, ErrorBody> {
        let cwd = match (&args.workspace_id, &args.cwd) {
            (Some(ws), None) => self.workspaces.path_of(ws)?,
            (None, Some(cwd)) if cwd.is_absolute() && cwd.is_dir() => cwd.clone(),
            (None, Some(cwd)) => {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!(
                        "cwd `{}` is not an existing absolute directory",
                        cwd.display()
                    ),
                ));
            }
            _ => {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "give exactly one of workspaceId and cwd",
                ));
            }
        };
        self.executions.start(args, cwd)
    }

    /// `exec.follow`: items to `tx` until the execution's last (or until the receiver
    /// goes); the summary at the end.
    pub async fn follow(
        &self,
        args: ExecFollowArgs,
        tx: mpsc::Sender<ExecItem>,
    ) -> Result<Value, ErrorBody> {
        let info = self
            .executions
            .follow(&args.execution_id, args.after, tx)
            .await?;
        Ok(to_value(&info))
    }
}
