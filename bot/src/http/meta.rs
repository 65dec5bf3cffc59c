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
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let daemons = state.hub.online().len();
    metric(
        &mut out,
        "ccrm_daemons_connected",
        "gauge",
        "Daemons with an open link.",
        daemons,
    );
    header(&mut out, "ccrm_sessions", "gauge", "Sessions by state.");
    for (s, n) in &c.sessions_by_state {
        out.push_str(&format!("ccrm_sessions{{state=\"{s}\"}} {n}\n"));
    }
    for (name, kind, help, value) in [
        (
            "ccrm_events_stored",
            "gauge",
            "Events in the database.",
            c.events,
        ),
        (
            "ccrm_events_ingested_total",
            "counter",
            "Events committed since start.",
            load(&m.events_ingested),
        ),
        (
            "ccrm_events_duplicate_total",
            "counter",
            "Resent events ignored since start.",
            load(&m.events_duplicate),
        ),
        (
            "ccrm_ws_clients",
            "gauge",
            "Open SSE and dashboard clients.",
            load(&m.ws_clients),
        ),
        (
            "ccrm_rejected_requests_total",
            "counter",
            "Requests refused (auth, input, limits).",
            load(&m.rejected),
        ),
        (
            "ccrm_replica_streams",
            "gauge",
            "Streams (execution output) this replica runs on its daemon links for readers on other replicas.",
            load(&m.replica_streams),
        ),
        (
            "ccrm_replica_links",
            "gauge",
            "Direct links to other replicas that are up.",
            load(&m.replica_links),
        ),
        (
            "ccrm_replica_direct_total",
            "counter",
            "Calls and replies sent to other replicas over a direct link (the others go through PostgreSQL).",
            load(&m.replica_direct),
        ),
        (
            "ccrm_chat_leader",
            "gauge",
            "1 while this replica runs the chat adapters (the elected leader).",
            load(&m.chat_leader),
        ),
        (
            "ccrm_approvals_pending",
            "gauge",
            "Approvals waiting for an answer.",
            c.approvals_pending,
        ),
    ] {
        metric(&mut out, name, kind, help, value);
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

/// Writes the `# HELP` and `# TYPE` lines of metric `name`.
fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

/// Writes metric `name` with one unlabelled `value`, after its header.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    out.push_str(&format!("{name} {value}\n"));
}

/// Fallback for unknown routes: JSON 404.
pub async fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
