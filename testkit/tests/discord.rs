//! The fake Discord driven by the real serenity 0.12 client (REST through
//! `HttpBuilder::proxy`, the gateway through `Client`), by a raw WebSocket client for the
//! gateway's wire format, and by raw HTTP for the REST checks. Every payload the fake
//! emits is parsed with serenity's models. Every wait is bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ccrm_testkit::FakeDiscord;
use ccrm_testkit::discord::{
    APPLICATION_ID, BOT_USER_ID, CLOSE_FRAME_OP, Call, GUILD_ID, GatewayStatus, intents,
};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use serenity::all::{
    ButtonStyle, ChannelId, ChannelType, ClientBuilder, Command, CommandInteraction,
    CommandOptionType, ComponentInteraction, ComponentInteractionDataKind, Context,
    CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateButton, CreateCommand,
    CreateCommandOption, CreateInteractionResponse, CreateInteractionResponseFollowup,
    CreateInteractionResponseMessage, CreateMessage, CreateSelectMenu, CreateSelectMenuKind,
    CreateSelectMenuOption, CreateThread, CurrentApplicationInfo, CurrentUser,
    EditInteractionResponse, Event, EventHandler, GatewayEvent, GatewayIntents, GuildChannel,
    GuildId, Http, HttpBuilder, Interaction as SerenityInteraction, Message as SerenityMessage,
    MessageId, PrivateChannel, Ready, ResumedEvent, ShardManager,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A token of Discord's shape (three dot-separated base64 parts).
const TOKEN: &str = "OTAwMDAwMDAwMDAwMDAwMDAx.GfAkEd.fake-discord-token_for-tests";
/// A user, a second user and a role.
const ALICE: u64 = 111_111_111_111_111_111;
const BOB: u64 = 222_222_222_222_222_222;
const ROLE: u64 = 333_333_333_333_333_333;
/// Upper bound for anything the tests wait on.
const WAIT: Duration = Duration::from_secs(10);
/// Upper bound for serenity's reconnects that go through its shard restart (5 s
/// shutdown timeout, then a new boot).
const RECONNECT_WAIT: Duration = Duration::from_secs(30);
/// Upper bound for a whole test that drives the serenity client.
const TEST_LIMIT: Duration = Duration::from_secs(60);

// ---- raw HTTP ------------------------------------------------------------------------

/// A raw REST client for the fake.
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(fake: &FakeDiscord) -> Self {
        Self {
            http: client(),
            base: format!("{}/api/v10", fake.api_url()),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bot {TOKEN}"))
            .header("user-agent", "DiscordBot (https://example.invalid, 1.0)")
    }

    /// Sends a JSON request and returns the status and the parsed body (`Null` if empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        read(req.send().await?).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Registers the guild command `/ask prompt:<string>` (required) `[mode:<fast|slow>]`.
    async fn register_ask(&self) -> anyhow::Result<Value> {
        let (status, body) = self
            .put(
                &format!("/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands"),
                json!([{
                    "name": "ask",
                    "description": "Ask Claude",
                    "options": [
                        {"type": 3, "name": "prompt", "description": "What to ask", "required": true},
                        {"type": 3, "name": "mode", "description": "How", "choices": [
                            {"name": "fast", "value": "fast"}, {"name": "slow", "value": "slow"}]},
                    ],
                }]),
            )
            .await?;
        anyhow::ensure!(status == 200, "registering /ask: {status} {body}");
        Ok(body)
    }
}

/// A reqwest client whose requests give up after [`WAIT`].
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .unwrap_or_default()
}

async fn read(response: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).with_context(|| format!("reply body {bytes:?}"))?
    };
    Ok((status, body))
}

/// The `_errors[0].code` at a dotted path of a 50035 body.
fn form_error<'a>(body: &'a Value, path: &str) -> Option<&'a str> {
    let mut node = &body["errors"];
    for key in path.split('.').filter(|k| !k.is_empty()) {
        node = &node[key];
    }
    node["_errors"][0]["code"].as_str()
}

fn buttons(n: usize, prefix: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"type": 2, "style": 1, "label": format!("b{i}"), "custom_id": format!("{prefix}{i}")}))
            .collect(),
    )
}

// ---- raw gateway ---------------------------------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a raw connection received.
#[derive(Debug)]
enum Incoming {
    /// A payload: the JSON and its text.
    Payload(Value, String),
    Close(Option<u16>),
}

async fn connect(fake: &FakeDiscord) -> anyhow::Result<Ws> {
    let url = format!("{}?v=10", fake.gateway_url());
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connecting to the gateway")??;
    Ok(ws)
}

async fn recv(ws: &mut Ws) -> anyhow::Result<Incoming> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("waiting for a gateway frame")?
            .context("connection ended")?;
        match msg {
            Ok(WsMessage::Text(text)) => {
                let raw = text.as_str().to_owned();
                return Ok(Incoming::Payload(serde_json::from_str(&raw)?, raw));
            }
            Ok(WsMessage::Close(frame)) => {
                return Ok(Incoming::Close(frame.map(|f| f.code.into())));
            }
            Ok(_) => {}
            Err(e) => anyhow::bail!("gateway error: {e}"),
        }
    }
}

async fn send(ws: &mut Ws, payload: Value) -> anyhow::Result<()> {
    send_text(ws, payload.to_string()).await
}

async fn send_text(ws: &mut Ws, text: String) -> anyhow::Result<()> {
    tokio::time::timeout(WAIT, ws.send(WsMessage::text(text)))
        .await
        .context("sending a gateway frame")??;
    Ok(())
}

/// The next payload, parsed by serenity too (a close frame is an error).
async fn next_event(ws: &mut Ws) -> anyhow::Result<(Value, GatewayEvent)> {
    match recv(ws).await? {
        Incoming::Payload(value, raw) => {
            let event: GatewayEvent = serde_json::from_str(&raw)
                .with_context(|| format!("serenity cannot parse {raw}"))?;
            Ok((value, event))
        }
        Incoming::Close(code) => anyhow::bail!("closed with {code:?}"),
    }
}

/// The next dispatch (skipping heartbeat ACKs), parsed by serenity.
async fn next_dispatch(ws: &mut Ws) -> anyhow::Result<(u64, Value, Event)> {
    loop {
        let (value, event) = next_event(ws).await?;
        if let GatewayEvent::Dispatch(seq, event) = event {
            anyhow::ensure!(
                !matches!(event, Event::Unknown(_)),
                "serenity does not know {value}"
            );
            return Ok((seq, value, event));
        }
    }
}

/// The close code the server sends next (payloads before it are skipped).
async fn expect_close(ws: &mut Ws) -> anyhow::Result<Option<u16>> {
    loop {
        if let Incoming::Close(code) = recv(ws).await? {
            return Ok(code);
        }
    }
}

/// Reads HELLO, sends IDENTIFY, returns READY's `d`.
async fn identify(ws: &mut Ws, token: &str, intents: u64) -> anyhow::Result<Value> {
    let (hello, event) = next_event(ws).await?;
    anyhow::ensure!(
        matches!(event, GatewayEvent::Hello(_)),
        "expected HELLO: {hello}"
    );
    send(
        ws,
        json!({"op": 2, "d": {
            "token": token, "intents": intents, "compress": true, "large_threshold": 250,
            "shard": [0, 1],
            "properties": {"os": "linux", "browser": "test", "device": "test"},
        }}),
    )
    .await?;
    let (seq, ready, event) = next_dispatch(ws).await?;
    anyhow::ensure!(seq == 1, "READY is s=1: {ready}");
    let Event::Ready(r) = event else {
        anyhow::bail!("expected READY: {ready}");
    };
    assert_eq!(r.ready.user.id.get(), BOT_USER_ID);
    assert_eq!(r.ready.application.id.get(), APPLICATION_ID);
    Ok(ready["d"].clone())
}

const ALL_INTENTS: u64 =
    intents::GUILDS | intents::GUILD_MESSAGES | intents::DIRECT_MESSAGES | intents::MESSAGE_CONTENT;

// ---- the real serenity client --------------------------------------------------------

/// What the bot's event handler saw.
#[derive(Debug)]
enum Seen {
    Ready(String),
    Resumed,
    Message(Box<SerenityMessage>),
    Command(Box<CommandInteraction>),
    Component(Box<ComponentInteraction>),
    Thread(Box<GuildChannel>),
}

struct Recorder(mpsc::UnboundedSender<Seen>);

#[serenity::async_trait]
impl EventHandler for Recorder {
    async fn ready(&self, _: Context, ready: Ready) {
        let _ = self.0.send(Seen::Ready(ready.session_id));
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        let _ = self.0.send(Seen::Resumed);
    }

    async fn message(&self, _: Context, message: SerenityMessage) {
        let _ = self.0.send(Seen::Message(Box::new(message)));
    }

    async fn interaction_create(&self, _: Context, interaction: SerenityInteraction) {
        let seen = match interaction {
            SerenityInteraction::Command(c) => Seen::Command(Box::new(c)),
            SerenityInteraction::Component(c) => Seen::Component(Box::new(c)),
            _ => return,
        };
        let _ = self.0.send(seen);
    }

    async fn thread_create(&self, _: Context, thread: GuildChannel) {
        let _ = self.0.send(Seen::Thread(Box::new(thread)));
    }
}

/// A running serenity `Client` against the fake, and what its handler saw.
struct Bot {
    http: Arc<Http>,
    shards: Arc<ShardManager>,
    events: mpsc::UnboundedReceiver<Seen>,
    task: JoinHandle<()>,
}

impl Bot {
    async fn start(fake: &FakeDiscord, intents: GatewayIntents) -> anyhow::Result<Self> {
        let http = HttpBuilder::new(TOKEN)
            .proxy(fake.api_url())
            .ratelimiter_disabled(true)
            .build();
        let (tx, events) = mpsc::unbounded_channel();
        let mut client = ClientBuilder::new_with_http(http, intents)
            .event_handler(Recorder(tx))
            .await
            .context("building the serenity client")?;
        let http = Arc::clone(&client.http);
        let shards = Arc::clone(&client.shard_manager);
        let task = tokio::spawn(async move {
            if let Err(e) = client.start().await {
                eprintln!("serenity client stopped: {e}");
            }
        });
        Ok(Self {
            http,
            shards,
            events,
            task,
        })
    }

    /// The next event `pick` accepts, skipping others.
    async fn next<T>(&mut self, mut pick: impl FnMut(Seen) -> Option<T>) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .context("waiting for an event at the bot")?
                .context("the bot's handler went away")?;
            if let Some(found) = pick(seen) {
                return Ok(found);
            }
        }
    }

    /// The next message from a user (not the bot's own).
    async fn next_user_message(&mut self) -> anyhow::Result<SerenityMessage> {
        self.next(|s| match s {
            Seen::Message(m) if !m.author.bot => Some(*m),
            _ => None,
        })
        .await
    }

    async fn stop(self) {
        let _ = tokio::time::timeout(WAIT, self.shards.shutdown_all()).await;
        self.task.abort();
    }
}

fn bot_intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// A bot connected and READY, with a text channel.
async fn ready_bot(fake: &FakeDiscord) -> anyhow::Result<(Bot, u64)> {
    let text = fake.text_channel("general");
    let mut bot = Bot::start(fake, bot_intents()).await?;
    let session = fake.wait_ready(WAIT).await?;
    let seen = bot
        .next(|s| match s {
            Seen::Ready(id) => Some(id),
            _ => None,
        })
        .await?;
    assert_eq!(seen, session);
    Ok((bot, text))
}

/// How many times MESSAGE_CREATE of message `id` was written to a socket.
fn times_dispatched(fake: &FakeDiscord, id: u64) -> usize {
    fake.gateway_frames()
        .iter()
        .filter(|f| {
            !f.from_client
                && f.t.as_deref() == Some("MESSAGE_CREATE")
                && f.d["id"] == json!(id.to_string())
        })
        .count()
}

/// Sends a marker message and collects what the bot sees until it arrives. Dispatches
/// arrive in order, so a duplicate of anything before would have come before the
/// marker (serenity runs each handler call in its own task, hence the frame count in
/// [`times_dispatched`] too).
async fn seen_until_marker(
    fake: &FakeDiscord,
    bot: &mut Bot,
    channel: u64,
) -> anyhow::Result<Vec<Seen>> {
    let marker = fake.user_message(channel, ALICE, "marker");
    let mut seen = Vec::new();
    loop {
        let event = bot.next(Some).await?;
        let done = matches!(&event, Seen::Message(m) if m.id.get() == marker);
        seen.push(event);
        if done {
            return Ok(seen);
        }
    }
}

/// How many of `seen` are message `id`.
fn deliveries(seen: &[Seen], id: u64) -> usize {
    seen.iter()
        .filter(|s| matches!(s, Seen::Message(m) if m.id.get() == id))
        .count()
}

/// Runs a test body that drives serenity under one overall bound: serenity's own HTTP
/// client has no timeout, so its calls are bounded here rather than one by one.
async fn within(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .with_context(|| format!("the test did not finish within {TEST_LIMIT:?}"))?
}

fn secs(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

// ---- tests ---------------------------------------------------------------------------

#[tokio::test]
async fn every_payload_parses_with_serenity_models() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    let dm = fake.dm_channel(ALICE);
    fake.member(ALICE, "alice", &[ROLE]);

    // REST answers.
    let commands: Vec<Command> = serde_json::from_value(api.register_ask().await?)?;
    assert_eq!(commands[0].name, "ask");
    assert_eq!(commands[0].guild_id, Some(GuildId::new(GUILD_ID)));
    assert_eq!(commands[0].options[0].kind, CommandOptionType::String);
    assert!(commands[0].options[0].required);
    let (_, me) = api.get("/users/@me").await?;
    let me: CurrentUser = serde_json::from_value(me)?;
    assert!(me.bot);
    let (_, app) = api.get("/oauth2/applications/@me").await?;
    let app: CurrentApplicationInfo = serde_json::from_value(app)?;
    assert_eq!(app.id.get(), APPLICATION_ID);
    let (_, channel) = api.get(&format!("/channels/{text}")).await?;
    let channel: GuildChannel = serde_json::from_value(channel)?;
    assert_eq!(channel.kind, ChannelType::Text);
    let (_, dm_channel) = api.get(&format!("/channels/{dm}")).await?;
    let dm_channel: PrivateChannel = serde_json::from_value(dm_channel)?;
    assert_eq!(dm_channel.recipient.id.get(), ALICE);
    let (_, member) = api
        .get(&format!("/guilds/{GUILD_ID}/members/{ALICE}"))
        .await?;
    let member: serenity::all::Member = serde_json::from_value(member)?;
    assert_eq!(
        (member.user.name.as_str(), member.roles[0].get()),
        ("alice", ROLE)
    );
    let (_, stranger) = api
        .get(&format!("/guilds/{GUILD_ID}/members/{BOB}"))
        .await?;
    assert_eq!(stranger["roles"], json!([]));
    let (_, gateway) = api.get("/gateway/bot").await?;
    assert_eq!(gateway["url"], json!(fake.gateway_url()));
    assert_eq!(gateway["shards"], 1);

    // The gateway.
    let mut ws = connect(&fake).await?;
    let ready = identify(&mut ws, &format!("Bot {TOKEN}"), ALL_INTENTS).await?;
    let session_id = ready["session_id"]
        .as_str()
        .context("session id")?
        .to_owned();
    assert_eq!(ready["resume_gateway_url"], json!(fake.gateway_url()));
    assert_eq!(fake.identified_intents(), Some(ALL_INTENTS));

    let hello = fake.user_message(text, ALICE, &format!("hi <@{BOT_USER_ID}>"));
    let (_, _, event) = next_dispatch(&mut ws).await?;
    let Event::MessageCreate(m) = event else {
        anyhow::bail!("expected MESSAGE_CREATE, got {event:?}");
    };
    assert_eq!(m.message.id.get(), hello);
    assert_eq!(m.message.guild_id, Some(GuildId::new(GUILD_ID)));
    assert_eq!(m.message.author.name, "alice");
    let member = m.message.member.as_ref().context("member")?;
    assert_eq!(member.roles[0].get(), ROLE);
    assert_eq!(m.message.mentions[0].id.get(), BOT_USER_ID);

    // A bot message with a button row and a select row: REST answer and MESSAGE_CREATE.
    let (status, sent) = api
        .post(
            &format!("/channels/{text}/messages"),
            json!({
                "content": "Allow?",
                "allowed_mentions": {"parse": []},
                "message_reference": {"message_id": hello.to_string()},
                "components": [
                    {"type": 1, "components": buttons(2, "b")},
                    {"type": 1, "components": [{"type": 3, "custom_id": "pick", "max_values": 2,
                        "options": [{"label": "One", "value": "1"}, {"label": "Two", "value": "2"}]}]},
                ],
                "embeds": [{"title": "Plan", "description": "steps", "color": 0x00ff00}],
            }),
        )
        .await?;
    assert_eq!(status, 200, "{sent}");
    let sent: SerenityMessage = serde_json::from_value(sent)?;
    assert_eq!(sent.components.len(), 2);
    assert_eq!(
        sent.referenced_message.as_ref().map(|m| m.id.get()),
        Some(hello)
    );
    // allowed_mentions without replied_user: the reply does not ping alice.
    assert!(sent.mentions.is_empty());
    let (_, _, event) = next_dispatch(&mut ws).await?;
    let Event::MessageCreate(own) = event else {
        anyhow::bail!("expected the bot's own MESSAGE_CREATE, got {event:?}");
    };
    assert_eq!(own.message.id, sent.id);
    assert!(own.message.author.bot);

    // A slash command, a button press and a select choice.
    let command = fake.slash_command(text, ALICE, "ask", &[("prompt", "why?"), ("mode", "fast")]);
    let (_, raw, event) = next_dispatch(&mut ws).await?;
    let Event::InteractionCreate(ev) = event else {
        anyhow::bail!("expected INTERACTION_CREATE: {raw}");
    };
    let SerenityInteraction::Command(cmd) = ev.interaction else {
        anyhow::bail!("expected a command interaction: {raw}");
    };
    assert_eq!(cmd.id.get(), command.id);
    assert_eq!(cmd.token, command.token);
    assert_eq!(cmd.data.name, "ask");
    assert_eq!(cmd.data.options[0].value.as_str(), Some("why?"));
    assert_eq!(cmd.user.id.get(), ALICE);
    assert_eq!(cmd.member.as_ref().map(|m| m.roles.len()), Some(1));
    assert_eq!(cmd.guild_id, Some(GuildId::new(GUILD_ID)));
    assert_eq!(raw["d"]["channel"]["id"], json!(text.to_string()));

    let press = fake.click_button(sent.id.get(), BOB, "b1");
    let (_, raw, event) = next_dispatch(&mut ws).await?;
    let Event::InteractionCreate(ev) = event else {
        anyhow::bail!("expected INTERACTION_CREATE: {raw}");
    };
    let SerenityInteraction::Component(c) = ev.interaction else {
        anyhow::bail!("expected a component interaction: {raw}");
    };
    assert_eq!(c.id.get(), press.id);
    assert_eq!(c.data.custom_id, "b1");
    assert!(matches!(c.data.kind, ComponentInteractionDataKind::Button));
    assert_eq!(c.message.id, sent.id);
    assert_eq!(c.user.id.get(), BOB);

    fake.select_menu(sent.id.get(), ALICE, "pick", &["2", "1"]);
    let (_, raw, event) = next_dispatch(&mut ws).await?;
    let Event::InteractionCreate(ev) = event else {
        anyhow::bail!("expected INTERACTION_CREATE: {raw}");
    };
    let SerenityInteraction::Component(c) = ev.interaction else {
        anyhow::bail!("expected a component interaction: {raw}");
    };
    let ComponentInteractionDataKind::StringSelect { values } = &c.data.kind else {
        anyhow::bail!("expected a string select: {raw}");
    };
    assert_eq!(values, &["2", "1"]);

    // Interaction responses: the message the callback creates, edits, follow-ups.
    let (status, _) = api
        .post(
            &format!("/interactions/{}/{}/callback", command.id, command.token),
            json!({"type": 4, "data": {"content": "thinking about it"}}),
        )
        .await?;
    assert_eq!(status, 204);
    let (_, _, event) = next_dispatch(&mut ws).await?;
    let Event::MessageCreate(response) = event else {
        anyhow::bail!("expected the response's MESSAGE_CREATE, got {event:?}");
    };
    assert_eq!(response.message.content, "thinking about it");
    let webhook = format!("/webhooks/{APPLICATION_ID}/{}", command.token);
    let (status, original) = api.get(&format!("{webhook}/messages/@original")).await?;
    assert_eq!(status, 200);
    let original: SerenityMessage = serde_json::from_value(original)?;
    assert_eq!(original.id, response.message.id);
    assert!(original.interaction_metadata.is_some());
    let (status, followup) = api
        .post(&webhook, json!({"content": "only you", "flags": 64}))
        .await?;
    assert_eq!(status, 200, "{followup}");
    let followup: SerenityMessage = serde_json::from_value(followup)?;
    assert!(
        followup
            .flags
            .is_some_and(|f| f.contains(serenity::all::MessageFlags::EPHEMERAL))
    );

    // Threads: REST answer and THREAD_CREATE.
    let (status, thread) = api
        .post(
            &format!("/channels/{text}/threads"),
            json!({"name": "session", "type": 11, "auto_archive_duration": 1440}),
        )
        .await?;
    assert_eq!(status, 201, "{thread}");
    let thread: GuildChannel = serde_json::from_value(thread)?;
    assert_eq!(thread.kind, ChannelType::PublicThread);
    assert_eq!(thread.parent_id, Some(ChannelId::new(text)));
    let (_, raw, event) = next_dispatch(&mut ws).await?;
    let Event::ThreadCreate(created) = event else {
        anyhow::bail!("expected THREAD_CREATE: {raw}");
    };
    assert_eq!(created.thread.id, thread.id);
    assert_eq!(raw["d"]["newly_created"], true);
    let (status, _) = api
        .patch(
            &format!("/channels/{}", thread.id),
            json!({"name": "renamed"}),
        )
        .await?;
    assert_eq!(status, 200);
    let (_, raw, event) = next_dispatch(&mut ws).await?;
    let Event::ThreadUpdate(updated) = event else {
        anyhow::bail!("expected THREAD_UPDATE: {raw}");
    };
    assert_eq!(updated.thread.name, "renamed");

    // Edits and deletions.
    let (status, edited) = api
        .patch(
            &format!("/channels/{text}/messages/{}", sent.id),
            json!({"content": "Allowed", "components": []}),
        )
        .await?;
    assert_eq!(status, 200, "{edited}");
    let edited: SerenityMessage = serde_json::from_value(edited)?;
    assert!(edited.components.is_empty());
    assert!(edited.edited_timestamp.is_some());
    let (_, raw, event) = next_dispatch(&mut ws).await?;
    let Event::MessageUpdate(update) = event else {
        anyhow::bail!("expected MESSAGE_UPDATE: {raw}");
    };
    assert_eq!(update.content.as_deref(), Some("Allowed"));
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/channels/{text}/messages/{}", sent.id),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (_, raw, event) = next_dispatch(&mut ws).await?;
    assert!(matches!(event, Event::MessageDelete(_)), "{raw}");

    // A DM: no guild, no member.
    fake.user_message(dm, ALICE, "psst");
    let (last_seq, _, event) = next_dispatch(&mut ws).await?;
    let Event::MessageCreate(m) = event else {
        anyhow::bail!("expected MESSAGE_CREATE, got {event:?}");
    };
    assert_eq!(m.message.guild_id, None);
    assert!(m.message.member.is_none());

    // RESUME on a new connection: the old one is closed with 4000, everything after
    // the given seq is replayed in order, then RESUMED; all of it parses.
    let mut second = connect(&fake).await?;
    let (_, hello) = next_event(&mut second).await?;
    assert!(matches!(hello, GatewayEvent::Hello(41_250)));
    send(
        &mut second,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 1}}),
    )
    .await?;
    for expected in 2..=last_seq {
        let (seq, _, _) = next_dispatch(&mut second).await?;
        assert_eq!(seq, expected);
    }
    let (seq, raw, event) = next_dispatch(&mut second).await?;
    assert_eq!(seq, last_seq + 1);
    assert!(matches!(event, Event::Resumed(_)), "{raw}");
    assert_eq!(expect_close(&mut ws).await?, Some(4000));
    assert_eq!(fake.resumes(), 1);
    Ok(())
}

#[tokio::test]
async fn serenity_client_end_to_end() -> anyhow::Result<()> {
    within(async {
        let fake = FakeDiscord::start(TOKEN).await?;
        fake.member(ALICE, "alice", &[]);
        let (mut bot, text) = ready_bot(&fake).await?;
        let frames = fake.gateway_frames();
        let identify = frames
            .iter()
            .find(|f| f.from_client && f.op == 2)
            .context("IDENTIFY")?;
        assert_eq!(identify.d["token"], json!(format!("Bot {TOKEN}")));
        assert_eq!(identify.d["shard"], json!([0, 1]));
        assert_eq!(fake.identified_intents(), Some(bot_intents().bits()));
        assert!(fake.calls().iter().any(|c| c.is("GET /gateway") && c.ok()));

        // Guild commands.
        let registered = GuildId::new(GUILD_ID)
            .set_commands(
                &bot.http,
                vec![
                    CreateCommand::new("ask")
                        .description("Ask Claude")
                        .add_option(
                            CreateCommandOption::new(
                                CommandOptionType::String,
                                "prompt",
                                "What to ask",
                            )
                            .required(true),
                        ),
                ],
            )
            .await?;
        assert_eq!(registered.len(), 1);
        assert_eq!(fake.commands(Some(GUILD_ID))[0]["name"], "ask");

        // A user message arrives; the bot answers with a button and starts threads.
        let hello = fake.user_message(text, ALICE, "hello bot");
        let m = bot.next_user_message().await?;
        assert_eq!(m.id.get(), hello);
        assert_eq!(m.content, "hello bot");
        assert_eq!(m.guild_id, Some(GuildId::new(GUILD_ID)));
        let prompt = ChannelId::new(text)
            .send_message(
                &bot.http,
                CreateMessage::new()
                    .content("Allow <@111111111111111111>?")
                    .allowed_mentions(CreateAllowedMentions::new().users([ALICE]))
                    .components(vec![CreateActionRow::Buttons(vec![
                        CreateButton::new("allow")
                            .label("Allow")
                            .style(ButtonStyle::Success),
                        CreateButton::new("deny")
                            .label("Deny")
                            .style(ButtonStyle::Danger),
                    ])]),
            )
            .await?;
        let stored = fake.message(prompt.id.get()).context("stored prompt")?;
        assert_eq!(stored.custom_ids(), ["allow", "deny"]);
        assert_eq!(stored.mentions, [ALICE]);
        let call = fake
            .wait_for(WAIT, |c| c.is("POST /channels/{id}/messages"))
            .await?;
        assert_eq!(
            call.body["allowed_mentions"]["users"],
            json!([ALICE.to_string()])
        );
        assert_eq!(call.channel, Some(text));

        let thread = ChannelId::new(text)
            .create_thread_from_message(
                &bot.http,
                MessageId::new(hello),
                CreateThread::new("hello"),
            )
            .await?;
        assert_eq!(thread.id.get(), hello, "a message's thread takes its id");
        let seen = bot
            .next(|s| match s {
                Seen::Thread(t) => Some(t),
                _ => None,
            })
            .await?;
        assert_eq!(seen.id, thread.id);
        let lone = ChannelId::new(text)
            .create_thread(
                &bot.http,
                CreateThread::new("session 2").kind(ChannelType::PublicThread),
            )
            .await?;
        assert_eq!(
            fake.threads(text),
            [
                (hello, "hello".to_owned()),
                (lone.id.get(), "session 2".to_owned())
            ]
        );
        lone.id.say(&bot.http, "in the thread").await?;
        assert_eq!(fake.messages_in(lone.id.get())[0].content, "in the thread");
        assert_eq!(fake.message(hello).and_then(|m| m.thread), Some(hello));

        // A slash command: defer, then edit the original response, then a follow-up.
        let ask = fake.slash_command(text, ALICE, "ask", &[("prompt", "why?")]);
        let cmd = bot
            .next(|s| match s {
                Seen::Command(c) => Some(c),
                _ => None,
            })
            .await?;
        assert_eq!(cmd.id.get(), ask.id);
        assert_eq!(cmd.data.options[0].value.as_str(), Some("why?"));
        cmd.defer(&bot.http).await?;
        let state = fake.interaction(ask.id).context("interaction")?;
        assert_eq!(state.ack_type, Some(5));
        let original = state.original.context("original")?;
        assert_eq!(fake.message(original).map(|m| m.flags & 128), Some(128));
        cmd.edit_response(&bot.http, EditInteractionResponse::new().content("because"))
            .await?;
        let answer = fake.message(original).context("original message")?;
        assert_eq!(answer.content, "because");
        assert_eq!(answer.flags & 128, 0, "the edit ends the loading state");
        assert_eq!(answer.interaction, Some(ask.id));
        cmd.create_followup(
            &bot.http,
            CreateInteractionResponseFollowup::new()
                .content("details")
                .ephemeral(true),
        )
        .await?;
        let state = fake.interaction(ask.id).context("interaction")?;
        assert_eq!(state.followups.len(), 1);
        assert!(state.written);
        let acked = state.acked_at.context("acked")?;
        assert!(acked >= state.dispatched_at);
        let followup = fake.message(state.followups[0]).context("followup")?;
        assert!(followup.ephemeral);

        // A button press answered by updating its message.
        let press = fake.click_button(prompt.id.get(), ALICE, "allow");
        let component = bot
            .next(|s| match s {
                Seen::Component(c) => Some(c),
                _ => None,
            })
            .await?;
        assert_eq!(component.id.get(), press.id);
        component
            .create_response(
                &bot.http,
                CreateInteractionResponse::UpdateMessage(
                    CreateInteractionResponseMessage::new()
                        .content("Allowed")
                        .components(vec![]),
                ),
            )
            .await?;
        let updated = fake.message(prompt.id.get()).context("prompt")?;
        assert_eq!(updated.content, "Allowed");
        assert!(updated.components.is_empty());
        assert_eq!(updated.edits, 1);
        assert_eq!(fake.interaction(press.id).and_then(|i| i.ack_type), Some(7));

        // A select menu, and a file.
        let menu = ChannelId::new(text)
            .send_message(
                &bot.http,
                CreateMessage::new()
                    .content("Pick")
                    .components(vec![CreateActionRow::SelectMenu(CreateSelectMenu::new(
                        "model",
                        CreateSelectMenuKind::String {
                            options: vec![
                                CreateSelectMenuOption::new("Opus", "opus"),
                                CreateSelectMenuOption::new("Sonnet", "sonnet"),
                            ],
                        },
                    ))]),
            )
            .await?;
        fake.select_menu(menu.id.get(), ALICE, "model", &["sonnet"]);
        let chosen = bot
            .next(|s| match s {
                Seen::Component(c) => Some(c),
                _ => None,
            })
            .await?;
        assert!(matches!(
            &chosen.data.kind,
            ComponentInteractionDataKind::StringSelect { values } if values == &["sonnet"]
        ));
        chosen.defer(&bot.http).await?;
        let log = ChannelId::new(text)
            .send_files(
                &bot.http,
                [CreateAttachment::bytes(
                    b"line 1\nline 2\n".to_vec(),
                    "session.log",
                )],
                CreateMessage::new().content("the log"),
            )
            .await?;
        assert_eq!(log.attachments[0].filename, "session.log");
        let stored = fake.message(log.id.get()).context("log message")?;
        assert_eq!(stored.attachments[0].bytes, b"line 1\nline 2\n");
        let upload = fake
            .wait_for(WAIT, |c| {
                c.is("POST /channels/{id}/messages") && c.body.get("files").is_some()
            })
            .await?;
        assert_eq!(upload.body["files"][0]["filename"], "session.log");
        assert_eq!(upload.body["content"], "the log");

        // Every REST call was answered, in arrival order.
        let calls = fake.calls();
        assert!(calls.iter().all(Call::ok), "{calls:#?}");
        assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));
        bot.stop().await;
        anyhow::Ok(())
    })
    .await
}

#[tokio::test]
async fn serenity_resumes_after_close_4000_and_gets_queued_messages_once() -> anyhow::Result<()> {
    within(async {
        let fake = FakeDiscord::start(TOKEN).await?;
        let (mut bot, text) = ready_bot(&fake).await?;
        let session = fake.gateway_status().session_id;

        let t0 = Instant::now();
        fake.close_gateway(4000);
        // Sent while the bot is disconnected: queued in the session, replayed on RESUME.
        let away = fake.user_message(text, ALICE, "while you were away");
        let status = fake
            .wait_gateway(WAIT, |s| s.ready && s.resumes == 1)
            .await?;
        eprintln!("close 4000 → RESUMED after {}", secs(t0.elapsed()));
        assert_eq!(status.identifies, 1);
        assert_eq!(status.session_id, session);
        assert_eq!(status.connections, 2);
        let seen = seen_until_marker(&fake, &mut bot, text).await?;
        assert_eq!(deliveries(&seen, away), 1);
        assert!(seen.iter().any(|s| matches!(s, Seen::Resumed)), "{seen:?}");
        assert_eq!(times_dispatched(&fake, away), 1);
        let close = fake
            .gateway_frames()
            .into_iter()
            .find(|f| f.op == CLOSE_FRAME_OP && !f.from_client)
            .context("close frame")?;
        assert_eq!((close.close, close.conn), (Some(4000), 1));
        bot.stop().await;
        anyhow::Ok(())
    })
    .await
}

#[tokio::test]
async fn serenity_reidentifies_after_invalid_session() -> anyhow::Result<()> {
    within(async {
        let fake = FakeDiscord::start(TOKEN).await?;
        let (mut bot, text) = ready_bot(&fake).await?;
        let first = fake.gateway_status().session_id;

        let t0 = Instant::now();
        fake.invalidate_session(false);
        let status = fake
            .wait_gateway(RECONNECT_WAIT, |s| s.ready && s.identifies == 2)
            .await?;
        eprintln!("op 9 d:false → new READY after {}", secs(t0.elapsed()));
        assert_eq!(status.resumes, 0);
        assert_ne!(status.session_id, first);
        let session = bot
            .next(|s| match s {
                Seen::Ready(id) => Some(id),
                _ => None,
            })
            .await?;
        assert_eq!(Some(session), status.session_id);
        let after = fake.user_message(text, ALICE, "new session");
        assert_eq!(bot.next_user_message().await?.id.get(), after);
        bot.stop().await;
        anyhow::Ok(())
    })
    .await
}

#[tokio::test]
async fn serenity_resumes_after_a_dropped_tcp_connection() -> anyhow::Result<()> {
    within(async {
        let fake = FakeDiscord::start(TOKEN).await?;
        let (mut bot, text) = ready_bot(&fake).await?;

        let t0 = Instant::now();
        fake.drop_gateway();
        let away = fake.user_message(text, ALICE, "during the outage");
        let status = fake
            .wait_gateway(RECONNECT_WAIT, |s| {
                s.ready && (s.resumes > 0 || s.identifies > 1)
            })
            .await?;
        eprintln!(
            "TCP drop → {} after {}",
            if status.resumes > 0 {
                "RESUME"
            } else {
                "IDENTIFY"
            },
            secs(t0.elapsed())
        );
        // serenity 0.12.5 reads the missing close handshake as a websocket error and
        // resumes on a new connection right away.
        assert_eq!((status.resumes, status.identifies), (1, 1));
        let seen = seen_until_marker(&fake, &mut bot, text).await?;
        assert_eq!(deliveries(&seen, away), 1);
        assert_eq!(times_dispatched(&fake, away), 1);
        bot.stop().await;
        anyhow::Ok(())
    })
    .await
}

#[tokio::test]
async fn serenity_reconnects_when_heartbeats_are_not_acked() -> anyhow::Result<()> {
    within(async {
        let fake = FakeDiscord::start(TOKEN).await?;
        fake.set_heartbeat_interval(250);
        let (mut bot, text) = ready_bot(&fake).await?;
        // Heartbeats flow and are acknowledged with d = the last seq.
        let probe = fake.user_message(text, ALICE, "probe");
        let seq = fake.last_seq().context("seq")?;
        fake.wait_heartbeat_seq(seq, WAIT).await?;
        assert_eq!(bot.next_user_message().await?.id.get(), probe);
        fake.wait_for_frame(WAIT, |f| !f.from_client && f.op == 11)
            .await?;

        let t0 = Instant::now();
        fake.stop_heartbeat_acks(true);
        let status = fake
            .wait_gateway(RECONNECT_WAIT, |s| s.identifies >= 2 || s.resumes >= 1)
            .await?;
        fake.stop_heartbeat_acks(false);
        eprintln!(
            "no heartbeat ACK → {} on connection {} after {}",
            if status.resumes > 0 {
                "RESUME"
            } else {
                "IDENTIFY"
            },
            status.connections,
            secs(t0.elapsed())
        );
        // serenity 0.12.5 restarts the shard (a new IDENTIFY), it does not resume.
        assert_eq!((status.identifies, status.resumes), (2, 0));
        fake.wait_ready(WAIT).await?;
        let after = fake.user_message(text, ALICE, "back");
        assert_eq!(bot.next_user_message().await?.id.get(), after);
        bot.stop().await;
        anyhow::Ok(())
    })
    .await
}

#[tokio::test]
async fn serenity_resumes_on_op7_reconnect() -> anyhow::Result<()> {
    within(async {
        let fake = FakeDiscord::start(TOKEN).await?;
        let (mut bot, text) = ready_bot(&fake).await?;
        let t0 = Instant::now();
        fake.request_reconnect();
        let status = fake
            .wait_gateway(WAIT, |s| s.ready && s.resumes == 1)
            .await?;
        eprintln!("op 7 → RESUMED after {}", secs(t0.elapsed()));
        assert_eq!((status.identifies, status.connections), (1, 2));
        let after = fake.user_message(text, ALICE, "after op 7");
        assert_eq!(bot.next_user_message().await?.id.get(), after);
        bot.stop().await;
        anyhow::Ok(())
    })
    .await
}

#[tokio::test]
async fn rest_auth_routes_and_malformed_requests() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    let http = client();
    let url = |path: &str| format!("{}/api/v10{path}", fake.api_url());

    for auth in [Some("Bot wrong"), Some(TOKEN), None] {
        let mut req = http.get(url("/users/@me"));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let (status, body) = read(req.send().await?).await?;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(body, json!({"message": "401: Unauthorized", "code": 0}));
    }
    // The gateway URL needs no token, like Discord's.
    let (status, body) = read(http.get(url("/gateway")).send().await?).await?;
    assert_eq!((status, &body["url"]), (200, &json!(fake.gateway_url())));

    let (status, body) = api.get("/guilds/1/emojis").await?;
    assert_eq!(
        (status, body),
        (404, json!({"message": "404: Not Found", "code": 0}))
    );
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("/channels/{text}/messages"),
            None,
        )
        .await?;
    assert_eq!(status, 405);
    let (status, body) = api.get("/channels/general").await?;
    assert_eq!(status, 400);
    assert_eq!(form_error(&body, "channel_id"), Some("NUMBER_TYPE_COERCE"));
    let (status, body) = api.get("/channels/12345").await?;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10003)));
    let (status, body) = api.get(&format!("/channels/{text}/messages/12345")).await?;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10008)));
    let response = api
        .request(reqwest::Method::POST, &format!("/channels/{text}/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    let (status, body) = read(response).await?;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50109)));

    // Everything was recorded, failures included, with templated routes.
    let calls = fake.calls();
    assert_eq!(calls.len(), 10);
    assert_eq!(calls[0].route, "GET /users/@me");
    assert_eq!(calls[0].status, 401);
    assert_eq!(calls[4].route, "GET /guilds/{id}/emojis");
    assert_eq!(calls[9].error_code(), Some(50109));
    Ok(())
}

#[tokio::test]
async fn message_payloads_are_checked_like_discord() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    let path = format!("/channels/{text}/messages");

    let (status, body) = api
        .post(&path, json!({"content": "x".repeat(2001)}))
        .await?;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
    assert_eq!(body["message"], "Invalid Form Body");
    assert_eq!(form_error(&body, "content"), Some("BASE_TYPE_MAX_LENGTH"));
    let (status, _) = api
        .post(&path, json!({"content": "x".repeat(2000)}))
        .await?;
    assert_eq!(status, 200);
    // 1000 astral characters are 2000 UTF-16 units; one more letter is too many.
    let (status, _) = api
        .post(&path, json!({"content": format!("{}a", "😀".repeat(1000))}))
        .await?;
    assert_eq!(status, 400);

    for empty in [
        json!({}),
        json!({"content": ""}),
        json!({"content": "  ", "embeds": []}),
    ] {
        let (status, body) = api.post(&path, empty.clone()).await?;
        assert_eq!(
            (status, body),
            (
                400,
                json!({"message": "Cannot send an empty message", "code": 50006})
            ),
            "{empty}"
        );
    }
    let (status, _) = api
        .post(
            &path,
            json!({"content": "", "embeds": [{"description": "only an embed"}]}),
        )
        .await?;
    assert_eq!(status, 200);

    let row = |n: usize, prefix: &str| json!({"type": 1, "components": buttons(n, prefix)});
    let six_rows: Vec<Value> = (0..6).map(|i| row(1, &format!("r{i}-"))).collect();
    let (status, body) = api
        .post(&path, json!({"content": "x", "components": six_rows}))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(
        form_error(&body, "components"),
        Some("BASE_TYPE_MAX_LENGTH")
    );
    let (_, body) = api
        .post(&path, json!({"content": "x", "components": [row(6, "b")]}))
        .await?;
    assert_eq!(
        form_error(&body, "components.0.components"),
        Some("BASE_TYPE_BAD_LENGTH")
    );
    let long_id = json!({"type": 1, "components": [
        {"type": 2, "style": 1, "label": "ok", "custom_id": "x".repeat(101)}]});
    let (_, body) = api
        .post(&path, json!({"content": "x", "components": [long_id]}))
        .await?;
    assert_eq!(
        form_error(&body, "components.0.components.0.custom_id"),
        Some("BASE_TYPE_BAD_LENGTH")
    );
    let duplicate = json!({"type": 1, "components": [
        {"type": 2, "style": 1, "label": "a", "custom_id": "same"},
        {"type": 2, "style": 2, "label": "b", "custom_id": "same"}]});
    let (_, body) = api
        .post(&path, json!({"content": "x", "components": [duplicate]}))
        .await?;
    assert_eq!(
        form_error(&body, "components.0.components.1.custom_id"),
        Some("COMPONENT_CUSTOM_ID_DUPLICATED")
    );
    let link = json!({"type": 1, "components": [
        {"type": 2, "style": 5, "label": "docs", "url": "https://example.com"}]});
    let (status, _) = api
        .post(&path, json!({"content": "x", "components": [link]}))
        .await?;
    assert_eq!(status, 200);
    let bad_embeds = json!({"embeds": [
        {"title": "t".repeat(257)},
        {"description": "d".repeat(4096), "footer": {"text": "f".repeat(2000)}},
    ]});
    let (_, body) = api.post(&path, bad_embeds).await?;
    assert_eq!(
        form_error(&body, "embeds.0.title"),
        Some("BASE_TYPE_MAX_LENGTH")
    );
    assert_eq!(form_error(&body, "embeds"), Some("MAX_EMBED_SIZE_EXCEEDED"));
    let (_, body) = api
        .post(&path, json!({"content": "x", "flags": 64}))
        .await?;
    assert_eq!(form_error(&body, "flags"), Some("MESSAGE_FLAGS_INVALID"));
    let (_, body) = api
        .post(
            &path,
            json!({"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}}),
        )
        .await?;
    assert_eq!(
        form_error(&body, "allowed_mentions"),
        Some("MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE")
    );

    // Edits: absent fields stay, `components: []` removes them, the result must not be
    // empty, and only the bot's own messages.
    let (_, sent) = api
        .post(&path, json!({"content": "v1", "components": [row(2, "e")]}))
        .await?;
    let id = sent["id"].as_str().context("id")?;
    let (status, edited) = api
        .patch(&format!("{path}/{id}"), json!({"embeds": [{"title": "t"}]}))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(edited["content"], "v1");
    assert_eq!(edited["components"].as_array().map(Vec::len), Some(1));
    let (_, edited) = api
        .patch(&format!("{path}/{id}"), json!({"components": []}))
        .await?;
    assert_eq!(edited["components"], json!([]));
    let (status, body) = api
        .patch(
            &format!("{path}/{id}"),
            json!({"content": "", "embeds": []}),
        )
        .await?;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50006)));
    let user_message = fake.user_message(text, ALICE, "mine");
    let (status, body) = api
        .patch(
            &format!("{path}/{user_message}"),
            json!({"content": "hijack"}),
        )
        .await?;
    assert_eq!((status, body["code"].as_u64()), (403, Some(50005)));
    let stored = fake.message(id.parse()?).context("message")?;
    assert_eq!((stored.content.as_str(), stored.edits), ("v1", 2));

    // History: newest first; `limit`, `before` and `after` as serenity sends them.
    let (_, all) = api.get(&format!("{path}?&limit=100")).await?;
    let ids: Vec<u64> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str()?.parse().ok())
        .collect();
    assert_eq!(ids.first(), Some(&user_message));
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let (_, older) = api
        .get(&format!("{path}?limit=2&before={user_message}"))
        .await?;
    assert_eq!(older.as_array().map(Vec::len), Some(2));
    assert_eq!(older[0]["id"], json!(id));
    let (_, newer) = api.get(&format!("{path}?after={id}")).await?;
    assert_eq!(newer[0]["id"], json!(user_message.to_string()));
    let (status, _) = api.get(&format!("{path}?limit=101")).await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test]
async fn injected_failures_answer_like_discord() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    let path = format!("/channels/{text}/messages");
    fake.fail_next("POST /channels/{channel_id}/messages", 429, Some(1.5));
    fake.fail_next("POST /channels/{id}/messages", 500, None);

    let response = api
        .request(reqwest::Method::POST, &path)
        .header("content-type", "application/json")
        .body(json!({"content": "one"}).to_string())
        .send()
        .await?;
    let headers = response.headers().clone();
    let (status, body) = read(response).await?;
    assert_eq!(status, 429);
    assert_eq!(
        body,
        json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": false})
    );
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("retry-after"), Some("2"));
    assert_eq!(header("x-ratelimit-limit"), Some("5"));
    assert_eq!(header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(header("x-ratelimit-reset-after"), Some("1.500"));
    assert_eq!(header("x-ratelimit-scope"), Some("user"));
    assert!(header("x-ratelimit-bucket").is_some_and(|b| !b.is_empty()));
    assert!(header("x-ratelimit-reset").is_some());

    let (status, body) = api.post(&path, json!({"content": "two"})).await?;
    assert_eq!((status, body["code"].as_u64()), (500, Some(0)));
    let (status, _) = api.post(&path, json!({"content": "three"})).await?;
    assert_eq!(status, 200);

    let calls = fake.calls_to("POST /channels/{id}/messages");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].retry_after, Some(1.5));
    assert_eq!(calls[0].content(), Some("one"));
    assert_eq!(calls[0].channel, Some(text));
    assert!(calls[2].ok());
    assert_eq!(fake.messages_in(text).len(), 1);
    Ok(())
}

#[tokio::test]
async fn interaction_callbacks_deadline_double_ack_and_followups() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    api.register_ask().await?;
    let http = client();
    let callback = |i: &ccrm_testkit::discord::Interaction| {
        format!(
            "{}/api/v10/interactions/{}/{}/callback",
            fake.api_url(),
            i.id,
            i.token
        )
    };

    // Too late: with a zero window every callback is late.
    fake.set_interaction_deadline(Duration::ZERO);
    let late = fake.slash_command(text, ALICE, "ask", &[("prompt", "p")]);
    let (status, body) = read(
        http.post(callback(&late))
            .json(&json!({"type": 5}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"message": "Unknown interaction", "code": 10062})
        )
    );
    fake.set_interaction_deadline(Duration::from_secs(3));

    // A wrong token is an unknown interaction too.
    let ask = fake.slash_command(text, ALICE, "ask", &[("prompt", "p"), ("mode", "slow")]);
    let wrong = ccrm_testkit::discord::Interaction {
        id: ask.id,
        token: "nope".to_owned(),
    };
    let (status, _) = read(
        http.post(callback(&wrong))
            .json(&json!({"type": 5}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 404);

    // A follow-up before the callback is refused; the callback needs no Authorization.
    let webhook = format!("/webhooks/{APPLICATION_ID}/{}", ask.token);
    let (status, body) = api.post(&webhook, json!({"content": "early"})).await?;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10015)));
    let (status, body) = api.get(&format!("{webhook}/messages/@original")).await?;
    assert_eq!((status, body["code"].as_u64()), (404, Some(10008)));
    let (status, body) = read(
        http.post(callback(&ask))
            .json(&json!({"type": 4, "data": {"content": "x".repeat(2001)}}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 400);
    assert_eq!(
        form_error(&body, "data.content"),
        Some("BASE_TYPE_MAX_LENGTH")
    );
    let (status, body) = read(
        http.post(callback(&ask))
            .json(&json!({"type": 6}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 400, "deferred update is for components: {body}");
    let (status, body) = read(
        http.post(format!("{}?with_response=true", callback(&ask)))
            .json(&json!({"type": 4, "data": {"content": "answer", "flags": 64}}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"]["message"]["content"], "answer");
    assert_eq!(body["interaction"]["response_message_ephemeral"], true);
    let (status, body) = read(
        http.post(callback(&ask))
            .json(&json!({"type": 4, "data": {"content": "again"}}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"message": "Interaction has already been acknowledged.", "code": 40060})
        )
    );

    // After the callback: follow-ups, and edits of the original and of follow-ups.
    let (status, followup) = api.post(&webhook, json!({"content": "more"})).await?;
    assert_eq!(status, 200);
    let followup_id = followup["id"].as_str().context("id")?;
    let (status, _) = api
        .patch(
            &format!("{webhook}/messages/{followup_id}"),
            json!({"content": "more!"}),
        )
        .await?;
    assert_eq!(status, 200);
    let (status, original) = api
        .patch(
            &format!("{webhook}/messages/@original"),
            json!({"content": "answer v2"}),
        )
        .await?;
    assert_eq!((status, &original["content"]), (200, &json!("answer v2")));
    let (status, _) = api
        .patch(
            &format!("{webhook}/messages/12345"),
            json!({"content": "x"}),
        )
        .await?;
    assert_eq!(status, 404);
    let (status, body) = api
        .post(
            &format!("/webhooks/{APPLICATION_ID}/not-a-token"),
            json!({"content": "x"}),
        )
        .await?;
    assert_eq!((status, body["code"].as_u64()), (401, Some(50027)));

    let state = fake.interaction(ask.id).context("state")?;
    assert_eq!(state.ack_type, Some(4));
    assert!(!state.written, "no gateway connection: the dispatch waited");
    let original = fake
        .message(state.original.context("original")?)
        .context("msg")?;
    assert!(original.ephemeral);
    assert_eq!(
        (original.content.as_str(), original.edits),
        ("answer v2", 1)
    );
    assert_eq!(
        fake.message(state.followups[0]).map(|m| m.content),
        Some("more!".to_owned())
    );
    // Ephemeral messages are not in the channel's history.
    let (_, history) = api.get(&format!("/channels/{text}/messages")).await?;
    assert!(
        history
            .as_array()
            .is_some_and(|h| h.iter().all(|m| m["flags"] != 64))
    );

    // A deferred response: the first follow-up replaces the "thinking" message.
    let deferred = fake.slash_command(text, BOB, "ask", &[("prompt", "q")]);
    let (status, _) = read(
        http.post(callback(&deferred))
            .json(&json!({"type": 5}))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(status, 204);
    let state = fake.interaction(deferred.id).context("state")?;
    let thinking = state.original.context("original")?;
    assert_eq!(fake.message(thinking).map(|m| m.flags), Some(128));
    let webhook = format!("/webhooks/{APPLICATION_ID}/{}", deferred.token);
    let (_, first) = api.post(&webhook, json!({"content": "done"})).await?;
    assert_eq!(first["id"], json!(thinking.to_string()));
    assert_eq!(
        fake.message(thinking).map(|m| (m.content, m.flags)),
        Some(("done".to_owned(), 0))
    );
    Ok(())
}

#[tokio::test]
async fn multipart_uploads_are_recorded_with_their_bytes() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    let boundary = "fake-discord-boundary";
    let payload = json!({
        "content": "two files",
        "attachments": [{"id": 0, "filename": "renamed.txt", "description": "notes"}],
    });
    let mut body = Vec::new();
    for (name, filename, content_type, bytes) in [
        (
            "payload_json",
            None,
            "application/json",
            payload.to_string().into_bytes(),
        ),
        (
            "files[0]",
            Some("notes.txt"),
            "text/plain",
            b"hello\n".to_vec(),
        ),
        (
            "files[1]",
            Some("data.bin"),
            "application/octet-stream",
            vec![0, 1, 2, 255],
        ),
    ] {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match filename {
            Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(
            format!("Content-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let response = api
        .request(reqwest::Method::POST, &format!("/channels/{text}/messages"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await?;
    let (status, sent) = read(response).await?;
    assert_eq!(status, 200, "{sent}");
    let sent: SerenityMessage = serde_json::from_value(sent)?;
    assert_eq!(sent.attachments.len(), 2);
    assert_eq!(sent.attachments[0].filename, "renamed.txt");
    assert_eq!(sent.attachments[0].description.as_deref(), Some("notes"));
    assert_eq!(sent.attachments[1].size, 4);

    let stored = fake.message(sent.id.get()).context("stored")?;
    assert_eq!(stored.attachments[0].bytes, b"hello\n");
    assert_eq!(
        stored.attachments[0].content_type.as_deref(),
        Some("text/plain")
    );
    assert_eq!(stored.attachments[1].bytes, [0, 1, 2, 255]);
    let call = &fake.calls()[0];
    assert_eq!(call.content(), Some("two files"));
    assert_eq!(
        call.body["files"],
        json!([
            {"field": "files[0]", "filename": "notes.txt", "size": 6},
            {"field": "files[1]", "filename": "data.bin", "size": 4},
        ])
    );
    Ok(())
}

#[tokio::test]
async fn threads_commands_and_mentions_follow_discords_rules() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    let dm = fake.dm_channel(ALICE);

    let (status, body) = api
        .post(
            &format!("/channels/{dm}/threads"),
            json!({"name": "x", "type": 11}),
        )
        .await?;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"message": "Cannot execute action on this channel type", "code": 50024})
        )
    );
    let (_, body) = api
        .post(
            &format!("/channels/{text}/threads"),
            json!({"name": "", "auto_archive_duration": 5}),
        )
        .await?;
    assert_eq!(form_error(&body, "name"), Some("BASE_TYPE_BAD_LENGTH"));
    assert_eq!(
        form_error(&body, "auto_archive_duration"),
        Some("BASE_TYPE_CHOICES")
    );
    let starter = fake.user_message(text, ALICE, "start here");
    let from_message = format!("/channels/{text}/messages/{starter}/threads");
    let (status, thread) = api.post(&from_message, json!({"name": "topic"})).await?;
    assert_eq!(status, 201);
    assert_eq!(thread["id"], json!(starter.to_string()));
    assert_eq!(thread["owner_id"], json!(BOT_USER_ID.to_string()));
    let (status, body) = api.post(&from_message, json!({"name": "again"})).await?;
    assert_eq!((status, body["code"].as_u64()), (400, Some(160_004)));
    let (status, renamed) = api
        .patch(
            &format!("/channels/{starter}"),
            json!({"name": "renamed", "archived": true}),
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(renamed["thread_metadata"]["archived"], true);
    assert_eq!(fake.threads(text), [(starter, "renamed".to_owned())]);
    // A message in an archived thread unarchives it.
    let in_thread = fake.user_message(starter, BOB, "in the thread");
    assert_eq!(fake.messages_in(starter)[0].id, in_thread);
    let (_, thread) = api.get(&format!("/channels/{starter}")).await?;
    assert_eq!(thread["thread_metadata"]["archived"], false);
    assert_eq!(thread["message_count"], 1);
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("/channels/{starter}/thread-members/{ALICE}"),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("/channels/{text}/thread-members/{ALICE}"),
            None,
        )
        .await?;
    assert_eq!(status, 400);

    // Opening a DM gives the same channel every time, also for a user never set up.
    let (status, opened) = api
        .post(
            "/users/@me/channels",
            json!({"recipient_id": ALICE.to_string()}),
        )
        .await?;
    assert_eq!(status, 200);
    let opened: PrivateChannel = serde_json::from_value(opened)?;
    assert_eq!(opened.id.get(), dm);
    let (_, bob) = api
        .post("/users/@me/channels", json!({"recipient_id": BOB}))
        .await?;
    assert_eq!(bob["id"], json!(fake.dm_channel(BOB).to_string()));
    assert_eq!(bob["recipients"][0]["username"], format!("user{BOB}"));

    // Command bulk overwrite: validated, ids kept across overwrites.
    let commands = format!("/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands");
    let (status, body) = api
        .put(
            &commands,
            json!([{"name": "Ask Me", "description": "", "options": [
                {"type": 3, "name": "a", "description": "d"},
                {"type": 3, "name": "b", "description": "d", "required": true},
            ]}]),
        )
        .await?;
    assert_eq!((status, body["code"].as_u64()), (400, Some(50035)));
    assert_eq!(
        form_error(&body, "0.name"),
        Some("APPLICATION_COMMAND_INVALID_NAME")
    );
    assert_eq!(
        form_error(&body, "0.description"),
        Some("BASE_TYPE_BAD_LENGTH")
    );
    assert_eq!(
        form_error(&body, "0.options"),
        Some("APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID")
    );
    let first = api.register_ask().await?;
    let second = api.register_ask().await?;
    assert_eq!(first[0]["id"], second[0]["id"]);
    assert_eq!(fake.commands(Some(GUILD_ID)).len(), 1);
    assert!(fake.commands(None).is_empty());
    let (status, _) = api
        .put(
            &format!("/applications/{APPLICATION_ID}/guilds/42/commands"),
            json!([]),
        )
        .await?;
    assert_eq!(status, 404);

    // allowed_mentions decides who is pinged; the body is recorded as sent.
    let content = format!("<@{ALICE}> <@{BOB}> <@&{ROLE}> @everyone");
    let path = format!("/channels/{text}/messages");
    let (_, all) = api.post(&path, json!({"content": content})).await?;
    assert_eq!(all["mentions"].as_array().map(Vec::len), Some(2));
    assert_eq!(all["mention_everyone"], true);
    let (_, some) = api
        .post(
            &path,
            json!({"content": content, "allowed_mentions": {"users": [BOB.to_string()]}}),
        )
        .await?;
    let pinged = fake
        .message(some["id"].as_str().context("id")?.parse()?)
        .context("msg")?;
    assert_eq!(pinged.mentions, [BOB]);
    assert_eq!(some["mention_roles"], json!([]));
    assert_eq!(some["mention_everyone"], false);
    let recorded = fake
        .wait_for(WAIT, |c| c.body.get("allowed_mentions").is_some())
        .await?;
    assert_eq!(
        recorded.body["allowed_mentions"],
        json!({"users": [BOB.to_string()]})
    );
    Ok(())
}

#[tokio::test]
async fn gateway_close_codes_and_intents() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let text = fake.text_channel("general");
    let dm = fake.dm_channel(ALICE);

    // A wrong token: 4004.
    let mut ws = connect(&fake).await?;
    next_event(&mut ws).await?;
    send(
        &mut ws,
        json!({"op": 2, "d": {"token": "Bot wrong", "intents": 0}}),
    )
    .await?;
    assert_eq!(expect_close(&mut ws).await?, Some(4004));
    // Invalid JSON: 4002; an unknown opcode: 4001; ops before IDENTIFY: 4003.
    for (frame, code) in [
        ("{nope".to_owned(), 4002),
        (json!({"op": 99, "d": null}).to_string(), 4001),
        (json!({"op": 3, "d": {}}).to_string(), 4003),
    ] {
        let mut ws = connect(&fake).await?;
        next_event(&mut ws).await?;
        send_text(&mut ws, frame.clone()).await?;
        assert_eq!(expect_close(&mut ws).await?, Some(code), "{frame}");
    }
    // A wrong API version: 4012.
    let url = fake.gateway_url() + "?v=9";
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connecting")??;
    assert_eq!(expect_close(&mut ws).await?, Some(4012));
    // RESUME of an unknown session: op 9 d:false (the connection stays open).
    let mut ws = connect(&fake).await?;
    next_event(&mut ws).await?;
    send(
        &mut ws,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": "gone", "seq": 3}}),
    )
    .await?;
    let (raw, event) = next_event(&mut ws).await?;
    assert!(
        matches!(event, GatewayEvent::InvalidateSession(false)),
        "{raw}"
    );

    // No MESSAGE_CONTENT: guild content is empty unless the bot is mentioned; DMs and
    // the bot's own messages keep theirs. Heartbeats are answered at once.
    let mut ws = connect(&fake).await?;
    let only = intents::GUILD_MESSAGES | intents::DIRECT_MESSAGES;
    identify(&mut ws, TOKEN, only).await?;
    send(
        &mut ws,
        json!({"op": 2, "d": {"token": TOKEN, "intents": only}}),
    )
    .await?;
    assert_eq!(
        expect_close(&mut ws).await?,
        Some(4005),
        "a second IDENTIFY"
    );
    let mut ws = connect(&fake).await?;
    identify(&mut ws, TOKEN, only).await?;
    send(&mut ws, json!({"op": 1, "d": 1})).await?;
    let (raw, event) = next_event(&mut ws).await?;
    assert!(matches!(event, GatewayEvent::HeartbeatAck), "{raw}");
    fake.user_message(text, ALICE, "secret");
    fake.user_message(text, ALICE, &format!("<@{BOT_USER_ID}> visible"));
    fake.user_message(dm, ALICE, "dm text");
    let mut contents = Vec::new();
    for _ in 0..3 {
        let (_, raw, _) = next_dispatch(&mut ws).await?;
        contents.push(raw["d"]["content"].as_str().unwrap_or("?").to_owned());
    }
    assert_eq!(
        contents,
        [
            String::new(),
            format!("<@{BOT_USER_ID}> visible"),
            "dm text".to_owned()
        ]
    );

    // No GUILD_MESSAGES: no guild MESSAGE_CREATE at all (the DM comes first).
    let mut ws = connect(&fake).await?;
    identify(&mut ws, TOKEN, intents::DIRECT_MESSAGES).await?;
    fake.user_message(text, ALICE, "unseen");
    let dm_message = fake.user_message(dm, ALICE, "seen");
    let (_, raw, _) = next_dispatch(&mut ws).await?;
    assert_eq!(raw["d"]["id"], json!(dm_message.to_string()));
    assert_eq!(fake.identified_intents(), Some(intents::DIRECT_MESSAGES));

    // Closed with a non-resumable code, the session is forgotten.
    let status = fake.gateway_status();
    assert!(status.live);
    fake.close_gateway(4009);
    assert_eq!(expect_close(&mut ws).await?, Some(4009));
    let mut ws = connect(&fake).await?;
    next_event(&mut ws).await?;
    let session = status.session_id.context("session")?;
    send(
        &mut ws,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session, "seq": 1}}),
    )
    .await?;
    let (raw, event) = next_event(&mut ws).await?;
    assert!(
        matches!(event, GatewayEvent::InvalidateSession(false)),
        "{raw}"
    );
    let closes: Vec<Option<u16>> = fake
        .gateway_frames()
        .iter()
        .filter(|f| f.op == CLOSE_FRAME_OP && !f.from_client)
        .map(|f| f.close)
        .collect();
    assert_eq!(
        closes,
        [
            Some(4004),
            Some(4002),
            Some(4001),
            Some(4003),
            Some(4012),
            Some(4005),
            Some(4000),
            Some(4009)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn heartbeats_acknowledge_sequence_numbers() -> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    fake.set_heartbeat_interval(1_000);
    let text = fake.text_channel("general");
    let mut ws = connect(&fake).await?;
    identify(&mut ws, TOKEN, ALL_INTENTS).await?;
    fake.user_message(text, ALICE, "one");
    fake.user_message(text, ALICE, "two");
    let seq = fake.last_seq().context("seq")?;
    assert_eq!(seq, 3);
    let waiter = {
        let fake = fake.clone();
        tokio::spawn(async move { fake.wait_heartbeat_seq(3, WAIT).await })
    };
    next_dispatch(&mut ws).await?;
    send(&mut ws, json!({"op": 1, "d": 2})).await?;
    fake.wait_gateway(WAIT, |s| s.heartbeat_seq == Some(2))
        .await?;
    assert!(!waiter.is_finished(), "seq 3 is not acknowledged yet");
    next_dispatch(&mut ws).await?;
    send(&mut ws, json!({"op": 1, "d": 3})).await?;
    waiter.await??;
    let status: GatewayStatus = fake.gateway_status();
    assert_eq!(status.heartbeat_seq, Some(3));

    // Acks can be switched off and on (the null heartbeat is the one not acked).
    fake.stop_heartbeat_acks(true);
    send(&mut ws, json!({"op": 1, "d": null})).await?;
    fake.wait_for_frame(WAIT, |f| f.from_client && f.op == 1 && f.d.is_null())
        .await?;
    fake.stop_heartbeat_acks(false);
    send(&mut ws, json!({"op": 1, "d": 3})).await?;
    // The ACKs not read yet: for the first `d: 3` and for the last one.
    for _ in 0..2 {
        let (raw, event) = next_event(&mut ws).await?;
        assert!(matches!(event, GatewayEvent::HeartbeatAck), "{raw}");
    }
    let acks = fake
        .wait_for_frame_count(WAIT, 3, |f| !f.from_client && f.op == 11)
        .await?;
    let heartbeats: Vec<Value> = fake
        .gateway_frames()
        .into_iter()
        .filter(|f| f.from_client && f.op == 1)
        .map(|f| f.d)
        .collect();
    assert_eq!(heartbeats, [json!(2), json!(3), Value::Null, json!(3)]);
    assert_eq!(acks.len(), 3);
    Ok(())
}

#[tokio::test]
async fn a_repeated_nonce_with_enforce_nonce_returns_the_message_already_created()
-> anyhow::Result<()> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let api = Api::new(&fake);
    let text = fake.text_channel("general");
    let path = format!("/channels/{text}/messages");
    let body = json!({"content": "once", "nonce": "a12.0", "enforce_nonce": true});
    let (status, first) = api.post(&path, body.clone()).await?;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["nonce"], "a12.0");
    let (status, again) = api.post(&path, body).await?;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"], "the same message comes back");
    assert_eq!(fake.messages_in(text).len(), 1);
    // Without enforce_nonce a nonce does not deduplicate.
    let (status, other) = api
        .post(&path, json!({"content": "once", "nonce": "a12.0"}))
        .await?;
    assert_eq!(status, 200);
    assert_ne!(other["id"], first["id"]);
    assert_eq!(fake.messages_in(text).len(), 2);
    // Discord's limits: 25 characters, a string or an integer.
    let (status, body) = api
        .post(&path, json!({"content": "x", "nonce": "n".repeat(26)}))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(form_error(&body, "nonce"), Some("BASE_TYPE_MAX_LENGTH"));
    let (status, body) = api
        .post(&path, json!({"content": "x", "nonce": {"a": 1}}))
        .await?;
    assert_eq!(status, 400);
    assert_eq!(form_error(&body, "nonce"), Some("BASE_TYPE_STRING"));
    let (status, _) = api
        .post(&path, json!({"content": "x", "nonce": 12345}))
        .await?;
    assert_eq!(status, 200);
    Ok(())
}
