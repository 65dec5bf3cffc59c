//! Cross-site request forgery, in one place. Two independent checks guard every request
//! that changes something:
//!
//! 1. [`origin_guard`] (a middleware over all dashboard routes): a POST whose
//!    `Sec-Fetch-Site` is not `same-origin`, or whose `Origin` is not this server (its
//!    `Host`, or `public_url`), is refused before any handler runs and audited. This also
//!    covers the login form, where there is no session yet.
//! 2. [`verify`]: the login's own random token, sent back by the page in the
//!    `X-CSRF-Token` header (script) or the `csrf` form field (plain forms), compared in
//!    constant time. A page on another port of the same host is "same-site", so the
//!    `SameSite=Strict` cookie alone would not stop it; the token does.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::event::now_ms;
use serde_json::json;

use super::Web;
use super::cookies::WebUser;
use super::errors::WebError;
use super::page::client_addr;
use crate::AppState;
use crate::config::BotConfig;

/// Refuses state-changing requests that did not come from a dashboard page.
pub async fn origin_guard(State(web): State<Web>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Err(why) = same_origin(req.headers(), &web.app.cfg) {
        let addr = client_addr(req.extensions());
        refused(&web.app, &addr, req.uri().path(), &why).await;
        return WebError::Forbidden(format!(
            "This request did not come from a dashboard page ({why}), so it was not carried out."
        ))
        .into_response();
    }
    next.run(req).await
}

/// Checks the anti-forgery token of `user`'s login: the `X-CSRF-Token` header, else the
/// form's `csrf` field.
pub fn verify(headers: &HeaderMap, user: &WebUser, field: Option<&str>) -> Result<(), WebError> {
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(field)
        .unwrap_or_default();
    if crate::auth::hashes_equal(given, &user.csrf) {
        Ok(())
    } else {
        Err(WebError::Forbidden(
            "This form is out of date or did not come from the dashboard; reload the page and \
             try again."
                .to_owned(),
        ))
    }
}

/// [`verify`], with a refusal counted and audited under the user's name.
pub async fn check(
    web: &Web,
    headers: &HeaderMap,
    user: &WebUser,
    field: Option<&str>,
) -> Result<(), WebError> {
    let checked = verify(headers, user, field);
    if checked.is_err() {
        web.app.hub.metrics.reject();
        super::page::audit(
            web,
            &user.name,
            "web.refused",
            "csrf",
            json!({"reason": "missing or wrong CSRF token"}),
        )
        .await;
    }
    checked
}

/// `Ok` when the request's `Sec-Fetch-Site` and `Origin` (where the browser sent them)
/// say it came from this server; otherwise why not.
pub fn same_origin(headers: &HeaderMap, cfg: &BotConfig) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site")
        && site != "same-origin"
    {
        return Err(format!(
            "Sec-Fetch-Site is {}",
            site.to_str().unwrap_or("not text")
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let ours = !host.is_empty()
        && (origin == format!("http://{host}") || origin == format!("https://{host}"));
    let public = cfg
        .public_url
        .as_deref()
        .is_some_and(|u| u.trim_end_matches('/') == origin);
    if ours || public {
        Ok(())
    } else {
        Err(format!("Origin {origin} is not this server"))
    }
}

async fn refused(app: &Arc<AppState>, addr: &str, path: &str, why: &str) {
    app.hub.metrics.reject();
    tracing::warn!(%addr, path, why, "dashboard refused a cross-origin request");
    if let Err(e) = app
        .db
        .audit(
            &format!("dashboard:{addr}"),
            "web.refused",
            path,
            json!({"reason": why}),
            now_ms(),
        )
        .await
    {
        tracing::error!(error = %e, "audit write failed");
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_rules() {
        let cfg = BotConfig::default();
        let ok = [
            headers(&[("host", "127.0.0.1:7878")]),
            headers(&[
                ("host", "127.0.0.1:7878"),
                ("origin", "http://127.0.0.1:7878"),
            ]),
            headers(&[
                ("host", "h:1"),
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://h:1"),
            ]),
        ];
        for h in &ok {
            assert!(same_origin(h, &cfg).is_ok(), "{h:?}");
        }
        let bad = [
            headers(&[
                ("host", "127.0.0.1:7878"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            headers(&[("host", "127.0.0.1:7878"), ("origin", "null")]),
            headers(&[("host", "127.0.0.1:7878"), ("sec-fetch-site", "same-site")]),
            headers(&[("host", "127.0.0.1:7878"), ("sec-fetch-site", "cross-site")]),
        ];
        for h in &bad {
            assert!(same_origin(h, &cfg).is_err(), "{h:?}");
        }
        let cfg = BotConfig {
            public_url: Some("https://ccrm.example".into()),
            ..BotConfig::default()
        };
        let proxied = headers(&[
            ("host", "127.0.0.1:7878"),
            ("origin", "https://ccrm.example"),
        ]);
        assert!(same_origin(&proxied, &cfg).is_ok());
    }

    #[test]
    fn token_from_header_or_field() {
        let user = WebUser {
            name: "a".into(),
            csrf: "tok".into(),
            hash: "h".into(),
        };
        assert!(verify(&HeaderMap::new(), &user, Some("tok")).is_ok());
        assert!(verify(&headers(&[("x-csrf-token", "tok")]), &user, None).is_ok());
        assert!(verify(&HeaderMap::new(), &user, None).is_err());
        assert!(verify(&headers(&[("x-csrf-token", "nope")]), &user, Some("tok")).is_err());
    }
}
