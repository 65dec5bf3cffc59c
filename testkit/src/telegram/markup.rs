//! Telegram's text formatting (`parse_mode`), checked the way the Bot API checks it.
//!
//! [`render`] turns a message text and its `parse_mode` into what a user would see (tags
//! and markers removed, HTML entities decoded) plus the message entities, with offsets
//! and lengths in UTF-16 code units as the Bot API reports them. Text the real API
//! refuses is refused here too, with the same kind of description, so a bot's
//! plain-text fallback can be tested for real:
//!
//! - `HTML`: only the tags Telegram supports (`b strong i em u ins s strike del a code
//!   pre tg-spoiler blockquote`, and `span class="tg-spoiler"`), properly nested and
//!   closed; a bare `<` is an unsupported start tag. `&lt; &gt; &amp; &quot;` and numeric
//!   entities are decoded; any other `&` stays as it is.
//! - `MarkdownV2`: `* _ __ ~ || ` and ``` and `[text](url)` must pair up, and every other
//!   reserved character (`_*[]()~`>#+-=|{}.!`) must be escaped with `\`.
//! - `Markdown` (legacy): `* _ ` and ``` and `[text](url)` must pair up.
//!
//! This is an approximation of Telegram's parser, not a copy: it is as strict as the real
//! one about the common mistakes (unknown tags, unbalanced markers, unescaped `.`), and
//! does not try to reproduce every corner of entity nesting.

use serde_json::{Value, json};

/// A formatted text as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// The visible text.
    pub text: String,
    /// `MessageEntity` objects, sorted by offset (outer entities first).
    pub entities: Vec<Value>,
}

impl Rendered {
    /// Text sent without `parse_mode`: shown as it is, no entities.
    pub fn plain(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            entities: Vec::new(),
        }
    }
}

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MarkupError {
    /// `parse_mode` is not one Telegram knows.
    UnsupportedMode(String),
    /// The text does not parse; the detail goes after "can't parse entities: ".
    Entities(String),
}

impl MarkupError {
    /// The Bot API's `description` for this error.
    pub fn description(&self) -> String {
        match self {
            Self::UnsupportedMode(_) => "Bad Request: unsupported parse_mode".to_owned(),
            Self::Entities(detail) => format!("Bad Request: can't parse entities: {detail}"),
        }
    }
}

/// Renders `text` under `parse_mode` (`None` = plain text).
pub(crate) fn render(text: &str, parse_mode: Option<&str>) -> Result<Rendered, MarkupError> {
    match parse_mode {
        None => Ok(Rendered::plain(text)),
        Some(mode) if mode.eq_ignore_ascii_case("html") => {
            html(text).map_err(MarkupError::Entities)
        }
        Some(mode) if mode.eq_ignore_ascii_case("markdownv2") => {
            markdown_v2(text).map_err(MarkupError::Entities)
        }
        Some(mode) if mode.eq_ignore_ascii_case("markdown") => {
            markdown_legacy(text).map_err(MarkupError::Entities)
        }
        Some(other) => Err(MarkupError::UnsupportedMode(other.to_owned())),
    }
}

/// Number of UTF-16 code units in `s`, the unit of entity offsets.
pub(crate) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The kind of an entity being built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    Code,
    Pre(Option<String>),
    TextLink(Option<String>),
    Blockquote {
        expandable: bool,
    },
    /// A tag that adds nothing, like `<code>` directly inside `<pre>`.
    Nothing,
}

impl Kind {
    /// The entity JSON, or `None` when Telegram would not report one (a link whose
    /// target is not a URL).
    fn entity(&self, offset: usize, length: usize) -> Option<Value> {
        let mut v = json!({ "offset": offset, "length": length });
        let kind = match self {
            Self::Bold => "bold",
            Self::Italic => "italic",
            Self::Underline => "underline",
            Self::Strikethrough => "strikethrough",
            Self::Spoiler => "spoiler",
            Self::Code => "code",
            Self::Pre(language) => {
                if let Some(lang) = language {
                    v["language"] = json!(lang);
                }
                "pre"
            }
            Self::TextLink(url) => {
                let url = url.as_deref().filter(|u| looks_like_url(u))?;
                v["url"] = json!(url);
                "text_link"
            }
            Self::Blockquote { expandable: false } => "blockquote",
            Self::Blockquote { expandable: true } => "expandable_blockquote",
            Self::Nothing => return None,
        };
        v["type"] = json!(kind);
        Some(v)
    }

    /// The name Telegram uses in Markdown error messages.
    fn markdown_name(&self) -> &'static str {
        match self {
            Self::Bold => "Bold",
            Self::Italic => "Italic",
            Self::Underline => "Underline",
            Self::Strikethrough => "Strikethrough",
            Self::Spoiler => "Spoiler",
            Self::Code => "Code",
            Self::Pre(_) => "Pre",
            Self::TextLink(_) => "TextUrl",
            Self::Blockquote { .. } => "Blockquote",
            Self::Nothing => "",
        }
    }
}

/// True for targets Telegram accepts in a text link (and a client can parse as a URL).
fn looks_like_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.starts_with("mailto:") && !s.contains(char::is_whitespace);
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !s.contains(char::is_whitespace)
}

/// Accumulates visible text and entities.
#[derive(Default)]
struct Builder {
    text: String,
    /// Current length of `text` in UTF-16 code units.
    pos: usize,
    entities: Vec<Value>,
}

impl Builder {
    fn push(&mut self, c: char) {
        self.text.push(c);
        self.pos += c.len_utf16();
    }

    fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
        self.pos += utf16_len(s);
    }

    /// Ends an entity that started at UTF-16 offset `start`. Empty entities are dropped,
    /// as Telegram does.
    fn close(&mut self, kind: &Kind, start: usize) {
        let length = self.pos - start;
        if length == 0 {
            return;
        }
        if let Some(entity) = kind.entity(start, length) {
            self.entities.push(entity);
        }
    }

    fn finish(mut self) -> Rendered {
        let key = |e: &Value| {
            let offset = e.get("offset").and_then(Value::as_u64).unwrap_or(0);
            let length = e.get("length").and_then(Value::as_u64).unwrap_or(0);
            (offset, std::cmp::Reverse(length))
        };
        self.entities.sort_by_key(key);
        Rendered {
            text: self.text,
            entities: self.entities,
        }
    }
}

/// An entity opened but not yet closed.
struct Open {
    /// Tag name (HTML) as written, lowercased.
    tag: String,
    kind: Kind,
    /// UTF-16 offset in the rendered text.
    start: usize,
    /// Byte offset in the source, for error messages.
    source_at: usize,
}

fn html(src: &str) -> Result<Rendered, String> {
    let mut out = Builder::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0;
    while let Some(c) = src[i..].chars().next() {
        match c {
            '<' => {
                let Some(len) = src[i..].find('>') else {
                    return Err(format!("Unclosed start tag at byte offset {i}"));
                };
                let inner = &src[i + 1..i + len];
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    let Some(top) = stack.pop() else {
                        return Err(format!("Unexpected end tag at byte offset {i}"));
                    };
                    if top.tag != name {
                        return Err(format!(
                            "Unmatched end tag at byte offset {i}, expected \"</{}>\", found \"</{name}>\"",
                            top.tag
                        ));
                    }
                    out.close(&top.kind, top.start);
                } else {
                    let open = html_start_tag(inner, i, &mut stack, out.pos)?;
                    stack.push(open);
                }
                i += len + 1;
            }
            '&' => {
                let (decoded, used) = html_entity(&src[i..]);
                out.push_str(&decoded);
                i += used;
            }
            _ => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.tag
        ));
    }
    Ok(out.finish())
}

/// Parses the inside of `<...>` (without the brackets) at byte offset `at`.
fn html_start_tag(inner: &str, at: usize, stack: &mut [Open], pos: usize) -> Result<Open, String> {
    let inner = inner.trim_end_matches('/');
    let name_end = inner
        .find(|c: char| c.is_whitespace())
        .unwrap_or(inner.len());
    let name = inner[..name_end].to_ascii_lowercase();
    let attrs = html_attributes(&inner[name_end..]);
    let attr = |key: &str| {
        attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let kind = match name.as_str() {
        "b" | "strong" => Kind::Bold,
        "i" | "em" => Kind::Italic,
        "u" | "ins" => Kind::Underline,
        "s" | "strike" | "del" => Kind::Strikethrough,
        "tg-spoiler" => Kind::Spoiler,
        "span" => {
            if attr("class").as_deref() != Some("tg-spoiler") {
                return Err(format!(
                    "Tag \"span\" must have class \"tg-spoiler\" at byte offset {at}"
                ));
            }
            Kind::Spoiler
        }
        "a" => Kind::TextLink(attr("href")),
        "pre" => Kind::Pre(None),
        "code" => {
            let language = attr("class").and_then(|c| {
                c.strip_prefix("language-")
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
            });
            // `<pre><code class="language-x">` is one pre entity with that language.
            match stack.last_mut() {
                Some(top) if matches!(top.kind, Kind::Pre(_)) && top.start == pos => {
                    if language.is_some() {
                        top.kind = Kind::Pre(language);
                    }
                    Kind::Nothing
                }
                _ => Kind::Code,
            }
        }
        "blockquote" => Kind::Blockquote {
            expandable: attrs
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("expandable")),
        },
        _ => {
            return Err(format!(
                "Unsupported start tag \"{name}\" at byte offset {at}"
            ));
        }
    };
    Ok(Open {
        tag: name,
        kind,
        start: pos,
        source_at: at,
    })
}

/// `key="value"`, `key='value'`, `key=value` and bare `key`, leniently.
fn html_attributes(s: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = rest[..key_end].to_owned();
        rest = rest[key_end..].trim_start();
        let Some(after_eq) = rest.strip_prefix('=') else {
            attrs.push((key, String::new()));
            continue;
        };
        let after_eq = after_eq.trim_start();
        let (value, remainder) = match after_eq.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &after_eq[1..];
                match body.find(q) {
                    Some(end) => (&body[..end], &body[end + 1..]),
                    None => (body, ""),
                }
            }
            _ => {
                let end = after_eq.find(char::is_whitespace).unwrap_or(after_eq.len());
                (&after_eq[..end], &after_eq[end..])
            }
        };
        let (value, _) = html_entity_decode_all(value);
        attrs.push((key, value));
        rest = remainder.trim_start();
    }
    attrs
}

/// Decodes every entity in an attribute value.
fn html_entity_decode_all(s: &str) -> (String, usize) {
    let mut out = String::new();
    let mut i = 0;
    while let Some(c) = s[i..].chars().next() {
        if c == '&' {
            let (decoded, used) = html_entity(&s[i..]);
            out.push_str(&decoded);
            i += used;
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
    (out, i)
}

/// Decodes the entity at the start of `s` (which starts with `&`). Returns the text and
/// the bytes consumed; an unknown or malformed entity is a literal `&`.
fn html_entity(s: &str) -> (String, usize) {
    let literal = ("&".to_owned(), 1);
    let Some(end) = s
        .char_indices()
        .take(12)
        .find(|(_, c)| *c == ';')
        .map(|(i, _)| i)
    else {
        return literal;
    };
    let name = &s[1..end];
    let decoded = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        _ => name.strip_prefix('#').and_then(|num| {
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse::<u32>().ok(),
            };
            code.and_then(char::from_u32)
        }),
    };
    match decoded {
        Some(c) => (c.to_string(), end + 1),
        None => literal,
    }
}

/// Characters MarkdownV2 reserves outside entities.
const MDV2_RESERVED: &str = "_*[]()~`>#+-=|{}.!";

fn markdown_v2(src: &str) -> Result<Rendered, String> {
    let mut out = Builder::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0;
    let mut line_start = true;
    while let Some(c) = src[i..].chars().next() {
        let at = i;
        let next = src[i + c.len_utf8()..].chars().next();
        let was_line_start = line_start;
        line_start = c == '\n';
        match c {
            '\\' => {
                match next {
                    Some(n) if (1..=126).contains(&u32::from(n)) => {
                        out.push(n);
                        i += 1 + n.len_utf8();
                    }
                    // A backslash before anything else is a plain backslash.
                    _ => {
                        out.push('\\');
                        i += 1;
                    }
                }
                continue;
            }
            '`' if src[i..].starts_with("```") => {
                i = mdv2_pre(src, i, &mut out)?;
                continue;
            }
            '`' => {
                i = mdv2_code(src, i, &mut out)?;
                continue;
            }
            '>' if was_line_start => {
                // Blockquote line marker; the quote itself is not reported as an entity.
                i += 1;
                continue;
            }
            '*' => toggle_md(&mut stack, &mut out, Kind::Bold, at)?,
            '_' if next == Some('_') => {
                toggle_md(&mut stack, &mut out, Kind::Underline, at)?;
                i += 2;
                continue;
            }
            '_' => toggle_md(&mut stack, &mut out, Kind::Italic, at)?,
            '~' => toggle_md(&mut stack, &mut out, Kind::Strikethrough, at)?,
            '|' if next == Some('|') => {
                toggle_md(&mut stack, &mut out, Kind::Spoiler, at)?;
                i += 2;
                continue;
            }
            '[' => stack.push(Open {
                tag: String::new(),
                kind: Kind::TextLink(None),
                start: out.pos,
                source_at: at,
            }),
            ']' if matches!(
                stack.last(),
                Some(Open {
                    kind: Kind::TextLink(_),
                    ..
                })
            ) =>
            {
                let Some(open) = stack.pop() else {
                    return Err(reserved(']'));
                };
                let (url, used) = md_link_target(&src[i + 1..], true).ok_or_else(|| {
                    format!(
                        "Can't find end of TextUrl entity at byte offset {}",
                        open.source_at
                    )
                })?;
                out.close(&Kind::TextLink(Some(url)), open.start);
                i += 1 + used;
                continue;
            }
            c if MDV2_RESERVED.contains(c) => return Err(reserved(c)),
            c => out.push(c),
        }
        i += c.len_utf8();
    }
    if let Some(open) = stack.pop() {
        return Err(format!(
            "Can't find end of {} entity at byte offset {}",
            open.kind.markdown_name(),
            open.source_at
        ));
    }
    Ok(out.finish())
}

fn reserved(c: char) -> String {
    format!("Character '{c}' is reserved and must be escaped with the preceding '\\'")
}

/// Opens `kind`, or closes it when it is the innermost open entity.
fn toggle_md(
    stack: &mut Vec<Open>,
    out: &mut Builder,
    kind: Kind,
    at: usize,
) -> Result<(), String> {
    if let Some(pos) = stack.iter().rposition(|o| o.kind == kind) {
        if pos + 1 != stack.len() {
            let inner = &stack[stack.len() - 1];
            return Err(format!(
                "Can't find end of {} entity at byte offset {}",
                inner.kind.markdown_name(),
                inner.source_at
            ));
        }
        if let Some(open) = stack.pop() {
            out.close(&open.kind, open.start);
        }
        return Ok(());
    }
    stack.push(Open {
        tag: String::new(),
        kind,
        start: out.pos,
        source_at: at,
    });
    Ok(())
}

/// Inline code from the backtick at `start`; returns the byte index after it.
fn mdv2_code(src: &str, start: usize, out: &mut Builder) -> Result<usize, String> {
    let begin = out.pos;
    let mut i = start + 1;
    while let Some(c) = src[i..].chars().next() {
        match c {
            '`' => {
                out.close(&Kind::Code, begin);
                return Ok(i + 1);
            }
            '\\' => {
                let Some(n) = src[i + 1..].chars().next() else {
                    break;
                };
                out.push(n);
                i += 1 + n.len_utf8();
            }
            _ => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Err(format!(
        "Can't find end of Code entity at byte offset {start}"
    ))
}

/// A pre block from the ``` at `start`; returns the byte index after the closing ```.
fn mdv2_pre(src: &str, start: usize, out: &mut Builder) -> Result<usize, String> {
    let mut i = start + 3;
    // Text up to the first newline is the language, if it is one word.
    let mut language = None;
    if let Some(nl) = src[i..].find('\n') {
        let first = &src[i..i + nl];
        if !first.is_empty() && !first.contains(['`', '\\']) && !first.contains(char::is_whitespace)
        {
            language = Some(first.to_owned());
            i += nl + 1;
        }
    }
    let begin = out.pos;
    while let Some(c) = src[i..].chars().next() {
        if src[i..].starts_with("```") {
            out.close(&Kind::Pre(language), begin);
            return Ok(i + 3);
        }
        if c == '\\'
            && let Some(n) = src[i + 1..].chars().next()
        {
            out.push(n);
            i += 1 + n.len_utf8();
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    Err(format!(
        "Can't find end of Pre entity at byte offset {start}"
    ))
}

/// After `]`: `(url)`. Returns the URL and the bytes consumed, or `None` if there is no
/// well-formed target. With `escapes`, `\)` and `\\` stand for `)` and `\`.
fn md_link_target(s: &str, escapes: bool) -> Option<(String, usize)> {
    let body = s.strip_prefix('(')?;
    let mut url = String::new();
    let mut i = 0;
    while let Some(c) = body[i..].chars().next() {
        match c {
            ')' => return Some((url, 1 + i + 1)),
            '\\' if escapes => {
                let n = body[i + 1..].chars().next()?;
                url.push(n);
                i += 1 + n.len_utf8();
            }
            _ => {
                url.push(c);
                i += c.len_utf8();
            }
        }
    }
    None
}

fn markdown_legacy(src: &str) -> Result<Rendered, String> {
    let mut out = Builder::default();
    let mut i = 0;
    while let Some(c) = src[i..].chars().next() {
        let at = i;
        match c {
            '\\' => match src[i + 1..].chars().next() {
                Some(n @ ('_' | '*' | '`' | '[')) => {
                    out.push(n);
                    i += 2;
                }
                _ => {
                    out.push('\\');
                    i += 1;
                }
            },
            '*' | '_' | '`' => {
                let (marker, kind) = match c {
                    '*' => ("*", Kind::Bold),
                    '_' => ("_", Kind::Italic),
                    _ if src[i..].starts_with("```") => ("```", Kind::Pre(None)),
                    _ => ("`", Kind::Code),
                };
                let body_start = i + marker.len();
                let Some(len) = src[body_start..].find(marker) else {
                    return Err(format!(
                        "Can't find end of the entity starting at byte offset {at}"
                    ));
                };
                let begin = out.pos;
                out.push_str(&src[body_start..body_start + len]);
                out.close(&kind, begin);
                i = body_start + len + marker.len();
            }
            '[' => {
                let Some(len) = src[i + 1..].find(']') else {
                    return Err(format!(
                        "Can't find end of the entity starting at byte offset {at}"
                    ));
                };
                let label = &src[i + 1..i + 1 + len];
                let after = i + 1 + len + 1;
                let begin = out.pos;
                out.push_str(label);
                match md_link_target(&src[after..], false) {
                    Some((url, used)) => {
                        out.close(&Kind::TextLink(Some(url)), begin);
                        i = after + used;
                    }
                    None => {
                        // `[text]` without a target is kept as text, brackets dropped.
                        i = after;
                    }
                }
            }
            _ => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, mode: &str) -> Rendered {
        match render(text, Some(mode)) {
            Ok(r) => r,
            Err(e) => panic!("{text:?} under {mode} was refused: {e:?}"),
        }
    }

    fn refused(text: &str, mode: &str) -> String {
        match render(text, Some(mode)) {
            Ok(r) => panic!("{text:?} under {mode} was accepted: {r:?}"),
            Err(e) => e.description(),
        }
    }

    #[test]
    fn html_renders_text_and_entities() {
        let r = ok(
            "<b>bold</b> &lt;x&gt; <a href=\"https://e.com\">link</a> <code>c</code>",
            "HTML",
        );
        assert_eq!(r.text, "bold <x> link c");
        assert_eq!(
            r.entities,
            vec![
                json!({"type":"bold","offset":0,"length":4}),
                json!({"type":"text_link","offset":9,"length":4,"url":"https://e.com"}),
                json!({"type":"code","offset":14,"length":1}),
            ]
        );
    }

    #[test]
    fn html_offsets_are_utf16() {
        let r = ok("😀<i>é</i>", "HTML");
        assert_eq!(
            r.entities,
            vec![json!({"type":"italic","offset":2,"length":1})]
        );
    }

    #[test]
    fn html_pre_with_language() {
        let r = ok(
            "<pre><code class=\"language-rust\">fn x</code></pre>",
            "HTML",
        );
        assert_eq!(r.text, "fn x");
        assert_eq!(
            r.entities,
            vec![json!({"type":"pre","offset":0,"length":4,"language":"rust"})]
        );
    }

    #[test]
    fn html_accepts_spoiler_span_blockquote_and_literal_ampersand() {
        let r = ok(
            "<span class=\"tg-spoiler\">s</span><blockquote expandable>q</blockquote> a & b &#65;",
            "html",
        );
        assert_eq!(r.text, "sq a & b A");
    }

    #[test]
    fn html_refuses_what_telegram_refuses() {
        assert!(refused("<div>x</div>", "HTML").contains("Unsupported start tag \"div\""));
        assert!(refused("a < b", "HTML").starts_with("Bad Request: can't parse entities: "));
        assert!(refused("<b>x", "HTML").contains("Can't find end tag"));
        assert!(refused("<b><i>x</b></i>", "HTML").contains("Unmatched end tag"));
        assert!(refused("x</b>", "HTML").contains("Unexpected end tag"));
        assert!(refused("<span>x</span>", "HTML").contains("tg-spoiler"));
        assert!(refused("<br/>", "HTML").contains("Unsupported start tag \"br\""));
    }

    #[test]
    fn markdown_v2() {
        let r = ok(
            "*bold* _it_ __u__ ~s~ ||sp|| `c\\`` [l](https://e.com) 1\\.5",
            "MarkdownV2",
        );
        assert_eq!(r.text, "bold it u s sp c` l 1.5");
        assert_eq!(r.entities.len(), 7);
        let r = ok("```rust\nfn x() {}\n```", "MarkdownV2");
        assert_eq!(r.text, "fn x() {}\n");
        assert_eq!(r.entities[0]["language"], "rust");
        assert!(refused("1.5", "MarkdownV2").contains("Character '.' is reserved"));
        assert!(refused("*open", "MarkdownV2").contains("Can't find end of Bold entity"));
        assert!(refused("`open", "MarkdownV2").contains("Can't find end of Code entity"));
        assert!(refused("a-b", "MarkdownV2").contains("'-'"));
    }

    #[test]
    fn markdown_legacy() {
        let r = ok("*b* _i_ `c` [l](https://e.com) 1.5-2", "Markdown");
        assert_eq!(r.text, "b i c l 1.5-2");
        assert_eq!(r.entities.len(), 4);
        assert!(refused("*open", "Markdown").contains("Can't find end of the entity"));
    }

    #[test]
    fn unknown_mode_and_plain() {
        assert_eq!(
            render("x", Some("BBCode")),
            Err(MarkupError::UnsupportedMode("BBCode".to_owned()))
        );
        assert_eq!(render("<b>", None), Ok(Rendered::plain("<b>")));
    }
}
