//! Approvals over REST: the pending permission requests and questions of every session, and
//! deciding one (allow, deny, allow for the session, or answers to a question). The first
//! answer wins at the daemon; later ones get 409 naming who answered.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use common::event::Decision;
use common::ipc::{AnswerArgs, Command, DecideArgs};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{User, audit, origin};
use super::resolve::resolve_session;
use super::{AppError, AppJson, AppQuery, COMMAND_TIMEOUT};
use crate::AppState;
use crate::db::DbError;

/// Query of `GET /api/approvals`.
#[derive(Deserialize)]
pub struct ApprovalsQuery {
    session: Option<String>,
    #[serde(default)]
    all: bool,
}

/// `GET /api/approvals` (pending ones unless `all=true`).
pub async fn list_approvals(
    State(state): State<Arc<AppState>>,
    AppQuery(q): AppQuery<ApprovalsQuery>,
) -> Result<Json<Value>, AppError> {
    let session = match q.session.as_deref() {
        Some(key) => Some(resolve_session(&state, key).await?),
        None => None,
    };
    let rows = state.db.list_approvals(!q.all, session.as_ref()).await?;
    Ok(Json(json!({"approvals": rows})))
}

/// Body of `POST /api/approvals/:id`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// `allow`, `deny`, or `allow_session`; for questions, give `answers` instead.
    decision: Option<Decision>,
    message: Option<String>,
    #[serde(default)]
    remember: bool,
    answers: Option<Vec<String>>,
}

/// `POST /api/approvals/:id`: the first answer wins; later ones get 409 naming who answered.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    AppJson(body): AppJson<DecideBody>,
) -> Result<Json<Value>, AppError> {
    let row = state.db.get_approval(&id).await.map_err(|e| match e {
        DbError::NotFound => AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no approval {id}"),
        ),
        other => other.into(),
    })?;
    let session = row.session_id.to_string();
    let cmd = match (body.answers, body.decision) {
        (Some(answers), _) => Command::QuestionAnswer(AnswerArgs {
            session,
            approval: Some(id.clone()),
            answers,
            origin: Some(origin(&user)),
        }),
        (None, Some(mut decision)) => {
            if body.remember && decision == Decision::Allow {
                decision = Decision::AllowSession;
            }
            Command::ApprovalDecide(DecideArgs {
                session,
                approval: Some(id.clone()),
                decision,
                message: body.message,
                origin: Some(origin(&user)),
            })
        }
        (None, None) => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "give `decision` (allow, deny, allow_session) or `answers`",
            ));
        }
    };
    let data = state
        .hub
        .command(&row.daemon_id, cmd, COMMAND_TIMEOUT)
        .await?;
    audit(&state, &user, "approval.decide", &id, data.clone()).await;
    Ok(Json(data))
}
