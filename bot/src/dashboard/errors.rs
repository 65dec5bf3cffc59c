//! What goes wrong in the dashboard and how it looks: [`WebError`] becomes an HTML error
//! page (the message in `#error-message`, which the page script reads after a failed
//! background request), a redirect to the login page for a browser that navigated
//! without a valid login, or a JSON error for the script's own requests
//! ([`WebError::json`]). 5xx details go to the log, never to the page.

use askama::Template;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::assets;
use crate::http::AppError;

/// A dashboard failure.
#[derive(Debug)]
pub enum WebError {
    /// No valid login; a browser navigating there is sent to `/login?next=<path>`.
    Login(Option<String>),
    /// No valid login on a background request: 401.
    Unauthorized,
    /// The request did not come from a dashboard page (origin or CSRF token): 403.
    Forbidden(String),
    /// Bad input: 400.
    BadRequest(String),
    /// No such thing: 404.
    NotFound(String),
    /// Too many failed logins: 429.
    TooMany(String),
    /// What the REST layer (daemon, hub, store) said, with its status.
    App(StatusCode, &'static str, String),
    /// Logged; the page says "internal error".
    Internal,
}

impl WebError {
    /// A 500 whose detail goes to the log only.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "dashboard internal error");
        Self::Internal
    }

    /// Status, stable code and message.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Login(_) | Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "You are not logged in (or your login expired). Log in again.".to_owned(),
            ),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m.clone()),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            Self::TooMany(m) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", m.clone()),
            Self::App(s, c, m) => (*s, c, m.clone()),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error; the bot's log has the details.".to_owned(),
            ),
        }
    }

    /// The JSON form `{"error": {"code", "message"}}` (for the page script).
    pub fn json(self) -> Response {
        let (status, code, message) = self.parts();
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

impl From<AppError> for WebError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        let res = e.into_response();
        let status = res.status();
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::GATEWAY_TIMEOUT => "timeout",
            _ if status.is_server_error() => "daemon_error",
            _ => "error",
        };
        Self::App(status, code, message)
    }
}

impl From<crate::db::DbError> for WebError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::NotFound => Self::NotFound("Not found.".to_owned()),
            other => Self::internal(other),
        }
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        Self::internal(e)
    }
}

/// `templates/error.html`.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    v: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let Self::Login(next) = &self {
            let to = match next {
                Some(n) => format!("/login?next={}", urlencode(n)),
                None => "/login".to_owned(),
            };
            return Redirect::to(&to).into_response();
        }
        let (status, _, message) = self.parts();
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: &message,
            v: assets::version(),
        };
        match page.render() {
            Ok(html) => (status, axum::response::Html(html)).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "cannot render the error page");
                (status, message).into_response()
            }
        }
    }
}

/// Percent-encodes a path for a query parameter.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
