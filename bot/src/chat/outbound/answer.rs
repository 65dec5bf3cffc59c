//! The end of a turn: its progress message marked done or ended, then the final answer
//! with a summary line, in every place that shows the session. The answer goes as one
//! message when it fits the platform's limit; else split into up to the platform's
//! `answer_parts` messages ([`render::split`]: at line ends, code blocks closed and
//! reopened); else as the start of it with the whole text attached as `answer.md`.
//!
//! The session's worker ([`super::worker`]) calls [`post`] on a `TurnResult` event.

use common::ids::SessionId;
use tracing::error;

use super::progress::{Phase, Turn};
use crate::chat::ctx::Ctx;
use crate::chat::render::{self, Rich};
use crate::chat::{ChatPlatform, Outgoing};

/// How a turn ended, from its `TurnResult` event.
pub struct Outcome<'a> {
    /// The final text, when the result carries one.
    pub text: Option<&'a str>,
    /// Whether the turn failed.
    pub is_error: bool,
    /// The CLI's result subtype (said when the turn failed).
    pub subtype: &'a str,
    /// Cumulative session cost in USD.
    pub cost_usd: Option<f64>,
    /// Wall time of the turn.
    pub duration_ms: Option<u64>,
}

/// Ends `turn` of `session` as `end` says and posts its answer (see the module docs).
pub async fn post<P: ChatPlatform>(ctx: &Ctx<P>, session: SessionId, turn: Turn, end: Outcome<'_>) {
    let phase = if end.is_error {
        Phase::Failed
    } else {
        Phase::Done
    };
    turn.edit(ctx, phase).await;
    let answer = end
        .text
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| turn.text())
        .to_owned();
    let summary = turn.summary(end.cost_usd, end.duration_ms);
    let mut head = Rich::default();
    if end.is_error {
        head = head
            .bold(format!("❌ The turn failed ({})", end.subtype))
            .push("\n");
    }
    let platform = &ctx.platform;
    let limit = platform.text_limit();
    let measure = |r: &Rich| platform.measure(r);
    let tail = format!("\n\n{summary}");
    let body = render::markdown(&answer);
    let full = head.clone().extend(body).push(tail.clone());
    // One message; else up to `answer_parts` messages (code blocks closed and reopened at
    // the cuts); else the start of it with the whole text as a file.
    if let Some(parts) = render::split(&full, limit, platform.answer_parts(), measure) {
        for place in ctx.bindings.places_of(&session) {
            for part in &parts {
                ctx.send(&place, Outgoing::text(part.clone())).await;
            }
        }
        return;
    }
    let note = format!(
        "\n\n(full answer, {} characters, attached as a file){tail}",
        answer.chars().count()
    );
    let mut room = limit.saturating_sub(head.len() + note.chars().count() + 20);
    // Shrink until it fits: markup, and characters outside the BMP on Telegram, count more
    // than one.
    let preview = loop {
        let cut = render::truncate(&answer, room);
        let msg = head
            .clone()
            .extend(render::markdown(&cut))
            .push(note.clone());
        if measure(&msg) <= limit || room == 0 {
            break msg;
        }
        room = room * 9 / 10;
    };
    for place in ctx.bindings.places_of(&session) {
        if let Err(e) = platform
            .send_file(&place, "answer.md", answer.clone().into_bytes(), &preview)
            .await
        {
            error!(error = format!("{e:#}"), "sending the answer file failed");
        }
    }
}
