//! `/ws/daemon`: one task per daemon link. It authenticates the `X-API-Key`, checks the
//! hello and protocol version, answers with the highest committed seq, then commits event
//! batches to SQLite (dedup on `(daemon_id, seq)`) and acknowledges them cumulatively,
//! relays command replies to the hub, and pings. A silent daemon is dropped after
//! `daemon_timeout`. Bad frames get an error frame; the link and every other client go on.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::event::now_ms;
use common::ids::DaemonId;
use common::ipc::{ErrorBody, ErrorCode};
use common::link::{DaemonMsg, HubMsg, LINK_PROTOCOL_VERSION, MAX_LINK_FRAME};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::AppState;
use crate::auth::KeyKind;

/// `GET /ws/daemon`.
pub async fn daemon_ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let key = crate::auth::daemon_key(&headers).unwrap_or_default();
    let row = match state.db.verify_key(key, KeyKind::Daemon).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            state.hub.metrics.reject();
            return (
                StatusCode::UNAUTHORIZED,
                "missing or invalid daemon API key (X-API-Key)",
            )
                .into_response();
        }
        Err(e) => {
            warn!(error = %e, "key check failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let key_id = row.id;
    ws.max_message_size(MAX_LINK_FRAME)
        .max_frame_size(MAX_LINK_FRAME)
        .on_upgrade(move |socket| async move {
            if let Err(e) = serve_link(state, socket, key_id)
                .instrument(info_span!("daemon_link", key = key_id))
                .await
            {
                warn!(error = %format!("{e:#}"), "daemon link ended with an error");
            }
        })
}

fn frame(msg: &HubMsg) -> anyhow::Result<Message> {
    Ok(Message::Text(serde_json::to_string(msg)?.into()))
}

async fn serve_link(state: Arc<AppState>, socket: WebSocket, key_id: i64) -> anyhow::Result<()> {
    let (mut tx, mut rx) = socket.split();
    // Hello, bounded in time.
    let hello = tokio::time::timeout(Duration::from_secs(10), rx.next()).await;
    let Ok(Some(Ok(Message::Text(text)))) = hello else {
        let err = ErrorBody::new(ErrorCode::BadRequest, "expected a hello frame first");
        let _ = tx.send(frame(&HubMsg::Error { error: err })?).await;
        anyhow::bail!("no hello");
    };
    let (daemon_id, hostname, version, sessions, features) = match serde_json::from_str::<DaemonMsg>(
        &text,
    ) {
        Ok(DaemonMsg::Hello {
            protocol,
            daemon_id,
            hostname,
            version,
            sessions,
            features,
        }) => {
            if protocol != LINK_PROTOCOL_VERSION {
                let err = ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!(
                        "link protocol mismatch: the bot speaks {LINK_PROTOCOL_VERSION}, the daemon {protocol}; upgrade the older side"
                    ),
                );
                let _ = tx.send(frame(&HubMsg::Error { error: err })?).await;
                anyhow::bail!("daemon {daemon_id} speaks protocol {protocol}");
            }
            if daemon_id.0.is_empty() || daemon_id.0.len() > 128 {
                let err = ErrorBody::new(
                    ErrorCode::BadRequest,
                    "daemon_id must be 1 to 128 characters",
                );
                let _ = tx.send(frame(&HubMsg::Error { error: err })?).await;
                anyhow::bail!("bad daemon id");
            }
            (daemon_id, hostname, version, sessions, features)
        }
        _ => {
            let err = ErrorBody::new(
                ErrorCode::BadRequest,
                "the first frame must be a valid hello",
            );
            let _ = tx.send(frame(&HubMsg::Error { error: err })?).await;
            anyhow::bail!("bad hello");
        }
    };
    let now = now_ms();
    state
        .db
        .upsert_daemon(&daemon_id, &hostname, &version, Some(key_id), now)
        .await?;
    for s in &sessions {
        state.db.upsert_session(&daemon_id, s, now).await?;
    }
    let acked = state.db.max_seq(&daemon_id).await?;
    tx.send(frame(&HubMsg::Welcome {
        protocol: LINK_PROTOCOL_VERSION,
        acked_seq: acked,
    })?)
    .await?;
    let (out_tx, mut out_rx) = mpsc::channel::<HubMsg>(256);
    let conn = state.hub.register(&daemon_id, out_tx);
    state.hub.set_features(&daemon_id, features, now_ms());
    info!(daemon = %daemon_id, %hostname, acked, "daemon connected");

    let result = link_loop(&state, &daemon_id, &mut tx, &mut rx, &mut out_rx, acked).await;

    if state.hub.unregister(&daemon_id, conn) {
        let _ = state
            .db
            .set_daemon_online(&daemon_id, false, now_ms())
            .await;
        info!(daemon = %daemon_id, "daemon disconnected");
    }
    let _ = tx.close().await;
    result
}

async fn link_loop(
    state: &AppState,
    daemon_id: &DaemonId,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &mut futures::stream::SplitStream<WebSocket>,
    out_rx: &mut mpsc::Receiver<HubMsg>,
    mut acked: u64,
) -> anyhow::Result<()> {
    let timeout = state.cfg.daemon_timeout();
    let mut ping = tokio::time::interval(state.cfg.ping_interval());
    ping.reset();
    let mut last_heard = Instant::now();
    let mut last_touch = Instant::now();
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let msg = msg?;
                last_heard = Instant::now();
                if last_touch.elapsed() > Duration::from_secs(5) {
                    state.db.touch_daemon(daemon_id, now_ms()).await?;
                    last_touch = Instant::now();
                }
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => return Ok(()),
                    Message::Pong(_) => {
                        state.hub.pong(daemon_id, now_ms());
                        continue;
                    }
                    Message::Binary(_) => {
                        reject(state, tx, "binary frames are not part of the link protocol").await?;
                        continue;
                    }
                    _ => continue,
                };
                match serde_json::from_str::<DaemonMsg>(&text) {
                    Ok(DaemonMsg::Events { events }) => {
                        if events.is_empty() {
                            continue;
                        }
                        let last = events.iter().map(|e| e.seq).max().unwrap_or(acked);
                        let stored = state.db.insert_events(daemon_id, &events).await?;
                        let dup = events.len() - stored.len();
                        state.hub.metrics.events_ingested.fetch_add(stored.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        state.hub.metrics.events_duplicate.fetch_add(dup as u64, std::sync::atomic::Ordering::Relaxed);
                        state.hub.publish(stored);
                        acked = acked.max(last);
                        tx.send(frame(&HubMsg::Ack { seq: acked })?).await?;
                    }
                    Ok(DaemonMsg::Reply { req_id, ok, data, error }) => {
                        let result = if ok {
                            Ok(data.unwrap_or(serde_json::Value::Null))
                        } else {
                            Err(error.unwrap_or_else(|| ErrorBody::new(ErrorCode::Internal, "the daemon failed without a reason")))
                        };
                        state.hub.complete(req_id, result);
                    }
                    Ok(DaemonMsg::Session { session }) => {
                        state.db.upsert_session(daemon_id, &session, now_ms()).await?;
                    }
                    Ok(DaemonMsg::BodyAck { req_id, received }) => state.hub.body_ack(req_id, received),
                    Ok(DaemonMsg::StreamItem { req_id, item }) => state.hub.stream_item(req_id, item),
                    Ok(DaemonMsg::Hello { .. }) => reject(state, tx, "hello was already received").await?,
                    Err(e) => reject(state, tx, &format!("bad frame: {e}")).await?,
                }
            }
            out = out_rx.recv() => {
                // `None`: a newer link of the same daemon replaced this one.
                let Some(out) = out else { return Ok(()) };
                tx.send(frame(&out)?).await?;
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > timeout {
                    anyhow::bail!("daemon {daemon_id} silent for {:?}", last_heard.elapsed());
                }
                state.hub.ping_sent(daemon_id);
                tx.send(Message::Ping(Vec::new().into())).await?;
            }
        }
    }
}

async fn reject(
    state: &AppState,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    why: &str,
) -> anyhow::Result<()> {
    state.hub.metrics.reject();
    warn!(why, "bad frame from a daemon");
    tx.send(frame(&HubMsg::Error {
        error: ErrorBody::new(ErrorCode::BadRequest, why),
    })?)
    .await?;
    Ok(())
}

/// `GET /ws/dashboard`: live events for the sessions a client subscribes to. The user token
/// comes in the `Authorization: Bearer` header or, for browsers, as the first message
/// `{"type":"auth","token":"..."}`; it is never logged. Client messages:
/// `{"type":"subscribe","sessions":["<id>",...]}`, `{"type":"subscribe","all":true}`,
/// `{"type":"unsubscribe","sessions":[...]}`. Server messages: `{"type":"ready","user"}`,
/// `{"type":"event","event":<stored event>}`, `{"type":"error","code","message"}`.
pub async fn dashboard_ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let pre_auth = match crate::auth::bearer_token(&headers) {
        Some(token) => match state.db.verify_key(token, KeyKind::User).await {
            Ok(Some(row)) => Some(row.name),
            Ok(None) => {
                state.hub.metrics.reject();
                return (StatusCode::UNAUTHORIZED, "invalid bearer token").into_response();
            }
            Err(e) => {
                warn!(error = %e, "token check failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        },
        None => None,
    };
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            if let Err(e) = serve_dashboard(state, socket, pre_auth).await {
                warn!(error = %format!("{e:#}"), "dashboard socket ended with an error");
            }
        })
}

#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum DashboardMsg {
    Auth {
        token: String,
    },
    Subscribe {
        #[serde(default)]
        sessions: Vec<common::ids::SessionId>,
        #[serde(default)]
        all: bool,
    },
    Unsubscribe {
        #[serde(default)]
        sessions: Vec<common::ids::SessionId>,
    },
}

fn json_frame(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn serve_dashboard(
    state: Arc<AppState>,
    socket: WebSocket,
    pre_auth: Option<String>,
) -> anyhow::Result<()> {
    let (mut tx, mut rx) = socket.split();
    let user = match pre_auth {
        Some(u) => u,
        None => {
            let first = tokio::time::timeout(Duration::from_secs(10), rx.next()).await;
            let token = match first {
                Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<DashboardMsg>(&t) {
                    Ok(DashboardMsg::Auth { token }) => token,
                    _ => String::new(),
                },
                _ => String::new(),
            };
            match state.db.verify_key(&token, KeyKind::User).await? {
                Some(row) => row.name,
                None => {
                    state.hub.metrics.reject();
                    let _ = tx.send(json_frame(serde_json::json!({"type": "error", "code": "unauthorized", "message": "send {\"type\":\"auth\",\"token\":\"...\"} first, or an Authorization header"}))).await;
                    let _ = tx.close().await;
                    return Ok(());
                }
            }
        }
    };
    let _guard = crate::http::ClientGuard::new(&state);
    tx.send(json_frame(
        serde_json::json!({"type": "ready", "user": user}),
    ))
    .await?;
    let mut live = state.hub.subscribe();
    let mut all = false;
    let mut sessions = std::collections::HashSet::new();
    let mut last_id = state.db.last_event_id().await?;
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let text = match msg? {
                    Message::Text(t) => t,
                    Message::Close(_) => return Ok(()),
                    _ => continue,
                };
                match serde_json::from_str::<DashboardMsg>(&text) {
                    Ok(DashboardMsg::Subscribe { sessions: s, all: a }) => {
                        all |= a;
                        sessions.extend(s);
                        tx.send(json_frame(serde_json::json!({"type": "subscribed", "all": all, "sessions": sessions}))).await?;
                    }
                    Ok(DashboardMsg::Unsubscribe { sessions: s }) => {
                        for id in s {
                            sessions.remove(&id);
                        }
                    }
                    Ok(DashboardMsg::Auth { .. }) => {}
                    Err(e) => {
                        state.hub.metrics.reject();
                        tx.send(json_frame(serde_json::json!({"type": "error", "code": "bad_request", "message": format!("bad message: {e}")}))).await?;
                    }
                }
            }
            ev = live.recv() => {
                let batch = match ev {
                    Ok(ev) => vec![ev],
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        state.db.events_since_id(last_id, 1000).await?.into_iter().map(Arc::new).collect()
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                };
                for ev in batch {
                    if ev.id <= last_id {
                        continue;
                    }
                    last_id = ev.id;
                    if all || sessions.contains(&ev.event.session_id) {
                        tx.send(json_frame(serde_json::json!({"type": "event", "event": &*ev}))).await?;
                    }
                }
            }
        }
    }
}
