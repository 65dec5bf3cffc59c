//! `session.file`: a file sent in chat or over REST, saved into the session's working
//! directory as `.ccrm/inbox/<timestamp>-<name>` so Claude can read it with its tools.
//!
//! The bytes come as the command's body over the bot link (see [`crate::transfer`]) and are
//! written as they arrive, acknowledged chunk by chunk, with the announced size and a hard
//! cap checked on every chunk and the SHA-256 at the end. The name is judged here whatever
//! the sender did ([`common::attach::sanitize_name`]: last component only, no control
//! characters, no leading dots, bounded length); `.ccrm` and `.ccrm/inbox` are created
//! 0700 and must be real directories (not symlinks), and the file is created 0600 with
//! `O_EXCL | O_NOFOLLOW`. A refused, damaged or abandoned body leaves nothing behind.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::attach::{FileArgs, FileSaved, INBOX_DIR, sanitize_name};
use common::event::now_ms;
use common::ipc::{ErrorBody, ErrorCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::workspace::{Body, BodyPiece};

/// Largest file the daemon takes, whatever the bot allows (the bot's `chat_max_file_bytes`
/// is the limit users meet).
pub const MAX_INBOX_FILE: u64 = 1024 * 1024 * 1024;

/// Removes a half-written file unless it was kept.
struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, format!("cannot {what}: {e}"))
}

/// Creates `dir` 0700 unless it exists, and refuses it when it is not a real directory.
fn real_dir(dir: &Path) -> Result<(), ErrorBody> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(internal(&format!("create {}", dir.display()), e)),
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| internal(&format!("read {}", dir.display()), e))?;
    if !meta.file_type().is_dir() {
        return Err(ErrorBody::new(
            ErrorCode::BadState,
            format!(
                "{} is not a directory (a symlink or a file); remove it so files can be saved there",
                dir.display()
            ),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| internal(&format!("make {} private", dir.display()), e))?;
    }
    Ok(())
}

/// `<timestamp>-<name>`, with the time in UTC as `YYYYMMDD-HHMMSS`.
fn stamped(name: &str, ms: u64) -> String {
    let stamp = i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y%m%d-%H%M%S").to_string());
    format!("{stamp}-{name}")
}

/// Opens a new 0600 file for `name` in `inbox`; a clash gets `-2`, `-3`... before the
/// extension.
async fn create(inbox: &Path, name: &str) -> Result<(PathBuf, tokio::fs::File), ErrorBody> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
        _ => (name.to_owned(), String::new()),
    };
    for n in 1..100u32 {
        let candidate = if n == 1 {
            name.to_owned()
        } else {
            format!("{stem}-{n}{ext}")
        };
        let path = inbox.join(&candidate);
        match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .await
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(internal(&format!("create {}", path.display()), e)),
        }
    }
    Err(ErrorBody::new(
        ErrorCode::Internal,
        format!("too many files named {name} in {}", inbox.display()),
    ))
}

/// Saves `body` as the file `args` announces in `cwd`'s inbox.
pub async fn save(mut body: Body, cwd: &Path, args: &FileArgs) -> Result<FileSaved, ErrorBody> {
    if args.size > MAX_INBOX_FILE {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "the file is {} bytes; a session takes files of at most {MAX_INBOX_FILE} bytes",
                args.size
            ),
        ));
    }
    if !cwd.is_dir() {
        return Err(ErrorBody::new(
            ErrorCode::BadState,
            format!(
                "the session's directory {} is gone; files cannot be saved there",
                cwd.display()
            ),
        ));
    }
    let dot = cwd.join(".ccrm");
    real_dir(&dot)?;
    let inbox = cwd.join(INBOX_DIR);
    real_dir(&inbox)?;
    let name = stamped(&sanitize_name(&args.name), now_ms());
    let (path, mut file) = create(&inbox, &name).await?;
    let mut partial = Partial {
        path: path.clone(),
        keep: false,
    };
    let mut hash = Sha256::new();
    let mut received: u64 = 0;
    loop {
        match body.rx.recv().await {
            Some(BodyPiece::Data(bytes)) => {
                received += bytes.len() as u64;
                if received > args.size {
                    return Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        format!(
                            "the file is longer than the {} bytes announced; send it again",
                            args.size
                        ),
                    ));
                }
                hash.update(&bytes);
                file.write_all(&bytes)
                    .await
                    .map_err(|e| internal("write the file", e))?;
                body.acked.send_replace(received);
            }
            Some(BodyPiece::End { size, sha256 }) => {
                file.flush()
                    .await
                    .map_err(|e| internal("write the file", e))?;
                drop(file);
                let got = hex::encode(hash.finalize());
                if size != received
                    || received != args.size
                    || !got.eq_ignore_ascii_case(sha256.trim())
                {
                    return Err(ErrorBody::new(
                        ErrorCode::BadRequest,
                        format!(
                            "the file was damaged in transit ({received} of {size} bytes, sha256 {got}, expected {sha256}); send it again"
                        ),
                    ));
                }
                partial.keep = true;
                let relative = format!("{INBOX_DIR}/{}", name_of(&path));
                return Ok(FileSaved {
                    path: path.display().to_string(),
                    relative,
                    size: received,
                    sha256: got,
                });
            }
            None => {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "the file was abandoned before its end",
                ));
            }
        }
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::{mpsc, watch};

    fn body() -> (mpsc::Sender<BodyPiece>, Body) {
        let (tx, rx) = mpsc::channel(8);
        let (acked, _) = watch::channel(0);
        (tx, Body { rx, acked })
    }

    fn args(name: &str, size: u64) -> FileArgs {
        FileArgs {
            session: "s".into(),
            name: name.into(),
            size,
        }
    }

    #[tokio::test]
    async fn saves_private_files_under_sanitised_names() {
        let dir = tempfile::tempdir().expect("dir");
        let (tx, b) = body();
        let data = b"line one\nline two\n".to_vec();
        let sha = hex::encode(Sha256::digest(&data));
        tx.send(BodyPiece::Data(data.clone())).await.expect("send");
        tx.send(BodyPiece::End {
            size: data.len() as u64,
            sha256: sha.clone(),
        })
        .await
        .expect("send");
        let saved = save(b, dir.path(), &args("../../x\0y.log", data.len() as u64))
            .await
            .expect("saved");
        let path = Path::new(&saved.path);
        assert_eq!(path.parent(), Some(dir.path().join(INBOX_DIR).as_path()));
        assert!(saved.relative.starts_with(".ccrm/inbox/"));
        assert!(saved.relative.ends_with("-x_y.log"), "{}", saved.relative);
        assert_eq!(saved.sha256, sha);
        assert_eq!(std::fs::read(path).expect("read"), data);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(path), 0o600);
        assert_eq!(mode(&dir.path().join(INBOX_DIR)), 0o700);
    }

    #[tokio::test]
    async fn refuses_a_symlinked_inbox_and_long_or_abandoned_bodies() {
        let dir = tempfile::tempdir().expect("dir");
        let elsewhere = tempfile::tempdir().expect("dir");
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(".ccrm")).expect("link");
        let (_tx, b) = body();
        let e = save(b, dir.path(), &args("a.txt", 1))
            .await
            .expect_err("symlink");
        assert_eq!(e.code, ErrorCode::BadState);
        assert_eq!(std::fs::read_dir(elsewhere.path()).expect("ls").count(), 0);

        let dir = tempfile::tempdir().expect("dir");
        let (tx, b) = body();
        tx.send(BodyPiece::Data(vec![1; 10])).await.expect("send");
        let e = save(b, dir.path(), &args("a.txt", 5))
            .await
            .expect_err("long");
        assert_eq!(e.code, ErrorCode::BadRequest);
        let (tx, b) = body();
        tx.send(BodyPiece::Data(vec![1; 3])).await.expect("send");
        drop(tx);
        save(b, dir.path(), &args("a.txt", 5))
            .await
            .expect_err("abandoned");
        let inbox = dir.path().join(INBOX_DIR);
        assert_eq!(std::fs::read_dir(inbox).expect("ls").count(), 0);
    }
}
