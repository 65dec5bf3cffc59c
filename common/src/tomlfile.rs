//! Reading a TOML config file (`ccrmd.toml`, `bot.toml`) so that a mistake is reported the
//! way people fix it: file, line and key, and what the key allows.
//!
//! [`parse`] turns a `toml` deserialisation error (which carries a byte span) into a
//! [`FileError`]; [`FileError::at_key`] builds the same shape for a value that parsed but
//! failed validation, by finding the key's line. Both configs use these, so the two files
//! report errors alike.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config file mistake: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key at fault, when known.
    pub key: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

impl FileError {
    /// An error about `key` (a top-level key) of the file `path` whose text is `text`: the
    /// line is the one that sets the key, if the file sets it.
    pub fn at_key(path: &Path, text: &str, key: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            line: key_line(text, key),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }
}

/// Parses `text` (the contents of `path`) as `T`, with errors that point at the line.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let key = e
            .span()
            .and_then(|s| key_at(text, s.start))
            .or_else(|| unknown_field(e.message()));
        FileError {
            path: path.to_owned(),
            line,
            key,
            message: plain_message(e.message()),
        }
    })
}

/// The 1-based line of the first `key = ...` in `text` (top level or under a table header).
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| line_key(l) == Some(key))
        .map(|i| i + 1)
}

/// The 1-based line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The key set on the line that holds byte `offset`, if that line is `key = value`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    line_key(line).map(str::to_owned)
}

/// `key` of a `key = value` line (bare or quoted key), else `None`.
fn line_key(line: &str) -> Option<&str> {
    let (key, _) = line.trim_start().split_once('=')?;
    let key = key.trim().trim_matches('"');
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    bare.then_some(key)
}

/// The field named by serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(k, _)| k.to_owned())
}

/// serde's wording for Rust types, said the way a config file reader thinks of them.
fn plain_message(message: &str) -> String {
    let mut out = message.trim().to_owned();
    for (rust, plain) in [
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u16", "expected a whole number (0 to 65535)"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list like [\"a\", \"b\"]"),
        ("expected a map", "expected a table"),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Conf {
        count: Option<usize>,
        name: Option<String>,
        on: Option<bool>,
        env: Option<BTreeMap<String, String>>,
    }

    fn err(text: &str) -> FileError {
        match parse::<Conf>(Path::new("/etc/x.toml"), text) {
            Ok(c) => panic!("parsed: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_bad_type_names_line_key_and_what_is_allowed() {
        let e = err("name = \"a\"\n\ncount = \"many\"\n");
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key.as_deref(), Some("count"));
        assert!(e.message.contains("whole number"), "{e}");
        assert!(
            e.to_string().starts_with("/etc/x.toml:3: key `count`: "),
            "{e}"
        );
        let e = err("on = 1\n");
        assert!(e.message.contains("true or false"), "{e}");
    }

    #[test]
    fn an_unknown_key_lists_the_known_ones() {
        let e = err("name = \"a\"\ncolour = 1\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("colour"));
        assert!(
            e.message.contains("`count`") && e.message.contains("`name`"),
            "{e}"
        );
    }

    #[test]
    fn a_syntax_error_has_its_line() {
        let e = err("name = \"a\"\ncount = \n");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn validation_errors_find_the_key_line() {
        let text = "# c\nname = \"a\"\n[env]\nX = \"1\"\n";
        let e = FileError::at_key(Path::new("/f"), text, "name", "bad");
        assert_eq!(e.to_string(), "/f:2: key `name`: bad");
        let e = FileError::at_key(Path::new("/f"), text, "count", "bad");
        assert_eq!(e.to_string(), "/f: key `count`: bad");
        assert!(parse::<Conf>(Path::new("/f"), text).is_ok());
    }
}
