//! A file-editing tool call (`Edit`, `MultiEdit`, `Write`) as a unified diff, for the
//! approval message that asks whether it may run. The bot never sees the file itself, so
//! an edit is the diff of its `old_string` → `new_string` (hunk headers carry no line
//! numbers, which only the file would give) and a write is its whole new content, added.
//!
//! The hunks come from [`crate::linediff`] (a line diff with a time cap, so a huge input
//! cannot stall the caller), the same as the dashboard shows.

use std::fmt::Write as _;

use serde_json::Value;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// What a file-editing tool call would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The file, as the tool names it.
    pub file: String,
    /// The unified diff (`--- a/…`, `+++ b/…`, `@@` hunks).
    pub diff: String,
    /// True for a write: the diff is the whole new content, whatever the file held.
    pub whole_file: bool,
}

/// The change `tool` with `input` would make, for the tools that edit files; `None` for
/// other tools or an input without the fields.
pub fn change(tool: &str, input: &Value) -> Option<Change> {
    let file = input.get("file_path").and_then(Value::as_str)?.to_owned();
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut diff = format!("--- a/{file}\n+++ b/{file}\n");
    let whole_file = match tool {
        "Edit" => {
            hunks(
                &mut diff,
                &text(input, "old_string")?,
                &text(input, "new_string")?,
                "",
            );
            false
        }
        "MultiEdit" => {
            let edits = input.get("edits").and_then(Value::as_array)?;
            for (i, e) in edits.iter().enumerate() {
                let label = format!(" edit {} of {}", i + 1, edits.len());
                hunks(
                    &mut diff,
                    &text(e, "old_string")?,
                    &text(e, "new_string")?,
                    &label,
                );
            }
            false
        }
        "Write" => {
            hunks(&mut diff, "", &text(input, "content")?, " whole file");
            true
        }
        _ => return None,
    };
    Some(Change {
        file,
        diff,
        whole_file,
    })
}

/// Appends the hunks of `old` → `new` to `out`, each headed `@@<label> @@`.
fn hunks(out: &mut String, old: &str, new: &str, label: &str) {
    let hunks = crate::linediff::hunks(old, new, CONTEXT);
    if hunks.is_empty() {
        let _ = writeln!(out, "@@{label} @@ (no change)");
        return;
    }
    for hunk in hunks {
        let _ = writeln!(out, "@@{label} @@");
        for line in hunk.lines {
            out.push(line.mark());
            out.push_str(line.text);
            if !line.has_newline() {
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_edit_is_a_diff_of_its_strings() {
        let input = json!({
            "file_path": "/srv/app/main.rs",
            "old_string": "fn main() {\n    println!(\"hi\");\n}",
            "new_string": "fn main() {\n    println!(\"hello\");\n}",
        });
        let c = change("Edit", &input).expect("edit");
        assert_eq!(
            c.diff,
            "--- a//srv/app/main.rs\n+++ b//srv/app/main.rs\n@@ @@\n fn main() {\n-    println!(\"hi\");\n+    println!(\"hello\");\n }\n"
        );
        assert!(!c.whole_file);
    }

    #[test]
    fn multi_edits_get_a_hunk_each_and_writes_add_everything() {
        let input = json!({"file_path": "a.txt", "edits": [
            {"old_string": "one", "new_string": "1"},
            {"old_string": "two", "new_string": "two"},
        ]});
        let c = change("MultiEdit", &input).expect("multi");
        assert!(
            c.diff.contains("@@ edit 1 of 2 @@\n-one\n+1\n"),
            "{}",
            c.diff
        );
        assert!(
            c.diff.contains("@@ edit 2 of 2 @@ (no change)"),
            "{}",
            c.diff
        );
        let w = change("Write", &json!({"file_path": "n.txt", "content": "x\ny"})).expect("w");
        assert!(w.whole_file);
        assert!(w.diff.ends_with("@@ whole file @@\n+x\n+y\n"), "{}", w.diff);
        assert_eq!(change("Bash", &json!({"command": "ls"})), None);
        assert_eq!(change("Edit", &json!({"file_path": "x"})), None);
    }
}
