//! Cutting a long [`Rich`] text into messages of a platform's size: at line ends where
//! possible, else at a space, else anywhere; a code block cut in two is closed at the end
//! of one piece and reopened, with its language, at the start of the next. The outbound
//! worker uses it for long answers, the Discord adapter for fitting one message.

use super::{Rich, Span};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::render::markdown;

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
