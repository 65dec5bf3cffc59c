//! Tool calls for people: a one-line summary (the command, the file, the pattern), the
//! input as the page shows it (a diff for file edits, the command for `Bash`, else
//! pretty JSON), and the summary line of a turn (tools, files changed, cost, duration).

use std::collections::BTreeMap;

use serde_json::Value;

use super::diff::{self, DiffView};
use super::time;

/// Longest one-line summary, in characters.
const MAX_SUMMARY: usize = 160;
/// Longest JSON input shown, in characters.
const MAX_INPUT: usize = 20_000;

/// A tool input as the page shows it.
#[derive(Clone, Debug)]
pub enum Detail {
    /// A file edit.
    Diff(DiffView),
    /// A shell command.
    Command(String),
    /// Anything else, pretty-printed.
    Json(String),
}

/// What the summary line of a turn says.
#[derive(Clone, Debug, Default)]
pub struct TurnSummary {
    /// Whether the turn failed.
    pub is_error: bool,
    /// The CLI's result subtype (`success`, `error_during_execution`, ...).
    pub subtype: String,
    /// `Write ×2, Bash`, or empty.
    pub tools: String,
    /// How many tool calls.
    pub tool_count: usize,
    /// Files the turn's tools wrote or edited.
    pub files: Vec<String>,
    /// `$0.0123`.
    pub cost: Option<String>,
    /// `3.2 s`.
    pub duration: Option<String>,
    /// Model round trips.
    pub rounds: Option<u64>,
}

/// The command, file, pattern or URL of a call, on one line.
pub fn summary(name: &str, input: &Value) -> String {
    let key = match name {
        "Bash" => "command",
        "Read" | "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "file_path",
        "Grep" | "Glob" => "pattern",
        "WebFetch" => "url",
        "WebSearch" => "query",
        "Task" => "description",
        _ => "",
    };
    let text = input
        .get(key)
        .and_then(Value::as_str)
        .or_else(|| {
            input
                .as_object()
                .and_then(|o| o.values().find_map(Value::as_str))
        })
        .unwrap_or_default();
    one_line(text, MAX_SUMMARY)
}

/// The input as the page shows it.
pub fn detail(name: &str, input: &Value) -> Detail {
    if let Some(d) = diff::for_tool(name, input) {
        return Detail::Diff(d);
    }
    if name == "Bash"
        && let Some(cmd) = input.get("command").and_then(Value::as_str)
    {
        return Detail::Command(cmd.chars().take(MAX_INPUT).collect());
    }
    let pretty = serde_json::to_string_pretty(input).unwrap_or_default();
    Detail::Json(pretty.chars().take(MAX_INPUT).collect())
}

/// The summary of a turn from its tool calls and its result.
pub fn turn_summary(
    calls: &[(String, Value)],
    is_error: bool,
    subtype: &str,
    cost_usd: Option<f64>,
    duration_ms: Option<u64>,
    rounds: Option<u64>,
) -> TurnSummary {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files: Vec<String> = Vec::new();
    for (name, input) in calls {
        *counts.entry(name.as_str()).or_default() += 1;
        if matches!(
            name.as_str(),
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit"
        ) && let Some(p) = input
            .get("file_path")
            .or_else(|| input.get("notebook_path"))
            .and_then(Value::as_str)
            && !files.iter().any(|f| f == p)
        {
            files.push(p.to_owned());
        }
    }
    let tools = counts
        .iter()
        .map(|(name, n)| {
            if *n > 1 {
                format!("{name} ×{n}")
            } else {
                (*name).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    TurnSummary {
        is_error,
        subtype: subtype.to_owned(),
        tools,
        tool_count: calls.len(),
        files,
        cost: cost_usd.map(time::money),
        duration: duration_ms.map(time::duration),
        rounds,
    }
}

/// `text` on one line, cut at `max` characters with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_owned();
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn summaries_pick_the_telling_field() {
        assert_eq!(summary("Bash", &json!({"command": "ls\n-la"})), "ls -la");
        assert_eq!(
            summary("Write", &json!({"file_path": "/a", "content": "x"})),
            "/a"
        );
        assert_eq!(summary("mcp__x", &json!({"q": "hi"})), "hi");
        assert_eq!(one_line(&"x".repeat(10), 5), "xxxx…");
    }

    #[test]
    fn turn_summary_counts_tools_and_files() {
        let calls = vec![
            ("Write".to_owned(), json!({"file_path": "/a"})),
            ("Write".to_owned(), json!({"file_path": "/a"})),
            ("Bash".to_owned(), json!({"command": "ls"})),
            ("Edit".to_owned(), json!({"file_path": "/b"})),
        ];
        let s = turn_summary(&calls, false, "success", Some(0.01234), Some(3200), Some(2));
        assert_eq!(s.tools, "Bash, Edit, Write ×2");
        assert_eq!(s.tool_count, 4);
        assert_eq!(s.files, vec!["/a", "/b"]);
        assert_eq!(s.cost.as_deref(), Some("$0.0123"));
        assert_eq!(s.duration.as_deref(), Some("3.2 s"));
    }

    #[test]
    fn details() {
        assert!(
            matches!(detail("Bash", &json!({"command": "ls"})), Detail::Command(c) if c == "ls")
        );
        assert!(matches!(
            detail("Read", &json!({"file_path": "/a"})),
            Detail::Json(_)
        ));
        assert!(matches!(
            detail(
                "Edit",
                &json!({"file_path": "/a", "old_string": "a", "new_string": "b"})
            ),
            Detail::Diff(_)
        ));
    }
}
