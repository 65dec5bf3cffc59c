//! A session's history over REST: keyset (or offset) pages of stored events, and the SSE
//! stream that replays stored events after `Last-Event-ID` and then follows the live feed,
//! each event exactly once and in row-id order.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use common::ids::SessionId;
use futures::Stream;
use serde::Deserialize;
use tracing::error;
use utoipa::IntoParams;

use super::resolve::resolve_session;
use super::schema::{ErrorResponse, EventPage};
use super::sessions::daemon_of;
use super::sse::{ClientGuard, async_stream, last_event_id};
use super::{AppError, AppQuery};
use crate::AppState;
use crate::db::StoredEvent;

/// Query of `GET /api/sessions/:id/events`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Keyset paging: events with a row id above this (`next_after` of the previous page).
    after: Option<i64>,
    /// Offset paging: skip this many of the session's events (not with `after`).
    #[param(maximum = 9223372036854775807_u64)]
    offset: Option<u64>,
    /// Page size; at most `events_page_max` (default 100, 0 counts as 1).
    #[param(maximum = 9223372036854775807_u64)]
    limit: Option<u64>,
}

/// `GET /api/sessions/:id/events?after=&limit=` (keyset) or `?offset=&limit=`.
#[utoipa::path(get, path = "/api/sessions/{id}/events", summary = "Stored events, keyset or offset paged", tag = "sessions",
    params(("id" = String, Path, description = "the session: its id, a unique id prefix (4+ characters) or its name"), EventsQuery),
    responses(
        (status = 200, description = "one page of stored events, oldest first", body = EventPage),
        (status = 400, description = "not a session id, or a query parameter of the wrong type", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such session", body = ErrorResponse),
        (status = 422, description = "both `after` and `offset`", body = ErrorResponse),
    ))]
pub async fn session_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<EventsQuery>,
) -> Result<Json<EventPage>, AppError> {
    let id = resolve_session(&state, &id).await?;
    if q.limit.is_some_and(|l| i64::try_from(l).is_err()) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`limit` must be at most {}", i64::MAX),
        ));
    }
    let max = state.cfg.events_page_max;
    let limit = q
        .limit
        .map_or(100, |l| u32::try_from(l).unwrap_or(max))
        .clamp(1, max);
    let events = match (q.after, q.offset) {
        (Some(_), Some(_)) => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                "use either `after` or `offset`, not both",
            ));
        }
        (None, Some(off)) if i64::try_from(off).is_err() => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`offset` must be at most {}", i64::MAX),
            ));
        }
        (None, Some(off)) => state.db.events_offset(&id, off, limit).await?,
        (after, None) => {
            state
                .db
                .events_after(&id, after.unwrap_or(0), limit)
                .await?
        }
    };
    if events.is_empty() {
        // An empty page is fine for a known session; an unknown one is 404 like every other
        // session route. Checked only here so full pages cost no extra query.
        daemon_of(&state, &id).await?;
    }
    let next_after = events.last().map(|e| e.id);
    Ok(Json(EventPage {
        events,
        next_after,
        limit,
    }))
}

/// Query of `GET /api/sessions/:id/stream`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Replay stored events with a row id above this (`Last-Event-ID` wins).
    after: Option<i64>,
}

fn sse_event(ev: &StoredEvent) -> SseEvent {
    SseEvent::default()
        .id(ev.id.to_string())
        .event(ev.event.kind.name())
        .data(serde_json::to_string(ev).unwrap_or_default())
}

/// `GET /api/sessions/:id/stream`: stored events after `Last-Event-ID` (or `?after=`), then
/// live ones, each exactly once and in order.
#[utoipa::path(get, path = "/api/sessions/{id}/stream", summary = "Stored then live events as Server-Sent Events", tag = "sessions",
    params(
        ("id" = String, Path, description = "the session: its id, a unique id prefix (4+ characters) or its name"),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "resume after this row id"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "Server-Sent Events, never ending: the stored events after `Last-Event-ID` (or `after`), then live ones; each SSE `id` is the row id, `event` the kind, `data` a StoredEvent", content_type = "text/event-stream", body = String),
        (status = 400, description = "not a session id, a query parameter of the wrong type, or a `Last-Event-ID` that is not a whole number from 0", body = ErrorResponse),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
        (status = 404, description = "no such session", body = ErrorResponse),
    ))]
pub async fn session_stream(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    let id = resolve_session(&state, &id).await?;
    daemon_of(&state, &id).await?;
    let header = last_event_id(&headers)
        .map_err(|m| AppError::new(StatusCode::BAD_REQUEST, "bad_request", m))?;
    // At most i64::MAX, so the conversion keeps the number.
    let after = header
        .and_then(|n| i64::try_from(n).ok())
        .or(q.after)
        .unwrap_or(0);
    // Subscribe before reading the backlog so nothing falls between the two.
    let mut live = state.hub.subscribe();
    let st = state.clone();
    let stream = async_stream(move |tx| async move {
        let _guard = ClientGuard::new(&st);
        let mut last = after;
        if !replay_stored(&st, &id, &mut last, &tx).await {
            return;
        }
        loop {
            match live.recv().await {
                Ok(ev) => {
                    if ev.event.session_id != id || ev.id <= last {
                        continue;
                    }
                    last = ev.id;
                    if tx.send(sse_event(&ev)).await.is_err() {
                        return;
                    }
                }
                // Too slow for the live feed: catch up from the database.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if !replay_stored(&st, &id, &mut last, &tx).await {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Sends the stored events of `id` after `last` (advancing it); `false` when the client
/// went away or the database failed.
async fn replay_stored(
    st: &AppState,
    id: &SessionId,
    last: &mut i64,
    tx: &tokio::sync::mpsc::Sender<SseEvent>,
) -> bool {
    loop {
        let page = match st.db.events_after(id, *last, 500).await {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "sse backlog read failed");
                return false;
            }
        };
        if page.is_empty() {
            return true;
        }
        for ev in &page {
            *last = ev.id;
            if tx.send(sse_event(ev)).await.is_err() {
                return false;
            }
        }
    }
}
