//! Workspaces over REST, with OCC's field names and replies:
//! `POST /api/daemons/{daemon}/workspaces` (a `multipart/form-data` upload: `workspaceId`,
//! `name`, `description`, `processPolicy`, `zip`, in any order), `GET` of the same path,
//! and `DELETE .../workspaces/{id}`.
//!
//! The upload route is exempt from `max_body_bytes`; its own cap,
//! `workspace_max_upload_bytes`, is checked against `Content-Length` and again on every
//! chunk while the zip streams to the daemon ([`crate::upload`]), so the bot never holds
//! the file. Because fields may come after the file, the zip is uploaded first (the daemon
//! stages it) and the form is checked at the end, before `workspace.create` names the
//! staged upload; settings that arrive before the file are checked at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::{Extension, Json};
use common::ids::DaemonId;
use common::ipc::{Command, NoArgs};
use common::link::FEATURE_WORKSPACES;
use common::workspace::{
    UploadReceived, WorkspaceCreateArgs, WorkspaceCreated, WorkspaceInfo, WorkspacePolicy,
    WorkspaceRef, valid_id,
};
use serde_json::json;

use super::access::{User, audit};
use super::daemons::{iso, resolve_daemon};
use super::error::occ_hub_error;
use super::schema::{
    ErrorResponse, Success, Workspace, WorkspaceDeleted, WorkspaceForm, WorkspaceList,
    WorkspaceUploaded,
};
use super::{AppError, daemon_error};
use crate::AppState;
use crate::hub::HubError;
use crate::upload::{BodyUpload, UploadError};

/// How long unpacking may take at the daemon.
const CREATE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest text field of the form.
const MAX_FIELD: usize = 16 * 1024;
/// Form overhead allowed over the zip cap in `Content-Length`.
const FORM_SLACK: u64 = 1024 * 1024;

fn bad(code: &'static str, msg: impl Into<String>) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn offline(d: &DaemonId) -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "DAEMON_OFFLINE",
        format!("daemon {d} is offline; try again once it reconnects"),
    )
}

fn too_large(cap: u64) -> AppError {
    AppError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "ZIP_TOO_LARGE",
        format!("the zip is larger than {cap} bytes (workspace_max_upload_bytes)"),
    )
}

fn hub_error(d: &DaemonId, e: HubError) -> AppError {
    occ_hub_error(e, || offline(d))
}

fn upload_error(d: &DaemonId, e: UploadError) -> AppError {
    match e {
        UploadError::Hub(h) => hub_error(d, h),
        UploadError::Daemon(body) => daemon_error(body),
        UploadError::Stalled(_) => AppError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "daemon_timeout",
            format!("daemon {d} stopped taking the upload"),
        ),
    }
}

fn form_error(e: MultipartError) -> AppError {
    bad(
        "BAD_REQUEST",
        format!("bad multipart form: {}", e.body_text()),
    )
}

/// The daemon of a workspace route: it must be online and speak workspaces.
async fn workspace_daemon(state: &AppState, key: &str) -> Result<DaemonId, AppError> {
    let d = resolve_daemon(state, key).await?;
    if !crate::replica::online_somewhere(state, &d).await {
        return Err(offline(&d));
    }
    if !crate::replica::feature_somewhere(state, &d, FEATURE_WORKSPACES).await {
        return Err(AppError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported",
            format!("daemon {d} is too old for workspaces; upgrade its ccrmd"),
        ));
    }
    Ok(d)
}

/// A text field, capped at [`MAX_FIELD`] bytes.
async fn text(mut field: Field<'_>) -> Result<String, AppError> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_FIELD {
            return Err(bad(
                "BAD_REQUEST",
                format!("field `{name}` is longer than {MAX_FIELD} bytes"),
            ));
        }
    }
    String::from_utf8(bytes).map_err(|_| bad("BAD_REQUEST", format!("field `{name}` is not UTF-8")))
}

fn check_workspace_id(id: &str) -> Result<(), AppError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(bad(
            "BAD_WORKSPACE_ID",
            format!(
                "workspaceId `{}` must be 1 to 64 letters, digits, `-` or `_`",
                id.escape_debug()
            ),
        ))
    }
}

fn policy(v: &str) -> Result<WorkspacePolicy, AppError> {
    v.trim()
        .parse()
        .map_err(|e: String| bad("BAD_REQUEST", format!("processPolicy: {e}")))
}

/// The form as read so far.
#[derive(Default)]
struct Form {
    workspace_id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    policy: Option<WorkspacePolicy>,
    upload: Option<UploadReceived>,
}

/// `POST /api/daemons/{daemon}/workspaces`.
#[utoipa::path(post, path = "/api/daemons/{daemon}/workspaces", summary = "Upload a workspace (multipart zip)", operation_id = "upload_workspace", tag = "workspaces",
    params(("daemon" = String, Path, description = "the daemon: its id, a unique id prefix, or its hostname")),
    request_body(content = WorkspaceForm, content_type = "multipart/form-data", description = "fields in any order; exempt from `max_body_bytes`, capped by `workspace_max_upload_bytes` while it streams"),
    responses(
        (status = 200, description = "created (or kept, with `reuse`)", body = WorkspaceUploaded),
        (status = 400, description = "a form that does not match the schema (`BAD_REQUEST`, `BAD_WORKSPACE_ID`)", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such daemon (`not_found`) or workspace (`WORKSPACE_NOT_FOUND`)", body = ErrorResponse),
        (status = 409, description = "the daemon key matches several daemons", body = ErrorResponse),
        (status = 501, description = "the daemon is too old for workspaces", body = ErrorResponse),
        (status = 503, description = "the daemon is offline (`DAEMON_OFFLINE`)", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
        (status = 413, description = "over `workspace_max_upload_bytes` (`ZIP_TOO_LARGE`)", body = ErrorResponse),
        (status = 422, description = "a hostile or broken archive (`ZIP_PATH_TRAVERSAL`, `ZIP_SYMLINK`, `ZIP_CORRUPT`, ...)", body = ErrorResponse),
    ))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(key): Path<String>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<WorkspaceUploaded>, AppError> {
    let cap = state.cfg.workspace_max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap.saturating_add(FORM_SLACK)) {
        return Err(too_large(cap));
    }
    let mut multipart = multipart.map_err(|e| {
        bad(
            "BAD_REQUEST",
            format!("expected a multipart/form-data body: {}", e.body_text()),
        )
    })?;
    let daemon = workspace_daemon(&state, &key).await?;
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(form_error)? {
        match field.name().unwrap_or_default() {
            "workspaceId" => {
                let id = text(field).await?.trim().to_owned();
                check_workspace_id(&id)?;
                form.workspace_id = Some(id);
            }
            "name" => form.name = Some(text(field).await?),
            "description" => form.description = Some(text(field).await?),
            "processPolicy" => form.policy = Some(policy(&text(field).await?)?),
            "zip" => {
                if form.upload.is_some() {
                    return Err(bad("BAD_REQUEST", "only one `zip` field is allowed"));
                }
                match stream_zip(&state, &daemon, field, cap).await? {
                    Some(up) => form.upload = Some(up),
                    None => {
                        drain(&mut multipart, cap).await;
                        return Err(too_large(cap));
                    }
                }
            }
            other => {
                // A misspelt field would otherwise be dropped without a word (an upload
                // started already is cancelled when `form` is dropped).
                return Err(bad(
                    "BAD_REQUEST",
                    format!(
                        "unknown form field `{other}`; use `workspaceId`, `name`, \
                         `description`, `processPolicy` and `zip`"
                    ),
                ));
            }
        }
    }
    let workspace_id = form
        .workspace_id
        .ok_or_else(|| bad("BAD_REQUEST", "the form has no `workspaceId` field"))?;
    let name = form
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad("BAD_REQUEST", "the form has no `name` field"))?;
    let policy = form.policy.ok_or_else(|| {
        bad(
            "BAD_REQUEST",
            "the form has no `processPolicy` field (`overwrite` or `reuse`)",
        )
    })?;
    let upload = form
        .upload
        .ok_or_else(|| bad("BAD_REQUEST", "the form has no `zip` file field"))?;
    let args = WorkspaceCreateArgs {
        workspace_id: workspace_id.clone(),
        name,
        description: form.description,
        policy,
        zip_path: None,
        upload_id: Some(upload.upload_id),
    };
    let data = state
        .hub
        .command(&daemon, Command::WorkspaceCreate(args), CREATE_TIMEOUT)
        .await
        .map_err(|e| hub_error(&daemon, e))?;
    let created: WorkspaceCreated = serde_json::from_value(data).map_err(AppError::internal)?;
    audit(
        &state,
        &user,
        "workspace.create",
        &workspace_id,
        json!({"daemon": daemon, "reused": created.reused, "bytes": upload.size}),
    )
    .await;
    Ok(Json(WorkspaceUploaded {
        status: Success::Success,
        workspace_id,
        path: created.workspace.path.to_string_lossy().into_owned(),
        reused: created.reused,
        workspace: workspace_json(&created.workspace),
    }))
}

/// Streams the `zip` field to the daemon; `None` as soon as it passes `cap` bytes (the
/// daemon is told to drop what it has).
async fn stream_zip(
    state: &AppState,
    daemon: &DaemonId,
    mut field: Field<'_>,
    cap: u64,
) -> Result<Option<UploadReceived>, AppError> {
    let mut up = BodyUpload::start(&state.hub, daemon, Command::WorkspaceUpload(NoArgs {}))
        .await
        .map_err(|e| upload_error(daemon, e))?;
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        if up.len() + chunk.len() as u64 > cap {
            return Ok(None);
        }
        up.write(&chunk)
            .await
            .map_err(|e| upload_error(daemon, e))?;
    }
    if up.is_empty() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ZIP_CORRUPT",
            "the `zip` field is empty",
        ));
    }
    let data = up.finish().await.map_err(|e| upload_error(daemon, e))?;
    serde_json::from_value(data)
        .map(Some)
        .map_err(AppError::internal)
}

/// Reads and discards the rest of a refused form (at most another `cap` bytes, for 30 s),
/// so the client gets the 413 instead of a reset connection.
async fn drain(multipart: &mut Multipart, cap: u64) {
    let work = async {
        let mut seen: u64 = 0;
        while let Ok(Some(mut f)) = multipart.next_field().await {
            while let Ok(Some(c)) = f.chunk().await {
                seen += c.len() as u64;
                if seen > cap {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(30), work).await;
}

fn workspace_json(w: &WorkspaceInfo) -> Workspace {
    Workspace {
        id: w.id.clone(),
        name: w.name.clone(),
        description: w.description.clone(),
        path: w.path.to_string_lossy().into_owned(),
        size: w.size,
        files: w.files,
        created: iso(w.created_ms),
        sessions: w.sessions.clone(),
        executions: w.executions.clone(),
    }
}

/// `GET /api/daemons/{daemon}/workspaces`.
#[utoipa::path(get, path = "/api/daemons/{daemon}/workspaces", summary = "The daemon's workspaces", operation_id = "list_workspaces", tag = "workspaces",
    params(("daemon" = String, Path, description = "the daemon: its id, a unique id prefix, or its hostname")),
    responses(
        (status = 200, description = "the daemon's workspaces with size, files and users", body = WorkspaceList),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such daemon (`not_found`) or workspace (`WORKSPACE_NOT_FOUND`)", body = ErrorResponse),
        (status = 409, description = "the daemon key matches several daemons", body = ErrorResponse),
        (status = 501, description = "the daemon is too old for workspaces", body = ErrorResponse),
        (status = 503, description = "the daemon is offline (`DAEMON_OFFLINE`)", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Json<WorkspaceList>, AppError> {
    let daemon = workspace_daemon(&state, &key).await?;
    let data = state
        .hub
        .command(
            &daemon,
            Command::WorkspacesList(NoArgs {}),
            super::COMMAND_TIMEOUT,
        )
        .await
        .map_err(|e| hub_error(&daemon, e))?;
    let list: Vec<WorkspaceInfo> = serde_json::from_value(data).map_err(AppError::internal)?;
    Ok(Json(WorkspaceList {
        daemon,
        workspaces: list.iter().map(workspace_json).collect(),
    }))
}

/// `DELETE /api/daemons/{daemon}/workspaces/{id}`.
#[utoipa::path(delete, path = "/api/daemons/{daemon}/workspaces/{id}", summary = "Delete a workspace", operation_id = "delete_workspace", tag = "workspaces",
    params(("daemon" = String, Path, description = "the daemon: its id, a unique id prefix, or its hostname"), ("id" = String, Path, description = "the workspace id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "deleted", body = WorkspaceDeleted),
        (status = 400, description = "not a workspace id (`BAD_WORKSPACE_ID`)", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such daemon (`not_found`) or workspace (`WORKSPACE_NOT_FOUND`)", body = ErrorResponse),
        (status = 409, description = "the daemon key matches several daemons, or a session or execution uses the workspace (`WORKSPACE_IN_USE`)", body = ErrorResponse),
        (status = 501, description = "the daemon is too old for workspaces", body = ErrorResponse),
        (status = 503, description = "the daemon is offline (`DAEMON_OFFLINE`)", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
    ))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Json<WorkspaceDeleted>, AppError> {
    check_workspace_id(&id)?;
    let daemon = workspace_daemon(&state, &key).await?;
    let cmd = Command::WorkspaceRm(WorkspaceRef {
        workspace_id: id.clone(),
    });
    state
        .hub
        .command(&daemon, cmd, super::COMMAND_TIMEOUT)
        .await
        .map_err(|e| hub_error(&daemon, e))?;
    audit(
        &state,
        &user,
        "workspace.rm",
        &id,
        json!({"daemon": daemon}),
    )
    .await;
    Ok(Json(WorkspaceDeleted {
        status: Success::Success,
        workspace_id: id,
        deleted: true,
    }))
}
