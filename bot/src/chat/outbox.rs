//! Answers posted once. An answer part is sent under a key derived from the event row id
//! of the turn's result (`a<event id>.<part>`), and the `chat_outbox` table records the
//! intent before the send and the message id after it:
//!
//! - a key already posted (the bot died after posting, before recording that the event
//!   was shown) is edited to the same content instead of being posted again;
//! - a key whose send was started but never recorded is sent again with the platform's
//!   idempotency key where it has one (Discord: `nonce` with `enforce_nonce`, so Discord
//!   returns the message it already created); Telegram has none, so there that one step is
//!   at-least-once.
//!
//! The progress message an answer replaces is recorded under the key before it is
//! edited, so a replay edits it again rather than posting anew.

use common::event::now_ms;
use tracing::{error, warn};

use super::ctx::Ctx;
use super::{ChatPlatform, Lane, Outgoing, Place};
use crate::db::Outboxed;
use crate::failpoint;

/// How long outbox rows are kept (a restart replays far less than this).
const KEEP_MS: u64 = 7 * 24 * 3600 * 1000;

/// The key of part `part` of the answer shown for event row `event`.
pub fn answer_key(event: i64, part: usize) -> String {
    format!("a{event}.{part}")
}

/// Sends `msg` to `place` once under `key` (see the module docs); returns its id, or
/// `None` (logged) when it failed.
pub async fn send_once<P: ChatPlatform>(
    ctx: &Ctx<P>,
    place: &Place,
    key: &str,
    msg: Outgoing,
) -> Option<String> {
    let db = &ctx.state.db;
    let platform = ctx.platform.name();
    let thread = place.thread.as_deref();
    let known = db
        .chat_outbox(platform, &place.chat, thread, key)
        .await
        .unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the chat outbox");
            Outboxed::New
        });
    match known {
        Outboxed::Sent(id) => {
            if let Err(e) = ctx.platform.edit(place, &id, &msg).await {
                warn!(
                    error = format!("{e:#}"),
                    "editing an answer posted before failed"
                );
            }
            return Some(id);
        }
        Outboxed::Unconfirmed => {}
        Outboxed::New => {
            if let Err(e) = db
                .set_chat_outbox(platform, &place.chat, thread, key, None, now_ms())
                .await
            {
                warn!(error = %e, "cannot record an answer about to be sent");
            }
        }
    }
    let id = match ctx
        .platform
        .send_keyed(Lane::Answer, place, &msg, key)
        .await
    {
        Ok(Some(id)) => id,
        Ok(None) => return None,
        Err(e) => {
            error!(error = %e, chat = %place.chat, "chat send failed");
            return None;
        }
    };
    failpoint::hit("chat.answer.sent");
    record(ctx, place, key, &id).await;
    failpoint::hit("chat.answer.recorded");
    Some(id)
}

/// Records that `key` in `place` is message `id` (an answer replacing a progress message
/// is recorded before the edit).
pub async fn record<P: ChatPlatform>(ctx: &Ctx<P>, place: &Place, key: &str, id: &str) {
    if let Err(e) = ctx
        .state
        .db
        .set_chat_outbox(
            ctx.platform.name(),
            &place.chat,
            place.thread.as_deref(),
            key,
            Some(id),
            now_ms(),
        )
        .await
    {
        warn!(error = %e, "cannot record a posted answer");
    }
}

/// Forgets outbox rows older than a week.
pub async fn trim<P: ChatPlatform>(ctx: &Ctx<P>) {
    let before = now_ms().saturating_sub(KEEP_MS);
    if let Err(e) = ctx
        .state
        .db
        .chat_outbox_trim(ctx.platform.name(), before)
        .await
    {
        warn!(error = %e, "cannot trim the chat outbox");
    }
}
