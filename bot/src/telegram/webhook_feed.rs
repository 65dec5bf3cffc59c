//! Telegram webhook mode (issue 17), the handling side, run by the chat leader's adapter
//! only: [`serve`] registers the webhook (`setWebhook` with the URL, the `secret_token` and
//! the update kinds the bot handles, retried until it takes) and handles the deliveries
//! any replica kept in `chat_inbox` (see [`super::webhook`]), in update order, one at a
//! time (the poller's per-topic order; a button press only hands work to a core task), each
//! marked done after its handler returned.
//!
//! The feed wakes when this process kept a delivery ([`super::webhook::Hook::wake`]), on a
//! PostgreSQL `NOTIFY` on [`crate::db::INBOX_CHANNEL`] from another replica, and every
//! [`RESCAN`] in any case (a notification missed while the listener reconnected). The
//! handlers claim each update by `update_id` (`chat_updates`, a text piece with its
//! `chat_pending` row), so a delivery whose handling was cut short by the leader's death
//! is picked up by the next leader and still handled once.

use std::sync::Arc;
use std::time::Duration;

use common::event::now_ms;
use sqlx::postgres::PgListener;
use teloxide::Bot;
use teloxide::payloads::setters::*;
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use tokio::sync::watch;
use tracing::{info, warn};

use super::PLATFORM;
use super::inbound::{Ctx, on_callback, on_message};
use crate::AppState;

/// Longest wait between `setWebhook` attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How often the inbox is read without a wake-up.
const RESCAN: Duration = Duration::from_secs(2);

/// Deliveries read per query.
const PAGE: u32 = 100;

/// Runs webhook mode until `stop` turns true: registers `url` with Telegram and handles
/// what every replica receives. The webhook stays registered after a stop, so Telegram
/// keeps delivering to the replicas meanwhile.
pub async fn serve(
    state: Arc<AppState>,
    bot: Bot,
    ctx: Arc<Ctx>,
    url: &str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let parsed: url::Url = url
        .parse()
        .map_err(|e| anyhow::anyhow!("telegram_webhook_url: {e}"))?;
    let secret = state.telegram_hook.secret(&state)?;
    info!(path = parsed.path(), "telegram adapter running (webhook)");
    tokio::join!(
        register(&bot, parsed, secret, stop.clone()),
        feed(&state, &ctx, stop)
    );
    Ok(())
}

/// `setWebhook`, retried with a growing wait until it takes or `stop` turns true.
async fn register(bot: &Bot, url: url::Url, secret: String, mut stop: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(1);
    loop {
        let req = bot
            .set_webhook(url.clone())
            .secret_token(secret.clone())
            .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        let done = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            done = req => done,
        };
        match done {
            Ok(_) => {
                info!("telegram webhook registered");
                return;
            }
            Err(e) => {
                warn!(error = %e, wait_s = wait.as_secs(), "telegram setWebhook failed");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Handles kept deliveries until `stop` turns true (see the module docs).
async fn feed(state: &AppState, ctx: &Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let mut listener = match state.db.pg_pool() {
        Some(pool) => match listen(pool).await {
            Ok(l) => Some(l),
            Err(e) => {
                warn!(error = %e, "cannot listen for webhook deliveries; re-scanning only");
                None
            }
        },
        None => None,
    };
    loop {
        if !drain(state, ctx, &stop).await {
            return;
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => {
                    if let Err(e) = l.try_recv().await {
                        warn!(error = %e, "webhook delivery notifications failed");
                        tokio::time::sleep(RESCAN).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = state.telegram_hook.wake.notified() => {}
            () = notified => {}
            () = tokio::time::sleep(RESCAN) => {}
        }
    }
}

async fn listen(pool: &sqlx::PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(crate::db::INBOX_CHANNEL).await?;
    Ok(l)
}

/// Handles every waiting delivery; false when `stop` turned true meanwhile.
pub async fn drain(state: &AppState, ctx: &Arc<Ctx>, stop: &watch::Receiver<bool>) -> bool {
    loop {
        let rows = match state.db.chat_inbox_waiting(PLATFORM, PAGE).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "cannot read the webhook deliveries; retrying");
                return !*stop.borrow();
            }
        };
        if rows.is_empty() {
            return !*stop.borrow();
        }
        for (id, body) in rows {
            if *stop.borrow() {
                return false;
            }
            handle(ctx, id, &body).await;
            if let Err(e) = state.db.chat_inbox_done(PLATFORM, id, now_ms()).await {
                // Handled again later, where the update's claim makes it a no-op.
                warn!(update = id, error = %e, "cannot mark a webhook delivery done");
                return !*stop.borrow();
            }
        }
    }
}

/// One delivery through the poller's own handlers (which claim it).
async fn handle(ctx: &Arc<Ctx>, id: i64, body: &str) {
    let upd: Update = match serde_json::from_str(body) {
        Ok(u) => u,
        Err(e) => {
            // Checked when it was received; only a bot of another version could differ.
            warn!(update = id, error = %e, "a kept webhook delivery is not an update; dropped");
            return;
        }
    };
    let ctx = ctx.clone();
    // The handlers log their own failures.
    let _ = match upd.kind.clone() {
        UpdateKind::Message(m) => on_message(upd, m, ctx).await,
        UpdateKind::CallbackQuery(q) => on_callback(upd, q, ctx).await,
        // Kinds not asked for in `allowed_updates` (or not known to this bot): taken.
        _ => Ok(()),
    };
}
