//! The bot's storage: one SQLite file (WAL, the default) or a PostgreSQL database (several
//! replicas) behind the [`Db`] type, with one method per query. The SQLite schema lives in
//! the top-level `migrations/` folder, PostgreSQL's in `migrations/postgres/`; both are
//! applied at start ([`Db::open`], [`Db::connect`]). `backend.rs` holds the two pools and
//! the `on_pool!` macro that expands one query body for each backend.
//!
//! This file is what every table family shares: the [`Db`] handle and how it opens the
//! file (modes, pragmas, migrations), [`DbError`], and the column helpers the row decoders
//! use. Each family has a file of its own with its row types, its queries (one `impl Db`
//! block) and its row decoders, so a second backend can be added family by family:
//!
//! - `daemons.rs`, `sessions.rs`, `approvals.rs`: the *current* picture.
//! - `events.rs`: the history, and [`Db::insert_events`], the only ingest path. It stores
//!   each [`LinkEvent`](common::link::LinkEvent) once and, in the same transaction, keeps
//!   `sessions` and `approvals` in step through their transaction helpers; those never
//!   call back into events. Event rows get the bot's own increasing `id`: the keyset
//!   cursor for pages and the SSE `Last-Event-ID`.
//! - `api_keys.rs`: API keys, stored as SHA-256 hashes only (see [`crate::auth`]).
//! - `chat.rs`: the chat adapters' bindings, approval messages, handled marks, update
//!   offsets and claims.
//! - `audit.rs`: the audit log; `metrics.rs`: the totals for `/metrics`.
//! - `web.rs`: dashboard logins and the dashboard's read queries (history read
//!   backwards, turn summaries, overview activity, recent decisions, audit pages).
//! - `executions.rs`: one-shot executions with their status and whole output.
//! - `inbox.rs`: Telegram webhook deliveries kept by any replica until the chat leader
//!   has handled them.
//!
//! Everything database-specific stays in this folder. Callers see [`DbError`], never `sqlx` types
//! in signatures, and can map [`DbError::NotFound`] to a 404. Every type is re-exported
//! here, so callers name them `crate::db::X` whichever file holds them.

mod api_keys;
mod approvals;
mod audit;
mod backend;
mod chat;
mod daemons;
mod events;
mod executions;
mod inbox;
mod ingest;
mod inline;
mod metrics;
mod rows;
mod sessions;
mod web;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use common::ids::SessionId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use self::backend::{DbRow, Pool};

pub use self::api_keys::KeyRow;
pub use self::approvals::{ApprovalRow, ApprovalStatus, Claim};
pub use self::audit::AuditRow;
pub use self::backend::{Target, redact_url};
pub use self::chat::{ChatApprovalRow, ChatBinding, ChatPendingRow, ChatProgressRow, Outboxed};
pub use self::daemons::DaemonRow;
pub use self::events::StoredEvent;
pub use self::executions::ExecutionRow;
pub use self::inbox::INBOX_CHANNEL;
pub use self::ingest::EventWriter;
pub use self::metrics::Counts;
pub use self::rows::{Write, Written};
pub use self::sessions::{SessionMatch, SessionRow};
pub use self::web::{SessionActivity, WebSessionRow};
pub use crate::auth::KeyKind;

/// The SQLite migrations of `../migrations`, embedded at build time (`build.rs` reruns on
/// change).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The PostgreSQL migrations of `../migrations/postgres`, the same schema in PostgreSQL's
/// types (sqlx's migrator holds an advisory lock while it runs, so replicas starting
/// together apply each once).
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Connections in a PostgreSQL replica's pool (the ingest, chat leadership and the
/// notification listener have connections of their own).
const PG_MAX_CONNECTIONS: u32 = 16;

/// How long a PostgreSQL connection attempt may take before the pool reports an error.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled PostgreSQL connection idle for longer than this is pinged before it is handed
/// out. sqlx pings on every acquire by default: a whole round trip before each query, on
/// the hot paths too (the event tailer's read, a routed call's `NOTIFY`). A connection
/// used within this time is alive unless the server restarted in between; then one query
/// fails and the pool opens a new connection for the next one.
const PG_PING_IDLE: Duration = Duration::from_secs(5);

/// How long a connection waits for SQLite's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache per connection, in KiB when negative (SQLite's default is 2 MiB): enough for
/// the hot index pages of a large events table, so inserts and pages seldom go to disk.
const CACHE_SIZE: &str = "-16384";

/// Page cache of the ingest's own connection ([`EventWriter`]), KiB when negative. Its
/// inserts append: every new table leaf passes through its cache once and is not read
/// again, so a big cache only fills with cold pages, up to 16 MiB with [`CACHE_SIZE`]
/// while daemons stream (the `links` bench prints where the bot's memory goes). What it
/// does reuse, the right edge of the table and each daemon's and session's index leaf,
/// fits in a few MiB even with hundreds of daemons; the rest is re-read from the WAL or
/// the file by `read` (the writer maps nothing, so its memory stays this cache).
const WRITER_CACHE_SIZE: &str = "-4096";

/// Reads through a shared memory map of up to this many bytes instead of `read` calls
/// into each connection's cache.
const MMAP_SIZE: &str = "268435456";

/// Connections in the pool. SQLite has one writer at a time; the rest serve readers
/// (pages, SSE catch-up) concurrently thanks to WAL. The ingest has a connection of its
/// own ([`EventWriter`]).
const MAX_CONNECTIONS: u32 = 8;

/// WAL pages after which a committing connection checkpoints by itself. Checkpoints belong
/// to [`Db::checkpoint`], run off the ingest path by a background task; this is only the
/// safety net if that task falls far behind (about 64 MB of WAL).
const WAL_AUTOCHECKPOINT: &str = "16384";

/// What a checkpointed WAL file is truncated to, so one burst does not keep a huge file.
const JOURNAL_SIZE_LIMIT: &str = "67108864";

/// How often the background task checkpoints the WAL (see [`Db::checkpoint_loop`]).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

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
    /// A [`DbError::Other`] with this message.
    fn other(msg: impl Into<String>) -> Self {
        Self::Other(msg.into())
    }
}

/// Result of every [`Db`] method.
pub type DbResult<T> = Result<T, DbError>;

/// The bot's database: a cheap `Clone` handle on a SQLite or PostgreSQL connection pool.
#[derive(Clone, Debug)]
pub struct Db {
    /// The backend's pool (SQLite's keeps how its connections are made: the ingest's own
    /// connection uses it too).
    pool: Pool,
    /// Keys that verified recently ([`Db::verify_key`]).
    keys: std::sync::Arc<crate::auth::KeyCache<KeyRow>>,
    /// Whose turn it is to write, on SQLite ([`Db::write_turn`]).
    write_turn: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Db {
    /// On SQLite, waits for this process's turn to write. The ingest writer and the writes
    /// on the REST path (the audit row of every action) take turns here instead of meeting
    /// on SQLite's write lock, whose busy handler sleeps 1 ms and more before it tries
    /// again: a REST prompt's audit row used to land on the commit of the very events it
    /// caused and wait out that sleep before the 202. `None` on PostgreSQL, whose writers
    /// do not queue on one lock.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.pool {
            Pool::Sqlite(..) => Some(self.write_turn.clone().lock_owned().await),
            Pool::Postgres(_) => None,
        }
    }

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
            .pragma("mmap_size", MMAP_SIZE)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT)
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT);
        // No ping before each acquire (sqlx's default): it is a round trip to the
        // connection's worker thread, and a local file's connection cannot hang up.
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| DbError::other(format!("migrating {}: {e}", path.display())))?;
        let keys = crate::auth::KeyCache::new(sibling(path, "-revoked"));
        Ok(Self {
            pool: Pool::Sqlite(pool, Box::new(options)),
            keys: std::sync::Arc::new(keys),
            write_turn: std::sync::Arc::default(),
        })
    }

    /// Opens the database `target` names: [`Db::open`] for a SQLite file, else connects to
    /// PostgreSQL and brings its schema up to date. `marker` is the revocation marker file
    /// of the key cache on PostgreSQL (SQLite keeps it beside the database file); other
    /// replicas notice a revocation within [`crate::auth::KEY_CACHE_TTL`].
    pub async fn connect(target: &Target, marker: &Path) -> DbResult<Self> {
        let url = match target {
            Target::Sqlite(path) => return Self::open(path).await,
            Target::Postgres(url) => url,
        };
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            DbError::other(format!("database_url {}: {e}", backend::redact_url(url)))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PG_PING_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        PG_MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| DbError::other(format!("migrating {}: {e}", target.describe())))?;
        let keys = crate::auth::KeyCache::new(marker.to_path_buf());
        Ok(Self {
            pool: Pool::Postgres(pool),
            keys: std::sync::Arc::new(keys),
            write_turn: std::sync::Arc::default(),
        })
    }

    /// Whether this database is PostgreSQL (several replicas may share it).
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// The PostgreSQL pool, if that is the backend (replica coordination uses it).
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(..) => None,
        }
    }

    /// Whether the database answers a trivial query (for `/healthz`).
    pub async fn ping(&self) -> DbResult<()> {
        backend::on_pool!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Copies what the WAL holds into the database file without waiting for readers or
    /// the writer (`PRAGMA wal_checkpoint(PASSIVE)`); returns the WAL's size and how much
    /// of it is now in the database, in pages.
    /// On PostgreSQL there is no WAL file of ours to checkpoint: `(0, 0)`.
    pub async fn checkpoint(&self) -> DbResult<(i64, i64)> {
        let Pool::Sqlite(pool, _) = &self.pool else {
            return Ok((0, 0));
        };
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await?;
        Ok((row.try_get(1)?, row.try_get(2)?))
    }

    /// Checkpoints every [`CHECKPOINT_EVERY`] until the pool closes, so the fsyncs of a
    /// checkpoint happen on this task's connection and never in an ingest commit (the
    /// server starts it; short-lived users such as `ccrm-bot keys` rely on close).
    pub async fn checkpoint_loop(self) {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if self.is_postgres() {
            return;
        }
        loop {
            tick.tick().await;
            if self.is_closed() {
                return;
            }
            match self.checkpoint().await {
                Ok(_) => {}
                Err(DbError::Sqlx(sqlx::Error::PoolClosed)) => return,
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
    }

    /// Waits for running queries and closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p, _) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// Whether [`Db::close`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        match &self.pool {
            Pool::Sqlite(p, _) => p.is_closed(),
            Pool::Postgres(p) => p.is_closed(),
        }
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
    for suffix in ["-wal", "-shm", "-revoked"] {
        files.push(sibling(path, suffix));
    }
    for file in files.iter().filter(|f| f.exists()) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("set mode 0600 on", file, e))?;
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name (`ccrm.db` → `ccrm.db-wal`).
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
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

/// A JSON text column, parsed.
fn json_column<T: DeserializeOwned>(row: &impl DbRow, column: &str) -> DbResult<T> {
    let text = row.text(column)?;
    serde_json::from_str(text)
        .map_err(|e| DbError::other(format!("stored {column} does not parse: {e}")))
}

/// A session id column, parsed.
fn session_column(row: &impl DbRow, column: &str) -> DbResult<SessionId> {
    let text = row.text(column)?;
    SessionId::from_str(text)
        .map_err(|e| DbError::other(format!("stored session id `{text}`: {e}")))
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

/// A protocol number as a database integer; numbers past `i64::MAX` are refused.
fn int(v: u64) -> DbResult<i64> {
    i64::try_from(v).map_err(|_| DbError::other(format!("number {v} is out of range")))
}

/// A stored integer as a protocol number (stored values are never negative).
fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

/// `Ok` if a statement changed a row, else [`DbError::NotFound`].
fn found(rows_affected: u64) -> DbResult<()> {
    if rows_affected == 0 {
        Err(DbError::NotFound)
    } else {
        Ok(())
    }
}
