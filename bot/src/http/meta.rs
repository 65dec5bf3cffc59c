//! The routes about the server itself: `/healthz` (open), `/metrics` in Prometheus text, and
//! the JSON 404 for unknown routes (the OpenAPI document is served by [`crate::openapi`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppError;
use super::schema::{ErrorResponse, Health};
use crate::AppState;

/// `GET /healthz` (open): 200 while the database answers, else 503 with
/// `"database": "unreachable"` (a load balancer then sends traffic to another replica).
#[utoipa::path(get, path = "/healthz", summary = "Liveness and database reachability (no token needed)", tag = "meta", security(()),
    responses(
        (status = 200, description = "the bot is up and its database answers", body = Health),
        (status = 503, description = "the bot is up but its database does not answer (within 3 s): send traffic to another replica", body = Health),
    ))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(3), state.db.ping()).await;
    let backend = if state.db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    let up = matches!(ping, Ok(Ok(())));
    let body = Json(Health {
        ok: up,
        version: common::VERSION.to_owned(),
        database: if up { "ok" } else { "unreachable" }.to_owned(),
        backend: backend.to_owned(),
    });
    if up {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// `GET /metrics` (Prometheus text).
#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics", tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    let c = state.db.counts().await?;
    let m = &state.hub.metrics;
    let mut out = String::new();
    out.push_str("# HELP ccrm_daemons_connected Daemons with an open link.\n# TYPE ccrm_daemons_connected gauge\n");
    out.push_str(&format!(
        "ccrm_daemons_connected {}\n",
        state.hub.online().len()
    ));
    out.push_str("# HELP ccrm_sessions Sessions by state.\n# TYPE ccrm_sessions gauge\n");
    for (s, n) in &c.sessions_by_state {
        out.push_str(&format!("ccrm_sessions{{state=\"{s}\"}} {n}\n"));
    }
    out.push_str(
        "# HELP ccrm_events_stored Events in the database.\n# TYPE ccrm_events_stored gauge\n",
    );
    out.push_str(&format!("ccrm_events_stored {}\n", c.events));
    out.push_str("# HELP ccrm_events_ingested_total Events committed since start.\n# TYPE ccrm_events_ingested_total counter\n");
    out.push_str(&format!(
        "ccrm_events_ingested_total {}\n",
        m.events_ingested.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_events_duplicate_total Resent events ignored since start.\n# TYPE ccrm_events_duplicate_total counter\n");
    out.push_str(&format!(
        "ccrm_events_duplicate_total {}\n",
        m.events_duplicate.load(Ordering::Relaxed)
    ));
    out.push_str(
        "# HELP ccrm_ws_clients Open SSE and dashboard clients.\n# TYPE ccrm_ws_clients gauge\n",
    );
    out.push_str(&format!(
        "ccrm_ws_clients {}\n",
        m.ws_clients.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_rejected_requests_total Requests refused (auth, input, limits).\n# TYPE ccrm_rejected_requests_total counter\n");
    out.push_str(&format!(
        "ccrm_rejected_requests_total {}\n",
        m.rejected.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_replica_streams Streams (execution output) this replica runs on its daemon links for readers on other replicas.\n# TYPE ccrm_replica_streams gauge\n");
    out.push_str(&format!(
        "ccrm_replica_streams {}\n",
        m.replica_streams.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_replica_links Direct links to other replicas that are up.\n# TYPE ccrm_replica_links gauge\n");
    out.push_str(&format!(
        "ccrm_replica_links {}\n",
        m.replica_links.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_replica_direct_total Calls and replies sent to other replicas over a direct link (the others go through PostgreSQL).\n# TYPE ccrm_replica_direct_total counter\n");
    out.push_str(&format!(
        "ccrm_replica_direct_total {}\n",
        m.replica_direct.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_chat_leader 1 while this replica runs the chat adapters (the elected leader).\n# TYPE ccrm_chat_leader gauge\n");
    out.push_str(&format!(
        "ccrm_chat_leader {}\n",
        m.chat_leader.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_approvals_pending Approvals waiting for an answer.\n# TYPE ccrm_approvals_pending gauge\n");
    out.push_str(&format!("ccrm_approvals_pending {}\n", c.approvals_pending));
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

/// Fallback for unknown routes: JSON 404.
pub async fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
