//! The `daemons` table: every daemon that said hello over the link, and whether its link
//! is open now. The daemon link ([`crate::ws`]) writes it on hello, each frame and
//! disconnect; the REST API and `/metrics` read it. A daemon's highest stored `seq` is an events query, so it
//! lives with the events in `events.rs`.

use super::backend::{DbRow, on_pool};
use common::ids::DaemonId;
use serde::{Deserialize, Serialize};

use super::{Db, DbResult, found, int, uint};

/// A daemon the bot has seen.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonRow {
    /// The daemon's stable id.
    pub id: DaemonId,
    /// Machine name it reported.
    pub hostname: String,
    /// Daemon version it reported.
    pub version: String,
    /// The API key it authenticated with, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<i64>,
    /// Whether a link is open now (as far as the hub has told us).
    pub online: bool,
    /// First hello (Unix ms).
    pub first_seen_ms: u64,
    /// Last frame or ping (Unix ms).
    pub last_seen_ms: u64,
}

impl Db {
    /// How many daemon links the replicas have recorded (`daemon_links`, PostgreSQL only;
    /// 0 on SQLite, where the one bot keeps its links in memory).
    #[tracing::instrument(skip_all)]
    pub async fn daemon_link_count(&self) -> DbResult<i64> {
        match self.pg_pool() {
            Some(p) => Ok(sqlx::query_scalar("SELECT COUNT(*) FROM daemon_links")
                .fetch_one(p)
                .await?),
            None => Ok(0),
        }
    }

    /// Records a daemon's hello: creates or updates its row and marks it online.
    #[tracing::instrument(skip_all, fields(daemon = %id))]
    pub async fn upsert_daemon(
        &self,
        id: &DaemonId,
        hostname: &str,
        version: &str,
        key_id: Option<i64>,
        now_ms: u64,
    ) -> DbResult<()> {
        on_pool!(self, |p| {
            let now = int(now_ms)?;
            sqlx::query(
                "INSERT INTO daemons (id, hostname, version, key_id, online, first_seen_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4, 1, $5, $5)
                 ON CONFLICT (id) DO UPDATE SET
                    hostname = excluded.hostname, version = excluded.version,
                    key_id = excluded.key_id, online = 1, last_seen_ms = excluded.last_seen_ms",
            )
            .bind(id.0.as_str())
            .bind(hostname)
            .bind(version)
            .bind(key_id)
            .bind(now)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Marks a daemon online or offline (link opened or closed). [`DbError::NotFound`] if
    /// the daemon never said hello.
    ///
    /// [`DbError::NotFound`]: super::DbError::NotFound
    #[tracing::instrument(skip_all, fields(daemon = %id, online))]
    pub async fn set_daemon_online(
        &self,
        id: &DaemonId,
        online: bool,
        now_ms: u64,
    ) -> DbResult<()> {
        on_pool!(self, |p| {
            let done =
                sqlx::query("UPDATE daemons SET online = $2, last_seen_ms = $3 WHERE id = $1")
                    .bind(id.0.as_str())
                    .bind(i64::from(online))
                    .bind(int(now_ms)?)
                    .execute(p)
                    .await?;
            found(done.rows_affected())
        })
    }

    /// Marks every daemon offline. The server calls this once at startup: no link survives
    /// a restart, whatever the rows said when the previous process died.
    #[tracing::instrument(skip_all)]
    pub async fn set_all_daemons_offline(&self) -> DbResult<u64> {
        on_pool!(self, |p| {
            let done = sqlx::query("UPDATE daemons SET online = 0 WHERE online <> 0")
                .execute(p)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// Notes that a daemon was just heard from. [`DbError::NotFound`] if it is unknown.
    ///
    /// [`DbError::NotFound`]: super::DbError::NotFound
    #[tracing::instrument(skip_all, fields(daemon = %id))]
    pub async fn touch_daemon(&self, id: &DaemonId, now_ms: u64) -> DbResult<()> {
        on_pool!(self, |p| {
            let done = sqlx::query("UPDATE daemons SET last_seen_ms = $2 WHERE id = $1")
                .bind(id.0.as_str())
                .bind(int(now_ms)?)
                .execute(p)
                .await?;
            found(done.rows_affected())
        })
    }

    /// Every known daemon, by id.
    #[tracing::instrument(skip_all)]
    pub async fn list_daemons(&self) -> DbResult<Vec<DaemonRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, hostname, version, key_id, online, first_seen_ms, last_seen_ms
                 FROM daemons ORDER BY id",
            )
            .fetch_all(p)
            .await?;
            rows.iter().map(daemon_row).collect()
        })
    }
}

/// Decodes one row of `daemons`.
fn daemon_row(r: &impl DbRow) -> DbResult<DaemonRow> {
    Ok(DaemonRow {
        id: DaemonId(r.col("id")?),
        hostname: r.col("hostname")?,
        version: r.col("version")?,
        key_id: r.col("key_id")?,
        online: r.col::<i64>("online")? != 0,
        first_seen_ms: uint(r.col("first_seen_ms")?),
        last_seen_ms: uint(r.col("last_seen_ms")?),
    })
}
