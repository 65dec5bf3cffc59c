//! Keyword scripting: reads a Messages API request body and decides what the fake
//! model answers.
//!
//! Everything here is pure: no I/O, no clock, no server state. [`decide`] looks only at
//! the request body, so the fake stays stateless across a multi-step tool loop, across
//! the CLI's non-streaming retry of the same body, and across `--resume`.
//!
//! # How a request is read (protocol §10.2)
//!
//! - In a user message, human text is string content or a `text` block, except blocks
//!   that start with `<system-reminder>`, the CLI's `[Request interrupted by user…]`
//!   markers and its `[Image: source: …]` note after a prompt's image block.
//! - `role:"system"` entries are skipped, with one exception: a message the user sends
//!   while a tool runs is folded into the running turn as a `role:"system"` entry
//!   `The user sent a new message while you were working:\n<text>\n\nThis is how
//!   Claude Code surfaces…` (observed with CLI 2.1.328, after the tool_result). Its
//!   `<text>` counts as human text.
//! - The **last** human text of the **newest** message that has one is the text `T`
//!   that picks the keyword.
//! - The number of assistant tool rounds after the message holding `T` tells how far a
//!   multi-step keyword has got. A user message that holds both a `tool_result` and new
//!   human text (the CLI merges them after an interrupt or a denial) therefore starts the
//!   new keyword afresh.
//!
//! # Keywords (at the start of `T`)
//!
//! | `T` | Reply |
//! |---|---|
//! | `TOOL:<cmd>` | Bash `{"command": cmd, "description": "run command"}`, then `Done.` |
//! | `WRITE:<path> <content…>` | Write `{"file_path", "content"}`, then `Done.` The tool's schema asks for an absolute path, but CLI 2.1.328 also accepts a relative one and resolves it against its cwd; the path is passed on unchanged. |
//! | `WRITE2:<path1> <path2>` | Write path1 (`one`), then Write path2 (`two`), then `Done.` |
//! | `READ:<path>` | Read `{"file_path": path}`, then `Done.` |
//! | `ASK:<question>\|<opt1>\|<opt2>[\|…]` | AskUserQuestion (see [`ask_user_question_input`]), then `Answer was: <tool_result text>` |
//! | `CALL:<tool> <json>` | a tool_use of any tool with that input, then `Done.` |
//! | `STEPS:<n>` | `n` Bash rounds `echo step <i>` (i = 1..n), then `Done.` |
//! | `SLOWTOOL[:<n>]` | Bash that prints `tick <i>` once a second for `n` (30) seconds, then `Done.` |
//! | `SLOW`, `SLOW:<n>`, `SLOW:<n>:<ms>` | `n` (30) text deltas `chunk<i> ` (i from 0), the server's chunk delay (or `ms`) apart |
//! | `LONG:<n>` | one text of exactly `n` characters, a newline every 80 |
//! | `CODE:<n>` | one text of exactly `n` characters (`n` ≥ 100): prose, a fenced ` ```rust ` block across its middle third, prose |
//! | `DELTAS:<n>` | `n` text deltas `d<i> ` with no delay |
//! | `ERR<code>` | HTTP `code` with an Anthropic error body, streaming or not |
//! | `TRUNC` | streaming: the connection is cut mid-message; non-streaming: `Recovered.` |
//! | `SSEERR` | streaming: `event: error` mid-message; non-streaming: `Recovered.` |
//! | anything else | `Echo: <T>` (the demo server first tries [`crate::prompts`]) |

use std::time::Duration;

use serde_json::{Value, json};

/// How the CLI (2.1.328) wraps a user message that arrives while a tool runs. It is
/// sent as a `role:"system"` entry after the tool_result.
pub const FOLDED_MESSAGE_PREFIX: &str = "The user sent a new message while you were working:\n";
/// What follows the user's text in a folded message.
const FOLDED_MESSAGE_SUFFIX: &str = "\n\nThis is how Claude Code surfaces";

/// Default number of deltas for `SLOW`.
pub const SLOW_DEFAULT_DELTAS: usize = 30;
/// Default number of seconds for `SLOWTOOL`.
pub const SLOWTOOL_DEFAULT_SECS: usize = 30;

/// One content block of a scripted reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A text block.
    Text(String),
    /// A tool call; the fake makes up a unique `toolu_…` id.
    ToolUse {
        /// Tool name as listed in the request's `tools` (e.g. `Bash`, `Write`).
        name: String,
        /// The tool input object.
        input: Value,
    },
}

/// What the fake model answers to one `POST /v1/messages`.
///
/// Built by [`decide`] from keywords, or queued by a test with
/// [`FakeApi::push_script`](crate::FakeApi::push_script).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// One text block, streamed as a few deltas with no delay.
    Text(String),
    /// One tool_use block (`stop_reason: tool_use`).
    ToolUse {
        /// Tool name, e.g. `Bash`.
        name: String,
        /// The tool input object.
        input: Value,
    },
    /// Several blocks in one message, e.g. text and then two tool calls. The stop reason
    /// is `tool_use` if any block is a tool call.
    Blocks(Vec<Block>),
    /// One text block streamed as exactly these deltas, `delay` apart (`None`: the
    /// server's chunk delay, see [`FakeApi::set_chunk_delay`](crate::FakeApi::set_chunk_delay)).
    /// Non-streaming requests get the deltas joined.
    Chunks {
        /// The text deltas, in order.
        deltas: Vec<String>,
        /// Pause before every delta after the first.
        delay: Option<Duration>,
    },
    /// This HTTP status with the Anthropic error body, streaming or not.
    Error {
        /// HTTP status code, e.g. 529.
        status: u16,
    },
    /// Streaming: start a text block, send one delta, then cut the connection.
    /// Non-streaming: the text `Recovered.`.
    Truncate,
    /// Streaming: start a text block, send one delta, then `event: error`.
    /// Non-streaming: the text `Recovered.`.
    StreamError,
}

impl Reply {
    /// Shorthand for [`Reply::Text`].
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// Shorthand for a Bash tool call, as `TOOL:<cmd>` sends it.
    pub fn bash(command: impl Into<String>) -> Self {
        Self::ToolUse {
            name: "Bash".to_owned(),
            input: bash_input(&command.into()),
        }
    }

    /// The reply as content blocks, for a non-streaming answer.
    pub(crate) fn blocks_for_message(&self) -> Result<Vec<Block>, u16> {
        match self {
            Self::Text(text) => Ok(vec![Block::Text(text.clone())]),
            Self::ToolUse { name, input } => Ok(vec![Block::ToolUse {
                name: name.clone(),
                input: input.clone(),
            }]),
            Self::Blocks(blocks) => Ok(blocks.clone()),
            Self::Chunks { deltas, .. } => Ok(vec![Block::Text(deltas.concat())]),
            Self::Error { status } => Err(*status),
            Self::Truncate | Self::StreamError => Ok(vec![Block::Text("Recovered.".to_owned())]),
        }
    }
}

/// Decides the reply to a Messages API request body by the keyword rules above.
///
/// `body` should be a JSON object; anything without a `messages` array is read as an
/// empty conversation (the server rejects such bodies with 400 before calling this).
pub fn decide(body: &Value) -> Reply {
    match turn_facts(body) {
        Some(t) => keyword_reply(&t.text, t.rounds, &t.last_result),
        None => Reply::text("Echo: "),
    }
}

/// What a request says about the turn in progress (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnFacts {
    /// The newest human text.
    pub text: String,
    /// Assistant tool rounds since the message that holds it.
    pub rounds: usize,
    /// The text of the newest tool_result (empty when there is none).
    pub last_result: String,
    /// Whether that tool_result is an error (a failed or refused tool).
    pub last_failed: bool,
}

/// The [`TurnFacts`] of a request body, if it has human text.
pub fn turn_facts(body: &Value) -> Option<TurnFacts> {
    let msgs = messages(body);
    let (anchor, text) = newest_human_text(msgs)?;
    let (last_result, last_failed) = newest_user_message(msgs)
        .map(tool_results_of)
        .and_then(|results| results.into_iter().next())
        .map(|(_, text, is_error)| (text, is_error))
        .unwrap_or_default();
    Some(TurnFacts {
        text,
        rounds: tool_rounds_after(msgs, anchor),
        last_result,
        last_failed,
    })
}

/// The reply for human text `text` after `rounds` tool rounds, where `last_result` is the
/// text of the newest tool_result (used by `ASK`).
pub fn keyword_reply(text: &str, rounds: usize, last_result: &str) -> Reply {
    let trimmed = text.trim();
    let (head, arg) = match trimmed.split_once(':') {
        Some((head, arg)) if !head.contains(char::is_whitespace) => (head, Some(arg)),
        _ => (trimmed, None),
    };
    let done = || Reply::text("Done.");
    let echo = || Reply::text(format!("Echo: {text}"));
    match (head, arg) {
        ("TOOL", Some(cmd)) => {
            if rounds == 0 {
                Reply::bash(cmd.trim())
            } else {
                done()
            }
        }
        ("WRITE", Some(rest)) => {
            if rounds > 0 {
                return done();
            }
            let rest = rest.trim_start();
            let (path, content) = rest.split_once(' ').unwrap_or((rest, ""));
            write_reply(path, content)
        }
        ("WRITE2", Some(rest)) => {
            let mut paths = rest.split_whitespace();
            let (Some(first), Some(second)) = (paths.next(), paths.next()) else {
                return echo();
            };
            match rounds {
                0 => write_reply(first, "one"),
                1 => write_reply(second, "two"),
                _ => done(),
            }
        }
        ("READ", Some(path)) => {
            if rounds > 0 {
                return done();
            }
            Reply::ToolUse {
                name: "Read".to_owned(),
                input: json!({ "file_path": path.trim() }),
            }
        }
        ("ASK", Some(rest)) => {
            if rounds > 0 {
                return Reply::text(format!("Answer was: {last_result}"));
            }
            let mut parts = rest.split('|').map(str::trim);
            let question = parts.next().unwrap_or_default();
            let options: Vec<&str> = parts.collect();
            Reply::ToolUse {
                name: "AskUserQuestion".to_owned(),
                input: ask_user_question_input(question, &options),
            }
        }
        ("CALL", Some(rest)) => {
            if rounds > 0 {
                return done();
            }
            let rest = rest.trim();
            let (name, input) = rest.split_once(char::is_whitespace).unwrap_or((rest, "{}"));
            match serde_json::from_str::<Value>(input.trim()) {
                Ok(input) => Reply::ToolUse {
                    name: name.to_owned(),
                    input,
                },
                Err(_) => echo(),
            }
        }
        ("STEPS", Some(n)) => {
            let Some(n) = parse_count(n) else {
                return echo();
            };
            if rounds < n {
                Reply::bash(format!("echo step {}", rounds + 1))
            } else {
                done()
            }
        }
        ("SLOWTOOL", arg) => {
            let secs = match arg {
                None => SLOWTOOL_DEFAULT_SECS,
                Some(n) => match parse_count(n) {
                    Some(n) => n,
                    None => return echo(),
                },
            };
            if rounds > 0 {
                return done();
            }
            Reply::bash(format!(
                "for i in $(seq 1 {secs}); do echo tick $i; sleep 1; done"
            ))
        }
        ("SLOW", arg) => slow_reply(arg).unwrap_or_else(echo),
        ("LONG", Some(n)) => parse_count(n).map_or_else(echo, |n| Reply::Text(long_text(n))),
        ("CODE", Some(n)) => parse_count(n)
            .filter(|n| *n >= 100)
            .map_or_else(echo, |n| Reply::Text(code_text(n))),
        ("DELTAS", Some(n)) => parse_count(n).map_or_else(echo, |n| Reply::Chunks {
            deltas: (0..n).map(|i| format!("d{i} ")).collect(),
            delay: Some(Duration::ZERO),
        }),
        ("TRUNC", None) => Reply::Truncate,
        ("SSEERR", None) => Reply::StreamError,
        (head, None) => head
            .strip_prefix("ERR")
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (100..=999).contains(code))
            .map_or_else(echo, |status| Reply::Error { status }),
        _ => echo(),
    }
}

/// The AskUserQuestion input the `ASK:` keyword sends: one single-choice question with
/// header `Question`, and each option as `{"label": opt, "description": "Choose <opt>"}`.
///
/// Schema (CLI 2.1.328): `{"questions": [{"question", "header", "options": [{"label",
/// "description", "preview"?}] (2–4), "multiSelect"}] (1–4), "answers"?: {question:
/// label}, "annotations"?, "metadata"?}`.
pub fn ask_user_question_input(question: &str, options: &[&str]) -> Value {
    let options: Vec<Value> = options
        .iter()
        .map(|label| json!({ "label": label, "description": format!("Choose {label}") }))
        .collect();
    json!({
        "questions": [{
            "question": question,
            "header": "Question",
            "options": options,
            "multiSelect": false,
        }]
    })
}

/// A readable text of exactly `n` characters (ASCII), with a newline every 80.
pub fn long_text(n: usize) -> String {
    const PATTERN: &[u8] = b"The quick brown fox jumps over the lazy dog. 0123456789 ";
    let mut out = String::with_capacity(n);
    for i in 0..n {
        if i % 80 == 79 {
            out.push('\n');
        } else {
            out.push(char::from(PATTERN[i % PATTERN.len()]));
        }
    }
    out
}

/// Exactly `n` characters (`n` ≥ 100) of Markdown: [`long_text`] prose, then a
/// ` ```rust ` fence holding numbered code lines over about the middle third, then prose
/// again. For checking that a chat adapter splits long answers without breaking a block.
pub fn code_text(n: usize) -> String {
    let open = "\n```rust\n";
    let close = "```\n";
    let head = n / 3;
    let code_len = n / 3;
    let mut code = String::new();
    let mut i = 0;
    loop {
        let line = format!("let value_{i} = compute({i}); // step {i}\n");
        if code.len() + line.len() > code_len {
            break;
        }
        code.push_str(&line);
        i += 1;
    }
    let mut out = long_text(head);
    out.push_str(open);
    out.push_str(&code);
    out.push_str(close);
    let rest = n.saturating_sub(out.chars().count());
    out.push_str(&long_text(rest));
    out
}

/// The newest human text of a request body. See the module docs for what counts as
/// human text.
pub fn last_human_text(body: &Value) -> Option<String> {
    newest_human_text(messages(body)).map(|(_, text)| text)
}

/// Every text in every message, in order, joined with `\n`: string contents, text blocks
/// (system reminders included), tool_use inputs as JSON, and tool_result contents.
pub fn all_text(body: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    for msg in messages(body) {
        match msg.get("content") {
            Some(Value::String(s)) => out.push(s.clone()),
            Some(Value::Array(blocks)) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(t) = block.get("text").and_then(Value::as_str) {
                                out.push(t.to_owned());
                            }
                        }
                        Some("tool_use") => {
                            if let Some(input) = block.get("input") {
                                out.push(input.to_string());
                            }
                        }
                        Some("tool_result") => out.push(tool_result_text(block)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out.join("\n")
}

/// The `(tool_use_id, content text, is_error)` of every tool_result in the newest user
/// message of a request body.
pub fn tool_results(body: &Value) -> Vec<(String, String, bool)> {
    newest_user_message(messages(body))
        .map(tool_results_of)
        .unwrap_or_default()
}

fn messages(body: &Value) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn role(msg: &Value) -> Option<&str> {
    msg.get("role").and_then(Value::as_str)
}

fn is_human_text(text: &str) -> bool {
    let t = text.trim_start();
    // `[Image: source: <path>]` is the CLI's own note after an image block of a prompt.
    !t.starts_with("<system-reminder>")
        && !t.starts_with("[Request interrupted by user")
        && !t.starts_with("[Image: source: ")
}

/// The last human text of one message, if it has any: user text, or the text of a
/// folded mid-turn message.
fn human_text_of(msg: &Value) -> Option<String> {
    match role(msg) {
        Some("user") => user_text_of(msg),
        Some("system") => folded_text_of(msg),
        _ => None,
    }
}

fn user_text_of(msg: &Value) -> Option<String> {
    match msg.get("content")? {
        Value::String(s) => is_human_text(s).then(|| s.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .rfind(|t| is_human_text(t))
            .map(str::to_owned),
        _ => None,
    }
}

/// The user's text inside a `role:"system"` folded-message entry.
fn folded_text_of(msg: &Value) -> Option<String> {
    let texts: Vec<&str> = match msg.get("content")? {
        Value::String(s) => vec![s.as_str()],
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => return None,
    };
    texts.into_iter().rev().find_map(|t| {
        let rest = t.strip_prefix(FOLDED_MESSAGE_PREFIX)?;
        let text = rest
            .find(FOLDED_MESSAGE_SUFFIX)
            .map_or(rest, |end| &rest[..end]);
        Some(text.to_owned())
    })
}

fn newest_human_text(msgs: &[Value]) -> Option<(usize, String)> {
    msgs.iter()
        .enumerate()
        .rev()
        .find_map(|(i, m)| human_text_of(m).map(|t| (i, t)))
}

fn newest_user_message(msgs: &[Value]) -> Option<&Value> {
    msgs.iter().rev().find(|m| role(m) == Some("user"))
}

fn has_tool_use(msg: &Value) -> bool {
    msg.get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        })
}

/// Counts model responses after `anchor` that called tools. Consecutive assistant
/// entries count as one response, since the CLI may store one response as several.
fn tool_rounds_after(msgs: &[Value], anchor: usize) -> usize {
    let mut rounds = 0;
    let mut group_has_tool: Option<bool> = None;
    for msg in msgs.iter().skip(anchor + 1) {
        match role(msg) {
            Some("assistant") => {
                let has = has_tool_use(msg);
                group_has_tool = Some(group_has_tool.unwrap_or(false) || has);
            }
            Some("user") => rounds += usize::from(group_has_tool.take() == Some(true)),
            _ => {}
        }
    }
    rounds + usize::from(group_has_tool == Some(true))
}

fn tool_result_text(block: &Value) -> String {
    match block.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn tool_results_of(msg: &Value) -> Vec<(String, String, bool)> {
    let Some(blocks) = msg.get("content").and_then(Value::as_array) else {
        return Vec::new();
    };
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| {
            let id = b
                .get("tool_use_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let is_error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            (id, tool_result_text(b), is_error)
        })
        .collect()
}

fn bash_input(command: &str) -> Value {
    json!({ "command": command, "description": "run command" })
}

fn write_reply(path: &str, content: &str) -> Reply {
    Reply::ToolUse {
        name: "Write".to_owned(),
        input: json!({ "file_path": path, "content": content }),
    }
}

fn parse_count(s: &str) -> Option<usize> {
    s.trim().parse().ok()
}

fn slow_reply(arg: Option<&str>) -> Option<Reply> {
    let (n, delay) = match arg {
        None => (SLOW_DEFAULT_DELTAS, None),
        Some(arg) => match arg.split_once(':') {
            None => (parse_count(arg)?, None),
            Some((n, ms)) => (
                parse_count(n)?,
                Some(Duration::from_millis(ms.trim().parse().ok()?)),
            ),
        },
    };
    Some(Reply::Chunks {
        deltas: (0..n).map(|i| format!("chunk{i} ")).collect(),
        delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Value {
        json!({ "role": "user", "content": text })
    }

    fn assistant_tool(id: &str) -> Value {
        json!({ "role": "assistant", "content": [
            { "type": "tool_use", "id": id, "name": "Bash", "input": {} }
        ]})
    }

    fn result(id: &str, text: &str) -> Value {
        json!({ "role": "user", "content": [
            { "type": "tool_result", "tool_use_id": id, "content": text, "is_error": false }
        ]})
    }

    fn body(msgs: Vec<Value>) -> Value {
        json!({ "model": "m", "messages": msgs })
    }

    #[test]
    fn first_request_shape_skips_reminders_and_system_entries() {
        let b = body(vec![
            json!({ "role": "user", "content": [
                { "type": "text", "text": "<system-reminder>\nstuff\n</system-reminder>" },
                { "type": "text", "text": "hello" },
            ]}),
            json!({ "role": "system", "content": [{ "type": "text", "text": "# Environment" }] }),
        ]);
        assert_eq!(last_human_text(&b).as_deref(), Some("hello"));
        assert_eq!(decide(&b), Reply::text("Echo: hello"));
    }

    #[test]
    fn the_cli_note_after_an_image_is_not_human_text() {
        let b = body(vec![json!({ "role": "user", "content": [
            { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBO" } },
            { "type": "text", "text": "what is this" },
            { "type": "text", "text": "[Image: source: /tmp/x/images/1.png]" },
        ]})]);
        assert_eq!(decide(&b), Reply::text("Echo: what is this"));
    }

    #[test]
    fn tool_then_done() {
        let first = body(vec![user("TOOL:ls -la")]);
        assert_eq!(decide(&first), Reply::bash("ls -la"));
        let second = body(vec![
            user("TOOL:ls -la"),
            assistant_tool("t1"),
            result("t1", "files"),
        ]);
        assert_eq!(decide(&second), Reply::text("Done."));
        assert_eq!(
            tool_results(&second),
            vec![("t1".to_owned(), "files".to_owned(), false)]
        );
    }

    #[test]
    fn merged_tool_result_and_new_text_starts_fresh() {
        let b = body(vec![
            user("TOOL:ls"),
            assistant_tool("t1"),
            json!({ "role": "user", "content": [
                { "type": "tool_result", "tool_use_id": "t1", "content": "refused", "is_error": true },
                { "type": "text", "text": "[Request interrupted by user for tool use]" },
                { "type": "text", "text": "TOOL:pwd" },
            ]}),
        ]);
        assert_eq!(last_human_text(&b).as_deref(), Some("TOOL:pwd"));
        assert_eq!(decide(&b), Reply::bash("pwd"));
    }

    #[test]
    fn folded_mid_turn_message_counts_as_new_text() {
        let b = body(vec![
            user("SLOWTOOL:5"),
            json!({ "role": "system", "content": "# Environment" }),
            assistant_tool("t1"),
            result("t1", "tick 1"),
            json!({ "role": "system", "content": [{ "type": "text", "text":
                "The user sent a new message while you were working:\nTOOL:pwd\n\nThis is how \
                 Claude Code surfaces messages the user sends mid-turn. Address it." }] }),
        ]);
        assert_eq!(last_human_text(&b).as_deref(), Some("TOOL:pwd"));
        assert_eq!(decide(&b), Reply::bash("pwd"));
    }

    #[test]
    fn steps_count_rounds_and_split_assistant_entries() {
        let mut msgs = vec![user("STEPS:2")];
        assert_eq!(decide(&body(msgs.clone())), Reply::bash("echo step 1"));
        // One response stored as a text entry followed by a tool_use entry.
        msgs.push(json!({ "role": "assistant", "content": [{ "type": "text", "text": "ok" }] }));
        msgs.push(assistant_tool("t1"));
        msgs.push(result("t1", "step 1"));
        assert_eq!(decide(&body(msgs.clone())), Reply::bash("echo step 2"));
        msgs.push(json!({ "role": "system", "content": "noise" }));
        msgs.push(assistant_tool("t2"));
        msgs.push(result("t2", "step 2"));
        assert_eq!(decide(&body(msgs)), Reply::text("Done."));
    }

    #[test]
    fn write2_writes_twice() {
        let mut msgs = vec![user("WRITE2:/a /b")];
        let write = |p: &str, c: &str| Reply::ToolUse {
            name: "Write".to_owned(),
            input: json!({ "file_path": p, "content": c }),
        };
        assert_eq!(decide(&body(msgs.clone())), write("/a", "one"));
        msgs.extend([assistant_tool("t1"), result("t1", "ok")]);
        assert_eq!(decide(&body(msgs.clone())), write("/b", "two"));
        msgs.extend([assistant_tool("t2"), result("t2", "ok")]);
        assert_eq!(decide(&body(msgs)), Reply::text("Done."));
    }

    #[test]
    fn write_keeps_content_spaces() {
        assert_eq!(
            keyword_reply("WRITE:/tmp/x hello big world", 0, ""),
            Reply::ToolUse {
                name: "Write".to_owned(),
                input: json!({ "file_path": "/tmp/x", "content": "hello big world" }),
            }
        );
    }

    #[test]
    fn ask_and_answer() {
        let Reply::ToolUse { name, input } = keyword_reply("ASK:Pick one?|Red|Blue", 0, "") else {
            panic!("expected a tool call");
        };
        assert_eq!(name, "AskUserQuestion");
        assert_eq!(input["questions"][0]["question"], "Pick one?");
        assert_eq!(input["questions"][0]["options"][1]["label"], "Blue");
        let b = body(vec![
            user("ASK:Pick one?|Red|Blue"),
            assistant_tool("t1"),
            result("t1", "User answered: Blue"),
        ]);
        assert_eq!(decide(&b), Reply::text("Answer was: User answered: Blue"));
    }

    #[test]
    fn slow_variants() {
        let Reply::Chunks { deltas, delay } = keyword_reply("SLOW", 0, "") else {
            panic!("expected chunks");
        };
        assert_eq!(deltas.len(), SLOW_DEFAULT_DELTAS);
        assert_eq!(deltas[0], "chunk0 ");
        assert_eq!(delay, None);
        assert_eq!(
            keyword_reply("SLOW:3:20", 0, ""),
            Reply::Chunks {
                deltas: vec!["chunk0 ".into(), "chunk1 ".into(), "chunk2 ".into()],
                delay: Some(Duration::from_millis(20)),
            }
        );
        assert!(matches!(
            keyword_reply("SLOWTOOL", 0, ""),
            Reply::ToolUse { .. }
        ));
        assert_eq!(
            keyword_reply("SLOWLY please", 0, ""),
            Reply::text("Echo: SLOWLY please")
        );
    }

    #[test]
    fn long_and_deltas() {
        let Reply::Text(t) = keyword_reply("CODE:5000", 0, "") else {
            panic!("expected text");
        };
        assert_eq!(t.chars().count(), 5000);
        assert_eq!(t.matches("```").count(), 2, "one fenced block");
        assert!(t.contains("\n```rust\nlet value_0 = compute(0);"));
        let Reply::Text(t) = keyword_reply("LONG:1000", 0, "") else {
            panic!("expected text");
        };
        assert_eq!(t.chars().count(), 1000);
        assert_eq!(t.lines().next().map(str::len), Some(79));
        let Reply::Chunks { deltas, .. } = keyword_reply("DELTAS:5000", 0, "") else {
            panic!("expected chunks");
        };
        assert_eq!(deltas.len(), 5000);
        assert_eq!(deltas[4999], "d4999 ");
    }

    #[test]
    fn errors_and_broken_streams() {
        assert_eq!(keyword_reply("ERR529", 0, ""), Reply::Error { status: 529 });
        assert_eq!(keyword_reply("ERR401", 0, ""), Reply::Error { status: 401 });
        assert_eq!(keyword_reply("ERRx", 0, ""), Reply::text("Echo: ERRx"));
        assert_eq!(keyword_reply("TRUNC", 0, ""), Reply::Truncate);
        assert_eq!(keyword_reply("SSEERR", 0, ""), Reply::StreamError);
        assert_eq!(
            Reply::Truncate.blocks_for_message(),
            Ok(vec![Block::Text("Recovered.".into())])
        );
    }

    #[test]
    fn call_any_tool() {
        assert_eq!(
            keyword_reply(r#"CALL:mcp__s__echo {"text":"hi"}"#, 0, ""),
            Reply::ToolUse {
                name: "mcp__s__echo".to_owned(),
                input: json!({ "text": "hi" }),
            }
        );
    }

    #[test]
    fn all_text_includes_history() {
        let b = body(vec![
            user("first"),
            json!({ "role": "assistant", "content": [{ "type": "text", "text": "Echo: first" }] }),
            user("second"),
        ]);
        assert_eq!(all_text(&b), "first\nEcho: first\nsecond");
        assert_eq!(decide(&json!({})), Reply::text("Echo: "));
    }
}
