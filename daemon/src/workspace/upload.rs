//! The upload receiver: a command's body, streamed over the bot link in chunks, written to a
//! private file as it arrives ([`receive`]), with the size cap checked on every chunk (not
//! after) and the SHA-256 checked at the end. Each chunk is acknowledged once it is written
//! ([`Body::acked`]), which is the link's flow control: the bot never has more than
//! [`common::link::BODY_WINDOW`] bytes in flight, so neither side holds the whole upload.
//!
//! The file is a [`Staged`] zip: deleted when dropped, so a refused, damaged or interrupted
//! upload leaves nothing behind.

use std::path::{Path, PathBuf};

use common::ipc::{ErrorBody, ErrorCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

/// A piece of a body, in order.
#[derive(Debug)]
pub enum BodyPiece {
    /// Bytes.
    Data(Vec<u8>),
    /// The sender says this is all: the whole length and its SHA-256 (lowercase hex).
    End {
        /// Total bytes.
        size: u64,
        /// SHA-256, hex.
        sha256: String,
    },
}

/// A command's body as the uplink hands it over: the pieces, and where to report how many
/// bytes are on disk. The channel closing before [`BodyPiece::End`] means the upload was
/// abandoned.
pub struct Body {
    /// The pieces.
    pub rx: mpsc::Receiver<BodyPiece>,
    /// Bytes written so far (the uplink turns changes into acknowledgements).
    pub acked: watch::Sender<u64>,
}

/// An uploaded zip in the workspaces directory, removed when dropped.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
}

impl Staged {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Prefix of staged upload files (leftovers are swept at start).
pub const UPLOAD_PREFIX: &str = ".upload-";

/// Writes `body` to a new 0600 file in `dir`; refuses more than `max_bytes`.
pub async fn receive(mut body: Body, dir: &Path, max_bytes: u64) -> Result<Staged, ErrorBody> {
    let internal = |what: &str, e: std::io::Error| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("cannot {what} the upload: {e}"),
        )
    };
    let staged = Staged {
        path: dir.join(format!(
            "{UPLOAD_PREFIX}{}.zip",
            uuid::Uuid::new_v4().simple()
        )),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staged.path)
        .await
        .map_err(|e| internal("store", e))?;
    let mut hash = Sha256::new();
    let mut received: u64 = 0;
    loop {
        match body.rx.recv().await {
            Some(BodyPiece::Data(bytes)) => {
                received += bytes.len() as u64;
                if received > max_bytes {
                    return Err(ErrorBody::new(
                        ErrorCode::ZipTooLarge,
                        format!(
                            "the upload is larger than {max_bytes} bytes (workspace_max_bytes)"
                        ),
                    ));
                }
                hash.update(&bytes);
                file.write_all(&bytes)
                    .await
                    .map_err(|e| internal("write", e))?;
                body.acked.send_replace(received);
            }
            Some(BodyPiece::End { size, sha256 }) => {
                file.flush().await.map_err(|e| internal("write", e))?;
                drop(file);
                let got = hex::encode(hash.finalize());
                if size != received || !got.eq_ignore_ascii_case(sha256.trim()) {
                    return Err(ErrorBody::new(
                        ErrorCode::ZipCorrupt,
                        format!(
                            "the upload was damaged in transit ({received} of {size} bytes, sha256 {got}, expected {sha256}); send it again"
                        ),
                    ));
                }
                return Ok(staged);
            }
            None => {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "the upload was abandoned before its end",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> (mpsc::Sender<BodyPiece>, watch::Receiver<u64>, Body) {
        let (tx, rx) = mpsc::channel(8);
        let (acked, ack_rx) = watch::channel(0);
        (tx, ack_rx, Body { rx, acked })
    }

    #[tokio::test]
    async fn a_body_is_stored_checked_and_removed_with_its_guard() {
        let dir = tempfile::tempdir().expect("dir");
        let (tx, acks, b) = body();
        let task = tokio::spawn({
            let d = dir.path().to_owned();
            async move { receive(b, &d, 100).await }
        });
        tx.send(BodyPiece::Data(b"hello ".to_vec()))
            .await
            .expect("send");
        tx.send(BodyPiece::Data(b"world".to_vec()))
            .await
            .expect("send");
        let sha = hex::encode(Sha256::digest(b"hello world"));
        tx.send(BodyPiece::End {
            size: 11,
            sha256: sha,
        })
        .await
        .expect("send");
        let staged = task.await.expect("join").expect("stored");
        assert_eq!(*acks.borrow(), 11);
        assert_eq!(std::fs::read(staged.path()).expect("read"), b"hello world");
        let path = staged.path().to_owned();
        drop(staged);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn too_large_damaged_and_abandoned_bodies_leave_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let empty = |d: &Path| std::fs::read_dir(d).expect("ls").count() == 0;

        let (tx, _acks, b) = body();
        tx.send(BodyPiece::Data(vec![0; 101])).await.expect("send");
        let e = receive(b, dir.path(), 100).await.expect_err("too large");
        assert_eq!(e.code, ErrorCode::ZipTooLarge);
        assert!(empty(dir.path()));

        let (tx, _acks, b) = body();
        tx.send(BodyPiece::Data(vec![1; 10])).await.expect("send");
        tx.send(BodyPiece::End {
            size: 10,
            sha256: "00".into(),
        })
        .await
        .expect("send");
        let e = receive(b, dir.path(), 100).await.expect_err("damaged");
        assert_eq!(e.code, ErrorCode::ZipCorrupt);
        assert!(empty(dir.path()));

        let (tx, _acks, b) = body();
        tx.send(BodyPiece::Data(vec![1; 10])).await.expect("send");
        drop(tx);
        let e = receive(b, dir.path(), 100).await.expect_err("abandoned");
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(empty(dir.path()));
    }
}
