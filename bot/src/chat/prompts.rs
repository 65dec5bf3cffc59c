//! Prompts from chat. Text written in a bound place passes the per-user limit and goes
//! into that place's [`Debounce`] window; each closed window is sent to the session as one
//! prompt by [`send`], which `/prompt` ([`super::commands`]) also uses to send at once.
//! What the daemon says back (queued behind others, a note) is told to the place. A prompt
//! to a stopped or failed session is held and the place is offered a Resume button
//! ([`not_sent`]); resuming sends it.
//!
//! Each piece may carry its `chat_pending` row ([`super::inbox`]); the rows of a window are
//! deleted once its prompt was delivered or the writer was told why not, and a window
//! waits (bounded) for its daemon to be connected, so pieces replayed right after a bot
//! restart do not fail while the daemons are still dialling back.

use std::sync::Arc;
use std::time::Duration;

use common::attach::ImageBlock;
use common::ipc::{Command, PromptAccepted, PromptArgs};
use serde_json::json;

use super::commands::usage;
use super::ctx::{Ctx, Held, hub_msg};
use super::debounce::{Debounce, Piece, Window};
use super::inbox;
use super::places::resume_button;
use super::render::Rich;
use super::{ChatPlatform, CommandKind, Incoming, Outgoing, Sender};
use crate::db::ChatBinding;

/// How long after the core started a closed window waits for its daemon to be connected
/// before sending anyway (later an offline daemon is said at once).
const DAEMON_WAIT: Duration = Duration::from_secs(30);

/// What a writer over their prompt limit is told.
pub const TOO_FAST: &str =
    "You are sending prompts faster than allowed; please wait a moment and try again.";

/// True when the writer of `inc` may send another prompt to the session of `b`; else
/// tells them so in the place.
pub async fn within_rate<P: ChatPlatform>(
    ctx: &Arc<Ctx<P>>,
    inc: &Incoming,
    b: &ChatBinding,
) -> bool {
    if ctx.gate.within_rate(&inc.from, &b.session_id).await {
        return true;
    }
    ctx.reply(&inc.place, Rich::text(TOO_FAST));
    false
}

/// Handles text written in `inc.place`: a hint when no session is bound there, a word
/// when the writer is over their limit, else a piece of the place's next prompt. True
/// when it became a piece (whose `pending` row the window then owns).
pub async fn on_text<P: ChatPlatform>(
    ctx: &Arc<Ctx<P>>,
    debounce: &Debounce,
    inc: Incoming,
    text: String,
    pending: Option<i64>,
) -> bool {
    let Some(b) = ctx.bindings.get(&inc.place) else {
        ctx.gate
            .audit(&inc.from, "chat.unbound_text", &inc.place.chat, json!({}))
            .await;
        ctx.reply(
            &inc.place,
            Rich::text(format!(
                "No session here yet. Start one with {}, or show one with {}. {} lists the commands.",
                usage(ctx, CommandKind::New),
                usage(ctx, CommandKind::Bind),
                usage(ctx, CommandKind::Help),
            )),
        );
        return false;
    };
    if !within_rate(ctx, &inc, &b).await {
        return false;
    }
    let piece = Piece {
        from: inc.from.clone(),
        text,
        order: inc.msg_id,
        pending,
        images: Vec::new(),
    };
    push(ctx, debounce, inc, b, piece);
    true
}

/// Adds `piece` to the debounce window of `inc`'s place, delivering the window when this
/// piece opened it.
pub fn push<P: ChatPlatform>(
    ctx: &Arc<Ctx<P>>,
    debounce: &Debounce,
    inc: Incoming,
    b: ChatBinding,
    piece: Piece,
) {
    if let Some(window) = debounce.push(&inc.place, piece) {
        let me = ctx.clone();
        ctx.spawn(async move { deliver(&me, inc, b, window).await });
    }
}

/// Waits for `window` to close and sends what it collected as one prompt, telling the
/// place of `inc` what came of it when there is something to say.
async fn deliver<P: ChatPlatform>(ctx: &Ctx<P>, inc: Incoming, b: ChatBinding, window: Window) {
    let Some(joined) = window.collect().await else {
        return;
    };
    wait_online(ctx, &b).await;
    let place = inc.place.clone();
    let images = joined.images;
    let sent = send_with(
        ctx,
        &b,
        &joined.from,
        joined.text.clone(),
        images.clone(),
        joined.pieces,
    )
    .await;
    inbox::done(&ctx.state.db, &joined.pending).await;
    let msg = match sent {
        Ok(notes) if notes.is_empty() => return,
        Ok(notes) => Outgoing::text(Rich::text(notes)),
        Err(e) => {
            let inc = Incoming {
                from: joined.from,
                ..inc
            };
            not_sent_with(ctx, &b, &inc, joined.text, images, e).await
        }
    };
    ctx.send(&place, msg).await;
}

/// Waits until the daemon of `b` is connected, for at most [`DAEMON_WAIT`] after the core
/// started (a restarted bot's daemons dial back within it).
async fn wait_online<P: ChatPlatform>(ctx: &Ctx<P>, b: &ChatBinding) {
    let left = DAEMON_WAIT.saturating_sub(ctx.started.elapsed());
    let deadline = tokio::time::Instant::now() + left;
    while !crate::replica::online_somewhere(&ctx.state, &b.daemon_id).await
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What to tell the writer of a prompt `text` that `send` refused with `error`: a stopped
/// or failed session holds it and offers to resume; anything else says why.
pub async fn not_sent<P: ChatPlatform>(
    ctx: &Ctx<P>,
    b: &ChatBinding,
    inc: &Incoming,
    text: String,
    error: String,
) -> Outgoing {
    not_sent_with(ctx, b, inc, text, Vec::new(), error).await
}

/// [`not_sent`] of a prompt with images (held with it).
pub async fn not_sent_with<P: ChatPlatform>(
    ctx: &Ctx<P>,
    b: &ChatBinding,
    inc: &Incoming,
    text: String,
    images: Vec<ImageBlock>,
    error: String,
) -> Outgoing {
    let state = ctx
        .state
        .db
        .get_session(&b.session_id)
        .await
        .ok()
        .map(|r| r.info.state);
    match state {
        Some(s) if !s.is_live() => {
            ctx.hold(
                b.session_id,
                Held {
                    from: inc.from.clone(),
                    text,
                    place: inc.place.clone(),
                    images,
                },
            );
            Outgoing {
                text: Rich::text(format!(
                    "⏹ This session is {s}. Resume it and your prompt goes right after ({} does the same).",
                    usage(ctx, CommandKind::Resume)
                )),
                buttons: vec![vec![resume_button(b.session_id)]],
                choice: false,
            }
        }
        _ => Outgoing::text(Rich::text(format!("⚠️ Prompt not delivered: {error}"))),
    }
}

/// Sends `text` to the bound session as one prompt from `from` and audits it. Returns what
/// the sender should be told (queued behind others, a note from the daemon), or why it
/// failed.
pub async fn send<P: ChatPlatform>(
    ctx: &Ctx<P>,
    b: &ChatBinding,
    from: &Sender,
    text: String,
    pieces: usize,
) -> Result<String, String> {
    send_with(ctx, b, from, text, Vec::new(), pieces).await
}

/// [`send`] with images.
pub async fn send_with<P: ChatPlatform>(
    ctx: &Ctx<P>,
    b: &ChatBinding,
    from: &Sender,
    text: String,
    images: Vec<ImageBlock>,
    pieces: usize,
) -> Result<String, String> {
    let image_count = images.len();
    let cmd = Command::PromptSend(PromptArgs {
        session: b.session_id.to_string(),
        text,
        follow: false,
        origin: Some(ctx.origin(from)),
        images,
    });
    let target = b.session_id.to_string();
    match ctx.command(&b.daemon_id, cmd).await {
        Ok(v) => {
            ctx.gate
                .audit(
                    from,
                    "prompt.send",
                    &target,
                    json!({"pieces": pieces, "images": image_count}),
                )
                .await;
            let mut notes = Vec::new();
            if let Ok(a) = serde_json::from_value::<PromptAccepted>(v) {
                if a.queued_behind > 0 {
                    notes.push(format!("Queued behind {} prompt(s).", a.queued_behind));
                }
                if let Some(n) = a.note {
                    notes.push(n);
                }
            }
            Ok(notes.join(" "))
        }
        Err(e) => {
            let msg = hub_msg(e);
            ctx.gate
                .audit(from, "prompt.failed", &target, json!({"error": msg}))
                .await;
            Err(msg)
        }
    }
}
