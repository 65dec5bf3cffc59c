//! The end of a turn: the final answer with its summary line, in every place that shows
//! the session, as soon as the turn ends. Nothing cosmetic goes before it:
//!
//! - An answer that fits one message replaces the turn's progress message where there is
//!   one (one edit, one message per turn), else it is one new message.
//! - A longer answer is split into up to the platform's `answer_parts` messages
//!   ([`render::split`]: at line ends, code blocks closed and reopened), or beyond that its
//!   start goes with the whole text as `answer.md`; the progress message is tidied up
//!   afterwards, behind any answer waiting for the same chat ([`Lane::Tidy`]).
//!
//! The summary line counts only what happened: files changed by calls that succeeded,
//! denied and failed calls, and says when the turn was interrupted or failed.
//!
//! Each part goes out once under a key of the result's event row id
//! ([`crate::chat::outbox`]), so a bot killed between posting and recording that the event
//! was shown edits what it posted instead of posting it again.
//!
//! The session's worker ([`super::worker`]) calls [`post`] on a `TurnResult` event.

use common::ids::SessionId;
use tracing::{error, warn};

use super::progress::{Phase, Turn, forget};
use crate::chat::ctx::Ctx;
use crate::chat::outbox::{self, answer_key};
use crate::chat::render::{self, Rich};
use crate::chat::{ChatPlatform, Lane, Outgoing, Place};

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

/// What the answer looks like on this platform.
enum Shape {
    /// One message or a few.
    Parts(Vec<Rich>),
    /// The start of it, with the whole text as a file.
    File { preview: Rich, text: String },
}

/// Ends `turn` of `session` as `end` (event row `event`) says and posts its answer (see
/// the module docs).
pub async fn post<P: ChatPlatform>(
    ctx: &Ctx<P>,
    session: SessionId,
    event: i64,
    mut turn: Turn,
    end: Outcome<'_>,
) {
    turn.ledger.end();
    let interrupted = turn.interrupted && end.is_error;
    let phase = match (interrupted, end.is_error) {
        (true, _) => Phase::Interrupted,
        (false, true) => Phase::Failed,
        (false, false) => Phase::Done,
    };
    let shape = shape(ctx, &turn, &end, interrupted);
    // Every place that shows the session now, and any a progress message is in.
    let mut places = ctx.bindings.places_of(&session);
    for s in &turn.shown {
        if !places.contains(&s.place) {
            places.push(s.place.clone());
        }
    }
    for place in places {
        let progress = turn
            .shown
            .iter_mut()
            .find(|s| s.place == place)
            .and_then(|s| s.id.take());
        match (&shape, progress) {
            (Shape::Parts(parts), Some(id)) if parts.len() == 1 => {
                let msg = Outgoing::text(parts[0].clone());
                outbox::record(ctx, &place, &answer_key(event, 0), &id).await;
                match ctx.platform.edit_in(Lane::Answer, &place, &id, &msg).await {
                    Ok(_) => {}
                    Err(e) => {
                        // The progress message is gone (deleted, say): the answer is new.
                        warn!(
                            error = format!("{e:#}"),
                            "the answer could not replace the progress message"
                        );
                        ctx.send(&place, msg).await;
                    }
                }
                forget(ctx, &place, &id).await;
            }
            (shape, progress) => {
                send(ctx, &place, shape, event).await;
                if let Some(id) = progress {
                    let text = Outgoing::text(turn.progress_text(phase));
                    if let Err(e) = ctx.platform.edit_in(Lane::Tidy, &place, &id, &text).await {
                        warn!(error = format!("{e:#}"), "progress edit failed");
                    }
                    forget(ctx, &place, &id).await;
                }
            }
        }
    }
}

/// Sends the answer in `shape` (of event row `event`) to `place`, as new messages (or
/// edits of those a killed bot posted).
async fn send<P: ChatPlatform>(ctx: &Ctx<P>, place: &Place, shape: &Shape, event: i64) {
    match shape {
        Shape::Parts(parts) => {
            for (i, part) in parts.iter().enumerate() {
                let key = answer_key(event, i);
                outbox::send_once(ctx, place, &key, Outgoing::text(part.clone())).await;
            }
        }
        Shape::File { preview, text } => {
            if let Err(e) = ctx
                .platform
                .send_file(place, "answer.md", text.clone().into_bytes(), preview)
                .await
            {
                error!(error = format!("{e:#}"), "sending the answer file failed");
            }
        }
    }
}

/// The answer of a turn as this platform shows it: head (how the turn ended), the text,
/// and the summary line.
fn shape<P: ChatPlatform>(
    ctx: &Ctx<P>,
    turn: &Turn,
    end: &Outcome<'_>,
    interrupted: bool,
) -> Shape {
    let answer = end
        .text
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| turn.text())
        .to_owned();
    let summary = render::summary_line(&turn.ledger.tally(), end.cost_usd, end.duration_ms);
    let mut head = Rich::default();
    if interrupted {
        head = head.bold("⏸ Interrupted").push("\n");
    } else if end.is_error {
        head = head
            .bold(format!("❌ The turn failed ({})", end.subtype))
            .push("\n");
    }
    let platform = &ctx.platform;
    let limit = platform.text_limit();
    let measure = |r: &Rich| platform.measure(r);
    let tail = format!("\n\n{summary}");
    let body = render::markdown(&answer);
    let full = if answer.trim().is_empty() {
        head.clone().push(summary)
    } else {
        head.clone().extend(body).push(tail.clone())
    };
    if let Some(parts) = render::split(&full, limit, platform.answer_parts(), measure) {
        return Shape::Parts(parts);
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
    Shape::File {
        preview,
        text: answer,
    }
}
