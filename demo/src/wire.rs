//! The Messages API wire format: turns a [`Reply`] into SSE frames or a JSON Message,
//! and error statuses into Anthropic error bodies (protocol §10.3).
//!
//! Pure apart from making up ids. The server in [`crate::anthropic`] plays the
//! [`Step`]s out, sleeping where a step says so.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::script::{Block, Reply};

/// Characters per text delta when a [`Reply::Text`] is split up for streaming.
const TEXT_DELTA_CHARS: usize = 64;

/// Pause before a deliberate cut, so what was sent before it gets flushed.
const FLUSH_PAUSE: Duration = Duration::from_millis(50);

/// One thing to do while streaming a response body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Send these bytes (one whole SSE event).
    Frame(Bytes),
    /// Wait before the next step.
    Sleep(Duration),
    /// Break the connection without finishing the HTTP response.
    Cut,
}

/// A new message id, `msg_01…`, unique across servers.
pub(crate) fn message_id() -> String {
    format!("msg_01{}", short_uuid())
}

/// A new tool call id, `toolu_01…`, unique across servers (so a `--resume` against a
/// fresh fake never repeats an id already in the history).
pub(crate) fn tool_use_id() -> String {
    format!("toolu_01{}", short_uuid())
}

/// A new request id for the `request-id` response header.
pub(crate) fn request_id() -> String {
    format!("req_01{}", short_uuid())
}

fn short_uuid() -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.truncate(24);
    s
}

/// The SSE steps for a streaming reply, or `Err(status)` for [`Reply::Error`].
///
/// `chunk_delay` is used by [`Reply::Chunks`] without its own delay.
pub(crate) fn sse_steps(
    reply: &Reply,
    message_id: &str,
    model: &str,
    chunk_delay: Duration,
) -> Result<Vec<Step>, u16> {
    let mut steps = vec![frame("message_start", &message_start(message_id, model))];
    let (blocks, stop_reason, output_tokens) = match reply {
        Reply::Error { status } => return Err(*status),
        Reply::Chunks { deltas, delay } => {
            let delay = delay.unwrap_or(chunk_delay);
            steps.push(text_block_start(0));
            for (i, delta) in deltas.iter().enumerate() {
                if i > 0 && !delay.is_zero() {
                    steps.push(Step::Sleep(delay));
                }
                steps.push(text_delta(0, delta));
            }
            steps.push(block_stop(0));
            let tokens = deltas.iter().map(|d| token_estimate(d)).sum();
            (Vec::new(), "end_turn", tokens)
        }
        Reply::Truncate | Reply::StreamError => {
            steps.push(text_block_start(0));
            steps.push(text_delta(0, "Partial"));
            if matches!(reply, Reply::Truncate) {
                // Let the frames so far reach the client first: hyper flushes when the
                // body stream is pending, and a cut before that would look like a
                // refused connection rather than a broken stream.
                steps.push(Step::Sleep(FLUSH_PAUSE));
                steps.push(Step::Cut);
            } else {
                let error = json!({
                    "type": "error",
                    "error": { "type": "overloaded_error", "message": "fake mid-stream error" },
                });
                steps.push(frame("error", &error));
            }
            return Ok(steps);
        }
        other => {
            let blocks = other.blocks_for_message()?;
            let stop = stop_reason(&blocks);
            (blocks, stop, 0)
        }
    };
    let mut tokens = output_tokens;
    for (index, block) in blocks.iter().enumerate() {
        match block {
            Block::Text(text) => {
                steps.push(text_block_start(index));
                for piece in split_chars(text, TEXT_DELTA_CHARS) {
                    steps.push(text_delta(index, piece));
                }
                tokens += token_estimate(text);
            }
            Block::ToolUse { name, input } => {
                let start = json!({
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use", "id": tool_use_id(), "name": name, "input": {},
                    },
                });
                steps.push(frame("content_block_start", &start));
                let input_json = input.to_string();
                for piece in split_in_two(&input_json) {
                    let delta = json!({
                        "type": "content_block_delta",
                        "index": index,
                        "delta": { "type": "input_json_delta", "partial_json": piece },
                    });
                    steps.push(frame("content_block_delta", &delta));
                }
                tokens += token_estimate(&input_json);
            }
        }
        steps.push(block_stop(index));
    }
    let delta = json!({
        "type": "message_delta",
        "delta": { "stop_reason": stop_reason, "stop_sequence": null },
        "usage": { "output_tokens": tokens.max(1) },
    });
    steps.push(frame("message_delta", &delta));
    steps.push(frame("message_stop", &json!({ "type": "message_stop" })));
    Ok(steps)
}

/// The JSON Message for a non-streaming reply, or `Err(status)` for [`Reply::Error`].
pub(crate) fn message_json(reply: &Reply, message_id: &str, model: &str) -> Result<Value, u16> {
    let blocks = reply.blocks_for_message()?;
    let mut tokens = 0;
    let content: Vec<Value> = blocks
        .iter()
        .map(|block| match block {
            Block::Text(text) => {
                tokens += token_estimate(text);
                json!({ "type": "text", "text": text })
            }
            Block::ToolUse { name, input } => {
                tokens += token_estimate(&input.to_string());
                json!({ "type": "tool_use", "id": tool_use_id(), "name": name, "input": input })
            }
        })
        .collect();
    Ok(json!({
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(&blocks),
        "stop_sequence": null,
        "usage": { "input_tokens": 10, "output_tokens": tokens.max(1) },
    }))
}

/// The Anthropic error `type` for an HTTP status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The Anthropic error body for `status` with a made-up message `fake <type>`.
pub(crate) fn error_body(status: u16) -> Value {
    let kind = error_type(status);
    error_body_with(kind, &format!("fake {kind}"))
}

/// An Anthropic error body with this type and message.
pub(crate) fn error_body_with(kind: &str, message: &str) -> Value {
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

fn stop_reason(blocks: &[Block]) -> &'static str {
    if blocks.iter().any(|b| matches!(b, Block::ToolUse { .. })) {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn message_start(message_id: &str, model: &str) -> Value {
    json!({
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": { "input_tokens": 10, "output_tokens": 1 },
        },
    })
}

fn frame(event: &str, data: &Value) -> Step {
    Step::Frame(Bytes::from(format!("event: {event}\ndata: {data}\n\n")))
}

fn text_block_start(index: usize) -> Step {
    let start = json!({
        "type": "content_block_start",
        "index": index,
        "content_block": { "type": "text", "text": "" },
    });
    frame("content_block_start", &start)
}

fn text_delta(index: usize, text: &str) -> Step {
    let delta = json!({
        "type": "content_block_delta",
        "index": index,
        "delta": { "type": "text_delta", "text": text },
    });
    frame("content_block_delta", &delta)
}

fn block_stop(index: usize) -> Step {
    frame(
        "content_block_stop",
        &json!({ "type": "content_block_stop", "index": index }),
    )
}

fn token_estimate(text: &str) -> u64 {
    u64::try_from(text.len() / 4 + 1).unwrap_or(u64::MAX)
}

/// Splits `text` into pieces of at most `max` characters (one empty piece for "").
fn split_chars(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let cut = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let (head, tail) = rest.split_at(cut);
        pieces.push(head);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// Splits a JSON text into two pieces at a char boundary near the middle, so the
/// client has to join `input_json_delta`s.
fn split_in_two(text: &str) -> Vec<&str> {
    let chars = text.chars().count();
    if chars < 2 {
        return vec![text];
    }
    let cut = text
        .char_indices()
        .nth(chars / 2)
        .map_or(text.len(), |(i, _)| i);
    let (a, b) = text.split_at(cut);
    vec![a, b]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(steps: &[Step]) -> Vec<(String, Value)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Frame(b) => {
                    let text = std::str::from_utf8(b).ok()?;
                    let (ev, data) = text.strip_suffix("\n\n")?.split_once('\n')?;
                    Some((
                        ev.strip_prefix("event: ")?.to_owned(),
                        serde_json::from_str(data.strip_prefix("data: ")?).ok()?,
                    ))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tool_use_stream_splits_json() {
        let reply = Reply::bash("ls");
        let steps = sse_steps(&reply, "msg_x", "m", Duration::ZERO).expect("steps");
        let ev = events(&steps);
        let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let joined: String = ev
            .iter()
            .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
            .collect();
        let input: Value = serde_json::from_str(&joined).expect("json");
        assert_eq!(input["command"], "ls");
        assert_eq!(ev[5].1["delta"]["stop_reason"], "tool_use");
        assert_eq!(ev[1].1["content_block"]["name"], "Bash");
    }

    #[test]
    fn chunks_sleep_between_deltas() {
        let reply = Reply::Chunks {
            deltas: vec!["a".into(), "b".into(), "c".into()],
            delay: None,
        };
        let steps = sse_steps(&reply, "msg_x", "m", Duration::from_millis(7)).expect("steps");
        let sleeps = steps
            .iter()
            .filter(|s| **s == Step::Sleep(Duration::from_millis(7)))
            .count();
        assert_eq!(sleeps, 2);
    }

    #[test]
    fn truncate_cuts_and_error_is_status() {
        let steps = sse_steps(&Reply::Truncate, "msg_x", "m", Duration::ZERO).expect("steps");
        assert_eq!(steps.last(), Some(&Step::Cut));
        assert_eq!(
            sse_steps(&Reply::Error { status: 529 }, "msg_x", "m", Duration::ZERO),
            Err(529)
        );
        assert_eq!(error_body(529)["error"]["type"], "overloaded_error");
    }

    #[test]
    fn split_helpers_respect_char_boundaries() {
        assert_eq!(split_chars("ééééé", 2), ["éé", "éé", "é"]);
        assert_eq!(split_chars("", 2), [""]);
        assert_eq!(split_in_two("{}"), ["{", "}"]);
        assert_eq!(split_in_two("ééé").concat(), "ééé");
    }

    #[test]
    fn message_json_echoes_model() {
        let msg = message_json(&Reply::text("hi"), "msg_x", "claude-x").expect("message");
        assert_eq!(msg["model"], "claude-x");
        assert_eq!(msg["content"][0]["text"], "hi");
        assert_eq!(msg["stop_reason"], "end_turn");
    }
}
