//! The checks of this machine alone: config source, claude and its version, claude's
//! credentials, tmux, the directories and the disk.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::{Finding, Options, PINNED_CLAUDE_VERSION, Status};
use crate::config::Config;

/// Below this much free space sessions and the spool may stop being written.
const DISK_FAIL_BYTES: u64 = 100 * 1024 * 1024;
/// Below this much free space, a warning.
const DISK_WARN_BYTES: u64 = 1024 * 1024 * 1024;

/// Which file the config came from.
pub(super) fn config_source(opts: &Options) -> String {
    let explicit = opts.config_file.clone().or_else(|| {
        std::env::var_os("CCRM_CONFIG")
            .filter(|v| !v.is_empty())
            .map(Into::into)
    });
    match explicit {
        Some(p) => format!("loaded {}", p.display()),
        None => {
            let p = crate::config::default_config_file();
            if p.exists() {
                format!("loaded {}", p.display())
            } else {
                format!("no {} (defaults and CCRM_* variables)", p.display())
            }
        }
    }
}

/// The claude binary, and its version against the pinned one.
pub(super) async fn claude(cfg: Option<&Config>) -> Finding {
    let configured = cfg.and_then(|c| c.claude_bin.as_deref());
    let bin = match crate::spawn::find_claude(configured) {
        Ok(b) => b,
        Err(e) => {
            return Finding::bad(
                "claude",
                Status::Fail,
                format!("{e:#}"),
                format!(
                    "install Claude Code {pinned} (`npm install -g @anthropic-ai/claude-code@{pinned}`, or scripts/install-claude.sh in a checkout) and put it on PATH or in claude_bin",
                    pinned = pinned()
                ),
            );
        }
    };
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(&bin)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let version = match out {
        Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(Ok(o)) => {
            return Finding::bad(
                "claude",
                Status::Fail,
                format!(
                    "{} --version failed ({}): {}",
                    bin.display(),
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                "reinstall Claude Code (Node.js 18 or newer is needed)",
            );
        }
        Ok(Err(e)) => {
            return Finding::bad(
                "claude",
                Status::Fail,
                format!("cannot run {}: {e}", bin.display()),
                "reinstall Claude Code",
            );
        }
        Err(_) => {
            return Finding::bad(
                "claude",
                Status::Fail,
                format!("{} --version did not answer in 30 s", bin.display()),
                "run it by hand to see what it waits for",
            );
        }
    };
    let found = version.split_whitespace().next().unwrap_or("");
    if found == pinned() {
        Finding::ok(
            "claude",
            format!("{} {found} (the pinned version)", bin.display()),
        )
    } else {
        Finding::bad(
            "claude",
            Status::Warn,
            format!(
                "{} is version {found}, ccrm is tested with {}",
                bin.display(),
                pinned()
            ),
            format!(
                "`npm install -g @anthropic-ai/claude-code@{0}` (or scripts/install-claude.sh); other versions usually work but may print messages ccrm does not know",
                pinned()
            ),
        )
    }
}

fn pinned() -> &'static str {
    PINNED_CLAUDE_VERSION.trim()
}

/// Whether claude can authenticate: an API key or token in the environment (this shell's
/// or the config's `child_env`), or a login stored under `$HOME`.
pub(super) fn credentials(cfg: Option<&Config>) -> Finding {
    const VARS: &[&str] = &[
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "CLAUDE_CODE_USE_BEDROCK",
        "CLAUDE_CODE_USE_VERTEX",
    ];
    for var in VARS {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            return Finding::ok("credentials", format!("{var} is set in this environment"));
        }
        if cfg.is_some_and(|c| c.child_env.get(*var).is_some_and(|v| !v.is_empty())) {
            return Finding::ok("credentials", format!("{var} is set in child_env"));
        }
    }
    let home = crate::config::home_dir();
    let claude_dir =
        std::env::var_os("CLAUDE_CONFIG_DIR").map_or_else(|| home.join(".claude"), Into::into);
    if claude_dir.join(".credentials.json").is_file() {
        return Finding::ok(
            "credentials",
            format!(
                "logged in ({})",
                claude_dir.join(".credentials.json").display()
            ),
        );
    }
    let global = home.join(".claude.json");
    if let Ok(text) = std::fs::read_to_string(&global)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && (v.get("oauthAccount").is_some_and(|a| !a.is_null())
            || v.get("primaryApiKey").is_some_and(|k| k.is_string()))
    {
        return Finding::ok("credentials", format!("logged in ({})", global.display()));
    }
    Finding::bad(
        "credentials",
        Status::Fail,
        "claude has no API key and no stored login for this user",
        "run `claude` once and log in (`/login`), or give ccrmd ANTHROPIC_API_KEY (its environment, or child_env in ccrmd.toml); `ccrm up --demo` needs neither",
    )
}

/// tmux, which `ccrm attach` needs (nothing else does).
pub(super) async fn tmux() -> Finding {
    let Some(bin) = crate::attach::find_tmux() else {
        return Finding::bad(
            "tmux",
            Status::Warn,
            "tmux is not on PATH, so `ccrm attach` cannot open a session in the terminal (everything else works)",
            "install it: `apt-get install tmux` (Debian/Ubuntu), `dnf install tmux` (Fedora), `brew install tmux` (macOS)",
        );
    };
    let version = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(&bin)
            .arg("-V")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    .unwrap_or_default();
    Finding::ok("tmux", format!("{} ({version})", bin.display()))
}

/// The state and runtime directories: private when they exist.
pub(super) fn dirs(cfg: &Config) -> Finding {
    let mut open = Vec::new();
    for dir in [&cfg.state_dir, &cfg.runtime_dir] {
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o077 != 0
        {
            open.push(dir.display().to_string());
        }
    }
    if open.is_empty() {
        Finding::ok(
            "dirs",
            format!(
                "state {} and runtime {} are private (or not created yet)",
                cfg.state_dir.display(),
                cfg.runtime_dir.display()
            ),
        )
    } else {
        Finding::bad(
            "dirs",
            Status::Warn,
            format!("others can read {}", open.join(" and ")),
            format!("chmod 700 {}", open.join(" ")),
        )
    }
}

/// Free space where the state dir lives (session records, the spool, logs).
pub(super) fn disk(cfg: &Config) -> Finding {
    let Some(dir) = existing_ancestor(&cfg.state_dir) else {
        return Finding::skip("disk", "no existing directory above the state dir");
    };
    let stat = match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s,
        Err(e) => return Finding::skip("disk", format!("cannot stat {}: {e}", dir.display())),
    };
    // The block count is u64 on Linux but u32 on macOS.
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stat.blocks_available()).saturating_mul(stat.fragment_size());
    let detail = format!("{} free on {}", human_bytes(free), dir.display());
    if free < DISK_FAIL_BYTES {
        Finding::bad(
            "disk",
            Status::Fail,
            detail,
            "free some space: events are spooled there before the bot has them",
        )
    } else if free < DISK_WARN_BYTES {
        Finding::bad(
            "disk",
            Status::Warn,
            detail,
            "free some space soon, or move state_dir",
        )
    } else {
        Finding::ok("disk", detail)
    }
}

fn existing_ancestor(p: &Path) -> Option<&Path> {
    p.ancestors().find(|a| a.is_dir())
}

fn human_bytes(n: u64) -> String {
    const GIB: u64 = 1024 * 1024 * 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        format!("{} MiB", n / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(3 * 1024 * 1024), "3 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024 / 2), "2.5 GiB");
    }

    #[test]
    fn the_pinned_version_is_a_version() {
        assert!(pinned().split('.').count() == 3, "{}", pinned());
    }
}
