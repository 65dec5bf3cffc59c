//! The running turn of one session and its progress message. [`Turn`] records what the
//! turn has done so far (tool calls, files changed, tool errors, text written, API
//! retries) from its events, and keeps one progress message per bound place up to date:
//! posted when the turn starts, edited at most every [`EDIT_EVERY`] while it runs, and
//! marked done or ended at the end.
//!
//! The session's worker ([`super::worker`]) owns the turn; [`super::answer`] reads it to
//! post the final answer and its summary line.

use std::collections::BTreeSet;
use std::time::Duration;

use common::event::EventKind;
use common::ids::SessionId;
use tokio::time::Instant;
use tracing::warn;

use crate::chat::ctx::Ctx;
use crate::chat::render::{self, Rich};
use crate::chat::{ChatPlatform, Outgoing, Place};

/// A progress message is edited at most this often.
pub const EDIT_EVERY: Duration = Duration::from_millis(1500);

/// Tool lines shown in a progress message (older ones are counted, not listed).
const PROGRESS_TOOLS: usize = 8;

/// Where a turn is, as its progress message says.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Still working.
    Running,
    /// Finished well.
    Done,
    /// Failed, or the session stopped under it.
    Failed,
}

/// What the progress message of the running turn shows (see the module docs).
pub struct Turn {
    progress: Vec<(Place, String)>,
    tools: Vec<String>,
    files: BTreeSet<String>,
    tool_errors: usize,
    chars: usize,
    text: String,
    note: Option<String>,
    dirty: bool,
    last_edit: Instant,
}

impl Turn {
    /// A turn with nothing recorded and no progress message.
    pub fn new() -> Self {
        Self {
            progress: Vec::new(),
            tools: Vec::new(),
            files: BTreeSet::new(),
            tool_errors: 0,
            chars: 0,
            text: String::new(),
            note: None,
            dirty: false,
            last_edit: Instant::now(),
        }
    }

    /// A new turn of `session`, with its progress message posted to every bound place.
    pub async fn start<P: ChatPlatform>(ctx: &Ctx<P>, session: SessionId) -> Self {
        let mut t = Self::new();
        for place in ctx.bindings.places_of(&session) {
            let text = t.progress_text(Phase::Running);
            if let Some(id) = ctx.send(&place, Outgoing::text(text)).await {
                t.progress.push((place, id));
            }
        }
        t.last_edit = Instant::now();
        t
    }

    /// Records what an event of the turn changes in the progress message (assistant text,
    /// tool calls and errors, API retries); other events change nothing.
    pub fn record(&mut self, kind: &EventKind) {
        match kind {
            EventKind::AssistantDelta { text } => self.chars += text.chars().count(),
            EventKind::AssistantText { text } => self.text = text.clone(),
            EventKind::ToolUse { name, input, .. } => {
                self.tools.push(render::tool_line(name, input));
                if let Some(f) = render::changed_file(name, input) {
                    self.files.insert(f);
                }
            }
            EventKind::ToolResult { is_error: true, .. } => self.tool_errors += 1,
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

    /// When the progress message is next due for an edit; `None` when nothing changed.
    pub fn due(&self) -> Option<Instant> {
        self.dirty.then(|| self.last_edit + EDIT_EVERY)
    }

    /// Edits the progress message to show what was recorded since the last edit.
    pub async fn flush<P: ChatPlatform>(&mut self, ctx: &Ctx<P>) {
        self.dirty = false;
        self.edit(ctx, Phase::Running).await;
        self.last_edit = Instant::now();
    }

    /// Edits the progress message in every place to show `phase`.
    pub async fn edit<P: ChatPlatform>(&self, ctx: &Ctx<P>, phase: Phase) {
        let text = self.progress_text(phase);
        for (place, id) in &self.progress {
            if let Err(e) = ctx
                .platform
                .edit(place, id, &Outgoing::text(text.clone()))
                .await
            {
                warn!(error = %e, "progress edit failed");
            }
        }
    }

    /// The last full assistant text of the turn (the answer when the result has none).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The one-line summary of the turn: tools used, files changed, cost, duration.
    pub fn summary(&self, cost_usd: Option<f64>, duration_ms: Option<u64>) -> String {
        render::summary_line(self.tools.len(), self.files.len(), cost_usd, duration_ms)
    }

    fn progress_text(&self, phase: Phase) -> Rich {
        let head = match phase {
            Phase::Running => "⏳ Working…",
            Phase::Done => "✅ Done",
            Phase::Failed => "❌ Ended",
        };
        let mut text = Rich::default().bold(head);
        let hidden = self.tools.len().saturating_sub(PROGRESS_TOOLS);
        if hidden > 0 {
            text = text.push(format!("\n… {hidden} earlier tool call(s)"));
        }
        for t in self.tools.iter().skip(hidden) {
            text = text.push("\n• ").push(t.clone());
        }
        if self.tool_errors > 0 {
            text = text.push(format!("\n⚠️ {} tool error(s)", self.tool_errors));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lists_the_last_tools_and_counts_the_rest() {
        let mut t = Turn::new();
        for i in 0..10 {
            t.tools.push(format!("Bash: step {i}"));
        }
        t.chars = 42;
        let running = t.progress_text(Phase::Running).plain();
        assert!(running.starts_with("⏳ Working…\n… 2 earlier tool call(s)\n• Bash: step 2"));
        assert!(
            running.ends_with("• Bash: step 9\n✍️ 42 characters so far"),
            "{running}"
        );
        let done = t.progress_text(Phase::Done).plain();
        assert!(done.starts_with("✅ Done") && !done.contains("characters so far"));
    }
}
