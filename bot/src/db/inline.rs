//! The ingest's groups on SQLite, committed inline: the writer's own rusqlite connection
//! runs `BEGIN IMMEDIATE`, the multi-row `INSERT ... RETURNING`s, the `sessions` rows that
//! the new state events and the session updates change, the "last heard" updates and
//! `COMMIT` on the ingest task's thread, with no hop to another thread.
//!
//! Through sqlx every statement batch is a round trip to the connection's worker thread: a
//! live turn's one-event group took about 250 µs at the median (p90 0.9 ms) from the
//! ingest task's view, in the `rest_latency` bench, for SQLite work that takes about
//! 30 µs, and each event waits for its commit before any surface sees it. A turn's first
//! group (the prompt, the turn's start, the state `active` and the session update) took
//! five of those round trips, each waking sqlx's thread while claude works on the prompt.
//! Groups with an approval in them ([`super::rows::touches_approvals`]) stay on sqlx
//! ([`super::ingest`]), as do PostgreSQL and every other query. The `sessions` statements
//! are the very ones the sqlx path runs ([`super::sessions::RECORD_STATE`],
//! [`super::sessions::UPSERT_SESSION`]).
//!
//! Small groups run right on the task; a big one (a daemon's backlog after a reconnect)
//! runs in [`tokio::task::block_in_place`] on a multi-threaded runtime, so the worker's other
//! tasks move on meanwhile. The connection has the pool's settings, and its writes take the
//! same turn as every other writer of this process ([`super::Db::write_turn`]), so it does
//! not meet SQLite's write lock held by another connection of the bot and sleep in the busy
//! handler.

use std::path::Path;

use common::event::EventKind;
use common::ids::DaemonId;
use common::link::LinkEvent;
use rusqlite::types::Value;

use super::rows::{
    Bind, Returned, Write, Written, chunk_sql, event_binds, match_rows, touches_approvals,
};
use super::sessions::{RECORD_STATE, UPSERT_SESSION, refused, session_json, state_stub};
use super::{DbError, DbResult, int};
use crate::db::backend::Dialect;

/// Groups of more events than this leave the runtime's worker to others while they commit.
const INLINE_EVENTS: usize = 64;

/// The ingest's own rusqlite connection.
pub struct Inline(rusqlite::Connection);

impl std::fmt::Debug for Inline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inline")
    }
}

fn err(e: rusqlite::Error) -> DbError {
    DbError::other(format!("SQLite (ingest): {e}"))
}

impl Inline {
    /// Opens `path` (already created and migrated by [`super::Db::open`]) with the pool's
    /// settings and the writer's smaller cache.
    pub fn open(path: &Path) -> DbResult<Self> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(super::BUSY_TIMEOUT).map_err(err)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = {};
             PRAGMA mmap_size = 0;
             PRAGMA wal_autocheckpoint = {};
             PRAGMA journal_size_limit = {};",
            super::WRITER_CACHE_SIZE,
            super::WAL_AUTOCHECKPOINT,
            super::JOURNAL_SIZE_LIMIT,
        ))
        .map_err(err)?;
        Ok(Self(conn))
    }

    /// Whether the connection still answers.
    pub fn ping(&self) -> bool {
        self.0.execute_batch("SELECT 1").is_ok()
    }

    /// Commits a group without approvals in one transaction and returns what each write
    /// did; an error means nothing of it was stored.
    pub fn commit(&mut self, writes: &[(&DaemonId, Write<'_>)]) -> DbResult<Vec<Written>> {
        let events: usize = writes
            .iter()
            .map(|(_, w)| match w {
                Write::Events(e) => e.len(),
                _ => 0,
            })
            .sum();
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if events > INLINE_EVENTS && multi {
            tokio::task::block_in_place(|| self.commit_now(writes))
        } else {
            self.commit_now(writes)
        }
    }

    fn commit_now(&mut self, writes: &[(&DaemonId, Write<'_>)]) -> DbResult<Vec<Written>> {
        self.0.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        match self.apply(writes) {
            Ok(written) => match self.0.execute_batch("COMMIT") {
                Ok(()) => Ok(written),
                Err(e) => {
                    let _ = self.0.execute_batch("ROLLBACK");
                    Err(err(e))
                }
            },
            Err(e) => {
                let _ = self.0.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The inserts (in as few multi-row statements as fit, rows of different daemons
    /// sharing one), then, write by write, the `sessions` rows of the new state events and
    /// of the session updates, and the touches, inside the open transaction. (Inserting
    /// every event first changes nothing: the inserts touch only `events`, the rest only
    /// `sessions` and `daemons`, each in the order of the writes.)
    fn apply(&mut self, writes: &[(&DaemonId, Write<'_>)]) -> DbResult<Vec<Written>> {
        let rows: Vec<(&DaemonId, &LinkEvent)> = writes
            .iter()
            .filter_map(|(d, w)| match w {
                Write::Events(events) => Some(events.iter().map(move |e| (*d, e))),
                _ => None,
            })
            .flatten()
            .collect();
        if rows.iter().any(|(_, l)| touches_approvals(&l.event)) {
            return Err(DbError::other(
                "a group with an approval is committed on sqlx",
            ));
        }
        let mut returned = Vec::with_capacity(rows.len());
        let mut rest: &[(&DaemonId, &LinkEvent)] = &rows;
        while !rest.is_empty() {
            let (sql, n) = chunk_sql(Dialect::Sqlite, rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut values = Vec::with_capacity(n * 7);
            for (daemon, link) in chunk {
                values.extend(event_binds(daemon, link)?.into_iter().map(value));
            }
            let mut stmt = self.0.prepare_cached(sql).map_err(err)?;
            let mut found = stmt
                .query(rusqlite::params_from_iter(values))
                .map_err(err)?;
            while let Some(row) = found.next().map_err(err)? {
                returned.push(Returned {
                    daemon: row.get("daemon_id").map_err(err)?,
                    seq: row.get("seq").map_err(err)?,
                    id: row.get("id").map_err(err)?,
                });
            }
        }
        let mut written = match_rows(writes, returned)?;
        for ((daemon, write), done) in writes.iter().zip(written.iter_mut()) {
            match (write, &*done) {
                (Write::Events(_), Written::Events(stored)) => {
                    for ev in stored.iter().map(|s| &s.event) {
                        if let EventKind::State { state, reason } = &ev.kind {
                            self.exec(
                                RECORD_STATE,
                                rusqlite::params![
                                    ev.session_id.to_string(),
                                    daemon.0,
                                    state.as_str(),
                                    reason.as_deref(),
                                    int(ev.ts_ms)?,
                                    state_stub(&ev.session_id, *state, reason.as_deref(), ev.ts_ms),
                                ],
                            )?;
                        }
                    }
                }
                (Write::Session(info, now), _) => {
                    let changed = self.exec(
                        UPSERT_SESSION,
                        rusqlite::params![
                            info.id.to_string(),
                            daemon.0,
                            info.name.as_deref(),
                            info.cwd.to_string_lossy().into_owned(),
                            info.model.as_deref(),
                            info.permission_mode.as_str(),
                            info.state.as_str(),
                            info.reason.as_deref(),
                            int(info.created_ms)?,
                            int(*now)?,
                            session_json(info)?,
                        ],
                    )?;
                    // None changed: the session is another daemon's.
                    if changed == 0 {
                        *done = Written::Refused(refused(info).to_string());
                    }
                }
                (Write::Touch(now), _) => {
                    self.exec(
                        "UPDATE daemons SET last_seen_ms = ?1 WHERE id = ?2",
                        rusqlite::params![int(*now)?, daemon.0],
                    )?;
                }
                (Write::Events(_), _) => {}
            }
        }
        Ok(written)
    }

    /// Runs the cached statement `sql` with `params` (bound by position: the `$N` of the
    /// statements shared with sqlx, which binds by number, appear in order, as the test
    /// below checks); the rows it changed.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> DbResult<usize> {
        self.0
            .prepare_cached(sql)
            .map_err(err)?
            .execute(params)
            .map_err(err)
    }
}

fn value(b: Bind) -> Value {
    match b {
        Bind::Text(s) => Value::Text(s),
        Bind::Int(i) => Value::Integer(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated database (the pool's) and the inline connection on it.
    async fn migrated() -> (tempfile::TempDir, crate::db::Db, Inline) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bot.db");
        let db = crate::db::Db::open(&path).await.expect("open");
        let inline = Inline::open(&path).expect("inline");
        (dir, db, inline)
    }

    #[tokio::test]
    async fn the_connection_has_the_pools_settings() {
        let (_dir, db, inline) = migrated().await;
        let pragma = |name: &str| -> String {
            inline
                .0
                .query_row(&format!("PRAGMA {name}"), [], |r| {
                    r.get::<_, Value>(0).map(|v| match v {
                        Value::Integer(i) => i.to_string(),
                        Value::Text(s) => s,
                        other => format!("{other:?}"),
                    })
                })
                .expect(name)
        };
        assert_eq!(pragma("journal_mode"), "wal");
        // NORMAL is 1.
        assert_eq!(pragma("synchronous"), "1");
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(
            pragma("busy_timeout"),
            super::super::BUSY_TIMEOUT.as_millis().to_string()
        );
        assert_eq!(pragma("cache_size"), super::super::WRITER_CACHE_SIZE);
        assert_eq!(
            pragma("wal_autocheckpoint"),
            super::super::WAL_AUTOCHECKPOINT
        );
        assert_eq!(
            pragma("journal_size_limit"),
            super::super::JOURNAL_SIZE_LIMIT
        );
        assert!(inline.ping());
        db.close().await;
    }

    /// rusqlite binds by position, sqlx by the number of each `$N`: the statements both run
    /// must number their parameters in the order they first appear, or the two would bind
    /// different values to the same place.
    #[tokio::test]
    async fn shared_statements_number_their_parameters_in_order() {
        let (_dir, db, inline) = migrated().await;
        for sql in [RECORD_STATE, UPSERT_SESSION] {
            let stmt = inline.0.prepare(sql).expect("prepare");
            let n = stmt.parameter_count();
            assert!(n > 0, "{sql}");
            for i in 1..=n {
                assert_eq!(
                    stmt.parameter_name(i),
                    Some(format!("${i}").as_str()),
                    "{sql}"
                );
            }
        }
        db.close().await;
    }
}
