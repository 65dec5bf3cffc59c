//! The event tailer of a PostgreSQL replica: `LISTEN` on [`EVENTS_CHANNEL`], and on each
//! notification (or every [`POLL_EVERY`], in case one was missed while the listener
//! reconnected) publish the events stored after the last one published, in id order.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tracing::warn;

use crate::db::{Db, StoredEvent};

/// The channel the ingest notifies after committing events (payload: nothing).
pub const EVENTS_CHANNEL: &str = "ccrm_events";

/// How often the tailer looks without a notification.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Rows read per query.
const PAGE: u32 = 1000;

/// Starts the tailer of `db` (PostgreSQL only) publishing into `live`, from the newest
/// event stored now. Returns at once; the task ends when `db` is closed.
pub async fn spawn_tail(db: Db, live: broadcast::Sender<Arc<StoredEvent>>) -> anyhow::Result<()> {
    let Some(pool) = db.pg_pool() else {
        return Ok(());
    };
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(EVENTS_CHANNEL).await?;
    let start = db.last_event_id().await?;
    tokio::spawn(run(db, listener, live, start));
    Ok(())
}

async fn run(
    db: Db,
    mut listener: PgListener,
    live: broadcast::Sender<Arc<StoredEvent>>,
    mut last: i64,
) {
    loop {
        // Wait for a notification or the poll tick; errors (a reconnect) fall through to a
        // read, which is what a missed notification needs anyway.
        if let Ok(Err(e)) = tokio::time::timeout(POLL_EVERY, listener.try_recv()).await {
            if db.is_closed() {
                return;
            }
            warn!(error = %e, "event notifications failed; polling");
            tokio::time::sleep(POLL_EVERY).await;
        }
        if db.is_closed() {
            return;
        }
        loop {
            match db.events_since_id(last, PAGE).await {
                Ok(page) => {
                    let full = page.len() == PAGE as usize;
                    for ev in page {
                        last = ev.id;
                        let _ = live.send(Arc::new(ev));
                    }
                    if !full {
                        break;
                    }
                }
                // The pool closed under the read: the server is shutting down.
                Err(_) if db.is_closed() => return,
                Err(e) => {
                    warn!(error = %e, "reading new events failed; retrying");
                    break;
                }
            }
        }
    }
}
