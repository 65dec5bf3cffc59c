//! Photos, files and voice notes written in a bound place (issue 18). [`on_files`] checks
//! the place and the writer like text ([`super::prompts::on_text`]), then works in a task
//! of its own so nothing else in the place waits for a download:
//!
//! - a voice note gets a reply that voice is not supported yet;
//! - a file over `chat_max_file_bytes` (as announced, or found while downloading) gets a
//!   reply naming the limit;
//! - everything else is downloaded through the platform ([`ChatPlatform::fetch`]) and
//!   prepared by [`crate::attach::prepare`]: images become image blocks of the prompt,
//!   other files are saved in the session's `.ccrm/inbox/` on its daemon and named in the
//!   prompt text.
//!
//! What comes of the message (the caption, file lines and images) is one piece of the
//! place's debounce window, so it joins the text written a moment before or after it. The
//! piece owns the message's `chat_pending` row ([`super::inbox`]); a message that comes
//! to nothing (refused, rate-limited, every file refused) deletes it.

use std::sync::Arc;

use serde_json::json;

use super::ctx::Ctx;
use super::debounce::{Debounce, Piece};
use super::render::Rich;
use super::{Attachment, AttachmentKind, ChatPlatform, Incoming, TooLarge, inbox, prompts};
use crate::attach::{self, Part, human_bytes};
use crate::db::ChatBinding;

/// The reply to a voice note.
pub const VOICE_REPLY: &str =
    "🎤 Voice notes are not supported yet; please type your message (it was not sent to Claude).";

/// Handles `files` written in `inc.place` with the caption `text`, kept as the
/// `chat_pending` row `pending` (see the module docs).
pub async fn on_files<P: ChatPlatform>(
    ctx: &Arc<Ctx<P>>,
    debounce: &Debounce,
    inc: Incoming,
    (text, files): (String, Vec<Attachment>),
    pending: Option<i64>,
) {
    let Some(b) = ctx.bindings.get(&inc.place) else {
        // The same hint as text in a place with no session.
        prompts::on_text(ctx, debounce, inc, text, None).await;
        forget(ctx, pending).await;
        return;
    };
    if !prompts::within_rate(ctx, &inc, &b).await {
        forget(ctx, pending).await;
        return;
    }
    // The window of this place must outlive the download: it is pushed to from the task.
    let debounce = debounce.clone();
    let me = ctx.clone();
    ctx.spawn(async move {
        match gather(&me, &inc, &b, text, files).await {
            Some(mut piece) => {
                piece.pending = pending;
                prompts::push(&me, &debounce, inc, b, piece);
            }
            None => forget(&me, pending).await,
        }
    });
}

/// Deletes the `chat_pending` row of a files message that came to nothing.
async fn forget<P: ChatPlatform>(ctx: &Ctx<P>, pending: Option<i64>) {
    if let Some(id) = pending {
        inbox::done(&ctx.state.db, &[id]).await;
    }
}

/// Downloads and prepares `files`; the piece of the prompt they make with `text`, or
/// `None` when nothing is left to send.
async fn gather<P: ChatPlatform>(
    ctx: &Arc<Ctx<P>>,
    inc: &Incoming,
    b: &ChatBinding,
    text: String,
    files: Vec<Attachment>,
) -> Option<Piece> {
    let limit = ctx.state.cfg.chat_max_file_bytes;
    let mut lines = Vec::new();
    let mut images = Vec::new();
    let mut refused = Vec::new();
    for file in files {
        match one(ctx, b, &file, limit).await {
            Ok(Part::Image(img)) => images.push(img),
            Ok(Part::Saved(saved)) => {
                ctx.gate
                    .audit(
                        &inc.from,
                        "chat.file_saved",
                        &b.session_id.to_string(),
                        json!({"path": saved.relative, "size": saved.size, "sha256": saved.sha256}),
                    )
                    .await;
                lines.push(attach::file_line(&file.name, &saved));
            }
            Err(reason) => {
                ctx.gate
                    .audit(
                        &inc.from,
                        "chat.file_refused",
                        &b.session_id.to_string(),
                        json!({"name": file.name, "reason": reason}),
                    )
                    .await;
                refused.push(reason);
            }
        }
    }
    for reason in refused {
        ctx.reply(&inc.place, Rich::text(reason));
    }
    let mut parts = Vec::new();
    if !text.trim().is_empty() {
        parts.push(text);
    }
    parts.extend(lines);
    if parts.is_empty() && images.is_empty() {
        return None;
    }
    Some(Piece {
        from: inc.from.clone(),
        text: parts.join("\n"),
        order: inc.msg_id,
        pending: None,
        images,
    })
}

/// One attachment, or what to tell the sender about it.
async fn one<P: ChatPlatform>(
    ctx: &Ctx<P>,
    b: &ChatBinding,
    file: &Attachment,
    limit: u64,
) -> Result<Part, String> {
    let too_large = |size: Option<u64>| {
        let size = size.map_or_else(String::new, |s| format!(" is {} and", human_bytes(s)));
        format!(
            "⚠️ {}{size} is over the {} limit for files (chat_max_file_bytes); it was not sent to Claude.",
            file.name,
            human_bytes(limit)
        )
    };
    if file.kind == AttachmentKind::Voice {
        return Err(VOICE_REPLY.to_owned());
    }
    if file.size.is_some_and(|s| s > limit) {
        return Err(too_large(file.size));
    }
    let bytes = match ctx.platform.fetch(file, limit).await {
        Ok(bytes) => bytes,
        Err(e) if e.downcast_ref::<TooLarge>().is_some() => return Err(too_large(None)),
        Err(e) => {
            tracing::warn!(error = %e, name = %file.name, "downloading a chat file failed");
            return Err(format!(
                "⚠️ {} could not be downloaded ({e}); please send it again.",
                file.name
            ));
        }
    };
    if bytes.len() as u64 > limit {
        return Err(too_large(Some(bytes.len() as u64)));
    }
    attach::prepare(
        &ctx.state.hub,
        &b.daemon_id,
        &b.session_id.to_string(),
        &file.name,
        bytes,
    )
    .await
    .map_err(|e| format!("⚠️ {} could not be given to the session: {e}", file.name))
}
