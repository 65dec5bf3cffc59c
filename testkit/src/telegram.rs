//! A fake Telegram Bot API on loopback, good enough for the real `teloxide` client
//! (long polling, `Bot::new(token).set_api_url(url)`) to run against it unchanged.
//!
//! [`FakeTelegram::start`] binds `127.0.0.1:0` and serves `POST /bot<token>/<method>`
//! with JSON, `multipart/form-data` (uploads), form or query-string parameters, and
//! answers `{"ok":true,"result":...}` or `{"ok":false,"error_code":N,"description":...}`
//! with the HTTP status set to `error_code`, like the real API. A test:
//!
//! - sets up chats ([`FakeTelegram::forum_group`], [`FakeTelegram::private_chat`]);
//! - injects what users do ([`FakeTelegram::user_message`],
//!   [`FakeTelegram::press_button`]), which the bot receives through `getUpdates`;
//! - reads what the bot did: every request but `getUpdates` as a [`Call`] with its arrival
//!   time, the current state of the bot's messages ([`Message`]), topics and uploaded
//!   [`Document`]s, and waits for calls without polling ([`FakeTelegram::wait_for`]);
//! - injects faults ([`FakeTelegram::fail_next`], [`FakeTelegram::reject_entities_next`]).
//!
//! # What is checked like the real API
//!
//! Unknown chats and topics, text length (4096 characters after entity parsing), empty
//! texts, `parse_mode` markup (see `markup`: unknown or unbalanced HTML tags, unescaped
//! MarkdownV2), `callback_data` over 64 bytes, edits that change nothing ("message is not
//! modified"), edits of missing messages, `createForumTopic` outside forums, answering a
//! callback query twice. Error descriptions are Telegram's, so teloxide maps them onto the
//! same `ApiError` variants as in production. An edit without `reply_markup` removes the
//! keyboard, as on Telegram.
//!
//! Rate limits are not enforced (judge pacing from [`Call::at`]); use
//! [`FakeTelegram::fail_next`] with 429 for a `RetryAfter`. Beware: teloxide sleeps 10 s
//! after any 5xx before it reads the body.
//!
//! # getUpdates
//!
//! Updates stay queued until a later `offset` confirms them (a negative offset keeps only
//! the last `-offset`, as teloxide's `drop_pending_updates` uses). A request with
//! `timeout` is held until an update is queued or the timeout passes; a newer getUpdates
//! ends an older one still waiting with 409 Conflict ("terminated by other getUpdates
//! request"), as Telegram does, so a bot restarted mid-poll does not lose updates to its
//! dead predecessor. [`FakeTelegram::updates_served`] lists every update id handed out;
//! [`FakeTelegram::wait_for_poll`] waits until the bot is idle in a long poll.
//!
//! Like the real API, the fake holds a long poll for the whole `timeout`. teloxide's
//! default HTTP client gives up after 17 s, so a `timeout` of 17 or more turns every idle
//! poll into a network error, here as in production (teloxide's own polling uses 10).
//!
//! # teloxide on startup
//!
//! `polling_default` calls `getWebhookInfo` (and `deleteWebhook` only if a webhook URL is
//! set, which the fake never reports); `Dispatcher` calls `getMe`; then `getUpdates` with
//! `timeout=10` in a loop, and one last `getUpdates` with `timeout=0, limit=1` and the
//! final offset when it stops.

mod files;
mod markup;
mod world;

pub use files::UserFile;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use world::{Failure, Params, Upload, World};

use crate::state::lock;

/// `getMe`'s username.
pub const BOT_USERNAME: &str = "ccrm_test_bot";

/// Bot user id when the token does not start with one (`<id>:<secret>`).
const DEFAULT_BOT_ID: i64 = 7_000_000_001;

/// Largest request body: Telegram's 50 MB upload limit plus room for the other fields.
const MAX_BODY_BYTES: usize = 51 * 1024 * 1024;

/// Longest long poll honoured, whatever `timeout` asks for.
const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(300);

/// One request the bot made (every method but `getUpdates`).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Method name in the Bot API's spelling, e.g. `sendMessage` (as sent, if unknown).
    pub method: String,
    /// The parameters: the JSON body, or multipart/form fields as JSON strings with
    /// uploaded files as `{"file_name":..,"size":..}`.
    pub params: Value,
    /// When the request arrived.
    pub at: SystemTime,
    /// The chat it acted on (`chat_id`, or the callback query's chat).
    pub chat_id: Option<i64>,
    /// The topic it acted on: `message_thread_id`, else the thread of the message it
    /// edited or deleted, the topic it created, or the callback query's message thread.
    pub thread_id: Option<i32>,
    /// The `result` of a successful reply, or the whole error body
    /// (`{"ok":false,"error_code":..,"description":..}`) of a failed one.
    pub result: Value,
    /// HTTP status of the reply (200, or the `error_code`).
    pub status: u16,
}

impl Call {
    /// True if the reply was `ok: true`.
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// A string parameter, e.g. `call.str_param("text")`.
    pub fn str_param(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }

    /// The `text` parameter (sendMessage, editMessageText).
    pub fn text(&self) -> Option<&str> {
        self.str_param("text")
    }

    /// The `description` of a failed reply.
    pub fn error_description(&self) -> Option<&str> {
        if self.ok() {
            return None;
        }
        self.result.get("description").and_then(Value::as_str)
    }
}

/// The current state of a text message the bot sent (after edits).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub message_id: i32,
    pub chat_id: i64,
    pub thread_id: Option<i32>,
    /// The text as the bot sent it (markup included).
    pub text: String,
    pub parse_mode: Option<String>,
    /// The inline keyboard (`{"inline_keyboard":[[...]]}`), if the message has one.
    pub reply_markup: Option<Value>,
    /// Successful edits (text or keyboard).
    pub edits: u32,
    /// The text as a user sees it: markup removed, HTML entities decoded.
    pub visible_text: String,
    /// The message entities Telegram would report (UTF-16 offsets).
    pub entities: Vec<Value>,
}

impl Message {
    /// `callback_data` of every inline button, row by row.
    pub fn button_data(&self) -> Vec<String> {
        self.reply_markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter_map(|b| b.get("callback_data").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }
}

/// A file the bot uploaded with `sendDocument`.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub chat_id: i64,
    pub thread_id: Option<i32>,
    /// Id of the message that carries it.
    pub message_id: i32,
    /// The upload's file name (empty if the client sent none).
    pub file_name: String,
    pub bytes: Vec<u8>,
    /// The caption as sent (markup included).
    pub caption: Option<String>,
}

/// Handle to a running fake Bot API. Clone it freely; the server stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<ServerTask>,
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeTelegram {
    /// Binds `127.0.0.1:0` and serves the bot with this token in a spawned task.
    /// Requests with another token get 401 Unauthorized. A token of the real shape
    /// (`<id>:<secret>`) gives the bot that user id.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake Telegram API to 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("reading the fake Telegram API's local address")?;
        let bot_id = token
            .split_once(':')
            .and_then(|(id, _)| id.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .unwrap_or(DEFAULT_BOT_ID);
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            world: Mutex::new(World::new(bot_id, BOT_USERNAME)),
            version: watch::Sender::new(0),
            files: Mutex::default(),
            downloads: Mutex::default(),
        });
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(cause = ?err, "fake Telegram API stopped");
            }
        });
        tracing::debug!(%addr, "fake Telegram API listening");
        Ok(Self {
            _server: Arc::new(ServerTask {
                task,
                shared: Arc::clone(&shared),
            }),
            shared,
            addr,
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `Bot::set_api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `getMe`'s id.
    pub fn bot_user_id(&self) -> i64 {
        self.world().bot_id()
    }

    /// `getMe`'s username, [`BOT_USERNAME`].
    pub fn bot_username(&self) -> &'static str {
        BOT_USERNAME
    }

    /// A new supergroup with topics (`is_forum: true`); returns its id (`-100...`).
    pub fn forum_group(&self, title: &str) -> i64 {
        self.world().forum_group(title)
    }

    /// The private chat with a user; its id is the user's id.
    pub fn private_chat(&self, user_id: i64) -> i64 {
        self.world().private_chat(user_id)
    }

    /// A topic a user created in a forum (not the bot; no call is recorded). Returns its
    /// `message_thread_id`.
    pub fn user_topic(&self, chat_id: i64, from: i64, name: &str) -> i32 {
        self.world().user_topic(chat_id, from, name)
    }

    /// Queues a text message from user `from` (in topic `thread_id`, if any) and returns
    /// its `message_id`. A text starting with `/` gets a `bot_command` entity over its
    /// first word, e.g. `/new@ccrm_test_bot x`, and every `@username` a `mention` entity. A chat id never set up is taken as a
    /// private chat (positive) or a plain supergroup (negative).
    pub fn user_message(&self, chat_id: i64, from: i64, text: &str, thread_id: Option<i32>) -> i32 {
        let id = self.world().user_message(chat_id, from, text, thread_id);
        self.shared.changed();
        id
    }

    /// Queues a message from user `from` that replies to the bot's message `reply_to` (in
    /// that message's topic); returns its `message_id`. `@username`s in the text get
    /// `mention` entities, as in [`FakeTelegram::user_message`].
    ///
    /// # Panics
    ///
    /// If the bot sent no such message in that chat: a real user could not reply to it.
    pub fn user_reply(&self, chat_id: i64, from: i64, text: &str, reply_to: i32) -> i32 {
        let id = self.world().user_reply(chat_id, from, text, reply_to);
        let Some(id) = id else {
            panic!("FakeTelegram::user_reply: the bot has no message {reply_to} in chat {chat_id}");
        };
        self.shared.changed();
        id
    }

    /// Queues a callback query: user `from` pressed a button with `data` on the bot's
    /// message `message_id` (the update carries the message as it is now). Returns the
    /// callback query id.
    ///
    /// # Panics
    ///
    /// If the bot sent no such message in that chat: a real user could not press it.
    pub fn press_button(&self, chat_id: i64, from: i64, message_id: i32, data: &str) -> String {
        let id = self.world().press_button(chat_id, from, message_id, data);
        let Some(id) = id else {
            panic!(
                "FakeTelegram::press_button: the bot has no message {message_id} in chat {chat_id}"
            );
        };
        self.shared.changed();
        id
    }

    /// Every request so far except `getUpdates`, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }

    /// The calls of one method (case-insensitive), in arrival order.
    pub fn calls_named(&self, method: &str) -> Vec<Call> {
        self.world()
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// The first call, oldest first, that matches `pred`: one already made, or else the
    /// next matching one to arrive. Fails after `timeout`, listing the calls seen.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&Call) -> bool,
    ) -> anyhow::Result<Call> {
        self.wait_until(timeout, |w| w.calls.iter().find(|c| pred(c)).cloned())
            .await
            .map_err(|e| e.context(format!("no matching call; calls: {}", self.summary())))
    }

    /// Waits until at least `n` calls match `pred`, then returns all matching calls.
    pub async fn wait_for_count(
        &self,
        timeout: Duration,
        n: usize,
        pred: impl Fn(&Call) -> bool,
    ) -> anyhow::Result<Vec<Call>> {
        self.wait_until(timeout, |w| {
            let matching: Vec<Call> = w.calls.iter().filter(|c| pred(c)).cloned().collect();
            (matching.len() >= n).then_some(matching)
        })
        .await
        .map_err(|e| {
            e.context(format!(
                "fewer than {n} matching calls; calls: {}",
                self.summary()
            ))
        })
    }

    /// Waits until every queued update has been confirmed by a later offset.
    pub async fn wait_updates_confirmed(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, |w| w.queue.is_empty().then_some(()))
            .await
            .map_err(|e| e.context(format!("{} updates still pending", self.pending_updates())))
    }

    /// The bot's text messages in a chat and thread (`None` = outside any topic), as
    /// they are now (after edits, without deleted ones), in send order.
    pub fn messages_in(&self, chat_id: i64, thread_id: Option<i32>) -> Vec<Message> {
        self.world().messages_in(chat_id, thread_id)
    }

    /// `(message_thread_id, name)` of each topic of a chat, in creation order.
    pub fn topics(&self, chat_id: i64) -> Vec<(i32, String)> {
        self.world().topics(chat_id)
    }

    /// Every file uploaded with `sendDocument`, in order.
    pub fn documents(&self) -> Vec<Document> {
        self.world().documents.clone()
    }

    /// The `answerCallbackQuery` calls (failed ones included), in order.
    pub fn callback_answers(&self) -> Vec<Call> {
        self.calls_named("answerCallbackQuery")
    }

    /// `(command, description)` set with `setMyCommands` for the default scope.
    pub fn my_commands(&self) -> Vec<(String, String)> {
        self.world().my_commands()
    }

    /// The next call of `method` fails with `status` (a 429 carries
    /// `parameters.retry_after`, 1 s if `retry_after` is `None`). Several queue up in
    /// order. Works for `getUpdates` too.
    pub fn fail_next(&self, method: &str, status: u16, retry_after: Option<u32>) {
        self.world().fail_next(method, status, retry_after);
    }

    /// The next sendMessage or editMessageText with a `parse_mode` fails with 400
    /// "Bad Request: can't parse entities: ...", whatever its text. Requests without
    /// `parse_mode` pass and leave it armed. Several queue up.
    pub fn reject_entities_next(&self) {
        self.world().reject_entities_next();
    }

    /// Update ids handed out by `getUpdates`, in order (an id appears again if it was
    /// handed out again before being confirmed).
    pub fn updates_served(&self) -> Vec<i64> {
        self.world().served.clone()
    }

    /// Updates queued and not yet confirmed by a later offset.
    pub fn pending_updates(&self) -> usize {
        self.world().queue.len()
    }

    /// Waits until a getUpdates long poll is being held with nothing to hand out, i.e.
    /// the bot is idle and listening.
    pub async fn wait_for_poll(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, |w| (w.waiting_polls > 0).then_some(()))
            .await
            .map_err(|e| e.context("no getUpdates long poll is waiting"))
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.shared.world)
    }

    /// Calls so far, one line each, for error messages.
    fn summary(&self) -> String {
        let calls = self.calls();
        if calls.is_empty() {
            return "none".to_owned();
        }
        calls
            .iter()
            .map(|c| {
                let params = crate::state::clip(c.params.to_string(), 200);
                format!("\n  {} {} {params}", c.status, c.method)
            })
            .collect()
    }

    /// Re-checks `check` on every change of the world until it yields, or `timeout`.
    async fn wait_until<T>(
        &self,
        timeout: Duration,
        check: impl FnMut(&World) -> Option<T>,
    ) -> anyhow::Result<T> {
        crate::state::wait_until(
            &self.shared.world,
            &self.shared.version,
            timeout,
            "fake Telegram API",
            check,
        )
        .await
    }
}

/// Aborts the server task and ends pending long polls when the last handle goes.
struct ServerTask {
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        lock(&self.shared.world).closed = true;
        self.shared.changed();
        self.task.abort();
    }
}

/// State shared by the handlers and the handles.
struct Shared {
    token: String,
    world: Mutex<World>,
    /// Bumped after every change a waiter may care about: a call recorded, an update
    /// queued or confirmed, a new poller, the fake closing.
    version: watch::Sender<u64>,
    /// Files users sent, by `file_id` ([`files`]).
    files: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// The `file_id` of every download, in order.
    downloads: Mutex<Vec<String>>,
}

impl Shared {
    fn changed(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Records a call and wakes the waiters.
    fn record(&self, call: Call) {
        lock(&self.world).calls.push(call);
        self.changed();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// Every request: `/bot<token>/<method>`.
async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = SystemTime::now();
    let path = req.uri().path().to_owned();
    let fail = |method: &str, params: Value, failure: Failure| {
        if method.eq_ignore_ascii_case("getUpdates") {
            return failure_response(&failure);
        }
        let call = Call {
            method: method.to_owned(),
            params,
            at,
            chat_id: None,
            thread_id: None,
            result: failure.body(),
            status: failure.code,
        };
        shared.record(call);
        failure_response(&failure)
    };
    if let Some(rest) = path.strip_prefix("/file/bot") {
        return files::download(&shared, rest);
    }
    let Some((token, method)) = split_path(&path) else {
        let failure = Failure {
            code: 404,
            description: "Not Found".to_owned(),
            retry_after: None,
        };
        return fail(&path, Value::Null, failure);
    };
    if token != shared.token {
        let failure = Failure {
            code: 401,
            description: "Unauthorized".to_owned(),
            retry_after: None,
        };
        return fail(&method, Value::Null, failure);
    }
    let params = match read_params(req).await {
        Ok(p) => p,
        Err(failure) => return fail(&method, Value::Null, failure),
    };
    let Some(method) = world::canonical_method(&method) else {
        let failure = Failure {
            code: 404,
            description: "Not Found: method not found".to_owned(),
            retry_after: None,
        };
        return fail(&method, params.to_json(), failure);
    };
    if method == "getUpdates" {
        return get_updates(&shared, &params).await;
    }
    if method == "getFile" {
        return files::get_file(&shared, &params, at);
    }
    let handled = {
        let mut world = lock(&shared.world);
        match world.take_fault(method) {
            Some(failure) => world::Handled {
                result: Err(failure),
                chat_id: params.int("chat_id").ok().flatten(),
                thread_id: None,
            },
            None => world.dispatch(method, &params),
        }
    };
    let (response, result, status) = match handled.result {
        Ok(result) => (ok_response(&result), result, 200),
        Err(failure) => (failure_response(&failure), failure.body(), failure.code),
    };
    tracing::debug!(method, status, "fake Telegram API: call");
    shared.record(Call {
        method: method.to_owned(),
        params: params.to_json(),
        at,
        chat_id: handled.chat_id,
        thread_id: handled.thread_id,
        result,
        status,
    });
    response
}

/// Long polling: answers at once if updates are queued, else holds the request until
/// one is, `timeout` passes, a newer getUpdates takes over, or the fake closes.
async fn get_updates(shared: &Shared, params: &Params) -> Response {
    let args = (|| -> Result<_, Failure> {
        let offset = params.int("offset")?.unwrap_or(0);
        let limit = params.int("limit")?.unwrap_or(100).clamp(1, 100);
        let timeout = params.int("timeout")?.unwrap_or(0).max(0);
        Ok((offset, limit, timeout))
    })();
    let (offset, limit, timeout) = match args {
        Ok(a) => a,
        Err(failure) => return failure_response(&failure),
    };
    let limit = usize::try_from(limit).unwrap_or(100);
    let timeout = Duration::from_secs(timeout.unsigned_abs()).min(MAX_POLL_TIMEOUT);
    let deadline = Instant::now() + timeout;

    // Subscribed before the first look, so no change after it is missed.
    let mut changes = shared.version.subscribe();
    let ticket = {
        let mut world = lock(&shared.world);
        if let Some(failure) = world.take_fault("getUpdates") {
            return failure_response(&failure);
        }
        world.confirm(offset);
        world.poll_ticket += 1;
        world.poll_ticket
    };
    // Confirmed updates and the new ticket matter to waiters and to older pollers.
    shared.changed();
    let mut waiting: Option<WaitingPoll<'_>> = None;
    loop {
        // Decided under the lock, answered after it is released (the `WaitingPoll`
        // guard locks the world again when it is dropped).
        let outcome = {
            let mut world = lock(&shared.world);
            if world.poll_ticket != ticket {
                Some(Err(Failure::injected(409, None)))
            } else if world.closed {
                Some(Ok(Vec::new()))
            } else if !world.queue.is_empty() {
                Some(Ok(world.take_updates(limit)))
            } else {
                None
            }
        };
        match outcome {
            Some(Ok(updates)) => {
                tracing::debug!(count = updates.len(), "fake Telegram API: updates served");
                return ok_response(&Value::Array(updates));
            }
            Some(Err(conflict)) => return failure_response(&conflict),
            None => {}
        }
        if timeout.is_zero() {
            return ok_response(&json!([]));
        }
        if waiting.is_none() {
            waiting = Some(WaitingPoll::new(shared));
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return ok_response(&json!([])),
        }
    }
}

/// Counts a getUpdates request as held while it lives (also when the client goes away
/// and the handler is dropped).
struct WaitingPoll<'a>(&'a Shared);

impl<'a> WaitingPoll<'a> {
    fn new(shared: &'a Shared) -> Self {
        lock(&shared.world).waiting_polls += 1;
        shared.changed();
        Self(shared)
    }
}

impl Drop for WaitingPoll<'_> {
    fn drop(&mut self) {
        let mut world = lock(&self.0.world);
        world.waiting_polls = world.waiting_polls.saturating_sub(1);
        drop(world);
        self.0.changed();
    }
}

/// `/bot<token>/<method>` → (token, method), percent-decoded.
fn split_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/bot")?;
    let (token, method) = rest.split_once('/')?;
    if method.is_empty() || method.contains('/') {
        return None;
    }
    Some((percent_decode(token), percent_decode(method)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request's parameters from the query string and the body (JSON, multipart or
/// urlencoded form).
async fn read_params(req: Request) -> Result<Params, Failure> {
    let mut params = Params::default();
    if req.uri().query().is_some() {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
            .map_err(|e| Failure::bad(format!("can't parse query string: {e}")))?;
        for (k, v) in pairs {
            params.fields.insert(k, Value::String(v));
        }
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(req, &())
            .await
            .map_err(|e| Failure::bad(format!("bad multipart body: {e}")))?;
        let bad = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Failure::bad(format!("bad multipart body: {e}"))
            }
        };
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or("").to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let bytes = field.bytes().await.map_err(bad)?;
            match file_name {
                Some(file_name) => {
                    let upload = Upload {
                        file_name,
                        bytes: bytes.to_vec(),
                    };
                    params.files.insert(name, upload);
                }
                None => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    params.fields.insert(name, Value::String(text));
                }
            }
        }
        return Ok(params);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(req, &())
            .await
            .map_err(|e| Failure::bad(format!("can't parse form body: {e}")))?;
        for (k, v) in pairs {
            params.fields.insert(k, Value::String(v));
        }
        return Ok(params);
    }
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) => {
            params.fields.extend(fields);
            Ok(params)
        }
        Ok(_) => Err(Failure::bad("parameters must be a JSON object")),
        Err(e) => Err(Failure::bad(format!("can't parse JSON body: {e}"))),
    }
}

fn too_large() -> Failure {
    Failure {
        code: 413,
        description: "Request Entity Too Large".to_owned(),
        retry_after: None,
    }
}

fn ok_response(result: &Value) -> Response {
    json_response(StatusCode::OK, &json!({ "ok": true, "result": result }))
}

fn failure_response(failure: &Failure) -> Response {
    let status = StatusCode::from_u16(failure.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &failure.body())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, Body::from(body.to_string())).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
