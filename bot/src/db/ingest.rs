//! The one ingest path into the store: link events, session updates and "last heard" marks
//! from the daemons, written in transactions that keep `sessions` and `approvals` in step.
//!
//! [`EventWriter`] is what the bot's ingest task ([`crate::ingest`]) drives: it owns one
//! SQLite connection of its own (no pool round trip, never waiting for a pooled writer) and
//! commits a whole group of [`Write`]s, from any number of daemons, in one transaction
//! (group commit). On SQLite a group with no approval in it (plain events, state changes,
//! session updates, "last heard" marks: every group of a turn without a tool to approve) is
//! committed by [`super::inline`], on the ingest task's own thread with no hop to sqlx's
//! worker thread. Any other group, and every group on PostgreSQL, runs statement by
//! statement in a transaction, applying each newly stored event to the derived tables
//! through the helpers `sessions.rs` and `approvals.rs` export for an
//! open transaction ([`record_state`], [`insert_pending`], [`decide`],
//! [`upsert_session_tx`]); they never call back here, so the dependency goes one way.
//! [`Db::insert_events`] is the same for one daemon's batch on a pooled connection.
//!
//! Each event is stored once: `ON CONFLICT (daemon_id, seq) DO NOTHING RETURNING` lists
//! only the rows inserted, so resends after a reconnect are harmless and the derived
//! tables see each event once. The daemon link acks a batch only after its group
//! committed, and publishes the stored events only then, so whatever a subscriber saw is
//! durable.

use common::event::{Event, EventKind};
use common::ids::DaemonId;
use common::link::LinkEvent;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};

use super::approvals::{Decided, Pending, decide, insert_pending};
use super::backend::{Conn, Dialect, Pool, on_conn};
use super::inline::Inline;
use super::rows::{Bind, Write, Written, chunk_sql, event_binds, touches_approvals};
use super::sessions::{record_state, upsert_session_tx};
use super::{Db, DbError, DbResult, StoredEvent, int};

/// The key of the transaction-level advisory lock every PostgreSQL ingest transaction takes
/// before its first insert: row ids then commit in increasing order across replicas, so a
/// reader that has seen id `n` will never later find a row below `n` ("ccrm" in ASCII).
pub const PG_EVENTS_LOCK: i64 = 0x6363_726d;

/// Wakes every replica's event tailer when the open PostgreSQL transaction commits
/// (`crate::replica`; notifications are delivered at commit, never for a rollback).
async fn pg_notify_events(conn: &mut PgConnection) -> DbResult<()> {
    sqlx::query("SELECT pg_notify('ccrm_events', '')")
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes [`PG_EVENTS_LOCK`] for the rest of the open PostgreSQL transaction.
async fn pg_lock_events(conn: &mut PgConnection) -> DbResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_EVENTS_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// The ingest connection; see the module docs.
pub enum EventWriter {
    /// SQLite: the common group inline ([`Inline`]), any other on sqlx, each group in its
    /// turn to write ([`Db::write_turn`]).
    Sqlite(
        SqliteConnection,
        Inline,
        std::sync::Arc<tokio::sync::Mutex<()>>,
    ),
    /// PostgreSQL: every group statement by statement under [`PG_EVENTS_LOCK`].
    Postgres(PgConnection),
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventWriter")
    }
}

impl Db {
    /// Opens the connection the ingest task writes through: same file and settings as the
    /// pool, but a small page cache and no memory map (see `WRITER_CACHE_SIZE`).
    pub async fn event_writer(&self) -> DbResult<EventWriter> {
        Ok(match &self.pool {
            Pool::Sqlite(_, options) => {
                let options = options
                    .as_ref()
                    .clone()
                    .pragma("cache_size", super::WRITER_CACHE_SIZE)
                    .pragma("mmap_size", "0");
                EventWriter::Sqlite(
                    sqlx::ConnectOptions::connect(&options).await?,
                    Inline::open(options.get_filename())?,
                    self.write_turn.clone(),
                )
            }
            Pool::Postgres(pool) => EventWriter::Postgres(pool.acquire().await?.detach()),
        })
    }

    /// Stores a batch of events from one daemon in one transaction (on a pooled
    /// connection; the daemon link goes through [`EventWriter::commit`] instead).
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
        match &self.pool {
            Pool::Sqlite(pool, _) => {
                // IMMEDIATE takes the write lock up front, so the busy timeout applies
                // instead of a deferred transaction failing when it upgrades from read to
                // write.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let stored = store_events(&mut Conn::from(&mut *tx), daemon, events).await?;
                tx.commit().await?;
                Ok(stored)
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                pg_lock_events(&mut tx).await?;
                let stored = store_events(&mut Conn::from(&mut *tx), daemon, events).await?;
                pg_notify_events(&mut tx).await?;
                tx.commit().await?;
                Ok(stored)
            }
        }
    }
}

impl EventWriter {
    /// Whether the connection still answers (after a failed commit, to decide whether to
    /// open a new one).
    pub async fn ping(&mut self) -> bool {
        match self {
            Self::Sqlite(c, inline, _) => c.ping().await.is_ok() && inline.ping(),
            Self::Postgres(c) => c.ping().await.is_ok(),
        }
    }

    /// Commits `writes` (from any daemons, in order) in one transaction and returns what
    /// each did, in the same order. An error means nothing of the group was stored.
    #[tracing::instrument(skip_all, fields(n = writes.len()))]
    pub async fn commit(&mut self, writes: &[(&DaemonId, Write<'_>)]) -> DbResult<Vec<Written>> {
        let (conn, inline, turn) = match self {
            Self::Postgres(conn) => {
                let mut tx = conn.begin().await?;
                pg_lock_events(&mut tx).await?;
                let out = commit_in(&mut Conn::from(&mut *tx), writes).await?;
                pg_notify_events(&mut tx).await?;
                tx.commit().await?;
                return Ok(out);
            }
            Self::Sqlite(conn, inline, turn) => (conn, inline, turn),
        };
        let _turn = turn.lock().await;
        let inline_ok = writes.iter().all(|(_, w)| match w {
            Write::Events(events) => !events.iter().any(|e| touches_approvals(&e.event)),
            Write::Touch(_) | Write::Session(..) => true,
        });
        if inline_ok {
            return inline.commit(writes);
        }
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let out = commit_in(&mut Conn::from(&mut *tx), writes).await?;
        tx.commit().await?;
        Ok(out)
    }
}

/// Applies `writes` in order inside the open transaction of `conn`.
async fn commit_in(
    conn: &mut Conn<'_>,
    writes: &[(&DaemonId, Write<'_>)],
) -> DbResult<Vec<Written>> {
    let mut out = Vec::with_capacity(writes.len());
    for (daemon, write) in writes {
        out.push(match write {
            Write::Events(events) => Written::Events(store_events(conn, daemon, events).await?),
            Write::Session(info, now) => match upsert_session_tx(conn, daemon, info, *now).await? {
                Ok(()) => Written::Done,
                Err(why) => Written::Refused(why),
            },
            Write::Touch(now) => {
                touch(conn, daemon, *now).await?;
                Written::Done
            }
        });
    }
    Ok(out)
}

/// Inserts one daemon's events inside `tx` and applies the new ones to the derived tables.
async fn store_events(
    conn: &mut Conn<'_>,
    daemon: &DaemonId,
    events: &[LinkEvent],
) -> DbResult<Vec<StoredEvent>> {
    let mut stored = Vec::with_capacity(events.len());
    let mut rest = events;
    while !rest.is_empty() {
        // Multi-row INSERTs of a few fixed sizes: far fewer round trips to SQLite's worker
        // thread than one statement per event, and every size stays a cached statement.
        let dialect = match conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        };
        let (sql, n) = chunk_sql(dialect, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut binds = Vec::with_capacity(chunk.len() * 7);
        for link in chunk {
            binds.extend(event_binds(daemon, link)?);
        }
        let mut inserted: Vec<(i64, i64)> = on_conn!(&mut *conn, |c| {
            let mut query = sqlx::query(sql);
            for v in binds {
                query = match v {
                    Bind::Text(s) => query.bind(s),
                    Bind::Int(i) => query.bind(i),
                };
            }
            // RETURNING lists only the rows inserted (not the ignored duplicates), in no
            // promised order: match them back to the events by seq.
            query
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("seq")?, r.try_get("id")?)))
                .collect::<DbResult<_>>()?
        });
        for link in chunk {
            let seq = int(link.seq)?;
            let Some(pos) = inserted.iter().position(|(s, _)| *s == seq) else {
                continue;
            };
            let (_, id) = inserted.remove(pos);
            apply_event(conn, daemon, &link.event).await?;
            stored.push(StoredEvent {
                id,
                daemon_id: daemon.clone(),
                seq: link.seq,
                event: link.event.clone(),
            });
        }
    }
    Ok(stored)
}

/// "Last heard" inside the ingest transaction (an unknown daemon is not an error here).
async fn touch(conn: &mut Conn<'_>, daemon: &DaemonId, now_ms: u64) -> DbResult<()> {
    on_conn!(conn, |c| {
        sqlx::query("UPDATE daemons SET last_seen_ms = $2 WHERE id = $1")
            .bind(daemon.0.as_str())
            .bind(int(now_ms)?)
            .execute(&mut **c)
            .await?;
    });
    Ok(())
}

/// Keeps the derived tables in step with one newly stored event (inside the ingest
/// transaction): state events go to `sessions`, requests and their outcomes to
/// `approvals`; every other kind is history only.
async fn apply_event(conn: &mut Conn<'_>, daemon: &DaemonId, ev: &Event) -> DbResult<()> {
    let ts = int(ev.ts_ms)?;
    let session = ev.session_id.to_string();
    match &ev.kind {
        EventKind::State { state, reason } => {
            record_state(
                conn,
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
            insert_pending(conn, daemon, &session, approval_id, &pending, ts).await?;
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
            insert_pending(conn, daemon, &session, approval_id, &pending, ts).await?;
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
            decide(conn, daemon, &session, approval_id, &decided, ts).await?;
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
            decide(conn, daemon, &session, approval_id, &decided, ts).await?;
        }
        _ => {}
    }
    Ok(())
}
