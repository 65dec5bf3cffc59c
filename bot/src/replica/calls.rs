//! Commands for daemons linked to another replica. Each replica has a random id and
//! `LISTEN`s on its own channel (`ccrm_r_<id>`); `daemon_links` says which replica holds
//! each daemon's link and what the daemon announced (set when a link registers, removed by
//! that replica when it goes, and counted only while that replica's heartbeat is fresh,
//! see `heartbeat.rs`). The messages themselves are in `wire.rs`.
//! A message of up to [`INLINE_MAX`] bytes (a call, a reply, stream items, most frames)
//! travels as the payload of a `NOTIFY` on the target's channel: one round trip, and for the
//! first message of a call, stream or upload the holder's lookup and the `NOTIFY` are one
//! statement. A larger one is a
//! `replica_calls` row plus a `NOTIFY` of its id (PostgreSQL caps payloads at 8,000
//! bytes). The holder runs a call on its local link ([`Hub::command_local`]) and answers
//! the same way. The caller waits with the same timeout as a local command, and the
//! errors come back as they were (offline, timeout, the daemon's own error). A call and
//! its reply go over a direct link between the two replicas instead when one is up (see
//! `peers.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::DaemonId;
use common::ipc::Command;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::bodies::{Bodies, Serving};
use super::peers::{self, Peers};
use super::streams::{self, Streams};
use super::wire::{Msg, Outcome, fresh, lock, now_ms};
use crate::hub::{Hub, HubError, HubStream, Remote, RemoteBody, RemoteReply, RemoteStream};

type Waiters = Mutex<HashMap<u64, oneshot::Sender<Outcome>>>;

/// This replica's side of the calls; see the module docs.
pub struct Replicas {
    id: String,
    pool: PgPool,
    waiters: Waiters,
    /// This replica's streams from daemons linked elsewhere (see `streams.rs`).
    streams: Streams,
    /// This replica's bodies sent to daemons linked elsewhere, and those it passes to its
    /// own links for other replicas (see `bodies.rs`).
    bodies: Bodies,
    serving: Arc<Serving>,
    /// The streams this replica runs for readers on other replicas (see `streams.rs`).
    served: streams::Served,
    next: std::sync::atomic::AtomicU64,
    links: mpsc::UnboundedSender<LinkNote>,
    /// Direct links to other replicas (see `peers.rs`).
    pub(super) peers: Arc<Peers>,
    /// The hub (which holds this value: weak, so neither keeps the other alive).
    hub: std::sync::Weak<Hub>,
    /// This value itself, for the tasks it starts.
    weak: std::sync::Weak<Replicas>,
}

/// A change of this replica's links, written to `daemon_links` in order.
enum LinkNote {
    Linked(DaemonId),
    Features(DaemonId, Vec<String>),
    Unlinked(DaemonId),
}

/// A replica's channel is this followed by its id.
const CHANNEL_PREFIX: &str = "ccrm_r_";

fn channel(replica: &str) -> String {
    format!("{CHANNEL_PREFIX}{replica}")
}

/// The largest message sent as a `NOTIFY` payload itself (PostgreSQL's limit is 8,000
/// bytes); larger ones go through a `replica_calls` row. A payload is told apart by its
/// first byte: `{` for a message, a digit for a row id.
const INLINE_MAX: usize = 7_000;

impl Replicas {
    /// Starts listening for calls and keeping `daemon_links` current, and hands the hub
    /// its way to the other replicas.
    pub async fn start(pool: PgPool, hub: Arc<Hub>) -> anyhow::Result<Arc<Self>> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let peers = Arc::new(Peers::new()?);
        // Beating before any link is written, so no other replica takes them for stale.
        super::wire::beat(&pool, &id, None, peers.token()).await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(&channel(&id)).await?;
        let (links, links_rx) = mpsc::unbounded_channel();
        let me = Arc::new_cyclic(|weak| Self {
            id,
            pool,
            waiters: Mutex::default(),
            streams: Streams::default(),
            bodies: Bodies::default(),
            serving: Arc::default(),
            served: streams::Served::default(),
            next: std::sync::atomic::AtomicU64::new(1),
            links,
            peers,
            hub: Arc::downgrade(&hub),
            weak: weak.clone(),
        });
        tokio::spawn(keep_links(me.clone(), links_rx));
        tokio::spawn(serve(me.clone(), listener, hub.clone()));
        hub.set_remote(me.clone());
        Ok(me)
    }

    /// This replica's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The shared database.
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The hub, while it runs.
    pub(super) fn hub(&self) -> Option<Arc<Hub>> {
        self.hub.upgrade()
    }

    /// Writes this replica's heartbeat now, with its address and token for direct links.
    pub(super) async fn beat(&self) -> Result<(), sqlx::Error> {
        super::wire::beat(&self.pool, &self.id, self.peers.url(), self.peers.token()).await
    }

    /// Where the other replicas reach this one directly (`url`, `wss://` for one serving
    /// TLS) and the CA its `wss://` peers must have; beats at once so they know.
    pub fn advertise(&self, url: Option<String>, ca_file: Option<std::path::PathBuf>) {
        self.peers.advertise(url, ca_file);
        if let Some(me) = self.weak.upgrade() {
            tokio::spawn(async move {
                if let Err(e) = me.beat().await {
                    warn!(error = %e, "cannot write this replica's heartbeat");
                }
            });
        }
    }

    /// Whether `shown` is the token other replicas must show to link to this one.
    pub fn token_matches(&self, shown: &str) -> bool {
        self.peers.token_matches(shown)
    }

    /// Runs the direct link that replica `peer` dialled, over `socket` (see `peers.rs`).
    pub async fn accept(self: Arc<Self>, peer: String, socket: axum::extract::ws::WebSocket) {
        self.run_link(peer, socket, peers::server_codec()).await;
    }

    /// Runs a direct link to `peer`: what it reads goes where a `NOTIFY` would.
    async fn run_link<S, M, E>(self: Arc<Self>, peer: String, socket: S, codec: peers::Codec<M>)
    where
        S: futures::Stream<Item = Result<M, E>> + futures::Sink<M> + Send + 'static,
        M: Send + 'static,
    {
        let (me, from) = (self.clone(), peer.clone());
        let on_text = move |t: String| {
            let (me, from) = (me.clone(), from.clone());
            async move { me.incoming(&from, &t).await }
        };
        peers::run_link(
            self.peers.clone(),
            self.hub.clone(),
            peer,
            socket,
            codec,
            on_text,
        )
        .await;
    }

    /// A message read on the direct link from `peer`.
    async fn incoming(self: &Arc<Self>, peer: &str, text: &str) {
        let msg = match serde_json::from_str::<Msg>(text) {
            Ok(m) if m.direct() => m,
            Ok(_) | Err(_) => {
                warn!(peer = %peer, "another replica sent a message a direct link does not carry");
                return;
            }
        };
        if let Some(hub) = self.hub() {
            handle(self, &hub, msg).await;
        }
    }

    /// Dials `target` in the background unless linked to it (or tried lately).
    fn want_link(&self, target: &str) {
        if self.peers.should_dial(target)
            && let Some(me) = self.weak.upgrade()
        {
            let target = target.to_owned();
            tokio::spawn(async move {
                if let Some(socket) = peers::dial(&me.pool, &me.peers, &me.id, &target).await {
                    me.run_link(target, socket, peers::client_codec()).await;
                }
            });
        }
    }

    /// Writes (again) that this replica holds `daemon`'s link, with its `features`.
    pub(super) fn note_linked(&self, daemon: &DaemonId, features: Vec<String>) {
        let _ = self.links.send(LinkNote::Linked(daemon.clone()));
        let _ = self
            .links
            .send(LinkNote::Features(daemon.clone(), features));
    }

    async fn send(&self, target: &str, msg: &Msg) -> anyhow::Result<()> {
        let body = serde_json::to_string(msg)?;
        if msg.direct() && self.peers.send(self.hub().as_deref(), target, &body) {
            return Ok(());
        }
        if body.len() <= INLINE_MAX {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel(target))
                .bind(body)
                .execute(&self.pool)
                .await?;
            return Ok(());
        }
        self.send_row(target, body).await
    }

    /// Sends `body` as a `replica_calls` row and a `NOTIFY` of its id.
    async fn send_row(&self, target: &str, body: String) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO replica_calls (target, body, created_ms) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(target)
        .bind(body)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel(target))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sends `msg` to the replica holding `daemon`'s link and returns that replica, or
    /// `None` when no other live replica holds it. A small message goes out in the same
    /// statement as the lookup.
    async fn send_to_holder(&self, daemon: &DaemonId, msg: &Msg) -> Option<anyhow::Result<String>> {
        let body = match serde_json::to_string(msg) {
            Ok(b) => b,
            Err(e) => return Some(Err(e.into())),
        };
        if body.len() > INLINE_MAX {
            let target = self.holder(daemon).await?;
            return Some(self.send_row(&target, body).await.map(|()| target));
        }
        // MATERIALIZED: the link is looked up (this replica excluded) before anything is
        // notified, so a call never reaches this replica or a dead one.
        let sent = sqlx::query_scalar::<_, String>(concat!(
            "WITH h AS MATERIALIZED (SELECT l.replica FROM daemon_links l
                 WHERE l.daemon_id = $1 AND l.replica <> $3 AND ",
            fresh!(),
            " LIMIT 1)
             SELECT h.replica, pg_notify($4 || h.replica, $2)::text FROM h"
        ))
        .bind(daemon.0.as_str())
        .bind(body)
        .bind(&self.id)
        .bind(CHANNEL_PREFIX)
        .fetch_optional(&self.pool)
        .await;
        match sent {
            Ok(target) => target.map(Ok),
            Err(e) => Some(Err(e.into())),
        }
    }

    /// [`Replicas::send_to_holder`] for the first message of a call, stream or upload
    /// (`what`): `undo` drops the request's local state when the message did not go out
    /// (`None`: no other live replica holds the link; a failure, logged, says offline).
    async fn open_at_holder(
        &self,
        daemon: &DaemonId,
        msg: &Msg,
        what: &str,
        undo: impl FnOnce(),
    ) -> Option<Result<String, HubError>> {
        match self.send_to_holder(daemon, msg).await {
            Some(Ok(target)) => Some(Ok(target)),
            None => {
                undo();
                None
            }
            Some(Err(e)) => {
                undo();
                warn!(error = %e, "cannot pass {what} to another replica");
                Some(Err(HubError::Offline(daemon.clone())))
            }
        }
    }

    async fn holder(&self, daemon: &DaemonId) -> Option<String> {
        sqlx::query_scalar(concat!(
            "SELECT l.replica FROM daemon_links l WHERE l.daemon_id = $1 AND ",
            fresh!()
        ))
        .bind(daemon.0.as_str())
        .fetch_optional(&self.pool)
        .await
        .ok()
        .flatten()
        .filter(|r: &String| *r != self.id)
    }

    async fn call(
        &self,
        daemon: &DaemonId,
        cmd: Command,
        timeout: Duration,
    ) -> Option<Result<Value, HubError>> {
        // Straight over the link to the replica remembered to hold the daemon's; if that
        // link is gone, or the daemon's link moved, the database says where it is now.
        if let Some(target) = self.peers.holder(&daemon.0) {
            match self
                .call_once(daemon, cmd.clone(), timeout, Some(&target))
                .await
            {
                None | Some(Ok(Outcome::Moved)) => self.peers.forget(&daemon.0),
                Some(done) => return Some(done.and_then(|o| outcome(daemon, timeout, o))),
            }
        }
        let done = self.call_once(daemon, cmd, timeout, None).await?;
        Some(done.and_then(|o| outcome(daemon, timeout, o)))
    }

    /// Sends call `cmd` over the link to `direct`, or else to the holder the database
    /// names, and waits for its outcome; `None`: the link to `direct` is gone, or no other
    /// live replica holds `daemon`'s link.
    async fn call_once(
        &self,
        daemon: &DaemonId,
        cmd: Command,
        timeout: Duration,
        direct: Option<&str>,
    ) -> Option<Result<Outcome, HubError>> {
        let req = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(req, tx);
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let msg = Msg::Call {
            from: self.id.clone(),
            req,
            daemon: daemon.0.clone(),
            cmd: Box::new(cmd),
            timeout_ms,
        };
        let undo = || {
            lock(&self.waiters).remove(&req);
        };
        if let Some(target) = direct {
            let sent = serde_json::to_string(&msg)
                .is_ok_and(|body| self.peers.send(self.hub().as_deref(), target, &body));
            if !sent {
                undo();
                return None;
            }
        } else {
            match self.open_at_holder(daemon, &msg, "a command", undo).await? {
                Ok(target) => {
                    self.peers.learn(&daemon.0, &target);
                    self.want_link(&target);
                }
                Err(e) => return Some(Err(e)),
            }
        }
        // A little longer than the holder's own wait, so its timeout answer arrives first.
        let result = tokio::time::timeout(timeout + Duration::from_secs(2), rx).await;
        lock(&self.waiters).remove(&req);
        Some(Ok(match result {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => Outcome::Offline,
            Err(_) => Outcome::Timeout { ms: timeout_ms },
        }))
    }
}

/// A call's outcome as the hub gives it.
fn outcome(daemon: &DaemonId, timeout: Duration, o: Outcome) -> Result<Value, HubError> {
    match o {
        Outcome::Ok { data } => Ok(data),
        Outcome::Daemon { error } => Err(HubError::Daemon(error)),
        Outcome::Offline | Outcome::Moved => Err(HubError::Offline(daemon.clone())),
        Outcome::Timeout { .. } => Err(HubError::Timeout(daemon.clone(), timeout)),
    }
}

impl Replicas {
    /// Starts `cmd` as a stream on the replica holding `daemon`'s link; `None` if none does.
    async fn open_stream(
        &self,
        daemon: &DaemonId,
        cmd: Command,
    ) -> Option<Result<HubStream, HubError>> {
        let req = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stream = self.streams.open(req);
        let msg = Msg::Stream {
            from: self.id.clone(),
            req,
            daemon: daemon.0.clone(),
            cmd: Box::new(cmd),
        };
        let undo = || self.streams.remove(req);
        let target = match self.open_at_holder(daemon, &msg, "a stream", undo).await? {
            Ok(target) => target,
            Err(e) => return Some(Err(e)),
        };
        self.streams.set_holder(req, &target);
        if let Some(me) = self.weak.upgrade() {
            tokio::spawn(me.watch_stream(req, daemon.clone(), target));
        }
        Some(Ok(stream))
    }

    /// Starts `cmd`, whose body follows as the hub's request `req`, on the replica holding
    /// `daemon`'s link; `None` if none does (see `bodies.rs`).
    async fn open_body(
        &self,
        daemon: &DaemonId,
        req: u64,
        cmd: Command,
    ) -> Option<
        Result<
            (
                tokio::sync::watch::Receiver<u64>,
                oneshot::Receiver<Result<Value, common::ipc::ErrorBody>>,
            ),
            HubError,
        >,
    > {
        let (acked, reply, mut frames) = self.bodies.open(req);
        let msg = Msg::BodyStart {
            from: self.id.clone(),
            req,
            daemon: daemon.0.clone(),
            cmd: Box::new(cmd),
        };
        let undo = || self.bodies.remove(req);
        let target = match self.open_at_holder(daemon, &msg, "an upload", undo).await? {
            Ok(target) => target,
            Err(e) => return Some(Err(e)),
        };
        let me = self.weak.upgrade()?;
        let (sender, to) = (me.clone(), target.clone());
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                let msg = Msg::BodyFrame {
                    from: sender.id.clone(),
                    req,
                    frame: Box::new(frame),
                };
                if let Err(e) = sender.send(&to, &msg).await {
                    warn!(error = %e, "cannot pass an upload's bytes to another replica");
                    sender.bodies.remove(req);
                    return;
                }
            }
        });
        tokio::spawn(me.watch_body(req, daemon.clone(), target));
        Some(Ok((acked, reply)))
    }

    /// Tells `holder` that stream `req` has no reader any more (from a task: never on the
    /// loop that reads the other replicas' messages).
    fn stop_stream(&self, holder: String, req: u64) {
        let Some(me) = self.weak.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let stop = Msg::StreamStop {
                from: me.id.clone(),
                req,
            };
            if let Err(e) = me.send(&holder, &stop).await {
                warn!(error = %e, "cannot tell another replica to stop a stream");
            }
        });
    }

    /// Like [`Replicas::watch_stream`], for body `req`.
    async fn watch_body(self: Arc<Self>, req: u64, daemon: DaemonId, target: String) {
        loop {
            tokio::time::sleep(streams::WATCH_EVERY).await;
            if !self.bodies.contains(req) {
                return;
            }
            if self.holder(&daemon).await.as_deref() != Some(target.as_str()) {
                self.bodies.remove(req);
                return;
            }
        }
    }

    /// Watches stream `req` from `target` until it ends: when `daemon`'s link is no longer
    /// held by `target` (it died, or the link moved), the stream ends without a reply.
    /// Its reader going away is noticed here too (when no item came since), and `target`
    /// is told to stop the stream.
    async fn watch_stream(self: Arc<Self>, req: u64, daemon: DaemonId, target: String) {
        loop {
            tokio::time::sleep(streams::WATCH_EVERY).await;
            if let Some(holder) = self.streams.reader_gone(req) {
                self.stop_stream(holder, req);
                return;
            }
            if !self.streams.contains(req) {
                return;
            }
            if self.holder(&daemon).await.as_deref() != Some(target.as_str()) {
                self.streams.remove(req);
                return;
            }
        }
    }
}

impl Remote for Replicas {
    fn linked(&self, daemon: &DaemonId) {
        let _ = self.links.send(LinkNote::Linked(daemon.clone()));
    }

    fn features(&self, daemon: &DaemonId, features: &[String]) {
        let _ = self
            .links
            .send(LinkNote::Features(daemon.clone(), features.to_vec()));
    }

    fn unlinked(&self, daemon: &DaemonId) {
        let _ = self.links.send(LinkNote::Unlinked(daemon.clone()));
    }

    fn command<'a>(
        &'a self,
        daemon: &'a DaemonId,
        cmd: Command,
        timeout: Duration,
    ) -> RemoteReply<'a> {
        Box::pin(self.call(daemon, cmd, timeout))
    }

    fn stream<'a>(&'a self, daemon: &'a DaemonId, cmd: Command) -> RemoteStream<'a> {
        Box::pin(self.open_stream(daemon, cmd))
    }

    fn body<'a>(&'a self, daemon: &'a DaemonId, req: u64, cmd: Command) -> RemoteBody<'a> {
        Box::pin(self.open_body(daemon, req, cmd))
    }

    fn body_frame(&self, req: u64, frame: common::link::HubMsg) -> bool {
        self.bodies.frame(req, frame)
    }

    fn body_done(&self, req: u64) {
        self.bodies.remove(req);
    }
}

/// Writes link changes to `daemon_links` in the order they happened.
async fn keep_links(me: Arc<Replicas>, mut rx: mpsc::UnboundedReceiver<LinkNote>) {
    while let Some(note) = rx.recv().await {
        let (daemon, done) = match note {
            LinkNote::Linked(daemon) => {
                let done = sqlx::query(
                    "INSERT INTO daemon_links (daemon_id, replica, since_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (daemon_id) DO UPDATE SET replica = excluded.replica,
                     since_ms = excluded.since_ms",
                )
                .bind(daemon.0.as_str())
                .bind(&me.id)
                .bind(now_ms())
                .execute(&me.pool)
                .await;
                (daemon, done)
            }
            LinkNote::Features(daemon, features) => {
                let list = serde_json::to_string(&features).unwrap_or_else(|_| "[]".into());
                let done = sqlx::query(
                    "UPDATE daemon_links SET features = $3 WHERE daemon_id = $1 AND replica = $2",
                )
                .bind(daemon.0.as_str())
                .bind(&me.id)
                .bind(list)
                .execute(&me.pool)
                .await;
                (daemon, done)
            }
            LinkNote::Unlinked(daemon) => {
                let done =
                    sqlx::query("DELETE FROM daemon_links WHERE daemon_id = $1 AND replica = $2")
                        .bind(daemon.0.as_str())
                        .bind(&me.id)
                        .execute(&me.pool)
                        .await;
                (daemon, done)
            }
        };
        if let Err(e) = done {
            if me.pool.is_closed() {
                // Shutting down: the links go with this replica's heartbeat.
                return;
            }
            warn!(daemon = %daemon, error = %e, "cannot record which replica holds a link");
        }
    }
}

/// Reads the messages notified to this replica: runs calls, delivers replies.
async fn serve(me: Arc<Replicas>, mut listener: PgListener, hub: Arc<Hub>) {
    loop {
        let note = match listener.recv().await {
            Ok(n) => n,
            Err(e) => {
                if me.pool.is_closed() {
                    return;
                }
                warn!(error = %e, "replica notifications failed; listening again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let body: Option<String> = if note.payload().starts_with('{') {
            Some(note.payload().to_owned())
        } else {
            let Ok(id) = note.payload().parse::<i64>() else {
                continue;
            };
            match sqlx::query_scalar("DELETE FROM replica_calls WHERE id = $1 RETURNING body")
                .bind(id)
                .fetch_optional(&me.pool)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "cannot read a message from another replica");
                    continue;
                }
            }
        };
        let Some(msg) = body.and_then(|b| serde_json::from_str::<Msg>(&b).ok()) else {
            continue;
        };
        handle(&me, &hub, msg).await;
    }
}

/// Acts on a message from another replica (through PostgreSQL or a direct link): runs
/// calls, delivers replies, items and frames.
async fn handle(me: &Arc<Replicas>, hub: &Arc<Hub>, msg: Msg) {
    match msg {
        Msg::Reply { req, result } => {
            if let Some(w) = lock(&me.waiters).remove(&req) {
                let _ = w.send(result);
            }
        }
        Msg::Stream {
            from,
            req,
            daemon,
            cmd,
        } => {
            let stop = me.served.insert(hub, &from, req);
            let (me, hub) = (me.clone(), hub.clone());
            tokio::spawn(async move {
                let send = |m: Msg| {
                    let me = me.clone();
                    let from = from.clone();
                    async move { me.send(&from, &m).await }
                };
                streams::serve(&hub, (req, DaemonId(daemon), *cmd), stop, send).await;
                me.served.remove(&hub, &from, req);
            });
        }
        Msg::Items { req, items } => {
            if let Some(holder) = me.streams.items(req, items) {
                me.stop_stream(holder, req);
            }
        }
        Msg::StreamStop { from, req } => me.served.stop(hub, &from, req),
        Msg::End { req, result } => me.streams.end(req, result),
        Msg::BodyStart {
            from,
            req,
            daemon,
            cmd,
        } => serve_body(me, hub, from, req, DaemonId(daemon), *cmd).await,
        // Queued in order for the body's own sender task (see `Serving`).
        Msg::BodyFrame { from, req, frame } => me.serving.pass(&from, req, *frame),
        Msg::BodyAck { req, received } => me.bodies.ack(req, received),
        Msg::BodyDone { req, result } => me.bodies.end(req, result),
        Msg::Call {
            from,
            req,
            daemon,
            cmd,
            timeout_ms,
        } => {
            let (me, hub) = (me.clone(), hub.clone());
            tokio::spawn(async move {
                let daemon = DaemonId(daemon);
                let timeout = Duration::from_millis(timeout_ms);
                // Sent here on an old memory of where the link is: nothing is run.
                if !hub.is_online(&daemon) {
                    let result = Outcome::Moved;
                    if let Err(e) = me.send(&from, &Msg::Reply { req, result }).await {
                        warn!(error = %e, "cannot answer another replica");
                    }
                    return;
                }
                let result = match hub.command_local(&daemon, *cmd, timeout).await {
                    Ok(data) => Outcome::Ok { data },
                    Err(HubError::Daemon(error)) => Outcome::Daemon { error },
                    Err(HubError::Offline(_)) => Outcome::Offline,
                    Err(HubError::Timeout(..)) => Outcome::Timeout { ms: timeout_ms },
                };
                if let Err(e) = me.send(&from, &Msg::Reply { req, result }).await {
                    warn!(error = %e, "cannot answer another replica");
                }
            });
        }
    }
}

/// The holder's side of `from`'s body `req`: starts `cmd` on `daemon`'s link here, then
/// relays the daemon's acknowledgements and reply back until it answers.
async fn serve_body(
    me: &Arc<Replicas>,
    hub: &Arc<Hub>,
    from: String,
    req: u64,
    daemon: DaemonId,
    cmd: Command,
) {
    let (local, mut acked, reply) = match hub.body_command_local(&daemon, cmd).await {
        Ok(started) => started,
        Err(e) => {
            let result = match e {
                HubError::Daemon(error) => Outcome::Daemon { error },
                _ => Outcome::Offline,
            };
            if let Err(e) = me.send(&from, &Msg::BodyDone { req, result }).await {
                warn!(error = %e, "cannot answer another replica's upload");
            }
            return;
        }
    };
    me.serving.insert(hub.clone(), &from, req, daemon, local);
    let (me, hub) = (me.clone(), hub.clone());
    tokio::spawn(async move {
        let mut reply = reply;
        let result = loop {
            tokio::select! {
                r = &mut reply => break r,
                changed = acked.changed() => {
                    if changed.is_err() {
                        // Given up here: only the daemon's last answer is left to pass on.
                        break tokio::time::timeout(super::bodies::REPLY_WAIT, &mut reply)
                            .await
                            .unwrap_or_else(|_| Ok(Err(common::ipc::ErrorBody::new(
                                common::ipc::ErrorCode::Internal,
                                "the daemon did not answer the upload",
                            ))));
                    }
                    let received = *acked.borrow_and_update();
                    let ack = Msg::BodyAck { req, received };
                    if let Err(e) = me.send(&from, &ack).await {
                        warn!(error = %e, "cannot pass an upload's acknowledgement back");
                    }
                }
            }
        };
        me.serving.remove(&from, req);
        hub.body_done(local);
        let result = match result {
            Ok(Ok(data)) => Outcome::Ok { data },
            Ok(Err(error)) => Outcome::Daemon { error },
            Err(_) => Outcome::Offline,
        };
        if let Err(e) = me.send(&from, &Msg::BodyDone { req, result }).await {
            warn!(error = %e, "cannot answer another replica's upload");
        }
    });
}
