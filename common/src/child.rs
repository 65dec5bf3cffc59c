//! What the Claude Code CLI prints on stdout in stream-json mode (claude-protocol.md §2–3),
//! typed as far as ccrm needs it, and the lines we write to its stdin.
//!
//! Parsing is lenient: unknown message types and fields are normal (the CLI changes often),
//! so anything not recognised becomes [`ChildMsg::Other`]. Only a line that is not JSON at
//! all is an error.

use serde::Deserialize;
use serde_json::{Value, json};

/// One stdout line of the child, classified.
#[derive(Clone, Debug, PartialEq)]
pub enum ChildMsg {
    /// `system` messages (`init`, `status`, `api_retry`, ...).
    System {
        /// The `subtype` field.
        subtype: String,
    },
    /// One finished content block of an assistant message.
    Assistant(AssistantMsg),
    /// Tool results (and interrupt markers) written by the CLI.
    User(UserMsg),
    /// A raw API stream event (with `--include-partial-messages`).
    StreamEvent {
        /// The inner event.
        event: Value,
    },
    /// The end of a turn.
    Result(ResultMsg),
    /// The CLI asks the host something (`can_use_tool`, ...).
    ControlRequest {
        /// Id to answer with.
        request_id: String,
        /// The request body (has `subtype`).
        request: Value,
    },
    /// The CLI answers one of our control requests.
    ControlResponse {
        /// Our request id.
        request_id: String,
        /// `success` or `error`.
        subtype: String,
        /// The `response` (success) or `error` (error) field.
        body: Value,
    },
    /// The CLI withdrew its own pending request.
    ControlCancel {
        /// The withdrawn request.
        request_id: String,
    },
    /// Anything else (`keep_alive`, `command_lifecycle`, `tool_progress`, future types).
    Other,
}

/// An `assistant` line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct AssistantMsg {
    /// The message.
    #[serde(default)]
    pub message: MessageBody,
    /// Set on synthetic API-error messages.
    #[serde(default)]
    pub error: Option<String>,
}

/// A `user` line written by the CLI.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct UserMsg {
    /// The message.
    #[serde(default)]
    pub message: MessageBody,
    /// Echoed replays of our own lines.
    #[serde(default, rename = "isReplay")]
    pub is_replay: bool,
}

/// The `message` of an assistant or user line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct MessageBody {
    /// API message id (assistant only).
    #[serde(default)]
    pub id: Option<String>,
    /// Content: a string or a list of blocks.
    #[serde(default)]
    pub content: Value,
}

impl MessageBody {
    /// The content as blocks; a plain string becomes one text block.
    pub fn blocks(&self) -> Vec<Block> {
        match &self.content {
            Value::String(s) => vec![Block::Text { text: s.clone() }],
            Value::Array(items) => items.iter().map(Block::from_value).collect(),
            _ => Vec::new(),
        }
    }
}

/// One content block, as far as we care.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Input.
        input: Value,
    },
    /// A tool result.
    ToolResult {
        /// The call it answers.
        tool_use_id: String,
        /// Result text (text parts joined).
        content: String,
        /// Failure or refusal.
        is_error: bool,
    },
    /// Thinking, images, and anything else.
    Other,
}

impl Block {
    fn from_value(v: &Value) -> Self {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match v.get("type").and_then(Value::as_str) {
            Some("text") => Self::Text { text: s("text") },
            Some("tool_use") => Self::ToolUse {
                id: s("id"),
                name: s("name"),
                input: v.get("input").cloned().unwrap_or(Value::Null),
            },
            Some("tool_result") => Self::ToolResult {
                tool_use_id: s("tool_use_id"),
                content: content_text(v.get("content").unwrap_or(&Value::Null)),
                is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            },
            _ => Self::Other,
        }
    }
}

/// Joins the text of a tool_result `content` (a string or a list of text blocks).
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A `result` line.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ResultMsg {
    /// `success`, `error_during_execution`, `error_max_turns`, ...
    #[serde(default)]
    pub subtype: String,
    /// Whether the turn failed.
    #[serde(default)]
    pub is_error: bool,
    /// Final text (success subtype).
    #[serde(default)]
    pub result: Option<String>,
    /// Error strings (error subtypes).
    #[serde(default)]
    pub errors: Vec<String>,
    /// Cumulative cost.
    #[serde(default)]
    pub total_cost_usd: Option<f64>,
    /// Turn wall time.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Model round trips.
    #[serde(default)]
    pub num_turns: Option<u64>,
}

impl ResultMsg {
    /// The text to show: the result, else the joined errors.
    pub fn text(&self) -> Option<String> {
        match &self.result {
            Some(r) => Some(r.clone()),
            None if !self.errors.is_empty() => Some(self.errors.join("; ")),
            None => None,
        }
    }
}

/// Why a stdout line could not be classified.
#[derive(Debug, thiserror::Error)]
#[error("child printed a line that is not JSON: {snippet}")]
pub struct NotJson {
    /// The start of the offending line.
    pub snippet: String,
}

/// Parses one stdout line into its raw JSON value and its classification.
pub fn parse_line(line: &str) -> Result<(Value, ChildMsg), NotJson> {
    let value: Value = serde_json::from_str(line).map_err(|_| NotJson {
        snippet: line.chars().take(120).collect(),
    })?;
    let msg = classify(&value);
    Ok((value, msg))
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Classifies an already parsed stdout value.
pub fn classify(v: &Value) -> ChildMsg {
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return ChildMsg::Other;
    };
    match kind {
        "system" => ChildMsg::System {
            subtype: str_field(v, "subtype"),
        },
        "assistant" => serde_json::from_value(v.clone())
            .map(ChildMsg::Assistant)
            .unwrap_or(ChildMsg::Other),
        "user" => serde_json::from_value(v.clone())
            .map(ChildMsg::User)
            .unwrap_or(ChildMsg::Other),
        "stream_event" => ChildMsg::StreamEvent {
            event: v.get("event").cloned().unwrap_or(Value::Null),
        },
        "result" => serde_json::from_value(v.clone())
            .map(ChildMsg::Result)
            .unwrap_or(ChildMsg::Other),
        "control_request" => ChildMsg::ControlRequest {
            request_id: str_field(v, "request_id"),
            request: v.get("request").cloned().unwrap_or(Value::Null),
        },
        "control_response" => {
            let r = v.get("response").cloned().unwrap_or(Value::Null);
            let subtype = str_field(&r, "subtype");
            let body = if subtype == "error" {
                r.get("error").cloned()
            } else {
                r.get("response").cloned()
            };
            ChildMsg::ControlResponse {
                request_id: str_field(&r, "request_id"),
                subtype,
                body: body.unwrap_or(Value::Null),
            }
        }
        "control_cancel_request" => ChildMsg::ControlCancel {
            request_id: str_field(v, "request_id"),
        },
        _ => ChildMsg::Other,
    }
}

/// The arguments that put the CLI in stream-json mode with permission prompts on stdio
/// (claude-protocol.md §1.1). ccrmd starts every child with them, and the benchmarks' direct
/// baseline uses the same ones.
pub const STREAM_JSON_ARGS: &[&str] = &[
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
    "--permission-prompt-tool",
    "stdio",
];

/// The stdin line that starts (or queues) a turn.
pub fn user_line(text: &str) -> Value {
    json!({"type": "user", "message": {"role": "user", "content": text}, "parent_tool_use_id": null})
}

/// The stdin line of a prompt with images: the text block after the image blocks.
pub fn user_line_with(text: &str, images: &[crate::attach::ImageBlock]) -> Value {
    if images.is_empty() {
        return user_line(text);
    }
    let mut content: Vec<Value> = images
        .iter()
        .map(crate::attach::ImageBlock::to_block)
        .collect();
    // The API refuses an empty text block; an image alone is a whole prompt.
    if !text.trim().is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    json!({"type": "user", "message": {"role": "user", "content": content}, "parent_tool_use_id": null})
}

/// A host → CLI control request.
pub fn control_request(request_id: &str, request: Value) -> Value {
    json!({"type": "control_request", "request_id": request_id, "request": request})
}

/// A successful answer to a CLI → host control request.
pub fn control_success(request_id: &str, response: Value) -> Value {
    json!({"type": "control_response", "response": {"subtype": "success", "request_id": request_id, "response": response}})
}

/// An error answer to a CLI → host control request we do not support.
pub fn control_error(request_id: &str, error: &str) -> Value {
    json!({"type": "control_response", "response": {"subtype": "error", "request_id": request_id, "error": error}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_real_lines() {
        let (_, m) = parse_line(r#"{"type":"system","subtype":"init","cwd":"/x"}"#).expect("json");
        assert_eq!(
            m,
            ChildMsg::System {
                subtype: "init".into()
            }
        );

        let (_, m) = parse_line(r#"{"type":"assistant","message":{"id":"msg_1","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]}}"#).expect("json");
        let ChildMsg::Assistant(a) = m else {
            panic!("not assistant")
        };
        assert_eq!(
            a.message.blocks(),
            vec![Block::ToolUse {
                id: "toolu_1".into(),
                name: "Bash".into(),
                input: json!({"command":"ls"})
            }]
        );

        let (_, m) = parse_line(r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"is_error":true}]}}"#).expect("json");
        let ChildMsg::User(u) = m else {
            panic!("not user")
        };
        assert_eq!(
            u.message.blocks(),
            vec![Block::ToolResult {
                tool_use_id: "toolu_1".into(),
                content: "a\nb".into(),
                is_error: true
            }]
        );

        let (_, m) = parse_line(r#"{"subtype":"success","is_error":false,"result":"Echo: hi","total_cost_usd":0.1,"num_turns":1,"type":"result"}"#).expect("json");
        let ChildMsg::Result(r) = m else {
            panic!("not result")
        };
        assert_eq!(r.text().as_deref(), Some("Echo: hi"));

        let (_, m) = parse_line(r#"{"type":"control_request","request_id":"abc","request":{"subtype":"can_use_tool","tool_name":"Write"}}"#).expect("json");
        assert!(
            matches!(m, ChildMsg::ControlRequest { ref request_id, .. } if request_id == "abc")
        );

        let (_, m) = parse_line(r#"{"type":"control_response","response":{"subtype":"error","request_id":"r1","error":"nope"}}"#).expect("json");
        assert_eq!(
            m,
            ChildMsg::ControlResponse {
                request_id: "r1".into(),
                subtype: "error".into(),
                body: json!("nope")
            }
        );

        let (_, m) =
            parse_line(r#"{"type":"control_cancel_request","request_id":"x"}"#).expect("json");
        assert_eq!(
            m,
            ChildMsg::ControlCancel {
                request_id: "x".into()
            }
        );

        let (_, m) = parse_line(r#"{"type":"brand_new_thing","x":1}"#).expect("json");
        assert_eq!(m, ChildMsg::Other);
    }

    #[test]
    fn rejects_non_json() {
        assert!(parse_line("Segmentation fault").is_err());
    }

    #[test]
    fn error_results_show_errors() {
        let r = ResultMsg {
            errors: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(r.text().as_deref(), Some("a; b"));
    }
}
