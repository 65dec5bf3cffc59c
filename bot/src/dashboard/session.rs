//! `/sessions/{id}`: one session's conversation. The page holds the newest
//! [`PAGE`] events; older ones come from `/sessions/{id}/events?before=<row id>` (the same
//! keyset paging as the REST `/events`, read backwards) as the reader scrolls up, so a
//! session with 10,000 events opens as fast as a new one. New events arrive over
//! [`super::live`]. The head (state, queue, cost, the `ccrm attach` command, the control
//! buttons) is `templates/session_head.html`, fetched again from `/sessions/{id}/head`
//! when the state changes. Prompts and control actions go to the owning daemon through
//! the hub, like REST, with origin `dashboard:<user>`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use common::event::{SessionState, now_ms};
use common::ids::SessionId;
use common::ipc::{Command, PromptAccepted, PromptArgs, SessionRef};
use serde::Deserialize;
use serde_json::json;

use super::Web;
use super::cookies::WebUser;
use super::csrf;
use super::errors::WebError;
use super::page::{Base, Done, Fields, Mode, audit, origin, render};
use super::render::{EventView, Lookups, short_id, state_label, time, views};
use crate::db::{DbError, SessionRow};
use crate::http::COMMAND_TIMEOUT;

/// Events per history page.
pub const PAGE: u32 = 100;

/// The head of the session page.
pub struct Head {
    /// Full id.
    pub id: String,
    /// Name, else short id.
    pub label: String,
    /// Short id.
    pub short: String,
    /// Daemon hostname (or id).
    pub daemon: String,
    /// Whether the daemon's link is up.
    pub online: bool,
    /// Working directory.
    pub cwd: String,
    /// Model, if one was asked for.
    pub model: Option<String>,
    /// Permission mode.
    pub mode: String,
    /// State for CSS.
    pub state: &'static str,
    /// State for people.
    pub state_label: &'static str,
    /// Why it stopped or failed.
    pub reason: Option<String>,
    /// Whether a claude runs (or the terminal has it).
    pub live: bool,
    /// Prompts waiting.
    pub queued: u64,
    /// Approvals waiting in this session.
    pub pending: u64,
    /// Approvals waiting everywhere (the title).
    pub pending_all: u64,
    /// `$0.0123`.
    pub cost: Option<String>,
    /// "just now".
    pub activity: String,
}

/// `templates/session.html`.
#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    base: Base,
    head: Head,
    csrf: String,
    events: Vec<EventView>,
    first: i64,
    last: i64,
    more: bool,
}

/// `templates/session_head.html`.
#[derive(Template)]
#[template(path = "session_head.html")]
struct HeadPartial {
    head: Head,
    csrf: String,
}

/// `templates/events_partial.html`: a page of older events.
#[derive(Template)]
#[template(path = "events_partial.html")]
struct EventsPartial {
    events: Vec<EventView>,
    csrf: String,
    first: i64,
    more: bool,
}

/// Parses a session id from a path.
pub fn parse_id(id: &str) -> Result<SessionId, WebError> {
    id.parse()
        .map_err(|_| WebError::NotFound(format!("`{id}` is not a session id.")))
}

/// The stored session, or a 404 page.
pub async fn session_row(web: &Web, id: &SessionId) -> Result<SessionRow, WebError> {
    web.app.db.get_session(id).await.map_err(|e| match e {
        DbError::NotFound => WebError::NotFound(format!("There is no session {id}.")),
        other => other.into(),
    })
}

async fn head_of(web: &Web, row: &SessionRow) -> Result<Head, WebError> {
    let db = &web.app.db;
    let info = &row.info;
    let act = db.session_activity(&info.id).await?;
    let pending = db.pending_counts().await?;
    let daemon = db
        .list_daemons()
        .await?
        .into_iter()
        .find(|d| d.id == row.daemon_id)
        .map_or_else(|| row.daemon_id.0.clone(), |d| d.hostname);
    let id = info.id.to_string();
    let live = info.state.is_live();
    Ok(Head {
        label: info.name.clone().unwrap_or_else(|| short_id(&id)),
        short: short_id(&id),
        daemon,
        online: crate::replica::online_somewhere(&web.app, &row.daemon_id).await,
        cwd: info.cwd.display().to_string(),
        model: info.model.clone(),
        mode: info.permission_mode.clone(),
        state: info.state.as_str(),
        state_label: state_label(info.state),
        reason: info.reason.clone(),
        live,
        queued: if live && info.state != SessionState::Idle {
            act.queued
        } else {
            0
        },
        pending: pending.get(&info.id).copied().unwrap_or(0),
        pending_all: pending.values().sum(),
        cost: act.cost_usd.or(info.cost_usd).map(time::money),
        activity: time::ago(act.last_event_ms.max(info.last_event_ms), now_ms()),
        id,
    })
}

/// `GET /sessions/{id}`.
pub async fn page(
    State(web): State<Web>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = parse_id(&id)?;
    let row = session_row(&web, &id).await?;
    let head = head_of(&web, &row).await?;
    let stored = web.app.db.events_before(&id, i64::MAX, PAGE).await?;
    let lookups = Lookups::load(&web.app.db, &stored).await?;
    let first = stored.first().map_or(0, |e| e.id);
    let last = stored.last().map_or(0, |e| e.id);
    let more = stored.len() == PAGE as usize;
    let events = views(&stored, &lookups, true);
    render(&SessionPage {
        base: Base::new(&web, &user, "session", head.label.clone()).await?,
        head,
        csrf: user.csrf,
        events,
        first,
        last,
        more,
    })
}

/// `GET /sessions/{id}/head`.
pub async fn head(
    State(web): State<Web>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let id = parse_id(&id)?;
    let row = session_row(&web, &id).await?;
    render(&HeadPartial {
        head: head_of(&web, &row).await?,
        csrf: user.csrf,
    })
}

/// Query of `GET /sessions/{id}/events`.
#[derive(Deserialize)]
pub struct OlderQuery {
    before: i64,
}

/// `GET /sessions/{id}/events?before=<row id>`: the page of events before that one.
pub async fn older(
    State(web): State<Web>,
    user: WebUser,
    Path(id): Path<String>,
    Query(q): Query<OlderQuery>,
) -> Result<Response, WebError> {
    let id = parse_id(&id)?;
    let stored = web.app.db.events_before(&id, q.before, PAGE).await?;
    if stored.is_empty() {
        session_row(&web, &id).await?;
    }
    let lookups = Lookups::load(&web.app.db, &stored).await?;
    render(&EventsPartial {
        first: stored.first().map_or(0, |e| e.id),
        more: stored.len() == PAGE as usize,
        events: views(&stored, &lookups, false),
        csrf: user.csrf,
    })
}

/// `POST /sessions/{id}/prompt` (`text`, and `files[]` when the form is multipart).
pub async fn prompt(
    State(web): State<Web>,
    user: WebUser,
    mode: Mode,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: super::prompt_form::PromptForm,
) -> Response {
    let back = format!("/sessions/{id}");
    let result = async {
        csrf::check(&web, &headers, &user, form.fields.get("csrf")).await?;
        let id = parse_id(&id)?;
        let row = session_row(&web, &id).await?;
        let text = form
            .fields
            .get("text")
            .map(str::trim)
            .filter(|t| !t.is_empty() || !form.files.is_empty())
            .ok_or_else(|| WebError::BadRequest("Write a prompt first.".to_owned()))?
            .to_owned();
        // Attached images become image blocks, other files are saved in the inbox.
        let input = crate::http::prompt_body::PromptInput {
            text,
            images: Vec::new(),
            files: form.files,
        };
        let (text, images) = input
            .prepare(&web.app, &row.daemon_id, &id.to_string())
            .await?;
        let cmd = Command::PromptSend(PromptArgs {
            session: id.to_string(),
            text,
            follow: false,
            origin: Some(origin(&user)),
            images,
        });
        let data = web
            .app
            .hub
            .command(&row.daemon_id, cmd, COMMAND_TIMEOUT)
            .await
            .map_err(crate::http::AppError::from)?;
        audit(&web, &user.name, "prompt.send", &id.to_string(), json!({})).await;
        let accepted: Option<PromptAccepted> = serde_json::from_value(data).ok();
        let mut message = match &accepted {
            Some(a) => format!("queued, position {}", a.queued_behind + 1),
            None => "queued".to_owned(),
        };
        if let Some(note) = accepted.and_then(|a| a.note) {
            message.push_str(&format!(" — {note}"));
        }
        Ok(Done::say(message))
    }
    .await;
    mode.reply(result, &back)
}

/// `POST /sessions/{id}/control/{interrupt|stop|kill|resume}`.
pub async fn control(
    State(web): State<Web>,
    user: WebUser,
    mode: Mode,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    form: Fields,
) -> Response {
    let back = format!("/sessions/{id}");
    let result = async {
        csrf::check(&web, &headers, &user, form.get("csrf")).await?;
        let id = parse_id(&id)?;
        let row = session_row(&web, &id).await?;
        let r = SessionRef {
            session: id.to_string(),
        };
        let (cmd, said) = match action.as_str() {
            "interrupt" => (Command::SessionInterrupt(r), "interrupt sent"),
            "stop" => (Command::SessionStop(r), "stopping"),
            "kill" => (Command::SessionKill(r), "killed"),
            "resume" => (Command::SessionResume(r), "resuming"),
            other => {
                return Err(WebError::NotFound(format!(
                    "There is no action `{other}`; use interrupt, stop, kill or resume."
                )));
            }
        };
        let data = web
            .app
            .hub
            .command(&row.daemon_id, cmd, COMMAND_TIMEOUT)
            .await
            .map_err(crate::http::AppError::from)?;
        if let Ok(info) = serde_json::from_value::<common::ipc::SessionInfo>(data) {
            web.app
                .db
                .upsert_session(&row.daemon_id, &info, now_ms())
                .await?;
        }
        audit(
            &web,
            &user.name,
            &format!("session.{action}"),
            &id.to_string(),
            json!({}),
        )
        .await;
        Ok(Done::say(said))
    }
    .await;
    mode.reply(result, &back)
}
