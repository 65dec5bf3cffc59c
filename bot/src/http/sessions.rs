//! Sessions over REST: list (by daemon and state), start on a daemon, one session with its
//! pending approvals, prompts, and the control actions (interrupt, stop, kill, resume). Every
//! command goes to the owning daemon through the hub and is audited. Which daemon owns a
//! session comes from the hub's routes when it knows ([`daemon_of`]), so a prompt leaves
//! without a database round trip.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use common::event::now_ms;
use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, PromptArgs, SessionRef, StartArgs};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{User, audit, origin};
use super::{AppError, AppJson, AppQuery, COMMAND_TIMEOUT};
use crate::AppState;
use crate::db::DbError;

/// Parses a session id from a path.
pub(super) fn parse_session(id: &str) -> Result<SessionId, AppError> {
    id.parse().map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{id}` is not a session id (a UUID)"),
        )
    })
}

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
#[derive(Deserialize)]
pub struct SessionsQuery {
    daemon: Option<String>,
    state: Option<String>,
}

/// `GET /api/sessions`.
pub async fn list_sessions(
    State(state): State<Arc<AppState>>,
    AppQuery(q): AppQuery<SessionsQuery>,
) -> Result<Json<Value>, AppError> {
    let rows = state
        .db
        .list_sessions(q.daemon.as_deref(), q.state.as_deref())
        .await?;
    Ok(Json(json!({"sessions": rows})))
}

/// Body of `POST /api/sessions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    daemon: Option<String>,
    #[serde(default)]
    cwd: Option<std::path::PathBuf>,
    /// Start in this workspace of the daemon instead of `cwd`.
    #[serde(default)]
    workspace: Option<String>,
    model: Option<String>,
    permission_mode: Option<String>,
    name: Option<String>,
    #[serde(default)]
    auto_allow: bool,
    allowed_tools: Option<Vec<String>>,
}

/// The daemon a new session goes to: the one named, else the only one online (shared by
/// REST and the chat commands).
pub fn pick_daemon(state: &AppState, named: Option<String>) -> Result<DaemonId, AppError> {
    if let Some(d) = named {
        return Ok(DaemonId(d));
    }
    let online = state.hub.online();
    match online.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "daemon_offline",
            "no daemon is connected",
        )),
        _ => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "several daemons are connected; name one in `daemon`",
        )),
    }
}

/// `POST /api/sessions`.
pub async fn create_session(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    AppJson(body): AppJson<NewSession>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    if body.cwd.is_some() == body.workspace.is_some() {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "give either `cwd` or `workspace`",
        ));
    }
    let daemon = pick_daemon(&state, body.daemon)?;
    let args = StartArgs {
        cwd: body.cwd.unwrap_or_default(),
        workspace: body.workspace,
        model: body.model,
        permission_mode: body.permission_mode,
        name: body.name,
        auto_allow: body.auto_allow,
        allowed_tools: body.allowed_tools,
        origin: Some(origin(&user)),
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
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let id = parse_session(&id)?;
    let row = state.db.get_session(&id).await.map_err(|e| match e {
        DbError::NotFound => AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no session {id}"),
        ),
        other => other.into(),
    })?;
    let approvals = state.db.list_approvals(true, Some(&id)).await?;
    Ok(Json(
        json!({"session": row, "online": state.hub.is_online(&row.daemon_id), "approvals": approvals}),
    ))
}

/// Body of `POST /api/sessions/:id/prompt`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptBody {
    text: String,
}

/// `POST /api/sessions/:id/prompt`.
pub async fn prompt(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    AppJson(body): AppJson<PromptBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let id = parse_session(&id)?;
    let daemon = daemon_of(&state, &id).await?;
    let cmd = Command::PromptSend(PromptArgs {
        session: id.to_string(),
        text: body.text,
        follow: false,
        origin: Some(origin(&user)),
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
    let id = parse_session(&id)?;
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
