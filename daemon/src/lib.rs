//! ccrmd and the `ccrm` CLI: everything but the thin binaries lives here so tests and the
//! all-in-one mode run it in-process.
//!
//! Layout:
//! - [`config`]: defaults → TOML → `CCRM_*` env → flags.
//! - [`lifecycle`]: directories, pidfile lock, socket, signals, graceful shutdown; it wires
//!   the registry, the socket server and the uplink together.
//! - [`ipc`]: the Unix-socket server (one task per connection and per request).
//! - [`daemon`]: the session registry and command dispatch.
//! - [`session`]: the session actor that owns a Claude Code child.
//! - [`attach`]: `ccrm attach`, the session's TUI in tmux and its transcript.
//! - [`eventlog`]: bounded per-session event log with followers.
//! - [`spawn`]: starting children safely (no shell, clean env, process groups, death signal).
//! - [`store`]: session records on disk.
//! - [`inbox`]: files sent with prompts, saved in the session's `.ccrm/inbox/`.
//! - [`fsutil`]: private (0700) directories, shared by the daemon and the CLI.
//! - [`spool`]: the on-disk event queue for the bot (delivery guarantee).
//! - [`uplink`]: the WebSocket link to the bot; it reaches the registry only through
//!   [`uplink::LinkTarget`]. [`transfer`]: command bodies (uploads) and streams on it.
//! - [`up`]: `ccrm up`, a bot and a daemon wired together (optionally a demo model).
//! - [`work`]: the workspace and execution commands; [`workspace`]: workspaces from a zip
//!   (store, guarded unpacker, upload receiver); [`exec`]: one-shot executions (worker
//!   pool, FIFO queue, timeouts).
//! - [`tls`]: the uplink's `wss://` client config (`bot_ca_file`); [`probe`]: the TLS checks
//!   `ccrm` has ccrmd run (doctor's probe of the bot, install's CA check).
//! - [`service`]: ccrmd as a systemd user unit / launchd agent (`ccrm daemon install`).
//! - [`doctor`]: the checks of `ccrm doctor`.
//! - [`client`] and [`cli`]: the `ccrm` command line (`cli/` has one file per command group).

pub mod attach;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod eventlog;
pub mod exec;
pub mod fsutil;
pub mod inbox;
pub mod ipc;
pub mod lifecycle;
pub mod probe;
pub mod service;
pub mod session;
pub mod spawn;
pub mod spool;
pub mod store;
pub mod tls;
pub mod transfer;
pub mod up;
pub mod uplink;
pub mod work;
pub mod workspace;
