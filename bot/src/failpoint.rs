//! Test-only crash points. In debug builds, `CCRM_BOT_FAILPOINT=<name>` makes the process
//! abort (no cleanup, like `kill -9`) the first time it reaches [`hit`]`(<name>)`, so a
//! test can crash the bot at an exact step (between posting a chat answer and recording
//! it, say). Release builds compile [`hit`] to nothing.

/// The environment variable naming the crash point.
pub const ENV: &str = "CCRM_BOT_FAILPOINT";

/// Aborts the process when `name` is the configured crash point (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var(ENV).is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
