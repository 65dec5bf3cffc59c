//! A fake Discord on loopback — REST API v10 and the gateway on one port — good enough
//! for the real `serenity` 0.12 client to run against it unchanged:
//! `HttpBuilder::new(token).proxy(fake.api_url()).ratelimiter_disabled(true)` for REST
//! (serenity swaps `https://discord.com` for the proxy, so requests arrive under
//! `/api/v10`), and `GET /api/v10/gateway` hands out [`FakeDiscord::gateway_url`] for
//! the WebSocket.
//!
//! A test:
//!
//! - sets up the guild ([`GUILD_ID`]): text channels, DM channels, members
//!   ([`FakeDiscord::text_channel`], [`FakeDiscord::dm_channel`], [`FakeDiscord::member`]);
//! - injects what users do ([`FakeDiscord::user_message`], [`FakeDiscord::slash_command`],
//!   [`FakeDiscord::click_button`], [`FakeDiscord::select_menu`]), each a gateway dispatch;
//! - reads what the bot did: every REST request as a [`Call`] with its arrival time, the
//!   current state of every [`Message`], threads, [`InteractionState`]s, registered
//!   commands, every gateway [`Frame`] both ways; and waits on any of it without polling
//!   ([`FakeDiscord::wait_for`], [`FakeDiscord::wait_ready`], [`FakeDiscord::wait_gateway`]);
//! - injects faults: failed or rate-limited requests ([`FakeDiscord::fail_next`]),
//!   dropped or closed gateway connections, op 7 and op 9, missing heartbeat ACKs.
//!
//! # What is checked like the real API
//!
//! REST: the `Authorization: Bot <token>` header (401 `{"message":"401: Unauthorized",
//! "code":0}`; interaction callbacks and webhooks need none, as on Discord); unknown
//! channels (10003), messages (10008), interactions (10062) and webhooks (10015,
//! 50027); non-snowflake ids; invalid JSON (50109); message content (2000 UTF-16 units),
//! emptiness (50006), embeds, components, flags and `allowed_mentions` (see `validate`);
//! editing another user's message (50005); threads only on guild text channels (50024)
//! and one per message (160004); the 3 s window to answer an interaction
//! ([`FakeDiscord::set_interaction_deadline`]), a second callback (40060), follow-ups
//! only after the callback, tokens valid 15 minutes; command bulk overwrites (names,
//! descriptions, options). Errors have Discord's shape `{"code","message","errors"}`
//! and HTTP status, so serenity maps them as in production.
//!
//! Gateway: see `gateway` (HELLO, heartbeats, IDENTIFY/READY, RESUME with replay,
//! close codes). Intents are applied like Discord: without GUILD_MESSAGES no guild
//! MESSAGE_CREATE/UPDATE/DELETE, without DIRECT_MESSAGES none for DMs, without GUILDS no
//! THREAD_CREATE, and without MESSAGE_CONTENT guild messages arrive with empty content,
//! embeds, attachments and components unless the bot wrote them or is mentioned.
//!
//! Like Discord, the bot's own messages come back as MESSAGE_CREATE (and edits as
//! MESSAGE_UPDATE, deletions as MESSAGE_DELETE), except ephemeral ones.
//!
//! # What is not
//!
//! Rate limits are not enforced (judge pacing from [`Call::at`]; inject 429s with
//! [`FakeDiscord::fail_next`]), and successful replies carry no `X-RateLimit-*`
//! headers. Permissions are fixed (the bot may do everything above). No reactions,
//! pins, modals, autocomplete, subcommand invocations, components v2, user-uploaded
//! attachments, guild objects (GUILD_CREATE), or "thread created" system messages.
//! Some nested error codes inside `errors` are our best reading (see `validate`).
//!
//! # serenity on startup and on faults
//!
//! `Client::start` calls `GET /gateway`, connects to `{url}?v=10`, receives HELLO,
//! sends IDENTIFY (`token: "Bot <secret>"`, `compress: true`, which the fake ignores:
//! it always sends text frames) and heartbeats every `heartbeat_interval`
//! ([`FakeDiscord::set_heartbeat_interval`]; the default is Discord's 41250 ms) with
//! `d` = its last sequence number. If `GET /gateway` fails, serenity silently falls back
//! to `wss://gateway.discord.gg`, so do not inject failures there.
//!
//! As tests/discord.rs checks: after a resumable close (4000), a dropped TCP connection
//! or op 7, serenity RESUMEs on a new connection at once (it sends RESUME without waiting
//! for HELLO). After op 9 `d: false` or a heartbeat without ACK it restarts the shard
//! and IDENTIFYs again, about 5 s later (its shard manager waits out a 5 s shutdown
//! timeout). serenity runs each event handler call in its own task, so a handler may see
//! events out of order (e.g. RESUMED before the replayed messages).
//!
//! # Layout
//!
//! - this module: [`FakeDiscord`], the public records, the HTTP side (auth, bodies,
//!   injected failures, responses);
//! - `gateway`: the WebSocket connections, sessions, replay and close codes;
//! - `world`: channels, messages, threads, commands, the REST endpoints;
//! - `interactions`: slash commands and components, callbacks, follow-ups;
//! - `shapes`: Discord's JSON objects; `validate`: Discord's body checks.

mod connection;
mod error;
mod gateway;
mod interactions;
mod model;
mod shapes;
mod uploads;
mod validate;
mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::lock;

use error::ApiError;
pub use gateway::CLOSE_FRAME_OP;
pub use uploads::UserAttachment;
use world::{ApiRequest, Upload, World};

/// The bot's user id (snowflake-sized).
pub const BOT_USER_ID: u64 = 900_000_000_000_000_001;
/// The application id; equal to the bot's user id, as Discord makes it.
pub const APPLICATION_ID: u64 = BOT_USER_ID;
/// The one guild the bot is in.
pub const GUILD_ID: u64 = 900_000_000_000_000_002;
/// The bot's username.
pub const BOT_USERNAME: &str = "ccrm-test-bot";
/// HELLO's `heartbeat_interval` unless [`FakeDiscord::set_heartbeat_interval`] says
/// otherwise (Discord's usual value).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 41_250;
/// How long after INTERACTION_CREATE a callback is accepted, unless
/// [`FakeDiscord::set_interaction_deadline`] says otherwise (Discord's 3 s).
pub const DEFAULT_INTERACTION_DEADLINE: Duration = Duration::from_secs(3);

/// Gateway intent bits the fake applies.
pub mod intents {
    /// Guild and thread events (THREAD_CREATE, THREAD_UPDATE).
    pub const GUILDS: u64 = 1 << 0;
    /// MESSAGE_CREATE/UPDATE/DELETE in guild channels and threads.
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    /// MESSAGE_CREATE/UPDATE/DELETE in DMs.
    pub const DIRECT_MESSAGES: u64 = 1 << 12;
    /// Content, embeds, attachments and components of guild messages (privileged).
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
}

/// Largest request body: ten 10 MiB files and the JSON.
const MAX_BODY_BYTES: usize = 110 * 1024 * 1024;

/// One REST request the bot made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Upper case, e.g. `POST`.
    pub method: String,
    /// Without `/api/v10` and the query, e.g. `/channels/1/messages`.
    pub path: String,
    /// Method and templated path, e.g. `POST /channels/{id}/messages` (ids → `{id}`,
    /// interaction and webhook tokens → `{token}`).
    pub route: String,
    /// The JSON body (`Null` if none); for multipart, `payload_json` parsed, other text
    /// fields as strings, plus `"files": [{"field","filename","size"}]`.
    pub body: Value,
    /// When the request arrived.
    pub at: SystemTime,
    /// HTTP status of the reply.
    pub status: u16,
    /// The reply body (`Null` for 204 No Content).
    pub response: Value,
    /// The channel or thread acted on (an interaction's channel for callbacks and
    /// webhooks).
    pub channel: Option<u64>,
    /// Seconds to wait, on injected 429s.
    pub retry_after: Option<f64>,
}

impl Call {
    /// True for a 2xx reply.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The message content sent: `content`, or `data.content` of an interaction
    /// callback.
    pub fn content(&self) -> Option<&str> {
        self.body
            .get("content")
            .or_else(|| self.body.get("data").and_then(|d| d.get("content")))
            .and_then(Value::as_str)
    }

    /// Discord's error `code` of a failed reply (`None` on success and for 429s).
    pub fn error_code(&self) -> Option<u64> {
        if self.ok() {
            return None;
        }
        self.response.get("code").and_then(Value::as_u64)
    }

    /// True if the call was to `route`, written like [`Call::route`] (placeholders may
    /// have any name: `{channel_id}` matches `{id}`).
    pub fn is(&self, route: &str) -> bool {
        self.route == world::normalize_route(route)
    }
}

/// A message as it is now (after edits): a user's, the bot's, or an interaction
/// response or follow-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: u64,
    /// Channel or thread.
    pub channel: u64,
    pub author: u64,
    /// Discord's message type: 0 default, 19 reply, 20 slash command response.
    pub kind: u8,
    pub content: String,
    /// As sent.
    pub embeds: Vec<Value>,
    /// As sent (action rows).
    pub components: Vec<Value>,
    pub attachments: Vec<Attachment>,
    pub flags: u64,
    /// Flag 64: seen only by the interaction's user; not in the channel's history.
    pub ephemeral: bool,
    /// The interaction id, for responses and follow-ups.
    pub interaction: Option<u64>,
    /// The message it replies to.
    pub reply_to: Option<u64>,
    /// The thread started from it.
    pub thread: Option<u64>,
    /// Users it pinged (after `allowed_mentions`).
    pub mentions: Vec<u64>,
    /// Successful edits.
    pub edits: u32,
    pub created_at: SystemTime,
    pub edited_at: Option<SystemTime>,
}

impl Message {
    /// `custom_id` of every button and select menu, row by row.
    pub fn custom_ids(&self) -> Vec<String> {
        self.components
            .iter()
            .filter_map(|r| r.get("components").and_then(Value::as_array))
            .flatten()
            .filter_map(|c| c.get("custom_id").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// The component with this `custom_id`.
    pub fn component(&self, custom_id: &str) -> Option<&Value> {
        self.components
            .iter()
            .filter_map(|r| r.get("components").and_then(Value::as_array))
            .flatten()
            .find(|c| c.get("custom_id").and_then(Value::as_str) == Some(custom_id))
    }
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub bytes: Vec<u8>,
    /// The part's `Content-Type`, if it had one.
    pub content_type: Option<String>,
}

/// What [`FakeDiscord::slash_command`] and the component injectors return: what the
/// bot needs to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub id: u64,
    pub token: String,
}

/// An interaction as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionState {
    pub id: u64,
    /// 2 (application command) or 3 (message component).
    pub kind: u8,
    pub channel: u64,
    pub user: u64,
    /// The command name, or the component's `custom_id`.
    pub name: String,
    /// The message a component is on.
    pub message: Option<u64>,
    /// When INTERACTION_CREATE was first written to a socket; the creation time while
    /// it has not been (no live connection: it waits in the session). The callback
    /// deadline counts from here.
    pub dispatched_at: SystemTime,
    /// Whether INTERACTION_CREATE has been written to a socket.
    pub written: bool,
    pub acked_at: Option<SystemTime>,
    /// The callback type: 4 message, 5 deferred message, 6 deferred update, 7 update.
    pub ack_type: Option<u8>,
    /// The original response: the new message (4, 5) or the component's message (6, 7).
    pub original: Option<u64>,
    /// Follow-up message ids, in order.
    pub followups: Vec<u64>,
}

/// One gateway frame, either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub at: SystemTime,
    pub from_client: bool,
    /// The opcode; [`CLOSE_FRAME_OP`] for close frames and undecodable text.
    pub op: u8,
    pub t: Option<String>,
    pub s: Option<u64>,
    pub d: Value,
    /// Connection number, from 1 in connection order.
    pub conn: u64,
    /// The code of a close frame (1005 if it had none).
    pub close: Option<u16>,
}

/// A snapshot of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStatus {
    /// Connections ever opened.
    pub connections: u64,
    /// Connections open now (not being closed).
    pub open: usize,
    /// A connection holds the current session.
    pub live: bool,
    /// ... and READY or RESUMED was written to it.
    pub ready: bool,
    pub session_id: Option<String>,
    /// The current session's IDENTIFY intents.
    pub intents: Option<u64>,
    /// The current session's last dispatch sequence number.
    pub last_seq: Option<u64>,
    /// The highest `d` of a heartbeat on the live connection.
    pub heartbeat_seq: Option<u64>,
    /// IDENTIFYs received (rejected ones included).
    pub identifies: usize,
    /// Successful RESUMEs.
    pub resumes: usize,
}

/// Handle to a running fake Discord. Clone it freely; the server stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct FakeDiscord {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<ServerTask>,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeDiscord {
    /// Binds `127.0.0.1:0`, serves REST under `/api/v10` and the gateway at `/gateway`
    /// on the same port. `token` is the bot token, with or without `Bot `. Requests with
    /// another token get 401 `{"message":"401: Unauthorized","code":0}`; an IDENTIFY or
    /// RESUME with another token is closed with 4004.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake Discord to 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("reading the fake Discord's local address")?;
        let secret = token.strip_prefix("Bot ").unwrap_or(token).to_owned();
        let base_url = format!("http://{addr}");
        let gw = gateway::Gateway::new(
            &secret,
            format!("ws://{addr}/gateway"),
            DEFAULT_HEARTBEAT_INTERVAL_MS,
        );
        let mut world = World::new(base_url, gw);
        world.interaction_deadline = DEFAULT_INTERACTION_DEADLINE;
        let shared = Arc::new(Shared {
            token: secret,
            world: Mutex::new(world),
            version: watch::Sender::new(0),
        });
        let app = router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(cause = ?err, "fake Discord stopped");
            }
        });
        tracing::debug!(%addr, "fake Discord listening");
        Ok(Self {
            _server: Arc::new(ServerTask {
                task,
                shared: Arc::clone(&shared),
            }),
            shared,
            addr,
        })
    }

    /// `http://127.0.0.1:PORT`, the value for serenity's `HttpBuilder::proxy`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/gateway`, what `GET /gateway` returns.
    pub fn gateway_url(&self) -> String {
        format!("ws://{}/gateway", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// HELLO's `heartbeat_interval` for connections opened from now on.
    pub fn set_heartbeat_interval(&self, ms: u64) {
        self.world().gw.heartbeat_interval = ms;
    }

    /// How long after INTERACTION_CREATE was written a callback is still accepted
    /// (afterwards 404 10062 "Unknown interaction"); default 3 s.
    pub fn set_interaction_deadline(&self, deadline: Duration) {
        self.world().interaction_deadline = deadline;
    }

    // ---- world set-up ----------------------------------------------------------------

    /// A new guild text channel (type 0) in [`GUILD_ID`]; returns its id.
    pub fn text_channel(&self, name: &str) -> u64 {
        self.world().text_channel(name)
    }

    /// The DM channel (type 1) between the bot and `user` (the same id on every call).
    pub fn dm_channel(&self, user: u64) -> u64 {
        self.world().dm_channel(user)
    }

    /// Makes `user` a guild member named `name` with these roles. Users never set up
    /// are members named `user<id>` with no roles.
    pub fn member(&self, user: u64, name: &str, roles: &[u64]) {
        self.world().member(user, name, roles);
    }

    /// Sets (or with `None` clears) `user`'s nickname in the guild, which member objects
    /// then carry as `nick` (a user never set up becomes a member named `user<id>`).
    pub fn set_nick(&self, user: u64, nick: Option<&str>) {
        self.world().set_nick(user, nick);
    }

    // ---- what users do ---------------------------------------------------------------

    /// MESSAGE_CREATE from `user` in `channel` (text channel, thread or DM); returns the
    /// message id. `<@id>`, `<@&role>` and `@everyone` in the content are mentions.
    ///
    /// # Panics
    ///
    /// If the channel does not exist, is another user's DM, or the content is empty or
    /// over 2000 characters: a real user could not send it.
    pub fn user_message(&self, channel: u64, user: u64, content: &str) -> u64 {
        let result = self.world().user_message(channel, user, content);
        self.shared.changed();
        result.unwrap_or_else(|e| panic!("FakeDiscord::user_message: {e}"))
    }

    /// MESSAGE_CREATE of a user's message with `files` attached (`content` may be
    /// empty), a voice message when `voice`. The attachments' URLs point at this fake,
    /// which serves them without a token, as Discord's CDN does.
    ///
    /// # Panics
    ///
    /// If the channel is not set up, or there are no or more than 10 files.
    pub fn user_files(
        &self,
        channel: u64,
        user: u64,
        content: &str,
        files: Vec<UserAttachment>,
        voice: bool,
    ) -> u64 {
        let result = self
            .world()
            .user_files(channel, user, content, files, voice);
        self.shared.changed();
        result.unwrap_or_else(|e| panic!("FakeDiscord::user_files: {e}"))
    }

    /// How many times users' attachments were downloaded.
    pub fn attachment_downloads(&self) -> usize {
        self.world().attachment_downloads
    }

    /// INTERACTION_CREATE type 2 (chat input command) for a command the bot registered
    /// (the guild's first in guild channels, then global ones; only global ones usable
    /// in DMs). `options` are by name, typed as registered (string, integer,
    /// boolean, number).
    ///
    /// # Panics
    ///
    /// If the command or an option is not registered, a required option is missing, or
    /// a value does not fit the option (type, choices, lengths, range): a real user could
    /// not send it.
    pub fn slash_command(
        &self,
        channel: u64,
        user: u64,
        name: &str,
        options: &[(&str, &str)],
    ) -> Interaction {
        let result = self.world().slash_command(channel, user, name, options);
        self.shared.changed();
        let (id, token) = result.unwrap_or_else(|e| panic!("FakeDiscord::slash_command: {e}"));
        Interaction { id, token }
    }

    /// INTERACTION_CREATE type 3 (message component) for the button `custom_id` on the
    /// bot's message `message` (the payload carries the message as it is now).
    ///
    /// # Panics
    ///
    /// If that message has no such button, it is disabled or a link, or `user` cannot see
    /// the message (another user's DM or ephemeral response).
    pub fn click_button(&self, message: u64, user: u64, custom_id: &str) -> Interaction {
        let result = self.world().click_button(message, user, custom_id);
        self.shared.changed();
        let (id, token) = result.unwrap_or_else(|e| panic!("FakeDiscord::click_button: {e}"));
        Interaction { id, token }
    }

    /// Same for a string select menu: `values` chosen from its options.
    ///
    /// # Panics
    ///
    /// If there is no such enabled select, a value is not one of its options, or the
    /// count is outside `min_values..=max_values`.
    pub fn select_menu(
        &self,
        message: u64,
        user: u64,
        custom_id: &str,
        values: &[&str],
    ) -> Interaction {
        let result = self.world().select_menu(message, user, custom_id, values);
        self.shared.changed();
        let (id, token) = result.unwrap_or_else(|e| panic!("FakeDiscord::select_menu: {e}"));
        Interaction { id, token }
    }

    // ---- what the bot did ------------------------------------------------------------

    /// Every REST request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.world().calls.clone()
    }

    /// The calls to one route (see [`Call::is`]), in arrival order.
    pub fn calls_to(&self, route: &str) -> Vec<Call> {
        let route = world::normalize_route(route);
        self.world()
            .calls
            .iter()
            .filter(|c| c.route == route)
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

    /// Messages in a channel or thread as they are now (users', the bot's, interaction
    /// responses and follow-ups, ephemeral ones included; deleted ones not), in creation
    /// order.
    pub fn messages_in(&self, channel: u64) -> Vec<Message> {
        self.world().messages_in(channel)
    }

    /// A message by id, as it is now.
    pub fn message(&self, id: u64) -> Option<Message> {
        self.world().message(id)
    }

    /// `(thread id, name)` of the threads of a channel, in creation order.
    pub fn threads(&self, parent: u64) -> Vec<(u64, String)> {
        self.world().threads(parent)
    }

    /// An interaction by id, as it is now.
    pub fn interaction(&self, id: u64) -> Option<InteractionState> {
        self.world().interaction(id)
    }

    /// Application commands registered (bulk overwrite) for the guild (`Some(GUILD_ID)`)
    /// or globally (`None`), as the API returns them.
    pub fn commands(&self, guild: Option<u64>) -> Vec<Value> {
        self.world().commands(guild)
    }

    /// Every gateway frame both ways, in order, with times.
    pub fn gateway_frames(&self) -> Vec<Frame> {
        self.world().gw.frames.clone()
    }

    /// IDENTIFYs received (rejected ones included).
    pub fn identifies(&self) -> usize {
        self.world().gw.identifies
    }

    /// Successful RESUMEs.
    pub fn resumes(&self) -> usize {
        self.world().gw.resumes
    }

    /// The intents of the current session's IDENTIFY.
    pub fn identified_intents(&self) -> Option<u64> {
        self.world().gw.intents()
    }

    /// The current session's last dispatch sequence number.
    pub fn last_seq(&self) -> Option<u64> {
        self.world().gw.status().last_seq
    }

    /// A snapshot of the gateway: connections, session, sequence numbers, counters.
    pub fn gateway_status(&self) -> GatewayStatus {
        self.world().gw.status()
    }

    /// Waits until `pred` holds for the gateway status; returns that status.
    pub async fn wait_gateway(
        &self,
        timeout: Duration,
        pred: impl Fn(&GatewayStatus) -> bool,
    ) -> anyhow::Result<GatewayStatus> {
        self.wait_until(timeout, |w| {
            let status = w.gw.status();
            pred(&status).then_some(status)
        })
        .await
        .map_err(|e| e.context(format!("gateway: {:?}", self.gateway_status())))
    }

    /// Waits until a gateway connection is live and READY or RESUMED was written to it;
    /// returns the session id.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<String> {
        let status = self.wait_gateway(timeout, |s| s.ready).await?;
        status.session_id.context("ready without a session")
    }

    /// Waits until the live connection sent a heartbeat with `d >= seq`: the client has
    /// received every dispatch of the session up to `seq`.
    pub async fn wait_heartbeat_seq(&self, seq: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_gateway(timeout, |s| s.heartbeat_seq.is_some_and(|h| h >= seq))
            .await
            .map(|_| ())
    }

    /// The first gateway frame, oldest first, that matches `pred`: one already seen,
    /// or else the next matching one.
    pub async fn wait_for_frame(
        &self,
        timeout: Duration,
        pred: impl Fn(&Frame) -> bool,
    ) -> anyhow::Result<Frame> {
        self.wait_until(timeout, |w| w.gw.frames.iter().find(|f| pred(f)).cloned())
            .await
            .map_err(|e| e.context("no matching gateway frame"))
    }

    /// Waits until at least `n` gateway frames match `pred`, then returns them all.
    pub async fn wait_for_frame_count(
        &self,
        timeout: Duration,
        n: usize,
        pred: impl Fn(&Frame) -> bool,
    ) -> anyhow::Result<Vec<Frame>> {
        self.wait_until(timeout, |w| {
            let matching: Vec<Frame> = w.gw.frames.iter().filter(|f| pred(f)).cloned().collect();
            (matching.len() >= n).then_some(matching)
        })
        .await
        .map_err(|e| e.context(format!("fewer than {n} matching gateway frames")))
    }

    // ---- faults ----------------------------------------------------------------------

    /// The next REST request matching `route` (method + templated path, e.g.
    /// `"POST /channels/{id}/messages"`, `"POST /interactions/{id}/{token}/callback"`)
    /// fails with `status`, after the token check and before anything else. A 429
    /// answers like Discord: body `{"message":"You are being rate limited.",
    /// "retry_after": secs, "global": false}` and headers `Retry-After` (whole seconds,
    /// rounded up), `X-RateLimit-Limit: 5`, `X-RateLimit-Remaining: 0`,
    /// `X-RateLimit-Reset`, `X-RateLimit-Reset-After`, `X-RateLimit-Bucket`,
    /// `X-RateLimit-Scope: user` (`retry_after` defaults to 1 s). Several queue up in
    /// order.
    pub fn fail_next(&self, route: &str, status: u16, retry_after: Option<f64>) {
        self.world().fail_next(route, status, retry_after);
    }

    /// Drops the live gateway connection abruptly (TCP closed, no close frame).
    ///
    /// # Panics
    ///
    /// If no connection is live.
    pub fn drop_gateway(&self) {
        let done = self.world().gw.drop_live();
        self.shared.changed();
        assert!(
            done,
            "FakeDiscord::drop_gateway: no live gateway connection"
        );
    }

    /// Closes the live connection with a close frame `code`. Codes Discord documents
    /// as not resumable (4004, 4007, 4009–4014; e.g. 4009 session timed out) also forget
    /// the session, so a RESUME of it gets op 9 `d: false`; others (4000 unknown error,
    /// ...) leave it resumable.
    ///
    /// # Panics
    ///
    /// If no connection is live.
    pub fn close_gateway(&self, code: u16) {
        let done = self.world().gw.close_live(code);
        self.shared.changed();
        assert!(
            done,
            "FakeDiscord::close_gateway: no live gateway connection"
        );
    }

    /// Sends op 7 RECONNECT on the live connection.
    ///
    /// # Panics
    ///
    /// If no connection is live.
    pub fn request_reconnect(&self) {
        let done = self.world().gw.reconnect_live();
        self.shared.changed();
        assert!(
            done,
            "FakeDiscord::request_reconnect: no live gateway connection"
        );
    }

    /// Sends op 9 INVALID SESSION with `d = resumable` on the live connection; `false`
    /// also forgets the session (dispatches are dropped until the next IDENTIFY).
    ///
    /// # Panics
    ///
    /// If no connection is live.
    pub fn invalidate_session(&self, resumable: bool) {
        let done = self.world().gw.invalidate(resumable);
        self.shared.changed();
        assert!(
            done,
            "FakeDiscord::invalidate_session: no live gateway connection"
        );
    }

    /// While on, heartbeats get no ACK (a zombied connection; the client should
    /// reconnect).
    pub fn stop_heartbeat_acks(&self, on: bool) {
        self.world().gw.stop_acks = on;
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
                let body = crate::state::clip(c.body.to_string(), 200);
                format!("\n  {} {} {body}", c.status, c.route)
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
            "fake Discord",
            check,
        )
        .await
    }
}

/// Aborts the server task and drops gateway connections when the last handle goes.
struct ServerTask {
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        {
            let mut world = lock(&self.shared.world);
            world.closed = true;
            world.gw.close_all();
        }
        self.shared.changed();
        self.task.abort();
    }
}

/// State shared by the handlers, the gateway connections and the handles.
struct Shared {
    /// The bot token without `Bot `.
    token: String,
    world: Mutex<World>,
    /// Bumped after every change a waiter may care about.
    version: watch::Sender<u64>,
}

impl Shared {
    fn changed(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/gateway", any(gateway_upgrade))
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

/// `GET /gateway?v=10`: the WebSocket upgrade.
async fn gateway_upgrade(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let query = query_pairs(req.uri().query());
    let (mut parts, _body) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let checked = gateway::check_query(&query);
    upgrade
        .max_message_size(16 * 1024 * 1024)
        .on_upgrade(move |socket| connection::serve(shared, socket, checked))
}

/// Every REST request.
async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let at = SystemTime::now();
    let method = req.method().as_str().to_ascii_uppercase();
    let full_path = req.uri().path().to_owned();
    let query = query_pairs(req.uri().query());
    let path = full_path
        .strip_prefix("/api/v10")
        .filter(|p| p.is_empty() || p.starts_with('/'))
        .map(str::to_owned);
    let route = world::route_of(&method, path.as_deref().unwrap_or(&full_path));
    let record = |path: String, body: Value, result: Result<(u16, Value), ApiError>, channel| {
        let (status, response, retry_after) = match &result {
            Ok((status, value)) => (*status, value.clone(), None),
            Err(e) => (e.status, e.body.clone(), e.retry_after),
        };
        tracing::debug!(%route, status, "fake Discord: call");
        {
            let mut world = lock(&shared.world);
            world.calls.push(Call {
                method: method.clone(),
                path,
                route: route.clone(),
                body,
                at,
                status,
                response,
                channel,
                retry_after,
            });
        }
        shared.changed();
        reply(&route, result)
    };
    if method == "GET"
        && let Some(rest) = full_path.strip_prefix("/attachments/")
    {
        // `/attachments/{channel}/{id}/{name}`: a user's file, as the CDN serves it.
        let ids: Vec<u64> = rest
            .split('/')
            .take(2)
            .filter_map(|s| s.parse().ok())
            .collect();
        let bytes = match ids.as_slice() {
            [channel, id] => lock(&shared.world).attachment_bytes(*channel, *id),
            _ => None,
        };
        shared.changed();
        return match bytes {
            Some(b) => (StatusCode::OK, b).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let Some(path) = path else {
        return record(full_path, Value::Null, Err(ApiError::not_found()), None);
    };
    let exempt =
        path == "/gateway" || path.starts_with("/interactions/") || path.starts_with("/webhooks/");
    let authorized = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bot "))
            .is_some_and(|t| t == shared.token),
        None => exempt,
    };
    if !authorized {
        return record(path, Value::Null, Err(ApiError::unauthorized()), None);
    }
    let (body, files) = match read_body(req).await {
        Ok(read) => read,
        Err(e) => return record(path, Value::Null, Err(e), None),
    };
    let recorded_body = recorded_body(&body, &files);
    let request = ApiRequest {
        method: method.clone(),
        path: path.clone(),
        query,
        body,
        files,
    };
    let handled = {
        let mut world = lock(&shared.world);
        match world.take_fault(&route) {
            Some(failure) => world::Handled {
                result: Err(failure),
                channel: world.channel_of(&request.path),
            },
            None => world.handle(&request),
        }
    };
    record(path, recorded_body, handled.result, handled.channel)
}

/// The body as recorded in a [`Call`]: the JSON plus `files`.
fn recorded_body(body: &Value, files: &[Upload]) -> Value {
    if files.is_empty() {
        return body.clone();
    }
    let described: Vec<Value> = files
        .iter()
        .map(|f| json!({ "field": f.field, "filename": f.filename, "size": f.bytes.len() }))
        .collect();
    let mut out = match body {
        Value::Object(_) => body.clone(),
        _ => json!({}),
    };
    out["files"] = Value::Array(described);
    out
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
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
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The JSON body (`payload_json` for multipart, with other text fields added) and the
/// uploaded files.
async fn read_body(req: Request) -> Result<(Value, Vec<Upload>), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = Multipart::from_request(req, &())
            .await
            .map_err(|_| ApiError::invalid_json())?;
        let bad = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large()
            } else {
                ApiError::invalid_json()
            }
        };
        let mut body = Value::Null;
        let mut fields = serde_json::Map::new();
        let mut files = Vec::new();
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or("").to_owned();
            let filename = field.file_name().map(str::to_owned);
            let part_type = field.content_type().map(str::to_owned);
            let bytes = field.bytes().await.map_err(bad)?;
            match filename {
                Some(filename) => files.push(Upload {
                    field: name,
                    filename,
                    content_type: part_type,
                    bytes: bytes.to_vec(),
                }),
                None if name == "payload_json" => {
                    body = serde_json::from_slice(&bytes).map_err(|_| ApiError::invalid_json())?;
                }
                None => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    fields.insert(name, Value::String(text));
                }
            }
        }
        if !fields.is_empty() {
            if body.is_null() {
                body = json!({});
            }
            if let Value::Object(map) = &mut body {
                for (k, v) in fields {
                    map.entry(k).or_insert(v);
                }
            }
        }
        return Ok((body, files));
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Value::Null, Vec::new()));
    }
    let body = serde_json::from_slice(&bytes).map_err(|_| ApiError::invalid_json())?;
    Ok((body, Vec::new()))
}

/// The HTTP response for a result; 429s get Discord's rate limit headers.
fn reply(route: &str, result: Result<(u16, Value), ApiError>) -> Response {
    let (status, body, retry_after) = match result {
        Ok((204, _)) => return StatusCode::NO_CONTENT.into_response(),
        Ok((status, body)) => (status, body, None),
        Err(e) => (e.status, e.body, e.retry_after),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Body::from(body.to_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        let secs = retry_after.unwrap_or(1.0).max(0.0);
        let reset = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            + secs;
        let bucket = format!("{:016x}", fnv1a(route.as_bytes()));
        let values = [
            ("retry-after", format!("{}", secs.ceil())),
            ("x-ratelimit-limit", "5".to_owned()),
            ("x-ratelimit-remaining", "0".to_owned()),
            ("x-ratelimit-reset", format!("{reset:.3}")),
            ("x-ratelimit-reset-after", format!("{secs:.3}")),
            ("x-ratelimit-bucket", bucket),
            ("x-ratelimit-scope", "user".to_owned()),
        ];
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    response
}

/// A stable hash for rate limit bucket names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
