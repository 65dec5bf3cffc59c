//! What must hold for the chat renderers and the splitter, whatever Claude writes: every
//! part [`split`] makes fits the platform's limit (Telegram's 4096 plain UTF-16 units,
//! Discord's 2000 rendered ones), the markup of every part is balanced (Telegram HTML tags
//! nest and close, nothing unescaped; Discord code fences pair up), and the parts
//! concatenated give back the text. Each check panics with the counterexample. Two engines
//! look for one: `proptest` in this module's tests (so `cargo test` exercises them on stable)
//! and the cargo-fuzz targets `render_telegram` / `render_discord` in `fuzz/` (compiled with
//! `--cfg fuzzing`), as for `common::props`.

use super::{Rich, Span, markdown, split};

/// Telegram's message limit (plain text, UTF-16 units).
pub const TELEGRAM_LIMIT: usize = 4096;
/// Discord's message limit (rendered Markdown, UTF-16 units counted strictly).
pub const DISCORD_LIMIT: usize = 2000;

/// A [`Rich`] text decoded from fuzz bytes: each span is a kind byte, a length byte and that
/// many bytes of (lossy) UTF-8. Links keep a short `https://` URL and code block languages
/// are at most 16 characters, so every single character fits any limit of 64 or more.
pub fn rich_from_bytes(mut data: &[u8]) -> Rich {
    let mut out = Rich::default();
    while let [kind, len, rest @ ..] = data {
        let n = usize::from(*len).min(rest.len());
        let body = String::from_utf8_lossy(&rest[..n]).into_owned();
        data = &rest[n..];
        out = match kind % 7 {
            0 => out.push(body),
            1 => out.md(body),
            2 => out.bold(body),
            3 => out.code(body),
            4 => out.link(body, format!("https://example.com/{}", len % 100)),
            5 => {
                let lang: String = body.chars().take(usize::from(len % 17)).collect();
                out.pre_lang(lang, body)
            }
            _ => out.extend(markdown(&body)),
        };
    }
    out
}

/// The limit a fuzz input asks for: small ones (64..) make many parts quickly, `0xff` the
/// platform's real one.
pub fn limit_from(byte: u8, platform: usize) -> usize {
    if byte == 0xff {
        platform
    } else {
        64 + usize::from(byte) * 4
    }
}

/// The span bodies of `parts`, concatenated (what the reader gets across messages).
fn bodies(parts: &[Rich]) -> String {
    parts
        .iter()
        .flat_map(|p| p.0.iter())
        .map(Span::body)
        .collect()
}

/// Splits `text` for Telegram at `limit` (plain UTF-16 units, as the outbound worker does)
/// and checks: it splits (every character fits), every part is within the limit, every
/// part's HTML is balanced and fully escaped, and the parts give back the text.
pub fn telegram_split_holds(text: &Rich, limit: usize) {
    let Some(parts) = split(text, limit, usize::MAX, Rich::len) else {
        panic!("no split of {text:?} at {limit}");
    };
    for (i, p) in parts.iter().enumerate() {
        assert!(p.len() <= limit, "part {i} is {} > {limit}: {p:?}", p.len());
        if let Err(e) = html_balanced(&p.html()) {
            panic!("part {i} of {text:?}: {e}: {}", p.html());
        }
    }
    assert_eq!(
        bodies(&parts),
        bodies(std::slice::from_ref(text)),
        "text lost"
    );
}

/// Splits `text` for Discord at `limit` (rendered UTF-16 units) and checks: it splits,
/// every part is within the limit, code fences pair up in every part (when Claude's own
/// Markdown holds no backtick: that text is passed through as written), and the parts give
/// back the text.
pub fn discord_split_holds(text: &Rich, limit: usize) {
    let Some(parts) = split(text, limit, usize::MAX, Rich::discord_len) else {
        panic!("no split of {text:?} at {limit}");
    };
    let own_backticks = text
        .0
        .iter()
        .any(|s| matches!(s, Span::Md(t) if t.contains('`')));
    for (i, p) in parts.iter().enumerate() {
        let md = p.discord();
        assert!(
            p.discord_len() <= limit,
            "part {i} is {} > {limit}: {md}",
            p.discord_len()
        );
        if !own_backticks {
            let pres = p.0.iter().filter(|s| matches!(s, Span::Pre { .. })).count();
            assert_eq!(
                md.matches("```").count(),
                2 * pres,
                "part {i} of {text:?}: fences unbalanced:\n{md}"
            );
        }
    }
    assert_eq!(
        bodies(&parts),
        bodies(std::slice::from_ref(text)),
        "text lost"
    );
}

/// `Ok` when `html` is Telegram HTML as we emit it: only `b`, `code`, `pre` and `a` tags,
/// properly nested and closed, `<` and `>` only in tags, `&` only as `&amp;` `&lt;` `&gt;`
/// `&quot;`.
pub fn html_balanced(html: &str) -> Result<(), String> {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(['<', '>', '&']) {
        let tail = &rest[at..];
        if let Some(t) = tail.strip_prefix('&') {
            let ok = ["amp;", "lt;", "gt;", "quot;"]
                .iter()
                .any(|e| t.starts_with(e));
            if !ok {
                return Err(format!("bare `&` at {}", html.len() - tail.len()));
            }
            rest = &tail[1..];
            continue;
        }
        if tail.starts_with('>') {
            return Err("bare `>`".into());
        }
        let Some(end) = tail.find('>') else {
            return Err("unclosed tag".into());
        };
        let tag = &tail[1..end];
        if tag.contains('<') {
            return Err(format!("`<` inside tag `{tag}`"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            if open.pop() != Some(name) {
                return Err(format!("`</{name}>` closes nothing open"));
            }
        } else {
            let name = tag.split(' ').next().unwrap_or("");
            if !["b", "code", "pre", "a"].contains(&name) {
                return Err(format!("unknown tag `{name}`"));
            }
            open.push(name);
        }
        rest = &tail[end + 1..];
    }
    if open.is_empty() {
        Ok(())
    } else {
        Err(format!("left open: {open:?}"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Text that looks like what Claude writes, rich in what the markup cares about.
    fn claude_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("```".to_owned()),
                Just("```rust\n".to_owned()),
                Just("`".to_owned()),
                Just("\n".to_owned()),
                Just(" ".to_owned()),
                Just("**".to_owned()),
                Just("<b>&amp;".to_owned()),
                Just("@everyone".to_owned()),
                Just("é🦀".to_owned()),
                "[a-z#*_>-]{1,12}",
                "[a-z ]{20,90}\n",
            ],
            0..120,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn telegram_parts_fit_balance_and_keep_the_text(
            data in proptest::collection::vec(any::<u8>(), 0..1500),
            limit in any::<u8>(),
        ) {
            telegram_split_holds(&rich_from_bytes(&data), limit_from(limit, TELEGRAM_LIMIT));
        }

        #[test]
        fn discord_parts_fit_balance_and_keep_the_text(
            data in proptest::collection::vec(any::<u8>(), 0..1500),
            limit in any::<u8>(),
        ) {
            discord_split_holds(&rich_from_bytes(&data), limit_from(limit, DISCORD_LIMIT));
        }

        #[test]
        fn claude_markdown_splits_for_both_platforms(s in claude_text(), limit in any::<u8>()) {
            let rich = markdown(&s);
            telegram_split_holds(&rich, limit_from(limit, TELEGRAM_LIMIT));
            discord_split_holds(&rich, limit_from(limit, DISCORD_LIMIT));
        }
    }

    #[test]
    fn html_checker_finds_what_it_should() {
        assert!(html_balanced("<b>a &amp; b</b><pre><code class=\"x\">c</code></pre>").is_ok());
        assert!(html_balanced("<b>a").is_err());
        assert!(html_balanced("a & b").is_err());
        assert!(html_balanced("<i>x</i>").is_err());
        assert!(html_balanced("<b><code>x</b></code>").is_err());
        assert!(html_balanced("1 > 0").is_err());
    }

    #[test]
    fn four_backticks_in_a_code_block_cannot_close_it() {
        // Found by the property: `replace("```")` left "````" as "`\u{200b}```", a fence.
        let r = Rich::default().pre("a````b\n");
        assert_eq!(r.discord().matches("```").count(), 2, "{}", r.discord());
        discord_split_holds(&r, DISCORD_LIMIT);
    }

    #[test]
    fn code_spans_in_a_row_do_not_make_a_fence() {
        // Found by the property: `` `a`` `` then `D` rendered as "`` a` `````D`".
        let r = Rich::default().code("a`").code("D");
        assert_eq!(r.discord().matches("```").count(), 0, "{}", r.discord());
        let r = Rich::text("x`").code("`y");
        assert_eq!(r.discord().matches("```").count(), 0, "{}", r.discord());
        discord_split_holds(&r, DISCORD_LIMIT);
    }
}
