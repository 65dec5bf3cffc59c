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
    /// Ordinary text (escaped for every markup).
    Text(String),
    /// Markdown as Claude wrote it, outside code: Discord shows it as Markdown, Telegram
    /// (HTML mode) as plain text.
    Md(String),
    /// Bold text.
    Bold(String),
    /// Inline code.
    Code(String),
    /// A code block; `lang` may be empty.
    Pre {
        /// The fence's language (`rust`, `sh`, ...).
        lang: String,
        /// The code.
        code: String,
    },
}

impl Span {
    /// The span's text.
    fn body(&self) -> &str {
        match self {
            Self::Text(t) | Self::Md(t) | Self::Bold(t) | Self::Code(t) => t,
            Self::Pre { code, .. } => code,
        }
    }

    /// The same kind of span holding `text`.
    fn with(&self, text: String) -> Self {
        match self {
            Self::Text(_) => Self::Text(text),
            Self::Md(_) => Self::Md(text),
            Self::Bold(_) => Self::Bold(text),
            Self::Code(_) => Self::Code(text),
            Self::Pre { lang, .. } => Self::Pre {
                lang: lang.clone(),
                code: text,
            },
        }
    }

    /// True when `text` of this span may be appended to `self` as one span.
    fn joins(&self, next: &Self) -> bool {
        match (self, next) {
            (Self::Text(_), Self::Text(_)) | (Self::Md(_), Self::Md(_)) => true,
            (Self::Pre { lang: a, .. }, Self::Pre { lang: b, .. }) => a == b,
            _ => false,
        }
    }

    fn push_str(&mut self, s: &str) {
        match self {
            Self::Text(t) | Self::Md(t) | Self::Bold(t) | Self::Code(t) => t.push_str(s),
            Self::Pre { code, .. } => code.push_str(s),
        }
    }
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
    pub fn pre(self, s: impl Into<String>) -> Self {
        self.pre_lang("", s)
    }

    /// Appends a code block in language `lang`.
    pub fn pre_lang(mut self, lang: impl Into<String>, s: impl Into<String>) -> Self {
        self.0.push(Span::Pre {
            lang: lang.into(),
            code: s.into(),
        });
        self
    }

    /// Appends Markdown that Discord shows as such (see [`Span::Md`]).
    pub fn md(mut self, s: impl Into<String>) -> Self {
        self.0.push(Span::Md(s.into()));
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
                Span::Text(t) | Span::Md(t) | Span::Bold(t) | Span::Code(t) => out.push_str(t),
                Span::Pre { code: t, .. } => {
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
                Span::Text(t) | Span::Md(t) => out.push_str(&escape_html(t)),
                Span::Bold(t) => {
                    let _ = write!(out, "<b>{}</b>", escape_html(t));
                }
                Span::Code(t) => {
                    let _ = write!(out, "<code>{}</code>", escape_html(t));
                }
                Span::Pre { lang, code } => match fence_lang(lang) {
                    Some(l) => {
                        let _ = write!(
                            out,
                            "<pre><code class=\"language-{l}\">{}</code></pre>",
                            escape_html(code)
                        );
                    }
                    None => {
                        let _ = write!(out, "<pre>{}</pre>", escape_html(code));
                    }
                },
            }
        }
        out
    }

    /// Discord Markdown: text escaped, [`Span::Md`] as is, code in backticks and fences
    /// (a fence inside code is broken with a zero-width space so it cannot close the block).
    pub fn discord(&self) -> String {
        let mut out = String::new();
        let mut after_block = false;
        for s in &self.0 {
            if after_block && !s.body().is_empty() {
                out.push('\n');
                after_block = false;
            }
            match s {
                Span::Text(t) => out.push_str(&escape_discord(t)),
                Span::Md(t) => out.push_str(t),
                Span::Bold(t) if !t.is_empty() => {
                    let _ = write!(out, "**{}**", escape_discord(t));
                }
                Span::Code(t) if !t.is_empty() => out.push_str(&discord_code(t)),
                Span::Bold(_) | Span::Code(_) => {}
                Span::Pre { lang, code } => {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    let code = code.replace("```", "`\u{200b}``");
                    out.push_str("```");
                    out.push_str(fence_lang(lang).unwrap_or(""));
                    out.push('\n');
                    out.push_str(&code);
                    if !code.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str("```");
                    after_block = true;
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

    /// Length of [`Rich::discord`] in UTF-16 code units (the stricter reading of
    /// Discord's 2000 "characters").
    pub fn discord_len(&self) -> usize {
        self.discord().encode_utf16().count()
    }

    /// True when there is no text.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|s| s.body().is_empty())
    }

    /// Appends `span`, merged into the last span when they are of one kind.
    fn append(&mut self, span: Span) {
        match self.0.last_mut() {
            Some(last) if last.joins(&span) => last.push_str(span.body()),
            _ => self.0.push(span),
        }
    }
}

/// A fence language as it may appear after the backticks (`rust`, `c++`, `objective-c`),
/// or `None` when empty or odd.
fn fence_lang(lang: &str) -> Option<&str> {
    let ok = !lang.is_empty()
        && lang.len() <= 32
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-#_.".contains(c));
    ok.then_some(lang)
}

/// Escapes what Discord would read as Markdown, and keeps `@name` from reading as a
/// mention (a zero-width space after the `@`; pings are off anyway, see the adapter).
pub fn escape_discord(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut line_start = true;
    for c in s.chars() {
        let special = matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '<' | '>'
        ) || (line_start && matches!(c, '#' | '-' | '+'));
        if special {
            out.push('\\');
        }
        out.push(c);
        if c == '@' {
            out.push('\u{200b}');
        }
        line_start = c == '\n' || (line_start && c == ' ');
    }
    out
}

/// Inline code for Discord: single backticks, or double ones (padded) when the code holds
/// a backtick.
fn discord_code(t: &str) -> String {
    if !t.contains('`') {
        return format!("`{t}`");
    }
    format!("`` {} ``", t.replace("``", "`\u{200b}`"))
}

/// Splits `text` into at most `max_parts` pieces of at most `limit` by `measure`, cutting
/// at line ends where it can (else at a space, else anywhere). A code block cut in two is
/// closed at the end of one piece and reopened, with its language, at the start of the
/// next (each piece holds its own [`Span::Pre`]). `None` when it would take more pieces.
pub fn split(
    text: &Rich,
    limit: usize,
    max_parts: usize,
    measure: impl Fn(&Rich) -> usize,
) -> Option<Vec<Rich>> {
    if max_parts > 0 && measure(text) <= limit {
        return Some(vec![text.clone()]);
    }
    let mut parts: Vec<Rich> = Vec::new();
    let mut cur = Rich::default();
    for span in &text.0 {
        for line in span.body().split_inclusive('\n') {
            let mut rest = line.to_owned();
            while !rest.is_empty() {
                let mut next = cur.clone();
                next.append(span.with(rest.clone()));
                if measure(&next) <= limit {
                    cur = next;
                    break;
                }
                let alone = Rich(vec![span.with(rest.clone())]);
                if !cur.is_empty() && measure(&alone) <= limit {
                    parts.push(std::mem::take(&mut cur));
                    if parts.len() >= max_parts {
                        return None;
                    }
                    continue;
                }
                // Even alone this line does not fit: take the longest head that does.
                let (head, tail) = fit_head(&cur, span, &rest, limit, &measure);
                if head.is_empty() {
                    if cur.is_empty() {
                        return None;
                    }
                    parts.push(std::mem::take(&mut cur));
                    if parts.len() >= max_parts {
                        return None;
                    }
                    continue;
                }
                cur.append(span.with(head));
                parts.push(std::mem::take(&mut cur));
                if parts.len() >= max_parts {
                    return None;
                }
                rest = tail;
            }
        }
    }
    if !cur.is_empty() || parts.is_empty() {
        parts.push(cur);
    }
    (parts.len() <= max_parts).then_some(parts)
}

/// The longest head of `rest` that still fits after `cur` (cut after a space when there is
/// one in its second half), and the tail.
fn fit_head(
    cur: &Rich,
    span: &Span,
    rest: &str,
    limit: usize,
    measure: &impl Fn(&Rich) -> usize,
) -> (String, String) {
    let fits = |n: usize| {
        let head: String = rest.chars().take(n).collect();
        let mut r = cur.clone();
        r.append(span.with(head));
        measure(&r) <= limit
    };
    // Binary search on the number of characters.
    let (mut lo, mut hi) = (0usize, rest.chars().count());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut head: String = rest.chars().take(lo).collect();
    if let Some(cut) = head.rfind(' ')
        && cut >= head.len() / 2
        && cut + 1 < head.len()
    {
        head.truncate(cut + 1);
    }
    let tail = rest[head.len()..].to_owned();
    (head, tail)
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

/// Claude's Markdown answer as [`Rich`]: fenced code blocks become [`Span::Pre`] (with
/// their language), inline backticks [`Span::Code`], the rest [`Span::Md`].
pub fn markdown(s: &str) -> Rich {
    let mut out = Rich::default();
    let mut lang: Option<String> = None;
    let mut block = String::new();
    let mut text = String::new();
    for line in s.split_inclusive('\n') {
        let fence = line.trim_start().strip_prefix("```");
        if let Some(info) = fence {
            match lang.take() {
                Some(l) => out = out.pre_lang(l, std::mem::take(&mut block)),
                None => {
                    if !text.is_empty() {
                        out = out.extend(inline_code(&std::mem::take(&mut text)));
                    }
                    let info = info.trim();
                    lang = Some(info.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
            continue;
        }
        if lang.is_some() {
            block.push_str(line);
        } else {
            text.push_str(line);
        }
    }
    if let Some(l) = lang {
        out = out.pre_lang(l, block);
    }
    if !text.is_empty() {
        out = out.extend(inline_code(&text));
    }
    out
}

fn inline_code(s: &str) -> Rich {
    if s.matches('`').count() % 2 == 1 {
        return Rich::default().md(s);
    }
    let mut out = Rich::default();
    for (i, part) in s.split('`').enumerate() {
        if part.is_empty() {
            continue;
        }
        out = if i % 2 == 1 {
            out.code(part)
        } else {
            out.md(part)
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
                Span::Md("Hi ".into()),
                Span::Code("x".into()),
                Span::Md("\n".into()),
                Span::Pre {
                    lang: "rust".into(),
                    code: "fn a() {}\n".into()
                },
                Span::Md("bye".into()),
            ]
        );
        assert_eq!(
            r.html(),
            "Hi <code>x</code>\n<pre><code class=\"language-rust\">fn a() {}\n</code></pre>bye"
        );
        assert_eq!(r.discord(), "Hi `x`\n```rust\nfn a() {}\n```\nbye");
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

    #[test]
    fn discord_markdown_escapes_text_and_keeps_claude_markdown() {
        let r = Rich::text("a*b_c <x> @everyone\n# not a title")
            .bold("B")
            .code("x`y")
            .md(" **kept**")
            .pre_lang("rust", "let s = \"```\";")
            .push("after");
        assert_eq!(
            r.discord(),
            "a\\*b\\_c \\<x\\> @\u{200b}everyone\n\\# not a title**B**`` x`y `` **kept**\n\
             ```rust\nlet s = \"`\u{200b}``\";\n```\nafter"
        );
        assert_eq!(
            Rich::default().pre_lang("bad lang!", "x").discord(),
            "```\nx\n```"
        );
        assert_eq!(r.discord_len(), r.discord().encode_utf16().count());
    }

    fn bodies(r: &[Rich]) -> String {
        r.iter()
            .flat_map(|p| p.0.iter())
            .map(|s| s.body())
            .collect()
    }

    #[test]
    fn split_keeps_code_blocks_whole_or_reopens_them() {
        let mut answer = String::new();
        for i in 0..40 {
            answer.push_str(&format!(
                "Paragraph {i} with some words in it, enough to matter.\n"
            ));
        }
        answer.push_str("```rust\n");
        for i in 0..60 {
            answer.push_str(&format!(
                "let value_{i} = compute({i}); // a line of code\n"
            ));
        }
        answer.push_str("```\nThe end.\n");
        let rich = markdown(&answer).push("\n\n🔧 0 tools");
        assert!(rich.discord_len() > 4000);
        let parts = split(&rich, 2000, 4, Rich::discord_len).expect("fits in 4");
        assert!(parts.len() >= 3, "{}", parts.len());
        assert_eq!(
            bodies(&parts),
            bodies(std::slice::from_ref(&rich)),
            "nothing lost"
        );
        for (i, p) in parts.iter().enumerate() {
            let text = p.discord();
            assert!(p.discord_len() <= 2000, "part {i}: {}", p.discord_len());
            assert_eq!(
                text.matches("```").count() % 2,
                0,
                "part {i} balanced:\n{text}"
            );
        }
        // The block was cut: a later part reopens it with its language.
        assert!(
            parts[1..]
                .iter()
                .any(|p| p.discord().starts_with("```rust\n"))
        );
        assert!(
            parts
                .last()
                .is_some_and(|p| p.discord().ends_with("🔧 0 tools"))
        );
        assert!(
            split(&rich, 2000, 2, Rich::discord_len).is_none(),
            "needs more than 2"
        );
        let short = Rich::text("hi");
        assert_eq!(split(&short, 2000, 1, Rich::discord_len), Some(vec![short]));
    }

    #[test]
    fn split_cuts_a_long_line_at_a_space() {
        let line = "word ".repeat(900);
        let rich = Rich::default().md(line.clone());
        let parts = split(&rich, 2000, 4, Rich::discord_len).expect("split");
        assert_eq!(parts.len(), 3);
        assert!(parts[0].discord().ends_with("word "), "cut after a word");
        assert_eq!(bodies(&parts), line);
        // A limit nothing fits in is refused rather than looping.
        assert!(split(&Rich::text("abc"), 0, 4, Rich::discord_len).is_none());
    }
}
