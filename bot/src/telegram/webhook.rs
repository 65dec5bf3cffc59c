//! Telegram webhook mode (issue 17), the receiving side: with `telegram_webhook_url` set,
//! every replica serves `POST <path of that URL>` ([`receive`]; documented as
//! `/telegram/webhook`), leader or not. The chat leader's adapter registers the webhook
//! and handles what was received (`super::webhook_feed`).
//!
//! A delivery is checked before anything else: the `X-Telegram-Bot-Api-Secret-Token`
//! header must equal the secret (compared in constant time; 401 otherwise, and the value is
//! never logged), the body is capped at [`MAX_BODY`] (413) and must be an update (400
//! otherwise); the bot keeps serving everyone else either way. The update is then kept in
//! the database (`chat_inbox`, once per `update_id`, see `crate::db`) and the answer is
//! 200 only once that row is committed, so an update the bot could not keep is delivered
//! again and one delivered twice is kept once. This process's feed is woken at once
//! ([`Hook::wake`]); on PostgreSQL the row is also announced with `NOTIFY`, for a leader on
//! another replica.
//!
//! The secret is `CCRM_BOT_TELEGRAM_WEBHOOK_SECRET` when set (what several replicas must
//! share), else one generated on first use and kept in `data_dir` (0600). Switching back to
//! polling deletes the webhook ([`leave`]), since Telegram refuses `getUpdates` while one is
//! set.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::event::now_ms;
use serde::Serialize;
use subtle::ConstantTimeEq;
use teloxide::Bot;
use teloxide::prelude::Requester;
use teloxide::types::Update;
use tokio::sync::Notify;
use tracing::{info, warn};
use utoipa::ToSchema;

use super::PLATFORM;
use crate::AppState;
use crate::http::AppError;
use crate::http::schema::ErrorResponse;

/// The header Telegram sends the secret in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The file in `data_dir` that keeps a generated secret.
const SECRET_FILE: &str = "telegram-webhook-secret";

/// Largest update body accepted (Telegram's updates are a few KB).
pub const MAX_BODY: usize = 1024 * 1024;

/// Paths the webhook may not take (the bot's own routes).
const RESERVED: [&str; 4] = ["/api", "/ws", "/healthz", "/metrics"];

/// Checks `telegram_webhook_url`: an http(s) URL with a path of its own.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL ({e}): `{url}`"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(format!("must be an https URL, got `{url}`"));
    }
    let path = parsed.path();
    if path == "/" || path.is_empty() {
        return Err(format!(
            "needs a path for the bot to serve, like https://bot.example.com/telegram/webhook, got `{url}`"
        ));
    }
    if RESERVED
        .iter()
        .any(|r| path == *r || path.starts_with(&format!("{r}/")))
        || path.contains("{")
    {
        return Err(format!("path `{path}` is one of the bot's own routes"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("must have no query or fragment, got `{url}`"));
    }
    Ok(())
}

/// The path the bot serves for webhook URL `url`, when it is a valid one.
pub fn path_of(url: &str) -> Option<String> {
    check_url(url).ok()?;
    url::Url::parse(url).ok().map(|u| u.path().to_owned())
}

/// True for a `secret_token` Telegram accepts: 1 to 256 of `A-Z a-z 0-9 _ -`.
pub fn valid_secret(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The secret: the configured one, else the one kept in `data_dir` (made on first use).
fn secret(state: &AppState) -> anyhow::Result<String> {
    if let Some(s) = &state.cfg.telegram_webhook_secret {
        return Ok(s.clone());
    }
    let path = state.cfg.data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if valid_secret(s.trim()) => return Ok(s.trim().to_owned()),
        Ok(_) => {
            warn!(path = %path.display(), "the kept webhook secret is malformed; making a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let s = hex::encode(bytes);
    // Written aside and renamed into place, 0600 from the start (the data dir is 0700).
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(s.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write()
        .map_err(|e| anyhow::anyhow!("keeping the webhook secret in {}: {e}", path.display()))?;
    info!(path = %path.display(), "generated the telegram webhook secret");
    Ok(s)
}

/// The webhook's per-process state (a field of [`AppState`]): the secret, read once, and
/// the in-process wake-up of the leader's feed (`super::webhook_feed`) when this process
/// kept a delivery.
#[derive(Default)]
pub struct Hook {
    secret: Mutex<Option<String>>,
    /// Notified after each delivery kept here (the feed also re-scans, and on PostgreSQL
    /// listens for other replicas' deliveries).
    pub wake: Notify,
}

impl Hook {
    /// The webhook secret ([`secret`]), read or made on first use and then kept.
    pub fn secret(&self, state: &AppState) -> anyhow::Result<String> {
        let mut kept = self.secret.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = kept.as_ref() {
            return Ok(s.clone());
        }
        let s = secret(state)?;
        *kept = Some(s.clone());
        Ok(s)
    }
}

/// The webhook route, when `telegram_webhook_url` and a Telegram token are set.
pub fn routes(state: &AppState) -> axum::Router<Arc<AppState>> {
    let path = state
        .cfg
        .telegram_webhook_url
        .as_deref()
        .filter(|_| state.cfg.telegram_token.is_some())
        .and_then(path_of);
    match path {
        Some(p) => {
            axum::Router::new().route(&p, post(receive).layer(DefaultBodyLimit::max(MAX_BODY)))
        }
        None => axum::Router::new(),
    }
}

/// `{"ok": true}`: the update was taken (handled now or before).
#[derive(Serialize, ToSchema)]
pub struct WebhookAccepted {
    /// Always true.
    pub ok: bool,
}

/// `POST /telegram/webhook` (the path of `telegram_webhook_url`).
#[utoipa::path(post, path = "/telegram/webhook", summary = "Telegram webhook (updates from Telegram)", operation_id = "telegram_webhook", tag = "meta", security(()),
    description = "Served only in Telegram webhook mode, at the path of `telegram_webhook_url` (documented here as `/telegram/webhook`), by every replica. Telegram posts each update with the `X-Telegram-Bot-Api-Secret-Token` header; the answer is 200 once the update is stored, and the chat leader handles it; an update delivered again is handled once.",
    params(("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "the webhook's secret token")),
    request_body(content = Object, content_type = "application/json", description = "a Telegram `Update`"),
    responses(
        (status = 200, description = "taken (handled now, or already before)", body = WebhookAccepted),
        (status = 400, description = "not a Telegram update (`bad_request`)", body = ErrorResponse),
        (status = 401, description = "missing or wrong secret token (`unauthorized`)", body = ErrorResponse),
        (status = 413, description = "the body is over 1 MiB", body = ErrorResponse),
        (status = 503, description = "the update could not be stored (`unavailable`); Telegram delivers it again", body = ErrorResponse),
    ))]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAccepted>, AppError> {
    let secret = state.telegram_hook.secret(&state).map_err(|e| {
        warn!(
            error = format!("{e:#}"),
            "the telegram webhook secret is unavailable"
        );
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the webhook secret cannot be read on this replica; deliver again shortly",
        )
    })?;
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(given.ct_eq(secret.as_bytes())) {
        state.hub.metrics.reject();
        warn!("a telegram webhook delivery without the right secret token was refused");
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        ));
    }
    let bad = |e: String| {
        state.hub.metrics.reject();
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("not a Telegram update: {e}"),
        )
    };
    let upd: Update = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    let text = std::str::from_utf8(&body).map_err(|e| bad(e.to_string()))?;
    // Durable before the 200: a delivery this replica could not keep is delivered again.
    let added = state
        .db
        .chat_inbox_put(PLATFORM, i64::from(upd.id.0), text, now_ms())
        .await
        .map_err(|e| {
            warn!(error = %e, "cannot keep a telegram webhook delivery");
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the update could not be stored; deliver again shortly",
            )
        })?;
    if added {
        state.telegram_hook.wake.notify_one();
    }
    Ok(Json(WebhookAccepted { ok: true }))
}

/// Before long polling: deletes a webhook left from webhook mode (Telegram refuses
/// `getUpdates` while one is set).
pub async fn leave(bot: &Bot) {
    match bot.get_webhook_info().await {
        Ok(info) if info.url.is_some() => match bot.delete_webhook().await {
            Ok(_) => info!("telegram webhook deleted; long polling"),
            Err(e) => warn!(error = %e, "telegram deleteWebhook failed"),
        },
        Ok(_) => {}
        Err(e) => warn!(error = %e, "telegram getWebhookInfo failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_path_of_their_own() {
        assert!(check_url("https://bot.example.com/telegram/webhook").is_ok());
        assert_eq!(
            path_of("https://bot.example.com/tg/hook").as_deref(),
            Some("/tg/hook")
        );
        for bad in [
            "https://bot.example.com/",
            "https://bot.example.com",
            "ftp://bot.example.com/hook",
            "https://bot.example.com/api/hook",
            "https://bot.example.com/hook?x=1",
            "not a url",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_take_telegrams_alphabet() {
        assert!(valid_secret("abc_DEF-123"));
        assert!(!valid_secret(""));
        assert!(!valid_secret("has space"));
        assert!(!valid_secret(&"a".repeat(257)));
    }
}
