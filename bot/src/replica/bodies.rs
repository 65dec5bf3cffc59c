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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::DaemonId;
use common::ipc::ErrorBody;
use common::link::HubMsg;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::wire::{Outcome, lock};
use crate::hub::Hub;

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
            Outcome::Offline | Outcome::Timeout { .. } | Outcome::Moved => {}
        }
    }
}

/// One body the holder passes on: its request id on this hub's link, and the queue of its
/// frames for the task that sends them to the daemon in order.
struct Served {
    local: u64,
    frames: mpsc::UnboundedSender<HubMsg>,
}

/// The holder's bodies: (caller replica, its request) → this hub's request and the queue
/// of its frames. Each body's frames go to the daemon from a task of their own
/// ([`Serving::insert`]), so a daemon slow to take an upload holds up that upload only,
/// never the replica's loop that reads every message from the other replicas. The queue
/// is bounded by the upload's window: the caller sends no more than that ahead of what
/// the daemon acknowledged.
#[derive(Default)]
pub struct Serving(Mutex<HashMap<(String, u64), Served>>);

impl Serving {
    /// Notes that `from`'s body `req` runs here as `local` on `daemon`'s link, and starts
    /// the task that sends its frames there in order; it ends when the body is removed
    /// (after the queued frames) or the link refuses one.
    pub fn insert(&self, hub: Arc<Hub>, from: &str, req: u64, daemon: DaemonId, local: u64) {
        let (frames, mut queued) = mpsc::unbounded_channel::<HubMsg>();
        lock(&self.0).insert((from.to_owned(), req), Served { local, frames });
        tokio::spawn(async move {
            while let Some(frame) = queued.recv().await {
                if let Err(e) = hub.send(&daemon, frame).await {
                    warn!(error = %e, "cannot pass an upload's bytes to the daemon");
                    return;
                }
            }
        });
    }

    /// Forgets `from`'s body `req` (the frames already queued still go out).
    pub fn remove(&self, from: &str, req: u64) {
        lock(&self.0).remove(&(from.to_owned(), req));
    }

    /// Queues `frame` of `from`'s body `req` for the daemon, under this hub's request id;
    /// an unknown body's frames and other messages are dropped.
    pub fn pass(&self, from: &str, req: u64, frame: HubMsg) {
        let served = lock(&self.0);
        let Some(s) = served.get(&(from.to_owned(), req)) else {
            return;
        };
        let local = s.local;
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
            _ => return,
        };
        let _ = s.frames.send(frame);
    }
}
