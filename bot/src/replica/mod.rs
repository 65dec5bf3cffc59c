//! What lets several `ccrm-bot` replicas share one PostgreSQL database (on SQLite there is
//! one bot: only the two parts marked "both backends" run, trivially).
//!
//! - `tail.rs`: every replica's live subscribers (SSE, dashboard, chat) see every
//!   committed event once, in row-id order, whichever replica stored it. On PostgreSQL the
//!   ingest does not publish what it commits; it `NOTIFY`s [`EVENTS_CHANNEL`] in the
//!   committing transaction, and each replica's tailer reads the rows after the last id it
//!   published (the ingest's advisory lock makes ids commit in increasing order, so reading
//!   by id skips nothing).
//! - `calls.rs`: REST, dashboard and chat commands for a daemon linked to another replica
//!   are passed to that replica (a `replica_calls` row plus `NOTIFY`) and answered the
//!   same way, with the local timeouts and errors.
//! - `leader.rs` (both backends): the Telegram poller and the Discord gateway run on the
//!   one replica holding a PostgreSQL advisory lock (on SQLite, the one bot).
//! - `first_wins.rs` (both backends): the first answer to an approval wins in the
//!   database (a conditional `UPDATE ... WHERE status = 'pending' ... RETURNING`), on any
//!   replica and surface; later ones get `already_decided` naming who answered.

mod calls;
pub mod first_wins;
pub mod leader;
mod tail;

pub use calls::{Replicas, linked_daemons, online_anywhere, online_somewhere};
pub use tail::{EVENTS_CHANNEL, spawn_tail};
