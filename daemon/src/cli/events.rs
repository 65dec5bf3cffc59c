//! `ccrm events` and the [`Printer`], which renders a session's events as a human reads
//! them (or as JSON lines with `--json`). `ccrm prompt --follow` in [`super::sessions`] shows
//! its turn with the same [`Printer`].

use std::io::Write;
use std::process::ExitCode;

use common::event::{Decision, Event, EventKind};
use common::ipc::{Command, EventsArgs};
use serde_json::Value;

use super::args::Cli;
use super::call::{Failure, connect, decode};
use super::output::preview;

/// `ccrm events`: a page of the session's events, or with `--follow` every new one until
/// interrupted.
pub(super) async fn show(cli: &Cli, args: EventsArgs) -> Result<ExitCode, Failure> {
    let mut client = connect(cli).await?;
    let session = args.session.clone();
    let mut printer = Printer::new(cli.json, &session);
    if args.follow {
        client
            .stream(Command::SessionEvents(args), |ev| printer.event(ev))
            .await?;
    } else {
        let data = client.call(Command::SessionEvents(args)).await?;
        let events: Vec<Event> = decode(data.get("events").cloned().unwrap_or_default())?;
        for ev in &events {
            printer.event(ev);
        }
    }
    printer.finish();
    Ok(ExitCode::SUCCESS)
}

/// Prints events as a human reads a session (or as JSON lines).
pub(super) struct Printer<'a> {
    json: bool,
    session: &'a str,
    mid_line: bool,
    streamed_text: bool,
}

impl<'a> Printer<'a> {
    /// A printer for `session`'s events; `json` prints each event as one JSON line.
    pub(super) fn new(json: bool, session: &'a str) -> Self {
        Self {
            json,
            session,
            mid_line: false,
            streamed_text: false,
        }
    }

    /// Prints a whole line, ending streamed text first if it stopped mid-line.
    fn line(&mut self, text: &str) {
        if self.mid_line {
            println!();
            self.mid_line = false;
        }
        println!("{text}");
    }

    /// Prints one event.
    pub(super) fn event(&mut self, ev: &Event) {
        if self.json {
            println!("{}", serde_json::to_string(ev).unwrap_or_default());
            return;
        }
        let s = self.session;
        match &ev.kind {
            EventKind::AssistantDelta { text } => {
                print!("{text}");
                let _ = std::io::stdout().flush();
                self.mid_line = !text.ends_with('\n');
                self.streamed_text = true;
            }
            EventKind::AssistantText { text } => {
                if self.streamed_text {
                    self.streamed_text = false;
                    if self.mid_line {
                        println!();
                        self.mid_line = false;
                    }
                } else {
                    self.line(text);
                }
            }
            EventKind::ToolUse { name, input, .. } => {
                self.line(&format!("⚙  {name} {}", preview(input, 160)))
            }
            EventKind::ToolResult {
                content, is_error, ..
            } => {
                let first = content.lines().next().unwrap_or_default();
                let mark = if *is_error { "✗" } else { "↳" };
                self.line(&format!("   {mark} {}", preview(&Value::from(first), 160)));
            }
            EventKind::PermissionRequest {
                approval_id,
                tool_name,
                input,
                ..
            } => {
                self.line(&format!(
                    "⏸  approval needed: {tool_name} {}",
                    preview(input, 200)
                ));
                self.line(&format!(
                    "   ccrm approve {s} {}  [--always]   |   ccrm deny {s} {} [-m \"why\"]",
                    approval_id.short(),
                    approval_id.short()
                ));
            }
            EventKind::PermissionDecision {
                tool_name,
                decision,
                by,
                message,
                ..
            } => {
                let verb = match decision {
                    Decision::Allow => "allowed",
                    Decision::AllowSession => "allowed for the session",
                    Decision::Deny => "denied",
                    Decision::Cancelled => "cancelled",
                    Decision::Aborted => "aborted",
                };
                let msg = message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                self.line(&format!("   {tool_name} {verb} by {by}{msg}"));
            }
            EventKind::Question {
                approval_id,
                questions,
            } => {
                for q in questions {
                    self.line(&format!("?  {}", q.question));
                    for (i, o) in q.options.iter().enumerate() {
                        self.line(&format!("   {}. {}", i + 1, o.label));
                    }
                }
                self.line(&format!(
                    "   ccrm answer {s} <choice> --request {}",
                    approval_id.short()
                ));
            }
            EventKind::Answer {
                answers,
                by,
                decision,
                ..
            } => {
                let text: Vec<String> = answers.iter().map(|(q, a)| format!("{q} → {a}")).collect();
                self.line(&format!(
                    "   answered by {by} ({decision:?}): {}",
                    text.join("; ")
                ));
            }
            EventKind::TurnResult {
                is_error,
                text,
                duration_ms,
                cost_usd,
                subtype,
                ..
            } => {
                let secs = duration_ms
                    .map(|d| format!(" in {:.1}s", d as f64 / 1000.0))
                    .unwrap_or_default();
                let cost = cost_usd
                    .map(|c| format!(", session cost ${c:.4}"))
                    .unwrap_or_default();
                if *is_error {
                    let why = text.as_deref().unwrap_or(subtype);
                    self.line(&format!("✗ turn failed{secs}: {why}"));
                } else {
                    self.line(&format!("✓ done{secs}{cost}"));
                }
            }
            EventKind::State { state, reason } => {
                let r = reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                self.line(&format!("·  state: {state}{r}"));
            }
            EventKind::Prompt { text, origin, .. } => self.line(&format!(
                "»  [{origin}] {}",
                preview(&Value::from(text.as_str()), 200)
            )),
            EventKind::TurnStarted { .. } => {}
            EventKind::ApiRetry {
                attempt, status, ..
            } => {
                self.line(&format!(
                    "·  API call failed ({}); retry {attempt}",
                    status.map_or("no response".into(), |s| s.to_string())
                ));
            }
            EventKind::Error { message } => self.line(&format!("!  {message}")),
            EventKind::Interrupted { by } => self.line(&format!("·  interrupted by {by}")),
            EventKind::Attached { target } => self.line(&format!("·  attached in tmux ({target})")),
            EventKind::Detached { reason } => self.line(&format!("·  detached ({reason})")),
        }
    }

    /// Ends streamed text that stopped mid-line.
    pub(super) fn finish(&mut self) {
        if self.mid_line {
            println!();
            self.mid_line = false;
        }
    }
}
