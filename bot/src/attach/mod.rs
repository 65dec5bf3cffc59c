//! Attachments of a prompt from chat or REST (issue 18), independent of where they came
//! from: [`prepare`] turns one file's bytes into an image block for the prompt
//! ([`image`]: JPEG, PNG, GIF, WebP, scaled down above the model's limits) or, for
//! anything else, a file saved on the session's daemon in `.ccrm/inbox/` through the
//! streamed `session.file` command ([`crate::upload::BodyUpload`]), named in the prompt by
//! [`file_line`].

pub mod image;

use common::attach::{FileArgs, FileSaved, ImageBlock};
use common::ids::DaemonId;
use common::ipc::Command;

use crate::hub::Hub;
use crate::upload::{BodyUpload, UploadError};

/// Why an attachment could not be given to a session.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The image code failed on it.
    #[error("scaling the image failed: {0}")]
    Scale(String),
    /// The daemon refused the file (its `ErrorBody` says why) or could not be reached.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The daemon's answer was not a `FileSaved`.
    #[error("the daemon's answer was not understood: {0}")]
    Answer(#[from] serde_json::Error),
}

/// What one attachment became.
#[derive(Debug)]
pub enum Part {
    /// An image block of the prompt.
    Image(ImageBlock),
    /// A file saved on the daemon's machine.
    Saved(FileSaved),
}

/// The prompt line that tells Claude where a saved file is.
pub fn file_line(original: &str, saved: &FileSaved) -> String {
    format!(
        "[The user sent the file \"{original}\" ({} bytes); it is saved at {}]",
        saved.size, saved.path
    )
}

/// `n` bytes for people (`20 MB`, `512 KB`, `12 bytes`).
pub fn human_bytes(n: u64) -> String {
    const MB: u64 = 1024 * 1024;
    if n >= MB {
        let whole = n / MB;
        if n.is_multiple_of(MB) {
            format!("{whole} MB")
        } else {
            format!("{:.1} MB", n as f64 / MB as f64)
        }
    } else if n >= 1024 {
        format!("{} KB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Saves `bytes` as `name` in the inbox of `session` on `daemon`.
pub async fn save_file(
    hub: &Hub,
    daemon: &DaemonId,
    session: &str,
    name: &str,
    bytes: &[u8],
) -> Result<FileSaved, AttachError> {
    let cmd = Command::SessionFile(FileArgs {
        session: session.to_owned(),
        name: name.to_owned(),
        size: bytes.len() as u64,
    });
    let mut up = BodyUpload::start(hub, daemon, cmd).await?;
    up.write(bytes).await?;
    let v = up.finish().await?;
    Ok(serde_json::from_value(v)?)
}

/// One attachment `name` with `bytes`, for `session` on `daemon`: an image the model can
/// see becomes an image block; anything else (an unreadable image included) is saved in
/// the session's inbox.
pub async fn prepare(
    hub: &Hub,
    daemon: &DaemonId,
    session: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Result<Part, AttachError> {
    if let Some(media) = image::sniff(&bytes) {
        let (bytes, prepared) = tokio::task::spawn_blocking(move || {
            let p = image::to_block(&bytes, media);
            (bytes, p)
        })
        .await
        .map_err(|e| AttachError::Scale(e.to_string()))?;
        match prepared {
            Ok(p) => {
                if let Some((from, to)) = p.scaled {
                    tracing::debug!(?from, ?to, "image scaled down for the model");
                }
                return Ok(Part::Image(p.block));
            }
            Err(reason) => {
                tracing::debug!(%reason, "an image the model cannot take is saved as a file");
                return save_file(hub, daemon, session, name, &bytes)
                    .await
                    .map(Part::Saved);
            }
        }
    }
    save_file(hub, daemon, session, name, &bytes)
        .await
        .map(Part::Saved)
}
