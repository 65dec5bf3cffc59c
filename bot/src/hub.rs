//! The hub: the registry of connected daemons, the bot → daemon command path (with
//! `req_id` correlation and timeouts), the live fan-out of committed events to SSE and
//! dashboard subscribers, and the session → daemon routes that REST and chat commands use
//! without asking the database (filled from hellos, session updates and lookups; a route
//! is replaced whenever a session is recorded on a daemon).
//!
//! Shared state is small and never locked across an `.await` (std `Mutex`); each daemon
//! connection owns its socket in [`crate::ws`] and receives [`HubMsg`]s over a bounded
//! channel registered here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, ErrorBody};
use common::link::HubMsg;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

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
}

impl Metrics {
    /// Counts one refused request.
    pub fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

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
        }
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
        drop(map);
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

    /// Sends `cmd` to `daemon` and waits for its reply.
    pub async fn command(
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
