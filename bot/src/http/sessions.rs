//! Sessions over REST: list (by daemon and state), start on a daemon, one session with its
//! pending approvals, prompts, and the control actions (interrupt, stop, kill, resume). Every
//! command goes to the owning daemon through the hub and is audited. Which daemon owns a
//! session comes from the hub's routes when it knows ([`daemon_of`]), so a prompt leaves
//! without a database round trip.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use common::event::{SessionState, now_ms};
use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, PromptArgs, SessionRef, StartArgs};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::access::{User, audit, origin};
use super::resolve::resolve_session;
use super::schema::{ErrorResponse, SessionCreated, SessionDetail, SessionList};
use super::{AppError, AppJson, AppQuery, COMMAND_TIMEOUT};
use crate::AppState;
use crate::db::DbError;

/// The daemon that owns session `id`, or 404: the hub's route, else the database (and the
/// answer becomes the route).
pub(super) async fn daemon_of(state: &AppState, id: &SessionId) -> Result<DaemonId, AppError> {
    if let Some(daemon) = state.hub.route(id) {
        return Ok(daemon);
    }
    let daemon = state
        .db
        .get_session(id)
        .await
        .map_err(|e| match e {
            DbError::NotFound => AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no session {id}"),
            ),
            other => other.into(),
        })?
        .daemon_id;
    state.hub.set_route(*id, &daemon);
    Ok(daemon)
}

/// `GET /api/daemons`.
#[utoipa::path(get, path = "/api/daemons", summary = "Every daemon the bot has seen", tag = "daemons",
    responses(
        (status = 200, description = "every daemon the bot has seen", body = super::schema::DaemonList),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ))]
pub async fn list_daemons(State(state): State<Arc<AppState>>) -> Result<Json<Value>, AppError> {
    let mut rows = state.db.list_daemons().await?;
    // On PostgreSQL another replica may hold the link.
    let elsewhere = crate::replica::linked_daemons(&state.db).await;
    for r in &mut rows {
        r.online = state.hub.is_online(&r.id) || elsewhere.contains(&r.id.0);
    }
    Ok(Json(json!({"daemons": rows})))
}

/// Query of `GET /api/sessions`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionsQuery {
    /// Only the sessions of this daemon (its id).
    daemon: Option<String>,
    /// Only sessions in this state.
    state: Option<common::event::SessionState>,
    /// `true`: only sessions neither stopped nor failed; `false`: only those (CCRM's filter).
    active: Option<bool>,
}

/// `GET /api/sessions`.
#[utoipa::path(get, path = "/api/sessions", summary = "Sessions, by daemon and state", tag = "sessions", params(SessionsQuery),
    responses(
        (status = 200, description = "the sessions, newest activity first", body = SessionList),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ))]
pub async fn list_sessions(
    State(state): State<Arc<AppState>>,
    AppQuery(q): AppQuery<SessionsQuery>,
) -> Result<Json<Value>, AppError> {
    let mut rows = state
        .db
        .list_sessions(q.daemon.as_deref(), q.state.map(|s| s.as_str()))
        .await?;
    if let Some(active) = q.active {
        rows.retain(|r| is_active(r.info.state) == active);
    }
    Ok(Json(json!({"sessions": rows})))
}

/// Active in CCRM's sense: neither stopped nor failed (`starting` and `attached` count).
fn is_active(s: SessionState) -> bool {
    !matches!(s, SessionState::Stopped | SessionState::Failed)
}

/// Body of `POST /api/sessions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cwd": "/tmp", "name": "scratch", "permission_mode": "default"}))]
pub struct NewSession {
    /// The daemon: its id, a unique id prefix or its hostname; optional when exactly one
    /// daemon is connected.
    #[schema(example = "d-5b7e0c2a9f")]
    daemon: Option<String>,
    /// The session's directory on the daemon's machine: an absolute path to an existing
    /// directory (give this or `workspace`).
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^/", example = "/home/me/project")]
    cwd: Option<std::path::PathBuf>,
    /// Start in this workspace of the daemon instead of `cwd`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "site")]
    workspace: Option<String>,
    /// The model, as Claude Code takes it.
    #[schema(example = "claude-sonnet-4-5")]
    model: Option<String>,
    /// Claude Code's permission mode (the daemon's default when left out).
    #[schema(value_type = Option<super::schema::PermissionMode>)]
    permission_mode: Option<String>,
    /// A unique name for people: 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S", example = "docs")]
    name: Option<String>,
    /// Allow every tool without asking.
    #[serde(default)]
    auto_allow: bool,
    /// Tools allowed without asking, besides the always-allowed ones.
    #[schema(example = json!(["Read", "Bash(git status:*)"]))]
    allowed_tools: Option<Vec<String>>,
    /// Extra arguments for the session's claude (flags ccrm manages are refused).
    claude_args: Option<Vec<String>>,
}

/// The daemon a new session goes to: the one named, else the only one online (shared by
/// REST and the dashboard), counting daemons linked to any replica.
pub async fn pick_daemon(state: &AppState, named: Option<String>) -> Result<DaemonId, AppError> {
    if let Some(d) = named {
        return Ok(DaemonId(d));
    }
    let online = crate::replica::online_anywhere(state).await;
    match online.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "daemon_offline",
            "no daemon is connected",
        )),
        _ => Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "several daemons are connected; name one in `daemon`",
        )),
    }
}

/// `POST /api/sessions`.
#[utoipa::path(post, path = "/api/sessions", summary = "Start a session on a daemon", tag = "sessions", request_body = NewSession,
    responses(
        (status = 201, description = "started; the session as its daemon reported it", body = SessionCreated),
        (status = 400, description = "a body that does not match the schema", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such daemon or workspace", body = ErrorResponse),
        (status = 409, description = "ambiguous daemon, or a session name in use", body = ErrorResponse),
        (status = 413, description = "body over `max_body_bytes`", body = ErrorResponse),
        (status = 422, description = "both or neither of `cwd` and `workspace`, several daemons and none named, or a value the daemon refuses (no such directory)", body = ErrorResponse),
        (status = 502, description = "the daemon could not start claude", body = ErrorResponse),
        (status = 503, description = "the daemon is offline (or none is connected)", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
    ))]
pub async fn create_session(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    AppJson(body): AppJson<NewSession>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    if body.cwd.is_some() == body.workspace.is_some() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "give either `cwd` or `workspace`",
        ));
    }
    let daemon = match body.daemon {
        Some(key) => super::daemons::resolve_daemon(&state, &key).await?,
        None => pick_daemon(&state, None).await?,
    };
    let args = StartArgs {
        cwd: body.cwd.unwrap_or_default(),
        workspace: body.workspace,
        model: body.model,
        permission_mode: body.permission_mode,
        name: body.name,
        auto_allow: body.auto_allow,
        allowed_tools: body.allowed_tools,
        origin: Some(origin(&user)),
        claude_args: body.claude_args,
    };
    let data = state
        .hub
        .command(&daemon, Command::SessionStart(args), COMMAND_TIMEOUT)
        .await?;
    if let Ok(info) = serde_json::from_value::<common::ipc::SessionInfo>(data.clone()) {
        state.db.upsert_session(&daemon, &info, now_ms()).await?;
        state.hub.set_route(info.id, &daemon);
        audit(
            &state,
            &user,
            "session.start",
            &info.id.to_string(),
            json!({"daemon": daemon}),
        )
        .await;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"daemon_id": daemon, "session": data})),
    ))
}

/// `GET /api/sessions/:id`.
#[utoipa::path(get, path = "/api/sessions/{id}", summary = "One session with its pending approvals", tag = "sessions",
    params(("id" = String, Path, description = "the session: its id, a unique id prefix (4+ characters) or its name")),
    responses(
        (status = 200, description = "the session with its pending approvals", body = SessionDetail),
        (status = 400, description = "not a session id", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such session", body = ErrorResponse),
    ))]
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let id = resolve_session(&state, &id).await?;
    let row = state.db.get_session(&id).await.map_err(|e| match e {
        DbError::NotFound => AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no session {id}"),
        ),
        other => other.into(),
    })?;
    let approvals = state.db.list_approvals(true, Some(&id)).await?;
    let online = crate::replica::online_somewhere(&state, &row.daemon_id).await;
    Ok(Json(
        json!({"session": row, "online": online, "approvals": approvals}),
    ))
}

/// JSON body of `POST /api/sessions/:id/prompt`: `{"text": ...}` (or `{"prompt": ...}` as
/// clients of the original CCRM send it) with optional images.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "summarise the README"}))]
#[allow(dead_code)] // documents what `prompt_body::PromptInput` reads
pub struct PromptBody {
    /// The prompt; not only whitespace.
    #[schema(pattern = "\\S")]
    #[serde(alias = "prompt")]
    pub text: String,
    /// Images the model sees with the prompt (at most 8, 12 MB of base64 together);
    /// larger than the model's limits they are scaled down. One that is not a JPEG, PNG,
    /// GIF or WebP image is 422.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub images: Vec<PromptImage>,
}

/// An image of a JSON prompt: the Messages API's base64 image source.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PromptImage {
    /// `image/jpeg`, `image/png`, `image/gif` or `image/webp`.
    #[schema(pattern = "^image/(jpeg|png|gif|webp)$")]
    pub media_type: String,
    /// The image bytes, standard base64.
    #[schema(content_encoding = "base64", min_length = 1)]
    pub data: String,
}

/// Multipart form of `POST /api/sessions/:id/prompt`: the text and files. Images among
/// the files go to the model as images; any other file is saved in the session's
/// `.ccrm/inbox/` and named in the prompt.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PromptForm {
    /// The prompt text (may be empty when files are given).
    #[schema(nullable = false)]
    pub text: Option<String>,
    /// Up to 10 files, each at most `chat_max_file_bytes`, each a file part (with a
    /// `filename`); `files` and `file` are also read.
    #[schema(rename = "files[]", value_type = Option<Vec<String>>, format = Binary, max_items = 10, nullable = false)]
    pub files: Option<Vec<Vec<u8>>>,
}

/// `POST /api/sessions/:id/prompt`.
#[utoipa::path(post, path = "/api/sessions/{id}/prompt", summary = "Queue a prompt", tag = "sessions",
    params(("id" = String, Path, description = "the session: its id, a unique id prefix (4+ characters) or its name")),
    request_body(description = "JSON (`text`, optional `images`) or a multipart form (`text`, `files[]`)", content(
        (PromptBody = "application/json"),
        (PromptForm = "multipart/form-data"),
    )),
    responses(
        (status = 202, description = "queued; it runs after the prompts ahead of it", body = common::ipc::PromptAccepted),
        (status = 400, description = "not a session id, or a body that does not match the schema", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such session", body = ErrorResponse),
        (status = 409, description = "the session cannot take prompts now (stopped or failed: resume it)", body = ErrorResponse),
        (status = 413, description = "body over `max_body_bytes` (besides images), text over 1 MB or a file over `chat_max_file_bytes`", body = ErrorResponse),
        (status = 422, description = "a prompt the daemon refuses, or an image that is not a JPEG, PNG, GIF or WebP image", body = ErrorResponse),
        (status = 502, description = "a file could not be saved in the session's inbox", body = ErrorResponse),
        (status = 503, description = "the session's daemon is offline", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
    ))]
pub async fn prompt(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    body: super::prompt_body::PromptInput,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let id = resolve_session(&state, &id).await?;
    let daemon = daemon_of(&state, &id).await?;
    // Images become image blocks and files are saved in the session's inbox first.
    let (text, images) = body.prepare(&state, &daemon, &id.to_string()).await?;
    let cmd = Command::PromptSend(PromptArgs {
        session: id.to_string(),
        text,
        follow: false,
        origin: Some(origin(&user)),
        images,
    });
    let data = state.hub.command(&daemon, cmd, COMMAND_TIMEOUT).await?;
    audit(&state, &user, "prompt.send", &id.to_string(), json!({})).await;
    Ok((StatusCode::ACCEPTED, Json(data)))
}

/// `POST /api/sessions/:id/{interrupt,stop,kill,resume}`.
pub async fn session_action(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let id = resolve_session(&state, &id).await?;
    let r = SessionRef {
        session: id.to_string(),
    };
    let cmd = match action.as_str() {
        "interrupt" => Command::SessionInterrupt(r),
        "stop" => Command::SessionStop(r),
        "kill" => Command::SessionKill(r),
        "resume" => Command::SessionResume(r),
        other => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action `{other}`; use interrupt, stop, kill or resume"),
            ));
        }
    };
    let daemon = daemon_of(&state, &id).await?;
    let data = state.hub.command(&daemon, cmd, COMMAND_TIMEOUT).await?;
    if let Ok(info) = serde_json::from_value::<common::ipc::SessionInfo>(data.clone()) {
        state.db.upsert_session(&daemon, &info, now_ms()).await?;
    }
    audit(
        &state,
        &user,
        &format!("session.{action}"),
        &id.to_string(),
        json!({}),
    )
    .await;
    Ok(Json(data))
}
