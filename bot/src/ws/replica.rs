//! `/ws/replica`: the accepting side of a direct link from another replica of a shared
//! PostgreSQL database (see `replica/peers.rs`). The dialler shows this replica's token
//! (`Authorization: Bearer`, compared in constant time; a wrong one counts as a failed
//! login like any other) and its own id (`X-Ccrm-Replica`); the link then carries calls
//! and replies both ways. On SQLite there are no replicas: 404.

use std::sync::Arc;

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::link::MAX_LINK_FRAME;

use crate::AppState;
use crate::http::guard;
use crate::replica::{FROM_HEADER, valid_replica_id};
use crate::tls::PeerAddr;

/// `GET /ws/replica`.
pub async fn replica_ws(
    State(state): State<Arc<AppState>>,
    peer: Option<Extension<ConnectInfo<PeerAddr>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(me) = state.replicas.clone() else {
        return crate::http::meta::not_found().await.into_response();
    };
    let client = guard::client_of(&state, peer.as_ref().map(|p| &p.0), &headers);
    if let Some(refused) = guard::blocked(&state, client) {
        return refused;
    }
    let shown = crate::auth::bearer_token(&headers).unwrap_or_default();
    if !me.token_matches(shown) {
        if let Some(blocked) = guard::failed(&state, client, "replica link", "/ws/replica").await {
            return blocked;
        }
        return (
            StatusCode::UNAUTHORIZED,
            "missing or invalid replica token (Authorization: Bearer)",
        )
            .into_response();
    }
    let from = headers
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_replica_id(id))
        .map(str::to_owned);
    let Some(from) = from else {
        state.hub.metrics.reject();
        return (
            StatusCode::BAD_REQUEST,
            "missing or invalid X-Ccrm-Replica (the dialling replica's id)",
        )
            .into_response();
    };
    ws.max_message_size(MAX_LINK_FRAME)
        .max_frame_size(MAX_LINK_FRAME)
        .on_upgrade(move |socket| me.accept(from, socket))
}
