//! What every page and action shares: [`Base`] (the user, the CSRF token, the pending
//! approvals count of the title and the navigation, the asset version), rendering a
//! template into a response, the form extractor, the client address, and [`Mode`]: an
//! action answers the page script with JSON and a plain form with a redirect back.

use askama::Template;
use axum::Json;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use common::event::{Origin, Surface, now_ms};
use serde_json::{Value, json};

use super::cookies::WebUser;
use super::errors::WebError;
use super::{Web, assets};

/// What the layout (`templates/base.html`) shows on every page.
pub struct Base {
    /// Who is logged in.
    pub user: String,
    /// The login's anti-forgery token (in a `<meta>` for the script, and in forms).
    pub csrf: String,
    /// Pending approvals and questions of all sessions (title and navigation).
    pub pending: u64,
    /// Asset version for URLs.
    pub v: &'static str,
    /// The navigation entry to highlight.
    pub nav: &'static str,
    /// The page title (without the pending count).
    pub title: String,
}

impl Base {
    /// The layout data for `user` on page `nav`.
    pub async fn new(
        web: &Web,
        user: &WebUser,
        nav: &'static str,
        title: impl Into<String>,
    ) -> Result<Self, WebError> {
        Ok(Self {
            user: user.name.clone(),
            csrf: user.csrf.clone(),
            pending: pending_total(web).await?,
            v: assets::version(),
            nav,
            title: title.into(),
        })
    }

    /// The full `<title>`: `(2) Sessions · ccrm` while two approvals wait.
    pub fn full_title(&self) -> String {
        if self.pending > 0 {
            format!("({}) {} · ccrm", self.pending, self.title)
        } else {
            format!("{} · ccrm", self.title)
        }
    }
}

/// Pending approvals and questions across every session.
pub async fn pending_total(web: &Web) -> Result<u64, WebError> {
    Ok(web.app.db.pending_counts().await?.values().sum())
}

/// Renders a template as an HTML response.
pub fn render(t: &impl Template) -> Result<Response, WebError> {
    Ok(Html(t.render()?).into_response())
}

/// The origin recorded for what `user` does in the dashboard.
pub fn origin(user: &WebUser) -> Origin {
    Origin::user(Surface::Dashboard, user.name.clone())
}

/// Writes an audit row for a dashboard action (a failed write is logged, not fatal).
pub async fn audit(web: &Web, actor: &str, action: &str, target: &str, detail: Value) {
    if let Err(e) = web
        .app
        .db
        .audit(
            &format!("dashboard:{actor}"),
            action,
            target,
            detail,
            now_ms(),
        )
        .await
    {
        tracing::error!(error = %e, "audit write failed");
    }
}

/// The client's address as text (`?` when unknown).
pub fn client_addr(ext: &Extensions) -> String {
    ext.get::<ConnectInfo<crate::tls::PeerAddr>>()
        .map_or_else(|| "?".to_owned(), |c| c.0.0.ip().to_string())
}

/// How an action should answer: the page script (`X-Requested-With: fetch`) gets JSON,
/// a plain form post a redirect.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// Whether the page script sent the request.
    pub script: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Mode {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            script: parts
                .headers
                .get("x-requested-with")
                .is_some_and(|v| v == "fetch"),
        })
    }
}

impl Mode {
    /// Answers an action: `message` (and an optional page to go to) on success, the error
    /// otherwise. A plain form is sent to `to` or back to `back`.
    pub fn reply(self, result: Result<Done, WebError>, back: &str) -> Response {
        match (result, self.script) {
            (Ok(done), true) => {
                Json(json!({"ok": true, "message": done.message, "location": done.location}))
                    .into_response()
            }
            (Ok(done), false) => {
                Redirect::to(done.location.as_deref().unwrap_or(back)).into_response()
            }
            (Err(e), true) => e.json(),
            (Err(e), false) => e.into_response(),
        }
    }
}

/// A successful action.
pub struct Done {
    /// What to tell the user ("queued, position 2").
    pub message: String,
    /// Where to go next, if somewhere else.
    pub location: Option<String>,
}

impl Done {
    /// Success with a message.
    pub fn say(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            location: None,
        }
    }
}

/// A URL-encoded form body as name/value pairs (repeated names kept, for multi-select),
/// with a bad or oversized body turned into a [`WebError`].
pub struct Fields(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<Vec<(String, String)>>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(WebError::BadRequest("The form is too large.".to_owned()))
            }
            Err(e) => Err(WebError::BadRequest(format!(
                "The form could not be read: {}",
                e.body_text()
            ))),
        }
    }
}

impl Fields {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, if not empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
