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
//! item. A reader that goes away (or falls behind) makes the caller send `StreamStop`,
//! and the holder drops its local stream ([`Served`]), which stops it at the daemon as a
//! local reader's going does: the holder does not run and pass on a stream nobody reads.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
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
    /// The replica running it, once the stream went there.
    holder: Option<String>,
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
                holder: None,
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

    /// Stream `req` runs on replica `holder`.
    pub fn set_holder(&self, req: u64, holder: &str) {
        if let Some(s) = lock(&self.0).get_mut(&req) {
            s.holder = Some(holder.to_owned());
        }
    }

    /// If the reader of stream `req` went away: ends it here and returns the replica to
    /// tell to stop it.
    pub fn reader_gone(&self, req: u64) -> Option<String> {
        let mut streams = lock(&self.0);
        if !streams.get(&req)?.items.is_closed() {
            return None;
        }
        streams.remove(&req)?.holder
    }

    /// Ends stream `req` without a reply (as a dropped link does).
    pub fn remove(&self, req: u64) {
        lock(&self.0).remove(&req);
    }

    /// Items of stream `req` arrived. If its reader went away or fell behind, the stream
    /// ends here (as locally) and the replica to tell to stop it is returned.
    pub fn items(&self, req: u64, items: Vec<Value>) -> Option<String> {
        let mut streams = lock(&self.0);
        let sink = streams.get(&req)?;
        for item in items {
            if sink.items.try_send(item).is_err() {
                return streams.remove(&req)?.holder;
            }
        }
        None
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
            Outcome::Offline | Outcome::Timeout { .. } | Outcome::Moved => {}
        }
    }
}

/// The holder's streams for other replicas: (caller replica, its request) → the way to
/// stop it; counted in `/metrics` (`ccrm_replica_streams`).
#[derive(Default)]
pub struct Served(Mutex<HashMap<(String, u64), oneshot::Sender<()>>>);

impl Served {
    /// Notes that `from`'s stream `req` runs here; the receiver fires on [`Served::stop`].
    pub fn insert(&self, hub: &Hub, from: &str, req: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if lock(&self.0).insert((from.to_owned(), req), tx).is_none() {
            hub.metrics.replica_streams.fetch_add(1, Ordering::Relaxed);
        }
        rx
    }

    /// `from`'s stream `req` ended here.
    pub fn remove(&self, hub: &Hub, from: &str, req: u64) {
        if lock(&self.0).remove(&(from.to_owned(), req)).is_some() {
            hub.metrics.replica_streams.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `from` has no reader for its stream `req` any more: stop it.
    pub fn stop(&self, hub: &Hub, from: &str, req: u64) {
        if let Some(tx) = lock(&self.0).remove(&(from.to_owned(), req)) {
            hub.metrics.replica_streams.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send(());
        }
    }
}

/// The holder's side: runs `cmd` on `daemon`'s link here and passes items and reply of
/// stream `req` back through `send`, until the stream ends or `stop` fires (the caller's
/// reader went away): then the local stream is dropped, which stops it at the daemon.
pub async fn serve<F, Fut>(
    hub: &Hub,
    (req, daemon, cmd): (u64, DaemonId, Command),
    mut stop: oneshot::Receiver<()>,
    send: F,
) where
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
    loop {
        let first = tokio::select! {
            item = stream.items.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = &mut stop => return,
        };
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
