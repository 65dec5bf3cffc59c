//! Streaming an upload to a daemon over its link: [`BodyUpload`] sends a command that
//! takes a body (`workspace.upload`), then the bytes as they come from the HTTP request in
//! [`BODY_CHUNK`]-sized `body_chunk` frames, never more than [`BODY_WINDOW`] bytes ahead
//! of what the daemon has acknowledged writing, and ends with the size and SHA-256. The bot
//! therefore holds at most one chunk being filled plus the window in flight, whatever the
//! size of the upload. Dropping an unfinished upload tells the daemon to abandon it. A
//! daemon linked to another replica is reached through it, frames and acknowledgements
//! alike (`crate::replica`), with the same window.

use std::time::Duration;

use base64::Engine;
use common::ids::DaemonId;
use common::ipc::{Command, ErrorBody};
use common::link::{BODY_CHUNK, BODY_WINDOW, HubMsg};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};

use crate::hub::{Hub, HubError};

/// How long the daemon may take to acknowledge room in the window.
const STALL: Duration = Duration::from_secs(60);
/// How long the daemon may take to answer once the body is complete.
const REPLY: Duration = Duration::from_secs(300);

/// Why an upload did not get the daemon's answer.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The link is gone (or never was).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The daemon stopped acknowledging.
    #[error("daemon {0} stopped taking the upload")]
    Stalled(DaemonId),
    /// The daemon answered (refused it) before the body was complete, or after.
    #[error("{0}")]
    Daemon(ErrorBody),
}

/// See the module docs.
pub struct BodyUpload<'a> {
    hub: &'a Hub,
    daemon: DaemonId,
    req_id: u64,
    acked: watch::Receiver<u64>,
    reply: Option<oneshot::Receiver<Result<Value, ErrorBody>>>,
    sent: u64,
    hash: Sha256,
    buf: Vec<u8>,
    finished: bool,
}

impl<'a> BodyUpload<'a> {
    /// Sends `cmd` to `daemon`; its body follows with [`BodyUpload::write`].
    pub async fn start(hub: &'a Hub, daemon: &DaemonId, cmd: Command) -> Result<Self, UploadError> {
        let (req_id, acked, reply) = hub.body_command(daemon, cmd).await?;
        Ok(Self {
            hub,
            daemon: daemon.clone(),
            req_id,
            acked,
            reply: Some(reply),
            sent: 0,
            hash: Sha256::new(),
            buf: Vec::with_capacity(BODY_CHUNK),
            finished: false,
        })
    }

    /// Bytes taken so far (sent or waiting to be).
    pub fn len(&self) -> u64 {
        self.sent + self.buf.len() as u64
    }

    /// Whether nothing was taken yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes more of the body; full chunks go out as the window allows.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), UploadError> {
        while !data.is_empty() {
            let room = BODY_CHUNK - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BODY_CHUNK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// An early answer means the daemon refused the upload.
    fn replied(
        &mut self,
        r: Result<Result<Value, ErrorBody>, oneshot::error::RecvError>,
    ) -> UploadError {
        self.reply = None;
        match r {
            Ok(Err(e)) => UploadError::Daemon(e),
            Ok(Ok(_)) => UploadError::Daemon(ErrorBody::new(
                common::ipc::ErrorCode::Internal,
                "the daemon answered before the upload was complete",
            )),
            Err(_) => UploadError::Hub(HubError::Offline(self.daemon.clone())),
        }
    }

    async fn flush(&mut self) -> Result<(), UploadError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = self.buf.len() as u64;
        while self.sent + len - (*self.acked.borrow()).min(self.sent) > BODY_WINDOW {
            let Some(reply) = self.reply.as_mut() else {
                return Err(UploadError::Stalled(self.daemon.clone()));
            };
            tokio::select! {
                changed = self.acked.changed() => {
                    if changed.is_err() {
                        return Err(UploadError::Hub(HubError::Offline(self.daemon.clone())));
                    }
                }
                r = reply => return Err(self.replied(r)),
                () = tokio::time::sleep(STALL) => return Err(UploadError::Stalled(self.daemon.clone())),
            }
        }
        self.hash.update(&self.buf);
        let data = base64::engine::general_purpose::STANDARD.encode(&self.buf);
        self.hub
            .send_body(
                &self.daemon,
                self.req_id,
                HubMsg::BodyChunk {
                    req_id: self.req_id,
                    data,
                },
            )
            .await?;
        self.sent += len;
        self.buf.clear();
        Ok(())
    }

    /// Sends the rest and the end, then waits for the daemon's answer.
    pub async fn finish(mut self) -> Result<Value, UploadError> {
        self.flush().await?;
        let sha256 = hex::encode(std::mem::take(&mut self.hash).finalize());
        self.hub
            .send_body(
                &self.daemon,
                self.req_id,
                HubMsg::BodyEnd {
                    req_id: self.req_id,
                    size: self.sent,
                    sha256,
                },
            )
            .await?;
        self.finished = true;
        let Some(reply) = self.reply.take() else {
            return Err(UploadError::Stalled(self.daemon.clone()));
        };
        match tokio::time::timeout(REPLY, reply).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(UploadError::Daemon(e)),
            Ok(Err(_)) => Err(UploadError::Hub(HubError::Offline(self.daemon.clone()))),
            Err(_) => Err(UploadError::Hub(HubError::Timeout(
                self.daemon.clone(),
                REPLY,
            ))),
        }
    }
}

impl Drop for BodyUpload<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.hub.try_send_body(
                &self.daemon,
                self.req_id,
                HubMsg::BodyAbort {
                    req_id: self.req_id,
                    reason: "the upload was not completed".to_owned(),
                },
            );
        }
        self.hub.body_done(self.req_id);
    }
}
