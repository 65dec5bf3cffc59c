//! Pure text formatting for chat: a platform-neutral [`Rich`] text (plain, bold, inline
//! code, code blocks) that each adapter turns into its own markup ([`Rich::html`] for
//! Telegram, Markdown for Discord) or plain text when the platform rejects the markup;
//! escaping and truncation. The rest is by topic:
//!
//! - [`markdown`](fn@markdown): Claude's Markdown answer as [`Rich`].
//! - [`split`](fn@split): a long text cut into messages, code blocks closed and reopened.
//! - `props` (tests and fuzzing only): what every split must keep (limits, balance, text).
//! - [`turn`]: how a turn reads in chat: tool lines, tool previews, changed files, the
//!   summary line.
//! - [`diff`]: a file-editing tool call as a unified diff, for approval messages.
//!
//! Nothing here does I/O, so it is all unit-tested.

pub mod diff;
mod markdown;
#[cfg(any(test, fuzzing))]
pub mod props;
mod split;
mod turn;

use std::fmt::Write as _;

pub use self::markdown::markdown;
pub use self::split::split;
pub use self::turn::{Tally, changed_file, duration, summary_line, tool_line, tool_preview};

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
    /// A link: `text` pointing at `url`.
    Link {
        /// What the reader sees.
        text: String,
        /// Where it goes (`https://…`).
        url: String,
    },
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
            Self::Link { text, .. } => text,
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
            Self::Link { url, .. } => Self::Link {
                text,
                url: url.clone(),
            },
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
            Self::Link { text, .. } => text.push_str(s),
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

    /// Appends a link to `url` reading `text` (only `http(s)://` URLs; others stay text).
    pub fn link(mut self, text: impl Into<String>, url: impl Into<String>) -> Self {
        let (text, url) = (text.into(), url.into());
        if url.starts_with("https://") || url.starts_with("http://") {
            self.0.push(Span::Link { text, url });
        } else {
            self.0.push(Span::Text(text));
        }
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
                Span::Link { text, url } => {
                    let _ = write!(out, "{text} ({url})");
                }
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
                Span::Link { text, url } => {
                    let _ = write!(
                        out,
                        "<a href=\"{}\">{}</a>",
                        escape_html(url),
                        escape_html(text)
                    );
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
                Span::Code(t) if !t.is_empty() => {
                    // A backtick just before would join ours into a fence (found by the
                    // render properties: two code spans in a row gave "```").
                    if out.ends_with('`') {
                        out.push('\u{200b}');
                    }
                    out.push_str(&discord_code(t));
                }
                Span::Link { text, url } => {
                    let text = escape_discord(&text.replace(['[', ']'], ""));
                    let _ = write!(out, "[{text}](<{url}>)");
                }
                Span::Bold(_) | Span::Code(_) => {}
                Span::Pre { lang, code } => {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    // Every pair of backticks is broken, so no run of three survives (a
                    // plain `replace("```")` leaves "````" as "`\u{200b}```").
                    let code = code.replace("``", "`\u{200b}`");
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

/// Who did something, as a decision's `by` names them (`Alice (discord)`, `rest:alice`),
/// without the surface when it is `own`: in Discord, a Discord user is just `Alice`.
pub fn person(by: &str, own: common::event::Surface) -> String {
    let own = serde_json::to_value(own)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    by.strip_suffix(&format!(" ({own})"))
        .filter(|name| !name.is_empty())
        .unwrap_or(by)
        .to_owned()
}

/// `s` on one line (newlines and runs of whitespace become one space).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
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
    fn people_are_named_without_their_own_surface() {
        use common::event::Surface;
        assert_eq!(person("Alice (discord)", Surface::Discord), "Alice");
        assert_eq!(
            person("Alice (discord)", Surface::Telegram),
            "Alice (discord)"
        );
        assert_eq!(person("rest:alice", Surface::Telegram), "rest:alice");
        let link = Rich::text("see ").link("app", "https://t.me/c/1/2");
        assert_eq!(link.html(), "see <a href=\"https://t.me/c/1/2\">app</a>");
        assert_eq!(link.discord(), "see [app](<https://t.me/c/1/2>)");
        assert_eq!(Rich::default().link("x", "javascript:1").plain(), "x");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("ééé", 3), "ééé");
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
}
