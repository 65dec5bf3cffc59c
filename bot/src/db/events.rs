//! The `events` table, the history, and the one ingest path into the store.
//!
//! [`Db::insert_events`] stores each [`LinkEvent`] once (the `(daemon_id, seq)` pair makes
//! resends after a reconnect harmless) and, in the same transaction, keeps `sessions.state`
//! and `approvals` in step with the events it stored. It reaches those tables only through
//! the helpers `sessions.rs` and `approvals.rs` export for an open transaction
//! ([`record_state`], [`insert_pending`], [`decide`]); they never call back here, so the
//! dependency goes one way. The daemon link ([`crate::ws`]) acks a batch only after
//! `insert_events` returns, so an acked event is committed.
//!
//! Event rows get the bot's own increasing `id`: the keyset cursor for pages and the SSE
//! `Last-Event-ID`. The readers here page by that id.

use std::sync::LazyLock;

use common::event::{Event, EventKind};
use common::ids::{DaemonId, SessionId};
use common::link::LinkEvent;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::approvals::{Decided, Pending, decide, insert_pending};
use super::sessions::record_state;
use super::{Db, DbError, DbResult, Tx, int, uint};

/// Single-row event insert; dedup on `(daemon_id, seq)`.
const INSERT_EVENT_ONE: &str =
    "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (daemon_id, seq) DO NOTHING RETURNING seq, id";

/// Multi-row event inserts, largest first, with their row counts (64 rows bind 448
/// parameters, well under SQLite's limit).
static INSERT_EVENTS: LazyLock<[(String, usize); 3]> =
    LazyLock::new(|| [64, 16, 4].map(|n| (insert_events_sql(n), n)));

fn insert_events_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
         VALUES {values}
         ON CONFLICT (daemon_id, seq) DO NOTHING RETURNING seq, id"
    )
}

/// One stored event with the bot's row id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Stores a batch of events from one daemon in one transaction.
    ///
    /// Each event is inserted unless its `(daemon, seq)` is already stored. For the events
    /// that were new, the same transaction also keeps the derived tables current:
    /// [`EventKind::State`] sets the session's `state`/`reason`/`updated_ms` (creating a
    /// placeholder session row if the daemon never described the session),
    /// [`EventKind::PermissionRequest`]/[`EventKind::Question`] add a pending approval, and
    /// [`EventKind::PermissionDecision`]/[`EventKind::Answer`] decide it. Returns the events
    /// actually inserted, in order, with their new row ids. The daemon must have said hello
    /// ([`Db::upsert_daemon`]) first.
    #[tracing::instrument(skip_all, fields(daemon = %daemon, n = events.len()))]
    pub async fn insert_events(
        &self,
        daemon: &DaemonId,
        events: &[LinkEvent],
    ) -> DbResult<Vec<StoredEvent>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // IMMEDIATE takes the write lock up front, so the busy timeout applies instead of a
        // deferred transaction failing when it upgrades from read to write.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut stored = Vec::with_capacity(events.len());
        let mut rest = events;
        while !rest.is_empty() {
            // Multi-row INSERTs of a few fixed sizes: far fewer round trips to SQLite's
            // worker thread than one statement per event, and every size stays a cached
            // prepared statement.
            let (sql, n) = INSERT_EVENTS
                .iter()
                .find(|(_, n)| *n <= rest.len())
                .map_or((INSERT_EVENT_ONE, 1), |(sql, n)| (sql.as_str(), *n));
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut query = sqlx::query(sql);
            for link in chunk {
                let ev = &link.event;
                let data = serde_json::to_string(ev)
                    .map_err(|e| DbError::other(format!("cannot encode event: {e}")))?;
                query = query
                    .bind(daemon.0.as_str())
                    .bind(int(link.seq)?)
                    .bind(ev.session_id.to_string())
                    .bind(int(ev.seq)?)
                    .bind(int(ev.ts_ms)?)
                    .bind(ev.kind.name())
                    .bind(data);
            }
            // RETURNING lists only the rows inserted (not the ignored duplicates), in no
            // promised order: match them back to the events by seq.
            let mut inserted: Vec<(i64, i64)> = query
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("seq")?, r.try_get("id")?)))
                .collect::<DbResult<_>>()?;
            for link in chunk {
                let seq = int(link.seq)?;
                let Some(pos) = inserted.iter().position(|(s, _)| *s == seq) else {
                    continue;
                };
                let (_, id) = inserted.remove(pos);
                apply_event(&mut tx, daemon, &link.event).await?;
                stored.push(StoredEvent {
                    id,
                    daemon_id: daemon.clone(),
                    seq: link.seq,
                    event: link.event.clone(),
                });
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// The highest link `seq` stored for a daemon, 0 if none: what [`common::link::HubMsg::Welcome`]
    /// reports as `acked_seq`.
    #[tracing::instrument(skip_all, fields(daemon = %id))]
    pub async fn max_seq(&self, id: &DaemonId) -> DbResult<u64> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE daemon_id = ?1")
                .bind(id.0.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(max.map_or(0, uint))
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
        let rows = sqlx::query(
            "SELECT id, daemon_id, seq, data FROM events
             WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .bind(session.to_string())
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
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
        let rows = sqlx::query(
            "SELECT id, daemon_id, seq, data FROM events
             WHERE session_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
        )
        .bind(session.to_string())
        .bind(i64::from(limit))
        .bind(int(offset)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    /// Events of every session with row id greater than `after_id`, oldest first: catch-up
    /// for SSE (`Last-Event-ID`) and WebSocket subscribers.
    #[tracing::instrument(skip_all, fields(after_id, limit))]
    pub async fn events_since_id(&self, after_id: i64, limit: u32) -> DbResult<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, daemon_id, seq, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    /// The highest event row id, 0 if there are none (where a live subscriber starts).
    #[tracing::instrument(skip_all)]
    pub async fn last_event_id(&self) -> DbResult<i64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(max.unwrap_or(0))
    }
}

/// Keeps the derived tables in step with one newly stored event (inside the ingest
/// transaction): state events go to `sessions`, requests and their outcomes to
/// `approvals`; every other kind is history only.
async fn apply_event(tx: &mut Tx, daemon: &DaemonId, ev: &Event) -> DbResult<()> {
    let ts = int(ev.ts_ms)?;
    let session = ev.session_id.to_string();
    match &ev.kind {
        EventKind::State { state, reason } => {
            record_state(
                tx,
                daemon,
                &ev.session_id,
                *state,
                reason.as_deref(),
                ev.ts_ms,
            )
            .await?;
        }
        EventKind::PermissionRequest {
            approval_id,
            tool_name,
            input,
            ..
        } => {
            let pending = Pending {
                kind: "permission",
                tool_name,
                input,
            };
            insert_pending(tx, daemon, &session, approval_id, &pending, ts).await?;
        }
        EventKind::Question {
            approval_id,
            questions,
        } => {
            let input = serde_json::json!({ "questions": questions });
            let pending = Pending {
                kind: "question",
                tool_name: "AskUserQuestion",
                input: &input,
            };
            insert_pending(tx, daemon, &session, approval_id, &pending, ts).await?;
        }
        EventKind::PermissionDecision {
            approval_id,
            tool_name,
            decision,
            by,
            message,
        } => {
            let decided = Decided {
                kind: "permission",
                tool_name,
                decision: *decision,
                by,
                message: message.as_deref(),
                answers: None,
            };
            decide(tx, daemon, &session, approval_id, &decided, ts).await?;
        }
        EventKind::Answer {
            approval_id,
            answers,
            by,
            decision,
        } => {
            let answers = serde_json::to_string(answers)
                .map_err(|e| DbError::other(format!("cannot encode answers: {e}")))?;
            let decided = Decided {
                kind: "question",
                tool_name: "AskUserQuestion",
                decision: *decision,
                by,
                message: None,
                answers: Some(answers),
            };
            decide(tx, daemon, &session, approval_id, &decided, ts).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Decodes one row of `events` (the event itself is the stored JSON `data`).
fn stored_event(row: &SqliteRow) -> DbResult<StoredEvent> {
    let data: &str = row.try_get("data")?;
    let event: Event = serde_json::from_str(data)
        .map_err(|e| DbError::other(format!("stored event does not parse: {e}")))?;
    Ok(StoredEvent {
        id: row.try_get("id")?,
        daemon_id: DaemonId(row.try_get("daemon_id")?),
        seq: uint(row.try_get("seq")?),
        event,
    })
}
