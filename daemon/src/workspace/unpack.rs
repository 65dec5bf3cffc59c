//! The guarded unpacker: a zip on disk into a fresh, empty directory, or a stable error
//! ([`ErrorCode`]`::Zip*`) naming the entry and nothing unpacked.
//!
//! The [`zip`] crate reads the archive; this module decides what may come out of it. All of
//! the archive's metadata is checked before one byte is written ([`check`]): the number of
//! entries, every name (see [`super::names`]), duplicates, symlinks and special files
//! (from the unix mode), encryption, the declared sizes against the total cap and the
//! expansion ratio. Extraction then trusts nothing it was told: an entry that yields more
//! than its header declared, or pushes the total past the cap, stops at once (a zip bomb
//! cannot fill the disk), and the zip crate's CRC check catches damaged data. Files are
//! created with `O_EXCL | O_NOFOLLOW` under directories this module made itself, so
//! nothing is ever written through a symlink. The caller unpacks into a temporary
//! directory and removes it on any error.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use common::ipc::{ErrorBody, ErrorCode};
use zip::ZipArchive;
use zip::result::ZipError;

use super::names::{self, EntryPath};

/// Entries smaller than this are not held to the ratio cap (a small file of zeros is fine).
const RATIO_FLOOR: u64 = 1024 * 1024;

/// The caps one unpack is held to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most bytes unpacked in total.
    pub max_bytes: u64,
    /// Most entries.
    pub max_files: usize,
    /// Most an entry (or the archive) may expand.
    pub max_ratio: u64,
}

/// What was unpacked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Regular files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

fn err(code: ErrorCode, msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, msg)
}

fn corrupt(msg: impl Into<String>) -> ErrorBody {
    err(ErrorCode::ZipCorrupt, msg)
}

/// One entry as checked: its index in the archive, its path, and what it is.
struct Planned {
    index: usize,
    path: EntryPath,
    dir: bool,
    size: u64,
    executable: bool,
}

/// Unpacks the zip at `zip` into `dest`, which must exist and be empty.
pub fn unpack(zip: &Path, dest: &Path, limits: &Limits) -> Result<Stats, ErrorBody> {
    let packed = std::fs::metadata(zip)
        .map_err(|e| corrupt(format!("cannot read the uploaded archive: {e}")))?
        .len();
    let file = File::open(zip).map_err(|e| corrupt(format!("cannot open the archive: {e}")))?;
    let mut archive = ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        corrupt(format!(
            "not a readable zip archive (truncated or corrupt?): {e}"
        ))
    })?;
    let plan = check(zip, packed, &mut archive, limits)?;
    extract(&mut archive, &plan, dest, limits)
}

/// Every check that needs no extraction; returns what to unpack, in archive order.
fn check<R: Read + std::io::Seek>(
    zip: &Path,
    packed: u64,
    archive: &mut ZipArchive<R>,
    limits: &Limits,
) -> Result<Vec<Planned>, ErrorBody> {
    // The zip crate keeps only the last of several entries with one name, so the central
    // directory's names are read here to find duplicates and to count every entry.
    let raw = names::central_names(zip, archive.central_directory_start(), limits.max_files)?;
    if raw.len() > limits.max_files || archive.len() > limits.max_files {
        return Err(err(
            ErrorCode::ZipTooManyFiles,
            format!(
                "the archive has more than {} entries (workspace_max_files)",
                limits.max_files
            ),
        ));
    }
    let mut seen = HashSet::new();
    for name in &raw {
        let path = names::check(name)?;
        if !seen.insert(path.clone()) {
            return Err(err(
                ErrorCode::ZipDuplicate,
                format!("entry `{}` appears more than once", path.display()),
            ));
        }
    }

    let mut plan = Vec::with_capacity(archive.len());
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| corrupt(format!("entry #{index} cannot be read: {e}")))?;
        let shown = names::shown(entry.name_raw());
        let path = names::check(entry.name_raw())?;
        if entry.encrypted() {
            return Err(err(
                ErrorCode::ZipEncrypted,
                format!("entry `{shown}` is encrypted; upload an archive without a password"),
            ));
        }
        let mode = entry.unix_mode().unwrap_or(0);
        let kind = mode & S_IFMT;
        if kind == S_IFLNK {
            return Err(err(
                ErrorCode::ZipSymlink,
                format!("entry `{shown}` is a symlink; workspaces hold only files and directories"),
            ));
        }
        let dir = entry.is_dir() || kind == S_IFDIR;
        if kind != 0 && kind != S_IFREG && kind != S_IFDIR {
            return Err(err(
                ErrorCode::ZipSpecialFile,
                format!("entry `{shown}` is a device, FIFO or socket (mode {mode:o})"),
            ));
        }
        let size = entry.size();
        total = total.saturating_add(size);
        if total > limits.max_bytes {
            return Err(too_large(&shown, limits));
        }
        if size >= RATIO_FLOOR && size > entry.compressed_size().saturating_mul(limits.max_ratio) {
            return Err(ratio(&shown, size, entry.compressed_size(), limits));
        }
        plan.push(Planned {
            index,
            path,
            dir,
            size,
            executable: mode & 0o111 != 0,
        });
    }
    if total >= RATIO_FLOOR && total > packed.saturating_mul(limits.max_ratio) {
        return Err(ratio("(the whole archive)", total, packed, limits));
    }
    check_file_dir_clash(&plan)?;
    Ok(plan)
}

/// A file may not also be a directory (`a` as a file and `a/b` in the same archive).
fn check_file_dir_clash(plan: &[Planned]) -> Result<(), ErrorBody> {
    let mut dirs = HashSet::new();
    for p in plan {
        for parent in p.path.parents() {
            dirs.insert(parent);
        }
        if p.dir {
            dirs.insert(p.path.clone());
        }
    }
    match plan.iter().find(|p| !p.dir && dirs.contains(&p.path)) {
        Some(p) => Err(err(
            ErrorCode::ZipDuplicate,
            format!(
                "entry `{}` is both a file and a directory",
                p.path.display()
            ),
        )),
        None => Ok(()),
    }
}

fn too_large(entry: &str, limits: &Limits) -> ErrorBody {
    err(
        ErrorCode::ZipTooLarge,
        format!(
            "the archive unpacks to more than {} bytes (workspace_max_bytes), at entry `{entry}`",
            limits.max_bytes
        ),
    )
}

fn ratio(entry: &str, size: u64, packed: u64, limits: &Limits) -> ErrorBody {
    err(
        ErrorCode::ZipRatio,
        format!(
            "entry `{entry}` expands from {packed} to {size} bytes, more than {}x (workspace_max_ratio)",
            limits.max_ratio
        ),
    )
}

fn extract<R: Read + std::io::Seek>(
    archive: &mut ZipArchive<R>,
    plan: &[Planned],
    dest: &Path,
    limits: &Limits,
) -> Result<Stats, ErrorBody> {
    let io = |what: &str, p: &EntryPath, e: std::io::Error| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("cannot {what} `{}`: {e}", p.display()),
        )
    };
    let mut made: HashSet<EntryPath> = HashSet::new();
    let mut stats = Stats::default();
    let mut buf = vec![0u8; 64 * 1024];
    for p in plan {
        // Directories are made here, one level at a time, never followed through a link
        // (nothing but this function creates anything under `dest`).
        let dirs: Vec<EntryPath> = if p.dir {
            p.path
                .parents()
                .chain(std::iter::once(p.path.clone()))
                .collect()
        } else {
            p.path.parents().collect()
        };
        for d in dirs {
            if made.insert(d.clone()) {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(d.under(dest))
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| io("create directory", &d, e))?;
            }
        }
        if p.dir {
            continue;
        }
        let shown = p.path.display();
        let mut entry = archive.by_index(p.index).map_err(|e| match e {
            ZipError::UnsupportedArchive(why) => corrupt(format!(
                "entry `{shown}` cannot be unpacked ({why}); use deflate or no compression"
            )),
            other => corrupt(format!("entry `{shown}` cannot be read: {other}")),
        })?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if p.executable { 0o755 } else { 0o644 })
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(p.path.under(dest))
            .map_err(|e| io("create", &p.path, e))?;
        let mut written: u64 = 0;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| corrupt(format!("entry `{shown}` is damaged: {e}")))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > p.size {
                return Err(corrupt(format!(
                    "entry `{shown}` holds more data than its header declares ({} bytes)",
                    p.size
                )));
            }
            if stats.bytes + written > limits.max_bytes {
                return Err(too_large(&shown, limits));
            }
            out.write_all(&buf[..n])
                .map_err(|e| io("write", &p.path, e))?;
        }
        if written != p.size {
            return Err(corrupt(format!(
                "entry `{shown}` holds {written} bytes, its header declares {}",
                p.size
            )));
        }
        stats.bytes += written;
        stats.files += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use testkit::zips::{Entry, RawZip};

    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1024 * 1024,
        max_files: 10,
        max_ratio: 100,
    };

    fn unpack_bytes(zip: &[u8]) -> (Result<Stats, ErrorBody>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("in.zip");
        std::fs::write(&file, zip).expect("write");
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest).expect("dest");
        (unpack(&file, &dest, &LIMITS), dir)
    }

    #[test]
    fn a_good_archive_unpacks_with_its_modes() {
        let mut tool = Entry::file("bin/tool.sh", "#!/bin/sh\n");
        tool.mode = 0o100_755;
        let zip = RawZip::new()
            .with(Entry::file("a.txt", "alpha"))
            .with(Entry::dir("empty/"))
            .with(tool)
            .build();
        let (r, dir) = unpack_bytes(&zip);
        assert_eq!(
            r.expect("unpacks"),
            Stats {
                files: 2,
                bytes: 15
            }
        );
        let out = dir.path().join("out");
        assert_eq!(
            std::fs::read_to_string(out.join("a.txt")).expect("a"),
            "alpha"
        );
        assert!(out.join("empty").is_dir());
        let mode = |p: &str| {
            std::fs::metadata(out.join(p))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("a.txt"), mode("bin/tool.sh")), (0o644, 0o755));
    }

    #[test]
    fn a_file_may_not_also_be_a_directory_and_nothing_is_written() {
        let zip = RawZip::new()
            .with(Entry::file("a", "file"))
            .with(Entry::file("a/b", "under the file"))
            .build();
        let (r, dir) = unpack_bytes(&zip);
        let e = r.expect_err("clash");
        assert_eq!(e.code, ErrorCode::ZipDuplicate);
        assert!(e.message.contains('a'), "{}", e.message);
        assert_eq!(
            std::fs::read_dir(dir.path().join("out"))
                .expect("ls")
                .count(),
            0
        );
    }
}
