//! The bot's storage: one SQLite file (WAL) behind the [`Db`] type, with one method per
//! query. Schema lives in the top-level `migrations/` folder and is applied by [`Db::open`].
//!
//! - Daemons, sessions and approvals are the *current* picture; events are the history.
//! - [`Db::insert_events`] is the only ingest path: it stores each [`LinkEvent`] once (the
//!   `(daemon_id, seq)` pair makes resends after a reconnect harmless) and, in the same
//!   transaction, keeps `sessions.state` and `approvals` in step with the events it stored.
//!   The hub acks a daemon only after it returns, so an acked event is committed.
//! - Event rows get the bot's own increasing `id`: the keyset cursor for pages and the
//!   SSE `Last-Event-ID`.
//! - API keys are stored as SHA-256 hashes only (see [`crate::auth`]).
//!
//! Everything database-specific stays in this file so that moving to Postgres (DESIGN.md,
//! "Past one machine") is a contained change. Callers see [`DbError`], never `sqlx` types
//! in signatures, and can map [`DbError::NotFound`] to a 404.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use common::event::{Decision, Event, EventKind, SessionState};
use common::ids::{ApprovalId, DaemonId, SessionId};
use common::ipc::{ApprovalKind, SessionInfo};
use common::link::LinkEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::auth;
pub use crate::auth::KeyKind;

/// The migrations of `../migrations`, embedded at build time (`build.rs` reruns on change).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

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

/// How long a connection waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache per connection, in KiB when negative (SQLite's default is 2 MiB): enough for
/// the hot index pages of a large events table, so inserts and pages seldom go to disk.
const CACHE_SIZE: &str = "-16384";

/// Reads through a shared memory map of up to this many bytes instead of `read` calls
/// into each connection's cache.
const MMAP_SIZE: &str = "268435456";

/// Connections in the pool. SQLite has one writer at a time; the rest serve readers
/// (pages, SSE catch-up) concurrently thanks to WAL.
const MAX_CONNECTIONS: u32 = 8;

/// What went wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The row asked for does not exist (handlers answer 404).
    #[error("not found")]
    NotFound,
    /// SQLite or the pool failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// Anything else: file permissions, migrations, bad input, a stored row that no
    /// longer parses.
    #[error("{0}")]
    Other(String),
}

impl DbError {
    fn other(msg: impl Into<String>) -> Self {
        Self::Other(msg.into())
    }
}

/// Result of every [`Db`] method.
pub type DbResult<T> = Result<T, DbError>;

/// A daemon the bot has seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// A session as the bot knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    /// The daemon the session lives on.
    pub daemon_id: DaemonId,
    /// The last [`SessionInfo`] the daemon sent, with `state` and `reason` taken from the
    /// newest stored state event when that is more recent.
    pub info: SessionInfo,
    /// When the row last changed (Unix ms).
    pub updated_ms: u64,
}

/// Whether an approval still waits for an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Nobody has answered yet.
    Pending,
    /// Answered, cancelled or aborted (see [`ApprovalRow::decision`]).
    Decided,
}

/// A permission request or question, with its outcome once there is one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRow {
    /// The approval id (the CLI's request id).
    pub id: ApprovalId,
    /// The daemon the session lives on.
    pub daemon_id: DaemonId,
    /// The session that asked.
    pub session_id: SessionId,
    /// Permission request or question.
    pub kind: ApprovalKind,
    /// Tool name (`AskUserQuestion` for questions).
    pub tool_name: String,
    /// Tool input; for questions `{"questions": [...]}`.
    pub input: Value,
    /// Pending or decided.
    pub status: ApprovalStatus,
    /// The outcome, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Message for the model (deny) or explanation (aborted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For questions: question text → chosen label(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<BTreeMap<String, String>>,
    /// When it was asked (Unix ms).
    pub created_ms: u64,
    /// When it was decided (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_ms: Option<u64>,
}

/// An API key as listed: never the secret, never its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRow {
    /// Row id (accepted by [`Db::revoke_key`]).
    pub id: i64,
    /// Unique name chosen at creation.
    pub name: String,
    /// Daemon key or user token.
    pub kind: KeyKind,
    /// Creation time (Unix ms).
    pub created_ms: u64,
    /// Revocation time (Unix ms); a revoked key no longer verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl KeyRow {
    /// True unless the key was revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_ms.is_none()
    }
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Row id (increasing).
    pub id: i64,
    /// When (Unix ms).
    pub ts_ms: u64,
    /// Who (`cli`, `rest:<key name>`, `telegram:<user>`, ...).
    pub actor: String,
    /// What (`key.create`, `prompt.send`, ...).
    pub action: String,
    /// On what (a session id, a key name, ...).
    pub target: String,
    /// Anything else worth keeping.
    pub detail: Value,
}

/// Totals for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Stored events.
    pub events: u64,
    /// Sessions per state name.
    pub sessions_by_state: BTreeMap<String, u64>,
    /// Daemons with an open link.
    pub daemons_online: u64,
    /// Approvals still waiting for an answer.
    pub approvals_pending: u64,
}

/// The bot's database: a cheap `Clone` handle on a SQLite connection pool.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    ///
    /// The parent directory is created with mode 0700 (and tightened if it exists, unless
    /// it is a shared sticky directory such as `/tmp`), the file
    /// with mode 0600; SQLite gives its `-wal`/`-shm` files the same mode. Connections use
    /// WAL, `synchronous=NORMAL` (a killed process loses nothing committed), foreign keys
    /// and a busy timeout. Running it again on the same file is harmless.
    #[tracing::instrument(skip_all, fields(path = %path.display()))]
    pub async fn open(path: &Path) -> DbResult<Self> {
        prepare_files(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("cache_size", CACHE_SIZE)
            .pragma("mmap_size", MMAP_SIZE);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| DbError::other(format!("migrating {}: {e}", path.display())))?;
        Ok(Self { pool })
    }

    /// Waits for running queries and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // --- daemons ---------------------------------------------------------------------

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
        let now = int(now_ms)?;
        sqlx::query(
            "INSERT INTO daemons (id, hostname, version, key_id, online, first_seen_ms, last_seen_ms)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)
             ON CONFLICT (id) DO UPDATE SET
                hostname = excluded.hostname, version = excluded.version,
                key_id = excluded.key_id, online = 1, last_seen_ms = excluded.last_seen_ms",
        )
        .bind(id.0.as_str())
        .bind(hostname)
        .bind(version)
        .bind(key_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a daemon online or offline (link opened or closed). [`DbError::NotFound`] if
    /// the daemon never said hello.
    #[tracing::instrument(skip_all, fields(daemon = %id, online))]
    pub async fn set_daemon_online(
        &self,
        id: &DaemonId,
        online: bool,
        now_ms: u64,
    ) -> DbResult<()> {
        let done = sqlx::query("UPDATE daemons SET online = ?2, last_seen_ms = ?3 WHERE id = ?1")
            .bind(id.0.as_str())
            .bind(online)
            .bind(int(now_ms)?)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected())
    }

    /// Marks every daemon offline. The server calls this once at startup: no link survives
    /// a restart, whatever the rows said when the previous process died.
    #[tracing::instrument(skip_all)]
    pub async fn set_all_daemons_offline(&self) -> DbResult<u64> {
        let done = sqlx::query("UPDATE daemons SET online = 0 WHERE online <> 0")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Notes that a daemon was just heard from. [`DbError::NotFound`] if it is unknown.
    #[tracing::instrument(skip_all, fields(daemon = %id))]
    pub async fn touch_daemon(&self, id: &DaemonId, now_ms: u64) -> DbResult<()> {
        let done = sqlx::query("UPDATE daemons SET last_seen_ms = ?2 WHERE id = ?1")
            .bind(id.0.as_str())
            .bind(int(now_ms)?)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected())
    }

    /// Every known daemon, by id.
    #[tracing::instrument(skip_all)]
    pub async fn list_daemons(&self) -> DbResult<Vec<DaemonRow>> {
        let rows = sqlx::query(
            "SELECT id, hostname, version, key_id, online, first_seen_ms, last_seen_ms
             FROM daemons ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DaemonRow {
                    id: DaemonId(r.try_get("id")?),
                    hostname: r.try_get("hostname")?,
                    version: r.try_get("version")?,
                    key_id: r.try_get("key_id")?,
                    online: r.try_get("online")?,
                    first_seen_ms: uint(r.try_get("first_seen_ms")?),
                    last_seen_ms: uint(r.try_get("last_seen_ms")?),
                })
            })
            .collect()
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

    // --- events ----------------------------------------------------------------------

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

    // --- sessions --------------------------------------------------------------------

    /// Creates or replaces a session's row from the daemon's [`SessionInfo`] (hello,
    /// session update). Fails if the session id belongs to another daemon.
    #[tracing::instrument(skip_all, fields(daemon = %daemon, session = %info.id))]
    pub async fn upsert_session(
        &self,
        daemon: &DaemonId,
        info: &SessionInfo,
        now_ms: u64,
    ) -> DbResult<()> {
        let json = serde_json::to_string(info)
            .map_err(|e| DbError::other(format!("cannot encode session: {e}")))?;
        let done = sqlx::query(
            "INSERT INTO sessions (id, daemon_id, name, cwd, model, permission_mode, state,
                                   reason, created_ms, updated_ms, info)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (id) DO UPDATE SET
                name = excluded.name, cwd = excluded.cwd, model = excluded.model,
                permission_mode = excluded.permission_mode, state = excluded.state,
                reason = excluded.reason, created_ms = excluded.created_ms,
                updated_ms = excluded.updated_ms, info = excluded.info
             WHERE sessions.daemon_id = excluded.daemon_id",
        )
        .bind(info.id.to_string())
        .bind(daemon.0.as_str())
        .bind(info.name.as_deref())
        .bind(info.cwd.to_string_lossy().into_owned())
        .bind(info.model.as_deref())
        .bind(info.permission_mode.as_str())
        .bind(info.state.as_str())
        .bind(info.reason.as_deref())
        .bind(int(info.created_ms)?)
        .bind(int(now_ms)?)
        .bind(json)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::other(format!(
                "session {} belongs to another daemon",
                info.id
            )));
        }
        Ok(())
    }

    /// Sessions, oldest first, optionally only those of one daemon and/or in one state
    /// (`idle`, `active`, ...).
    #[tracing::instrument(skip_all)]
    pub async fn list_sessions(
        &self,
        daemon: Option<&str>,
        state: Option<&str>,
    ) -> DbResult<Vec<SessionRow>> {
        let rows = sqlx::query(
            "SELECT daemon_id, state, reason, updated_ms, info FROM sessions
             WHERE (?1 IS NULL OR daemon_id = ?1) AND (?2 IS NULL OR state = ?2)
             ORDER BY created_ms, id",
        )
        .bind(daemon)
        .bind(state)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_row).collect()
    }

    /// One session. [`DbError::NotFound`] if unknown.
    #[tracing::instrument(skip_all, fields(session = %id))]
    pub async fn get_session(&self, id: &SessionId) -> DbResult<SessionRow> {
        let row = sqlx::query(
            "SELECT daemon_id, state, reason, updated_ms, info FROM sessions WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(DbError::NotFound)?;
        session_row(&row)
    }

    // --- approvals -------------------------------------------------------------------

    /// Approvals, oldest first; only pending ones if `pending_only`, only one session's if
    /// `session` is given.
    #[tracing::instrument(skip_all, fields(pending_only))]
    pub async fn list_approvals(
        &self,
        pending_only: bool,
        session: Option<&SessionId>,
    ) -> DbResult<Vec<ApprovalRow>> {
        let rows = sqlx::query(
            "SELECT * FROM approvals
             WHERE (?1 = 0 OR status = 'pending') AND (?2 IS NULL OR session_id = ?2)
             ORDER BY created_ms, id",
        )
        .bind(pending_only)
        .bind(session.map(ToString::to_string))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval_row).collect()
    }

    /// One approval by id. [`DbError::NotFound`] if unknown.
    #[tracing::instrument(skip_all, fields(approval = id))]
    pub async fn get_approval(&self, id: &str) -> DbResult<ApprovalRow> {
        let row = sqlx::query("SELECT * FROM approvals WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(DbError::NotFound)?;
        approval_row(&row)
    }

    // --- API keys --------------------------------------------------------------------

    /// Creates an API key and returns its row id and its secret
    /// (`ccrm_<kind>_<43 random base62 characters>`). Only the secret's SHA-256 is stored:
    /// show the secret once, it cannot be recovered. Names are unique; see
    /// [`auth::validate_key_name`] for what a name may contain.
    #[tracing::instrument(skip_all, fields(name, %kind))]
    pub async fn create_key(
        &self,
        name: &str,
        kind: KeyKind,
        now_ms: u64,
    ) -> DbResult<(i64, String)> {
        auth::validate_key_name(name).map_err(DbError::Other)?;
        let secret = auth::generate_secret(kind)
            .map_err(|e| DbError::other(format!("no randomness for a key: {e}")))?;
        let done = sqlx::query(
            "INSERT INTO api_keys (name, kind, hash, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(auth::hash_secret(&secret))
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::other(format!(
                "a key named `{name}` already exists"
            )));
        }
        Ok((done.last_insert_rowid(), secret))
    }

    /// Every key, active and revoked, by id. Never secrets or hashes.
    #[tracing::instrument(skip_all)]
    pub async fn list_keys(&self) -> DbResult<Vec<KeyRow>> {
        let rows =
            sqlx::query("SELECT id, name, kind, created_ms, revoked_ms FROM api_keys ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(key_row).collect()
    }

    /// Revokes a key given by name or by numeric id (a name is tried first). Revoking a
    /// revoked key keeps its first revocation time. [`DbError::NotFound`] if no key matches.
    #[tracing::instrument(skip_all, fields(key = name_or_id))]
    pub async fn revoke_key(&self, name_or_id: &str, now_ms: u64) -> DbResult<()> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM api_keys WHERE name = ?1")
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(id) = id.or_else(|| name_or_id.parse::<i64>().ok()) else {
            return Err(DbError::NotFound);
        };
        let done =
            sqlx::query("UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1")
                .bind(id)
                .bind(int(now_ms)?)
                .execute(&self.pool)
                .await?;
        found(done.rows_affected())
    }

    /// Checks a presented secret. Returns the key if it is an active key of `kind`; a user
    /// token never passes as a daemon key or the other way round, and revoked keys fail.
    /// The secret's hash is compared with every candidate in constant time.
    #[tracing::instrument(skip_all, fields(%kind))]
    pub async fn verify_key(&self, secret: &str, kind: KeyKind) -> DbResult<Option<KeyRow>> {
        if !secret.starts_with(kind.prefix()) {
            return Ok(None);
        }
        let presented = auth::hash_secret(secret);
        let rows = sqlx::query(
            "SELECT id, name, kind, created_ms, revoked_ms, hash FROM api_keys
             WHERE kind = ?1 AND revoked_ms IS NULL",
        )
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut matched = None;
        for row in &rows {
            let hash: String = row.try_get("hash")?;
            // No early exit: the time taken does not depend on which row matched.
            if auth::hashes_equal(&presented, &hash) {
                matched = Some(row);
            }
        }
        matched.map(key_row).transpose()
    }

    // --- audit -----------------------------------------------------------------------

    /// Appends an audit entry.
    #[tracing::instrument(skip_all, fields(actor, action))]
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Value,
        now_ms: u64,
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (ts_ms, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(int(now_ms)?)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    #[tracing::instrument(skip_all, fields(limit))]
    pub async fn list_audit(&self, limit: u32) -> DbResult<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, ts_ms, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    ts_ms: uint(r.try_get("ts_ms")?),
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: json_column(r, "detail")?,
                })
            })
            .collect()
    }

    // --- metrics ---------------------------------------------------------------------

    /// Totals for `/metrics`.
    #[tracing::instrument(skip_all)]
    pub async fn counts(&self) -> DbResult<Counts> {
        // Read everything from one snapshot so the numbers agree with each other.
        let mut tx = self.pool.begin().await?;
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&mut *tx)
            .await?;
        let daemons_online: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM daemons WHERE online <> 0")
                .fetch_one(&mut *tx)
                .await?;
        let approvals_pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM approvals WHERE status = 'pending'")
                .fetch_one(&mut *tx)
                .await?;
        let by_state: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM sessions GROUP BY state")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Counts {
            events: uint(events),
            sessions_by_state: by_state.into_iter().map(|(s, n)| (s, uint(n))).collect(),
            daemons_online: uint(daemons_online),
            approvals_pending: uint(approvals_pending),
        })
    }
}

/// Creates the directory (0700) and the database file (0600) before SQLite does, so the
/// file never exists with the umask's wider mode; tightens both if they already exist.
fn prepare_files(path: &Path) -> DbResult<()> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        DbError::other(format!("cannot {what} {}: {e}", p.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("create", dir, e))?;
        tighten_dir(dir);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("create", path, e))?;
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    for file in files.iter().filter(|f| f.exists()) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("set mode 0600 on", file, e))?;
    }
    Ok(())
}

/// Sets an existing directory to 0700, except a shared sticky one like `/tmp` (a database
/// path directly inside it must not lock everyone else out). The database file itself is
/// 0600 regardless, so a directory we may not change only gets a warning.
fn tighten_dir(dir: &Path) {
    let mode = match std::fs::metadata(dir) {
        Ok(meta) => meta.permissions().mode(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), %e, "cannot read the data directory's mode");
            return;
        }
    };
    if mode & 0o1000 != 0 || mode & 0o777 == 0o700 {
        return;
    }
    if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        tracing::warn!(dir = %dir.display(), %e, "cannot set mode 0700 on the data directory");
    }
}

/// Keeps the derived tables in step with one newly stored event (inside the ingest
/// transaction).
async fn apply_event(
    tx: &mut Transaction<'static, Sqlite>,
    daemon: &DaemonId,
    ev: &Event,
) -> DbResult<()> {
    let ts = int(ev.ts_ms)?;
    let session = ev.session_id.to_string();
    match &ev.kind {
        EventKind::State { state, reason } => {
            // The placeholder `info` carries only what the event tells us; the daemon's next
            // session update replaces it. Another daemon's session is left alone.
            let stub = serde_json::json!({
                "id": ev.session_id,
                "cwd": "",
                "permission_mode": "default",
                "state": state,
                "reason": reason,
                "created_ms": ev.ts_ms,
                "last_event_ms": ev.ts_ms,
            });
            sqlx::query(
                "INSERT INTO sessions (id, daemon_id, cwd, permission_mode, state, reason,
                                       created_ms, updated_ms, info)
                 VALUES (?1, ?2, '', 'default', ?3, ?4, ?5, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET
                    state = excluded.state, reason = excluded.reason,
                    updated_ms = excluded.updated_ms
                 WHERE sessions.daemon_id = excluded.daemon_id",
            )
            .bind(session)
            .bind(daemon.0.as_str())
            .bind(state.as_str())
            .bind(reason.as_deref())
            .bind(ts)
            .bind(stub.to_string())
            .execute(&mut **tx)
            .await?;
        }
        EventKind::PermissionRequest {
            approval_id,
            tool_name,
            input,
            ..
        } => {
            insert_pending(
                tx,
                daemon,
                &session,
                approval_id,
                "permission",
                tool_name,
                input,
                ts,
            )
            .await?;
        }
        EventKind::Question {
            approval_id,
            questions,
        } => {
            let input = serde_json::json!({ "questions": questions });
            insert_pending(
                tx,
                daemon,
                &session,
                approval_id,
                "question",
                "AskUserQuestion",
                &input,
                ts,
            )
            .await?;
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

#[expect(clippy::too_many_arguments, reason = "one column each; private helper")]
async fn insert_pending(
    tx: &mut Transaction<'static, Sqlite>,
    daemon: &DaemonId,
    session: &str,
    id: &ApprovalId,
    kind: &str,
    tool_name: &str,
    input: &Value,
    ts: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO approvals (id, daemon_id, session_id, kind, tool_name, input, status, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.0.as_str())
    .bind(daemon.0.as_str())
    .bind(session)
    .bind(kind)
    .bind(tool_name)
    .bind(input.to_string())
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The outcome of an approval, as carried by a decision or answer event.
struct Decided<'a> {
    kind: &'a str,
    tool_name: &'a str,
    decision: Decision,
    by: &'a str,
    message: Option<&'a str>,
    answers: Option<String>,
}

/// Marks an approval decided. If its request was never stored (it cannot normally happen,
/// events arrive in order) the decided row is created so the outcome is not lost. A row
/// that is already decided keeps its first outcome.
async fn decide(
    tx: &mut Transaction<'static, Sqlite>,
    daemon: &DaemonId,
    session: &str,
    id: &ApprovalId,
    d: &Decided<'_>,
    ts: i64,
) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO approvals (id, daemon_id, session_id, kind, tool_name, input, status,
                                decision, decided_by, message, answers, created_ms, decided_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'null', 'decided', ?6, ?7, ?8, ?9, ?10, ?10)
         ON CONFLICT (id) DO UPDATE SET
            status = 'decided', decision = excluded.decision, decided_by = excluded.decided_by,
            message = excluded.message, answers = excluded.answers,
            decided_ms = excluded.decided_ms
         WHERE approvals.status = 'pending' AND approvals.daemon_id = excluded.daemon_id",
    )
    .bind(id.0.as_str())
    .bind(daemon.0.as_str())
    .bind(session)
    .bind(d.kind)
    .bind(d.tool_name)
    .bind(enum_str(&d.decision)?)
    .bind(d.by)
    .bind(d.message)
    .bind(d.answers.as_deref())
    .bind(ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

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

fn session_row(row: &SqliteRow) -> DbResult<SessionRow> {
    let mut info: SessionInfo = json_column(row, "info")?;
    let state: &str = row.try_get("state")?;
    if let Ok(state) = enum_from_str::<SessionState>(state) {
        info.state = state;
    }
    info.reason = row.try_get("reason")?;
    Ok(SessionRow {
        daemon_id: DaemonId(row.try_get("daemon_id")?),
        info,
        updated_ms: uint(row.try_get("updated_ms")?),
    })
}

fn approval_row(row: &SqliteRow) -> DbResult<ApprovalRow> {
    let session: &str = row.try_get("session_id")?;
    let decision: Option<&str> = row.try_get("decision")?;
    let answers: Option<&str> = row.try_get("answers")?;
    let decided_ms: Option<i64> = row.try_get("decided_ms")?;
    Ok(ApprovalRow {
        id: ApprovalId(row.try_get("id")?),
        daemon_id: DaemonId(row.try_get("daemon_id")?),
        session_id: SessionId::from_str(session)
            .map_err(|e| DbError::other(format!("stored session id `{session}`: {e}")))?,
        kind: enum_from_str(row.try_get("kind")?)?,
        tool_name: row.try_get("tool_name")?,
        input: json_column(row, "input")?,
        status: enum_from_str(row.try_get("status")?)?,
        decision: decision.map(enum_from_str).transpose()?,
        decided_by: row.try_get("decided_by")?,
        message: row.try_get("message")?,
        answers: answers
            .map(|a| {
                serde_json::from_str(a)
                    .map_err(|e| DbError::other(format!("stored answers do not parse: {e}")))
            })
            .transpose()?,
        created_ms: uint(row.try_get("created_ms")?),
        decided_ms: decided_ms.map(uint),
    })
}

fn key_row(row: &SqliteRow) -> DbResult<KeyRow> {
    let revoked: Option<i64> = row.try_get("revoked_ms")?;
    let kind: &str = row.try_get("kind")?;
    Ok(KeyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: kind.parse().map_err(DbError::Other)?,
        created_ms: uint(row.try_get("created_ms")?),
        revoked_ms: revoked.map(uint),
    })
}

/// A JSON text column, parsed.
fn json_column<T: DeserializeOwned>(row: &SqliteRow, column: &str) -> DbResult<T> {
    let text: &str = row.try_get(column)?;
    serde_json::from_str(text)
        .map_err(|e| DbError::other(format!("stored {column} does not parse: {e}")))
}

/// The wire name of a unit enum variant (`"allow_session"`).
fn enum_str<T: Serialize>(value: &T) -> DbResult<String> {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => Ok(s),
        _ => Err(DbError::other("value is not a plain name")),
    }
}

/// The unit enum variant with this wire name.
fn enum_from_str<T: DeserializeOwned>(name: &str) -> DbResult<T> {
    serde_json::from_value(Value::String(name.to_owned()))
        .map_err(|e| DbError::other(format!("stored value `{name}`: {e}")))
}

/// A protocol number as an SQLite integer; numbers past `i64::MAX` are refused.
fn int(v: u64) -> DbResult<i64> {
    i64::try_from(v).map_err(|_| DbError::other(format!("number {v} is out of range")))
}

/// A stored integer as a protocol number (stored values are never negative).
fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

fn found(rows_affected: u64) -> DbResult<()> {
    if rows_affected == 0 {
        Err(DbError::NotFound)
    } else {
        Ok(())
    }
}

// --- chat (bot/src/chat) -------------------------------------------------------------

/// One chat thread bound to one session (see `bot/src/chat`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatBinding {
    /// `telegram`, `discord`.
    pub platform: String,
    /// The platform's chat (group, DM, channel) id.
    pub chat_id: String,
    /// The thread (forum topic, Discord thread) id; `None` for a whole chat.
    pub thread_id: Option<String>,
    /// The session shown there.
    pub session_id: SessionId,
    /// Its daemon.
    pub daemon_id: DaemonId,
    /// Who bound it.
    pub created_by: String,
    /// When (Unix ms).
    pub created_ms: u64,
}

/// A chat message that carries approval or question buttons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatApprovalRow {
    /// The short id the buttons carry.
    pub id: i64,
    /// `telegram`, `discord`.
    pub platform: String,
    /// The approval it is for.
    pub approval_id: String,
    /// Its session.
    pub session_id: SessionId,
    /// Where the message is.
    pub chat_id: String,
    /// Its thread, if any.
    pub thread_id: Option<String>,
    /// The platform message id.
    pub message_id: String,
    /// The message text without buttons (kept to edit it later).
    pub title: String,
    /// Question option labels (empty for permissions).
    pub options: Vec<String>,
    /// Whether the message already shows a decision.
    pub decided: bool,
}

fn thread_col(thread: Option<&str>) -> &str {
    thread.unwrap_or("")
}

fn opt_thread(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn chat_binding_row(r: &SqliteRow) -> DbResult<ChatBinding> {
    Ok(ChatBinding {
        platform: r.try_get("platform")?,
        chat_id: r.try_get("chat_id")?,
        thread_id: opt_thread(r.try_get("thread_id")?),
        session_id: r
            .try_get::<String, _>("session_id")?
            .parse()
            .map_err(|_| DbError::other("stored session id does not parse"))?,
        daemon_id: DaemonId(r.try_get("daemon_id")?),
        created_by: r.try_get("created_by")?,
        created_ms: uint(r.try_get("created_ms")?),
    })
}

fn chat_approval_row(r: &SqliteRow) -> DbResult<ChatApprovalRow> {
    Ok(ChatApprovalRow {
        id: r.try_get("id")?,
        platform: r.try_get("platform")?,
        approval_id: r.try_get("approval_id")?,
        session_id: r
            .try_get::<String, _>("session_id")?
            .parse()
            .map_err(|_| DbError::other("stored session id does not parse"))?,
        chat_id: r.try_get("chat_id")?,
        thread_id: opt_thread(r.try_get("thread_id")?),
        message_id: r.try_get("message_id")?,
        title: r.try_get("title")?,
        options: json_column(r, "options")?,
        decided: r.try_get::<i64, _>("decided")? != 0,
    })
}

impl Db {
    /// Binds a chat thread to a session, replacing what it showed before.
    #[tracing::instrument(skip_all)]
    pub async fn chat_bind(&self, b: &ChatBinding) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO chat_bindings (platform, chat_id, thread_id, session_id, daemon_id, created_by, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (platform, chat_id, thread_id) DO UPDATE SET session_id = ?4,
                 daemon_id = ?5, created_by = ?6, created_ms = ?7",
        )
        .bind(&b.platform)
        .bind(&b.chat_id)
        .bind(thread_col(b.thread_id.as_deref()))
        .bind(b.session_id.to_string())
        .bind(&b.daemon_id.0)
        .bind(&b.created_by)
        .bind(int(b.created_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session a chat thread shows, if any.
    #[tracing::instrument(skip_all)]
    pub async fn chat_binding(
        &self,
        platform: &str,
        chat_id: &str,
        thread_id: Option<&str>,
    ) -> DbResult<Option<ChatBinding>> {
        let row = sqlx::query(
            "SELECT * FROM chat_bindings WHERE platform = ?1 AND chat_id = ?2 AND thread_id = ?3",
        )
        .bind(platform)
        .bind(chat_id)
        .bind(thread_col(thread_id))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(chat_binding_row).transpose()
    }

    /// How far `platform` has shown each session's events (see the `chat_handled` table).
    #[tracing::instrument(skip_all)]
    pub async fn chat_handled(&self, platform: &str) -> DbResult<Vec<(SessionId, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT session_id, event_id FROM chat_handled WHERE platform = ?1")
                .bind(platform)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, id)| s.parse().ok().map(|s| (s, id)))
            .collect())
    }

    /// Records that `platform` has shown `session`'s events up to row `event_id` (never moves
    /// back).
    #[tracing::instrument(skip_all)]
    pub async fn set_chat_handled(
        &self,
        platform: &str,
        session: &SessionId,
        event_id: i64,
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO chat_handled (platform, session_id, event_id) VALUES (?1, ?2, ?3)
             ON CONFLICT (platform, session_id) DO UPDATE
             SET event_id = MAX(event_id, excluded.event_id)",
        )
        .bind(platform)
        .bind(session.to_string())
        .bind(event_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every binding (loaded once at start; the chat core keeps them in memory).
    #[tracing::instrument(skip_all)]
    pub async fn chat_bindings(&self, platform: &str) -> DbResult<Vec<ChatBinding>> {
        let rows = sqlx::query("SELECT * FROM chat_bindings WHERE platform = ?1")
            .bind(platform)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(chat_binding_row).collect()
    }

    /// Records a message with approval buttons; returns the id the buttons carry.
    #[tracing::instrument(skip_all)]
    pub async fn chat_approval_add(&self, a: &ChatApprovalRow, now_ms: u64) -> DbResult<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO chat_approvals (platform, approval_id, session_id, chat_id, thread_id,
                 message_id, title, options, decided, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9) RETURNING id",
        )
        .bind(&a.platform)
        .bind(&a.approval_id)
        .bind(a.session_id.to_string())
        .bind(&a.chat_id)
        .bind(thread_col(a.thread_id.as_deref()))
        .bind(&a.message_id)
        .bind(&a.title)
        .bind(serde_json::to_string(&a.options).unwrap_or_else(|_| "[]".into()))
        .bind(int(now_ms)?)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// The approval message with button id `id`.
    #[tracing::instrument(skip_all)]
    pub async fn chat_approval(&self, id: i64) -> DbResult<ChatApprovalRow> {
        let row = sqlx::query("SELECT * FROM chat_approvals WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(DbError::NotFound)?;
        chat_approval_row(&row)
    }

    /// Marks the undecided messages of `approval_id` decided and returns them (so each is
    /// edited once).
    #[tracing::instrument(skip_all)]
    pub async fn chat_approvals_decide(
        &self,
        platform: &str,
        approval_id: &str,
    ) -> DbResult<Vec<ChatApprovalRow>> {
        let rows = sqlx::query(
            "UPDATE chat_approvals SET decided = 1
             WHERE platform = ?1 AND approval_id = ?2 AND decided = 0 RETURNING *",
        )
        .bind(platform)
        .bind(approval_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(chat_approval_row).collect()
    }

    /// The stored update cursor of `platform` (0 when none).
    #[tracing::instrument(skip_all)]
    pub async fn chat_offset(&self, platform: &str) -> DbResult<i64> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT next_update FROM chat_offsets WHERE platform = ?1")
                .bind(platform)
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.unwrap_or(0))
    }

    /// Stores the update cursor of `platform`.
    #[tracing::instrument(skip_all)]
    pub async fn set_chat_offset(&self, platform: &str, next_update: i64) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO chat_offsets (platform, next_update) VALUES (?1, ?2)
             ON CONFLICT (platform) DO UPDATE SET next_update = MAX(next_update, ?2)",
        )
        .bind(platform)
        .bind(next_update)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims update `update_id`: true the first time, false if it was handled before.
    /// Rows older than the newest 10,000 are trimmed now and then.
    #[tracing::instrument(skip_all)]
    pub async fn chat_claim_update(
        &self,
        platform: &str,
        update_id: i64,
        now_ms: u64,
    ) -> DbResult<bool> {
        let first = self.insert_claim(platform, update_id, now_ms).await?;
        if update_id % 1000 == 0 {
            sqlx::query("DELETE FROM chat_updates WHERE platform = ?1 AND update_id < ?2")
                .bind(platform)
                .bind(update_id - 10_000)
                .execute(&self.pool)
                .await?;
        }
        Ok(first)
    }

    /// Records that `id` of `platform` was handled; true if it was not recorded before.
    async fn insert_claim(&self, platform: &str, id: i64, now_ms: u64) -> DbResult<bool> {
        let done = sqlx::query(
            "INSERT INTO chat_updates (platform, update_id, seen_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (platform, update_id) DO NOTHING",
        )
        .bind(platform)
        .bind(id)
        .bind(int(now_ms)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims platform message `id` (a Discord snowflake): true the first time. Unlike
    /// [`Db::chat_claim_update`], ids are not sequential, so old claims are trimmed by age:
    /// those seen more than `keep_ms` ago (callers only ever look back less than that).
    #[tracing::instrument(skip_all)]
    pub async fn chat_claim_message(
        &self,
        platform: &str,
        id: i64,
        now_ms: u64,
        keep_ms: u64,
    ) -> DbResult<bool> {
        let first = self.insert_claim(platform, id, now_ms).await?;
        if id % 256 == 0 {
            sqlx::query("DELETE FROM chat_updates WHERE platform = ?1 AND seen_ms < ?2")
                .bind(platform)
                .bind(int(now_ms.saturating_sub(keep_ms))?)
                .execute(&self.pool)
                .await?;
        }
        Ok(first)
    }
}

impl Db {
    /// Records the platform message id of approval message `id` once it is sent.
    #[tracing::instrument(skip_all)]
    pub async fn chat_approval_set_message(&self, id: i64, message_id: &str) -> DbResult<()> {
        let done = sqlx::query("UPDATE chat_approvals SET message_id = ?2 WHERE id = ?1")
            .bind(id)
            .bind(message_id)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected())
    }
}
