//! `/audit`: the audit log, newest first, paged by row id (`?before=`): every remote
//! action and every refusal, from chat, REST and the dashboard (logins too).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::Web;
use super::cookies::WebUser;
use super::errors::WebError;
use super::page::{Base, render};
use super::render::{time, tools};

/// Entries per page.
const PAGE: u32 = 50;

/// One audit entry as shown.
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// When.
    pub when: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// The detail JSON on one line.
    pub detail: String,
    /// Whether it is a refusal (shown as such).
    pub refused: bool,
}

/// `templates/audit.html`.
#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    base: Base,
    entries: Vec<Entry>,
    older: Option<i64>,
}

/// Query of `GET /audit`.
#[derive(Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

/// `GET /audit?before=<row id>`.
pub async fn page(
    State(web): State<Web>,
    user: WebUser,
    Query(q): Query<AuditQuery>,
) -> Result<Response, WebError> {
    let rows = web
        .app
        .db
        .audit_before(q.before.unwrap_or(i64::MAX), PAGE)
        .await?;
    let older = (rows.len() == PAGE as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let entries = rows
        .into_iter()
        .map(|r| {
            let refused = r.action.contains("refus")
                || r.action.contains("fail")
                || r.action.contains("limited")
                || r.action.contains("denied");
            Entry {
                id: r.id,
                when: time::datetime(r.ts_ms),
                detail: tools::one_line(&r.detail.to_string(), 300),
                actor: r.actor,
                action: r.action,
                target: r.target,
                refused,
            }
        })
        .collect();
    render(&AuditPage {
        base: Base::new(&web, &user, "audit", "Audit log").await?,
        entries,
        older,
    })
}
