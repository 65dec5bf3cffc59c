//! What one line of the child's stdout means ([`read_line`]).
//!
//! Lines that only report something (assistant text and deltas, tool calls and results,
//! API retries) become events at once; the rest ([`Output`]) changes the session and goes
//! to the actor ([`super::actor`]): a turn's `result`, the child's control requests,
//! responses and cancellations, and output that is not JSON at all (a broken child).

use common::child::{self, Block, ChildMsg};
use common::event::EventKind;
use serde_json::Value;

/// Raw CLI lines longer than this are not kept beside their event.
pub(super) const MAX_RAW_KEEP: usize = 64 * 1024;
/// Tool result text kept in the normalised event.
const MAX_TOOL_RESULT_TEXT: usize = 4000;

/// One line of the child's stdout, read.
pub(super) enum Output {
    /// Events to report as they are, each with the raw line when it is kept.
    Events(Vec<(EventKind, Option<Value>)>),
    /// A message that changes the session, with the raw line when it is kept: a turn's
    /// `result`, or a control request, response or cancellation.
    ForActor(ChildMsg, Option<Value>),
    /// The line is not JSON: the child is broken; the text says what it printed.
    NotJson(String),
}

/// Reads one line of the child's stdout.
pub(super) fn read_line(line: &str) -> Output {
    let (raw, msg) = match child::parse_line(line) {
        Ok(v) => v,
        Err(e) => {
            if line.trim().is_empty() {
                return Output::Events(Vec::new());
            }
            return Output::NotJson(format!(
                "claude printed something that is not JSON: {}",
                e.snippet
            ));
        }
    };
    let keep = (line.len() <= MAX_RAW_KEEP).then_some(raw);
    let mut events = Vec::new();
    match msg {
        ChildMsg::System { subtype } => {
            if subtype == "api_retry" {
                let raw = keep.unwrap_or(Value::Null);
                events.push((
                    EventKind::ApiRetry {
                        attempt: raw.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                        status: raw.get("error_status").and_then(Value::as_u64),
                        error: raw.get("error").and_then(Value::as_str).map(str::to_owned),
                    },
                    Some(raw),
                ));
            }
        }
        ChildMsg::StreamEvent { event } => {
            if event.get("type").and_then(Value::as_str) == Some("content_block_delta")
                && let Some(text) = event
                    .get("delta")
                    .filter(|d| d.get("type").and_then(Value::as_str) == Some("text_delta"))
                    .and_then(|d| d.get("text"))
                    .and_then(Value::as_str)
            {
                events.push((
                    EventKind::AssistantDelta {
                        text: text.to_owned(),
                    },
                    None,
                ));
            }
        }
        ChildMsg::Assistant(a) => {
            for block in a.message.blocks() {
                match block {
                    Block::Text { text } => {
                        events.push((EventKind::AssistantText { text }, keep.clone()));
                    }
                    Block::ToolUse { id, name, input } => {
                        events.push((
                            EventKind::ToolUse {
                                tool_use_id: id,
                                name,
                                input,
                            },
                            keep.clone(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        ChildMsg::User(u) => {
            if u.is_replay {
                return Output::Events(events);
            }
            for block in u.message.blocks() {
                if let Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } = block
                {
                    events.push((tool_result(tool_use_id, &content, is_error), keep.clone()));
                }
            }
        }
        msg @ (ChildMsg::Result(_)
        | ChildMsg::ControlRequest { .. }
        | ChildMsg::ControlResponse { .. }
        | ChildMsg::ControlCancel { .. }) => return Output::ForActor(msg, keep),
        ChildMsg::Other => {}
    }
    Output::Events(events)
}

/// The event of a finished tool call, its text cut to [`MAX_TOOL_RESULT_TEXT`] bytes (the
/// child's and the TUI's alike).
pub(super) fn tool_result(tool_use_id: String, content: &str, is_error: bool) -> EventKind {
    EventKind::ToolResult {
        tool_use_id,
        content: truncate(content, MAX_TOOL_RESULT_TEXT),
        is_error,
    }
}

/// Cuts `s` to at most `max` bytes at a char boundary and says how many bytes were cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(10);
        let t = truncate(&s, 5);
        assert!(t.starts_with("éé"));
        assert!(t.contains("more bytes"));
        assert_eq!(truncate("abc", 5), "abc");
    }
}
