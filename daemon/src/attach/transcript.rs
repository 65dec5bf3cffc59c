//! The transcript side of `ccrm attach`: where claude keeps a session's transcript, and
//! [`Tail`], which follows what the TUI appends to it.
//!
//! The transcript is `<claude config dir>/projects/*/<id>.jsonl` (protocol §7.3), looked up
//! by id because the folder is a mangled cwd. [`Tail`] starts where the stream-json child
//! left it and turns each new complete line into [`TuiItem`]s ([`transcript_items`]); the
//! monitor ([`super::monitor`]) sends them to the session actor, which reports them as events
//! with origin `tui`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::child;
use common::ids::SessionId;
use serde_json::Value;
use tokio::time::Instant;
use tracing::warn;

/// Transcript bytes read per poll at most; the rest waits for the next poll.
const MAX_READ: u64 = 8 * 1024 * 1024;

/// Where claude keeps its state for our children: `CLAUDE_CONFIG_DIR`, else `$HOME/.claude`
/// (from `child_env` first, then the daemon's environment).
pub fn claude_config_dir(child_env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let var = |k: &str| {
        child_env
            .get(k)
            .cloned()
            .or_else(|| std::env::var(k).ok())
            .filter(|v| !v.is_empty())
    };
    if let Some(dir) = var("CLAUDE_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    var("HOME").map(|h| Path::new(&h).join(".claude"))
}

/// The transcript of `id` under `config_dir`, looked up by id (the folder is a mangled cwd).
pub fn find_transcript(config_dir: &Path, id: &SessionId) -> Option<PathBuf> {
    let file = format!("{id}.jsonl");
    std::fs::read_dir(config_dir.join("projects"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(&file))
        .find(|p| p.is_file())
}

/// Something the TUI did, read from the transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum TuiItem {
    /// The user typed a prompt: a turn starts.
    Prompt(String),
    /// A finished assistant text block.
    Text(String),
    /// The model called a tool.
    ToolUse {
        /// Claude's id for the call.
        id: String,
        /// Tool name.
        name: String,
        /// Tool input.
        input: Value,
    },
    /// A tool finished.
    ToolResult {
        /// The call it answers.
        id: String,
        /// Result text.
        content: String,
        /// Whether it failed or was refused.
        is_error: bool,
    },
    /// The turn ended (`system/turn_duration`).
    TurnEnd {
        /// Wall time of the turn.
        duration_ms: Option<u64>,
    },
    /// The user interrupted the turn (Esc).
    Interrupted,
}

/// Prefixes of user texts the TUI writes for itself (slash commands, `!` shell mode).
const TUI_OWN_TEXT: &[&str] = &[
    "<command-name>",
    "<command-message>",
    "<command-args>",
    "<local-command-",
    "<bash-input>",
    "<bash-stdout>",
    "<bash-stderr>",
    "<system-reminder>",
];
const INTERRUPT_MARK: &str = "[Request interrupted by user";

/// The [`TuiItem`]s of one transcript line. Lenient: the transcript is an internal format
/// (protocol §7.3), so anything not recognised yields nothing.
pub fn transcript_items(line: &Value) -> Vec<TuiItem> {
    let flag = |k: &str| line.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("isSidechain") {
        return Vec::new();
    }
    let kind = line.get("type").and_then(Value::as_str).unwrap_or_default();
    let message = line.get("message");
    let content = message.and_then(|m| m.get("content"));
    match kind {
        "user" if !flag("isMeta") => user_items(content),
        "assistant" => {
            let synthetic =
                message.and_then(|m| m.get("model")).and_then(Value::as_str) == Some("<synthetic>");
            if synthetic && !flag("isApiErrorMessage") {
                // "No response requested." and the like, written on resume.
                return Vec::new();
            }
            let Some(Value::Array(blocks)) = content else {
                return Vec::new();
            };
            blocks
                .iter()
                .filter_map(|b| match b.get("type").and_then(Value::as_str)? {
                    "text" => {
                        let text = b.get("text").and_then(Value::as_str)?;
                        (!text.trim().is_empty()).then(|| TuiItem::Text(text.to_owned()))
                    }
                    "tool_use" => Some(TuiItem::ToolUse {
                        id: str_field(b, "id"),
                        name: str_field(b, "name"),
                        input: b.get("input").cloned().unwrap_or(Value::Null),
                    }),
                    _ => None,
                })
                .collect()
        }
        "system" if line.get("subtype").and_then(Value::as_str) == Some("turn_duration") => {
            vec![TuiItem::TurnEnd {
                duration_ms: line.get("durationMs").and_then(Value::as_u64),
            }]
        }
        _ => Vec::new(),
    }
}

fn user_items(content: Option<&Value>) -> Vec<TuiItem> {
    let prompt = |text: &str| -> Option<TuiItem> {
        let t = text.trim_start();
        if t.starts_with(INTERRUPT_MARK) {
            return Some(TuiItem::Interrupted);
        }
        if t.is_empty() || TUI_OWN_TEXT.iter().any(|p| t.starts_with(p)) {
            return None;
        }
        Some(TuiItem::Prompt(text.to_owned()))
    };
    match content {
        Some(Value::String(s)) => prompt(s).into_iter().collect(),
        Some(Value::Array(blocks)) => {
            let mut items = Vec::new();
            let mut texts = Vec::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_result") => items.push(TuiItem::ToolResult {
                        id: str_field(b, "tool_use_id"),
                        content: child::content_text(b.get("content").unwrap_or(&Value::Null)),
                        is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    }),
                    Some("text") => {
                        if let Some(t) = b.get("text").and_then(Value::as_str) {
                            texts.push(t);
                        }
                    }
                    _ => {}
                }
            }
            for t in texts {
                items.extend(prompt(t));
            }
            items
        }
        _ => Vec::new(),
    }
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Follows what is appended to a session's transcript from a starting point on.
#[derive(Debug)]
pub struct Tail {
    config_dir: Option<PathBuf>,
    id: SessionId,
    path: Option<PathBuf>,
    offset: u64,
    partial: Vec<u8>,
    grew_at: Instant,
}

impl Tail {
    /// Starts at the current end of the transcript (or at its start, once it appears).
    pub fn new(config_dir: Option<PathBuf>, id: SessionId) -> Self {
        let path = config_dir.as_deref().and_then(|d| find_transcript(d, &id));
        let offset = path
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        Self {
            config_dir,
            id,
            path,
            offset,
            partial: Vec::new(),
            grew_at: Instant::now(),
        }
    }

    /// Whether the transcript has been quiet for at least `d`.
    pub fn quiet_for(&self, d: Duration) -> bool {
        self.grew_at.elapsed() >= d
    }

    /// The items of the complete lines appended since the last call, each with its line.
    pub fn read(&mut self) -> Vec<(TuiItem, Value)> {
        if self.path.is_none() {
            self.path = self
                .config_dir
                .as_deref()
                .and_then(|d| find_transcript(d, &self.id));
        }
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let bytes = match read_from(path, self.offset) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, path = %path.display(), "cannot read the transcript");
                return Vec::new();
            }
        };
        if bytes.is_empty() {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.grew_at = Instant::now();
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .flat_map(|v| {
                transcript_items(&v)
                    .into_iter()
                    .map(move |item| (item, v.clone()))
            })
            .collect()
    }
}

fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= offset {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take((len - offset).min(MAX_READ)).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_prompt_text_and_turn_end_are_items() {
        let user = json!({"type": "user", "message": {"role": "user", "content": "hi there"},
            "promptSource": "typed", "isSidechain": false});
        assert_eq!(
            transcript_items(&user),
            [TuiItem::Prompt("hi there".into())]
        );
        let asst = json!({"type": "assistant", "message": {"model": "claude-opus-5-5",
            "content": [{"type": "text", "text": "Echo: hi there"},
                        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}});
        assert_eq!(
            transcript_items(&asst),
            [
                TuiItem::Text("Echo: hi there".into()),
                TuiItem::ToolUse {
                    id: "t1".into(),
                    name: "Bash".into(),
                    input: json!({"command": "ls"})
                }
            ]
        );
        let end = json!({"type": "system", "subtype": "turn_duration", "durationMs": 135});
        assert_eq!(
            transcript_items(&end),
            [TuiItem::TurnEnd {
                duration_ms: Some(135)
            }]
        );
    }

    #[test]
    fn meta_synthetic_commands_and_bookkeeping_are_skipped() {
        for line in [
            json!({"type": "user", "isMeta": true, "message": {"content": "caveat"}}),
            json!({"type": "user", "message": {"content": "<command-name>/exit</command-name>"}}),
            json!({"type": "assistant", "message": {"model": "<synthetic>",
                "content": [{"type": "text", "text": "No response requested."}]}}),
            json!({"type": "assistant", "isSidechain": true, "message": {"content": [{"type": "text", "text": "x"}]}}),
            json!({"type": "last-prompt", "lastPrompt": "hi"}),
            json!({"type": "queue-operation", "content": "hi"}),
            json!("not an object"),
        ] {
            assert!(transcript_items(&line).is_empty(), "{line}");
        }
    }

    #[test]
    fn interrupt_marker_and_tool_results() {
        let line = json!({"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "out"}], "is_error": true},
            {"type": "text", "text": "[Request interrupted by user]"}]}});
        assert_eq!(
            transcript_items(&line),
            [
                TuiItem::ToolResult {
                    id: "t1".into(),
                    content: "out".into(),
                    is_error: true
                },
                TuiItem::Interrupted
            ]
        );
    }

    #[test]
    fn tail_reads_only_complete_new_lines() -> anyhow::Result<()> {
        use std::io::Write;
        let dir = tempfile::tempdir()?;
        let id = SessionId::new();
        let project = dir.path().join("projects").join("-tmp-x");
        std::fs::create_dir_all(&project)?;
        let file = project.join(format!("{id}.jsonl"));
        std::fs::write(
            &file,
            "{\"type\":\"user\",\"message\":{\"content\":\"old\"}}\n",
        )?;
        let mut tail = Tail::new(Some(dir.path().to_owned()), id);
        assert!(tail.read().is_empty(), "starts at the end");
        let mut f = std::fs::OpenOptions::new().append(true).open(&file)?;
        write!(
            f,
            "{{\"type\":\"user\",\"message\":{{\"content\":\"new\"}}}}\n{{\"type\":"
        )?;
        let items: Vec<TuiItem> = tail.read().into_iter().map(|(i, _)| i).collect();
        assert_eq!(items, [TuiItem::Prompt("new".into())]);
        writeln!(f, "\"system\",\"subtype\":\"turn_duration\"}}")?;
        let items: Vec<TuiItem> = tail.read().into_iter().map(|(i, _)| i).collect();
        assert_eq!(items, [TuiItem::TurnEnd { duration_ms: None }]);
        Ok(())
    }

    #[test]
    fn tail_finds_a_transcript_that_appears_later() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let id = SessionId::new();
        let mut tail = Tail::new(Some(dir.path().to_owned()), id);
        assert!(tail.read().is_empty());
        let project = dir.path().join("projects").join("-p");
        std::fs::create_dir_all(&project)?;
        std::fs::write(
            project.join(format!("{id}.jsonl")),
            "{\"type\":\"user\",\"message\":{\"content\":\"first\"}}\n",
        )?;
        let items: Vec<TuiItem> = tail.read().into_iter().map(|(i, _)| i).collect();
        assert_eq!(items, [TuiItem::Prompt("first".into())]);
        Ok(())
    }
}
