//! One daemon: [`resolve_daemon`] finds it by id, unique id prefix or hostname (what
//! `{daemon}` in a path may be), and `GET /api/daemons/{daemon}` reports its health in
//! OCC's shape: `status` (`healthy` / `offline`), `version`, `uptime`, the link's
//! `heartbeat` (pings answered, failures in a row, pings sent), and its execution
//! `workers`, `running` and `queued`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::event::now_ms;
use common::ids::DaemonId;
use common::ipc::{Command, DaemonStatus, NoArgs};

use super::AppError;
use super::schema::{DaemonHealth, DaemonStatusName as Health, ErrorResponse, Heartbeat};
use crate::AppState;

/// How long the health route waits for the daemon's own status.
const STATUS_WAIT: Duration = Duration::from_secs(5);

/// An ISO 8601 UTC time with milliseconds (`2026-12-05T11:03:47.123Z`), as OCC writes them.
pub fn iso(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Finds a daemon by id, unique id prefix, or hostname (an online one wins when several
/// share a hostname). 404 when none matches, 409 when the key is ambiguous.
pub async fn resolve_daemon(state: &AppState, key: &str) -> Result<DaemonId, AppError> {
    let key = key.trim();
    let rows = state.db.list_daemons().await?;
    if let Some(r) = rows.iter().find(|r| r.id.0 == key) {
        return Ok(r.id.clone());
    }
    let by_host: Vec<&DaemonId> = rows
        .iter()
        .filter(|r| r.hostname == key)
        .map(|r| &r.id)
        .collect();
    let anywhere = crate::replica::online_anywhere(state).await;
    let online: Vec<&DaemonId> = by_host
        .iter()
        .copied()
        .filter(|d| anywhere.contains(d))
        .collect();
    match (by_host.as_slice(), online.as_slice()) {
        ([one], _) | (_, [one]) => return Ok((*one).clone()),
        ([], _) => {}
        (many, _) => {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "ambiguous",
                format!("{} daemons are called `{key}`; use an id", many.len()),
            ));
        }
    }
    let by_prefix: Vec<&DaemonId> = rows
        .iter()
        .filter(|r| !key.is_empty() && r.id.0.starts_with(key))
        .map(|r| &r.id)
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no daemon `{key}` (an id, id prefix or hostname); see GET /api/daemons"),
        )),
        many => Err(AppError::new(
            StatusCode::CONFLICT,
            "ambiguous",
            format!(
                "`{key}` matches {} daemons; give more characters",
                many.len()
            ),
        )),
    }
}

/// `GET /api/daemons/{daemon}`.
#[utoipa::path(get, path = "/api/daemons/{daemon}", summary = "One daemon's health", tag = "daemons",
    params(("daemon" = String, Path, description = "the daemon: its id, a unique id prefix, or its hostname")),
    responses(
        (status = 200, description = "its health, in OCC's shape (an offline daemon is `status: offline`, not an error)", body = DaemonHealth),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such daemon", body = ErrorResponse),
        (status = 409, description = "the key matches several daemons", body = ErrorResponse),
    ))]
pub async fn get_daemon(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Json<DaemonHealth>, AppError> {
    let id = resolve_daemon(&state, &key).await?;
    let row = state
        .db
        .list_daemons()
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| AppError::new(StatusCode::NOT_FOUND, "not_found", "no such daemon"))?;
    let online = crate::replica::online_somewhere(&state, &id).await;
    let status: Option<DaemonStatus> = if online {
        state
            .hub
            .command(&id, Command::DaemonStatus(NoArgs {}), STATUS_WAIT)
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
    } else {
        None
    };
    let heartbeat = state.hub.heartbeat(&id).map(|h| Heartbeat {
        last_successful_at: iso(h.last_successful_ms),
        consecutive_failures: h.consecutive_failures,
        seq_num: h.seq_num,
    });
    let exec = status.as_ref().map(|s| &s.executions);
    let workspaces =
        crate::replica::feature_somewhere(&state, &id, common::link::FEATURE_WORKSPACES).await;
    Ok(Json(DaemonHealth {
        workspaces,
        id,
        hostname: row.hostname,
        status: if online {
            Health::Healthy
        } else {
            Health::Offline
        },
        online,
        version: status
            .as_ref()
            .map_or(row.version.clone(), |s| s.version.clone()),
        uptime: status
            .as_ref()
            .map(|s| now_ms().saturating_sub(s.started_ms) / 1000),
        heartbeat,
        workers: exec.map(|e| e.workers),
        running: exec.map(|e| e.running),
        queued: exec.map(|e| e.queued),
        queue_max: exec.map(|e| e.queue_max),
        last_seen: iso(row.last_seen_ms),
        first_seen: iso(row.first_seen_ms),
    }))
}
