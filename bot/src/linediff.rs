//! Line diffs of a file-editing tool call's old and new text, in unified-diff hunks: the
//! one diff both the chat approval message and the dashboard's approval card show.
//!
//! `similar` computes it, called at the level of its Myers algorithm with the same hooks
//! its `TextDiff` uses (compaction, then replace detection), so the hunks are the ones
//! `TextDiff::from_lines` gives. `TextDiff` itself picks its algorithm at run time and so
//! links all six of `similar`'s into the binary; this module links one. Lines are cut by
//! `similar`'s own tokenizer (after `\n`, `\r\n` or a lone `\r`, endings kept). A time
//! cap keeps a huge input from stalling the caller: past it the diff settles for a coarser
//! answer.

use std::ops::Range;
use std::time::{Duration, Instant};

use similar::algorithms::{Capture, Compact, Replace, myers};
use similar::udiff::UnifiedHunkHeader;
use similar::{ChangeTag, DiffOp, DiffableStr, group_diff_ops};

/// Longest time one diff may take.
const TIMEOUT: Duration = Duration::from_millis(200);

/// One line of a hunk: whether it is kept, removed or added, and its text with the line
/// ending it had (the last line of a text may have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// Kept (`Equal`), removed (`Delete`) or added (`Insert`).
    pub tag: ChangeTag,
    /// The line, with its `\n`, `\r\n` or `\r` if it had one.
    pub text: &'a str,
}

impl Line<'_> {
    /// The unified-diff mark of the line: `' '`, `'-'` or `'+'`.
    pub fn mark(&self) -> char {
        match self.tag {
            ChangeTag::Equal => ' ',
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
        }
    }

    /// The line without its line ending.
    pub fn content(&self) -> &str {
        self.text.trim_end_matches(['\n', '\r'])
    }

    /// False for the last line of a text that does not end with a line break.
    pub fn has_newline(&self) -> bool {
        self.text.ends_with(['\n', '\r'])
    }
}

/// One hunk: the lines of a run of changes with their context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk<'a> {
    /// `@@ -old +new @@`, the ranges as a unified diff writes them.
    pub header: String,
    /// Its lines, in order.
    pub lines: Vec<Line<'a>>,
}

/// The hunks of `old` → `new`, each with `context` lines of context; none when the two are
/// the same.
pub fn hunks<'a>(old: &'a str, new: &'a str, context: usize) -> Vec<Hunk<'a>> {
    let old_lines = old.tokenize_lines();
    let new_lines = new.tokenize_lines();
    let (old_lines, new_lines) = (old_lines.as_slice(), new_lines.as_slice());
    let mut hook = Compact::new(Replace::new(Capture::new()), old_lines, new_lines);
    let deadline = Instant::now().checked_add(TIMEOUT);
    // Capturing cannot fail: its error type is uninhabited.
    let Ok(()) = myers::diff_deadline(
        &mut hook,
        old_lines,
        0..old_lines.len(),
        new_lines,
        0..new_lines.len(),
        deadline,
    );
    let ops = hook.into_inner().into_inner().into_ops();
    group_diff_ops(ops, context)
        .into_iter()
        .filter(|group| !group.is_empty())
        .map(|group| Hunk {
            header: UnifiedHunkHeader::new(&group).to_string(),
            lines: group
                .iter()
                .flat_map(|op| changes(op, old_lines, new_lines))
                .collect(),
        })
        .collect()
}

/// The lines one diff op covers: kept ones from the old text, then removed ones, then
/// added ones.
fn changes<'a>(op: &DiffOp, old: &[&'a str], new: &[&'a str]) -> Vec<Line<'a>> {
    let (tag, old_range, new_range) = op.as_tag_tuple();
    let take = |tag: ChangeTag, from: &[&'a str], range: Range<usize>| {
        from.get(range)
            .unwrap_or_default()
            .iter()
            .map(move |text| Line { tag, text })
            .collect::<Vec<_>>()
    };
    match tag {
        similar::DiffTag::Equal => take(ChangeTag::Equal, old, old_range),
        similar::DiffTag::Delete => take(ChangeTag::Delete, old, old_range),
        similar::DiffTag::Insert => take(ChangeTag::Insert, new, new_range),
        similar::DiffTag::Replace => {
            let mut out = take(ChangeTag::Delete, old, old_range);
            out.extend(take(ChangeTag::Insert, new, new_range));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use similar::TextDiff;

    use super::*;

    /// The hunks are the ones `TextDiff::from_lines` gives for the same texts.
    fn same_as_text_diff(old: &str, new: &str) {
        let ours: Vec<(String, Vec<(ChangeTag, String)>)> = hunks(old, new, 3)
            .into_iter()
            .map(|h| {
                let lines = h.lines.iter().map(|l| (l.tag, l.text.to_owned())).collect();
                (h.header, lines)
            })
            .collect();
        let diff = TextDiff::from_lines(old, new);
        let theirs: Vec<(String, Vec<(ChangeTag, String)>)> = diff
            .unified_diff()
            .context_radius(3)
            .iter_hunks()
            .map(|h| {
                let lines = h
                    .iter_changes()
                    .map(|c| (c.tag(), c.value().to_owned()))
                    .collect();
                (h.header().to_string(), lines)
            })
            .collect();
        assert_eq!(ours, theirs, "old {old:?} new {new:?}");
    }

    #[test]
    fn hunks_match_similar_text_diff() {
        same_as_text_diff("", "");
        same_as_text_diff("same\n", "same\n");
        same_as_text_diff("", "a\nb\nc");
        same_as_text_diff("a\nb\nc\n", "");
        same_as_text_diff("one", "1");
        same_as_text_diff("fn main() {\n    hi();\n}", "fn main() {\n    hello();\n}");
        same_as_text_diff("a\r\nb\r\nc\r\n", "a\r\nB\r\nc\r\n");
        same_as_text_diff("old mac\rline\r", "old mac\rline two\r");
        let long: String = (0..60).map(|i| format!("line {i}\n")).collect();
        let edited = long
            .replace("line 5\n", "line five\n")
            .replace("line 40\n", "")
            .replace("line 59\n", "line 59\nline 60");
        same_as_text_diff(&long, &edited);
    }

    #[test]
    fn lines_keep_their_endings() {
        let h = hunks("x\n", "x\ny", 3);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].header, "@@ -1 +1,2 @@");
        let last = h[0].lines[1];
        assert_eq!(
            (last.mark(), last.content(), last.has_newline()),
            ('+', "y", false)
        );
        assert!(h[0].lines[0].has_newline());
        assert_eq!(
            "a\r\nb\rc\n\nd".tokenize_lines(),
            ["a\r\n", "b\r", "c\n", "\n", "d"]
        );
    }
}
