//! The `events` table: the history, read by row id.
//!
//! Event rows get the bot's own increasing `id`: the keyset cursor for pages and the SSE
//! `Last-Event-ID`. The readers here page by that id. Rows are written only by the ingest
//! path in `ingest.rs` ([`Db::insert_events`] and [`super::EventWriter`]), which stores each
//! [`common::link::LinkEvent`] once and keeps `sessions` and `approvals` in step.

use super::backend::{DbRow, on_pool};
use common::event::Event;
use common::ids::{DaemonId, SessionId};
use serde::{Deserialize, Serialize};

use super::{Db, DbError, DbResult, int, uint};

/// One stored event with the bot's row id.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Bot row id: increasing across all daemons; the keyset cursor and SSE event id.
    pub id: i64,
    /// The daemon that sent it.
    pub daemon_id: DaemonId,
    /// The daemon-wide link sequence number.
    pub seq: u64,
    /// The event itself (its `seq` is the per-session one).
    pub event: Event,
}

impl Db {
    /// The highest link `seq` stored for a daemon, 0 if none: what [`common::link::HubMsg::Welcome`]
    /// reports as `acked_seq`.
    #[tracing::instrument(skip_all, fields(daemon = %id))]
    pub async fn max_seq(&self, id: &DaemonId) -> DbResult<u64> {
        on_pool!(self, |p| {
            let max: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE daemon_id = $1")
                    .bind(id.0.as_str())
                    .fetch_one(p)
                    .await?;
            Ok(max.map_or(0, uint))
        })
    }

    /// A page of one session's events with row id greater than `after_id`, oldest first
    /// (keyset paging: pass the last id of a page to get the next one; 0 starts at the
    /// beginning).
    #[tracing::instrument(skip_all, fields(session = %session, after_id, limit))]
    pub async fn events_after(
        &self,
        session: &SessionId,
        after_id: i64,
        limit: u32,
    ) -> DbResult<Vec<StoredEvent>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, daemon_id, seq, data FROM events
                 WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(session.to_string())
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            rows.iter().map(stored_event).collect()
        })
    }

    /// A page of one session's events by position (skip `offset`, then up to `limit`),
    /// oldest first. Costs grow with `offset`; prefer [`Db::events_after`].
    #[tracing::instrument(skip_all, fields(session = %session, offset, limit))]
    pub async fn events_offset(
        &self,
        session: &SessionId,
        offset: u64,
        limit: u32,
    ) -> DbResult<Vec<StoredEvent>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, daemon_id, seq, data FROM events
                 WHERE session_id = $1 ORDER BY id LIMIT $2 OFFSET $3",
            )
            .bind(session.to_string())
            .bind(i64::from(limit))
            .bind(int(offset)?)
            .fetch_all(p)
            .await?;
            rows.iter().map(stored_event).collect()
        })
    }

    /// Events of every session with row id greater than `after_id`, oldest first: catch-up
    /// for SSE (`Last-Event-ID`) and WebSocket subscribers.
    #[tracing::instrument(skip_all, fields(after_id, limit))]
    pub async fn events_since_id(&self, after_id: i64, limit: u32) -> DbResult<Vec<StoredEvent>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, daemon_id, seq, data FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            rows.iter().map(stored_event).collect()
        })
    }

    /// The highest event row id, 0 if there are none (where a live subscriber starts).
    #[tracing::instrument(skip_all)]
    pub async fn last_event_id(&self) -> DbResult<i64> {
        on_pool!(self, |p| {
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
                .fetch_one(p)
                .await?;
            Ok(max.unwrap_or(0))
        })
    }
}

/// Decodes one row of `events` (the event itself is the stored JSON `data`).
fn stored_event(row: &impl DbRow) -> DbResult<StoredEvent> {
    let data = row.text("data")?;
    let event: Event = serde_json::from_str(data)
        .map_err(|e| DbError::other(format!("stored event does not parse: {e}")))?;
    Ok(StoredEvent {
        id: row.col("id")?,
        daemon_id: DaemonId(row.col("daemon_id")?),
        seq: uint(row.col("seq")?),
        event,
    })
}
