//! The monitor task of one attach ([`run_tui`]): it starts the TUI in tmux, watches it,
//! ends it, and reports to the session actor.
//!
//! It polls tmux every [`POLL`]: the TUI exited (session gone or pane dead), or the last
//! client detached (the session had a client and now has none). After a detach it waits,
//! bounded by [`IDLE_MAX`], until the TUI is idle (no "esc to interrupt" on screen and a
//! quiet transcript), then ends it (`kill-session` = SIGHUP, then SIGTERM, then SIGKILL to
//! its process group) and reports [`FromTui::Ended`] only once the claude process is gone,
//! so the actor never runs two claude processes for one session. It drives tmux through
//! [`super::tmux`] and reads the transcript through [`super::transcript`].

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::tmux::{Tmux, TuiSpec, alive};
use super::transcript::{Tail, TuiItem};
use crate::spawn;

/// How often the monitor looks at tmux and the transcript.
pub const POLL: Duration = Duration::from_millis(200);
/// Longest wait for a TUI to finish its turn after its last client detached.
pub const IDLE_MAX: Duration = Duration::from_secs(600);
/// How long the transcript must be quiet before a detached TUI counts as idle.
const QUIET: Duration = Duration::from_millis(1000);
/// After `kill-session` (SIGHUP), how long claude gets before SIGTERM; then before SIGKILL.
const HUP_GRACE: Duration = Duration::from_secs(5);
const TERM_GRACE: Duration = Duration::from_secs(2);
/// The TUI's footer while a turn runs (protocol §9).
const BUSY_MARK: &str = "esc to interrupt";

/// Everything one attach needs.
pub struct TuiStart {
    /// ccrm's tmux server.
    pub tmux: Tmux,
    /// The tmux session name.
    pub name: String,
    /// What runs in the pane.
    pub spec: TuiSpec,
    /// The transcript, positioned at the end of what the stream-json child wrote.
    pub tail: Tail,
    /// The `CCRM_OWNER` value of the session, for the final sweep.
    pub owner: String,
}

/// Reports of the monitor task to the session actor.
#[derive(Debug)]
pub enum FromTui {
    /// The TUI runs in tmux.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// The TUI could not be started; no claude process of it is left.
    Failed(String),
    /// What the TUI wrote to the transcript, with the raw lines.
    Items(Vec<(TuiItem, Value)>),
    /// The TUI is gone (its process has exited); the session can have a child again.
    Ended {
        /// Why: it exited, its last client detached, or it was ended.
        reason: String,
    },
}

/// Orders of the session actor to the monitor task.
#[derive(Debug)]
pub enum ToTui {
    /// End the TUI now, without waiting for it to be idle.
    End {
        /// The reason reported in [`FromTui::Ended`].
        reason: String,
        /// SIGKILL at once instead of a graceful end.
        force: bool,
    },
}

/// Why the monitor stops watching.
enum Watch {
    Exited,
    Detached,
    End(String, bool),
}

/// The monitor task of one attach: starts the TUI, watches it, ends it, and reports. It
/// ends the TUI when `ctl` closes (the actor is gone).
pub async fn run_tui(
    mut start: TuiStart,
    tx: mpsc::Sender<FromTui>,
    mut ctl: mpsc::Receiver<ToTui>,
) {
    let name = start.name.clone();
    if let Err(e) = start.tmux.new_session(&name, &start.spec).await {
        let _ = tx
            .send(FromTui::Failed(format!(
                "cannot start the TUI in tmux: {e}"
            )))
            .await;
        return;
    }
    let Some(pane) = start.tmux.pane(&name).await.filter(|p| !p.dead) else {
        start.tmux.kill_session(&name).await;
        let items = start.tail.read();
        if !items.is_empty() {
            let _ = tx.send(FromTui::Items(items)).await;
        }
        let _ = tx
            .send(FromTui::Failed(
                "the Claude Code TUI exited as soon as it started".to_owned(),
            ))
            .await;
        return;
    };
    let pid = pane.pid;
    info!(pid, tmux_session = %name, "claude TUI started in tmux");
    let _ = tx.send(FromTui::Started { pid }).await;

    let watch = watch(&mut start, &tx, &mut ctl).await;
    let (reason, force) = match watch {
        Watch::Exited => ("the TUI exited".to_owned(), false),
        Watch::Detached => ("the last tmux client detached".to_owned(), false),
        Watch::End(reason, force) => (reason, force),
    };
    end_tui(&start, pid, force).await;
    let items = start.tail.read();
    if !items.is_empty() {
        let _ = tx.send(FromTui::Items(items)).await;
    }
    info!(pid, %reason, "claude TUI ended");
    let _ = tx.send(FromTui::Ended { reason }).await;
}

async fn watch(
    start: &mut TuiStart,
    tx: &mpsc::Sender<FromTui>,
    ctl: &mut mpsc::Receiver<ToTui>,
) -> Watch {
    let name = start.name.clone();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set while the last client has gone and we wait for the TUI to be idle.
    let mut detached_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = ctl.recv() => return match msg {
                Some(ToTui::End { reason, force }) => Watch::End(reason, force),
                None => Watch::End("the daemon let go of the session".to_owned(), true),
            },
        }
        let items = start.tail.read();
        if !items.is_empty() {
            let _ = tx.send(FromTui::Items(items)).await;
        }
        let pane = match start.tmux.pane(&name).await {
            Some(p) if !p.dead => p,
            _ => return Watch::Exited,
        };
        if pane.clients > 0 {
            detached_since = None;
            continue;
        }
        if !pane.ever_attached {
            // Nobody attached yet (`--no-attach`, or the client is on its way).
            continue;
        }
        let since = *detached_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= IDLE_MAX {
            warn!("the TUI stayed busy after its last client detached; ending it anyway");
            return Watch::Detached;
        }
        let busy = start
            .tmux
            .capture(&name)
            .await
            .is_some_and(|screen| screen.contains(BUSY_MARK));
        if !busy && start.tail.quiet_for(QUIET) {
            return Watch::Detached;
        }
    }
}

/// Ends the TUI and returns once its process is gone (or could not be killed).
async fn end_tui(start: &TuiStart, pid: u32, force: bool) {
    if force {
        spawn::signal_group(pid, Signal::SIGKILL);
    }
    start.tmux.kill_session(&start.name).await;
    if !wait_gone(pid, HUP_GRACE).await {
        info!(pid, "the TUI ignored SIGHUP; sending SIGTERM");
        spawn::signal_group(pid, Signal::SIGTERM);
        if !wait_gone(pid, TERM_GRACE).await {
            warn!(pid, "the TUI ignored SIGTERM; sending SIGKILL");
            spawn::signal_group(pid, Signal::SIGKILL);
            if !wait_gone(pid, HUP_GRACE).await {
                warn!(pid, "the TUI is still alive after SIGKILL");
            }
        }
    }
    // Tools the TUI started run in process groups of their own.
    let leftovers = spawn::sweep_orphans(&start.owner);
    if !leftovers.is_empty() {
        info!(pids = ?leftovers, "killed processes left behind by the TUI");
    }
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}
