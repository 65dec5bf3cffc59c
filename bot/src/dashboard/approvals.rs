//! `/approvals`: every pending permission request and question of every session, each
//! with its tool input (a diff for file edits) and its buttons, plus the latest decisions
//! and who made them, wherever they were made (CLI, REST, chat, dashboard). The same
//! cards appear inline on the session page. `POST /approvals/{id}` decides one: Allow,
//! Deny (with an optional message for the model), Allow for this session, or the answers
//! to every question of an `AskUserQuestion` (options, several for multi-select, or free
//! text). The first answer wins at the daemon; a late one is told who answered.

use std::collections::HashMap;

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use common::event::{Decision, Question, now_ms};
use common::ids::SessionId;
use common::ipc::{AnswerArgs, ApprovalKind, Command, DecideArgs};
use serde_json::{Value, json};

use super::Web;
use super::cookies::WebUser;
use super::csrf;
use super::errors::WebError;
use super::page::{Base, Done, Fields, Mode, audit, origin, pending_total, render};
use super::render::{Body, approval_row_view, short_id, time, tools};
use crate::db::{ApprovalRow, DbError};
use crate::http::COMMAND_TIMEOUT;

/// How many recent decisions the page lists.
const RECENT: u32 = 15;

/// A decided approval in the "recently decided" list.
pub struct DecidedItem {
    /// The session.
    pub session_id: String,
    /// Its name or short id.
    pub session_label: String,
    /// Tool name.
    pub tool: String,
    /// The command or file.
    pub summary: String,
    /// "allowed by cli:root".
    pub outcome: String,
    /// "just now".
    pub when: String,
}

/// `templates/approvals.html`.
#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    base: Base,
    csrf: String,
    pending: Vec<Body>,
    decided: Vec<DecidedItem>,
    pending_all: u64,
}

/// `templates/approvals_partial.html`.
#[derive(Template)]
#[template(path = "approvals_partial.html")]
struct ApprovalsPartial {
    csrf: String,
    pending: Vec<Body>,
    decided: Vec<DecidedItem>,
    pending_all: u64,
}

async fn lists(web: &Web) -> Result<(Vec<Body>, Vec<DecidedItem>), WebError> {
    let db = &web.app.db;
    let names: HashMap<SessionId, String> = db
        .list_sessions(None, None)
        .await?
        .into_iter()
        .map(|s| {
            let label = s
                .info
                .name
                .clone()
                .unwrap_or_else(|| short_id(&s.info.id.to_string()));
            (s.info.id, label)
        })
        .collect();
    let label = |id: &SessionId| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| short_id(&id.to_string()))
    };
    let pending = db
        .list_approvals(true, None)
        .await?
        .iter()
        .map(|row| approval_row_view(row, label(&row.session_id)))
        .collect();
    let now = now_ms();
    let decided = db
        .recent_decided(RECENT)
        .await?
        .iter()
        .map(|row| {
            let view = approval_row_view(row, label(&row.session_id));
            let outcome = match &view {
                Body::Approval(a) => a.outcome.clone(),
                Body::Question(q) => q.outcome.clone(),
                _ => None,
            };
            DecidedItem {
                session_id: row.session_id.to_string(),
                session_label: label(&row.session_id),
                tool: row.tool_name.clone(),
                summary: tools::summary(&row.tool_name, &row.input),
                outcome: outcome.unwrap_or_default(),
                when: time::ago(row.decided_ms.unwrap_or(row.created_ms), now),
            }
        })
        .collect();
    Ok((pending, decided))
}

/// `GET /approvals`.
pub async fn page(State(web): State<Web>, user: WebUser) -> Result<Response, WebError> {
    let (pending, decided) = lists(&web).await?;
    render(&ApprovalsPage {
        base: Base::new(&web, &user, "approvals", "Approvals").await?,
        csrf: user.csrf,
        pending_all: pending.len() as u64,
        pending,
        decided,
    })
}

/// `GET /partials/approvals`.
pub async fn partial(State(web): State<Web>, user: WebUser) -> Result<Response, WebError> {
    let (pending, decided) = lists(&web).await?;
    render(&ApprovalsPartial {
        csrf: user.csrf,
        pending_all: pending.len() as u64,
        pending,
        decided,
    })
}

/// `GET /partials/pending`: `{"pending": n}` for the title (and a login check for the
/// page script: 401 once the login is gone).
pub async fn pending_count(
    State(web): State<Web>,
    _user: WebUser,
) -> Result<Json<Value>, WebError> {
    Ok(Json(json!({"pending": pending_total(&web).await?})))
}

/// `POST /approvals/{id}`: `decision` (`allow`, `deny`, `allow_session`) with an optional
/// `message`, or for a question `q<i>` (chosen option labels) and `q<i>_text` (free
/// text) for every question `i`.
pub async fn decide(
    State(web): State<Web>,
    user: WebUser,
    mode: Mode,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Fields,
) -> Response {
    let back = form
        .get("back")
        .filter(|b| b.starts_with('/') && !b.starts_with("//"))
        .unwrap_or("/approvals")
        .to_owned();
    let result = async {
        csrf::check(&web, &headers, &user, form.get("csrf")).await?;
        let row = web.app.db.get_approval(&id).await.map_err(|e| match e {
            DbError::NotFound => WebError::NotFound(format!("There is no approval {id}.")),
            other => other.into(),
        })?;
        let cmd = command(&row, &user, &form)?;
        let data =
            crate::replica::first_wins::command(&web.app, &row.daemon_id, cmd, COMMAND_TIMEOUT)
                .await
                .map_err(crate::http::AppError::from)?;
        audit(&web, &user.name, "approval.decide", &id, data).await;
        Ok(Done::say("decided"))
    }
    .await;
    mode.reply(result, &back)
}

/// The daemon command a decision form asks for.
fn command(row: &ApprovalRow, user: &WebUser, form: &Fields) -> Result<Command, WebError> {
    let session = row.session_id.to_string();
    if row.kind == ApprovalKind::Question {
        let questions: Vec<Question> = row
            .input
            .get("questions")
            .cloned()
            .and_then(|q| serde_json::from_value(q).ok())
            .unwrap_or_default();
        let answers = answers(&questions, form)?;
        return Ok(Command::QuestionAnswer(AnswerArgs {
            session,
            approval: Some(row.id.0.clone()),
            answers,
            origin: Some(origin(user)),
        }));
    }
    let decision = match form.get("decision") {
        Some("allow") => Decision::Allow,
        Some("allow_session") => Decision::AllowSession,
        Some("deny") => Decision::Deny,
        _ => {
            return Err(WebError::BadRequest(
                "Choose Allow, Deny or Allow for this session.".to_owned(),
            ));
        }
    };
    let message = if decision == Decision::Deny {
        form.text("message")
    } else {
        None
    };
    Ok(Command::ApprovalDecide(DecideArgs {
        session,
        approval: Some(row.id.0.clone()),
        decision,
        message,
        origin: Some(origin(user)),
    }))
}

/// One answer per question: its free text if given, else its chosen options
/// (comma-joined for multi-select, as the daemon expects).
fn answers(questions: &[Question], form: &Fields) -> Result<Vec<String>, WebError> {
    let mut out = Vec::with_capacity(questions.len());
    for (i, q) in questions.iter().enumerate() {
        if let Some(text) = form.text(&format!("q{i}_text")) {
            out.push(text);
            continue;
        }
        let picked = form.all(&format!("q{i}"));
        if picked.is_empty() {
            return Err(WebError::BadRequest(format!(
                "Answer “{}” first: pick an option or write an answer.",
                q.question
            )));
        }
        out.push(picked.join(", "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use common::event::QuestionOption;

    use super::*;

    fn q(text: &str, multi: bool) -> Question {
        Question {
            question: text.into(),
            header: None,
            options: vec![
                QuestionOption {
                    label: "A".into(),
                    description: None,
                },
                QuestionOption {
                    label: "B".into(),
                    description: None,
                },
            ],
            multi_select: multi,
        }
    }

    #[test]
    fn answers_take_text_over_options_and_join_multi_select() {
        let qs = [q("one?", false), q("two?", true), q("three?", false)];
        let form = Fields(vec![
            ("q0".into(), "A".into()),
            ("q1".into(), "A".into()),
            ("q1".into(), "B".into()),
            ("q2".into(), "B".into()),
            ("q2_text".into(), "my own".into()),
        ]);
        assert_eq!(
            answers(&qs, &form).expect("answers"),
            ["A", "A, B", "my own"]
        );
        let missing = Fields(vec![("q0".into(), "A".into())]);
        assert!(answers(&qs, &missing).is_err());
    }
}
