//! The routes about the server itself: `/healthz` (open), `/metrics` in Prometheus text, the
//! OpenAPI document, and the JSON 404 for unknown routes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppError;
use crate::AppState;

/// `GET /healthz` (open): 200 while the database answers, else 503 with
/// `"database": "unreachable"` (a load balancer then sends traffic to another replica).
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(3), state.db.ping()).await;
    let backend = if state.db.is_postgres() {
        "postgres"
    } else {
        "sqlite"
    };
    match ping {
        Ok(Ok(())) => Json(json!({
            "ok": true, "version": common::VERSION, "database": "ok", "backend": backend,
        }))
        .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "ok": false, "version": common::VERSION, "database": "unreachable",
                "backend": backend,
            })),
        )
            .into_response(),
    }
}

/// `GET /metrics` (Prometheus text).
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
    out.push_str("# HELP ccrm_approvals_pending Approvals waiting for an answer.\n# TYPE ccrm_approvals_pending gauge\n");
    out.push_str(&format!("ccrm_approvals_pending {}\n", c.approvals_pending));
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// Fallback for unknown routes: JSON 404.
pub async fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
