//! File edits as unified diffs: what an `Edit`, `MultiEdit` or `Write` tool call changes,
//! computed by [`crate::linediff`] from the tool input alone (the bot never sees the files,
//! so a `Write` shows its whole content as added and says so).

use serde_json::Value;
use similar::ChangeTag;

/// Most diff lines shown for one tool call; the rest is counted.
const MAX_LINES: usize = 400;
/// Longest line shown, in characters.
const MAX_LINE_CHARS: usize = 2000;

/// One line of a diff, with the CSS class that colours it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffLine {
    /// `add`, `del`, `ctx` or `hunk`.
    pub class: &'static str,
    /// The line, with its `+`/`-`/` ` marker.
    pub text: String,
}

/// A tool call's change to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffView {
    /// The file.
    pub path: String,
    /// A note on what the diff is (`new content`, `every occurrence`).
    pub note: Option<String>,
    /// The lines, at most 400.
    pub lines: Vec<DiffLine>,
    /// Lines left out past the first 400.
    pub more: usize,
}

/// The diff of a file-editing tool call, or `None` for other tools or unexpected input.
pub fn for_tool(name: &str, input: &Value) -> Option<DiffView> {
    let path = input.get("file_path").and_then(Value::as_str)?.to_owned();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut out = Vec::new();
    let note = match name {
        "Write" => {
            let content = text(input, "content")?;
            hunks(&mut out, "", &content);
            Some("new content of the whole file (the bot does not see the old one)".to_owned())
        }
        "Edit" => {
            hunks(
                &mut out,
                &text(input, "old_string")?,
                &text(input, "new_string")?,
            );
            input
                .get("replace_all")
                .and_then(Value::as_bool)
                .filter(|all| *all)
                .map(|_| "every occurrence".to_owned())
        }
        "MultiEdit" => {
            let edits = input.get("edits").and_then(Value::as_array)?;
            for edit in edits {
                hunks(
                    &mut out,
                    &text(edit, "old_string").unwrap_or_default(),
                    &text(edit, "new_string").unwrap_or_default(),
                );
            }
            Some(format!("{} edits", edits.len()))
        }
        _ => return None,
    };
    let more = out.len().saturating_sub(MAX_LINES);
    out.truncate(MAX_LINES);
    Some(DiffView {
        path,
        note,
        lines: out,
        more,
    })
}

/// Appends the unified diff of `old` → `new` (three lines of context) to `out`.
fn hunks(out: &mut Vec<DiffLine>, old: &str, new: &str) {
    for hunk in crate::linediff::hunks(old, new, 3) {
        out.push(DiffLine {
            class: "hunk",
            text: hunk.header,
        });
        for line in hunk.lines {
            let class = match line.tag {
                ChangeTag::Insert => "add",
                ChangeTag::Delete => "del",
                ChangeTag::Equal => "ctx",
            };
            let mut text = String::with_capacity(line.content().len() + 1);
            text.push(line.mark());
            text.extend(line.content().chars().take(MAX_LINE_CHARS));
            out.push(DiffLine { class, text });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn texts(d: &DiffView) -> Vec<(&str, &str)> {
        d.lines.iter().map(|l| (l.class, l.text.as_str())).collect()
    }

    #[test]
    fn edit_is_a_unified_diff() {
        let d = for_tool(
            "Edit",
            &json!({"file_path": "/a.rs", "old_string": "a\nb\nc\n", "new_string": "a\nB\nc\n"}),
        )
        .expect("diff");
        assert_eq!(d.path, "/a.rs");
        let t = texts(&d);
        assert_eq!(t[0].0, "hunk");
        assert!(t.contains(&("del", "-b")), "{t:?}");
        assert!(t.contains(&("add", "+B")), "{t:?}");
        assert!(t.contains(&("ctx", " a")), "{t:?}");
    }

    #[test]
    fn write_is_all_added_and_multiedit_has_a_hunk_per_edit() {
        let d = for_tool("Write", &json!({"file_path": "x", "content": "one\ntwo"})).expect("w");
        assert_eq!(
            texts(&d)[1..],
            [("add", "+one"), ("add", "+two")],
            "{:?}",
            d.lines
        );
        let m = for_tool(
            "MultiEdit",
            &json!({"file_path": "y", "edits": [
                {"old_string": "1", "new_string": "2"},
                {"old_string": "3", "new_string": "4"}
            ]}),
        )
        .expect("m");
        assert_eq!(m.lines.iter().filter(|l| l.class == "hunk").count(), 2);
        assert!(for_tool("Bash", &json!({"command": "ls"})).is_none());
        assert!(for_tool("Write", &json!({"content": "no path"})).is_none());
    }

    #[test]
    fn long_diffs_are_cut() {
        let content = "x\n".repeat(1000);
        let d = for_tool("Write", &json!({"file_path": "x", "content": content})).expect("w");
        assert_eq!(d.lines.len(), MAX_LINES);
        assert_eq!(d.more, 1001 - MAX_LINES);
    }
}
