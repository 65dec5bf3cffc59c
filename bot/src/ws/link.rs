//! `/ws/daemon`: one task per daemon link. It authenticates the `X-API-Key`, checks the
//! hello and protocol version, answers with the highest committed seq, then hands event
//! frames, session updates and "last heard" marks to the ingest task ([`crate::ingest`]),
//! which commits them in groups with every other link's (dedup on `(daemon_id, seq)`), and
//! acknowledges each frame cumulatively once its group committed. The link keeps reading
//! while earlier frames commit (at most [`IN_FLIGHT`] of them), relays command replies to
//! the hub, and pings. A silent daemon is dropped after `daemon_timeout`. Bad frames get an
//! error frame; the link and every other client go on.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::event::now_ms;
use common::ids::DaemonId;
use common::ipc::{ErrorBody, ErrorCode};
use common::link::{DaemonMsg, HubMsg, LINK_PROTOCOL_VERSION, MAX_LINK_FRAME};
use futures::stream::FuturesOrdered;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::AppState;
use crate::auth::KeyKind;
use crate::http::guard;
use crate::ingest::{Op, Outcome};
use crate::tls::PeerAddr;

/// Frames of one link handed to the ingest task and not yet committed; past this the link
/// stops reading its socket until one commits (the daemon's own window bounds it too).
pub const IN_FLIGHT: usize = 16;

/// Read buffer per link socket.
const LINK_BUFFER: usize = 8 * 1024;

/// How often at most a link records that its daemon was heard from.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

/// `GET /ws/daemon`.
pub async fn daemon_ws(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<PeerAddr>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let client = guard::client_of(&state, peer.as_ref().map(|p| &p.0), &headers);
    if let Some(refused) = guard::blocked(&state, client) {
        return refused;
    }
    let key = crate::auth::daemon_key(&headers).unwrap_or_default();
    let row = match state.db.verify_key(key, KeyKind::Daemon).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            if let Some(blocked) = guard::failed(&state, client, "daemon link", "/ws/daemon").await
            {
                return blocked;
            }
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
    // Small socket buffers: a link carries small frames most of the time, and a bot keeps
    // hundreds of links (tungstenite's default is 128 KiB each way per socket).
    ws.max_message_size(MAX_LINK_FRAME)
        .max_frame_size(MAX_LINK_FRAME)
        .read_buffer_size(LINK_BUFFER)
        .write_buffer_size(0)
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
        state.hub.set_route(s.id, &daemon_id);
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

/// What a frame handed to the ingest task was, to act on its outcome.
enum Sent {
    /// Events up to this seq: ack it once committed.
    Events(u64),
    /// A session update: route the session here once recorded.
    Session(common::ids::SessionId),
    /// A "last heard" mark.
    Touch,
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
    // Frames handed to the ingest task, answered in the order they were handed in.
    let mut in_flight = FuturesOrdered::new();
    let submit = |op: Op, sent: Sent| {
        let ingest = state.ingest.clone();
        async move {
            let pending = ingest.submit(daemon_id, op).await;
            let outcome = match pending {
                Some(rx) => rx
                    .await
                    .unwrap_or_else(|_| Err("the ingest task stopped".into())),
                None => Err("the server is shutting down".into()),
            };
            (sent, outcome)
        }
    };
    loop {
        tokio::select! {
            msg = rx.next(), if in_flight.len() < IN_FLIGHT => {
                let Some(msg) = msg else { return Ok(()) };
                let msg = msg?;
                last_heard = Instant::now();
                if last_touch.elapsed() > TOUCH_EVERY {
                    in_flight.push_back(submit(Op::Touch(now_ms()), Sent::Touch));
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
                        let Some(last) = events.iter().map(|e| e.seq).max() else {
                            continue;
                        };
                        in_flight.push_back(submit(Op::Events(events), Sent::Events(last)));
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
                        let id = session.id;
                        in_flight.push_back(submit(Op::Session(Box::new(session), now_ms()), Sent::Session(id)));
                    }
                    Ok(DaemonMsg::BodyAck { req_id, received }) => state.hub.body_ack(req_id, received),
                    Ok(DaemonMsg::StreamItem { req_id, item }) => state.hub.stream_item(req_id, item),
                    Ok(DaemonMsg::Hello { .. }) => reject(state, tx, "hello was already received").await?,
                    Err(e) => reject(state, tx, &format!("bad frame: {e}")).await?,
                }
            }
            Some((sent, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                let outcome = outcome.map_err(|e| anyhow::anyhow!("storing what daemon {daemon_id} sent failed: {e}"))?;
                match (sent, outcome) {
                    (Sent::Events(last), Outcome::Events { stored, duplicate }) => {
                        let m = &state.hub.metrics;
                        m.events_ingested.fetch_add(stored as u64, std::sync::atomic::Ordering::Relaxed);
                        m.events_duplicate.fetch_add(duplicate as u64, std::sync::atomic::Ordering::Relaxed);
                        acked = acked.max(last);
                        tx.send(frame(&HubMsg::Ack { seq: acked })?).await?;
                    }
                    (Sent::Session(id), Outcome::Done) => state.hub.set_route(id, daemon_id),
                    (_, Outcome::Refused(why)) => anyhow::bail!("daemon {daemon_id}: {why}"),
                    _ => {}
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
