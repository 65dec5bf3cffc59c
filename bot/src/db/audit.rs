//! The `audit_log` table: who did what to what, appended by every surface that acts (the
//! REST API, the chat core, the `ccrm-bot keys` commands) and read newest first.

use super::backend::{DbRow, on_pool};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Db, DbResult, int, json_column, uint};

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

impl Db {
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
        let _turn = self.write_turn().await;
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO audit_log (ts_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(int(now_ms)?)
            .bind(actor)
            .bind(action)
            .bind(target)
            .bind(detail.to_string())
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// The newest `limit` audit entries, newest first.
    #[tracing::instrument(skip_all, fields(limit))]
    pub async fn list_audit(&self, limit: u32) -> DbResult<Vec<AuditRow>> {
        on_pool!(self, |p| {
            let rows = sqlx::query(
                "SELECT id, ts_ms, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            rows.iter().map(audit_row).collect()
        })
    }
}

/// Decodes one row of `audit_log`.
fn audit_row(r: &impl DbRow) -> DbResult<AuditRow> {
    Ok(AuditRow {
        id: r.col("id")?,
        ts_ms: uint(r.col("ts_ms")?),
        actor: r.col("actor")?,
        action: r.col("action")?,
        target: r.col("target")?,
        detail: json_column(r, "detail")?,
    })
}
