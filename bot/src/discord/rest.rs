//! Discord REST for the adapter: serenity builds each request (its `Route`s, builders and
//! multipart bodies), this module sends it with reqwest, paces it with [`Outbound`] and
//! honours 429s.
//!
//! Why not serenity's own `Http` calls: with a configurable API host (the loopback fake in
//! tests, or a proxy in front of Discord) serenity's ratelimiter cannot be used, since it
//! builds every request against `https://discord.com` whatever the proxy says; and without
//! it serenity turns a 429 into an error that has lost `retry_after`. So 429s are read
//! here: `retry_after` from the JSON body (seconds, a float), else the `Retry-After` or
//! `X-RateLimit-Reset-After` header; the request waits that long and goes again. Network
//! errors and 5xx are retried a few times; other 4xx come back as [`RestError::Api`] with
//! Discord's error code. Interaction tokens in paths never reach a log ([`route_label`]).

use std::time::Duration;

use reqwest012 as reqwest;
use serde_json::Value;
use serenity::http::{LightMethod, Request, Route};
use tracing::warn;

use crate::chat::ratelimit::{Lane, Outbound, OutboundQuotas};

/// Attempts per request; 429s wait their `retry_after` in between.
const ATTEMPTS: u32 = 12;

/// Attempts for network errors and 5xx answers.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// Longest wait a 429 may impose (an interaction token lives 15 minutes).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// Per-request timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Discord's limits with a margin, since Discord measures arrival and we departure: 50
/// requests a second for the bot, and at most 5 messages in any 5 seconds per channel (one
/// every 1.05 s with a burst of one; see [`crate::chat::ratelimit`]).
pub const DISCORD_QUOTAS: OutboundQuotas = OutboundQuotas {
    global_period: Duration::from_millis(21),
    chat_period: Duration::from_millis(1050),
    group_period: Duration::from_millis(1050),
};

/// What a request counts against.
#[derive(Clone, Copy, Debug)]
pub enum Pace<'a> {
    /// A message (sent or edited) in this channel: per channel and global limits, ahead
    /// of tidy-ups and progress ([`Lane::Answer`]).
    Channel(&'a str),
    /// A tidy-up in this channel: waits behind answers ([`Lane::Tidy`]).
    Tidy(&'a str),
    /// Progress in this channel: only when the channel's budget is free now, and never
    /// retried after a 429 ([`Lane::Progress`]).
    Progress(&'a str),
    /// Anything else of the bot's: the global limit.
    Global,
    /// An interaction response: not bound by the bot's limits, and it must not wait behind
    /// them (Discord wants an answer within 3 s).
    Interaction,
}

/// Why a request failed for good.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Discord answered with an error.
    #[error("Discord refused {route}: HTTP {status}, code {code}: {message}")]
    Api {
        /// Method and path (tokens hidden).
        route: String,
        /// HTTP status.
        status: u16,
        /// Discord's JSON error code (0 when absent).
        code: i64,
        /// Discord's message.
        message: String,
    },
    /// The request did not get an answer.
    #[error("Discord request {route} failed: {detail}")]
    Network {
        /// Method and path (tokens hidden).
        route: String,
        /// What went wrong.
        detail: String,
    },
    /// Still rate limited after every attempt.
    #[error("Discord kept answering 429 to {route}")]
    RateLimited {
        /// Method and path (tokens hidden).
        route: String,
    },
    /// serenity could not build the request.
    #[error("cannot build the Discord request: {0}")]
    Build(String),
}

impl RestError {
    /// Discord's JSON error code, if Discord answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Sends serenity-built requests (see the module docs).
pub struct Rest {
    client: reqwest::Client,
    /// `Bot <token>`, the `Authorization` header.
    auth: String,
    /// Replaces `https://discord.com` in every path; `None` for Discord itself.
    proxy: Option<String>,
    limits: Outbound,
}

impl Rest {
    /// A client for `token` against `api_url` (`https://discord.com` or a fake's URL).
    pub fn new(token: &str, api_url: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(TIMEOUT)
            .build()?;
        let token = token.trim();
        let auth = if token.starts_with("Bot ") {
            token.to_owned()
        } else {
            format!("Bot {token}")
        };
        let api_url = api_url.trim_end_matches('/');
        let proxy = (api_url != crate::config::DEFAULT_DISCORD_API_URL).then(|| api_url.to_owned());
        Ok(Self {
            client,
            auth,
            proxy,
            limits: Outbound::new(DISCORD_QUOTAS),
        })
    }

    /// The HTTP client (attachment downloads, [`super::files`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// The API host for serenity's own `Http` (`None`: Discord itself).
    pub fn proxy(&self) -> Option<&str> {
        self.proxy.as_deref()
    }

    /// Sends `body` as JSON to `route` with `method` (see [`Rest::call`]).
    pub async fn json(
        &self,
        pace: Pace<'_>,
        route: Route<'_>,
        method: LightMethod,
        body: &impl serde::Serialize,
    ) -> Result<Value, RestError> {
        let body = serde_json::to_vec(body).map_err(|e| RestError::Build(e.to_string()))?;
        self.call(pace, Request::new(route, method).body(Some(body)))
            .await
    }

    /// Like [`Rest::json`], but `None` when a [`Pace::Progress`] request did not go.
    pub async fn try_json(
        &self,
        pace: Pace<'_>,
        route: Route<'_>,
        method: LightMethod,
        body: &impl serde::Serialize,
    ) -> Result<Option<Value>, RestError> {
        let body = serde_json::to_vec(body).map_err(|e| RestError::Build(e.to_string()))?;
        self.try_call(pace, Request::new(route, method).body(Some(body)))
            .await
    }

    /// Sends `req`, paced as `pace` says; returns the JSON answer (`Null` for 204).
    pub async fn call(&self, pace: Pace<'_>, req: Request<'_>) -> Result<Value, RestError> {
        let route = route_label(&req);
        self.try_call(pace, req)
            .await?
            .ok_or(RestError::RateLimited { route })
    }

    /// Like [`Rest::call`], but `None` when a [`Pace::Progress`] request did not go.
    pub async fn try_call(
        &self,
        pace: Pace<'_>,
        req: Request<'_>,
    ) -> Result<Option<Value>, RestError> {
        let route = route_label(&req);
        let mut transient = 0;
        let progress = matches!(pace, Pace::Progress(_));
        for _ in 0..ATTEMPTS {
            match pace {
                Pace::Channel(c) => self.limits.message(c, false).await,
                Pace::Tidy(c) => {
                    self.limits.message_in(Lane::Tidy, c, false).await;
                }
                Pace::Progress(c) => {
                    if !self.limits.message_in(Lane::Progress, c, false).await {
                        return Ok(None);
                    }
                }
                Pace::Global => self.limits.other().await,
                Pace::Interaction => {}
            }
            let built = req
                .clone()
                .build(&self.client, &self.auth, self.proxy.as_deref())
                .map_err(|e| RestError::Build(e.to_string()))?;
            let resp = match built.send().await {
                Ok(r) => r,
                Err(e) => {
                    transient += 1;
                    if transient >= TRANSIENT_ATTEMPTS {
                        return Err(RestError::Network {
                            route,
                            detail: e.without_url().to_string(),
                        });
                    }
                    warn!(route, error = %e.without_url(), "Discord request failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(transient))).await;
                    continue;
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| RestError::Network {
                route: route.clone(),
                detail: e.without_url().to_string(),
            })?;
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(Some(json));
            }
            if status.as_u16() == 429 && progress {
                return Ok(None);
            }
            if status.as_u16() == 429 {
                let wait = retry_after(&headers, &json).min(MAX_RETRY_AFTER);
                warn!(
                    route,
                    wait_ms = wait.as_millis() as u64,
                    "Discord asked to wait (429)"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if status.is_server_error() {
                transient += 1;
                if transient < TRANSIENT_ATTEMPTS {
                    warn!(
                        route,
                        status = status.as_u16(),
                        "Discord server error; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(transient))).await;
                    continue;
                }
            }
            return Err(RestError::Api {
                route,
                status: status.as_u16(),
                code: json.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: json
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_owned(),
            });
        }
        Err(RestError::RateLimited { route })
    }
}

/// How long a 429 says to wait: the body's `retry_after`, else the headers, else 1 s.
fn retry_after(headers: &reqwest::header::HeaderMap, body: &Value) -> Duration {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let valid = |s: &f64| s.is_finite() && *s >= 0.0;
    let secs = body
        .get("retry_after")
        .and_then(Value::as_f64)
        .filter(valid)
        .or_else(|| header("retry-after").filter(valid))
        .or_else(|| header("x-ratelimit-reset-after").filter(valid))
        .unwrap_or(1.0);
    Duration::from_secs_f64(secs)
}

/// `METHOD /path` of a request for logs, without the host and with interaction and
/// webhook tokens hidden.
pub fn route_label(req: &Request<'_>) -> String {
    let path = req.route_ref().path();
    let path = path
        .strip_prefix("https://discord.com/api/v10")
        .unwrap_or(&path);
    let parts: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let secret = seg.len() > 24 && !seg.chars().all(|c| c.is_ascii_digit());
            if secret { "…" } else { seg }
        })
        .collect();
    format!("{} {}", req.method_ref().reqwest_method(), parts.join("/"))
}

#[cfg(test)]
mod tests {
    use serenity::model::id::{ApplicationId, ChannelId};

    use super::*;

    #[test]
    fn labels_hide_tokens() {
        let token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQtdG9rZW4";
        let req = Request::new(
            Route::WebhookOriginalInteractionResponse {
                application_id: ApplicationId::new(42),
                token,
            },
            LightMethod::Patch,
        );
        let label = route_label(&req);
        assert_eq!(label, "PATCH /webhooks/42/…/messages/@original");
        let req = Request::new(
            Route::ChannelMessages {
                channel_id: ChannelId::new(123_456_789_012_345_678),
            },
            LightMethod::Post,
        );
        assert_eq!(
            route_label(&req),
            "POST /channels/123456789012345678/messages"
        );
    }

    #[test]
    fn retry_after_prefers_the_body_then_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h, &Value::Null), Duration::from_secs(1));
        h.insert("retry-after", "3".parse().expect("header"));
        assert_eq!(retry_after(&h, &Value::Null), Duration::from_secs(3));
        let body = serde_json::json!({"retry_after": 0.25, "global": false});
        assert_eq!(retry_after(&h, &body), Duration::from_millis(250));
        let bad = serde_json::json!({"retry_after": -1.0});
        assert_eq!(retry_after(&h, &bad), Duration::from_secs(3));
    }
}
