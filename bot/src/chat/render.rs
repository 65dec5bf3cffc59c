//! Pure text formatting for chat: a platform-neutral [`Rich`] text (plain, bold, inline
//! code, code blocks) that each adapter turns into its own markup ([`Rich::html`] for
//! Telegram, Markdown for Discord) or plain text when the platform rejects the markup;
//! escaping, truncation, tool previews and the one-line turn summary.
//!
//! Nothing here does I/O, so it is all unit-tested below.

use std::fmt::Write as _;

use serde_json::Value;

/// One piece of [`Rich`] text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Span {
    /// Ordinary text.
    Text(String),
    /// Bold text.
    Bold(String),
    /// Inline code.
    Code(String),
    /// A code block.
    Pre(String),
}

/// Text with a little structure, built by the core and rendered by an adapter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rich(pub Vec<Span>);

impl Rich {
    /// Plain text only.
    pub fn text(s: impl Into<String>) -> Self {
        Self(vec![Span::Text(s.into())])
    }

    /// Appends plain text.
    pub fn push(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Text(s.into()));
        self
    }

    /// Appends bold text.
    pub fn bold(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Bold(s.into()));
        self
    }

    /// Appends inline code.
    pub fn code(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Code(s.into()));
        self
    }

    /// Appends a code block.
    pub fn pre(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Pre(s.into()));
        self
    }

    /// Appends all spans of `other`.
    pub fn extend(mut self, other: Rich) -> Self {
        self.0.extend(other.0);
        self
    }

    /// The text without markup (what the reader sees; its length is what limits count).
    pub fn plain(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Span::Text(t) | Span::Bold(t) | Span::Code(t) => out.push_str(t),
                Span::Pre(t) => {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str(t);
                    if !t.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// Telegram HTML, every piece escaped.
    pub fn html(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Span::Text(t) => out.push_str(&escape_html(t)),
                Span::Bold(t) => {
                    let _ = write!(out, "<b>{}</b>", escape_html(t));
                }
                Span::Code(t) => {
                    let _ = write!(out, "<code>{}</code>", escape_html(t));
                }
                Span::Pre(t) => {
                    let _ = write!(out, "<pre>{}</pre>", escape_html(t));
                }
            }
        }
        out
    }

    /// Length of [`Rich::plain`] in UTF-16 code units, the way Telegram counts its 4096
    /// (never less than the number of characters, so it is safe for Discord too).
    pub fn len(&self) -> usize {
        self.plain().encode_utf16().count()
    }

    /// True when there is no text.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|s| match s {
            Span::Text(t) | Span::Bold(t) | Span::Code(t) | Span::Pre(t) => t.is_empty(),
        })
    }
}

/// Escapes `&`, `<`, `>` and `"` for Telegram HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, ending in `…` when cut (never splits a character).
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` on one line (newlines and runs of whitespace become one space).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Claude's Markdown answer as [`Rich`]: fenced code blocks become [`Span::Pre`], inline
/// backticks [`Span::Code`], the rest stays text (escaped by the renderer).
pub fn markdown(s: &str) -> Rich {
    let mut out = Rich::default();
    let mut in_block = false;
    let mut block = String::new();
    let mut text = String::new();
    for line in s.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            if in_block {
                out = out.pre(std::mem::take(&mut block));
            } else if !text.is_empty() {
                out = out.extend(inline_code(&std::mem::take(&mut text)));
            }
            in_block = !in_block;
            continue;
        }
        if in_block {
            block.push_str(line);
        } else {
            text.push_str(line);
        }
    }
    if in_block {
        out = out.pre(block);
    }
    if !text.is_empty() {
        out = out.extend(inline_code(&text));
    }
    out
}

fn inline_code(s: &str) -> Rich {
    if s.matches('`').count() % 2 == 1 {
        return Rich::text(s);
    }
    let mut out = Rich::default();
    for (i, part) in s.split('`').enumerate() {
        if part.is_empty() {
            continue;
        }
        out = if i % 2 == 1 {
            out.code(part)
        } else {
            out.push(part)
        };
    }
    out
}

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

/// The one-line turn summary: tools used, files changed, cost, duration.
pub fn summary_line(
    tools: usize,
    files: usize,
    cost_usd: Option<f64>,
    duration_ms: Option<u64>,
) -> String {
    let mut parts = vec![
        format!("🔧 {tools} tool{}", if tools == 1 { "" } else { "s" }),
        format!(
            "📝 {files} file{} changed",
            if files == 1 { "" } else { "s" }
        ),
    ];
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
    fn html_escapes_every_span() {
        let r = Rich::text("a<b>&c")
            .bold("\"x\"")
            .code("<i>")
            .pre("if a < b {}");
        assert_eq!(
            r.html(),
            "a&lt;b&gt;&amp;c<b>&quot;x&quot;</b><code>&lt;i&gt;</code><pre>if a &lt; b {}</pre>"
        );
        assert_eq!(r.plain(), "a<b>&c\"x\"<i>\nif a < b {}\n");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("ééé", 3), "ééé");
    }

    #[test]
    fn markdown_turns_fences_into_pre() {
        let r = markdown("Hi `x`\n```rust\nfn a() {}\n```\nbye");
        assert_eq!(
            r.0,
            vec![
                Span::Text("Hi ".into()),
                Span::Code("x".into()),
                Span::Text("\n".into()),
                Span::Pre("fn a() {}\n".into()),
                Span::Text("bye".into()),
            ]
        );
        // An unpaired backtick stays text.
        assert_eq!(markdown("a ` b").plain(), "a ` b");
    }

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
        assert_eq!(
            summary_line(1, 2, Some(0.01234), Some(1500)),
            "🔧 1 tool · 📝 2 files changed · 💰 $0.0123 · ⏱ 1.5s"
        );
        assert_eq!(
            summary_line(0, 0, None, None),
            "🔧 0 tools · 📝 0 files changed"
        );
        assert_eq!(duration(125_000), "2m 5s");
    }
}
