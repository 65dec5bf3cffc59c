//! Failed token checks, rate-limited per client address with `governor` (GCRA): a client
//! gets `auth_failures_per_minute` (10) failed checks a minute, then 429 with `Retry-After`
//! until the limit lets it try again. While it is blocked no token it sends is even checked,
//! so a guesser cannot go on through the 429s; a valid token from an address that is not
//! blocked is never slowed. The address is the connection's peer, or the client a trusted
//! proxy names in `X-Forwarded-For` ([`super::access::client_addr`]).
//!
//! Every failure is audited (`auth.failed`, with the surface and address, never the token),
//! and so is the moment an address gets blocked (`auth.blocked`); the 429s that follow are
//! counted in the metrics' rejections but not written one by one, so a flood cannot fill
//! the audit table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::event::now_ms;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tracing::{error, warn};

use super::AppError;
use crate::AppState;
use crate::tls::PeerAddr;

/// Most addresses remembered, blocked or counted (recovered ones are forgotten first).
const MAX_BLOCKED: usize = 10_000;

/// The per-address limit of failed token checks (see the module docs).
pub struct AuthGuard {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl AuthGuard {
    /// A guard allowing `per_minute` failures a minute per address (0: no limit).
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// How long `addr` must still wait, when it is blocked now.
    pub fn blocked_for(&self, addr: IpAddr) -> Option<Duration> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let until = *blocked.get(&addr)?;
        let now = Instant::now();
        if until <= now {
            blocked.remove(&addr);
            return None;
        }
        Some(until - now)
    }

    /// Counts a failed check from `addr`; `Some(wait)` when that was one too many and the
    /// address is now blocked for `wait`.
    fn fail(&self, addr: IpAddr) -> Option<Duration> {
        let limiter = self.limiter.as_ref()?;
        if limiter.len() >= MAX_BLOCKED {
            // Many addresses failing once each: forget those whose limit has recovered.
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let not_until = limiter.check_key(&addr).err()?;
        let wait = not_until
            .wait_time_from(DefaultClock::default().now())
            .max(Duration::from_secs(1));
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if blocked.len() >= MAX_BLOCKED {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_BLOCKED {
                blocked.clear();
            }
        }
        blocked.insert(addr, Instant::now() + wait);
        limiter.retain_recent();
        Some(wait)
    }
}

/// The client address of a request: its peer (when the server recorded it), or the client a
/// trusted proxy names.
pub fn client_of(
    state: &AppState,
    peer: Option<&ConnectInfo<PeerAddr>>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    peer.map(|c| super::access::client_addr(c.0.0.ip(), headers, &state.cfg.trusted_proxies))
}

/// The 429 for `client` while too many failed token checks block it (counted as a
/// refused request); `None` lets the request go on to its token check.
pub fn blocked(state: &AppState, client: Option<IpAddr>) -> Option<Response> {
    let wait = client.and_then(|c| state.auth_guard.blocked_for(c))?;
    state.hub.metrics.reject();
    Some(too_many(wait))
}

/// The 429 a blocked address gets: `Retry-After` in whole seconds (rounded up).
pub fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp = AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        format!("too many failed token checks from this address; try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Records a failed token check of `surface` (`rest`, `dashboard`, `daemon link`, `replica
/// link`) from `addr` at `target` (a path): audited, counted, and `Some(429)` when it
/// blocked `addr`.
pub async fn failed(
    state: &AppState,
    addr: Option<IpAddr>,
    surface: &str,
    target: &str,
) -> Option<Response> {
    state.hub.metrics.reject();
    let shown = addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let detail = json!({"surface": surface, "addr": shown});
    if let Err(e) = state
        .db
        .audit("anonymous", "auth.failed", target, detail.clone(), now_ms())
        .await
    {
        error!(error = %e, "audit write failed");
    }
    let wait = state.auth_guard.fail(addr?)?;
    warn!(addr = %shown, surface, "too many failed token checks; blocking the address");
    if let Err(e) = state
        .db
        .audit("anonymous", "auth.blocked", target, detail, now_ms())
        .await
    {
        error!(error = %e, "audit write failed");
    }
    Some(too_many(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_failure_in_a_minute_blocks_only_that_address() {
        let g = AuthGuard::new(10);
        let a: IpAddr = "203.0.113.9".parse().expect("ip");
        let b: IpAddr = "203.0.113.10".parse().expect("ip");
        for i in 0..10 {
            assert!(g.fail(a).is_none(), "failure {i} is allowed");
            assert!(g.blocked_for(a).is_none());
        }
        let wait = g.fail(a).expect("the 11th blocks");
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60));
        assert!(g.blocked_for(a).is_some());
        assert!(g.blocked_for(b).is_none(), "another address is not blocked");
        assert!(g.fail(b).is_none());
        let off = AuthGuard::new(0);
        for _ in 0..100 {
            assert!(off.fail(a).is_none(), "0 turns the limit off");
        }
    }

    #[test]
    fn the_429_says_when_to_retry() {
        let r = too_many(Duration::from_millis(5200));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "6");
    }
}
