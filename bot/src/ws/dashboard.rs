//! `/ws/dashboard`: live events of the sessions a client subscribes to, for browsers and
//! tools. The user token comes in the `Authorization: Bearer` header or as the first
//! message; it is never logged.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tracing::warn;

use crate::AppState;
use crate::auth::KeyKind;
use crate::http::guard;
use crate::tls::PeerAddr;

/// `GET /ws/dashboard`: live events for the sessions a client subscribes to. The user token
/// comes in the `Authorization: Bearer` header or, for browsers, as the first message
/// `{"type":"auth","token":"..."}`; it is never logged. Client messages:
/// `{"type":"subscribe","sessions":["<id>",...]}`, `{"type":"subscribe","all":true}`,
/// `{"type":"unsubscribe","sessions":[...]}`. Server messages: `{"type":"ready","user"}`,
/// `{"type":"event","event":<stored event>}`, `{"type":"error","code","message"}`.
pub async fn dashboard_ws(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<PeerAddr>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let client = guard::client_of(&state, peer.as_ref().map(|p| &p.0), &headers);
    if let Some(refused) = guard::blocked(&state, client) {
        return refused;
    }
    let pre_auth = match crate::auth::bearer_token(&headers) {
        Some(token) => match state.db.verify_key(token, KeyKind::User).await {
            Ok(Some(row)) => Some(row.name),
            Ok(None) => {
                if let Some(blocked) =
                    guard::failed(&state, client, "dashboard socket", "/ws/dashboard").await
                {
                    return blocked;
                }
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
