//! One-shot executions over REST, as OCC clients expect them: `POST /api/execute` answers
//! with `text/event-stream` (`queued`, `output`, then `complete` or `error`, each with the
//! `executionId`; the id also in `X-Execution-Id`), `GET /api/executions/{id}` gives the
//! stored status and whole output, `GET /api/executions/{id}/stream` resumes a stream after
//! `Last-Event-ID`, and `POST /api/executions/{id}/cancel` stops one.
//!
//! Errors known before the run starts are plain JSON errors with OCC's codes (400
//! `BAD_REQUEST` for a body the OpenAPI document does not admit, 404 `WORKSPACE_NOT_FOUND`,
//! 503 `DAEMON_OFFLINE`, 429 `WORKERS_BUSY` with `Retry-After`) or ours (404 `not_found` for
//! an unknown daemon, 422 `unprocessable` for an admitted body that cannot run); errors
//! during the run are `error` events. The stream follows the daemon
//! through [`crate::executions::follow`], so a dropped link is resumed without losing or
//! repeating output; storage is the recorder's job, not the stream's, so a client that
//! goes away loses nothing.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use common::event::{Origin, Surface};
use common::ids::DaemonId;
use common::ipc::Command;
use common::link::FEATURE_WORKSPACES;
use common::workspace::{ExecArgs, ExecInfo, ExecItem, ExecRef, ExecUpdate, valid_id};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::AppError;
use super::access::{User, audit};
use super::daemons::{iso, resolve_daemon};
use super::error::occ_hub_error;
use super::schema::{
    ErrorResponse, ExecComplete, ExecFailed, ExecOutput, ExecQueued, ExecSummary, Execution,
};
use crate::AppState;
use crate::db::{DbError, ExecutionRow};
use crate::executions::{Lost, follow, last_item};
use crate::hub::HubError;

/// Default `timeoutSecs`.
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// How long a stream waits for a daemon that dropped its link before it gives up.
const STREAM_PATIENCE: Duration = Duration::from_secs(60);
/// `Retry-After` of a `WORKERS_BUSY`.
const RETRY_AFTER_SECS: u64 = 5;

fn bad(msg: impl Into<String>) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", msg)
}

fn offline(d: &DaemonId) -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "DAEMON_OFFLINE",
        format!("daemon {d} is offline"),
    )
}

fn hub_error(d: &DaemonId, e: HubError) -> AppError {
    occ_hub_error(e, || offline(d))
}

/// Body of `POST /api/execute` (OCC's field names).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"workspaceId": "site", "prompt": "list the files", "timeoutSecs": 120}))]
pub struct ExecuteBody {
    /// 1 to 64 letters, digits, `-` or `_`; a UUID when left out.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    execution_id: Option<String>,
    /// Run in this workspace (give this or `cwd`).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "site")]
    workspace_id: Option<String>,
    /// Run in this absolute directory instead of a workspace.
    #[schema(value_type = Option<String>, pattern = "^/")]
    cwd: Option<PathBuf>,
    /// The daemon: id, unique id prefix or hostname; optional when one daemon is connected.
    daemon: Option<String>,
    /// The prompt; not only whitespace.
    #[schema(pattern = "\\S")]
    prompt: String,
    /// Seconds before claude is killed (default 600, at most a day).
    #[schema(minimum = 1, maximum = 86400)]
    #[serde(default, deserialize_with = "whole_seconds")]
    timeout_secs: Option<u64>,
    /// The model.
    model: Option<String>,
    /// Tools allowed besides the read-only ones: names or rules such as `Bash(git status:*)`.
    #[serde(default)]
    allowed_tools: Vec<String>,
}

/// Longest `timeoutSecs`.
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// `timeoutSecs` as JSON Schema's `integer` has it: `600` and `600.0` are the same number.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(u) = n.as_u64() {
        return Ok(Some(u));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=MAX_TIMEOUT_SECS as f64).contains(&f) => {
            Ok(Some(f as u64))
        }
        _ => Err(serde::de::Error::custom(format!(
            "`timeoutSecs` must be a whole number of seconds from 1 to {MAX_TIMEOUT_SECS}, not {n}"
        ))),
    }
}

/// The daemon an execution goes to: the one named, else the only one online that runs
/// executions.
async fn pick(state: &AppState, named: Option<&str>) -> Result<DaemonId, AppError> {
    let d = match named {
        Some(key) => resolve_daemon(state, key).await?,
        None => {
            let mut online = Vec::new();
            for d in crate::replica::online_anywhere(state).await {
                if crate::replica::feature_somewhere(state, &d, FEATURE_WORKSPACES).await {
                    online.push(d);
                }
            }
            match online.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(AppError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "DAEMON_OFFLINE",
                        "no daemon that runs executions is connected",
                    ));
                }
                _ => {
                    return Err(AppError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unprocessable",
                        "several daemons are connected; name one in `daemon`",
                    ));
                }
            }
        }
    };
    if !crate::replica::online_somewhere(state, &d).await {
        return Err(offline(&d));
    }
    if !crate::replica::feature_somewhere(state, &d, FEATURE_WORKSPACES).await {
        return Err(AppError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported",
            format!("daemon {d} is too old for executions; upgrade its ccrmd"),
        ));
    }
    Ok(d)
}

/// `POST /api/execute`.
#[utoipa::path(post, path = "/api/execute", summary = "Run a prompt in a fresh claude, streamed as SSE", operation_id = "execute", tag = "executions",
    request_body = ExecuteBody,
    responses(
        (status = 200, description = "Server-Sent Events until the run ends: `queued` {position}, `output` {chunk}, then `complete` {exitCode, result} or `error` {code, message}; each with `executionId` and `timestamp`; the id also in `X-Execution-Id`", content_type = "text/event-stream", body = String,
            headers(("X-Execution-Id" = String, description = "the execution's id"))),
        (status = 400, description = "a body that does not match the schema (`BAD_REQUEST`)", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such daemon (`not_found`) or workspace (`WORKSPACE_NOT_FOUND`)", body = ErrorResponse),
        (status = 409, description = "the daemon key matches several daemons, or the `executionId` exists (`EXECUTION_EXISTS`)", body = ErrorResponse),
        (status = 413, description = "body over `max_body_bytes`", body = ErrorResponse),
        (status = 422, description = "both or neither of `workspaceId` and `cwd`, several daemons and none named, or a value the daemon refuses", body = ErrorResponse),
        (status = 429, description = "every worker busy and the queue full (`WORKERS_BUSY`)", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "seconds"))),
        (status = 501, description = "the daemon is too old for executions", body = ErrorResponse),
        (status = 503, description = "the daemon is offline (`DAEMON_OFFLINE`)", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
    ))]
pub async fn execute(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    body: Bytes,
) -> Result<Response, AppError> {
    let b: ExecuteBody =
        serde_json::from_slice(&body).map_err(|e| bad(format!("bad JSON body: {e}")))?;
    if b.workspace_id.is_some() == b.cwd.is_some() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "give exactly one of `workspaceId` and `cwd`",
        ));
    }
    if let Some(t) = b.timeout_secs
        && !(1..=MAX_TIMEOUT_SECS).contains(&t)
    {
        return Err(bad(format!(
            "`timeoutSecs` must be from 1 to {MAX_TIMEOUT_SECS}"
        )));
    }
    if b.prompt.trim().is_empty() {
        return Err(bad("`prompt` is empty"));
    }
    let id = match b.execution_id {
        Some(id) if valid_id(&id) => id,
        Some(id) => {
            return Err(bad(format!(
                "executionId `{}` must be 1 to 64 letters, digits, `-` or `_`",
                id.escape_debug()
            )));
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    if state.db.execution_exists(&id).await? {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "EXECUTION_EXISTS",
            format!("an execution `{id}` already exists; pick another executionId"),
        ));
    }
    let daemon = pick(&state, b.daemon.as_deref()).await?;
    let args = ExecArgs {
        execution_id: id.clone(),
        workspace_id: b.workspace_id,
        cwd: b.cwd,
        prompt: b.prompt.clone(),
        timeout_secs: b.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
        model: b.model,
        allowed_tools: b.allowed_tools,
        origin: Some(Origin::user(Surface::Rest, &user.0)),
    };
    let accepted = state
        .hub
        .command(&daemon, Command::ExecStart(args), super::COMMAND_TIMEOUT)
        .await
        .map_err(|e| hub_error(&daemon, e));
    let info: ExecInfo = match accepted {
        Ok(v) => serde_json::from_value(v).map_err(AppError::internal)?,
        Err(e) if e.code() == "WORKERS_BUSY" => {
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return Ok(resp);
        }
        Err(e) => return Err(e),
    };
    state
        .db
        .insert_execution(&daemon, &info, &b.prompt, &user.0)
        .await?;
    state
        .recorders
        .spawn(state.clone(), id.clone(), daemon.clone(), 0);
    audit(
        &state,
        &user,
        "exec.start",
        &id,
        json!({"daemon": daemon, "workspace": info.workspace_id}),
    )
    .await;
    Ok(stream_response(state, daemon, id, 0))
}

/// The SSE response that follows execution `id` after item `after`.
fn stream_response(state: Arc<AppState>, daemon: DaemonId, id: String, after: u64) -> Response {
    let header_id = HeaderValue::from_str(&id).ok();
    let events = super::sse::async_stream(move |tx| async move {
        let _guard = super::ClientGuard::new(&state);
        relay(&state, &daemon, &id, after, &tx).await;
    });
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    if let Some(v) = header_id {
        resp.headers_mut().insert("x-execution-id", v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Follows the daemon and turns items into OCC events until the last one.
async fn relay(
    state: &AppState,
    daemon: &DaemonId,
    id: &str,
    after: u64,
    tx: &mpsc::Sender<SseEvent>,
) {
    let (items_tx, mut items_rx) = mpsc::channel::<Vec<ExecItem>>(16);
    let forward = async {
        while let Some(batch) = items_rx.recv().await {
            for item in batch {
                if let Some(ev) = sse_event(id, &item)
                    && tx.send(ev).await.is_err()
                {
                    return;
                }
            }
        }
    };
    let (followed, ()) = tokio::join!(
        async move { follow(state, daemon, id, after, STREAM_PATIENCE, &items_tx).await },
        forward
    );
    let message = match followed {
        Ok(_) | Err(Lost::Closed) => return,
        Err(Lost::NotFound(m)) => m,
        Err(Lost::Offline) => format!(
            "lost daemon {daemon}; the execution goes on there: GET /api/executions/{id} for its result"
        ),
    };
    let data = ExecFailed {
        code: common::workspace::exec_code::DAEMON_OFFLINE.to_owned(),
        message,
        timestamp: iso(common::event::now_ms()),
        execution_id: id.to_owned(),
    };
    let _ = tx
        .send(SseEvent::default().event("error").data(to_json(&data)))
        .await;
}

/// `data` as JSON text (our own types, which always serialize).
fn to_json(data: &impl serde::Serialize) -> String {
    serde_json::to_string(data).unwrap_or_default()
}

/// One item as an OCC event (`started` has none).
fn sse_event(id: &str, item: &ExecItem) -> Option<SseEvent> {
    let timestamp = iso(item.ts_ms);
    let execution_id = id.to_owned();
    let (name, data) = match &item.update {
        ExecUpdate::Queued { position } => (
            "queued",
            to_json(&ExecQueued {
                position: *position,
                timestamp,
                execution_id,
            }),
        ),
        ExecUpdate::Started => return None,
        ExecUpdate::Output { chunk } => (
            "output",
            to_json(&ExecOutput {
                chunk: chunk.clone(),
                timestamp,
                execution_id,
            }),
        ),
        ExecUpdate::Complete { exit_code, result } => (
            "complete",
            to_json(&ExecComplete {
                exit_code: *exit_code,
                result: result.into(),
                timestamp,
                execution_id,
            }),
        ),
        ExecUpdate::Error { code, message } => (
            "error",
            to_json(&ExecFailed {
                code: code.clone(),
                message: message.clone(),
                timestamp,
                execution_id,
            }),
        ),
    };
    Some(
        SseEvent::default()
            .event(name)
            .id(item.n.to_string())
            .data(data),
    )
}

async fn row(state: &AppState, id: &str) -> Result<ExecutionRow, AppError> {
    // `fetch_one` on a missing row is sqlx's `RowNotFound`, not our `NotFound`.
    state.db.get_execution(id).await.map_err(|e| match e {
        DbError::NotFound | DbError::Sqlx(sqlx::Error::RowNotFound) => AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no execution `{id}`"),
        ),
        other => other.into(),
    })
}

/// An execution in the shape of `GET /api/executions/{id}`.
fn execution_json(r: &ExecutionRow) -> Execution {
    Execution {
        execution_id: r.id.clone(),
        workspace_id: r.workspace_id.clone(),
        daemon: r.daemon_id.clone(),
        cwd: r.cwd.clone(),
        prompt: r.prompt.clone(),
        status: r.status,
        exit_code: r.exit_code,
        output: r.output.clone(),
        error: r.error.clone(),
        result: r.result.as_ref().map(ExecSummary::from),
        created: iso(r.created_ms),
        started: r.started_ms.map(iso),
        finished: r.finished_ms.map(iso),
    }
}

/// `GET /api/executions/{id}`: the stored execution; one still running is refreshed from
/// its daemon first, so the answer is never behind what a stream already showed.
#[utoipa::path(get, path = "/api/executions/{id}", summary = "An execution's status and whole output", operation_id = "get_execution", tag = "executions",
    params(("id" = String, Path, description = "the execution id", example = "build-42")),
    responses(
        (status = 200, description = "the execution: status, exit code, whole output, result", body = Execution),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such execution", body = ErrorResponse),
    ))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Execution>, AppError> {
    let mut r = row(&state, &id).await?;
    if !r.status.is_final() && crate::replica::online_somewhere(&state, &r.daemon_id).await {
        let cmd = Command::ExecGet(ExecRef {
            execution_id: id.clone(),
        });
        if let Ok(v) = state
            .hub
            .command(&r.daemon_id, cmd, Duration::from_secs(10))
            .await
            && let Ok(info) = serde_json::from_value::<ExecInfo>(v)
            && info.items >= r.items
        {
            state.db.replace_execution(&info).await?;
            r = row(&state, &id).await?;
        }
    }
    Ok(Json(execution_json(&r)))
}

/// `GET /api/executions/{id}/stream`: the events after `Last-Event-ID` (all without it),
/// live until the last.
#[utoipa::path(get, path = "/api/executions/{id}/stream", summary = "An execution's events again, live until the last", operation_id = "stream_execution", tag = "executions",
    params(("id" = String, Path, description = "the execution id", example = "build-42"), ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "resume after this item")),
    responses(
        (status = 200, description = "the execution's events after `Last-Event-ID`, live until the last (as from `POST /api/execute`)", content_type = "text/event-stream", body = String),
        (status = 400, description = "a `Last-Event-ID` that is not a whole number from 0 (`BAD_REQUEST`)", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such execution", body = ErrorResponse),
    ))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let r = row(&state, &id).await?;
    let after = super::sse::last_event_id(&headers)
        .map_err(bad)?
        .unwrap_or(0);
    if r.status.is_final() && !crate::replica::online_somewhere(&state, &r.daemon_id).await {
        // Only the end is known here; the daemon has the items.
        let info = ExecInfo {
            execution_id: r.id.clone(),
            workspace_id: r.workspace_id.clone(),
            cwd: r.cwd.clone().into(),
            status: r.status,
            position: None,
            exit_code: r.exit_code,
            output: String::new(),
            error: r.error.clone(),
            result: r.result.clone(),
            items: r.items,
            created_ms: r.created_ms,
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
        };
        let events: Vec<Result<SseEvent, Infallible>> = last_item(&info)
            .filter(|i| i.n > after)
            .and_then(|i| sse_event(&id, &i))
            .into_iter()
            .map(Ok)
            .collect();
        return Ok(Sse::new(futures::stream::iter(events)).into_response());
    }
    Ok(stream_response(state, r.daemon_id, id, after))
}

/// `POST /api/executions/{id}/cancel`.
#[utoipa::path(post, path = "/api/executions/{id}/cancel", summary = "Cancel a queued or running execution", operation_id = "cancel_execution", tag = "executions",
    params(("id" = String, Path, description = "the execution id", example = "build-42")),
    responses(
        (status = 200, description = "cancelled (its child and tools are killed), or already finished", body = Execution),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such execution", body = ErrorResponse),
        (status = 503, description = "its daemon is offline (`DAEMON_OFFLINE`)", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
    ))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<Json<Execution>, AppError> {
    let r = row(&state, &id).await?;
    if !r.status.is_final() {
        let cmd = Command::ExecCancel(ExecRef {
            execution_id: id.clone(),
        });
        let v = state
            .hub
            .command(&r.daemon_id, cmd, super::COMMAND_TIMEOUT)
            .await
            .map_err(|e| hub_error(&r.daemon_id, e))?;
        if let Ok(info) = serde_json::from_value::<ExecInfo>(v)
            && info.items >= r.items
        {
            state.db.replace_execution(&info).await?;
        }
        audit(
            &state,
            &user,
            "exec.cancel",
            &id,
            json!({"daemon": r.daemon_id}),
        )
        .await;
        // A running one ends when its child is gone; wait a little for that, bounded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline && !row(&state, &id).await?.status.is_final() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(Json(execution_json(&row(&state, &id).await?)))
}
