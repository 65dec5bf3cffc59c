//! The `executions` table: one-shot executions the bot sent to a daemon, with their status
//! and whole output, kept in step with the daemon's numbered items by the recorder in
//! [`crate::executions`]. A batch of items is folded into one `UPDATE` ([`Db::apply_exec_items`]);
//! the daemon's own summary replaces the row when the bot catches up after a gap
//! ([`Db::replace_execution`]).

use super::backend::{DbRow, on_pool};
use common::ids::DaemonId;
use common::workspace::{ExecError, ExecInfo, ExecItem, ExecResult, ExecStatus, ExecUpdate};
use serde::Serialize;

use super::{Db, DbError, DbResult, int, uint};

/// One execution as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExecutionRow {
    /// Its id.
    pub id: String,
    /// The daemon it runs on.
    pub daemon_id: DaemonId,
    /// Its workspace, if any.
    pub workspace_id: Option<String>,
    /// Its directory on the daemon's machine.
    pub cwd: String,
    /// The prompt.
    pub prompt: String,
    /// Where it is.
    pub status: ExecStatus,
    /// Claude's exit code once it finished.
    pub exit_code: Option<i32>,
    /// The assistant's text so far.
    pub output: String,
    /// Why it failed.
    pub error: Option<ExecError>,
    /// Cost, duration and turns once it finished.
    pub result: Option<ExecResult>,
    /// The newest daemon item stored.
    pub items: u64,
    /// Who asked (the token's name).
    pub requested_by: String,
    /// Accepted (Unix ms).
    pub created_ms: u64,
    /// Started on a worker (Unix ms).
    pub started_ms: Option<u64>,
    /// Ended (Unix ms).
    pub finished_ms: Option<u64>,
}

/// What a batch of items changes.
#[derive(Default)]
struct Fold {
    text: String,
    status: Option<ExecStatus>,
    exit_code: Option<i32>,
    error: Option<ExecError>,
    result: Option<ExecResult>,
    started: Option<u64>,
    finished: Option<u64>,
    last: u64,
}

fn fold(items: &[ExecItem]) -> Fold {
    let mut f = Fold::default();
    for item in items {
        f.last = f.last.max(item.n);
        match &item.update {
            ExecUpdate::Queued { .. } => {}
            ExecUpdate::Started => {
                f.status = Some(ExecStatus::Running);
                f.started = Some(item.ts_ms);
            }
            ExecUpdate::Output { chunk } => f.text.push_str(chunk),
            ExecUpdate::Complete { exit_code, result } => {
                f.status = Some(if *exit_code == 0 {
                    ExecStatus::Completed
                } else {
                    ExecStatus::Failed
                });
                f.exit_code = Some(*exit_code);
                f.result = Some(result.clone());
                if *exit_code != 0 {
                    f.error = Some(ExecError {
                        code: common::workspace::exec_code::EXECUTION_FAILED.to_owned(),
                        message: format!(
                            "claude ended the run with an error (exit code {exit_code})"
                        ),
                    });
                }
                f.finished = Some(item.ts_ms);
            }
            ExecUpdate::Error { code, message } => {
                f.status = Some(match code.as_str() {
                    common::workspace::exec_code::EXECUTION_TIMEOUT => ExecStatus::Timeout,
                    common::workspace::exec_code::EXECUTION_CANCELLED => ExecStatus::Cancelled,
                    _ => ExecStatus::Failed,
                });
                f.error = Some(ExecError {
                    code: code.clone(),
                    message: message.clone(),
                });
                f.finished = Some(item.ts_ms);
            }
        }
    }
    f
}

fn json<T: Serialize>(v: Option<&T>) -> Option<String> {
    v.and_then(|v| serde_json::to_string(v).ok())
}

impl Db {
    /// Stores a new execution, as the daemon accepted it.
    #[tracing::instrument(skip_all, fields(id = %info.execution_id))]
    pub async fn insert_execution(
        &self,
        daemon: &DaemonId,
        info: &ExecInfo,
        prompt: &str,
        requested_by: &str,
    ) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO executions (id, daemon_id, workspace_id, cwd, prompt, status, requested_by, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&info.execution_id)
            .bind(daemon.0.as_str())
            .bind(info.workspace_id.as_deref())
            .bind(info.cwd.to_string_lossy().as_ref())
            .bind(prompt)
            .bind(info.status.as_str())
            .bind(requested_by)
            .bind(int(info.created_ms)?)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// Whether an execution with this id is stored.
    pub async fn execution_exists(&self, id: &str) -> DbResult<bool> {
        on_pool!(self, |p| {
            let row = sqlx::query("SELECT 1 FROM executions WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?;
            Ok(row.is_some())
        })
    }

    /// Applies the daemon's items (in order, all newer than the stored `items`) in one
    /// statement: appended output, the newest status and the end.
    #[tracing::instrument(skip_all, fields(id, n = items.len()))]
    pub async fn apply_exec_items(&self, id: &str, items: &[ExecItem]) -> DbResult<()> {
        on_pool!(self, |p, d| {
            if items.is_empty() {
                return Ok(());
            }
            let f = fold(items);
            let opt = |v: Option<u64>| v.map(int).transpose();
            let done = sqlx::query(d.pick(
                "UPDATE executions SET
                    output = output || $2,
                    status = COALESCE($3, status),
                    exit_code = COALESCE($4, exit_code),
                    error = COALESCE($5, error),
                    result = COALESCE($6, result),
                    started_ms = COALESCE($7, started_ms),
                    finished_ms = COALESCE($8, finished_ms),
                    items = MAX(items, $9)
                 WHERE id = $1",
                "UPDATE executions SET
                    output = output || $2,
                    status = COALESCE($3, status),
                    exit_code = COALESCE($4, exit_code),
                    error = COALESCE($5, error),
                    result = COALESCE($6, result),
                    started_ms = COALESCE($7, started_ms),
                    finished_ms = COALESCE($8, finished_ms),
                    items = GREATEST(items, $9)
                 WHERE id = $1",
            ))
            .bind(id)
            .bind(&f.text)
            .bind(f.status.map(ExecStatus::as_str))
            .bind(f.exit_code)
            .bind(json(f.error.as_ref()))
            .bind(json(f.result.as_ref()))
            .bind(opt(f.started)?)
            .bind(opt(f.finished)?)
            .bind(int(f.last)?)
            .execute(p)
            .await?;
            super::found(done.rows_affected())
        })
    }

    /// Replaces a row's state with the daemon's summary (after the bot missed items).
    #[tracing::instrument(skip_all, fields(id = %info.execution_id))]
    pub async fn replace_execution(&self, info: &ExecInfo) -> DbResult<()> {
        on_pool!(self, |p| {
            let opt = |v: Option<u64>| v.map(int).transpose();
            let done = sqlx::query(
                "UPDATE executions SET output = $2, status = $3, exit_code = $4, error = $5,
                    result = $6, started_ms = $7, finished_ms = $8, items = $9
                 WHERE id = $1",
            )
            .bind(&info.execution_id)
            .bind(&info.output)
            .bind(info.status.as_str())
            .bind(info.exit_code)
            .bind(json(info.error.as_ref()))
            .bind(json(info.result.as_ref()))
            .bind(opt(info.started_ms)?)
            .bind(opt(info.finished_ms)?)
            .bind(int(info.items)?)
            .execute(p)
            .await?;
            super::found(done.rows_affected())
        })
    }

    /// Closes an execution the bot can no longer follow.
    pub async fn fail_execution(&self, id: &str, error: &ExecError, now_ms: u64) -> DbResult<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE executions SET status = 'failed', error = $2, finished_ms = $3
                 WHERE id = $1 AND status IN ('queued', 'running')",
            )
            .bind(id)
            .bind(json(Some(error)))
            .bind(int(now_ms)?)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// One execution.
    pub async fn get_execution(&self, id: &str) -> DbResult<ExecutionRow> {
        on_pool!(self, |p| {
            let row = sqlx::query(
                "SELECT id, daemon_id, workspace_id, cwd, prompt, status, exit_code, output, error,
                        result, items, requested_by, created_ms, started_ms, finished_ms
                 FROM executions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?
            .ok_or(DbError::NotFound)?;
            execution_row(&row)
        })
    }

    /// Executions still queued or running as far as the bot knows, oldest first.
    pub async fn unfinished_executions(&self) -> DbResult<Vec<ExecutionRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, daemon_id, workspace_id, cwd, prompt, status, exit_code, output, error,
                        result, items, requested_by, created_ms, started_ms, finished_ms
                 FROM executions WHERE status IN ('queued', 'running') ORDER BY created_ms",
            )
            .fetch_all(p)
            .await?;
            rows.iter().map(execution_row).collect()
        })
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(r: &impl DbRow, col: &str) -> DbResult<Option<T>> {
    let text: Option<String> = r.col(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| DbError::Other(format!("stored {col}: {e}"))))
        .transpose()
}

fn execution_row(r: &impl DbRow) -> DbResult<ExecutionRow> {
    let status: String = r.col("status")?;
    let opt = |col: &str| -> DbResult<Option<u64>> { Ok(r.col::<Option<i64>>(col)?.map(uint)) };
    Ok(ExecutionRow {
        id: r.col("id")?,
        daemon_id: DaemonId(r.col("daemon_id")?),
        workspace_id: r.col("workspace_id")?,
        cwd: r.col("cwd")?,
        prompt: r.col("prompt")?,
        status: status.parse().map_err(DbError::Other)?,
        exit_code: r.col("exit_code")?,
        output: r.col("output")?,
        error: parse_json(r, "error")?,
        result: parse_json(r, "result")?,
        items: uint(r.col("items")?),
        requested_by: r.col("requested_by")?,
        created_ms: uint(r.col("created_ms")?),
        started_ms: opt("started_ms")?,
        finished_ms: opt("finished_ms")?,
    })
}
