//! Commands with a body (a workspace upload: `workspace.create` followed by its zip in
//! `BodyChunk`s) for a daemon linked to another replica, through the same `replica_calls`
//! rows and `NOTIFY` as single commands.
//!
//! The caller's `BodyUpload` (`crate::upload`) runs unchanged: `Hub::body_command` opens a
//! [`Bodies`] entry and `calls.rs` sends `BodyStart` to the holder, then every frame
//! (`BodyChunk`, `BodyEnd`, `BodyAbort`) in order as `BodyFrame`. The holder ([`Serving`])
//! starts the command on its link and passes the frames to the daemon under its own
//! request id, and relays back the daemon's acknowledgements (`BodyAck`) and its reply
//! (`BodyEnd`). Flow control therefore stays end to end: the caller sends no more than
//! the window ahead of what the daemon acknowledged, and neither replica holds more than
//! that. A holder that dies (or a link that moves) ends the upload on the caller as a
//! dropped link does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::ids::DaemonId;
use common::ipc::ErrorBody;
use common::link::HubMsg;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::wire::{Outcome, lock};

/// How long the holder relays after the body was given up (the daemon's last answer).
pub const REPLY_WAIT: Duration = Duration::from_secs(300);

/// The caller's end of one remote body.
struct Sink {
    acked: watch::Sender<u64>,
    reply: oneshot::Sender<Result<Value, ErrorBody>>,
    frames: mpsc::UnboundedSender<HubMsg>,
}

/// What [`Bodies::open`] hands the upload: acknowledged bytes, the reply, and (for the
/// sender task) the frames to pass on in order.
pub type Opened = (
    watch::Receiver<u64>,
    oneshot::Receiver<Result<Value, ErrorBody>>,
    mpsc::UnboundedReceiver<HubMsg>,
);

/// The caller's remote bodies, by the hub's request id.
#[derive(Default)]
pub struct Bodies(Mutex<HashMap<u64, Sink>>);

impl Bodies {
    /// Opens body `req`.
    pub fn open(&self, req: u64) -> Opened {
        let (acked_tx, acked) = watch::channel(0);
        let (reply_tx, reply) = oneshot::channel();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        lock(&self.0).insert(
            req,
            Sink {
                acked: acked_tx,
                reply: reply_tx,
                frames: frames_tx,
            },
        );
        (acked, reply, frames)
    }

    /// Queues `frame` of body `req` for the holder; false when the body is gone.
    pub fn frame(&self, req: u64, frame: HubMsg) -> bool {
        lock(&self.0)
            .get(&req)
            .is_some_and(|s| s.frames.send(frame).is_ok())
    }

    /// Whether body `req` is still open.
    pub fn contains(&self, req: u64) -> bool {
        lock(&self.0).contains_key(&req)
    }

    /// Ends body `req` without a reply (as a dropped link does).
    pub fn remove(&self, req: u64) {
        lock(&self.0).remove(&req);
    }

    /// The daemon acknowledged `received` bytes of body `req`.
    pub fn ack(&self, req: u64, received: u64) {
        if let Some(s) = lock(&self.0).get(&req) {
            s.acked.send_replace(received);
        }
    }

    /// The daemon answered body `req`'s command.
    pub fn end(&self, req: u64, result: Outcome) {
        let Some(sink) = lock(&self.0).remove(&req) else {
            return;
        };
        match result {
            Outcome::Ok { data } => {
                let _ = sink.reply.send(Ok(data));
            }
            Outcome::Daemon { error } => {
                let _ = sink.reply.send(Err(error));
            }
            Outcome::Offline | Outcome::Timeout { .. } => {}
        }
    }
}

/// The holder's bodies: (caller replica, its request) → (daemon, this hub's request).
#[derive(Default)]
pub struct Serving(Mutex<HashMap<(String, u64), (DaemonId, u64)>>);

impl Serving {
    /// Notes that `from`'s body `req` runs here as `local` on `daemon`'s link.
    pub fn insert(&self, from: &str, req: u64, daemon: DaemonId, local: u64) {
        lock(&self.0).insert((from.to_owned(), req), (daemon, local));
    }

    /// Forgets `from`'s body `req`.
    pub fn remove(&self, from: &str, req: u64) {
        lock(&self.0).remove(&(from.to_owned(), req));
    }

    /// Where `frame` of `from`'s body `req` goes: the daemon, and the frame under this
    /// hub's request id (`None`: unknown body, or not a body frame).
    pub fn route(&self, from: &str, req: u64, frame: HubMsg) -> Option<(DaemonId, HubMsg)> {
        let (daemon, local) = lock(&self.0).get(&(from.to_owned(), req)).cloned()?;
        let frame = match frame {
            HubMsg::BodyChunk { data, .. } => HubMsg::BodyChunk {
                req_id: local,
                data,
            },
            HubMsg::BodyEnd { size, sha256, .. } => HubMsg::BodyEnd {
                req_id: local,
                size,
                sha256,
            },
            HubMsg::BodyAbort { reason, .. } => HubMsg::BodyAbort {
                req_id: local,
                reason,
            },
            _ => return None,
        };
        Some((daemon, frame))
    }
}
