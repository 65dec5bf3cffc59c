//! The chat adapters (the Telegram poller and the Discord gateway) run on exactly one
//! replica at a time: the one holding a PostgreSQL advisory lock on a connection of its
//! own (`pg_try_advisory_lock`, held for as long as that connection lives).
//!
//! A replica that does not get the lock tries again every [`RETRY`]. The leader pings its
//! lock connection every [`PING`]; when the ping fails (the database went away, or the
//! connection was cut) it has lost the lock and stops its adapters at once, then stands
//! for election again. A leader killed with -9 loses its connection and so the lock, and
//! another replica takes over within a few seconds, from the update offset, claims and
//! pending messages the adapters keep in the database (so no update is lost or handled
//! twice). On SQLite there is one bot, which always leads. `/metrics` reports
//! `ccrm_chat_leader` (1 on the leader).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::AppState;

/// The advisory lock's key: "ccrmchat" in ASCII, one lock for all chat adapters.
const LOCK_KEY: i64 = 0x6363_726d_6368_6174;
/// How often a replica without the lock tries to take it.
const RETRY: Duration = Duration::from_secs(2);
/// How often the leader checks that its lock connection is alive.
const PING: Duration = Duration::from_secs(1);
/// How long connecting or a ping may take before the database counts as unreachable.
const DB_WAIT: Duration = Duration::from_secs(5);

/// Runs the chat adapters until the receiver turns true (given by the crate root, so this
/// module does not depend on the adapters).
pub type Adapters =
    fn(Arc<AppState>, watch::Receiver<bool>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts the chat adapters configured in `state` (none: returns `None`) with `run`, under
/// leader election; the task ends after `stop` turns true and the adapters have stopped.
pub fn spawn(
    state: Arc<AppState>,
    stop: watch::Receiver<bool>,
    run: Adapters,
) -> Option<JoinHandle<()>> {
    if state.cfg.telegram_token.is_none() && state.cfg.discord_token.is_none() {
        return None;
    }
    Some(tokio::spawn(async move {
        match state.db.pg_pool() {
            None => {
                // SQLite: the one bot leads.
                state.hub.metrics.chat_leader.store(1, Ordering::Relaxed);
                run(state, stop).await;
            }
            Some(pool) => {
                let opts = (*pool.connect_options())
                    .clone()
                    .disable_statement_logging();
                elect(state, opts, stop, run).await;
            }
        }
    }))
}

/// Stands for election until `stop`; leads whenever this replica holds the lock.
async fn elect(
    state: Arc<AppState>,
    opts: PgConnectOptions,
    mut stop: watch::Receiver<bool>,
    run: Adapters,
) {
    let mut told_waiting = false;
    loop {
        if *stop.borrow() {
            return;
        }
        match try_lock(&opts).await {
            Ok(Some(conn)) => {
                info!("this replica leads the chat adapters (advisory lock taken)");
                told_waiting = false;
                lead(&state, conn, &mut stop, run).await;
                if *stop.borrow() {
                    return;
                }
                warn!(
                    "lost the chat leadership (its database connection failed); chat adapters stopped, standing again"
                );
            }
            Ok(None) => {
                if !told_waiting {
                    info!(
                        "another replica leads the chat adapters; trying again every {}s",
                        RETRY.as_secs()
                    );
                    told_waiting = true;
                }
            }
            Err(e) => warn!(error = %e, "chat leader election: the database did not answer"),
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// A fresh connection holding the lock, or `None` when another replica holds it.
async fn try_lock(opts: &PgConnectOptions) -> anyhow::Result<Option<PgConnection>> {
    let mut conn = tokio::time::timeout(DB_WAIT, PgConnection::connect_with(opts))
        .await
        .map_err(|_| anyhow::anyhow!("connecting took over {DB_WAIT:?}"))??;
    let got: bool = tokio::time::timeout(
        DB_WAIT,
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut conn),
    )
    .await
    .map_err(|_| anyhow::anyhow!("pg_try_advisory_lock took over {DB_WAIT:?}"))??;
    if got {
        Ok(Some(conn))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

/// Runs the adapters while `conn` (holding the lock) answers pings; returns after they
/// stopped, when `stop` turned true or the connection failed.
async fn lead(
    state: &Arc<AppState>,
    mut conn: PgConnection,
    stop: &mut watch::Receiver<bool>,
    run: Adapters,
) {
    state.hub.metrics.chat_leader.store(1, Ordering::Relaxed);
    let (lead_tx, lead_rx) = watch::channel(false);
    let adapters = run(state.clone(), lead_rx);
    tokio::pin!(adapters);
    let mut adapters_done = false;
    let mut tick = tokio::time::interval(PING);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut adapters, if !adapters_done => {
                // They ended on their own (a bad token is logged by them); keep the lock
                // so no other replica starts the same failing adapters.
                adapters_done = true;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            _ = tick.tick() => {
                let alive = matches!(tokio::time::timeout(DB_WAIT, conn.ping()).await, Ok(Ok(())));
                if !alive {
                    state.hub.metrics.chat_leader.store(0, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    state.hub.metrics.chat_leader.store(0, Ordering::Relaxed);
    let _ = lead_tx.send(true);
    if !adapters_done {
        adapters.await;
    }
    // Closing the connection gives the lock back (a failed one already lost it).
    let _ = tokio::time::timeout(DB_WAIT, conn.close()).await;
}
