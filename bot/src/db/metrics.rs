//! Totals for `/metrics` ([`crate::http`]): one read across the events, daemons,
//! approvals and sessions tables, taken from a single snapshot so the numbers agree with
//! each other. It only counts rows; what a row means is up to each table's own file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::backend::on_pool;
use super::{Db, DbResult, uint};

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

impl Db {
    /// Totals for `/metrics`.
    #[tracing::instrument(skip_all)]
    pub async fn counts(&self) -> DbResult<Counts> {
        on_pool!(self, |p| {
            // Read everything from one snapshot so the numbers agree with each other.
            let mut tx = p.begin().await?;
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
        })
    }
}
