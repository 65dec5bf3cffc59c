//! The `approvals` table: permission requests and questions, pending until a decision or
//! answer event settles them. Rows are written only by the ingest transaction, through
//! [`insert_pending`] and [`decide`], which the events family (`events.rs`) calls with
//! its open transaction; the REST API and the chat core read them with
//! [`Db::list_approvals`] and [`Db::get_approval`].

use std::collections::BTreeMap;

use super::backend::{Conn, DbRow, on_conn, on_pool};
use common::event::Decision;
use common::ids::{ApprovalId, DaemonId, SessionId};
use common::ipc::ApprovalKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Db, DbError, DbResult, enum_from_str, enum_str, json_column, session_column, uint};

/// Whether an approval still waits for an answer.
#[derive(utoipa::ToSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Nobody has answered yet.
    Pending,
    /// Answered, cancelled or aborted (see [`ApprovalRow::decision`]).
    Decided,
}

/// A permission request or question, with its outcome once there is one.
#[derive(utoipa::ToSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
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

impl Db {
    /// Approvals, oldest first; only pending ones if `pending_only`, only one session's if
    /// `session` is given.
    #[tracing::instrument(skip_all, fields(pending_only))]
    pub async fn list_approvals(
        &self,
        pending_only: bool,
        session: Option<&SessionId>,
    ) -> DbResult<Vec<ApprovalRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT * FROM approvals
                 WHERE ($1 = 0 OR status = 'pending') AND ($2 IS NULL OR session_id = $2)
                 ORDER BY created_ms, id",
            )
            .bind(i64::from(pending_only))
            .bind(session.map(ToString::to_string))
            .fetch_all(p)
            .await?;
            rows.iter().map(approval_row).collect()
        })
    }

    /// One approval by id. [`DbError::NotFound`] if unknown.
    #[tracing::instrument(skip_all, fields(approval = id))]
    pub async fn get_approval(&self, id: &str) -> DbResult<ApprovalRow> {
        on_pool!(self, |p| {
            let row = sqlx::query("SELECT * FROM approvals WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?
                .ok_or(DbError::NotFound)?;
            approval_row(&row)
        })
    }
}

/// The outcome of [`Db::claim_approval`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This answer is the first: send it (the claim was stamped at this Unix ms).
    Won(u64),
    /// Someone answered first: who, and how if their answer already reached the daemon.
    Taken {
        /// Who answered first (an origin like `rest:alice`).
        by: String,
        /// Their decision once it was stored (`None` while it is on its way).
        decision: Option<Decision>,
    },
    /// No such approval is stored (yet): the daemon alone decides.
    Unknown,
}

impl Db {
    /// Claims pending approval `id` for the answer of `by`, with one conditional
    /// `UPDATE ... WHERE status = 'pending' ... RETURNING` (the first answer wins, on any
    /// replica). A claim older than `stale_ms` (its replica died mid-command) may be taken.
    #[tracing::instrument(skip_all, fields(approval = id))]
    pub async fn claim_approval(
        &self,
        id: &str,
        by: &str,
        now_ms: u64,
        stale_ms: u64,
    ) -> DbResult<Claim> {
        let now = super::int(now_ms)?;
        let stale_before = super::int(now_ms.saturating_sub(stale_ms))?;
        on_pool!(self, |p| {
            let won: Option<String> = sqlx::query_scalar(
                "UPDATE approvals SET claimed_by = $2, claimed_ms = $3
                 WHERE id = $1 AND status = 'pending'
                   AND (claimed_by IS NULL OR claimed_ms < $4)
                 RETURNING id",
            )
            .bind(id)
            .bind(by)
            .bind(now)
            .bind(stale_before)
            .fetch_optional(p)
            .await?;
            if won.is_some() {
                return Ok(Claim::Won(now_ms));
            }
            let row = sqlx::query(
                "SELECT status, decision, decided_by, claimed_by FROM approvals WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await?;
            let Some(row) = row else {
                return Ok(Claim::Unknown);
            };
            let decision = row.opt_text("decision")?.map(enum_from_str).transpose()?;
            let decided_by: Option<String> = row.col("decided_by")?;
            let claimed_by: Option<String> = row.col("claimed_by")?;
            Ok(Claim::Taken {
                by: decided_by
                    .or(claimed_by)
                    .unwrap_or_else(|| "someone else".to_owned()),
                decision,
            })
        })
    }

    /// Gives up the claim `by` made at `at_ms` on approval `id` (its answer never reached
    /// the daemon), so another answer may be sent. A decided approval keeps its state.
    #[tracing::instrument(skip_all, fields(approval = id))]
    pub async fn release_approval(&self, id: &str, by: &str, at_ms: u64) -> DbResult<()> {
        let at = super::int(at_ms)?;
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE approvals SET claimed_by = NULL, claimed_ms = NULL
                 WHERE id = $1 AND status = 'pending' AND claimed_by = $2 AND claimed_ms = $3",
            )
            .bind(id)
            .bind(by)
            .bind(at)
            .execute(p)
            .await?;
            Ok(())
        })
    }
}

/// A request for an answer, as carried by a permission request or question event.
pub(super) struct Pending<'a> {
    /// `permission` or `question` (the stored [`ApprovalKind`] name).
    pub kind: &'a str,
    /// The tool asked about (`AskUserQuestion` for questions).
    pub tool_name: &'a str,
    /// The tool input; for questions `{"questions": [...]}`.
    pub input: &'a Value,
}

/// The outcome of an approval, as carried by a decision or answer event.
pub(super) struct Decided<'a> {
    /// `permission` or `question`, used if the request was never stored.
    pub kind: &'a str,
    /// The tool, used if the request was never stored.
    pub tool_name: &'a str,
    /// How it ended.
    pub decision: Decision,
    /// Who decided.
    pub by: &'a str,
    /// Message for the model (deny) or explanation (aborted).
    pub message: Option<&'a str>,
    /// For questions: the answers as JSON text.
    pub answers: Option<String>,
}

/// Adds a pending approval inside the ingest transaction. A request already stored keeps
/// its row (resends and a decision that arrived first are not overwritten).
pub(super) async fn insert_pending(
    conn: &mut Conn<'_>,
    daemon: &DaemonId,
    session: &str,
    id: &ApprovalId,
    p: &Pending<'_>,
    ts: i64,
) -> DbResult<()> {
    on_conn!(conn, |c| {
        sqlx::query(
                "INSERT INTO approvals (id, daemon_id, session_id, kind, tool_name, input, status, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id.0.as_str())
            .bind(daemon.0.as_str())
            .bind(session)
            .bind(p.kind)
            .bind(p.tool_name)
            .bind(p.input.to_string())
            .bind(ts)
            .execute(&mut **c)
            .await?;
    });
    Ok(())
}

/// Marks an approval decided inside the ingest transaction. If its request was never
/// stored (it cannot normally happen, events arrive in order) the decided row is created
/// so the outcome is not lost. A row that is already decided keeps its first outcome.
pub(super) async fn decide(
    conn: &mut Conn<'_>,
    daemon: &DaemonId,
    session: &str,
    id: &ApprovalId,
    d: &Decided<'_>,
    ts: i64,
) -> DbResult<()> {
    on_conn!(conn, |c| {
        sqlx::query(
                "INSERT INTO approvals (id, daemon_id, session_id, kind, tool_name, input, status,
                                        decision, decided_by, message, answers, created_ms, decided_ms)
                 VALUES ($1, $2, $3, $4, $5, 'null', 'decided', $6, $7, $8, $9, $10, $10)
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
            .execute(&mut **c)
            .await?;
    });
    Ok(())
}

/// Decodes one row of `approvals`.
fn approval_row(row: &impl DbRow) -> DbResult<ApprovalRow> {
    let decision = row.opt_text("decision")?;
    let answers = row.opt_text("answers")?;
    let decided_ms: Option<i64> = row.col("decided_ms")?;
    Ok(ApprovalRow {
        id: ApprovalId(row.col("id")?),
        daemon_id: DaemonId(row.col("daemon_id")?),
        session_id: session_column(row, "session_id")?,
        kind: enum_from_str(row.text("kind")?)?,
        tool_name: row.col("tool_name")?,
        input: json_column(row, "input")?,
        status: enum_from_str(row.text("status")?)?,
        decision: decision.map(enum_from_str).transpose()?,
        decided_by: row.col("decided_by")?,
        message: row.col("message")?,
        answers: answers
            .map(|a| {
                serde_json::from_str(a)
                    .map_err(|e| DbError::other(format!("stored answers do not parse: {e}")))
            })
            .transpose()?,
        created_ms: uint(row.col("created_ms")?),
        decided_ms: decided_ms.map(uint),
    })
}
