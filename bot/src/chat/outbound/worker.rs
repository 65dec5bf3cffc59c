//! One bound session's worker: a task fed that session's committed events in order by the
//! feed ([`super::Feed`]). It keeps the running [`Turn`] ("typing…", its progress message
//! when due, see [`Turn::due`]), posts the final answer ([`super::answer`]), shows
//! approvals and questions ([`crate::chat::approvals`]), and tells the bound places what
//! other surfaces did (prompts, attach/detach) and what went wrong (errors, a failed or
//! stopped session), except what a command given in that place already said (a `/stop`
//! answered "stopped" is not told "stopped" again, see [`crate::chat::ctx::Hush`]).
//!
//! On start it reads the progress messages a previous bot process left unfinished for the
//! session (`chat_progress`) and finishes them with the turn they belong to.
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
use crate::chat::ctx::{Ctx, Hush};
use crate::chat::render::{self, Rich};
use crate::chat::{ChatPlatform, Outgoing};
use crate::db::{ChatProgressRow, StoredEvent};

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
    /// Progress messages left by a previous bot process, for the turn they belong to.
    left: Vec<ChatProgressRow>,
}

impl<P: ChatPlatform> Worker<P> {
    /// A worker for `session` that skips the events up to row id `skip_through`.
    pub fn new(ctx: Arc<Ctx<P>>, session: SessionId, skip_through: i64) -> Self {
        Self {
            ctx,
            session,
            skip_through,
            turn: None,
            left: Vec::new(),
        }
    }

    /// Shows the events from `rx` until it closes.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Arc<StoredEvent>>) {
        match self
            .ctx
            .state
            .db
            .chat_progress(self.ctx.platform.name(), &self.session)
            .await
        {
            Ok(rows) => self.left = rows,
            Err(e) => warn!(error = %e, "cannot read unfinished progress messages"),
        }
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
                        t.tick(&self.ctx).await;
                    }
                    continue;
                }
            };
            if ev.id <= self.skip_through {
                continue;
            }
            self.on_event(ev.id, &ev.event.kind).await;
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

    async fn on_event(&mut self, id: i64, kind: &EventKind) {
        match kind {
            EventKind::TurnStarted { .. } => {
                if self.turn.is_none() {
                    self.start_turn();
                }
            }
            EventKind::AssistantText { .. }
            | EventKind::ToolUse { .. }
            | EventKind::AssistantDelta { .. }
            | EventKind::ToolResult { .. }
            | EventKind::ApiRetry { .. } => {
                // A turn that started before a restart goes on here.
                if self.turn.is_none() && !matches!(kind, EventKind::AssistantDelta { .. }) {
                    self.start_turn();
                }
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
                let turn = match self.turn.take() {
                    Some(t) => t,
                    None => self.new_turn(),
                };
                let end = Outcome {
                    text: text.as_deref(),
                    is_error: *is_error,
                    subtype,
                    cost_usd: *cost_usd,
                    duration_ms: *duration_ms,
                };
                answer::post(&self.ctx, self.session, id, turn, end).await;
            }
            EventKind::PermissionRequest { .. }
            | EventKind::Question { .. }
            | EventKind::PermissionDecision { .. }
            | EventKind::Answer { .. } => {
                if let Some(t) = self.turn.as_mut() {
                    t.record(kind);
                }
                approvals::show(&self.ctx, self.session, kind).await;
            }
            EventKind::State { state, reason } => {
                let (what, hush) = match state {
                    SessionState::Failed => ("💥 Session failed", None),
                    SessionState::Stopped => ("⏹ Session stopped", Some(Hush::Stopped)),
                    SessionState::Idle | SessionState::Starting => {
                        self.resumed_after_stop().await;
                        return;
                    }
                    _ => return,
                };
                let mut text = what.to_owned();
                if let Some(r) = reason {
                    text.push_str(&format!(": {r}"));
                }
                self.end_turn(Phase::Failed).await;
                self.tell(Rich::text(text), hush).await;
            }
            EventKind::Interrupted { .. } => {
                if let Some(t) = self.turn.as_mut() {
                    t.record(kind);
                }
                if let Some(text) = notice(kind, self.ctx.platform.surface()) {
                    self.tell(text, Some(Hush::Interrupted)).await;
                }
            }
            other => {
                if let Some(text) = notice(other, self.ctx.platform.surface()) {
                    self.tell(text, None).await;
                }
            }
        }
    }

    /// Tells every bound place `text`, except those where a command already said it.
    async fn tell(&self, text: Rich, hush: Option<Hush>) {
        for place in self.ctx.bindings.places_of(&self.session) {
            if hush.is_some_and(|h| self.ctx.hushed(self.session, &place, h)) {
                continue;
            }
            self.ctx.send(&place, Outgoing::text(text.clone())).await;
        }
    }

    /// Ends a turn cut short by the session ending, and any progress message a previous
    /// bot process left.
    async fn end_turn(&mut self, phase: Phase) {
        let mut turn = match self.turn.take() {
            Some(t) => t,
            None if !self.left.is_empty() => self.new_turn(),
            None => return,
        };
        turn.close_all(&self.ctx, phase).await;
    }

    /// A stopped session came back (resumed): a prompt held for it goes now.
    async fn resumed_after_stop(&self) {
        self.ctx.release_held(self.session).await;
    }

    /// A new turn over the bound places, with any progress messages left from before a
    /// restart.
    fn new_turn(&mut self) -> Turn {
        let mut t = Turn::new(self.session, self.ctx.bindings.places_of(&self.session));
        t.adopt(std::mem::take(&mut self.left));
        t
    }

    fn start_turn(&mut self) {
        let t = self.new_turn();
        self.turn = Some(t);
    }
}

/// What the bound places are told about an event outside turns and approvals: a prompt
/// from another surface than `own` (this platform's prompts are already in the chat), an
/// error, an interrupt, attach and detach.
fn notice(kind: &EventKind, own: Surface) -> Option<Rich> {
    Some(match kind {
        EventKind::Prompt { text, origin, .. } if origin.surface != own => Rich::text("📝 ")
            .bold(render::person(&origin.to_string(), own))
            .push(": ")
            .push(render::truncate(text, ECHO_CHARS)),
        EventKind::Error { message } => {
            Rich::text("⚠️ Error: ").push(render::truncate(message, 1500))
        }
        EventKind::Interrupted { by } => {
            Rich::text(format!("⏸ Interrupted by {}", render::person(by, own)))
        }
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
