//! The fake Anthropic Messages API: an axum server on loopback that records every
//! request and answers `POST /v1/messages` by keyword (see [`crate::script`]).
//!
//! [`FakeApi`] is a cheap `Clone` handle. The server task is aborted when the last
//! handle is dropped. Shared state is a few std `Mutex`es that are never held across an
//! `.await`, plus two `watch` channels so tests can wait for "n requests seen" or
//! "nothing streaming" without polling.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::script::{self, Reply};
use crate::wire::{self, Step};

/// Default pause between text deltas of `SLOW` replies.
pub const DEFAULT_CHUNK_DELAY: Duration = Duration::from_millis(500);

/// Largest request body accepted. The CLI's requests are ~50 KB plus the history.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Path of the Messages endpoint (the CLI adds `?beta=true`).
const MESSAGES_PATH: &str = "/v1/messages";
/// Path of the token-count endpoint.
const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";

/// One HTTP request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query, e.g. `/v1/messages`.
    pub path: String,
    /// The query string without `?`, e.g. `beta=true`.
    pub query: Option<String>,
    /// Every header, names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The JSON body. A body that is not JSON is kept as a JSON string (lossy UTF-8);
    /// an empty body is `null`.
    pub body: Value,
    /// When the request arrived.
    pub received_at: SystemTime,
    /// When the response ended: the last SSE frame was handed to the connection, the
    /// client went away, or (for plain JSON replies) the reply was built. `None` while a
    /// stream is still running.
    pub finished_at: Option<SystemTime>,
    /// The `X-Claude-Code-Session-Id` header.
    pub session_id: Option<String>,
    /// HTTP status the fake answered with.
    pub status: u16,
    /// True if the client dropped the connection before the stream was fully sent (an
    /// interrupt). Deliberate cuts (`TRUNC`) do not count.
    pub client_disconnected: bool,
}

impl RecordedRequest {
    /// The newest human text of the conversation (protocol §10.2): `role:"system"`
    /// entries, `<system-reminder>` blocks, interrupt markers and tool_results are
    /// skipped, but a message folded in mid-turn counts (see [`crate::script`]).
    pub fn last_human_text(&self) -> Option<String> {
        script::last_human_text(&self.body)
    }

    /// Every text of every message (user and assistant, tool_result contents and tool
    /// inputs included), joined with `\n`.
    pub fn all_text(&self) -> String {
        script::all_text(&self.body)
    }

    /// `(tool_use_id, content text, is_error)` of each tool_result in the newest user
    /// message.
    pub fn tool_results(&self) -> Vec<(String, String, bool)> {
        script::tool_results(&self.body)
    }

    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for `POST /v1/messages` (not `count_tokens`).
    pub fn is_message_request(&self) -> bool {
        self.method == "POST" && self.path == MESSAGES_PATH
    }

    /// The `stream` flag of the body (absent means false).
    pub fn is_streaming(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }
}

/// Handle to a running fake Messages API. Clone it freely; the server stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct FakeApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<ServerTask>,
}

impl std::fmt::Debug for FakeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi").field("addr", &self.addr).finish()
    }
}

impl FakeApi {
    /// Binds `127.0.0.1:0` and serves in a spawned task.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake Anthropic API to 127.0.0.1:0")?;
        Self::start_on(listener).await
    }

    /// Serves on an already bound listener (e.g. a fixed port for the offline demo).
    pub async fn start_on(listener: TcpListener) -> anyhow::Result<Self> {
        let addr = listener
            .local_addr()
            .context("reading the fake API's local address")?;
        let shared = Arc::new(Shared::new());
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(cause = ?err, "fake Anthropic API stopped");
            }
        });
        tracing::debug!(%addr, "fake Anthropic API listening");
        Ok(Self {
            shared,
            addr,
            _server: Arc::new(ServerTask(task)),
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order (count_tokens and 404s included).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Only the `POST /v1/messages` requests (streaming or not), in arrival order.
    pub fn message_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.is_message_request())
            .cloned()
            .collect()
    }

    /// Waits until at least `n` message requests were recorded, then returns them all.
    /// Fails after `timeout`.
    pub async fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        let mut seen = self.shared.message_count.subscribe();
        let waited = tokio::time::timeout(timeout, seen.wait_for(|count| *count >= n))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(self.message_requests()),
            Ok(false) => anyhow::bail!("fake API state dropped while waiting for requests"),
            Err(_) => anyhow::bail!(
                "timed out after {timeout:?} waiting for {n} message requests (got {})",
                *seen.borrow()
            ),
        }
    }

    /// Waits until no message response is streaming any more (e.g. after an interrupt
    /// made the CLI drop its connection). Fails after `timeout`.
    pub async fn wait_until_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut streaming = self.shared.in_flight.subscribe();
        let waited = tokio::time::timeout(timeout, streaming.wait_for(|n| *n == 0))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            Ok(false) => anyhow::bail!("fake API state dropped while waiting for idle"),
            Err(_) => anyhow::bail!(
                "timed out after {timeout:?} waiting for {} streams to end",
                *streaming.borrow()
            ),
        }
    }

    /// Sets the pause between deltas of `SLOW` replies (and of [`Reply::Chunks`] without
    /// their own delay). Default: [`DEFAULT_CHUNK_DELAY`]. Applies to responses that
    /// start after the call.
    pub fn set_chunk_delay(&self, delay: Duration) {
        *lock(&self.shared.chunk_delay) = delay;
    }

    /// Queues a reply. Queued replies answer the next message requests in FIFO order,
    /// one each, before any keyword rule. Every `POST /v1/messages` takes one, including
    /// the CLI's non-streaming retry after a [`Reply::Truncate`] or
    /// [`Reply::StreamError`] (queue a second reply for it, or let it fall through to
    /// the keyword rules).
    pub fn push_script(&self, reply: Reply) {
        lock(&self.shared.script).push_back(reply);
    }

    /// Records requests from now on without their bodies (`body` is `null`), for long
    /// runs: the CLI sends the whole conversation every turn, so a session of a thousand
    /// turns would otherwise keep gigabytes of bodies here.
    pub fn forget_bodies(&self) {
        self.shared
            .keep_bodies
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many message responses are streaming right now.
    pub fn in_flight(&self) -> usize {
        *self.shared.in_flight.borrow()
    }
}

/// Aborts the server task when the last [`FakeApi`] handle goes.
struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Locks a mutex, carrying on after a panic elsewhere: the data are plain records.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by the handlers and the handles.
struct Shared {
    log: Mutex<Vec<RecordedRequest>>,
    script: Mutex<VecDeque<Reply>>,
    chunk_delay: Mutex<Duration>,
    /// Number of message requests recorded so far.
    message_count: watch::Sender<usize>,
    /// Number of SSE responses still streaming.
    in_flight: watch::Sender<usize>,
    /// Whether recorded requests keep their bodies (see [`FakeApi::forget_bodies`]).
    keep_bodies: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn new() -> Self {
        Self {
            log: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            chunk_delay: Mutex::new(DEFAULT_CHUNK_DELAY),
            message_count: watch::Sender::new(0),
            in_flight: watch::Sender::new(0),
            keep_bodies: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Records a request and returns its index in the log.
    fn record(&self, mut req: RecordedRequest) -> usize {
        let is_message = req.is_message_request();
        if !self.keep_bodies.load(std::sync::atomic::Ordering::Relaxed) {
            req.body = Value::Null;
        }
        let index = {
            let mut log = lock(&self.log);
            log.push(req);
            log.len() - 1
        };
        // Counted after the push, so a waiter woken here sees the request in the log.
        if is_message {
            self.message_count.send_modify(|n| *n += 1);
        }
        index
    }

    fn set_status(&self, index: usize, status: StatusCode) {
        if let Some(r) = lock(&self.log).get_mut(index) {
            r.status = status.as_u16();
        }
    }

    fn finish(&self, index: usize, disconnected: bool) {
        if let Some(r) = lock(&self.log).get_mut(index) {
            r.finished_at = Some(SystemTime::now());
            r.client_disconnected = disconnected;
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(MESSAGES_PATH, any(messages))
        .route(COUNT_TOKENS_PATH, any(count_tokens))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// The parts of a request every handler records.
struct Incoming {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// Every handler takes the whole request this way; the body limit of the router's
/// [`DefaultBodyLimit`] applies as it does to a plain [`Bytes`] extractor.
impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = BytesRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = req.method().clone();
        let uri = req.uri().clone();
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state).await?;
        Ok(Self {
            method,
            uri,
            headers,
            body,
        })
    }
}

impl Incoming {
    /// Parses the body as JSON, or explains why not.
    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|err| format!("body is not valid JSON: {err}"))
    }

    fn into_record(self, parsed: Option<&Value>) -> RecordedRequest {
        let body = match parsed {
            Some(v) => v.clone(),
            None if self.body.is_empty() => Value::Null,
            None => Value::String(String::from_utf8_lossy(&self.body).into_owned()),
        };
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let session_id = self
            .headers
            .get("x-claude-code-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        RecordedRequest {
            method: self.method.to_string(),
            path: self.uri.path().to_owned(),
            query: self.uri.query().map(str::to_owned),
            headers,
            body,
            received_at: SystemTime::now(),
            finished_at: None,
            session_id,
            status: 0,
            client_disconnected: false,
        }
    }
}

async fn messages(State(shared): State<Arc<Shared>>, incoming: Incoming) -> Response {
    if incoming.method != Method::POST {
        return respond_plain(&shared, incoming, None, not_found_response());
    }
    let body = match incoming.json() {
        Ok(v) => v,
        Err(why) => {
            tracing::debug!(%why, "fake API: bad messages request");
            return respond_plain(&shared, incoming, None, bad_request(&why));
        }
    };
    if let Err(why) = validate_messages_body(&body) {
        tracing::debug!(%why, "fake API: bad messages request");
        return respond_plain(&shared, incoming, Some(&body), bad_request(&why));
    }
    let index = shared.record(incoming.into_record(Some(&body)));
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_owned();
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let scripted = lock(&shared.script).pop_front();
    let reply = scripted.unwrap_or_else(|| crate::prompts::decide(&body));
    tracing::debug!(?reply, streaming, "fake API: replying");
    let message_id = wire::message_id();

    if !streaming {
        let response = match wire::message_json(&reply, &message_id, &model) {
            Ok(message) => json_response(StatusCode::OK, &message),
            Err(status) => api_error_response(status),
        };
        shared.set_status(index, response.status());
        shared.finish(index, false);
        return response;
    }

    let delay = *lock(&shared.chunk_delay);
    let steps = match wire::sse_steps(&reply, &message_id, &model, delay) {
        Ok(steps) => steps,
        Err(status) => {
            let response = api_error_response(status);
            shared.set_status(index, response.status());
            shared.finish(index, false);
            return response;
        }
    };
    shared.set_status(index, StatusCode::OK);
    let guard = StreamGuard::new(Arc::clone(&shared), index);
    let mut response = Body::from_stream(sse_stream(steps, guard)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    insert_request_id(h);
    response
}

async fn count_tokens(State(shared): State<Arc<Shared>>, incoming: Incoming) -> Response {
    if incoming.method != Method::POST {
        return respond_plain(&shared, incoming, None, not_found_response());
    }
    match incoming.json() {
        Ok(v) => {
            let response = json_response(StatusCode::OK, &json!({ "input_tokens": 10 }));
            respond_plain(&shared, incoming, Some(&v), response)
        }
        Err(why) => respond_plain(&shared, incoming, None, bad_request(&why)),
    }
}

async fn not_found(State(shared): State<Arc<Shared>>, incoming: Incoming) -> Response {
    let parsed = incoming.json().ok();
    respond_plain(&shared, incoming, parsed.as_ref(), not_found_response())
}

/// Records a request answered at once with `response`.
fn respond_plain(
    shared: &Shared,
    incoming: Incoming,
    parsed: Option<&Value>,
    response: Response,
) -> Response {
    let mut record = incoming.into_record(parsed);
    record.status = response.status().as_u16();
    record.finished_at = Some(SystemTime::now());
    shared.record(record);
    response
}

/// Checks the minimum a Messages body needs: an object with a `messages` array.
fn validate_messages_body(body: &Value) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("body must be a JSON object".to_owned());
    };
    match obj.get("messages") {
        Some(Value::Array(_)) => Ok(()),
        Some(_) => Err("messages: must be an array".to_owned()),
        None => Err("messages: field required".to_owned()),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    insert_request_id(response.headers_mut());
    response
}

fn api_error_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &wire::error_body(code.as_u16()))
}

fn bad_request(why: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &wire::error_body_with("invalid_request_error", why),
    )
}

fn not_found_response() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &wire::error_body_with("not_found_error", "fake API: no such route"),
    )
}

fn insert_request_id(headers: &mut HeaderMap) {
    if let Ok(v) = HeaderValue::from_str(&wire::request_id()) {
        headers.insert("request-id", v);
    }
}

/// Counts a response as streaming while it lives, and records how it ended.
struct StreamGuard {
    shared: Arc<Shared>,
    index: usize,
    completed: bool,
}

impl StreamGuard {
    fn new(shared: Arc<Shared>, index: usize) -> Self {
        shared.in_flight.send_modify(|n| *n += 1);
        Self {
            shared,
            index,
            completed: false,
        }
    }

    /// The stream ended as planned; the client did not go away.
    fn mark_completed(&mut self) {
        self.completed = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.shared.finish(self.index, !self.completed);
        self.shared
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The body stream: plays out `steps`. Hyper drops the stream when the client goes
/// away, which drops the guard and stops generation, so an interrupted SLOW reply
/// costs nothing further.
fn sse_stream(
    steps: Vec<Step>,
    guard: StreamGuard,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let state = (VecDeque::from(steps), guard);
    futures::stream::unfold(state, |(mut steps, mut guard)| async move {
        loop {
            match steps.pop_front() {
                None => {
                    guard.mark_completed();
                    return None;
                }
                Some(Step::Sleep(d)) => tokio::time::sleep(d).await,
                Some(Step::Frame(bytes)) => return Some((Ok(bytes), (steps, guard))),
                Some(Step::Cut) => {
                    guard.mark_completed();
                    let err = std::io::Error::other("fake API: stream cut on purpose (TRUNC)");
                    return Some((Err(err), (steps, guard)));
                }
            }
        }
    })
}
