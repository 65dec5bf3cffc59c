//! `GET /live[?session=<id>&after=<row id>]`: the one Server-Sent Events stream each
//! dashboard page keeps open.
//!
//! - `ev` events (with `id:` = the bot's row id) carry the page's session's events as
//!   HTML fragments rendered by `templates/event.html`, exactly as history is. The stream
//!   first replays what was stored after `Last-Event-ID` (sent by the browser when it
//!   reconnects by itself) or `after` (what the page already holds), then follows the
//!   hub's live feed, subscribed before the replay and de-duplicated by row id, reading
//!   from SQLite again when it lags. So after a reconnect, or a bot restart, nothing is
//!   missing and nothing is sent twice.
//! - `note` events (no `id:`, so they never move the cursor) say that something changed
//!   elsewhere (`{"session", "kind"}`): a state, a prompt, an approval, a result. Pages
//!   fetch their lists again; only ids and kinds travel this way.
//!
//! `retry: 1000` asks the browser to reconnect a second after the stream breaks; the page
//! script also starts a new stream with its own cursor if the browser gives up.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use common::event::EventKind;
use common::ids::SessionId;
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::Web;
use super::cookies::WebUser;
use super::errors::WebError;
use super::render::{EventView, Lookups, view};
use super::session::{parse_id, session_row};
use crate::AppState;
use crate::db::StoredEvent;
use crate::http::{ClientGuard, sse::async_stream};

/// Query of `GET /live`.
#[derive(Deserialize)]
pub struct LiveQuery {
    session: Option<String>,
    after: Option<i64>,
}

/// `templates/event_one.html`: one event fragment.
#[derive(Template)]
#[template(path = "event_one.html")]
struct OneEvent {
    ev: EventView,
    csrf: String,
}

/// `GET /live`.
pub async fn stream(
    State(web): State<Web>,
    user: WebUser,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, WebError> {
    let session = match q.session.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => {
            let id = parse_id(s)?;
            session_row(&web, &id).await?;
            Some(id)
        }
        None => None,
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after)
        .unwrap_or(0)
        .max(0);
    // Subscribe before reading the backlog so nothing falls between the two.
    let mut feed = web.app.hub.subscribe();
    let app = web.app.clone();
    let csrf = user.csrf;
    let stream = async_stream(move |tx| async move {
        let _guard = ClientGuard::new(&app);
        let out = Out {
            app: &app,
            tx,
            csrf,
        };
        if out
            .tx
            .send(
                SseEvent::default()
                    .retry(Duration::from_millis(1000))
                    .comment("hello"),
            )
            .await
            .is_err()
        {
            return;
        }
        let mut last = after;
        if let Some(id) = &session
            && !out.replay(id, &mut last).await
        {
            return;
        }
        loop {
            match feed.recv().await {
                Ok(ev) => {
                    if !out.live(session.as_ref(), &ev, &mut last).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let caught_up = match &session {
                        Some(id) => out.replay(id, &mut last).await,
                        None => true,
                    };
                    if !caught_up || !out.note("", "resync").await {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// One client's stream.
struct Out<'a> {
    app: &'a Arc<AppState>,
    tx: mpsc::Sender<SseEvent>,
    csrf: String,
}

impl Out<'_> {
    /// Sends the stored events of `id` after `last` (advancing it); `false` when the client
    /// went away or the store failed.
    async fn replay(&self, id: &SessionId, last: &mut i64) -> bool {
        loop {
            let page = match self.app.db.events_after(id, *last, 200).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "dashboard stream backlog read failed");
                    return false;
                }
            };
            if page.is_empty() {
                return true;
            }
            for ev in &page {
                *last = ev.id;
                if !self.fragment(ev).await {
                    return false;
                }
            }
        }
    }

    /// Handles one live event: the page's own session's as a fragment, others as a note.
    async fn live(&self, session: Option<&SessionId>, ev: &StoredEvent, last: &mut i64) -> bool {
        if session == Some(&ev.event.session_id) {
            if ev.id <= *last {
                return true;
            }
            *last = ev.id;
            return self.fragment(ev).await;
        }
        let noteworthy = matches!(
            ev.event.kind,
            EventKind::State { .. }
                | EventKind::Prompt { .. }
                | EventKind::TurnResult { .. }
                | EventKind::PermissionRequest { .. }
                | EventKind::PermissionDecision { .. }
                | EventKind::Question { .. }
                | EventKind::Answer { .. }
        );
        if !noteworthy {
            return true;
        }
        self.note(&ev.event.session_id.to_string(), ev.event.kind.name())
            .await
    }

    async fn fragment(&self, ev: &StoredEvent) -> bool {
        let lookups = match Lookups::load(&self.app.db, std::slice::from_ref(ev)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "dashboard stream lookup failed");
                return false;
            }
        };
        let html = match (OneEvent {
            ev: view(ev, &lookups),
            csrf: self.csrf.clone(),
        })
        .render()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "dashboard stream render failed");
                return false;
            }
        };
        let msg = SseEvent::default()
            .id(ev.id.to_string())
            .event("ev")
            .data(html);
        self.tx.send(msg).await.is_ok()
    }

    async fn note(&self, session: &str, kind: &str) -> bool {
        let msg = SseEvent::default()
            .event("note")
            .data(json!({"session": session, "kind": kind}).to_string());
        self.tx.send(msg).await.is_ok()
    }
}
