//! Workspaces: directories under `<state_dir>/workspaces/` (0700) filled from a zip, for
//! sessions and one-shot executions to run in.
//!
//! [`Workspaces`] is the store. A workspace is `<root>/<id>/` with its record beside it in
//! `<root>/<id>.json` (ids never hold a dot, so the two cannot collide, and the record is
//! out of reach of the model working inside the directory). Creating one unpacks the zip
//! ([`unpack`]) into a temporary `<root>/.tmp-<random>/` and renames it into place, so a
//! failed or interrupted upload leaves nothing behind and never half a workspace;
//! `overwrite` swaps the new directory with the old one in one `renameat2(RENAME_EXCHANGE)`
//! and then deletes the old one. `reuse` keeps an existing workspace untouched. One create
//! or delete per id runs at a time. Leftover temporary files from a crash are removed when
//! the store opens.
//!
//! - `names`: entry names judged ([`names::check`]) and the central directory's names.
//! - [`unpack`]: the guarded unpacker.
//! - `props` (tests and fuzzing only): the properties the zip guard must keep.
//! - [`upload`]: a body streamed over the link to a staged file.

pub mod names;
#[cfg(any(test, fuzzing))]
pub mod props;
pub mod unpack;
pub mod upload;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::event::now_ms;
use common::ids::SessionId;
use common::ipc::{ErrorBody, ErrorCode};
use common::workspace::{
    WorkspaceCreateArgs, WorkspaceCreated, WorkspaceInfo, WorkspacePolicy, valid_id,
};
use serde::{Deserialize, Serialize};

pub use unpack::Limits;
pub use upload::{Body, BodyPiece, Staged};

/// Prefix of temporary unpack directories.
const TMP_PREFIX: &str = ".tmp-";
/// Prefix of replaced workspaces waiting to be deleted.
const OLD_PREFIX: &str = ".old-";

/// What uses a workspace now, as the daemon's registries know it.
#[derive(Clone, Debug, Default)]
pub struct Users {
    /// Sessions whose directory it is, and whether each has a live child.
    pub sessions: Vec<(SessionId, bool)>,
    /// Executions queued or running in it.
    pub executions: Vec<String>,
}

impl Users {
    /// Whether something would break if the workspace went away.
    pub fn busy(&self) -> bool {
        !self.executions.is_empty() || self.sessions.iter().any(|(_, live)| *live)
    }
}

/// Where a new workspace's zip comes from.
pub enum Source {
    /// A zip file on this machine (the CLI's).
    File(PathBuf),
    /// An upload received over the bot link.
    Staged(Staged),
}

/// The record kept beside a workspace.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    created_ms: u64,
}

/// See the module docs.
pub struct Workspaces {
    root: PathBuf,
    limits: Limits,
    busy: Arc<Mutex<HashSet<String>>>,
}

/// Holds an id against concurrent creates and deletes until dropped.
struct IdLock {
    id: String,
    busy: Arc<Mutex<HashSet<String>>>,
}

impl Drop for IdLock {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// Checks a workspace id (`BAD_WORKSPACE_ID`).
pub fn check_id(id: &str) -> Result<(), ErrorBody> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ErrorBody::new(
            ErrorCode::BadWorkspaceId,
            format!(
                "workspace id `{}` must be 1 to 64 letters, digits, `-` or `_`",
                id.escape_debug()
            ),
        ))
    }
}

impl Workspaces {
    /// The store at `root`; [`Workspaces::prepare`] creates it.
    pub fn new(root: PathBuf, limits: Limits) -> Self {
        Self {
            root,
            limits,
            busy: Arc::default(),
        }
    }

    /// Creates the directory (0700) and removes what a crash left behind.
    pub fn prepare(&self) -> anyhow::Result<()> {
        let root = &self.root;
        crate::fsutil::private_dir(root)?;
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(TMP_PREFIX) || name.starts_with(OLD_PREFIX) {
                    let _ = std::fs::remove_dir_all(e.path());
                } else if name.starts_with(upload::UPLOAD_PREFIX) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// The directory that holds the workspaces.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of workspace `id`, if it exists (`WORKSPACE_NOT_FOUND` if not).
    pub fn path_of(&self, id: &str) -> Result<PathBuf, ErrorBody> {
        check_id(id)?;
        let path = self.root.join(id);
        if path.is_dir() {
            Ok(path)
        } else {
            Err(ErrorBody::new(
                ErrorCode::WorkspaceNotFound,
                format!(
                    "no workspace `{id}`; create it first (ccrm workspace push, or POST .../workspaces)"
                ),
            ))
        }
    }

    /// Receives a zip streamed over the link into a staged file (size cap checked on every
    /// chunk).
    pub async fn receive(&self, body: Body) -> Result<Staged, ErrorBody> {
        upload::receive(body, &self.root, self.limits.max_bytes).await
    }

    /// The workspace whose directory is `dir`, if any.
    pub fn id_of(&self, dir: &Path) -> Option<String> {
        let rest = dir.strip_prefix(&self.root).ok()?;
        let first = rest.components().next()?.as_os_str().to_str()?;
        (valid_id(first) && self.root.join(first).is_dir()).then(|| first.to_owned())
    }

    fn lock(&self, id: &str) -> Result<IdLock, ErrorBody> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(id.to_owned()) {
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("workspace `{id}` is being created or deleted right now; try again"),
            ));
        }
        Ok(IdLock {
            id: id.to_owned(),
            busy: self.busy.clone(),
        })
    }

    /// Creates, reuses or overwrites a workspace. `users` tells what uses a workspace now
    /// (an overwrite of a busy one is refused).
    pub async fn create(
        &self,
        args: WorkspaceCreateArgs,
        source: Source,
        users: impl Fn(&Path) -> Users,
    ) -> Result<WorkspaceCreated, ErrorBody> {
        check_id(&args.workspace_id)?;
        let name = args.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "a workspace needs a name of 1 to 200 characters",
            ));
        }
        if args.description.as_ref().is_some_and(|d| d.len() > 4000) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "a description may have at most 4000 characters",
            ));
        }
        let id = args.workspace_id.clone();
        let lock = self.lock(&id)?;
        let target = self.root.join(&id);
        let exists = target.is_dir();
        if exists && args.policy == WorkspacePolicy::Reuse {
            return Ok(WorkspaceCreated {
                workspace: self.info(&id, &users).await?,
                reused: true,
            });
        }
        if exists && users(&target).busy() {
            return Err(in_use(&id, "overwritten"));
        }
        let (zip, staged) = match source {
            Source::File(path) => (path, None),
            Source::Staged(staged) => (staged.path().to_owned(), Some(staged)),
        };
        let record = Record {
            id: id.clone(),
            name: name.to_owned(),
            description: args.description.filter(|d| !d.trim().is_empty()),
            created_ms: now_ms(),
        };
        let job = Install {
            root: self.root.clone(),
            zip,
            target,
            exists,
            record,
            limits: self.limits,
        };
        // Unpacking and putting in place run to their end on a blocking thread, holding the
        // id's lock and the staged upload, even if the caller goes away meanwhile (a
        // dropped link): what is left is either the whole new workspace or nothing.
        tokio::task::spawn_blocking(move || {
            let done = job.run();
            drop((staged, lock));
            done
        })
        .await
        .map_err(|e| internal("the unpacker failed", e))??;
        tracing::info!(workspace = %id, overwrite = exists, "workspace unpacked");
        Ok(WorkspaceCreated {
            workspace: self.info(&id, &users).await?,
            reused: false,
        })
    }

    fn record_path(&self, id: &str) -> PathBuf {
        record_path(&self.root, id)
    }

    fn read_record(&self, id: &str) -> Record {
        std::fs::read(self.record_path(id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| Record {
                id: id.to_owned(),
                name: id.to_owned(),
                description: None,
                created_ms: 0,
            })
    }

    /// One workspace as `workspaces.list` shows it (size and files counted now).
    async fn info(
        &self,
        id: &str,
        users: &impl Fn(&Path) -> Users,
    ) -> Result<WorkspaceInfo, ErrorBody> {
        let path = self.path_of(id)?;
        let record = self.read_record(id);
        let (size, files) = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || measure(&p))
                .await
                .unwrap_or_default()
        };
        let u = users(&path);
        Ok(WorkspaceInfo {
            id: id.to_owned(),
            name: record.name,
            description: record.description,
            path,
            size,
            files,
            created_ms: record.created_ms,
            sessions: u.sessions.into_iter().map(|(s, _)| s).collect(),
            executions: u.executions,
        })
    }

    /// Every workspace, by id.
    pub async fn list(&self, users: impl Fn(&Path) -> Users) -> Vec<WorkspaceInfo> {
        let mut ids: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| valid_id(n))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(info) = self.info(&id, &users).await {
                out.push(info);
            }
        }
        out
    }

    /// Deletes a workspace; refused (`WORKSPACE_IN_USE`) while something uses it.
    pub async fn remove(&self, id: &str, users: impl Fn(&Path) -> Users) -> Result<(), ErrorBody> {
        let path = self.path_of(id)?;
        let _lock = self.lock(id)?;
        if users(&path).busy() {
            return Err(in_use(id, "deleted"));
        }
        let old = self
            .root
            .join(format!("{OLD_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(&path, &old).map_err(|e| internal("cannot delete the workspace", e))?;
        let _ = std::fs::remove_file(self.record_path(id));
        let _ = tokio::task::spawn_blocking(move || remove_dir(&old)).await;
        tracing::info!(workspace = %id, "workspace deleted");
        Ok(())
    }
}

fn record_path(root: &Path, id: &str) -> PathBuf {
    root.join(format!("{id}.json"))
}

/// Writes a workspace's record atomically (0600).
fn write_record(root: &Path, record: &Record) -> Result<(), ErrorBody> {
    let text = serde_json::to_vec_pretty(record).map_err(|e| internal("record", e))?;
    let tmp = root.join(format!(
        "{TMP_PREFIX}{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    crate::fsutil::write_private(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, record_path(root, &record.id)))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            internal("cannot write the workspace record", e)
        })
}

/// The blocking part of a create: unpack into a temporary directory, then put it in place.
struct Install {
    root: PathBuf,
    zip: PathBuf,
    target: PathBuf,
    exists: bool,
    record: Record,
    limits: Limits,
}

impl Install {
    fn run(self) -> Result<(), ErrorBody> {
        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let unpacked = crate::fsutil::private_dir(&tmp)
            .map_err(|e| internal("cannot unpack", e))
            .and_then(|()| unpack::unpack(&self.zip, &tmp, &self.limits))
            .and_then(|_| self.put_in_place(&tmp));
        match unpacked {
            Ok(Some(old)) => remove_dir(&old),
            Ok(None) => {}
            Err(e) => {
                remove_dir(&tmp);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Puts the unpacked `tmp` in place of the target and writes its record; returns the
    /// replaced content's directory, to be deleted.
    fn put_in_place(&self, tmp: &Path) -> Result<Option<PathBuf>, ErrorBody> {
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| internal("cannot set the workspace's mode", e))?;
        write_record(&self.root, &self.record)?;
        if !self.exists {
            std::fs::rename(tmp, &self.target)
                .map_err(|e| internal("cannot move the workspace into place", e))?;
            return Ok(None);
        }
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            tmp,
            nix::fcntl::AT_FDCWD,
            &self.target,
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .map_err(|e| internal("cannot swap in the new workspace", e))?;
        // `tmp` now holds the old content.
        let old = self
            .root
            .join(format!("{OLD_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        Ok(Some(if std::fs::rename(tmp, &old).is_ok() {
            old
        } else {
            tmp.to_owned()
        }))
    }
}

fn in_use(id: &str, what: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::WorkspaceInUse,
        format!(
            "workspace `{id}` cannot be {what} while a session or execution uses it; stop them first"
        ),
    )
}

/// Removes a temporary or replaced directory (a failure is only logged: the next start
/// sweeps it). Blocking.
fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a directory");
    }
}

/// Bytes and regular files under `dir` (symlinks are not followed).
fn measure(dir: &Path) -> (u64, u64) {
    let (mut size, mut files) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => {
                    files += 1;
                    size += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    (size, files)
}
