//! `ccrm workspace push|list|rm`. `push DIR` zips the directory on the fly into a private
//! temporary file beside the daemon's socket: it walks with the `ignore` crate, so
//! `.gitignore` files are honoured whether or not DIR is a git repository, `.git/` is never
//! included, and symlinks are left out (the daemon's unpacker refuses them); a progress bar
//! shows on a terminal. `push FILE.zip` hands the file itself to the daemon. Either way the
//! daemon unpacks it with its guarded unpacker.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use common::ipc::{Command, ErrorBody, ErrorCode, NoArgs};
use common::workspace::{
    MAX_ID_LEN, WorkspaceCreateArgs, WorkspaceCreated, WorkspaceInfo, WorkspacePolicy,
    WorkspaceRef, valid_id,
};
use zip::write::SimpleFileOptions;

use super::args::{Cli, WorkspaceCmd};
use super::call::{Failure, decode, send_and_print, socket_path};
use super::output::{ago, human_bytes};
use crate::client::ClientError;

/// Runs one `ccrm workspace` subcommand.
pub(super) async fn run(cli: &Cli, cmd: &WorkspaceCmd) -> Result<ExitCode, Failure> {
    match cmd {
        WorkspaceCmd::Push {
            path,
            id,
            name,
            description,
            policy,
        } => {
            let policy: WorkspacePolicy = policy.parse().map_err(anyhow::Error::msg)?;
            push(cli, path, id, name.clone(), description.clone(), policy).await
        }
        WorkspaceCmd::List => list(cli).await,
        WorkspaceCmd::Rm { id } => {
            let cmd = Command::WorkspaceRm(WorkspaceRef {
                workspace_id: id.clone(),
            });
            send_and_print(cli, cmd, |_| {
                println!("workspace {id} deleted");
                Ok(())
            })
            .await
        }
    }
}

/// Removes the temporary zip of a pushed directory when dropped.
struct TempZip(PathBuf);

impl Drop for TempZip {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn push(
    cli: &Cli,
    path: &Path,
    id: &str,
    name: Option<String>,
    description: Option<String>,
    policy: WorkspacePolicy,
) -> Result<ExitCode, Failure> {
    if !valid_id(id) {
        // Before anything is zipped; the code ccrmd would give.
        let msg = format!(
            "--id `{}` must be 1 to {MAX_ID_LEN} letters, digits, `-` or `_`",
            id.escape_debug()
        );
        return Err(ClientError::Daemon(ErrorBody::new(ErrorCode::BadWorkspaceId, msg)).into());
    }
    let path = std::path::absolute(path).map_err(anyhow::Error::from)?;
    let meta = std::fs::metadata(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e}; pass a directory (zipped for you) or a .zip file",
            path.display()
        )
    })?;
    let mut _temp = None;
    let zip_path = if meta.is_dir() {
        let socket = socket_path(cli)?;
        let dir = socket
            .parent()
            .map_or_else(std::env::temp_dir, Path::to_path_buf);
        let out = dir.join(format!("push-{}.zip", uuid::Uuid::new_v4().simple()));
        let temp = TempZip(out.clone());
        let show = !cli.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let (src, dst) = (path.clone(), out.clone());
        let skipped = tokio::task::spawn_blocking(move || zip_dir(&src, &dst, show))
            .await
            .map_err(anyhow::Error::from)??;
        if !cli.json {
            for s in &skipped {
                eprintln!("note: left out {s} (symlinks are not part of a workspace)");
            }
        }
        _temp = Some(temp);
        out
    } else {
        path.clone()
    };
    let args = WorkspaceCreateArgs {
        workspace_id: id.to_owned(),
        name: name.unwrap_or_else(|| id.to_owned()),
        description,
        policy,
        zip_path: Some(zip_path),
        upload_id: None,
    };
    send_and_print(cli, Command::WorkspaceCreate(args), |data| {
        let c: WorkspaceCreated = decode(data)?;
        let w = &c.workspace;
        if c.reused {
            println!(
                "workspace {} already exists and was kept as it is (--policy reuse)",
                w.id
            );
        } else {
            println!(
                "workspace {} ready: {} files, {} in {}",
                w.id,
                w.files,
                human_bytes(w.size),
                w.path.display()
            );
        }
        println!(
            "  run in it: ccrm exec --workspace {} \"...\"   or   ccrm start --workspace {}",
            w.id, w.id
        );
        Ok(())
    })
    .await
}

/// Zips `dir` into a new 0600 file at `out`; returns the symlinks it left out.
fn zip_dir(dir: &Path, out: &Path, progress: bool) -> anyhow::Result<Vec<String>> {
    let mut entries = Vec::new();
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .parents(false)
        .require_git(false)
        .git_global(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut total: u64 = 0;
    let mut skipped = Vec::new();
    for entry in walk {
        let entry = entry.context("cannot walk the directory")?;
        let Some(kind) = entry.file_type() else {
            continue;
        };
        let rel = entry
            .path()
            .strip_prefix(dir)
            .context("walked outside the directory")?
            .to_path_buf();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel.to_string_lossy().into_owned();
        if kind.is_symlink() {
            skipped.push(name);
            continue;
        }
        if kind.is_file() {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
        entries.push((entry.path().to_path_buf(), name, kind.is_dir()));
    }
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "zipping {bar:30} {bytes}/{total_bytes} {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let mut buf = vec![0u8; 64 * 1024];
    for (path, name, is_dir) in entries {
        if is_dir {
            zip.add_directory(format!("{name}/"), SimpleFileOptions::default())?;
            continue;
        }
        let mode = std::fs::metadata(&path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
        zip.start_file(name.as_str(), options)?;
        let mut f = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(bar) = &bar {
            bar.set_message(name.clone());
        }
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            zip.write_all(&buf[..n])?;
            if let Some(bar) = &bar {
                bar.inc(n as u64);
            }
        }
    }
    zip.finish()?.flush()?;
    if let Some(bar) = bar {
        bar.finish_with_message("sent to ccrmd to unpack");
    }
    Ok(skipped)
}

/// `ccrm workspace list`.
async fn list(cli: &Cli) -> Result<ExitCode, Failure> {
    send_and_print(cli, Command::WorkspacesList(NoArgs {}), |data| {
        let list: Vec<WorkspaceInfo> = decode(data)?;
        if list.is_empty() {
            println!("no workspaces; create one with `ccrm workspace push DIR --id ID`");
            return Ok(());
        }
        println!(
            "{:<24} {:<24} {:>7} {:>9} {:>9}  USED BY",
            "ID", "NAME", "FILES", "SIZE", "CREATED"
        );
        for w in list {
            let mut users: Vec<String> = w
                .sessions
                .iter()
                .map(|s| format!("session {}", s.short()))
                .collect();
            users.extend(w.executions.iter().map(|e| format!("execution {e}")));
            println!(
                "{:<24} {:<24} {:>7} {:>9} {:>9}  {}",
                w.id,
                w.name,
                w.files,
                human_bytes(w.size),
                ago(w.created_ms),
                if users.is_empty() {
                    "-".to_owned()
                } else {
                    users.join(", ")
                }
            );
        }
        Ok(())
    })
    .await
}
