//! Entry names of an archive, judged before anything is unpacked: [`check`] turns a stored
//! name into an [`EntryPath`] that stays inside the workspace, or the error naming it
//! (`ZIP_BAD_NAME`, `ZIP_ABSOLUTE_PATH`, `ZIP_PATH_TRAVERSAL`); [`central_names`] lists
//! every name in the central directory, duplicates included, which the zip crate folds.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use common::ipc::{ErrorBody, ErrorCode};

/// Longest name of one path component (Linux's `NAME_MAX`).
const MAX_COMPONENT: usize = 255;
/// Longest entry name.
const MAX_NAME: usize = 4096;
/// Signature of a central directory file header.
const CENTRAL_HEADER: u32 = 0x0201_4b50;
/// Fixed part of a central directory file header.
const CENTRAL_FIXED: usize = 46;

/// A checked entry path: plain components only, no `..`, nothing absolute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryPath(Vec<String>);

impl EntryPath {
    /// The path under `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        p.extend(&self.0);
        p
    }

    /// Every proper ancestor, outermost first (`a`, `a/b` for `a/b/c`).
    pub fn parents(&self) -> impl Iterator<Item = EntryPath> + '_ {
        (1..self.0.len()).map(|n| Self(self.0[..n].to_vec()))
    }

    /// The path as `a/b/c`.
    pub fn display(&self) -> String {
        self.0.join("/")
    }
}

/// A name as people should read it in an error: invalid UTF-8 replaced, control
/// characters escaped.
pub fn shown(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).escape_debug().to_string()
}

fn bad(code: ErrorCode, raw: &[u8], why: &str) -> ErrorBody {
    ErrorBody::new(code, format!("entry `{}` {why}", shown(raw)))
}

/// Checks one stored entry name.
pub fn check(raw: &[u8]) -> Result<EntryPath, ErrorBody> {
    if raw.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::ZipBadName,
            "an entry has an empty name",
        ));
    }
    if raw.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err(bad(
            ErrorCode::ZipBadName,
            raw,
            "has a NUL or control character in its name",
        ));
    }
    if raw.len() > MAX_NAME {
        return Err(bad(
            ErrorCode::ZipBadName,
            raw,
            "has a name that is too long",
        ));
    }
    let name = String::from_utf8_lossy(raw);
    if name.chars().any(char::is_control) {
        return Err(bad(
            ErrorCode::ZipBadName,
            raw,
            "has a control character in its name",
        ));
    }
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.starts_with('/') || name.starts_with('\\') || drive {
        return Err(bad(
            ErrorCode::ZipAbsolutePath,
            raw,
            "has an absolute path; entries must be relative to the workspace",
        ));
    }
    let mut parts = Vec::new();
    // Backslashes count as separators too, so `..\x` cannot slip through as one name.
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(bad(
                    ErrorCode::ZipPathTraversal,
                    raw,
                    "climbs out of the workspace with `..`",
                ));
            }
            p if p.len() > MAX_COMPONENT => {
                return Err(bad(
                    ErrorCode::ZipBadName,
                    raw,
                    "has a path component longer than 255 bytes",
                ));
            }
            p => parts.push(p.to_owned()),
        }
    }
    if parts.is_empty() {
        return Err(bad(
            ErrorCode::ZipBadName,
            raw,
            "names no file or directory",
        ));
    }
    Ok(EntryPath(parts))
}

/// The names of the central directory that starts at `start`, in order, at most
/// `max + 1` of them (enough to tell that there are too many).
pub fn central_names(zip: &Path, start: u64, max: usize) -> Result<Vec<Vec<u8>>, ErrorBody> {
    let corrupt = |e: std::io::Error| {
        ErrorBody::new(
            ErrorCode::ZipCorrupt,
            format!("the archive's central directory cannot be read: {e}"),
        )
    };
    let mut r = BufReader::new(std::fs::File::open(zip).map_err(corrupt)?);
    r.seek(SeekFrom::Start(start)).map_err(corrupt)?;
    let mut names = Vec::new();
    let mut fixed = [0u8; CENTRAL_FIXED];
    while names.len() <= max {
        match r.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(corrupt(e)),
        }
        if u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]) != CENTRAL_HEADER {
            break;
        }
        let len = |at: usize| usize::from(u16::from_le_bytes([fixed[at], fixed[at + 1]]));
        let (name_len, extra_len, comment_len) = (len(28), len(30), len(32));
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name).map_err(corrupt)?;
        let skip = i64::try_from(extra_len + comment_len).unwrap_or(0);
        r.seek_relative(skip).map_err(corrupt)?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(name: &[u8]) -> ErrorCode {
        check(name)
            .map(|_| ErrorCode::Internal)
            .unwrap_or_else(|e| e.code)
    }

    #[test]
    fn names_are_judged() {
        assert_eq!(
            check(b"a/./b//c").map(|p| p.display()).ok(),
            Some("a/b/c".into())
        );
        assert_eq!(check(b"dir/").map(|p| p.display()).ok(), Some("dir".into()));
        assert_eq!(code(b"../x"), ErrorCode::ZipPathTraversal);
        assert_eq!(code(b"a/../../x"), ErrorCode::ZipPathTraversal);
        assert_eq!(code(b"a\\..\\x"), ErrorCode::ZipPathTraversal);
        assert_eq!(code(b"/etc/passwd"), ErrorCode::ZipAbsolutePath);
        assert_eq!(code(b"\\x"), ErrorCode::ZipAbsolutePath);
        assert_eq!(code(b"C:x"), ErrorCode::ZipAbsolutePath);
        assert_eq!(code(b"a\0b"), ErrorCode::ZipBadName);
        assert_eq!(code(b"a\nb"), ErrorCode::ZipBadName);
        assert_eq!(code("a\u{85}b".as_bytes()), ErrorCode::ZipBadName);
        assert_eq!(code(b""), ErrorCode::ZipBadName);
        assert_eq!(code(b"./"), ErrorCode::ZipBadName);
        assert_eq!(code(&[b'a'; 300]), ErrorCode::ZipBadName);
        let err = check(b"x/../../y").expect_err("traversal");
        assert!(err.message.contains("x/../../y"), "{}", err.message);
        let p = check(b"a/b/c").expect("ok");
        let parents: Vec<String> = p.parents().map(|p| p.display()).collect();
        assert_eq!(parents, ["a", "a/b"]);
        assert_eq!(p.under(Path::new("/r")), PathBuf::from("/r/a/b/c"));
    }
}
