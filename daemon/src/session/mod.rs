//! The session actor: one task per session that owns its Claude Code child.
//!
//! [`SessionHandle`] is the cheap, clonable way in: it sends [`Cmd`]s to the actor and
//! reads the shared snapshot ([`SessionInfo`](common::ipc::SessionInfo), pending approvals)
//! and the [`EventLog`](crate::eventlog::EventLog) without waiting for the actor. The actor
//! alone writes to the child and reacts to what it prints. Helper tasks per child: a stdout
//! reader (which also reaps the child), a stdin writer for the lines the pipe could not take
//! at once, and a stderr reader that logs and keeps a tail for failure reasons (the helix `transport.rs`
//! layout).
//!
//! Turns are strictly one at a time: prompts wait in our own FIFO queue and the next one is
//! written to the child only after the previous turn's `result`, so every prompt gets its
//! own turn and its own result (the CLI would otherwise fold messages into a running turn).
//!
//! Attach (`ccrm attach`): the actor waits for the running turn, stops the child, and hands
//! the session to a monitor task ([`crate::attach::run_tui`]) that runs the TUI in tmux. While
//! attached, prompts queue; when the monitor reports the TUI gone, the child is started
//! again with `--resume` and the queue drains. One claude process per session at a time.
//!
//! Layout. The way in:
//! - `cmd`: the [`Cmd`]s the handle sends and the snapshot the actor publishes.
//! - `handle`: [`SessionHandle`], [`start`] and [`Launch`].
//!
//! The actor (`actor`) is a thin state machine: its event loop and command dispatch are in
//! `actor/mod.rs`, and each kind of transition has a file of its own (`actor/turns.rs`,
//! `actor/decisions.rs`, `actor/stopping.rs`, `actor/attaching.rs`). Each responsibility
//! with state of its own is a small struct the actor owns and delegates to, and none of
//! them knows the actor:
//! - `child`: the running claude process, its stdio tasks, control requests and its exit.
//! - `stdin`: the child's stdin: a line written at once from the actor when nothing waits
//!   before it, else queued for the writer task, in order either way.
//! - `output`: what a line of the child's stdout means (events, results, control messages).
//! - `queue`: the FIFO prompt queue and the turn in progress.
//! - `approvals`: pending approvals and questions, who decided what, the session rules and
//!   the auto-allow policy.
//! - `ending`: a stop or kill in progress (grace period, SIGTERM, SIGKILL).
//! - `handover`: the attach wait and the TUI that owns the session while attached.

use std::path::PathBuf;
use std::sync::Arc;

use common::ids::SessionId;

use crate::config::Config;
use crate::spawn;

mod actor;
mod approvals;
mod child;
mod cmd;
mod ending;
mod handle;
mod handover;
mod output;
mod queue;
mod stdin;

pub use cmd::Cmd;
pub use handle::{Launch, SessionHandle, by_of, start};

/// What every session needs from the daemon.
pub struct Ctx {
    /// The daemon config.
    pub cfg: Config,
    /// The claude binary.
    pub claude_bin: PathBuf,
    /// Binary that understands the exec shim (`ccrmd` itself), if any.
    pub shim: Option<PathBuf>,
    /// [`spawn::daemon_tag`] of this daemon.
    pub tag: String,
    /// The spool for the bot uplink, if the daemon has a bot.
    pub spool: Option<Arc<crate::spool::Spool>>,
}

impl Ctx {
    /// The `CCRM_OWNER` marker of a session's processes (the child, the TUI, their tools).
    fn owner(&self, id: &SessionId) -> String {
        spawn::owner_value(&self.tag, &id.to_string())
    }
}
