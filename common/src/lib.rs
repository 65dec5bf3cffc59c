//! Plain data shared by every ccrm program: ids, the event model, the wire protocols and
//! the JSON-lines framing used on the daemon's Unix socket and the Claude Code child's stdio.
//!
//! Layout:
//! - [`ids`]: newtype ids ([`ids::SessionId`], [`ids::ApprovalId`], [`ids::DaemonId`]).
//! - [`event`]: normalised session events ([`event::Event`], [`event::EventKind`]) and states.
//! - [`ipc`]: `ccrm` ⇄ `ccrmd` requests and replies over the Unix socket.
//! - [`link`]: `ccrmd` ⇄ `ccrm-bot` frames over WebSocket, with the delivery guarantee.
//! - [`child`]: what the Claude Code CLI prints on stdout, typed as far as we need it.
//! - [`attach`]: images and files sent with a prompt ([`attach::ImageBlock`], `session.file`).
//! - [`claude_args`]: extra arguments for one session's claude, and the flags ccrm manages.
//! - [`workspace`]: workspaces from a zip and one-shot executions (the OCC commands).
//! - [`codec`]: [`codec::JsonLines`], length-capped newline-delimited JSON over any stream.
//! - `props` (tests and fuzzing only): the properties of the parsers that face outside input,
//!   checked by proptest in `cargo test` and by the cargo-fuzz targets in `fuzz/`.
//! - `tls` (feature `tls`): the rustls client config for `wss://` with an optional private CA.
//! - `logging` (feature `logging`): `tracing` to stderr, filtered by `CCRM_LOG`.
//! - [`tomlfile`]: reading `ccrmd.toml` / `bot.toml` with errors that name file, line and key.

pub mod attach;
pub mod child;
pub mod claude_args;
pub mod codec;
pub mod event;
pub mod ids;
pub mod ipc;
pub mod link;
#[cfg(feature = "logging")]
pub mod logging;
#[cfg(any(test, fuzzing))]
pub mod props;
#[cfg(feature = "tls")]
pub mod tls;
pub mod tomlfile;
pub mod workspace;

/// Version of the `ccrm` ⇄ `ccrmd` socket protocol. Sent in `daemon.status`; the CLI refuses
/// to talk to a daemon with another version and says how to restart it.
pub const IPC_PROTOCOL_VERSION: u32 = 1;

/// Crate version, shared by all binaries of the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest line accepted on the control socket (1 MiB). Longer lines are refused with an error.
pub const MAX_IPC_LINE: usize = 1024 * 1024;
