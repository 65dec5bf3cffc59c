//! No secret in any log the e2e suites wrote: every `World` (bot, ccrmd) keeps its process
//! logs in `common::log_dir()` and checks its own when it ends; this test reads them all
//! again (named `zz_` so `cargo test` runs it after the other suites of this package) and
//! fails listing `file:line` for anything shaped like a ccrm secret. It also proves the
//! check can fail, on a log line planted for it.

mod common;

#[test]
fn no_e2e_log_holds_a_token() {
    let planted = common::secret_hits(
        std::path::Path::new("planted.log"),
        "ok\nINFO token=ccrm_user_0123456789abcdefghijABCDEFGHIJ0123456789abc\n",
        &[],
    );
    assert_eq!(
        planted,
        ["planted.log:2: a secret"],
        "the check finds a planted token"
    );

    let dir = common::log_dir();
    let mut hits = Vec::new();
    let mut files = 0;
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "log") {
                files += 1;
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                hits.extend(common::secret_hits(&path, &text, &[]));
            }
        }
    }
    eprintln!("checked {files} e2e logs in {}", dir.display());
    assert!(hits.is_empty(), "secrets in e2e logs:\n{}", hits.join("\n"));
}
