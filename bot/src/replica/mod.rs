//! What lets several `ccrm-bot` replicas share one PostgreSQL database (on SQLite there is
//! one bot and none of this runs).
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

mod calls;
mod tail;

pub use calls::{Replicas, linked_daemons};
pub use tail::{EVENTS_CHANNEL, spawn_tail};
