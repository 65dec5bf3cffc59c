//! How a turn reads in chat, as plain strings: a compact line per tool call for the
//! progress message, a safe preview of a tool's input for an approval message, the file
//! an editing tool changes, and the one-line summary under a final answer.

use serde_json::Value;

use super::{one_line, truncate};

/// The input field that best says what a tool call does.
fn main_arg(name: &str, input: &Value) -> Option<String> {
    let keys: &[&str] = match name {
        "Bash" => &["command"],
        "Write" | "Edit" | "MultiEdit" | "Read" | "NotebookEdit" => &["file_path", "notebook_path"],
        "Glob" | "Grep" => &["pattern"],
        "WebFetch" => &["url"],
        "WebSearch" => &["query"],
        "Task" => &["description"],
        _ => &["file_path", "path", "command", "pattern", "url", "query"],
    };
    keys.iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// A compact one-line description of a tool call for the progress message.
pub fn tool_line(name: &str, input: &Value) -> String {
    match main_arg(name, input) {
        Some(arg) => format!("{name}: {}", truncate(&one_line(&arg), 60)),
        None => name.to_owned(),
    }
}

/// A safe preview of a tool's input for an approval message: the main argument, and for
/// writes the start of the content, at most `max` characters (the renderer escapes it).
pub fn tool_preview(name: &str, input: &Value, max: usize) -> String {
    let mut out = String::new();
    if let Some(arg) = main_arg(name, input) {
        out.push_str(&arg);
    }
    for key in ["content", "new_string"] {
        if let Some(body) = input.get(key).and_then(Value::as_str) {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(body);
            break;
        }
    }
    if out.is_empty() {
        out = serde_json::to_string_pretty(input).unwrap_or_default();
    }
    truncate(&out, max)
}

/// The file a tool call changes, if it is an editing tool.
pub fn changed_file(name: &str, input: &Value) -> Option<String> {
    matches!(name, "Write" | "Edit" | "MultiEdit" | "NotebookEdit")
        .then(|| main_arg(name, input))
        .flatten()
}

/// `1.2s`, `3m 4s`.
pub fn duration(ms: u64) -> String {
    if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// What a turn's tool calls came to, for its summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tool calls made.
    pub tools: usize,
    /// Files changed by editing tools that ran and succeeded.
    pub files: usize,
    /// Tool calls refused (by a person or a rule).
    pub denied: usize,
    /// Tool calls that ran and failed.
    pub failed: usize,
}

/// The one-line turn summary: tools used, files changed (only by calls that succeeded),
/// calls denied or failed, cost, duration.
pub fn summary_line(t: &Tally, cost_usd: Option<f64>, duration_ms: Option<u64>) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut parts = vec![format!("🔧 {} tool{}", t.tools, plural(t.tools))];
    parts.push(match t.files {
        0 => "📝 no files changed".to_owned(),
        n => format!("📝 {n} file{} changed", plural(n)),
    });
    if t.denied > 0 {
        parts.push(format!("🚫 {} denied", t.denied));
    }
    if t.failed > 0 {
        parts.push(format!("⚠️ {} failed", t.failed));
    }
    if let Some(c) = cost_usd {
        parts.push(format!("💰 ${c:.4}"));
    }
    if let Some(d) = duration_ms {
        parts.push(format!("⏱ {}", duration(d)));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tool_lines_and_previews_are_compact() {
        let input = json!({"file_path": "/tmp/x.txt", "content": "<script>\n".repeat(100)});
        assert_eq!(tool_line("Write", &input), "Write: /tmp/x.txt");
        let p = tool_preview("Write", &input, 50);
        assert_eq!(p.chars().count(), 50);
        assert!(p.starts_with("/tmp/x.txt\n<script>"));
        assert_eq!(
            tool_line("Bash", &json!({"command": "ls\n  -la"})),
            "Bash: ls -la"
        );
        assert_eq!(tool_line("Other", &json!({})), "Other");
        assert_eq!(
            changed_file("Edit", &json!({"file_path": "/a"})),
            Some("/a".into())
        );
        assert_eq!(changed_file("Read", &json!({"file_path": "/a"})), None);
    }

    #[test]
    fn summary_line_reads_well() {
        let t = Tally {
            tools: 1,
            files: 2,
            ..Tally::default()
        };
        assert_eq!(
            summary_line(&t, Some(0.01234), Some(1500)),
            "🔧 1 tool · 📝 2 files changed · 💰 $0.0123 · ⏱ 1.5s"
        );
        assert_eq!(
            summary_line(&Tally::default(), None, None),
            "🔧 0 tools · 📝 no files changed"
        );
        let t = Tally {
            tools: 3,
            files: 0,
            denied: 1,
            failed: 2,
        };
        assert_eq!(
            summary_line(&t, None, None),
            "🔧 3 tools · 📝 no files changed · 🚫 1 denied · ⚠️ 2 failed"
        );
        assert_eq!(duration(125_000), "2m 5s");
    }
}
