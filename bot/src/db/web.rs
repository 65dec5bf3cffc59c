//! What the web dashboard ([`crate::dashboard`]) keeps and reads: the `web_sessions` table
//! (a login's cookie secret, stored as its SHA-256 only, with its CSRF token and expiry),
//! and the read queries the pages need beyond what REST uses: history pages read
//! backwards, one turn's tool calls for its summary line, per-session activity for the
//! overview, recent decisions, and the audit log paged by row id.
//!
//! Nothing here writes events or approvals; the ingest path (`events.rs`) stays the only
//! writer of those.

use std::collections::HashMap;

use super::backend::{DbRow, on_pool};
use common::event::{Event, EventKind};
use common::ids::{DaemonId, SessionId};
use serde_json::Value;

use super::{
    ApprovalRow, AuditRow, Db, DbError, DbResult, StoredEvent, int, json_column, session_column,
    uint,
};

/// A live dashboard login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSessionRow {
    /// The user token the login was made with (revoking it ends the login).
    pub key_id: i64,
    /// That token's name: who the user is on every page and in the audit log.
    pub user: String,
    /// The anti-forgery token the pages send back with every change.
    pub csrf: String,
    /// When the login ends (Unix ms).
    pub expires_ms: u64,
}

/// What the overview shows of a session besides its stored row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionActivity {
    /// Time of its newest event (Unix ms), 0 if none.
    pub last_event_ms: u64,
    /// Prompts accepted after the newest turn start: waiting in its queue.
    pub queued: u64,
    /// Cumulative cost from its newest turn result.
    pub cost_usd: Option<f64>,
}

impl Db {
    /// Stores a new dashboard login under the hash of its cookie secret.
    #[tracing::instrument(skip_all, fields(key_id))]
    pub async fn create_web_session(
        &self,
        hash: &str,
        key_id: i64,
        csrf: &str,
        now_ms: u64,
        expires_ms: u64,
    ) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO web_sessions (hash, key_id, csrf, created_ms, expires_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4, $5, $4)",
            )
            .bind(hash)
            .bind(key_id)
            .bind(csrf)
            .bind(int(now_ms)?)
            .bind(int(expires_ms)?)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// The login whose cookie secret hashes to `hash`, if it has not expired and its user
    /// token is still active. The hash is compared again in constant time after the
    /// lookup, like [`Db::verify_key`] does.
    #[tracing::instrument(skip_all)]
    pub async fn web_session(&self, hash: &str, now_ms: u64) -> DbResult<Option<WebSessionRow>> {
        on_pool!(self, |p| {
            let row = sqlx::query(
                "SELECT w.hash, w.key_id, w.csrf, w.expires_ms, w.last_seen_ms, k.name
                 FROM web_sessions w JOIN api_keys k ON k.id = w.key_id
                 WHERE w.hash = $1 AND w.expires_ms > $2 AND k.revoked_ms IS NULL
                   AND k.kind = 'user'",
            )
            .bind(hash)
            .bind(int(now_ms)?)
            .fetch_optional(p)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let stored = row.text("hash")?;
            if !crate::auth::hashes_equal(stored, hash) {
                return Ok(None);
            }
            // Keep `last_seen_ms` roughly current without a write per request.
            let last_seen = uint(row.col("last_seen_ms")?);
            if now_ms.saturating_sub(last_seen) > 60_000 {
                sqlx::query("UPDATE web_sessions SET last_seen_ms = $2 WHERE hash = $1")
                    .bind(hash)
                    .bind(int(now_ms)?)
                    .execute(p)
                    .await?;
            }
            Ok(Some(WebSessionRow {
                key_id: row.col("key_id")?,
                user: row.col("name")?,
                csrf: row.col("csrf")?,
                expires_ms: uint(row.col("expires_ms")?),
            }))
        })
    }

    /// Ends a login (logout). Unknown hashes are fine.
    #[tracing::instrument(skip_all)]
    pub async fn delete_web_session(&self, hash: &str) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query("DELETE FROM web_sessions WHERE hash = $1")
                .bind(hash)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Forgets expired logins; returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn purge_web_sessions(&self, now_ms: u64) -> DbResult<u64> {
        on_pool!(self, |p| {
            let done = sqlx::query("DELETE FROM web_sessions WHERE expires_ms <= $1")
                .bind(int(now_ms)?)
                .execute(p)
                .await?;
            Ok(done.rows_affected())
        })
    }

    /// Up to `limit` events of `session` with row id below `before_id` (`i64::MAX` for the
    /// newest), returned oldest first: the page a history view shows, read backwards by
    /// the `(session_id, id)` index so the newest page of a long session costs the same as
    /// a short one's.
    #[tracing::instrument(skip_all, fields(session = %session, before_id, limit))]
    pub async fn events_before(
        &self,
        session: &SessionId,
        before_id: i64,
        limit: u32,
    ) -> DbResult<Vec<StoredEvent>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, daemon_id, seq, data FROM events
                 WHERE session_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(session.to_string())
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            let mut out = rows.iter().map(event_row).collect::<DbResult<Vec<_>>>()?;
            out.reverse();
            Ok(out)
        })
    }

    /// The tool calls (name, input) of the turn that ends at event `end_id` of `session`:
    /// every `tool_use` after that turn's `turn_started`.
    #[tracing::instrument(skip_all, fields(session = %session, end_id))]
    pub async fn turn_tools(
        &self,
        session: &SessionId,
        end_id: i64,
    ) -> DbResult<Vec<(String, Value)>> {
        on_pool!(self, |p| {
            let sid = session.to_string();
            let start: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM events WHERE session_id = $1 AND id < $2 AND kind = 'turn_started'
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&sid)
            .bind(end_id)
            .fetch_optional(p)
            .await?;
            let rows = sqlx::query(
                "SELECT data FROM events WHERE session_id = $1 AND id > $2 AND id < $3
                   AND kind = 'tool_use' ORDER BY id",
            )
            .bind(&sid)
            .bind(start.unwrap_or(0))
            .bind(end_id)
            .fetch_all(p)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let ev: Event = json_column(row, "data")?;
                if let EventKind::ToolUse { name, input, .. } = ev.kind {
                    out.push((name, input));
                }
            }
            Ok(out)
        })
    }

    /// Newest event time, queue length and cost of one session, each read backwards from
    /// its newest event.
    #[tracing::instrument(skip_all, fields(session = %session))]
    pub async fn session_activity(&self, session: &SessionId) -> DbResult<SessionActivity> {
        on_pool!(self, |p| {
            let sid = session.to_string();
            let last: Option<i64> = sqlx::query_scalar(
                "SELECT ts_ms FROM events WHERE session_id = $1 ORDER BY id DESC LIMIT 1",
            )
            .bind(&sid)
            .fetch_optional(p)
            .await?;
            let started: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM events WHERE session_id = $1 AND kind = 'turn_started'
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&sid)
            .fetch_optional(p)
            .await?;
            let queued: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM events WHERE session_id = $1 AND id > $2 AND kind = 'prompt'",
            )
            .bind(&sid)
            .bind(started.unwrap_or(0))
            .fetch_one(p)
            .await?;
            let result = sqlx::query(
                "SELECT data FROM events WHERE session_id = $1 AND kind = 'turn_result'
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(&sid)
            .fetch_optional(p)
            .await?;
            let cost_usd = match result {
                Some(row) => match json_column::<Event>(&row, "data")?.kind {
                    EventKind::TurnResult { cost_usd, .. } => cost_usd,
                    _ => None,
                },
                None => None,
            };
            Ok(SessionActivity {
                last_event_ms: last.map_or(0, uint),
                queued: uint(queued),
                cost_usd,
            })
        })
    }

    /// Pending approvals and questions per session.
    #[tracing::instrument(skip_all)]
    pub async fn pending_counts(&self) -> DbResult<HashMap<SessionId, u64>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT session_id, COUNT(*) AS n FROM approvals WHERE status = 'pending'
                 GROUP BY session_id",
            )
            .fetch_all(p)
            .await?;
            let mut out = HashMap::new();
            for row in &rows {
                out.insert(session_column(row, "session_id")?, uint(row.col("n")?));
            }
            Ok(out)
        })
    }

    /// The `limit` most recently decided approvals, newest first.
    #[tracing::instrument(skip_all, fields(limit))]
    pub async fn recent_decided(&self, limit: u32) -> DbResult<Vec<ApprovalRow>> {
        on_pool!(self, |p| {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM approvals WHERE status = 'decided'
                 ORDER BY decided_ms DESC, id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                match self.get_approval(&id).await {
                    Ok(row) => out.push(row),
                    Err(DbError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    /// Up to `limit` audit entries with row id below `before_id`, newest first.
    #[tracing::instrument(skip_all, fields(before_id, limit))]
    pub async fn audit_before(&self, before_id: i64, limit: u32) -> DbResult<Vec<AuditRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, ts_ms, actor, action, target, detail FROM audit_log
                 WHERE id < $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(before_id)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditRow {
                        id: r.col("id")?,
                        ts_ms: uint(r.col("ts_ms")?),
                        actor: r.col("actor")?,
                        action: r.col("action")?,
                        target: r.col("target")?,
                        detail: json_column(r, "detail")?,
                    })
                })
                .collect()
        })
    }
}

/// Decodes an `events` row read here (the event itself is the stored JSON `data`).
fn event_row(row: &impl DbRow) -> DbResult<StoredEvent> {
    Ok(StoredEvent {
        id: row.col("id")?,
        daemon_id: DaemonId(row.col("daemon_id")?),
        seq: uint(row.col("seq")?),
        event: json_column(row, "data")?,
    })
}
