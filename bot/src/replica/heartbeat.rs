//! Each replica's heartbeat (PostgreSQL only): a `replica_heartbeats` row refreshed every
//! [`EVERY`], stamped with the database's clock (so the replicas' own clocks do not
//! matter). A link in `daemon_links` counts only while its replica's heartbeat is younger
//! than 15 s (`fresh!`, used by every query that asks who holds a link), so the links
//! of a replica killed with -9 stop counting within 15 s; every replica also removes such
//! rows (and old undelivered `replica_calls`) as it beats. A replica whose heartbeat could
//! not be written (its database connection was down) writes its own links again once it
//! can, in case another replica removed them meanwhile.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::PgPool;
use tracing::{info, warn};

use super::calls::Replicas;
use super::wire::{fresh, now_ms};
use crate::hub::Hub;

/// How often a replica beats.
pub const EVERY: Duration = Duration::from_secs(3);

/// Messages between replicas older than this were never read (their reader died).
const CALLS_KEEP_MS: i64 = 10 * 60 * 1000;

/// Beats every [`EVERY`] until the pool closes (see the module docs).
pub async fn run(me: Arc<Replicas>, hub: Weak<Hub>) {
    let mut was_ok = true;
    loop {
        tokio::time::sleep(EVERY).await;
        if me.pool().is_closed() {
            return;
        }
        match me.beat().await {
            Ok(()) => {
                if !was_ok && let Some(hub) = hub.upgrade() {
                    info!("database reachable again; writing this replica's links again");
                    for d in hub.online() {
                        me.note_linked(&d, hub.features(&d));
                    }
                }
                was_ok = true;
            }
            Err(e) => {
                if !me.pool().is_closed() {
                    warn!(error = %e, "cannot write this replica's heartbeat");
                }
                was_ok = false;
                continue;
            }
        }
        if let Err(e) = sweep(me.pool()).await {
            warn!(error = %e, "cannot remove the links of replicas gone silent");
        }
    }
}

/// Removes the links of replicas not seen for 15 s, their heartbeats, and messages
/// between replicas nobody read.
async fn sweep(pool: &PgPool) -> Result<(), sqlx::Error> {
    let gone = sqlx::query(concat!("DELETE FROM daemon_links l WHERE NOT ", fresh!()))
        .execute(pool)
        .await?
        .rows_affected();
    if gone > 0 {
        info!(
            links = gone,
            "removed the daemon links of replicas not seen for 15 s"
        );
    }
    sqlx::query("DELETE FROM replica_heartbeats WHERE seen < now() - interval '15 seconds'")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM replica_calls WHERE created_ms < $1")
        .bind(now_ms().saturating_sub(CALLS_KEEP_MS))
        .execute(pool)
        .await?;
    Ok(())
}
