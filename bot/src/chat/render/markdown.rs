//! Claude's Markdown answer as [`Rich`] text: fenced code blocks (with their language)
//! and inline code are recognised, so each platform can show them as code; the rest is
//! kept as Markdown ([`Span::Md`]), which Discord shows as such and Telegram as text.
//!
//! [`Span::Md`]: super::Span::Md

use super::Rich;

/// Claude's Markdown answer as [`Rich`]: fenced code blocks become [`Span::Pre`] (with
/// their language), inline backticks [`Span::Code`], the rest [`Span::Md`].
///
/// [`Span::Pre`]: super::Span::Pre
/// [`Span::Code`]: super::Span::Code
/// [`Span::Md`]: super::Span::Md
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::render::Span;

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
}
