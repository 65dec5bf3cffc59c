//! A stop or kill of the child in progress ([`Ending`]) and why it was asked for
//! ([`EndKind`]).
//!
//! Stop = interrupt + close stdin, then, when the grace period passes, SIGTERM, then
//! SIGKILL to the process group; kill = SIGKILL at once. The actor ([`super::actor`]) sleeps
//! until [`Ending::deadline`] and calls [`Ending::escalate`] when it passes; the child's exit
//! ends the ending.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::spawn;

/// How long the child gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the exit after SIGKILL before trying again.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Why the child is being ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum EndKind {
    /// `ccrm stop`, or the daemon shutting down.
    Stop,
    /// `ccrm kill`.
    Kill,
    /// Stop the child to hand the session to the TUI (`ccrm attach`).
    Handover,
}

impl EndKind {
    /// The reason a session ended this way shows: `killed` or `stopped`.
    pub(super) fn outcome(self) -> &'static str {
        if self == Self::Kill {
            "killed"
        } else {
            "stopped"
        }
    }
}

/// An ending in progress: what was asked for, and when to escalate.
pub(super) struct Ending {
    /// What was asked for.
    pub(super) kind: EndKind,
    deadline: Instant,
    /// 0: waiting out the grace period; 1: SIGTERM sent; 2: SIGKILL sent.
    stage: u8,
}

impl Ending {
    /// A graceful ending (the caller has interrupted the turn and closed stdin): escalate
    /// after `grace`.
    pub(super) fn graceful(kind: EndKind, grace: Duration) -> Self {
        Self {
            kind,
            deadline: Instant::now() + grace,
            stage: 0,
        }
    }

    /// A kill (the caller has sent SIGKILL): wait for the exit, and send it again if need be.
    pub(super) fn killed() -> Self {
        Self {
            kind: EndKind::Kill,
            deadline: Instant::now() + KILL_WAIT,
            stage: 2,
        }
    }

    /// When to escalate next.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The deadline passed and the child `pid` still runs: SIGTERM, then SIGKILL.
    pub(super) fn escalate(&mut self, pid: u32) {
        if self.stage == 0 {
            info!(pid, "grace period over; sending SIGTERM");
            spawn::signal_group(pid, Signal::SIGTERM);
            self.stage = 1;
            self.deadline = Instant::now() + TERM_GRACE;
        } else {
            warn!(pid, "child still alive; sending SIGKILL");
            spawn::signal_group(pid, Signal::SIGKILL);
            self.stage = 2;
            self.deadline = Instant::now() + KILL_WAIT;
        }
    }
}
