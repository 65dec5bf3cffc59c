//! The chat inbox (`chat_inbox`): Telegram webhook deliveries kept by whichever replica
//! received them until the chat leader's adapter has handled them (see
//! `crate::telegram::webhook`). A delivery is stored once per `update_id` (a redelivery
//! finds its row and is taken again without a second one); the leader reads the rows not
//! yet done in update order and marks each done after handling it. On PostgreSQL each new
//! row is announced with `NOTIFY` on [`INBOX_CHANNEL`], so the leader on another replica
//! wakes at once.

use super::backend::on_pool;
use super::{Db, DbResult, int};

/// The channel a new inbox row is notified on (PostgreSQL; payload: the platform).
pub const INBOX_CHANNEL: &str = "ccrm_chat_inbox";

/// How long a handled delivery is kept (so a late redelivery is still recognised).
const KEEP_DONE_MS: u64 = 24 * 60 * 60 * 1000;

impl Db {
    /// Keeps delivery `update_id` of `platform` (its raw `body`) until it is handled; true
    /// when it is new, false when it was kept before (a redelivery). Returns once the row
    /// is committed.
    #[tracing::instrument(skip_all)]
    pub async fn chat_inbox_put(
        &self,
        platform: &str,
        update_id: i64,
        body: &str,
        now_ms: u64,
    ) -> DbResult<bool> {
        let now = int(now_ms)?;
        on_pool!(self, |p, d| {
            let added = sqlx::query(
                "INSERT INTO chat_inbox (platform, update_id, body, received_ms)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (platform, update_id) DO NOTHING",
            )
            .bind(platform)
            .bind(update_id)
            .bind(body)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
                == 1;
            if added && d == super::backend::Dialect::Postgres {
                // After the commit: the leader reads committed rows only. A lost
                // notification costs one re-scan period, nothing more.
                sqlx::query(d.pick("SELECT 1", "SELECT pg_notify($1, $2)"))
                    .bind(INBOX_CHANNEL)
                    .bind(platform)
                    .execute(p)
                    .await?;
            }
            Ok(added)
        })
    }

    /// Up to `limit` deliveries of `platform` not yet handled, oldest update first:
    /// `(update_id, body)`.
    #[tracing::instrument(skip_all)]
    pub async fn chat_inbox_waiting(
        &self,
        platform: &str,
        limit: u32,
    ) -> DbResult<Vec<(i64, String)>> {
        on_pool!(self, |p| {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT update_id, body FROM chat_inbox
                 WHERE platform = $1 AND done_ms IS NULL ORDER BY update_id LIMIT $2",
            )
            .bind(platform)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            Ok(rows)
        })
    }

    /// Marks delivery `update_id` handled; now and then drops those handled over a day ago.
    #[tracing::instrument(skip_all)]
    pub async fn chat_inbox_done(
        &self,
        platform: &str,
        update_id: i64,
        now_ms: u64,
    ) -> DbResult<()> {
        let now = int(now_ms)?;
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE chat_inbox SET done_ms = $3 WHERE platform = $1 AND update_id = $2",
            )
            .bind(platform)
            .bind(update_id)
            .bind(now)
            .execute(p)
            .await?;
            if update_id % 256 == 0 {
                sqlx::query("DELETE FROM chat_inbox WHERE platform = $1 AND done_ms < $2")
                    .bind(platform)
                    .bind(int(now_ms.saturating_sub(KEEP_DONE_MS))?)
                    .execute(p)
                    .await?;
            }
            Ok(())
        })
    }
}
