//! Streaming commands (an execution's items, `exec.follow`) for a daemon linked to another
//! replica, through the same `replica_calls` rows and `NOTIFY` as single commands.
//!
//! The caller (`calls.rs`, reached through [`crate::hub::Hub::stream`]) opens a sink here
//! ([`Streams::open`]) and sends `Stream` to the replica holding the link; that replica
//! ([`serve`]) starts the command on its link and passes the items back in order, as many
//! as are waiting per message (`Items`), then the command's reply (`End`). The caller
//! hands them to an ordinary [`HubStream`], so readers cannot tell a remote stream from a
//! local one: the same items, the same reply, the same errors. A reader that falls
//! [`STREAM_BUFFER`] items behind loses the stream, as locally; a holder that dies (its
//! heartbeat goes stale, or the link moves; the caller checks every [`WATCH_EVERY`]) ends
//! it without a reply, which readers treat as a dropped link and resume from their last
//! item.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use common::ids::DaemonId;
use common::ipc::{Command, ErrorBody};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::wire::{Msg, Outcome, lock};
use crate::hub::{Hub, HubError, HubStream, STREAM_BUFFER};

/// How often a caller checks that the holder of its stream is still alive.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Most items per `Items` message.
const BATCH: usize = 256;

/// The caller's end of one remote stream.
struct Sink {
    items: mpsc::Sender<Value>,
    reply: oneshot::Sender<Result<Value, ErrorBody>>,
}

/// This replica's streams from daemons linked elsewhere, by request number.
#[derive(Default)]
pub struct Streams(Mutex<HashMap<u64, Sink>>);

impl Streams {
    /// Opens stream `req`: the [`HubStream`] its reader gets.
    pub fn open(&self, req: u64) -> HubStream {
        let (items_tx, items) = mpsc::channel(STREAM_BUFFER);
        let (reply_tx, reply) = oneshot::channel();
        lock(&self.0).insert(
            req,
            Sink {
                items: items_tx,
                reply: reply_tx,
            },
        );
        HubStream {
            req_id: req,
            items,
            reply,
        }
    }

    /// Whether stream `req` is still open.
    pub fn contains(&self, req: u64) -> bool {
        lock(&self.0).contains_key(&req)
    }

    /// Ends stream `req` without a reply (as a dropped link does).
    pub fn remove(&self, req: u64) {
        lock(&self.0).remove(&req);
    }

    /// Items of stream `req` arrived.
    pub fn items(&self, req: u64, items: Vec<Value>) {
        let mut streams = lock(&self.0);
        let Some(sink) = streams.get(&req) else {
            return;
        };
        for item in items {
            if sink.items.try_send(item).is_err() {
                // The reader went away or fell behind: it loses the stream, as locally.
                streams.remove(&req);
                return;
            }
        }
    }

    /// Stream `req` ended with `result`.
    pub fn end(&self, req: u64, result: Outcome) {
        let Some(sink) = lock(&self.0).remove(&req) else {
            return;
        };
        drop(sink.items);
        match result {
            Outcome::Ok { data } => {
                let _ = sink.reply.send(Ok(data));
            }
            Outcome::Daemon { error } => {
                let _ = sink.reply.send(Err(error));
            }
            // The link dropped on the holder: no reply, as when a local link drops.
            Outcome::Offline | Outcome::Timeout { .. } => {}
        }
    }
}

/// The holder's side: runs `cmd` on `daemon`'s link here and passes items and reply of
/// stream `req` back through `send`.
pub async fn serve<F, Fut>(hub: &Hub, req: u64, daemon: DaemonId, cmd: Command, send: F)
where
    F: Fn(Msg) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut stream = match hub.stream_local(&daemon, cmd).await {
        Ok(s) => s,
        Err(e) => {
            let result = match e {
                HubError::Daemon(error) => Outcome::Daemon { error },
                _ => Outcome::Offline,
            };
            if let Err(e) = send(Msg::End { req, result }).await {
                warn!(error = %e, "cannot answer another replica's stream");
            }
            return;
        }
    };
    while let Some(first) = stream.items.recv().await {
        let mut items = vec![first];
        while items.len() < BATCH
            && let Ok(v) = stream.items.try_recv()
        {
            items.push(v);
        }
        if let Err(e) = send(Msg::Items { req, items }).await {
            warn!(error = %e, "cannot pass stream items to another replica; ending it");
            return;
        }
    }
    let result = match stream.reply.await {
        Ok(Ok(data)) => Outcome::Ok { data },
        Ok(Err(error)) => Outcome::Daemon { error },
        Err(_) => Outcome::Offline,
    };
    if let Err(e) = send(Msg::End { req, result }).await {
        warn!(error = %e, "cannot answer another replica's stream");
    }
}
