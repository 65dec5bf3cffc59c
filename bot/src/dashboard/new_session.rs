//! `/sessions/new` and `POST /sessions`: the form that starts a session on a daemon
//! (directory, name, model, permission mode), sent like `POST /api/sessions` with origin
//! `dashboard:<user>`; on success the browser goes to the new session's page.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use common::event::now_ms;
use common::ids::DaemonId;
use common::ipc::{Command, SessionInfo, StartArgs};
use serde_json::json;

use super::Web;
use super::cookies::WebUser;
use super::csrf;
use super::errors::WebError;
use super::page::{Base, Done, Fields, Mode, audit, origin, render};
use crate::http::COMMAND_TIMEOUT;

/// The permission modes the form offers (the CLI's `--permission-mode`).
pub const MODES: [&str; 5] = [
    "default",
    "acceptEdits",
    "plan",
    "dontAsk",
    "bypassPermissions",
];

/// A daemon to choose.
pub struct DaemonChoice {
    /// Its id (the value sent).
    pub id: String,
    /// Its machine.
    pub hostname: String,
    /// Link up.
    pub online: bool,
}

/// `templates/new_session.html`.
#[derive(Template)]
#[template(path = "new_session.html")]
struct NewSessionPage {
    base: Base,
    daemons: Vec<DaemonChoice>,
    modes: [&'static str; 5],
}

/// `GET /sessions/new`.
pub async fn page(State(web): State<Web>, user: WebUser) -> Result<Response, WebError> {
    let online = crate::replica::online_anywhere(&web.app).await;
    let mut daemons: Vec<DaemonChoice> = web
        .app
        .db
        .list_daemons()
        .await?
        .into_iter()
        .map(|d| DaemonChoice {
            online: online.contains(&d.id),
            id: d.id.0,
            hostname: d.hostname,
        })
        .collect();
    daemons.sort_by_key(|d| !d.online);
    render(&NewSessionPage {
        base: Base::new(&web, &user, "new", "New session").await?,
        daemons,
        modes: MODES,
    })
}

/// `POST /sessions` (`daemon`, `cwd`, `name`, `model`, `permission_mode`).
pub async fn create(
    State(web): State<Web>,
    user: WebUser,
    mode: Mode,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let result = async {
        csrf::check(&web, &headers, &user, form.get("csrf")).await?;
        let cwd = form.text("cwd").ok_or_else(|| {
            WebError::BadRequest("Give the directory the session works in.".to_owned())
        })?;
        if !cwd.starts_with('/') {
            return Err(WebError::BadRequest(format!(
                "The directory must be an absolute path on the daemon's machine, not `{cwd}`."
            )));
        }
        let permission_mode = form.text("permission_mode");
        if let Some(m) = &permission_mode
            && !MODES.contains(&m.as_str())
        {
            return Err(WebError::BadRequest(format!(
                "Unknown permission mode `{m}`."
            )));
        }
        let daemon = match form.text("daemon") {
            Some(d) => DaemonId(d),
            None => crate::http::pick_daemon(&web.app, None).await?,
        };
        let args = StartArgs {
            cwd: cwd.into(),
            model: form.text("model"),
            permission_mode,
            name: form.text("name"),
            auto_allow: false,
            allowed_tools: None,
            workspace: None,
            origin: Some(origin(&user)),
            claude_args: None,
        };
        let data = web
            .app
            .hub
            .command(&daemon, Command::SessionStart(args), COMMAND_TIMEOUT)
            .await
            .map_err(crate::http::AppError::from)?;
        let info: SessionInfo = serde_json::from_value(data).map_err(WebError::internal)?;
        web.app.db.upsert_session(&daemon, &info, now_ms()).await?;
        audit(
            &web,
            &user.name,
            "session.start",
            &info.id.to_string(),
            json!({"daemon": daemon}),
        )
        .await;
        Ok(Done {
            message: "started".to_owned(),
            location: Some(format!("/sessions/{}", info.id)),
        })
    }
    .await;
    mode.reply(result, "/sessions/new")
}
