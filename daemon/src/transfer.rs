//! Command bodies and streams on the bot link ([`common::link`]), for the uplink's
//! connection loop: [`Transfers`] routes the bot's `body_chunk` / `body_end` / `body_abort`
//! frames to the command that waits for its body, turns the bytes it writes into
//! cumulative `body_ack`s, and remembers the streaming commands so `stream_cancel` can stop
//! them. Everything here belongs to one connection: when the link drops, the loop drops its
//! `Transfers` and its tasks, so unfinished uploads are abandoned (their staged files
//! removed) and streams end.

use std::collections::HashMap;

use base64::Engine;
use common::link::{BODY_CHUNK, DaemonMsg};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tracing::warn;

use crate::workspace::{Body, BodyPiece};

/// Pieces that may wait for the writer; the bot's window keeps far fewer in flight.
const BODY_QUEUE: usize = 64;

/// See the module docs.
#[derive(Default)]
pub struct Transfers {
    bodies: HashMap<u64, mpsc::Sender<BodyPiece>>,
    streams: HashMap<u64, AbortHandle>,
}

impl Transfers {
    /// The body of command `req_id`, whose acknowledgements go out through `out`; the ack
    /// task joins `tasks`.
    pub fn open_body(
        &mut self,
        req_id: u64,
        out: mpsc::Sender<DaemonMsg>,
        tasks: &mut JoinSet<()>,
    ) -> Body {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        let (acked, mut acks) = watch::channel(0u64);
        self.bodies.insert(req_id, tx);
        tasks.spawn(async move {
            // Ends when the body's receiver (and with it the watch sender) is gone.
            while acks.changed().await.is_ok() {
                let received = *acks.borrow_and_update();
                if out
                    .send(DaemonMsg::BodyAck { req_id, received })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Body { rx, acked }
    }

    fn piece(&mut self, req_id: u64, piece: BodyPiece) {
        let Some(tx) = self.bodies.get(&req_id) else {
            warn!(req_id, "body frame for no command; ignored");
            return;
        };
        match tx.try_send(piece) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The command already answered (e.g. `reuse` of an existing workspace).
                self.bodies.remove(&req_id);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(
                    req_id,
                    "the bot sent past its body window; abandoning the upload"
                );
                self.bodies.remove(&req_id);
            }
        }
    }

    /// A `body_chunk` frame.
    pub fn chunk(&mut self, req_id: u64, data: &str) {
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(bytes) if bytes.len() <= BODY_CHUNK => self.piece(req_id, BodyPiece::Data(bytes)),
            _ => {
                warn!(req_id, "bad body chunk; abandoning the upload");
                self.bodies.remove(&req_id);
            }
        }
    }

    /// A `body_end` frame.
    pub fn end(&mut self, req_id: u64, size: u64, sha256: String) {
        self.piece(req_id, BodyPiece::End { size, sha256 });
        self.bodies.remove(&req_id);
    }

    /// A `body_abort` frame: the receiver sees the channel close without an end.
    pub fn abort(&mut self, req_id: u64) {
        self.bodies.remove(&req_id);
    }

    /// Runs the streaming command `run` for `req_id`: each item it sends becomes a
    /// `stream_item`, and its result the `reply`, through `out`.
    pub fn stream<F>(
        &mut self,
        req_id: u64,
        out: mpsc::Sender<DaemonMsg>,
        tasks: &mut JoinSet<()>,
        run: impl FnOnce(mpsc::Sender<Value>) -> F,
    ) where
        F: Future<Output = Result<Value, common::ipc::ErrorBody>> + Send + 'static,
    {
        self.streams.retain(|_, h| !h.is_finished());
        let (items_tx, mut items_rx) = mpsc::channel::<Value>(64);
        let result = run(items_tx);
        let handle = tasks.spawn(async move {
            let items_out = out.clone();
            // Owns the receiver, so a gone link also ends the command's sends.
            let forward = async move {
                while let Some(item) = items_rx.recv().await {
                    if items_out
                        .send(DaemonMsg::StreamItem { req_id, item })
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                true
            };
            let (result, open) = tokio::join!(result, forward);
            if open {
                let _ = out.send(reply(req_id, result)).await;
            }
        });
        self.streams.insert(req_id, handle);
    }

    /// A `stream_cancel` frame.
    pub fn cancel_stream(&mut self, req_id: u64) {
        if let Some(h) = self.streams.remove(&req_id) {
            h.abort();
        }
    }
}

/// The `reply` frame of a command's result.
pub fn reply(req_id: u64, result: Result<Value, common::ipc::ErrorBody>) -> DaemonMsg {
    match result {
        Ok(data) => DaemonMsg::Reply {
            req_id,
            ok: true,
            data: Some(data),
            error: None,
        },
        Err(e) => DaemonMsg::Reply {
            req_id,
            ok: false,
            data: None,
            error: Some(e),
        },
    }
}
