//! The `sessions` table: the current picture of each session, from the daemon's own
//! [`SessionInfo`] (hello, session updates) with `state` and `reason` kept current by the
//! state events the ingest stores.
//!
//! [`record_state`] is the piece of the ingest transaction that touches this table; the
//! events family (`events.rs`) calls it, and nothing here calls back into events.

use super::backend::{Conn, DbRow, on_conn, on_pool};
use super::{Db, DbError, DbResult, enum_from_str, int, json_column, uint};
use common::event::SessionState;
use common::ids::{DaemonId, SessionId};
use common::ipc::SessionInfo;
use serde::{Deserialize, Serialize};

/// A session as the bot knows it.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    /// The daemon the session lives on.
    pub daemon_id: DaemonId,
    /// The last [`SessionInfo`] the daemon sent, with `state` and `reason` taken from the
    /// newest stored state event when that is more recent.
    pub info: SessionInfo,
    /// When the row last changed (Unix ms).
    pub updated_ms: u64,
}

impl Db {
    /// Creates or replaces a session's row from the daemon's [`SessionInfo`] (hello,
    /// session update). Fails if the session id belongs to another daemon.
    #[tracing::instrument(skip_all, fields(daemon = %daemon, session = %info.id))]
    pub async fn upsert_session(
        &self,
        daemon: &DaemonId,
        info: &SessionInfo,
        now_ms: u64,
    ) -> DbResult<()> {
        let done = on_pool!(self, |p| {
            let mut c = p.acquire().await?;
            upsert_session_tx(&mut Conn::from(&mut *c), daemon, info, now_ms).await?
        });
        done.map_err(DbError::Other)
    }

    /// Sessions, oldest first, optionally only those of one daemon and/or in one state
    /// (`idle`, `active`, ...).
    #[tracing::instrument(skip_all)]
    pub async fn list_sessions(
        &self,
        daemon: Option<&str>,
        state: Option<&str>,
    ) -> DbResult<Vec<SessionRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT daemon_id, state, reason, updated_ms, info FROM sessions
                 WHERE ($1 IS NULL OR daemon_id = $1) AND ($2 IS NULL OR state = $2)
                 ORDER BY created_ms, id",
            )
            .bind(daemon)
            .bind(state)
            .fetch_all(p)
            .await?;
            rows.iter().map(session_row).collect()
        })
    }

    /// One session. [`DbError::NotFound`] if unknown.
    #[tracing::instrument(skip_all, fields(session = %id))]
    pub async fn get_session(&self, id: &SessionId) -> DbResult<SessionRow> {
        on_pool!(self, |p| {
            let row = sqlx::query(
                "SELECT daemon_id, state, reason, updated_ms, info FROM sessions WHERE id = $1",
            )
            .bind(id.to_string())
            .fetch_optional(p)
            .await?
            .ok_or(DbError::NotFound)?;
            session_row(&row)
        })
    }
}

/// A session a REST path may mean: its id, name and daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMatch {
    /// The full id.
    pub id: SessionId,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The daemon it lives on.
    pub daemon_id: DaemonId,
}

impl Db {
    /// Sessions named exactly `name`, and those whose id starts with `prefix` (lowercase
    /// hex, compared with and without hyphens; `None` matches names only), oldest first.
    #[tracing::instrument(skip_all)]
    pub async fn find_sessions(
        &self,
        name: &str,
        prefix: Option<&str>,
    ) -> DbResult<Vec<SessionMatch>> {
        let bare = prefix.map(|p| p.replace('-', ""));
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, name, daemon_id FROM sessions
                 WHERE name = $1
                    OR (CAST($2 AS TEXT) IS NOT NULL
                        AND (substr(id, 1, length(CAST($2 AS TEXT))) = CAST($2 AS TEXT)
                        OR substr(replace(id, '-', ''), 1, length(CAST($3 AS TEXT)))
                           = CAST($3 AS TEXT)))
                 ORDER BY created_ms, id LIMIT 50",
            )
            .bind(name)
            .bind(prefix)
            .bind(bare.as_deref())
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|row| {
                    let id: String = row.col("id")?;
                    Ok(SessionMatch {
                        id: id
                            .parse()
                            .map_err(|_| DbError::other(format!("bad session id `{id}` stored")))?,
                        name: row.col("name")?,
                        daemon_id: DaemonId(row.col("daemon_id")?),
                    })
                })
                .collect()
        })
    }
}

/// [`Db::upsert_session`] inside the ingest transaction; `Err(message)` (the transaction
/// goes on) when the session belongs to another daemon.
pub(super) async fn upsert_session_tx(
    conn: &mut Conn<'_>,
    daemon: &DaemonId,
    info: &SessionInfo,
    now_ms: u64,
) -> DbResult<Result<(), String>> {
    let json = session_json(info)?;
    let done = on_conn!(conn, |c| {
        sqlx::query(UPSERT_SESSION)
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
            .bind(json.as_str())
            .execute(&mut **c)
            .await?
            .rows_affected()
    });
    Ok(if done == 0 {
        Err(refused(info).to_string())
    } else {
        Ok(())
    })
}

/// A session update as stored in `info`.
pub(super) fn session_json(info: &SessionInfo) -> DbResult<String> {
    serde_json::to_string(info).map_err(|e| DbError::other(format!("cannot encode session: {e}")))
}

/// Why a session update was refused.
pub(super) fn refused(info: &SessionInfo) -> DbError {
    DbError::other(format!("session {} belongs to another daemon", info.id))
}

/// The statement behind [`Db::upsert_session`] (also run by the inline ingest,
/// `inline.rs`): replaces the row unless the session belongs to another daemon. `$1` id,
/// `$2` daemon, `$3` name, `$4` cwd, `$5` model, `$6` permission mode, `$7` state, `$8`
/// reason, `$9` created, `$10` updated, `$11` info.
pub(super) const UPSERT_SESSION: &str = "INSERT INTO sessions (id, daemon_id, name, cwd, model,
        permission_mode, state, reason, created_ms, updated_ms, info)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (id) DO UPDATE SET
        name = excluded.name, cwd = excluded.cwd, model = excluded.model,
        permission_mode = excluded.permission_mode, state = excluded.state,
        reason = excluded.reason, created_ms = excluded.created_ms,
        updated_ms = excluded.updated_ms, info = excluded.info
     WHERE sessions.daemon_id = excluded.daemon_id";

/// Applies a stored state event to the `sessions` table inside the ingest transaction:
/// sets the session's `state`, `reason` and `updated_ms`, creating a placeholder row if
/// the daemon never described the session. Another daemon's session is left alone.
pub(super) async fn record_state(
    conn: &mut Conn<'_>,
    daemon: &DaemonId,
    session: &SessionId,
    state: SessionState,
    reason: Option<&str>,
    ts_ms: u64,
) -> DbResult<()> {
    on_conn!(conn, |c| {
        sqlx::query(RECORD_STATE)
            .bind(session.to_string())
            .bind(daemon.0.as_str())
            .bind(state.as_str())
            .bind(reason)
            .bind(int(ts_ms)?)
            .bind(state_stub(session, state, reason, ts_ms))
            .execute(&mut **c)
            .await?;
    });
    Ok(())
}

/// The statement of [`record_state`], also run by the inline ingest (`inline.rs`):
/// `$1` session, `$2` daemon, `$3` state, `$4` reason, `$5` time, `$6` placeholder info.
pub(super) const RECORD_STATE: &str =
    "INSERT INTO sessions (id, daemon_id, cwd, permission_mode, state, reason,
                           created_ms, updated_ms, info)
     VALUES ($1, $2, '', 'default', $3, $4, $5, $5, $6)
     ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, reason = excluded.reason,
        updated_ms = excluded.updated_ms
     WHERE sessions.daemon_id = excluded.daemon_id";

/// The placeholder `info` of a session only a state event told of: it carries only what
/// the event tells; the daemon's next session update replaces it.
pub(super) fn state_stub(
    session: &SessionId,
    state: SessionState,
    reason: Option<&str>,
    ts_ms: u64,
) -> String {
    serde_json::json!({
        "id": session,
        "cwd": "",
        "permission_mode": "default",
        "state": state,
        "reason": reason,
        "created_ms": ts_ms,
        "last_event_ms": ts_ms,
    })
    .to_string()
}

/// Decodes one row of `sessions`: the stored [`SessionInfo`] with the row's `state` and
/// `reason` laid over it.
fn session_row(row: &impl DbRow) -> DbResult<SessionRow> {
    let mut info: SessionInfo = json_column(row, "info")?;
    let state = row.text("state")?;
    if let Ok(state) = enum_from_str::<SessionState>(state) {
        info.state = state;
    }
    info.reason = row.col("reason")?;
    Ok(SessionRow {
        daemon_id: DaemonId(row.col("daemon_id")?),
        info,
        updated_ms: uint(row.col("updated_ms")?),
    })
}
