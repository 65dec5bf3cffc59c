//! What must hold for the zip guard ([`super::unpack`]) whatever archive arrives: it never
//! panics, never writes outside its target directory (a canary beside the target stays
//! untouched and nothing new appears next to it), never leaves a symlink or special file,
//! and respects its caps: on success the files and bytes it reports are what is on disk and
//! within `max_files` / `max_bytes`; on failure the error is one of the `ZIP_*` codes and
//! what was written so far is within `max_bytes` (the caller then removes it). Each check
//! panics with the counterexample. Two engines look for one: `proptest` in this module's
//! tests (on stable, in `cargo test`) and the cargo-fuzz target `zip_guard` in `fuzz/`
//! (compiled with `--cfg fuzzing`), as for `common::props`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::unpack::{Limits, unpack};

/// The caps the property holds the unpacker to: small, so the generator reaches them.
pub const LIMITS: Limits = Limits {
    max_bytes: 64 * 1024,
    max_files: 8,
    max_ratio: 100,
};

/// Unpacks `zip` into a fresh directory under the system temp dir and checks the
/// properties of the module docs; the directory is removed afterwards.
pub fn unpack_holds(zip: &[u8], limits: &Limits) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let scratch = std::env::temp_dir().join(format!(
        "ccrm-zip-prop-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    let made = std::fs::create_dir_all(scratch.join("out"))
        .and_then(|()| std::fs::create_dir(scratch.join("outside")))
        .and_then(|()| std::fs::write(scratch.join("outside/canary"), b"canary"))
        .and_then(|()| std::fs::write(scratch.join("in.zip"), zip));
    if let Err(e) = made {
        panic!("cannot prepare {}: {e}", scratch.display());
    }
    let result = unpack(&scratch.join("in.zip"), &scratch.join("out"), limits);
    let check = || {
        let mut top: Vec<String> = std::fs::read_dir(&scratch)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        if top != ["in.zip", "out", "outside"] {
            return Err(format!("written beside the target: {top:?}"));
        }
        let outside: Vec<_> = std::fs::read_dir(scratch.join("outside"))
            .map_err(|e| e.to_string())?
            .collect();
        let canary = std::fs::read(scratch.join("outside/canary")).map_err(|e| e.to_string())?;
        if outside.len() != 1 || canary != b"canary" {
            return Err("the directory beside the target changed".into());
        }
        let (files, bytes) = walk(&scratch.join("out"))?;
        match &result {
            Ok(stats) => {
                if (stats.files, stats.bytes) != (files, bytes) {
                    return Err(format!(
                        "reported {stats:?}, on disk {files} files {bytes} bytes"
                    ));
                }
                if files > limits.max_files as u64 || bytes > limits.max_bytes {
                    return Err(format!("over the caps: {files} files, {bytes} bytes"));
                }
            }
            Err(e) => {
                let code = serde_json::to_value(e.code).unwrap_or_default();
                if !code.as_str().is_some_and(|c| c.starts_with("ZIP_")) {
                    return Err(format!("refused with {code} ({})", e.message));
                }
                if bytes > limits.max_bytes {
                    return Err(format!("{bytes} bytes written before the refusal"));
                }
            }
        }
        Ok(())
    };
    let verdict = check();
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(why) = verdict {
        panic!("{why}; result {result:?}");
    }
}

/// Regular files and their bytes under `dir`; an error for anything that is neither a
/// file nor a directory (symlinks included: nothing is followed).
fn walk(dir: &Path) -> Result<(u64, u64), String> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let meta = std::fs::symlink_metadata(entry.path()).map_err(|e| e.to_string())?;
        if meta.is_dir() {
            let (f, b) = walk(&entry.path())?;
            files += f;
            bytes += b;
        } else if meta.is_file() {
            files += 1;
            bytes += meta.len();
        } else {
            return Err(format!(
                "{} is {:?}",
                entry.path().display(),
                meta.file_type()
            ));
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use testkit::zips::{self, Entry, RawZip};

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn the_zip_guard_holds_for_generated_archives(
            data in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            unpack_holds(&zips::from_fuzz(&data), &LIMITS);
        }

        #[test]
        fn the_zip_guard_holds_for_raw_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut zip = b"PK\x03\x04".to_vec();
            zip.extend(data);
            unpack_holds(&zip, &LIMITS);
        }
    }

    #[test]
    fn every_hostile_archive_holds() {
        let outside = std::env::temp_dir().join("ccrm-zip-prop-outside");
        for h in zips::hostile(&outside, 2 * 1024 * 1024, LIMITS.max_files) {
            unpack_holds(&h.zip, &LIMITS);
        }
        let good = RawZip::new()
            .with(Entry::file("a/b.txt", "hello"))
            .with(Entry::dir("c/"))
            .build();
        unpack_holds(&good, &LIMITS);
    }
}
