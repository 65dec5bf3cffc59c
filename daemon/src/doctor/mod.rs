//! `ccrm doctor`: checks what ccrm needs on this machine and explains each problem with its
//! fix. Every check yields a [`Finding`]; the [`Report`] fails when any finding does.
//!
//! - `local`: the config file, the claude binary and its version against the pinned one
//!   (`CLAUDE_VERSION`), whether claude has credentials, tmux, the state and runtime
//!   directories (private?) and the free space where sessions and the spool are kept.
//! - `link`: the daemon on its socket (running? same protocol?), and the bot: the
//!   daemon's own view of its link (connected, key refused, events not yet acknowledged)
//!   plus a direct probe of the bot's `/healthz` over the same TLS settings the daemon
//!   uses, whose `Date` header gives the clock skew.
//!
//! Nothing here changes anything; the checks only read and connect.

mod link;
mod local;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{Config, Overrides};

/// The Claude Code version ccrm is tested with (the repository's `CLAUDE_VERSION`).
pub const PINNED_CLAUDE_VERSION: &str = include_str!("../../../CLAUDE_VERSION");

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but something is off (a feature is missing or a value is unusual).
    Warn,
    /// Broken: ccrm will not work as expected until it is fixed.
    Fail,
    /// Not checked (it does not apply, or depends on something that failed).
    Skip,
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable name of the check (`claude`, `tmux`, `daemon`, `bot_link`, ...).
    pub check: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn skip(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        check: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every finding, in the order checked.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// False when any finding failed.
    pub ok: bool,
    /// The findings.
    pub findings: Vec<Finding>,
}

/// Where to look.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--config` of `ccrm`.
    pub config_file: Option<PathBuf>,
    /// `--socket` of `ccrm` (else the config's).
    pub socket: Option<PathBuf>,
}

/// Runs every check.
pub async fn run(opts: &Options) -> Report {
    let mut findings = Vec::new();
    let cfg = match Config::load(&Overrides {
        config_file: opts.config_file.clone(),
        ..Overrides::default()
    }) {
        Ok(cfg) => {
            findings.push(Finding::ok("config", local::config_source(opts)));
            Some(cfg)
        }
        Err(e) => {
            findings.push(Finding::bad(
                "config",
                Status::Fail,
                format!("{e:#}"),
                "fix the file or variable named above (`ccrmd --print-config` shows the result; the README lists every key)",
            ));
            None
        }
    };
    findings.push(local::claude(cfg.as_ref()).await);
    findings.push(local::credentials(cfg.as_ref()));
    findings.push(local::tmux().await);
    if let Some(cfg) = &cfg {
        findings.push(local::dirs(cfg));
        findings.push(local::disk(cfg));
    }
    let socket = opts
        .socket
        .clone()
        .or_else(|| cfg.as_ref().map(Config::socket_path));
    findings.extend(link::checks(cfg.as_ref(), socket.as_deref()).await);
    Report {
        ok: findings.iter().all(|f| f.status != Status::Fail),
        findings,
    }
}
