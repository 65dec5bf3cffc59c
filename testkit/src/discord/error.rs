//! A refused request: [`ApiError`], the HTTP status and the JSON body Discord answers
//! with (its error codes and messages, and the 429 body of a rate limit).
//!
//! A leaf module: the checks in `validate` build their 400 50035 replies with it, the
//! world's endpoints and the HTTP side in the parent module return it.

use serde_json::{Value, json};

/// A Discord error reply: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ApiError {
    pub status: u16,
    /// `{"code":..,"message":..}` (+ `errors`), or the 429 body.
    pub body: Value,
    /// Set on 429s: seconds to wait.
    pub retry_after: Option<f64>,
}

impl ApiError {
    pub fn new(status: u16, code: u64, message: &str) -> Self {
        Self {
            status,
            body: json!({ "message": message, "code": code }),
            retry_after: None,
        }
    }

    /// 400 50035 "Invalid Form Body" with an `errors` tree.
    pub fn form(errors: Value) -> Self {
        Self {
            status: 400,
            body: json!({ "code": 50035, "errors": errors, "message": "Invalid Form Body" }),
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(404, 0, "404: Not Found")
    }

    pub fn unauthorized() -> Self {
        Self::new(401, 0, "401: Unauthorized")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(405, 0, "405: Method Not Allowed")
    }

    pub fn invalid_json() -> Self {
        Self::new(400, 50109, "The request body contains invalid JSON.")
    }

    pub fn too_large() -> Self {
        Self::new(413, 40005, "Request entity too large")
    }

    pub(super) fn unknown_channel() -> Self {
        Self::new(404, 10003, "Unknown Channel")
    }

    pub(super) fn unknown_message() -> Self {
        Self::new(404, 10008, "Unknown Message")
    }

    pub(super) fn unknown_interaction() -> Self {
        Self::new(404, 10062, "Unknown interaction")
    }

    pub(super) fn unknown_webhook() -> Self {
        Self::new(404, 10015, "Unknown Webhook")
    }

    pub(super) fn invalid_webhook_token() -> Self {
        Self::new(401, 50027, "Invalid Webhook Token")
    }

    pub(super) fn empty_message() -> Self {
        Self::new(400, 50006, "Cannot send an empty message")
    }

    pub(super) fn wrong_channel_type() -> Self {
        Self::new(400, 50024, "Cannot execute action on this channel type")
    }

    pub(super) fn missing_permissions() -> Self {
        Self::new(403, 50013, "Missing Permissions")
    }

    /// Discord's user-scope 429 body (no `code`, like the real one).
    pub fn rate_limited(retry_after: f64) -> Self {
        Self {
            status: 429,
            body: json!({
                "message": "You are being rate limited.",
                "retry_after": retry_after,
                "global": false,
            }),
            retry_after: Some(retry_after),
        }
    }

    /// An injected failure with Discord's usual body for `status`.
    pub fn injected(status: u16, retry_after: Option<f64>) -> Self {
        match status {
            429 => Self::rate_limited(retry_after.unwrap_or(1.0)),
            400 => Self::form(json!({ "_errors": [{
                "code": "FAKE_DISCORD_INJECTED",
                "message": "Failure injected by FakeDiscord",
            }]})),
            401 => Self::unauthorized(),
            403 => Self::missing_permissions(),
            404 => Self::not_found(),
            500 => Self::new(500, 0, "500: Internal Server Error"),
            502 => Self::new(502, 0, "502: Bad Gateway"),
            503 => Self::new(503, 0, "503: Service Unavailable"),
            other => Self::new(other, 0, &format!("{other}: Injected by FakeDiscord")),
        }
    }
}
