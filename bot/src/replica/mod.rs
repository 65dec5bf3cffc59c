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
//! - `streams.rs`: streaming commands (an execution's items) for a daemon linked to
//!   another replica, items and reply passed back the same way, in order.
//! - `wire.rs`: what they all share: the messages between replicas, the liveness
//!   condition on a link row, writing a heartbeat.
//! - `bodies.rs`: commands with a body (a workspace upload) for a daemon linked to
//!   another replica: frames passed on in order, acknowledgements and reply passed back,
//!   the window kept end to end.
//! - `online.rs` (both backends): which daemons are linked to any live replica.
//! - `peers.rs`: direct links between replicas (`/ws/replica`), over which calls and their
//!   replies travel when one is up, instead of through PostgreSQL.
//! - `heartbeat.rs`: each replica's heartbeat row; the links of a replica not seen for
//!   15 s stop counting and are removed (a replica killed with -9 leaves no daemon
//!   "online" for long).
//! - `leader.rs` (both backends): the Telegram poller and the Discord gateway run on the
//!   one replica holding a PostgreSQL advisory lock (on SQLite, the one bot).
//! - `first_wins.rs` (both backends): the first answer to an approval wins in the
//!   database (a conditional `UPDATE ... WHERE status = 'pending' ... RETURNING`), on any
//!   replica and surface; later ones get `already_decided` naming who answered.

mod bodies;
mod calls;
pub mod first_wins;
mod heartbeat;
pub mod leader;
mod online;
mod peers;
mod streams;
mod tail;
mod wire;

pub use calls::Replicas;
pub use online::{feature_somewhere, linked_daemons, online_anywhere, online_somewhere};
pub use peers::{FROM_HEADER, valid_id as valid_replica_id};
pub use tail::{EVENTS_CHANNEL, spawn_tail};

/// Starts this replica's side of a shared PostgreSQL database: calls and streams between
/// replicas (`calls.rs`) and the heartbeat (`heartbeat.rs`); hands the hub its way to the
/// other replicas.
pub async fn start(
    pool: sqlx::PgPool,
    hub: std::sync::Arc<crate::hub::Hub>,
) -> anyhow::Result<std::sync::Arc<Replicas>> {
    let me = Replicas::start(pool, hub.clone()).await?;
    tokio::spawn(heartbeat::run(me.clone(), std::sync::Arc::downgrade(&hub)));
    Ok(me)
}
