//! One bound session's worker: a task fed that session's committed events in order by the
//! feed ([`super::Feed`]). It keeps the running [`Turn`] and its progress message (edited
//! when due, see [`Turn::due`]), posts the final answer ([`super::answer`]), shows
//! approvals and questions ([`crate::chat::approvals`]), and tells the bound places what
//! other surfaces did (prompts, attach/detach) and what went wrong (errors, a failed or
//! stopped session).
//!
//! It records in `chat_handled` how far it has shown the session: at once after a turn's
//! end, so a final answer is never posted twice after a restart, else at most once a
//! second. Events at or below the mark it was started with were shown before a restart and
//! are skipped.

use std::sync::Arc;
use std::time::Duration;

use common::event::{EventKind, SessionState, Surface};
use common::ids::SessionId;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::answer::{self, Outcome};
use super::progress::{Phase, Turn};
use crate::chat::approvals;
use crate::chat::ctx::Ctx;
use crate::chat::render::{self, Rich};
use crate::chat::{ChatPlatform, Outgoing};
use crate::db::StoredEvent;

/// Most prompts shown from other surfaces, in characters.
const ECHO_CHARS: usize = 500;

/// How often, at most, the "shown up to" mark is written while no turn ends.
const MARK_EVERY: Duration = Duration::from_secs(1);

/// The worker of one session (see the module docs).
pub struct Worker<P: ChatPlatform> {
    ctx: Arc<Ctx<P>>,
    session: SessionId,
    /// Events up to this row id were shown before the core started.
    skip_through: i64,
    turn: Option<Turn>,
}

impl<P: ChatPlatform> Worker<P> {
    /// A worker for `session` that skips the events up to row id `skip_through`.
    pub fn new(ctx: Arc<Ctx<P>>, session: SessionId, skip_through: i64) -> Self {
        Self {
            ctx,
            session,
            skip_through,
            turn: None,
        }
    }

    /// Shows the events from `rx` until it closes.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Arc<StoredEvent>>) {
        // The first handled event is recorded at once, later ones at most once a second.
        let mut saved = Instant::now()
            .checked_sub(MARK_EVERY)
            .unwrap_or_else(Instant::now);
        loop {
            let due = self.turn.as_ref().and_then(Turn::due);
            let ev = tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
                () = sleep_until(due) => {
                    if let Some(t) = self.turn.as_mut() {
                        t.flush(&self.ctx).await;
                    }
                    continue;
                }
            };
            if ev.id <= self.skip_through {
                continue;
            }
            self.on_event(&ev.event.kind).await;
            let ended = matches!(ev.event.kind, EventKind::TurnResult { .. });
            if ended || saved.elapsed() >= MARK_EVERY {
                self.mark_shown(ev.id).await;
                saved = Instant::now();
            }
        }
    }

    /// Records that the session was shown up to event row `id`.
    async fn mark_shown(&self, id: i64) {
        let ctx = &self.ctx;
        if let Err(e) = ctx
            .state
            .db
            .set_chat_handled(ctx.platform.name(), &self.session, id)
            .await
        {
            warn!(error = %e, "cannot record how far the chat has shown a session");
        }
    }

    async fn on_event(&mut self, kind: &EventKind) {
        match kind {
            EventKind::TurnStarted { .. } => {
                if self.turn.is_none() {
                    self.start_turn().await;
                }
            }
            EventKind::AssistantText { .. } | EventKind::ToolUse { .. } => {
                if self.turn.is_none() {
                    self.start_turn().await;
                }
                if let Some(t) = self.turn.as_mut() {
                    t.record(kind);
                }
            }
            EventKind::AssistantDelta { .. }
            | EventKind::ToolResult { .. }
            | EventKind::ApiRetry { .. } => {
                if let Some(t) = self.turn.as_mut() {
                    t.record(kind);
                }
            }
            EventKind::TurnResult {
                text,
                is_error,
                subtype,
                cost_usd,
                duration_ms,
                ..
            } => {
                let turn = self.turn.take().unwrap_or_else(Turn::new);
                let end = Outcome {
                    text: text.as_deref(),
                    is_error: *is_error,
                    subtype,
                    cost_usd: *cost_usd,
                    duration_ms: *duration_ms,
                };
                answer::post(&self.ctx, self.session, turn, end).await;
            }
            EventKind::PermissionRequest { .. }
            | EventKind::Question { .. }
            | EventKind::PermissionDecision { .. }
            | EventKind::Answer { .. } => approvals::show(&self.ctx, self.session, kind).await,
            EventKind::State { state, reason } => {
                let what = match state {
                    SessionState::Failed => "💥 Session failed",
                    SessionState::Stopped => "⏹ Session stopped",
                    _ => return,
                };
                let mut text = what.to_owned();
                if let Some(r) = reason {
                    text.push_str(&format!(": {r}"));
                }
                if let Some(t) = self.turn.take() {
                    t.edit(&self.ctx, Phase::Failed).await;
                }
                self.ctx
                    .to_all(self.session, Outgoing::text(Rich::text(text)))
                    .await;
            }
            other => {
                if let Some(text) = notice(other, self.ctx.platform.surface()) {
                    self.ctx.to_all(self.session, Outgoing::text(text)).await;
                }
            }
        }
    }

    async fn start_turn(&mut self) {
        self.turn = Some(Turn::start(&self.ctx, self.session).await);
    }
}

/// What the bound places are told about an event outside turns and approvals: a prompt
/// from another surface than `own` (this platform's prompts are already in the chat), an
/// error, an interrupt, attach and detach.
fn notice(kind: &EventKind, own: Surface) -> Option<Rich> {
    Some(match kind {
        EventKind::Prompt { text, origin, .. } if origin.surface != own => Rich::text("📝 ")
            .bold(origin.to_string())
            .push(": ")
            .push(render::truncate(text, ECHO_CHARS)),
        EventKind::Error { message } => {
            Rich::text("⚠️ Error: ").push(render::truncate(message, 1500))
        }
        EventKind::Interrupted { by } => Rich::text(format!("⏸ Interrupted by {by}")),
        EventKind::Attached { target } => Rich::text("🖥 Attached to a terminal (")
            .code(target.clone())
            .push("); prompts from here wait until it detaches."),
        EventKind::Detached { reason } => {
            Rich::text(format!("🖥 Detached from the terminal: {reason}"))
        }
        _ => return None,
    })
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
