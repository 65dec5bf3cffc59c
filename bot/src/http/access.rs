//! Who is calling: the bearer-token middleware that admits user tokens (constant-time checks
//! against hashed tokens; a daemon key is not a user token; a wrong one counts against the
//! caller's address in [`super::guard`]), the [`User`] it leaves in the request, and the
//! audit row every REST action writes under that user's name.
//!
//! The audit row also keeps the caller's address: the connection's peer, or, when the peer
//! is one of `trusted_proxies` (a reverse proxy that terminates TLS), the client that
//! `X-Forwarded-For` names. The middleware sets it for the rest of the request in a
//! task-local, so handlers keep calling [`audit`] as before.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::event::{Origin, Surface, now_ms};
use serde_json::Value;
use tracing::error;

use super::{AppError, guard};
use crate::AppState;
use crate::auth::{KeyKind, bearer_token};
use crate::tls::PeerAddr;

tokio::task_local! {
    /// The calling client's address during one authenticated request.
    static CLIENT_ADDR: Option<IpAddr>;
}

/// The authenticated user (the name of their token).
#[derive(Clone, Debug)]
pub struct User(pub String);

/// Middleware: a valid user bearer token or 401; 429 for an address with too many failed
/// checks ([`guard`]), whose tokens are then not checked at all.
pub async fn require_user(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0.0.ip());
    let client = peer.map(|p| client_addr(p, req.headers(), &state.cfg.trusted_proxies));
    if let Some(refused) = guard::blocked(&state, client) {
        return refused;
    }
    let token = bearer_token(req.headers()).map(str::to_owned);
    let user = match &token {
        Some(t) => match state.db.verify_key(t, KeyKind::User).await {
            Ok(Some(row)) => Some(row.name),
            Ok(None) => None,
            Err(e) => return AppError::internal(e).into_response(),
        },
        None => None,
    };
    let Some(user) = user else {
        if token.is_some()
            && let Some(blocked) = guard::failed(&state, client, "rest", req.uri().path()).await
        {
            return blocked;
        }
        if token.is_none() {
            state.hub.metrics.reject();
        }
        return AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token (Authorization: Bearer <token>)",
        )
        .into_response();
    };
    req.extensions_mut().insert(User(user));
    CLIENT_ADDR.scope(client, next.run(req)).await
}

/// The client behind `peer`: `peer` itself unless it is a trusted proxy, else the rightmost
/// `X-Forwarded-For` entry that is not a trusted proxy (entries to its left could be forged
/// by the client).
pub fn client_addr(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|h| !trusted.contains(h))
        .unwrap_or(peer)
}

/// The origin recorded for what `user` does over REST.
pub(super) fn origin(user: &User) -> Origin {
    Origin::user(Surface::Rest, user.0.clone())
}

/// Writes an audit row for a REST action of `user` (a failed write is logged, not fatal).
pub(super) async fn audit(
    state: &AppState,
    user: &User,
    action: &str,
    target: &str,
    mut detail: Value,
) {
    let addr = CLIENT_ADDR.try_with(|a| *a).ok().flatten();
    if let (Some(addr), Value::Object(map)) = (addr, &mut detail) {
        map.insert("addr".to_owned(), Value::from(addr.to_string()));
    }
    if let Err(e) = state
        .db
        .audit(
            &format!("rest:{}", user.0),
            action,
            target,
            detail,
            now_ms(),
        )
        .await
    {
        error!(error = %e, "audit write failed");
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7".parse().expect("hv"),
        );
        let proxy = [ip("127.0.0.1")];
        assert_eq!(
            client_addr(ip("198.51.100.1"), &h, &proxy),
            ip("198.51.100.1")
        );
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &proxy), ip("203.0.113.7"));
        let two = [ip("127.0.0.1"), ip("203.0.113.7")];
        assert_eq!(client_addr(ip("127.0.0.1"), &h, &two), ip("6.6.6.6"));
        assert_eq!(
            client_addr(ip("127.0.0.1"), &HeaderMap::new(), &proxy),
            ip("127.0.0.1")
        );
    }
}
