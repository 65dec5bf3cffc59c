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
use serde_json::{Value, json};
use tracing::error;

use super::resolve::resolve_session;
use super::sessions::daemon_of;
use super::sse::{ClientGuard, async_stream};
use super::{AppError, AppQuery};
use crate::AppState;
use crate::db::StoredEvent;

/// Query of `GET /api/sessions/:id/events`.
#[derive(Deserialize)]
pub struct EventsQuery {
    after: Option<i64>,
    offset: Option<u64>,
    limit: Option<u32>,
}

/// `GET /api/sessions/:id/events?after=&limit=` (keyset) or `?offset=&limit=`.
pub async fn session_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<EventsQuery>,
) -> Result<Json<Value>, AppError> {
    let id = resolve_session(&state, &id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, state.cfg.events_page_max);
    let events = match (q.after, q.offset) {
        (Some(_), Some(_)) => {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "use either `after` or `offset`, not both",
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
    Ok(Json(
        json!({"events": events, "next_after": next_after, "limit": limit}),
    ))
}

/// Query of `GET /api/sessions/:id/stream`.
#[derive(Deserialize)]
pub struct StreamQuery {
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
pub async fn session_stream(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, AppError> {
    let id = resolve_session(&state, &id).await?;
    daemon_of(&state, &id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
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
