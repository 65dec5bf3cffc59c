//! The web dashboard, served by `ccrm-bot` itself at `/`: server-rendered pages (askama
//! templates from `bot/templates/`, compiled in) with a small hand-written script
//! (`bot/assets/app.js`) for live updates. Nothing is built with npm and nothing is
//! fetched from outside at run time. The layout follows kanidm's `https/views/`: one file
//! per page, with cookies, CSRF and errors each in one place.
//!
//! - [`login`]: the token → cookie exchange (rate-limited per client address, audited)
//!   and logout. [`cookies`]: the session cookie and the [`cookies::WebUser`] extractor
//!   that every other page needs. [`csrf`]: the origin check on every state-changing
//!   request and the per-login token.
//! - [`overview`] (`/`): daemons and sessions with filters. [`session`]
//!   (`/sessions/{id}`): the conversation, older history on scroll, the prompt box and the
//!   control buttons. [`approvals`] (`/approvals`): every pending request, and deciding
//!   one (also from the session page). [`new_session`]: the form that starts a session.
//!   [`prompt_form`]: the prompt form's body, with attached files when multipart.
//!   [`audit`]: the audit log, paged.
//! - [`live`] (`/live`): one SSE stream per page: the page's session as rendered event
//!   fragments (resumable from the last row id seen, `Last-Event-ID`), and short notes
//!   about other sessions so lists refresh.
//! - [`render`]: events → views (Markdown, diffs, tool summaries); [`page`]: what every
//!   page shares and how replies to actions are shaped; [`assets`]: the embedded
//!   stylesheet, script and icon; [`errors`]: HTML error pages.
//!
//! Every response carries a strict Content-Security-Policy (scripts only from
//! `/assets/`, no inline script, no `eval`), `frame-ancestors 'none'`, `X-Frame-Options`,
//! `Referrer-Policy` and `nosniff`; pages and assets are gzip-compressed. Actions go to
//! the daemons through the hub exactly like REST does, with origin `dashboard:<user>`, and
//! are audited as `dashboard:<user>`.

pub mod approvals;
pub mod assets;
pub mod audit;
pub mod cookies;
pub mod csrf;
pub mod errors;
pub mod live;
pub mod login;
pub mod new_session;
pub mod overview;
pub mod page;
mod prompt_form;
pub mod render;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;

use crate::AppState;

/// The dashboard's router state: the app and the login rate limiter.
#[derive(Clone)]
pub struct Web {
    /// Everything the REST API has.
    pub app: Arc<AppState>,
    /// Failed-login limiter per client address.
    pub logins: Arc<login::Limiter>,
}

/// The dashboard's routes, ready to merge into the bot's router.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let web = Web {
        logins: Arc::new(login::limiter(state.cfg.web_login_attempts_per_minute)),
        app: state,
    };
    Router::new()
        .route("/", get(overview::page))
        .route("/partials/overview", get(overview::partial))
        .route("/partials/pending", get(approvals::pending_count))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/sessions/new", get(new_session::page))
        .route("/sessions", post(new_session::create))
        .route("/sessions/{id}", get(session::page))
        .route("/sessions/{id}/head", get(session::head))
        .route("/sessions/{id}/events", get(session::older))
        .route(
            "/sessions/{id}/prompt",
            // Attached files have their own cap, checked as the form is read.
            post(session::prompt).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/sessions/{id}/control/{action}", post(session::control))
        .route("/approvals", get(approvals::page))
        .route("/partials/approvals", get(approvals::partial))
        .route("/approvals/{id}", post(approvals::decide))
        .route("/audit", get(audit::page))
        .route("/live", get(live::stream))
        .route("/assets/{version}/{name}", get(assets::serve))
        .layer(middleware::from_fn_with_state(
            web.clone(),
            csrf::origin_guard,
        ))
        .layer(CompressionLayer::new())
        .layer(middleware::map_response(security_headers))
        .with_state(web)
}

/// The Content-Security-Policy of every dashboard response: everything from this origin
/// only, no inline script or `eval`, no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
