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
//! errors come back as they were (offline, timeout, the daemon's own error).

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
        // Beating before any link is written, so no other replica takes them for stale.
        super::wire::beat(&pool, &id).await?;
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

    /// Writes (again) that this replica holds `daemon`'s link, with its `features`.
    pub(super) fn note_linked(&self, daemon: &DaemonId, features: Vec<String>) {
        let _ = self.links.send(LinkNote::Linked(daemon.clone()));
        let _ = self
            .links
            .send(LinkNote::Features(daemon.clone(), features));
    }

    async fn send(&self, target: &str, msg: &Msg) -> anyhow::Result<()> {
        let body = serde_json::to_string(msg)?;
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
        let req = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(req, tx);
        let msg = Msg::Call {
            from: self.id.clone(),
            req,
            daemon: daemon.0.clone(),
            cmd: Box::new(cmd),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let undo = || {
            lock(&self.waiters).remove(&req);
        };
        if let Err(e) = self.open_at_holder(daemon, &msg, "a command", undo).await? {
            return Some(Err(e));
        }
        // A little longer than the holder's own wait, so its timeout answer arrives first.
        let result = tokio::time::timeout(timeout + Duration::from_secs(2), rx).await;
        lock(&self.waiters).remove(&req);
        Some(match result {
            Ok(Ok(Outcome::Ok { data })) => Ok(data),
            Ok(Ok(Outcome::Daemon { error })) => Err(HubError::Daemon(error)),
            Ok(Ok(Outcome::Offline)) | Ok(Err(_)) => Err(HubError::Offline(daemon.clone())),
            Ok(Ok(Outcome::Timeout { .. })) | Err(_) => {
                Err(HubError::Timeout(daemon.clone(), timeout))
            }
        })
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

/// The daemons whose link some live replica holds (empty on SQLite, or if the query
/// fails).
pub async fn linked_daemons(db: &crate::db::Db) -> std::collections::HashSet<String> {
    let Some(pool) = db.pg_pool() else {
        return std::collections::HashSet::new();
    };
    sqlx::query_scalar::<_, String>(concat!(
        "SELECT l.daemon_id FROM daemon_links l WHERE ",
        fresh!()
    ))
    .fetch_all(pool)
    .await
    .map(|v| v.into_iter().collect())
    .unwrap_or_default()
}

/// The daemons with a link to this replica or (on PostgreSQL) to any other one.
pub async fn online_anywhere(state: &crate::AppState) -> Vec<DaemonId> {
    let mut online = state.hub.online();
    for d in linked_daemons(&state.db).await {
        let d = DaemonId(d);
        if !online.contains(&d) {
            online.push(d);
        }
    }
    online
}

/// Whether `daemon` has a link to this replica or (on PostgreSQL) to any other one.
pub async fn online_somewhere(state: &crate::AppState, daemon: &DaemonId) -> bool {
    state.hub.is_online(daemon) || linked_daemons(&state.db).await.contains(&daemon.0)
}

/// Whether `daemon` is linked to this replica or (on PostgreSQL) to a live other one and
/// announced `feature` there.
pub async fn feature_somewhere(state: &crate::AppState, daemon: &DaemonId, feature: &str) -> bool {
    if state.hub.has_feature(daemon, feature) {
        return true;
    }
    let Some(pool) = state.db.pg_pool() else {
        return false;
    };
    let found: Option<String> = sqlx::query_scalar(concat!(
        "SELECT l.features FROM daemon_links l WHERE l.daemon_id = $1 AND ",
        fresh!()
    ))
    .bind(daemon.0.as_str())
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    found
        .and_then(|f| serde_json::from_str::<Vec<String>>(&f).ok())
        .is_some_and(|f| f.iter().any(|x| x == feature))
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
                let stop = me.served.insert(&hub, &from, req);
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
            Msg::StreamStop { from, req } => me.served.stop(&hub, &from, req),
            Msg::End { req, result } => me.streams.end(req, result),
            Msg::BodyStart {
                from,
                req,
                daemon,
                cmd,
            } => serve_body(&me, &hub, from, req, DaemonId(daemon), *cmd).await,
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
