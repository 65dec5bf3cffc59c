//! The hub: the registry of connected daemons, the bot → daemon command path (with
//! `req_id` correlation and timeouts), the live fan-out of committed events to SSE and
//! dashboard subscribers, and the session → daemon routes that REST and chat commands use
//! without asking the database (filled from hellos, session updates and lookups; a route
//! is replaced whenever a session is recorded on a daemon).
//!
//! Shared state is small and never locked across an `.await` (std `Mutex`); each daemon
//! connection owns its socket in [`crate::ws`] and receives [`HubMsg`]s over a bounded
//! channel registered here.
//!
//! For workspaces and executions it also keeps: what each daemon announced it can do
//! (`features`), the link's heartbeat (pings sent and answered), streaming commands
//! ([`Hub::stream`]: items then one reply), and the acknowledgements of command bodies
//! ([`Hub::body_acks`], the flow control of uploads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, ErrorBody};
use common::link::HubMsg;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::db::StoredEvent;

/// Why a command did not produce a daemon answer.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No link to that daemon right now.
    #[error("daemon {0} is offline")]
    Offline(DaemonId),
    /// The daemon did not answer in time.
    #[error("daemon {0} did not answer within {1:?}")]
    Timeout(DaemonId, Duration),
    /// The daemon answered with an error.
    #[error("{0}")]
    Daemon(ErrorBody),
}

struct Conn {
    id: u64,
    tx: mpsc::Sender<HubMsg>,
}

type Waiter = oneshot::Sender<Result<Value, ErrorBody>>;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Events committed to SQLite (duplicates excluded).
    pub events_ingested: AtomicU64,
    /// Duplicate events ignored.
    pub events_duplicate: AtomicU64,
    /// Requests refused (auth, bad input, limits).
    pub rejected: AtomicU64,
    /// Open SSE + dashboard WebSocket clients.
    pub ws_clients: AtomicU64,
    /// 1 while this replica runs the chat adapters (see `replica::leader`), else 0.
    pub chat_leader: AtomicU64,
    /// Streams this replica runs on its links for readers on other replicas.
    pub replica_streams: AtomicU64,
    /// Direct links to other replicas that are up (see `replica::peers`).
    pub replica_links: AtomicU64,
    /// Calls and replies sent to other replicas over a direct link.
    pub replica_direct: AtomicU64,
}

impl Metrics {
    /// Counts one refused request.
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// The link's keep-alive as the bot sees it: pings sent and answered.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// When the daemon last answered a ping (or connected), Unix ms.
    pub last_successful_ms: u64,
    /// Pings in a row that got no answer before the next one went out.
    pub consecutive_failures: u64,
    /// Pings sent on this link.
    pub seq_num: u64,
    /// When the link opened, Unix ms.
    pub connected_ms: u64,
    #[serde(skip)]
    awaiting: bool,
}

/// A streaming command in progress: its items, then its reply.
pub struct HubStream {
    /// The command's request id.
    pub req_id: u64,
    /// Items in order; closed after the last (or when the stream was lost).
    pub items: mpsc::Receiver<Value>,
    /// The command's reply (an error if the link dropped first).
    pub reply: oneshot::Receiver<Result<Value, ErrorBody>>,
}

/// Most stream items waiting for their reader; a reader that falls further behind loses
/// the stream (it resumes from its last item).
pub const STREAM_BUFFER: usize = 1024;

/// See the module docs.
pub struct Hub {
    daemons: Mutex<HashMap<DaemonId, Conn>>,
    pending: Mutex<HashMap<u64, (DaemonId, Waiter)>>,
    next_req: AtomicU64,
    next_conn: AtomicU64,
    events: broadcast::Sender<Arc<StoredEvent>>,
    routes: Mutex<HashMap<SessionId, DaemonId>>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    features: Mutex<HashMap<DaemonId, Vec<String>>>,
    heartbeats: Mutex<HashMap<DaemonId, Heartbeat>>,
    streams: Mutex<HashMap<u64, (DaemonId, mpsc::Sender<Value>)>>,
    body_acks: Mutex<HashMap<u64, watch::Sender<u64>>>,
    /// Bodies whose command went to another replica's link.
    remote_bodies: Mutex<std::collections::HashSet<u64>>,
    /// Other replicas (PostgreSQL only): commands for daemons linked elsewhere.
    remote: std::sync::OnceLock<Arc<dyn Remote>>,
}

/// What [`Remote::command`] returns: `None` when no replica holds the link.
pub type RemoteReply<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Option<Result<Value, HubError>>> + Send + 'a>,
>;

/// What [`Remote::stream`] returns: `None` when no replica holds the link.
pub type RemoteStream<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Option<Result<HubStream, HubError>>> + Send + 'a>,
>;

/// What [`Remote::body`] returns: `None` when no replica holds the link; else the bytes
/// the daemon acknowledged and its reply.
pub type RemoteBody<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Option<
                    Result<
                        (
                            watch::Receiver<u64>,
                            oneshot::Receiver<Result<Value, ErrorBody>>,
                        ),
                        HubError,
                    >,
                >,
            > + Send
            + 'a,
    >,
>;

/// The way to daemons linked to another replica ([`crate::replica`]).
pub trait Remote: Send + Sync {
    /// This replica now holds `daemon`'s link.
    fn linked(&self, daemon: &DaemonId);
    /// `daemon` (linked here) announced `features`.
    fn features(&self, daemon: &DaemonId, features: &[String]) {
        let _ = (daemon, features);
    }
    /// This replica no longer holds `daemon`'s link.
    fn unlinked(&self, daemon: &DaemonId);
    /// Runs `cmd` on the replica that holds `daemon`'s link; `None` if none does.
    fn command<'a>(
        &'a self,
        daemon: &'a DaemonId,
        cmd: Command,
        timeout: Duration,
    ) -> RemoteReply<'a>;
    /// Starts streaming command `cmd` on the replica that holds `daemon`'s link; `None`
    /// if none does.
    fn stream<'a>(&'a self, daemon: &'a DaemonId, cmd: Command) -> RemoteStream<'a>;
    /// Starts command `cmd`, whose body follows as request `req`, on the replica that
    /// holds `daemon`'s link; `None` if none does.
    fn body<'a>(&'a self, daemon: &'a DaemonId, req: u64, cmd: Command) -> RemoteBody<'a>;
    /// Passes the next frame of body `req` on (in order); false when the body is gone.
    fn body_frame(&self, req: u64, frame: HubMsg) -> bool;
    /// Body `req` is finished or abandoned.
    fn body_done(&self, req: u64);
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self {
            daemons: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_req: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            events: broadcast::channel(4096).0,
            routes: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            features: Mutex::default(),
            heartbeats: Mutex::default(),
            streams: Mutex::default(),
            body_acks: Mutex::default(),
            remote_bodies: Mutex::default(),
            remote: std::sync::OnceLock::new(),
        }
    }

    /// Sets the way to other replicas (once, at start, on PostgreSQL).
    pub fn set_remote(&self, remote: Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    /// Registers a daemon connection; a previous connection of the same daemon is told to
    /// go (its channel closes). Returns the connection id for [`Hub::unregister`].
    pub fn register(&self, daemon: &DaemonId, tx: mpsc::Sender<HubMsg>) -> u64 {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let old = self
            .daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(daemon.clone(), Conn { id, tx });
        drop(old);
        if let Some(r) = self.remote.get() {
            r.linked(daemon);
        }
        id
    }

    /// Removes a connection (only if it is still the current one for that daemon) and fails
    /// its pending commands. Returns whether it was current.
    pub fn unregister(&self, daemon: &DaemonId, conn: u64) -> bool {
        let mut map = self.daemons.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(daemon).is_none_or(|c| c.id != conn) {
            return false;
        }
        map.remove(daemon);
        if let Some(r) = self.remote.get() {
            r.unlinked(daemon);
        }
        drop(map);
        // Its streams end: their readers see the items close, then the failed reply.
        lock(&self.streams).retain(|_, (d, _)| d != daemon);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<u64> = pending
            .iter()
            .filter(|(_, (d, _))| d == daemon)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            if let Some((_, w)) = pending.remove(&k) {
                let _ = w.send(Err(ErrorBody::new(
                    common::ipc::ErrorCode::ShuttingDown,
                    format!("daemon {daemon} disconnected before answering"),
                )));
            }
        }
        true
    }

    /// Daemons with a live link.
    pub fn online(&self) -> Vec<DaemonId> {
        self.daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Whether `daemon` has a live link.
    pub fn is_online(&self, daemon: &DaemonId) -> bool {
        self.daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(daemon)
    }

    /// Sends `cmd` to `daemon` and waits for its reply; a daemon linked to another replica
    /// is reached through it (same timeout and errors).
    pub async fn command(
        &self,
        daemon: &DaemonId,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Value, HubError> {
        if !self.is_online(daemon)
            && let Some(remote) = self.remote.get()
            && let Some(result) = remote.command(daemon, cmd.clone(), timeout).await
        {
            return result;
        }
        self.command_local(daemon, cmd, timeout).await
    }

    /// [`Hub::command`] for a daemon linked to this replica only.
    pub async fn command_local(
        &self,
        daemon: &DaemonId,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Value, HubError> {
        let tx = self
            .daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(daemon)
            .map(|c| c.tx.clone())
            .ok_or_else(|| HubError::Offline(daemon.clone()))?;
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (wtx, wrx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(req_id, (daemon.clone(), wtx));
        if tx.send(HubMsg::Command { req_id, cmd }).await.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&req_id);
            return Err(HubError::Offline(daemon.clone()));
        }
        match tokio::time::timeout(timeout, wrx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(HubError::Daemon(e)),
            Ok(Err(_)) => Err(HubError::Offline(daemon.clone())),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&req_id);
                Err(HubError::Timeout(daemon.clone(), timeout))
            }
        }
    }

    /// Delivers a daemon's reply to whoever waits for it.
    pub fn complete(&self, req_id: u64, result: Result<Value, ErrorBody>) {
        // A stream's items end with its reply; a body's acknowledgements too.
        lock(&self.streams).remove(&req_id);
        lock(&self.body_acks).remove(&req_id);
        if let Some((_, w)) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&req_id)
        {
            let _ = w.send(result);
        }
    }

    /// Publishes committed events to live subscribers.
    pub fn publish(&self, events: Vec<StoredEvent>) {
        for ev in events {
            let _ = self.events.send(Arc::new(ev));
        }
    }

    /// A receiver of committed events, in commit order. A slow receiver gets `Lagged` and
    /// should catch up from the database.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.events.subscribe()
    }

    /// The sender behind [`Hub::subscribe`], for the ingest task that publishes committed
    /// events in commit order.
    pub fn events_sender(&self) -> broadcast::Sender<Arc<StoredEvent>> {
        self.events.clone()
    }

    /// The daemon that session `id` lives on, if known here (else ask the database and
    /// [`Hub::set_route`] the answer).
    pub fn route(&self, id: &SessionId) -> Option<DaemonId> {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Records that session `id` lives on `daemon` (call after the database recorded it),
    /// replacing any earlier route: a session that moved is routed to its new daemon.
    pub fn set_route(&self, id: SessionId, daemon: &DaemonId) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if routes.get(&id) != Some(daemon) {
            routes.insert(id, daemon.clone());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Workspaces and executions: features, heartbeats, streams and command bodies.
impl Hub {
    /// Records what a daemon announced in its hello (and starts its heartbeat).
    pub fn set_features(&self, daemon: &DaemonId, features: Vec<String>, now_ms: u64) {
        if let Some(r) = self.remote.get() {
            r.features(daemon, &features);
        }
        lock(&self.features).insert(daemon.clone(), features);
        lock(&self.heartbeats).insert(
            daemon.clone(),
            Heartbeat {
                last_successful_ms: now_ms,
                connected_ms: now_ms,
                ..Heartbeat::default()
            },
        );
    }

    /// What `daemon` announced in its hello (empty when it never linked here).
    pub fn features(&self, daemon: &DaemonId) -> Vec<String> {
        lock(&self.features)
            .get(daemon)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `daemon` is online and announced `feature`.
    pub fn has_feature(&self, daemon: &DaemonId, feature: &str) -> bool {
        self.is_online(daemon)
            && lock(&self.features)
                .get(daemon)
                .is_some_and(|f| f.iter().any(|x| x == feature))
    }

    /// A ping went out on `daemon`'s link.
    pub fn ping_sent(&self, daemon: &DaemonId) {
        if let Some(h) = lock(&self.heartbeats).get_mut(daemon) {
            if h.awaiting {
                h.consecutive_failures += 1;
            }
            h.awaiting = true;
            h.seq_num += 1;
        }
    }

    /// `daemon` answered a ping.
    pub fn pong(&self, daemon: &DaemonId, now_ms: u64) {
        if let Some(h) = lock(&self.heartbeats).get_mut(daemon) {
            h.awaiting = false;
            h.consecutive_failures = 0;
            h.last_successful_ms = now_ms;
        }
    }

    /// The heartbeat of `daemon`'s current (or last) link.
    pub fn heartbeat(&self, daemon: &DaemonId) -> Option<Heartbeat> {
        lock(&self.heartbeats).get(daemon).cloned()
    }

    fn conn_tx(&self, daemon: &DaemonId) -> Result<mpsc::Sender<HubMsg>, HubError> {
        self.daemons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(daemon)
            .map(|c| c.tx.clone())
            .ok_or_else(|| HubError::Offline(daemon.clone()))
    }

    /// Sends a frame to `daemon` (for body chunks and cancels).
    pub async fn send(&self, daemon: &DaemonId, msg: HubMsg) -> Result<(), HubError> {
        self.conn_tx(daemon)?
            .send(msg)
            .await
            .map_err(|_| HubError::Offline(daemon.clone()))
    }

    /// Sends a frame to `daemon` if its link has room now (for cancels from `Drop`).
    pub fn try_send(&self, daemon: &DaemonId, msg: HubMsg) {
        if let Ok(tx) = self.conn_tx(daemon) {
            let _ = tx.try_send(msg);
        }
    }

    /// Starts a command whose reply comes later: registers its waiter, sends it, and
    /// returns its id and reply receiver.
    async fn start(
        &self,
        daemon: &DaemonId,
        cmd: Command,
    ) -> Result<(u64, oneshot::Receiver<Result<Value, ErrorBody>>), HubError> {
        let tx = self.conn_tx(daemon)?;
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (wtx, wrx) = oneshot::channel();
        lock(&self.pending).insert(req_id, (daemon.clone(), wtx));
        if tx.send(HubMsg::Command { req_id, cmd }).await.is_err() {
            lock(&self.pending).remove(&req_id);
            return Err(HubError::Offline(daemon.clone()));
        }
        Ok((req_id, wrx))
    }

    /// Sends a streaming command (`exec.follow`): its items arrive on the returned
    /// [`HubStream`], then its reply. Dropping the stream's items receiver makes the next
    /// item cancel it at the daemon.
    ///
    /// A daemon linked to another replica is reached through it, items and reply alike.
    pub async fn stream(&self, daemon: &DaemonId, cmd: Command) -> Result<HubStream, HubError> {
        if !self.is_online(daemon)
            && let Some(remote) = self.remote.get()
            && let Some(result) = remote.stream(daemon, cmd.clone()).await
        {
            return result;
        }
        self.stream_local(daemon, cmd).await
    }

    /// [`Hub::stream`] for a daemon linked to this replica only.
    pub async fn stream_local(
        &self,
        daemon: &DaemonId,
        cmd: Command,
    ) -> Result<HubStream, HubError> {
        let (items_tx, items) = mpsc::channel(STREAM_BUFFER);
        // Registered before the command goes out, so no item can come first.
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        lock(&self.streams).insert(req_id, (daemon.clone(), items_tx));
        let tx = match self.conn_tx(daemon) {
            Ok(tx) => tx,
            Err(e) => {
                lock(&self.streams).remove(&req_id);
                return Err(e);
            }
        };
        let (wtx, reply) = oneshot::channel();
        lock(&self.pending).insert(req_id, (daemon.clone(), wtx));
        if tx.send(HubMsg::Command { req_id, cmd }).await.is_err() {
            lock(&self.pending).remove(&req_id);
            lock(&self.streams).remove(&req_id);
            return Err(HubError::Offline(daemon.clone()));
        }
        Ok(HubStream {
            req_id,
            items,
            reply,
        })
    }

    /// Routes one item of a streaming command. A reader that went away or fell
    /// [`STREAM_BUFFER`] items behind loses the stream, and the daemon is told to stop.
    pub fn stream_item(&self, req_id: u64, item: Value) {
        let mut streams = lock(&self.streams);
        let Some((daemon, tx)) = streams.get(&req_id) else {
            return;
        };
        if tx.try_send(item).is_ok() {
            return;
        }
        let daemon = daemon.clone();
        streams.remove(&req_id);
        drop(streams);
        // The daemon stops the stream and sends no reply: fail the waiter now.
        if let Some((_, w)) = lock(&self.pending).remove(&req_id) {
            let _ = w.send(Err(ErrorBody::new(
                common::ipc::ErrorCode::Internal,
                "the stream's reader went away or fell behind",
            )));
        }
        if let Ok(tx) = self.conn_tx(&daemon) {
            let _ = tx.try_send(HubMsg::StreamCancel { req_id });
        }
    }

    /// Sends a command that takes a body (`workspace.upload`); returns its id, the
    /// acknowledged byte count as the daemon reports it, and its reply receiver. The
    /// caller sends the body with [`Hub::send`] ([`HubMsg::BodyChunk`], then
    /// [`HubMsg::BodyEnd`] or [`HubMsg::BodyAbort`]).
    pub async fn body_command(
        &self,
        daemon: &DaemonId,
        cmd: Command,
    ) -> Result<
        (
            u64,
            watch::Receiver<u64>,
            oneshot::Receiver<Result<Value, ErrorBody>>,
        ),
        HubError,
    > {
        if !self.is_online(daemon)
            && let Some(remote) = self.remote.get()
        {
            let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
            if let Some(opened) = remote.body(daemon, req_id, cmd.clone()).await {
                let (acked, reply) = opened?;
                lock(&self.remote_bodies).insert(req_id);
                return Ok((req_id, acked, reply));
            }
        }
        self.body_command_local(daemon, cmd).await
    }

    /// [`Hub::body_command`] for a daemon linked to this replica only.
    pub async fn body_command_local(
        &self,
        daemon: &DaemonId,
        cmd: Command,
    ) -> Result<
        (
            u64,
            watch::Receiver<u64>,
            oneshot::Receiver<Result<Value, ErrorBody>>,
        ),
        HubError,
    > {
        let (acked_tx, acked) = watch::channel(0);
        let (req_id, reply) = self.start(daemon, cmd).await?;
        lock(&self.body_acks).insert(req_id, acked_tx);
        Ok((req_id, acked, reply))
    }

    /// Routes a daemon's body acknowledgement.
    pub fn body_ack(&self, req_id: u64, received: u64) {
        if let Some(tx) = lock(&self.body_acks).get(&req_id) {
            tx.send_replace(received);
        }
    }

    /// Ends the body bookkeeping of `req_id` (its upload finished or was abandoned).
    pub fn body_done(&self, req_id: u64) {
        lock(&self.body_acks).remove(&req_id);
        if lock(&self.remote_bodies).remove(&req_id)
            && let Some(r) = self.remote.get()
        {
            r.body_done(req_id);
        }
    }

    /// Sends a frame of body `req_id` to `daemon`: on its link here, or through the
    /// replica its command went to.
    pub async fn send_body(
        &self,
        daemon: &DaemonId,
        req_id: u64,
        frame: HubMsg,
    ) -> Result<(), HubError> {
        if lock(&self.remote_bodies).contains(&req_id) {
            return match self.remote.get() {
                Some(r) if r.body_frame(req_id, frame) => Ok(()),
                _ => Err(HubError::Offline(daemon.clone())),
            };
        }
        self.send(daemon, frame).await
    }

    /// [`Hub::send_body`] if there is room now (for aborts from `Drop`).
    pub fn try_send_body(&self, daemon: &DaemonId, req_id: u64, frame: HubMsg) {
        if lock(&self.remote_bodies).contains(&req_id) {
            if let Some(r) = self.remote.get() {
                let _ = r.body_frame(req_id, frame);
            }
            return;
        }
        self.try_send(daemon, frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_latest_daemon_a_session_was_recorded_on() {
        let hub = Hub::new();
        let s = SessionId::new();
        assert_eq!(hub.route(&s), None);
        hub.set_route(s, &DaemonId("a".into()));
        assert_eq!(hub.route(&s), Some(DaemonId("a".into())));
        // The session moved: the next command goes to its new daemon.
        hub.set_route(s, &DaemonId("b".into()));
        assert_eq!(hub.route(&s), Some(DaemonId("b".into())));
        assert_eq!(hub.route(&SessionId::new()), None);
    }
}
