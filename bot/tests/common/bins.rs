//! The other packages' binaries the bot suites run (`ccrmd`, `ccrm`), found beside
//! `ccrm-bot` in the target dir, and refused when they are older than their sources.
//!
//! `cargo test -p ccrm-bot` builds `ccrm-bot` but not `ccrmd`/`ccrm` (another package's
//! binaries); `cargo test --workspace` builds them all. A binary left from before a change
//! to `daemon/src` or `common/src` made suites fail far from the cause, so [`bin`] compares
//! modification times (the binary against the newest file under those trees, walked once
//! per test process, at most [`MAX_FILES`] entries) and fails with the command to run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

/// At most this many directory entries are looked at (the walk stays cheap and bounded).
pub const MAX_FILES: usize = 20_000;

/// The source trees the daemon's binaries are built from, under the workspace root.
const SOURCES: [&str; 2] = ["daemon/src", "common/src"];

/// The newest modification time of a file under `roots` (recursively, symlinks not
/// followed, at most [`MAX_FILES`] entries), and that file.
pub fn newest_under(roots: &[PathBuf]) -> Option<(SystemTime, PathBuf)> {
    let mut stack: Vec<PathBuf> = roots.to_vec();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_FILES {
                return newest;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if let Ok(m) = meta.modified()
                && newest.as_ref().is_none_or(|(t, _)| m > *t)
            {
                newest = Some((m, entry.path()));
            }
        }
    }
    newest
}

/// `Err` with what to run when `bin` is missing or older than `newest` (a source file
/// and its modification time); `build` is the command that rebuilds it.
pub fn check_fresh(
    bin: &Path,
    newest: Option<&(SystemTime, PathBuf)>,
    build: &str,
) -> Result<(), String> {
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{} is missing ({e}): run `{build}`", bin.display()))?;
    match newest {
        Some((changed, file)) if *changed > built => Err(format!(
            "{} is older than the daemon sources ({} changed after it was built); run `{build}`",
            bin.display(),
            file.display()
        )),
        _ => Ok(()),
    }
}

/// The newest file of the daemon's sources ([`SOURCES`]), found once per process.
fn newest_source() -> Option<&'static (SystemTime, PathBuf)> {
    static NEWEST: OnceLock<Option<(SystemTime, PathBuf)>> = OnceLock::new();
    NEWEST
        .get_or_init(|| {
            let bot = Path::new(env!("CARGO_MANIFEST_DIR"));
            let root = bot.parent().unwrap_or(bot);
            newest_under(&SOURCES.map(|s| root.join(s))).map(|(t, file)| {
                // Named from the workspace root (`daemon/src/lib.rs`), as people type it.
                let short = file.strip_prefix(root).map(Path::to_path_buf);
                (t, short.unwrap_or(file))
            })
        })
        .as_ref()
}

/// The binary `name` of the daemon package beside `ccrm-bot`.
///
/// # Panics
///
/// When it is missing or older than the daemon's sources, with the command to run.
pub fn bin(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_ccrm-bot")).with_file_name(name);
    let shown = Path::new("target/debug").join(name);
    if let Err(e) = check_fresh(&p, newest_source(), "cargo build -p ccrm-daemon --bins") {
        // Say `target/debug/ccrmd` as people type it, whatever the target dir is.
        panic!(
            "{}",
            e.replacen(&p.display().to_string(), &shown.display().to_string(), 1)
        );
    }
    p
}
