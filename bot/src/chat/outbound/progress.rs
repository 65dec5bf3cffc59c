//! The running turn of one session and its progress message. [`Turn`] records what the
//! turn does (its tool calls in a [`Ledger`], text written, API retries) and shows it
//! without ever holding up an answer:
//!
//! - While it runs, every bound place shows "typing…" (refreshed every [`TYPING_EVERY`]).
//! - A short turn posts no progress message at all: its answer is the turn's one message.
//!   A progress message appears at the first tool call, or after [`SHOW_AFTER`], and is
//!   edited at most every [`EDIT_EVERY`]. Both go in [`Lane::Progress`]: only when the
//!   chat's budget is free and no answer waits for it, else later (see
//!   [`crate::chat::ratelimit`]).
//! - Each progress message is stored (`chat_progress`) until the turn's end is shown in
//!   it, so a bot killed mid-turn finishes it after the restart ([`Turn::adopt`]).
//!
//! The session's worker ([`super::worker`]) owns the turn and calls [`Turn::tick`] when
//! [`Turn::due`] says; [`super::answer`] turns the progress message into the answer.

use std::time::Duration;

use common::event::{EventKind, now_ms};
use common::ids::SessionId;
use tokio::time::Instant;
use tracing::warn;

use super::tools::Ledger;
use crate::chat::ctx::Ctx;
use crate::chat::render::Rich;
use crate::chat::{ChatPlatform, Lane, Outgoing, Place};
use crate::db::ChatProgressRow;

/// A progress message is edited at most this often.
pub const EDIT_EVERY: Duration = Duration::from_millis(1500);

/// A turn without tool calls gets a progress message only once it has run this long.
pub const SHOW_AFTER: Duration = Duration::from_secs(3);

/// "typing…" is sent again this often while no progress message shows (Telegram shows it
/// for 5 s, Discord for 10 s).
pub const TYPING_EVERY: Duration = Duration::from_secs(4);

/// A progress message skipped for lack of budget is tried again after this long.
const RETRY: Duration = Duration::from_secs(1);

/// Tool lines shown in a progress message (older ones are counted, not listed).
const PROGRESS_TOOLS: usize = 8;

/// Where a turn is, as its progress message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Still working.
    Running,
    /// Finished well (the answer follows).
    Done,
    /// Interrupted.
    Interrupted,
    /// Failed, or the session stopped under it.
    Failed,
}

/// The progress message of one place.
pub struct Shown {
    /// Where.
    pub place: Place,
    /// The message, once posted.
    pub id: Option<String>,
}

/// What the running turn has done and how it shows (see the module docs).
pub struct Turn {
    session: SessionId,
    /// The turn's tool calls.
    pub ledger: Ledger,
    /// Per bound place, its progress message.
    pub shown: Vec<Shown>,
    chars: usize,
    text: String,
    note: Option<String>,
    /// An interrupt was asked for during the turn.
    pub interrupted: bool,
    dirty: bool,
    /// When the progress message may next be posted or edited.
    next_show: Instant,
    next_typing: Instant,
}

impl Turn {
    /// A turn of `session` shown in `places`, none of them with a message yet; "typing…"
    /// is due at once.
    pub fn new(session: SessionId, places: Vec<Place>) -> Self {
        let now = Instant::now();
        Self {
            session,
            ledger: Ledger::default(),
            shown: places
                .into_iter()
                .map(|place| Shown { place, id: None })
                .collect(),
            chars: 0,
            text: String::new(),
            note: None,
            interrupted: false,
            dirty: false,
            next_show: now + SHOW_AFTER,
            next_typing: now,
        }
    }

    /// Takes over progress messages a previous bot process posted for this session and
    /// did not finish (see the module docs).
    pub fn adopt(&mut self, rows: Vec<ChatProgressRow>) {
        for r in rows {
            let place = Place {
                chat: r.chat_id,
                thread: r.thread_id,
            };
            match self.shown.iter_mut().find(|s| s.place == place) {
                Some(s) if s.id.is_none() => s.id = Some(r.message_id),
                Some(_) => {}
                None => self.shown.push(Shown {
                    place,
                    id: Some(r.message_id),
                }),
            }
        }
        if self.shown.iter().any(|s| s.id.is_some()) {
            self.dirty = true;
        }
    }

    /// Records what an event of the turn changes (assistant text, tool calls and their
    /// ends, approvals, API retries, an interrupt); other events change nothing.
    pub fn record(&mut self, kind: &EventKind) {
        match kind {
            EventKind::AssistantDelta { text } => self.chars += text.chars().count(),
            EventKind::AssistantText { text } => self.text = text.clone(),
            EventKind::ToolUse {
                tool_use_id,
                name,
                input,
            } => {
                self.ledger.tool_use(tool_use_id, name, input);
                // Tool activity is worth showing at once.
                self.next_show = self.next_show.min(Instant::now());
            }
            EventKind::ToolResult {
                tool_use_id,
                is_error,
                ..
            } => self.ledger.result(tool_use_id, *is_error),
            EventKind::PermissionRequest {
                approval_id,
                tool_use_id,
                ..
            } => self
                .ledger
                .permission_request(&approval_id.0, tool_use_id.as_deref()),
            EventKind::PermissionDecision {
                approval_id,
                decision,
                ..
            } => self.ledger.decision(&approval_id.0, *decision),
            EventKind::Interrupted { .. } => self.interrupted = true,
            EventKind::ApiRetry { attempt, error, .. } => {
                self.note = Some(format!(
                    "API retry {attempt}{}",
                    error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
            _ => return,
        }
        self.dirty = true;
    }

    /// When something is next due: "typing…" where no progress message shows, posting the
    /// progress message, or editing it.
    pub fn due(&self) -> Option<Instant> {
        let waiting = self.shown.iter().any(|s| s.id.is_none());
        let posted = self.shown.iter().any(|s| s.id.is_some());
        let mut due: Option<Instant> = None;
        let mut at = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        if waiting {
            at(self.next_typing);
            at(self.next_show);
        }
        if posted && self.dirty {
            at(self.next_show);
        }
        due
    }

    /// Does what [`Turn::due`] said: "typing…", then posts or edits the progress messages
    /// in [`Lane::Progress`] (skipped ones are tried again later).
    pub async fn tick<P: ChatPlatform>(&mut self, ctx: &Ctx<P>) {
        let now = Instant::now();
        if now >= self.next_typing && self.shown.iter().any(|s| s.id.is_none()) {
            for s in self.shown.iter().filter(|s| s.id.is_none()) {
                if let Err(e) = ctx.platform.typing(&s.place).await {
                    warn!(error = format!("{e:#}"), "typing indicator failed");
                }
            }
            self.next_typing = now + TYPING_EVERY;
        }
        if now < self.next_show {
            return;
        }
        let text = Outgoing::text(self.progress_text(Phase::Running));
        let mut all_done = true;
        for i in 0..self.shown.len() {
            let place = self.shown[i].place.clone();
            match self.shown[i].id.clone() {
                None => match ctx.platform.send_in(Lane::Progress, &place, &text).await {
                    Ok(Some(id)) => {
                        self.remember(ctx, &place, &id).await;
                        self.shown[i].id = Some(id);
                    }
                    Ok(None) => all_done = false,
                    Err(e) => warn!(error = format!("{e:#}"), "progress message failed"),
                },
                Some(id) if self.dirty => {
                    match ctx
                        .platform
                        .edit_in(Lane::Progress, &place, &id, &text)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => all_done = false,
                        Err(e) => warn!(error = format!("{e:#}"), "progress edit failed"),
                    }
                }
                Some(_) => {}
            }
        }
        let now = Instant::now();
        if all_done {
            self.dirty = false;
            self.next_show = now + EDIT_EVERY;
        } else {
            self.next_show = now + RETRY;
        }
    }

    /// Stores a posted progress message, so a restart can finish it.
    async fn remember<P: ChatPlatform>(&self, ctx: &Ctx<P>, place: &Place, id: &str) {
        let row = ChatProgressRow {
            session_id: self.session,
            chat_id: place.chat.clone(),
            thread_id: place.thread.clone(),
            message_id: id.to_owned(),
        };
        let db = &ctx.state.db;
        if let Err(e) = db
            .chat_progress_add(ctx.platform.name(), &row, now_ms())
            .await
        {
            warn!(error = %e, "cannot store a progress message");
        }
    }

    /// Shows `phase` in the progress message of `place` (a tidy-up: after any waiting
    /// answer) and forgets it.
    pub async fn close<P: ChatPlatform>(&mut self, ctx: &Ctx<P>, place: &Place, phase: Phase) {
        let Some(s) = self.shown.iter_mut().find(|s| &s.place == place) else {
            return;
        };
        let Some(id) = s.id.take() else {
            return;
        };
        let text = Outgoing::text(self.progress_text(phase));
        if let Err(e) = ctx.platform.edit_in(Lane::Tidy, place, &id, &text).await {
            warn!(error = format!("{e:#}"), "progress edit failed");
        }
        forget(ctx, place, &id).await;
    }

    /// Closes every progress message with `phase`.
    pub async fn close_all<P: ChatPlatform>(&mut self, ctx: &Ctx<P>, phase: Phase) {
        let places: Vec<Place> = self.shown.iter().map(|s| s.place.clone()).collect();
        for p in places {
            self.close(ctx, &p, phase).await;
        }
    }

    /// The last full assistant text of the turn (the answer when the result has none).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The progress message's text in `phase`.
    pub fn progress_text(&self, phase: Phase) -> Rich {
        let head = match phase {
            Phase::Running => "⏳ Working…",
            Phase::Done => "✅ Done (answer below)",
            Phase::Interrupted => "⏸ Interrupted",
            Phase::Failed => "❌ Ended",
        };
        let mut text = Rich::default().bold(head);
        let (hidden, lines) = self.ledger.lines(PROGRESS_TOOLS);
        if hidden > 0 {
            text = text.push(format!("\n… {hidden} earlier tool call(s)"));
        }
        for l in lines {
            text = text.push("\n• ").push(l);
        }
        if phase == Phase::Running && self.chars > 0 {
            text = text.push(format!("\n✍️ {} characters so far", self.chars));
        }
        if let Some(n) = &self.note
            && phase == Phase::Running
        {
            text = text.push(format!("\n{n}"));
        }
        text
    }
}

/// Forgets stored progress message `id` of `place` (its final state is shown).
pub async fn forget<P: ChatPlatform>(ctx: &Ctx<P>, place: &Place, id: &str) {
    if let Err(e) = ctx
        .state
        .db
        .chat_progress_done(ctx.platform.name(), &place.chat, id)
        .await
    {
        warn!(error = %e, "cannot forget a progress message");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn place() -> Place {
        Place {
            chat: "1".into(),
            thread: None,
        }
    }

    #[test]
    fn progress_lists_the_last_tools_and_counts_the_rest() {
        let mut t = Turn::new(SessionId::new(), vec![place()]);
        for i in 0..10 {
            t.record(&EventKind::ToolUse {
                tool_use_id: format!("t{i}"),
                name: "Bash".into(),
                input: json!({"command": format!("step {i}")}),
            });
        }
        t.record(&EventKind::AssistantDelta {
            text: "x".repeat(42),
        });
        let running = t.progress_text(Phase::Running).plain();
        assert!(running.starts_with("⏳ Working…\n… 2 earlier tool call(s)\n• Bash: step 2"));
        assert!(
            running.ends_with("• Bash: step 9\n✍️ 42 characters so far"),
            "{running}"
        );
        let done = t.progress_text(Phase::Done).plain();
        assert!(done.starts_with("✅ Done") && !done.contains("characters so far"));
    }

    #[test]
    fn a_short_turn_is_due_for_typing_then_later_for_progress() {
        let mut t = Turn::new(SessionId::new(), vec![place()]);
        let now = Instant::now();
        let first = t.due().expect("typing is due");
        assert!(first <= now + Duration::from_millis(5));
        t.next_typing = now + TYPING_EVERY;
        assert!(t.due().expect("progress") >= now + Duration::from_secs(2));
        // A tool call makes the progress message due at once; adopting a stored message
        // makes its edit due.
        t.record(&EventKind::ToolUse {
            tool_use_id: "t".into(),
            name: "Bash".into(),
            input: json!({}),
        });
        assert!(t.due().expect("due") <= Instant::now());
        t.adopt(vec![ChatProgressRow {
            session_id: t.session,
            chat_id: "1".into(),
            thread_id: None,
            message_id: "9".into(),
        }]);
        assert_eq!(t.shown[0].id.as_deref(), Some("9"));
    }
}
