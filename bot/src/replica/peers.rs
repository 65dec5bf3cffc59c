//! Direct links between replicas (PostgreSQL only). A call for a daemon linked to another
//! replica, and its reply, travel over a WebSocket between the two replicas when one is
//! up: one hop, where a `NOTIFY` is a round trip to the database and a second hop from it.
//! Stream items and upload frames keep going through PostgreSQL, in order, from first to
//! last ([`super::wire::Msg::direct`]); so does everything when no link is up.
//!
//! - Each replica writes in its heartbeat row where the others reach it (`replica_url`,
//!   else its listening address when that is a specific one) and a random token, new at
//!   every start. Another replica dials `/ws/replica` there showing that token
//!   (`Authorization: Bearer`, compared in constant time) and its own id
//!   (`X-Ccrm-Replica`): the database is the trust the two share. A `wss://` address is
//!   checked against `replica_ca_file` (else the public roots); a `ws://` one that is not
//!   loopback is not dialled, since the calls (prompts) would cross the network in clear
//!   text: such replicas keep talking through PostgreSQL.
//! - A link carries messages both ways: the dialler's calls, their replies, and the other
//!   side's calls and replies.
//! - Which replica holds a daemon's link is remembered from the database's answers. A call
//!   sent on that memory to a replica that no longer holds the link is answered `Moved`
//!   (nothing run there) and then goes the database way.
//! - A replica is dialled the first time a call goes to it through the database; a dial
//!   that failed is not tried again for [`RETRY`]. A link that hears nothing (not even a
//!   pong to the pings sent every [`PING`]) for [`IDLE`] is dropped.
//!
//! This module knows sockets, not messages: what a link reads goes to a callback
//! (`calls.rs` hands it to the same code as a `NOTIFY`), and `ws/replica.rs` serves the
//! accepting side.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::link::MAX_LINK_FRAME;
use futures::{Sink, SinkExt, Stream, StreamExt};
use sqlx::PgPool;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

use super::wire::lock;
use crate::hub::Hub;

/// Pings on an idle link, so a dead peer is noticed.
const PING: Duration = Duration::from_secs(5);
/// A link that hears nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(20);
/// A replica whose dial failed (or that gives no address) is not dialled again sooner.
const RETRY: Duration = Duration::from_secs(5);
/// Longest a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one link's socket; past this a message goes through PostgreSQL.
const QUEUE: usize = 1024;
/// The header naming the dialling replica.
pub const FROM_HEADER: &str = "x-ccrm-replica";

/// A dialled link's socket.
pub type Dialled = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A link that is up: where its writer takes messages.
struct Link {
    id: u64,
    tx: mpsc::Sender<String>,
}

/// This replica's direct links, its own address and token, and who holds which daemon.
pub struct Peers {
    token: String,
    url: OnceLock<String>,
    ca_file: OnceLock<Option<PathBuf>>,
    links: Mutex<HashMap<String, Link>>,
    tried: Mutex<HashMap<String, Instant>>,
    holders: Mutex<HashMap<String, String>>,
    next: AtomicU64,
}

impl Peers {
    /// No links yet, and a fresh token.
    pub fn new() -> anyhow::Result<Self> {
        let mut buf = [0u8; 32];
        getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(Self {
            token: hex::encode(buf),
            url: OnceLock::new(),
            ca_file: OnceLock::new(),
            links: Mutex::default(),
            tried: Mutex::default(),
            holders: Mutex::default(),
            next: AtomicU64::new(1),
        })
    }

    /// The token another replica must show to link to this one.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether `shown` is this replica's token (in constant time).
    pub fn token_matches(&self, shown: &str) -> bool {
        crate::auth::hashes_equal(shown, &self.token)
    }

    /// Where the other replicas reach this one, once known.
    pub fn url(&self) -> Option<&str> {
        self.url.get().map(String::as_str)
    }

    /// Sets where this replica is reached and the CA trusted for `wss://` peers.
    pub fn advertise(&self, url: Option<String>, ca_file: Option<PathBuf>) {
        if let Some(url) = url {
            let _ = self.url.set(url.trim_end_matches('/').to_owned());
        }
        let _ = self.ca_file.set(ca_file);
    }

    /// Queues `text` on the link to `target`; false when there is none or it is full.
    pub fn send(&self, hub: Option<&Hub>, target: &str, text: &str) -> bool {
        let sent = lock(&self.links)
            .get(target)
            .is_some_and(|l| l.tx.try_send(text.to_owned()).is_ok());
        if sent && let Some(hub) = hub {
            hub.metrics.replica_direct.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// The replica last known to hold `daemon`'s link, if a link to it is up.
    pub fn holder(&self, daemon: &str) -> Option<String> {
        let holder = lock(&self.holders).get(daemon).cloned()?;
        lock(&self.links).contains_key(&holder).then_some(holder)
    }

    /// The database said `replica` holds `daemon`'s link.
    pub fn learn(&self, daemon: &str, replica: &str) {
        lock(&self.holders).insert(daemon.to_owned(), replica.to_owned());
    }

    /// `daemon`'s link is not where it was remembered.
    pub fn forget(&self, daemon: &str) {
        lock(&self.holders).remove(daemon);
    }

    /// Whether to dial `target` now: no link to it, and no dial tried in the last
    /// [`RETRY`] (the try is noted).
    pub fn should_dial(&self, target: &str) -> bool {
        if lock(&self.links).contains_key(target) {
            return false;
        }
        let mut tried = lock(&self.tried);
        let now = Instant::now();
        if tried.get(target).is_some_and(|t| now < *t + RETRY) {
            return false;
        }
        tried.insert(target.to_owned(), now);
        true
    }

    fn up(&self, hub: Option<&Hub>, peer: &str, tx: mpsc::Sender<String>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Linked: a later drop may dial again at once (and the map keeps only failures).
        lock(&self.tried).remove(peer);
        let old = lock(&self.links).insert(peer.to_owned(), Link { id, tx });
        if old.is_none()
            && let Some(hub) = hub
        {
            hub.metrics.replica_links.fetch_add(1, Ordering::Relaxed);
        }
        id
    }

    fn down(&self, hub: Option<&Hub>, peer: &str, id: u64) {
        let mut links = lock(&self.links);
        if links.get(peer).is_some_and(|l| l.id == id) {
            links.remove(peer);
            if let Some(hub) = hub {
                hub.metrics.replica_links.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a socket's message is to a link.
pub enum Frame {
    Text(String),
    Other,
    Close,
}

/// How one WebSocket library's messages look (axum's on the accepting side,
/// tungstenite's on the dialling side).
pub struct Codec<M> {
    pub text: fn(String) -> M,
    pub ping: fn() -> M,
    pub read: fn(M) -> Frame,
}

/// Runs the link to `peer` over `socket` until it breaks or stays silent for [`IDLE`]:
/// registers it in `peers`, writes what is queued for it (and pings), hands each text it
/// reads to `on_text`, in order.
pub async fn run_link<S, M, E, F, Fut>(
    peers: Arc<Peers>,
    hub: std::sync::Weak<Hub>,
    peer: String,
    socket: S,
    codec: Codec<M>,
    on_text: F,
) where
    S: Stream<Item = Result<M, E>> + Sink<M> + Send + 'static,
    M: Send + 'static,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let id = peers.up(hub.upgrade().as_deref(), &peer, tx);
    info!(peer = %peer, "direct link to another replica up");
    let (text, ping) = (codec.text, codec.ping);
    let writer = tokio::spawn(async move {
        let mut every = tokio::time::interval(PING);
        loop {
            let m = tokio::select! {
                t = rx.recv() => match t {
                    Some(t) => text(t),
                    None => break,
                },
                _ = every.tick() => ping(),
            };
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    loop {
        let Ok(Some(Ok(m))) = tokio::time::timeout(IDLE, stream.next()).await else {
            break;
        };
        match (codec.read)(m) {
            Frame::Text(t) => on_text(t).await,
            Frame::Other => {}
            Frame::Close => break,
        }
    }
    peers.down(hub.upgrade().as_deref(), &peer, id);
    writer.abort();
    info!(peer = %peer, "direct link to another replica down");
}

/// Dials replica `target` at the address its heartbeat gives, as replica `me`; `None`
/// (logged) when it gives none, may not be dialled, or does not answer.
pub async fn dial(pool: &PgPool, peers: &Peers, me: &str, target: &str) -> Option<Dialled> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let row: Result<Option<(Option<String>, Option<String>)>, _> = sqlx::query_as(
        "SELECT url, token FROM replica_heartbeats
         WHERE replica = $1 AND seen > now() - interval '15 seconds'",
    )
    .bind(target)
    .fetch_optional(pool)
    .await;
    let (url, token) = match row {
        Ok(Some((Some(url), Some(token)))) => (url, token),
        Ok(_) => {
            debug!(peer = %target, "the replica gives no address; its calls go through PostgreSQL");
            return None;
        }
        Err(e) => {
            warn!(error = %e, "cannot look up another replica's address");
            return None;
        }
    };
    if let Err(why) = dialable(&url) {
        warn!(peer = %target, url = %url, "not linking directly: {why}; its calls go through PostgreSQL");
        return None;
    }
    let request = format!("{url}/ws/replica")
        .into_client_request()
        .map_err(anyhow::Error::from)
        .and_then(|mut r| {
            r.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
            r.headers_mut().insert(FROM_HEADER, me.parse()?);
            Ok(r)
        });
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            warn!(peer = %target, error = %e, "bad address for another replica");
            return None;
        }
    };
    let connector = if url.starts_with("wss://") {
        let ca = peers.ca_file.get().cloned().flatten();
        match common::tls::client_config(ca.as_deref(), "replica_ca_file") {
            Ok(c) => Some(tokio_tungstenite::Connector::Rustls(c)),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "cannot link to another replica over TLS"
                );
                return None;
            }
        }
    } else {
        None
    };
    let ws_cfg = WebSocketConfig::default()
        .max_message_size(Some(MAX_LINK_FRAME))
        .max_frame_size(Some(MAX_LINK_FRAME));
    let dialled = tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_cfg), true, connector),
    )
    .await;
    match dialled {
        Ok(Ok((socket, _))) => Some(socket),
        Ok(Err(e)) => {
            warn!(peer = %target, url = %url, error = %e, "cannot link to another replica; its calls go through PostgreSQL");
            None
        }
        Err(_) => {
            warn!(peer = %target, url = %url, "linking to another replica timed out; its calls go through PostgreSQL");
            None
        }
    }
}

/// The dialling side's messages (tungstenite's).
pub fn client_codec() -> Codec<tokio_tungstenite::tungstenite::Message> {
    use tokio_tungstenite::tungstenite::Message;
    Codec {
        text: Message::text,
        ping: || Message::Ping(Default::default()),
        read: |m| match m {
            Message::Text(t) => Frame::Text(t.as_str().to_owned()),
            Message::Close(_) => Frame::Close,
            _ => Frame::Other,
        },
    }
}

/// The accepting side's messages (axum's).
pub fn server_codec() -> Codec<axum::extract::ws::Message> {
    use axum::extract::ws::Message;
    Codec {
        text: |t: String| Message::Text(t.into()),
        ping: || Message::Ping(Default::default()),
        read: |m| match m {
            Message::Text(t) => Frame::Text(t.as_str().to_owned()),
            Message::Close(_) => Frame::Close,
            _ => Frame::Other,
        },
    }
}

/// Why `url` is not dialled, if it is not: a `ws://` address off this machine would carry
/// calls in clear text.
fn dialable(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("ws://") else {
        return if url.starts_with("wss://") {
            Ok(())
        } else {
            Err("not a ws:// or wss:// address".into())
        };
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(
            "a ws:// address that is not loopback would carry calls in clear text; give \
             that replica TLS (tls_cert/tls_key) and a wss:// replica_url"
                .into(),
        )
    }
}

/// Whether `id` looks like a replica id (what `Replicas::start` makes: hex).
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::{dialable, valid_id};

    #[test]
    fn only_loopback_is_dialled_in_clear_text() {
        assert!(dialable("ws://127.0.0.1:7878").is_ok());
        assert!(dialable("ws://[::1]:7878").is_ok());
        assert!(dialable("ws://localhost:7878/").is_ok());
        assert!(dialable("wss://bot-2.example.com:8443").is_ok());
        assert!(dialable("ws://10.0.0.5:7878").is_err());
        assert!(dialable("ws://bot-2.example.com").is_err());
        assert!(dialable("http://127.0.0.1:7878").is_err());
    }

    #[test]
    fn replica_ids_are_hex() {
        assert!(valid_id("0123456789abcdef0123456789abcdef"));
        assert!(!valid_id(""));
        assert!(!valid_id("abc\r\nx-evil: 1"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
