//! Approvals over REST: the pending permission requests and questions of every session, and
//! deciding one (allow, deny, allow for the session, or answers to a question). The first
//! answer wins in the database (`replica::first_wins`), on any replica; later ones get 409
//! naming who answered.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use common::event::Decision;
use common::ipc::{AnswerArgs, Command, DecideArgs};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::access::{User, audit, origin};
use super::resolve::resolve_session;
use super::schema::{ApprovalList, DecisionChoice, ErrorResponse};
use super::{AppError, AppJson, AppQuery, COMMAND_TIMEOUT};
use crate::AppState;
use crate::db::DbError;

/// Query of `GET /api/approvals`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApprovalsQuery {
    /// Only this session's approvals.
    #[param(value_type = Option<uuid::Uuid>)]
    session: Option<String>,
    /// Decided ones too, not only pending ones.
    #[serde(default)]
    all: bool,
}

/// `GET /api/approvals` (pending ones unless `all=true`).
#[utoipa::path(get, path = "/api/approvals", summary = "Pending approvals and questions (all with `all=true`)", tag = "approvals", params(ApprovalsQuery),
    responses(
        (status = 200, description = "approvals and questions, oldest first", body = ApprovalList),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "`session` names no session (id, prefix or name)", body = ErrorResponse),
        (status = 409, description = "`session` is a prefix or name of several sessions", body = ErrorResponse),
    ))]
pub async fn list_approvals(
    State(state): State<Arc<AppState>>,
    AppQuery(q): AppQuery<ApprovalsQuery>,
) -> Result<Json<ApprovalList>, AppError> {
    let session = match q.session.as_deref() {
        Some(key) => Some(resolve_session(&state, key).await?),
        None => None,
    };
    let rows = state.db.list_approvals(!q.all, session.as_ref()).await?;
    Ok(Json(ApprovalList { approvals: rows }))
}

/// Body of `POST /api/approvals/:id`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"decision": "deny", "message": "not in this directory"}))]
pub struct DecideBody {
    /// `allow`, `deny`, or `allow_session`; for questions, give `answers` instead.
    #[schema(value_type = Option<DecisionChoice>)]
    decision: Option<Decision>,
    /// For the model, with a `deny`.
    message: Option<String>,
    /// With `allow`: allow this tool for the rest of the session (= `allow_session`).
    #[serde(default)]
    remember: bool,
    /// For a question: one answer per question, in order (an option's label, or several
    /// labels comma-separated for a multi-select question).
    #[schema(example = json!(["Blue"]))]
    answers: Option<Vec<String>>,
}

/// `POST /api/approvals/:id`: the first answer wins; later ones get 409 naming who answered.
#[utoipa::path(post, path = "/api/approvals/{id}", summary = "Answer an approval or question; the first answer wins", tag = "approvals",
    params(("id" = String, Path, description = "the approval id")),
    request_body = DecideBody,
    responses(
        (status = 200, description = "decided", body = common::ipc::DecisionInfo),
        (status = 400, description = "a body that does not match the schema", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such approval", body = ErrorResponse),
        (status = 409, description = "already decided (the message names who answered), or the session is gone", body = ErrorResponse),
        (status = 413, description = "body over `max_body_bytes`", body = ErrorResponse),
        (status = 422, description = "neither `decision` nor `answers`, answers that do not fit the question, or a decision a question cannot take", body = ErrorResponse),
        (status = 503, description = "the session's daemon is offline", body = ErrorResponse),
        (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
    ))]
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
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "give `decision` (allow, deny, allow_session) or `answers`",
            ));
        }
    };
    let data =
        crate::replica::first_wins::command(&state, &row.daemon_id, cmd, COMMAND_TIMEOUT).await?;
    audit(&state, &user, "approval.decide", &id, data.clone()).await;
    Ok(Json(data))
}
