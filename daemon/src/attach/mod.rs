//! `ccrm attach`: handing a session to the Claude Code TUI in tmux, and taking it back.
//!
//! The session actor ([`crate::session`]) decides *when* (after the running turn, once the
//! stream-json child has exited); this module does the tmux and transcript work and never
//! refers back to the session. Its parts, each usable on its own:
//!
//! - `tmux`: [`Tmux`], ccrm's own tmux server per attached session (socket and
//!   session names, [`find_tmux`], [`tmux_missing`]), what runs in the pane ([`TuiSpec`],
//!   [`tui_env`]), what tmux reports about it ([`Pane`]) and whether a pid is [`alive`].
//! - `transcript`: where claude keeps its transcripts
//!   ([`claude_config_dir`], [`find_transcript`]) and [`Tail`], which turns what the TUI
//!   appends into [`TuiItem`]s ([`transcript_items`]).
//! - `monitor`: [`run_tui`], the task of one attach that starts, watches and
//!   ends the TUI, talking to the actor with [`FromTui`] and [`ToTui`].

mod monitor;
mod tmux;
mod transcript;

pub use monitor::{FromTui, IDLE_MAX, POLL, ToTui, TuiStart, run_tui};
pub use tmux::{
    Pane, Tmux, TuiSpec, alive, find_tmux, tmux_missing, tmux_session_name, tmux_socket, tui_env,
};
pub use transcript::{Tail, TuiItem, claude_config_dir, find_transcript, transcript_items};
