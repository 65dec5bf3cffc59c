//! The uplink: one task that keeps a WebSocket to the bot (`/ws/daemon`) and moves events
//! out of the [`Spool`] under the delivery guarantee of [`common::link`].
//!
//! Per connection: send `hello`, wait for `welcome` (which says what the bot already has),
//! trim the spool to that, resend everything after it in batches, then stream new events as
//! they are spooled, keeping at most [`WINDOW`] unacknowledged. Commands from the bot run on
//! a [`LinkTarget`] (the daemon, as wired by [`crate::lifecycle`]) like CLI commands, each in
//! its own task. A ping goes out every `ping_interval`; a bot silent for `dead_after` is
//! treated as gone. On any failure the task reconnects with capped exponential backoff and
//! jitter.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use common::event::EventKind;
use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, ErrorBody, ErrorCode, SessionInfo};
use common::link::{DaemonMsg, HubMsg, LINK_PROTOCOL_VERSION, MAX_LINK_FRAME};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use crate::spool::Spool;

/// Most events in flight (sent, not yet acknowledged).
pub const WINDOW: u64 = 5_000;
/// Most events in one frame.
pub const BATCH: usize = 500;

/// What the uplink needs of the rest of the daemon: the sessions to report and a way to run
/// the bot's commands. The wiring in [`crate::lifecycle`] implements it for the session
/// registry, so the uplink does not depend on the registry, nor the registry on the uplink.
pub trait LinkTarget: Send + Sync + 'static {
    /// Every session's current info, oldest first (sent in `hello`).
    fn sessions(&self) -> Vec<SessionInfo>;
    /// One session's current info (sent after its state changed), if it still exists.
    fn session(&self, id: SessionId) -> Option<SessionInfo>;
    /// Whether `cmd` streams; the link does not offer streams, so such commands are refused.
    fn streams(cmd: &Command) -> bool;
    /// Runs one non-streaming command and returns its reply data.
    fn run(&self, cmd: Command) -> impl Future<Output = Result<Value, ErrorBody>> + Send;
    /// Whether `cmd` streams over the link (`exec.follow`: items, then one reply).
    fn link_streams(cmd: &Command) -> bool;
    /// Runs a streaming command, sending its items to `items`; returns the summary.
    fn stream(
        &self,
        cmd: Command,
        items: mpsc::Sender<Value>,
    ) -> impl Future<Output = Result<Value, ErrorBody>> + Send;
    /// Whether `cmd` comes with a body (`workspace.create`).
    fn takes_body(cmd: &Command) -> bool;
    /// Runs a command with its streamed body.
    fn run_with_body(
        &self,
        cmd: Command,
        body: crate::workspace::Body,
    ) -> impl Future<Output = Result<Value, ErrorBody>> + Send;
}

/// What the rest of the daemon can see of the uplink.
pub struct LinkState {
    /// The settings.
    pub cfg: UplinkConfig,
    /// The spool it drains.
    pub spool: Arc<Spool>,
    /// Whether the link is up.
    pub connected: std::sync::atomic::AtomicBool,
    /// Why the last connection failed (cleared once connected), for `daemon.status`.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl LinkState {
    /// For `daemon.status`.
    pub fn status(&self) -> common::ipc::UplinkStatus {
        common::ipc::UplinkStatus {
            url: self.cfg.url.clone(),
            daemon_id: self.cfg.daemon_id.0.clone(),
            connected: self.connected.load(std::sync::atomic::Ordering::Relaxed),
            last_seq: self.spool.last_seq(),
            acked: self.spool.acked(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Uplink settings.
#[derive(Clone, Debug)]
pub struct UplinkConfig {
    /// `ws://` or `wss://` URL of the bot's `/ws/daemon` endpoint.
    pub url: String,
    /// Every replica's `/ws/daemon` URL, `url` first: after a link drops the next one is
    /// tried (the spool makes the move lossless).
    pub urls: Vec<String>,
    /// The daemon API key.
    pub api_key: String,
    /// This daemon.
    pub daemon_id: DaemonId,
    /// Machine name.
    pub hostname: String,
    /// How often to ping.
    pub ping_interval: Duration,
    /// Silence after which the bot counts as dead.
    pub dead_after: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// PEM CA certificate(s) trusted for `wss://` instead of the public roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl UplinkConfig {
    /// Defaults for `url` and `api_key`: 15 s pings, dead after 45 s, backoff 0.5–30 s.
    pub fn new(url: String, api_key: String, daemon_id: DaemonId, hostname: String) -> Self {
        Self {
            urls: vec![url.clone()],
            url,
            api_key,
            daemon_id,
            hostname,
            ping_interval: Duration::from_secs(15),
            dead_after: Duration::from_secs(45),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// The `/ws/daemon` URL for a bot base URL (`ws://host:port` → `ws://host:port/ws/daemon`).
pub fn daemon_ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/ws/daemon") {
        base.to_owned()
    } else {
        format!("{base}/ws/daemon")
    }
}

/// Runs until `shutdown` turns true.
pub async fn run<T: LinkTarget>(
    link: Arc<LinkState>,
    target: Arc<T>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cfg = &link.cfg;
    let spool = &link.spool;
    let mut delay = cfg.backoff_min;
    let mut next = 0usize;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let started = Instant::now();
        let mut inner = shutdown.clone();
        let url = cfg
            .urls
            .get(next % cfg.urls.len().max(1))
            .unwrap_or(&cfg.url);
        // Whatever ends this link, the next attempt goes to the next replica.
        next = next.wrapping_add(1);
        let result = tokio::select! {
            r = connection(cfg, url, spool, &target, &mut inner, &link) => r,
            _ = shutdown.changed() => return,
        };
        link.connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let failure = match result {
            Ok(()) if *shutdown.borrow() => return,
            Ok(()) => {
                info!("bot closed the uplink; reconnecting");
                "the bot closed the link".to_owned()
            }
            Err(e) => {
                let text = format!("{e:#}");
                warn!(error = %text, "uplink failed");
                text
            }
        };
        *link
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(failure);
        if started.elapsed() > Duration::from_secs(30) {
            delay = cfg.backoff_min;
        }
        let jitter = rand::random_range(0.7..1.3);
        let wait = delay.mul_f64(jitter);
        debug!(?wait, "reconnecting after backoff");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(cfg.backoff_max);
    }
}

fn text<T: serde::Serialize>(msg: &T) -> anyhow::Result<Message> {
    Ok(Message::text(serde_json::to_string(msg)?))
}

async fn connection<T: LinkTarget>(
    cfg: &UplinkConfig,
    url: &str,
    spool: &Spool,
    target: &Arc<T>,
    shutdown: &mut watch::Receiver<bool>,
    link: &LinkState,
) -> anyhow::Result<()> {
    let connected = &link.connected;
    let mut request = url.into_client_request().context("bad bot URL")?;
    request.headers_mut().insert(
        "x-api-key",
        cfg.api_key
            .parse()
            .context("API key is not a valid header value")?,
    );
    let ws_cfg = WebSocketConfig::default()
        .max_message_size(Some(MAX_LINK_FRAME))
        .max_frame_size(Some(MAX_LINK_FRAME));
    // Our own TLS config for wss://: the CA of `bot_ca_file`, or the public roots.
    let connector = if url.starts_with("wss://") {
        Some(tokio_tungstenite::Connector::Rustls(
            crate::tls::client_config(cfg.ca_file.as_deref())?,
        ))
    } else {
        None
    };
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_cfg), true, connector),
    )
    .await
    .context("connecting to the bot timed out")?
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) if resp.status() == 401 => {
            anyhow::anyhow!("the bot refused the API key (401); check CCRM_BOT_API_KEY")
        }
        other => match crate::tls::explain(&other) {
            Some(why) => anyhow::anyhow!("cannot connect to {url}: {why}"),
            None => anyhow::Error::from(other).context(format!("cannot connect to {url}")),
        },
    })?;
    let (mut tx, mut rx) = ws.split();

    let sessions = target.sessions();
    tx.send(text(&DaemonMsg::Hello {
        protocol: LINK_PROTOCOL_VERSION,
        daemon_id: cfg.daemon_id.clone(),
        hostname: cfg.hostname.clone(),
        version: common::VERSION.to_owned(),
        sessions,
        features: vec![common::link::FEATURE_WORKSPACES.to_owned()],
    })?)
    .await?;

    let acked = loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), rx.next())
            .await
            .context("no welcome from the bot")?
            .context("the bot closed the link during the handshake")??;
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<HubMsg>(&t).context("bad frame from the bot")? {
            HubMsg::Welcome {
                protocol,
                acked_seq,
            } => {
                if protocol != LINK_PROTOCOL_VERSION {
                    bail!(
                        "the bot speaks link protocol {protocol}, this ccrmd speaks {LINK_PROTOCOL_VERSION}; upgrade the older side"
                    );
                }
                break acked_seq;
            }
            HubMsg::Error { error } => bail!("the bot refused this daemon: {}", error.message),
            other => bail!("expected welcome, got {other:?}"),
        }
    };
    // If the bot has more than our spool (the spool was wiped), continue after it so new
    // events are not mistaken for duplicates.
    spool.skip_to(acked)?;
    spool.ack(acked)?;
    connected.store(true, std::sync::atomic::Ordering::Relaxed);
    *link
        .last_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    info!(%url, acked, last = spool.last_seq(), "uplink connected");

    let mut sent = acked;
    let mut spooled = spool.subscribe();
    let (reply_tx, mut reply_rx) = mpsc::channel::<DaemonMsg>(256);
    let mut ping = tokio::time::interval(cfg.ping_interval);
    ping.reset();
    let mut last_heard = Instant::now();
    let mut commands = tokio::task::JoinSet::new();
    let mut transfers = crate::transfer::Transfers::default();
    loop {
        // Send what is spooled, within the window.
        while sent < spool.last_seq() && sent - spool.acked() < WINDOW {
            let room = usize::try_from(WINDOW - (sent - spool.acked()))
                .unwrap_or(BATCH)
                .min(BATCH);
            let events = spool.read_after(sent, room)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            let changed: Vec<_> = events
                .iter()
                .filter(|e| matches!(e.event.kind, EventKind::State { .. }))
                .map(|e| e.event.session_id)
                .collect();
            tx.send(text(&DaemonMsg::Events { events })?).await?;
            sent = last;
            for id in changed {
                if let Some(session) = target.session(id) {
                    tx.send(text(&DaemonMsg::Session { session })?).await?;
                }
            }
        }
        tokio::select! {
            _ = spooled.changed() => {}
            msg = rx.next() => {
                let Some(msg) = msg else { return Ok(()) };
                last_heard = Instant::now();
                match msg? {
                    Message::Text(t) => match serde_json::from_str::<HubMsg>(&t) {
                        Ok(HubMsg::Ack { seq }) => spool.ack(seq)?,
                        Ok(HubMsg::Command { req_id, cmd }) if T::takes_body(&cmd) => {
                            let body = transfers.open_body(req_id, reply_tx.clone(), &mut commands);
                            let t = target.clone();
                            let reply_tx = reply_tx.clone();
                            commands.spawn(async move {
                                let result = t.run_with_body(cmd, body).await;
                                let _ = reply_tx.send(crate::transfer::reply(req_id, result)).await;
                            });
                        }
                        Ok(HubMsg::Command { req_id, cmd }) if T::link_streams(&cmd) => {
                            let t = target.clone();
                            transfers.stream(req_id, reply_tx.clone(), &mut commands, move |items| async move { t.stream(cmd, items).await });
                        }
                        Ok(HubMsg::BodyChunk { req_id, data }) => transfers.chunk(req_id, &data),
                        Ok(HubMsg::BodyEnd { req_id, size, sha256 }) => transfers.end(req_id, size, sha256),
                        Ok(HubMsg::BodyAbort { req_id, reason }) => {
                            debug!(req_id, reason, "the bot abandoned a body");
                            transfers.abort(req_id);
                        }
                        Ok(HubMsg::StreamCancel { req_id }) => transfers.cancel_stream(req_id),
                        Ok(HubMsg::Command { req_id, cmd }) => {
                            let t = target.clone();
                            let reply_tx = reply_tx.clone();
                            commands.spawn(async move {
                                let reply = run_command(&*t, req_id, cmd).await;
                                let _ = reply_tx.send(reply).await;
                            });
                        }
                        Ok(HubMsg::Error { error }) => warn!(error = %error.message, "the bot reported a problem"),
                        Ok(HubMsg::Welcome { .. }) => {}
                        Err(e) => warn!(error = %e, "ignoring a bad frame from the bot"),
                    },
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
            }
            Some(reply) = reply_rx.recv() => tx.send(text(&reply)?).await?,
            Some(_) = commands.join_next(), if !commands.is_empty() => {}
            _ = ping.tick() => {
                if last_heard.elapsed() > cfg.dead_after {
                    bail!("the bot has been silent for {:?}", last_heard.elapsed());
                }
                tx.send(Message::Ping(Vec::new().into())).await?;
            }
            _ = shutdown.changed() => {
                let _ = tx.send(Message::Close(None)).await;
                return Ok(());
            }
        }
    }
}

async fn run_command<T: LinkTarget>(target: &T, req_id: u64, cmd: Command) -> DaemonMsg {
    let refused = |why: &str| Err(ErrorBody::new(ErrorCode::BadRequest, why));
    let result = if T::streams(&cmd) {
        refused("streaming commands are not available over the uplink; events arrive on their own")
    } else if matches!(cmd, Command::DaemonStop(_)) {
        refused("the bot cannot stop a daemon")
    } else if matches!(&cmd, Command::WorkspaceCreate(a) if a.zip_path.is_some()) {
        refused(
            "over the link a workspace's zip is uploaded; `zip_path` names files on the daemon's machine and is refused",
        )
    } else {
        target.run(cmd).await
    };
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

/// Loads this daemon's id from `<state_dir>/daemon_id`, creating it once.
pub fn daemon_id(state_dir: &std::path::Path) -> anyhow::Result<DaemonId> {
    let path = state_dir.join("daemon_id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(DaemonId(s.to_owned()));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(DaemonId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_gets_the_daemon_path_once() {
        assert_eq!(daemon_ws_url("ws://h:1"), "ws://h:1/ws/daemon");
        assert_eq!(daemon_ws_url("ws://h:1/"), "ws://h:1/ws/daemon");
        assert_eq!(daemon_ws_url("wss://h/ws/daemon"), "wss://h/ws/daemon");
    }
}
