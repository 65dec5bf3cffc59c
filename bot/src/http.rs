//! The REST API (`/api/...`), SSE streams, `/metrics` and the OpenAPI document.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <user token>` (checked in
//! constant time against hashed tokens; a daemon key is not a user token). Errors are JSON
//! `{"error": {"code", "message"}}` with a stable `code`; 5xx bodies say "internal error" and
//! the detail goes to the log. Bodies are size-limited and parsed by our own extractor so a
//! bad body gets the same error shape. Commands go to the owning daemon through the hub;
//! daemon errors map to HTTP statuses.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use common::event::{Decision, Origin, Surface, now_ms};
use common::ids::{DaemonId, SessionId};
use common::ipc::{
    AnswerArgs, Command, DecideArgs, ErrorBody, ErrorCode, PromptArgs, SessionRef, StartArgs,
};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::error;

use crate::AppState;
use crate::auth::{KeyKind, bearer_token};
use crate::db::{DbError, StoredEvent};
use crate::hub::HubError;

/// How long a REST (or chat) call waits for its daemon.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// An API error: status + stable code + message.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl std::fmt::Display for AppError {
    /// The message users see (chat adapters show it as is).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            other => Self::internal(other),
        }
    }
}

impl From<HubError> for AppError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Offline(d) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "daemon_offline",
                format!(
                    "daemon {d} is offline; its sessions can be driven again once it reconnects"
                ),
            ),
            HubError::Timeout(d, t) => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "daemon_timeout",
                format!("daemon {d} did not answer within {}s", t.as_secs()),
            ),
            HubError::Daemon(body) => daemon_error(body),
        }
    }
}

/// Maps a daemon error to an HTTP status, keeping its code and message.
pub fn daemon_error(body: ErrorBody) -> AppError {
    let (status, code) = match body.code {
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorCode::Ambiguous => (StatusCode::CONFLICT, "ambiguous"),
        ErrorCode::BadRequest | ErrorCode::ParseError | ErrorCode::UnknownCommand => {
            (StatusCode::BAD_REQUEST, "bad_request")
        }
        ErrorCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        ErrorCode::BadState => (StatusCode::CONFLICT, "bad_state"),
        ErrorCode::AlreadyDecided => (StatusCode::CONFLICT, "already_decided"),
        ErrorCode::Conflict => (StatusCode::CONFLICT, "conflict"),
        ErrorCode::NotSupported => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
        ErrorCode::SpawnFailed => (StatusCode::BAD_GATEWAY, "spawn_failed"),
        ErrorCode::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        ErrorCode::Internal => (StatusCode::BAD_GATEWAY, "daemon_internal"),
    };
    AppError::new(status, code, body.message)
}

/// JSON body extractor that turns rejections into [`AppError`]s.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "request body too large",
                ))
            }
            Err(e) => Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text(),
            )),
        }
    }
}

/// Query string extractor that turns rejections into [`AppError`]s (a `?limit=abc` gets
/// the same JSON error shape as a bad body).
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(e) => Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text(),
            )),
        }
    }
}

/// The authenticated user (the name of their token).
#[derive(Clone, Debug)]
pub struct User(pub String);

/// Middleware: a valid user bearer token or 401.
pub async fn require_user(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = bearer_token(req.headers()).map(str::to_owned);
    let user = match token {
        Some(t) => match state.db.verify_key(&t, KeyKind::User).await {
            Ok(Some(row)) => Some(row.name),
            Ok(None) => None,
            Err(e) => return AppError::internal(e).into_response(),
        },
        None => None,
    };
    let Some(user) = user else {
        state.hub.metrics.reject();
        return AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token (Authorization: Bearer <token>)",
        )
        .into_response();
    };
    req.extensions_mut().insert(User(user));
    next.run(req).await
}

fn origin(user: &User) -> Origin {
    Origin::user(Surface::Rest, user.0.clone())
}

fn parse_session(id: &str) -> Result<SessionId, AppError> {
    id.parse().map_err(|_| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{id}` is not a session id (a UUID)"),
        )
    })
}

async fn daemon_of(state: &AppState, id: &SessionId) -> Result<DaemonId, AppError> {
    Ok(state
        .db
        .get_session(id)
        .await
        .map_err(|e| match e {
            DbError::NotFound => AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no session {id}"),
            ),
            other => other.into(),
        })?
        .daemon_id)
}

async fn audit(state: &AppState, user: &User, action: &str, target: &str, detail: Value) {
    if let Err(e) = state
        .db
        .audit(
            &format!("rest:{}", user.0),
            action,
            target,
            detail,
            now_ms(),
        )
        .await
    {
        error!(error = %e, "audit write failed");
    }
}

/// `GET /healthz` (open).
pub async fn healthz() -> Json<Value> {
    Json(json!({"ok": true, "version": common::VERSION}))
}

/// `GET /metrics` (Prometheus text).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    let c = state.db.counts().await?;
    let m = &state.hub.metrics;
    let mut out = String::new();
    out.push_str("# HELP ccrm_daemons_connected Daemons with an open link.\n# TYPE ccrm_daemons_connected gauge\n");
    out.push_str(&format!(
        "ccrm_daemons_connected {}\n",
        state.hub.online().len()
    ));
    out.push_str("# HELP ccrm_sessions Sessions by state.\n# TYPE ccrm_sessions gauge\n");
    for (s, n) in &c.sessions_by_state {
        out.push_str(&format!("ccrm_sessions{{state=\"{s}\"}} {n}\n"));
    }
    out.push_str(
        "# HELP ccrm_events_stored Events in the database.\n# TYPE ccrm_events_stored gauge\n",
    );
    out.push_str(&format!("ccrm_events_stored {}\n", c.events));
    out.push_str("# HELP ccrm_events_ingested_total Events committed since start.\n# TYPE ccrm_events_ingested_total counter\n");
    out.push_str(&format!(
        "ccrm_events_ingested_total {}\n",
        m.events_ingested.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_events_duplicate_total Resent events ignored since start.\n# TYPE ccrm_events_duplicate_total counter\n");
    out.push_str(&format!(
        "ccrm_events_duplicate_total {}\n",
        m.events_duplicate.load(Ordering::Relaxed)
    ));
    out.push_str(
        "# HELP ccrm_ws_clients Open SSE and dashboard clients.\n# TYPE ccrm_ws_clients gauge\n",
    );
    out.push_str(&format!(
        "ccrm_ws_clients {}\n",
        m.ws_clients.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_rejected_requests_total Requests refused (auth, input, limits).\n# TYPE ccrm_rejected_requests_total counter\n");
    out.push_str(&format!(
        "ccrm_rejected_requests_total {}\n",
        m.rejected.load(Ordering::Relaxed)
    ));
    out.push_str("# HELP ccrm_approvals_pending Approvals waiting for an answer.\n# TYPE ccrm_approvals_pending gauge\n");
    out.push_str(&format!("ccrm_approvals_pending {}\n", c.approvals_pending));
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

/// `GET /api/daemons`.
pub async fn list_daemons(State(state): State<Arc<AppState>>) -> Result<Json<Value>, AppError> {
    let mut rows = state.db.list_daemons().await?;
    for r in &mut rows {
        r.online = state.hub.is_online(&r.id);
    }
    Ok(Json(json!({"daemons": rows})))
}

/// Query of `GET /api/sessions`.
#[derive(Deserialize)]
pub struct SessionsQuery {
    daemon: Option<String>,
    state: Option<String>,
}

/// `GET /api/sessions`.
pub async fn list_sessions(
    State(state): State<Arc<AppState>>,
    AppQuery(q): AppQuery<SessionsQuery>,
) -> Result<Json<Value>, AppError> {
    let rows = state
        .db
        .list_sessions(q.daemon.as_deref(), q.state.as_deref())
        .await?;
    Ok(Json(json!({"sessions": rows})))
}

/// Body of `POST /api/sessions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    daemon: Option<String>,
    cwd: std::path::PathBuf,
    model: Option<String>,
    permission_mode: Option<String>,
    name: Option<String>,
    #[serde(default)]
    auto_allow: bool,
    allowed_tools: Option<Vec<String>>,
}

/// The daemon a new session goes to: the one named, else the only one online (shared by
/// REST and the chat commands).
pub fn pick_daemon(state: &AppState, named: Option<String>) -> Result<DaemonId, AppError> {
    if let Some(d) = named {
        return Ok(DaemonId(d));
    }
    let online = state.hub.online();
    match online.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "daemon_offline",
            "no daemon is connected",
        )),
        _ => Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "several daemons are connected; name one in `daemon`",
        )),
    }
}

/// `POST /api/sessions`.
pub async fn create_session(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    AppJson(body): AppJson<NewSession>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let daemon = pick_daemon(&state, body.daemon)?;
    let args = StartArgs {
        cwd: body.cwd,
        model: body.model,
        permission_mode: body.permission_mode,
        name: body.name,
        auto_allow: body.auto_allow,
        allowed_tools: body.allowed_tools,
        origin: Some(origin(&user)),
    };
    let data = state
        .hub
        .command(&daemon, Command::SessionStart(args), COMMAND_TIMEOUT)
        .await?;
    if let Ok(info) = serde_json::from_value::<common::ipc::SessionInfo>(data.clone()) {
        state.db.upsert_session(&daemon, &info, now_ms()).await?;
        audit(
            &state,
            &user,
            "session.start",
            &info.id.to_string(),
            json!({"daemon": daemon}),
        )
        .await;
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"daemon_id": daemon, "session": data})),
    ))
}

/// `GET /api/sessions/:id`.
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let id = parse_session(&id)?;
    let row = state.db.get_session(&id).await.map_err(|e| match e {
        DbError::NotFound => AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no session {id}"),
        ),
        other => other.into(),
    })?;
    let approvals = state.db.list_approvals(true, Some(&id)).await?;
    Ok(Json(
        json!({"session": row, "online": state.hub.is_online(&row.daemon_id), "approvals": approvals}),
    ))
}

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
    let id = parse_session(&id)?;
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
    let id = parse_session(&id)?;
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

/// Counts open streaming clients for `/metrics`.
pub struct ClientGuard<'a>(&'a AppState);

impl<'a> ClientGuard<'a> {
    /// Counts one more client until dropped.
    pub fn new(state: &'a AppState) -> Self {
        state.hub.metrics.ws_clients.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0
            .hub
            .metrics
            .ws_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream fed by a task through a bounded channel; the task ends when the client goes.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let task = tokio::spawn(f(tx));
    let stream = tokio_stream_from(rx);
    AbortOnDrop { stream, task }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<SseEvent>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}

/// Aborts the feeding task when the response stream is dropped (client gone).
struct AbortOnDrop<S> {
    stream: S,
    task: tokio::task::JoinHandle<()>,
}

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Stream + Unpin> Stream for AbortOnDrop<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.stream).poll_next(cx)
    }
}

/// Body of `POST /api/sessions/:id/prompt`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptBody {
    text: String,
}

/// `POST /api/sessions/:id/prompt`.
pub async fn prompt(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
    AppJson(body): AppJson<PromptBody>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let id = parse_session(&id)?;
    let daemon = daemon_of(&state, &id).await?;
    let cmd = Command::PromptSend(PromptArgs {
        session: id.to_string(),
        text: body.text,
        follow: false,
        origin: Some(origin(&user)),
    });
    let data = state.hub.command(&daemon, cmd, COMMAND_TIMEOUT).await?;
    audit(&state, &user, "prompt.send", &id.to_string(), json!({})).await;
    Ok((StatusCode::ACCEPTED, Json(data)))
}

/// `POST /api/sessions/:id/{interrupt,stop,kill,resume}`.
pub async fn session_action(
    State(state): State<Arc<AppState>>,
    Extension(user): Extension<User>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let id = parse_session(&id)?;
    let r = SessionRef {
        session: id.to_string(),
    };
    let cmd = match action.as_str() {
        "interrupt" => Command::SessionInterrupt(r),
        "stop" => Command::SessionStop(r),
        "kill" => Command::SessionKill(r),
        "resume" => Command::SessionResume(r),
        other => {
            return Err(AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action `{other}`; use interrupt, stop, kill or resume"),
            ));
        }
    };
    let daemon = daemon_of(&state, &id).await?;
    let data = state.hub.command(&daemon, cmd, COMMAND_TIMEOUT).await?;
    if let Ok(info) = serde_json::from_value::<common::ipc::SessionInfo>(data.clone()) {
        state.db.upsert_session(&daemon, &info, now_ms()).await?;
    }
    audit(
        &state,
        &user,
        &format!("session.{action}"),
        &id.to_string(),
        json!({}),
    )
    .await;
    Ok(Json(data))
}

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
    let session = q.session.as_deref().map(parse_session).transpose()?;
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

/// `GET /api/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

/// Fallback for unknown routes: JSON 404.
pub async fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
