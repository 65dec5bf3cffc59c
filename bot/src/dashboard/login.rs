//! `/login` and `/logout`. The login form posts a user token (never in a URL); a valid one
//! is exchanged for a session cookie ([`super::cookies`]) and the browser goes on to the
//! page it wanted. Attempts are limited per client address with `governor`
//! (`web_login_attempts_per_minute`, bursting to the same number), and every failure and
//! every refusal is audited with the address.

use std::num::NonZeroU32;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use common::event::now_ms;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::json;

use super::cookies::{self, WebUser};
use super::errors::WebError;
use super::page::{Fields, audit, client_addr};
use super::{Web, assets, csrf};
use crate::auth::KeyKind;

/// Login attempts per client address.
pub type Limiter = DefaultKeyedRateLimiter<String>;

/// A limiter allowing `per_minute` attempts a minute per address.
pub fn limiter(per_minute: u32) -> Limiter {
    let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_minute(n))
}

/// `templates/login.html`.
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    v: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

/// Query of `GET /login`.
#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: the form (or on to the overview when already logged in).
pub async fn page(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref());
    if let Some(secret) = cookies::read(&headers)
        && let Ok(Some(_)) = web
            .app
            .db
            .web_session(&crate::auth::hash_secret(secret), now_ms())
            .await
    {
        return Redirect::to(next).into_response();
    }
    show(StatusCode::OK, next, None)
}

fn show(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let page = LoginPage {
        v: assets::version(),
        next,
        error,
    };
    match page.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => WebError::internal(e).into_response(),
    }
}

/// `POST /login` (`token`, `next`).
pub async fn submit(State(web): State<Web>, req: axum::extract::Request) -> Response {
    let addr = client_addr(req.extensions());
    let headers = req.headers().clone();
    let form = match <Fields as axum::extract::FromRequest<()>>::from_request(req, &()).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let next = safe_next(form.get("next")).to_owned();
    if web.logins.check_key(&addr).is_err() {
        web.app.hub.metrics.reject();
        audit(&web, &addr, "web.login_limited", "login", json!({})).await;
        return show(
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some("Too many login attempts from your address. Wait a minute, then try again."),
        );
    }
    // Limiter entries of addresses that stopped trying are dropped now and then.
    web.logins.retain_recent();
    let token = form.get("token").map(str::trim).unwrap_or_default();
    let key = if token.is_empty() {
        None
    } else {
        match web.app.db.verify_key(token, KeyKind::User).await {
            Ok(k) => k,
            Err(e) => return WebError::internal(e).into_response(),
        }
    };
    let Some(key) = key else {
        web.app.hub.metrics.reject();
        tracing::warn!(%addr, "dashboard login refused");
        audit(
            &web,
            &addr,
            "web.login_failed",
            "login",
            json!({"reason": if token.is_empty() { "no token" } else { "not a valid user token" }}),
        )
        .await;
        return show(
            StatusCode::UNAUTHORIZED,
            &next,
            Some(
                "That is not a valid user token. Create one with `ccrm-bot keys create NAME \
                 --kind user`, or use the one `ccrm up` printed.",
            ),
        );
    };
    match start_session(&web, &headers, key.id).await {
        Ok(cookie) => {
            audit(&web, &key.name, "web.login", "login", json!({"addr": addr})).await;
            let mut res = Redirect::to(&next).into_response();
            res.headers_mut().insert(header::SET_COOKIE, cookie);
            res
        }
        Err(e) => e.into_response(),
    }
}

async fn start_session(
    web: &Web,
    headers: &HeaderMap,
    key_id: i64,
) -> Result<axum::http::HeaderValue, WebError> {
    let secret = cookies::new_secret()?;
    let csrf = cookies::new_secret()?;
    let now = now_ms();
    let ttl_secs = web.app.cfg.web_session_hours * 3600;
    web.app
        .db
        .create_web_session(
            &crate::auth::hash_secret(&secret),
            key_id,
            &csrf,
            now,
            now + ttl_secs * 1000,
        )
        .await?;
    web.app.db.purge_web_sessions(now).await?;
    cookies::set(&secret, ttl_secs, cookies::secure(&web.app.cfg, headers))
}

/// `POST /logout`: ends the login and clears the cookie.
pub async fn logout(
    State(web): State<Web>,
    user: WebUser,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    if let Err(e) = csrf::check(&web, &headers, &user, form.get("csrf")).await {
        return e.into_response();
    }
    if let Err(e) = web.app.db.delete_web_session(&user.hash).await {
        return WebError::internal(e).into_response();
    }
    audit(&web, &user.name, "web.logout", "login", json!({})).await;
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookies::clear(cookies::secure(&web.app.cfg, &headers)),
    );
    res
}

/// `next` if it is a path on this server, else `/` (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.starts_with("/login") =>
        {
            n
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next(Some("/sessions/x")), "/sessions/x");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(Some("/login")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn limiter_refuses_past_the_quota() {
        let l = limiter(3);
        let key = "10.0.0.1".to_owned();
        for _ in 0..3 {
            assert!(l.check_key(&key).is_ok());
        }
        assert!(l.check_key(&key).is_err());
        assert!(l.check_key(&"10.0.0.2".to_owned()).is_ok());
    }
}
