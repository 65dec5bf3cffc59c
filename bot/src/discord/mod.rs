//! The Discord adapter (serenity 0.12: gateway, models, builders) on the chat core in
//! [`crate::chat`].
//!
//! - [`Discord`] implements [`ChatPlatform`]: Discord Markdown (text escaped, Claude's
//!   Markdown kept, code fenced; see [`Rich::discord`]), at most 2000 characters a message
//!   (a long answer is split into up to [`ANSWER_PARTS`] messages with code blocks closed
//!   and reopened at the cuts, beyond that sent as `answer.md` with a summary embed),
//!   buttons (approvals) and a select menu (question options), threads for sessions. No
//!   message pings anyone (`allowed_mentions` is empty). Requests go through [`rest`],
//!   paced to ≤ 5 messages per 5 s per channel and 50 requests/s overall, and wait out
//!   429s.
//! - [`run`] connects serenity's gateway client (HELLO, IDENTIFY, heartbeats, RESUME after
//!   a dropped connection are serenity's) with the intents the adapter needs, registers
//!   the slash commands ([`commands`]) per configured guild and/or globally on the first
//!   READY, and hands what arrives to [`ChatCore`]: a slash command is deferred at once
//!   (interaction responses are not paced, so this stays well inside Discord's 3 s) and
//!   answered by editing the deferred response; a button press or menu choice is
//!   acknowledged at once, decided in a core task, and followed up privately only when it
//!   did nothing; plain messages in a bound thread are prompts.
//! - A slash command's channel says whether `/new` opens a thread: in a text channel it
//!   creates a public thread named after the session and binds it; in a thread or a DM it
//!   binds that place itself.
//!
//! Serenity's event handlers run concurrently; the core joins prompt pieces in message-id
//! (snowflake) order, so concurrent delivery cannot reorder a prompt.
//!
//! Nothing written while the bot was away is lost: a RESUME gets the missed events from
//! Discord, and after a fresh IDENTIFY (a restart, or a session Discord forgot) the bot
//! reads the recent messages of every bound thread ([`catch_up`]). Every message is
//! claimed in SQLite before it is handled, so one seen both ways is handled once.

pub mod rest;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::event::{Surface, now_ms};
use serde_json::Value;
use serenity::all::{
    AutoArchiveDuration, ButtonStyle as DcButtonStyle, ChannelId, ChannelType,
    CommandDataOptionValue, CommandInteraction, CommandOptionType, ComponentInteraction,
    ComponentInteractionDataKind, Context, CreateActionRow, CreateAllowedMentions,
    CreateAttachment, CreateButton, CreateCommand, CreateCommandOption, CreateEmbed,
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
    CreateMessage, CreateSelectMenu, CreateSelectMenuKind, CreateSelectMenuOption, CreateThread,
    EditInteractionResponse, EditMessage, EventHandler, GatewayIntents, GuildId, HttpBuilder,
    Interaction, LightMethod, Message, MessageId, Multipart, MultipartUpload, Ready, Request,
    ResumedEvent, Route, User,
};
use serenity::model::id::ApplicationId;
use serenity::model::id::RoleId;
use tokio::sync::watch;
use tracing::{error, info, warn};

use self::rest::{Pace, Rest};
use crate::AppState;
use crate::chat::core::ChatCore;
use crate::chat::render::{self, Rich};
use crate::chat::{
    Access, ButtonStyle, ChatCommand, ChatPlatform, Incoming, Input, NewArgs, Outgoing, Place,
    Sender,
};
use crate::db::Db;

/// The `platform` name in the `chat_*` tables.
pub const PLATFORM: &str = "discord";

/// Discord's message length limit.
pub const TEXT_LIMIT: usize = 2000;

/// Most messages one final answer is split into; a longer answer goes as a file.
pub const ANSWER_PARTS: usize = 4;

/// Embed description limit.
const EMBED_LIMIT: usize = 4096;

/// Thread name limit.
const THREAD_NAME_LIMIT: usize = 100;

/// Button label and select option limits.
const LABEL_LIMIT: usize = 80;
const OPTION_LIMIT: usize = 100;

/// How long each step of stopping may take before it is cut short.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How far back [`catch_up`] looks for messages sent while the bot was away.
const CATCH_UP_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Messages read per bound thread when catching up.
const CATCH_UP_LIMIT: u32 = 50;

/// How long message claims are kept (longer than [`CATCH_UP_WINDOW_MS`]).
const CLAIM_KEEP_MS: u64 = 3 * 24 * 3600 * 1000;

/// Discord's epoch (2015-01-01) in Unix ms: a snowflake's creation time is
/// `(id >> 22) + DISCORD_EPOCH_MS`.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The intents the adapter needs: guilds (channels and threads), guild and direct messages,
/// and message content (privileged: enable it in the Developer Portal).
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// The slash commands, as registered (bulk overwrite) on the first READY.
pub fn commands() -> Vec<CreateCommand> {
    let text = |name: &str, what: &str, required: bool| {
        CreateCommandOption::new(CommandOptionType::String, name, what).required(required)
    };
    vec![
        CreateCommand::new("new")
            .description("Start a Claude Code session in a new thread")
            .add_option(text(
                "directory",
                "Working directory on the daemon's machine",
                false,
            ))
            .add_option(text(
                "daemon",
                "Which daemon (needed when several are connected)",
                false,
            ))
            .add_option(text("name", "A name for the session", false)),
        CreateCommand::new("sessions").description("List sessions"),
        CreateCommand::new("status").description("Show the session bound here"),
        CreateCommand::new("stop").description("Stop the session bound here"),
        CreateCommand::new("interrupt").description("Interrupt the running turn"),
        CreateCommand::new("bind")
            .description("Show an existing session here")
            .add_option(text("session", "Session id, id prefix or name", true)),
        CreateCommand::new("prompt")
            .description("Send a prompt to the session bound here")
            .add_option(text("text", "The prompt", true)),
        CreateCommand::new("help").description("What the bot can do"),
    ]
}

fn channel_id(s: &str) -> anyhow::Result<ChannelId> {
    s.parse::<u64>()
        .ok()
        .filter(|v| *v != 0)
        .map(ChannelId::new)
        .ok_or_else(|| anyhow::anyhow!("`{s}` is not a Discord channel id"))
}

/// `text` as Discord Markdown within `limit` (cut at a line or word, marked with `…`).
fn fit(text: &Rich, limit: usize) -> String {
    let s = text.discord();
    if s.encode_utf16().count() <= limit {
        // Discord refuses an empty message.
        return if s.trim().is_empty() {
            "…".to_owned()
        } else {
            s
        };
    }
    render::split(text, limit.saturating_sub(1), usize::MAX, Rich::discord_len)
        .and_then(|parts| parts.into_iter().next())
        .map_or_else(|| "…".to_owned(), |p| format!("{}…", p.discord()))
}

/// The action rows for `msg`: a select menu for a question's options, else rows of
/// buttons (Discord allows 5 rows of 5).
fn components(msg: &Outgoing) -> Vec<CreateActionRow> {
    if msg.buttons.is_empty() {
        return Vec::new();
    }
    if msg.choice {
        let options: Vec<_> = msg
            .buttons
            .iter()
            .flatten()
            .take(25)
            .map(|b| {
                CreateSelectMenuOption::new(
                    render::truncate(&b.label, OPTION_LIMIT),
                    b.data.clone(),
                )
            })
            .collect();
        let menu = CreateSelectMenu::new("choice", CreateSelectMenuKind::String { options })
            .placeholder("Choose an answer");
        return vec![CreateActionRow::SelectMenu(menu)];
    }
    msg.buttons
        .iter()
        .take(5)
        .map(|row| {
            CreateActionRow::Buttons(
                row.iter()
                    .take(5)
                    .map(|b| {
                        CreateButton::new(b.data.clone())
                            .label(render::truncate(&b.label, LABEL_LIMIT))
                            .style(match b.style {
                                ButtonStyle::Primary => DcButtonStyle::Primary,
                                ButtonStyle::Secondary => DcButtonStyle::Secondary,
                                ButtonStyle::Success => DcButtonStyle::Success,
                                ButtonStyle::Danger => DcButtonStyle::Danger,
                            })
                    })
                    .collect(),
            )
        })
        .collect()
}

/// A reply handle (see [`Incoming::reply`]): `<application id>/<interaction token>`.
fn reply_handle(app: ApplicationId, token: &str) -> String {
    format!("{app}/{token}")
}

fn parse_reply(reply: &str) -> anyhow::Result<(ApplicationId, &str)> {
    let (app, token) = reply
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("bad reply handle"))?;
    let app = app
        .parse::<u64>()
        .ok()
        .filter(|v| *v != 0)
        .ok_or_else(|| anyhow::anyhow!("bad application id in a reply handle"))?;
    Ok((ApplicationId::new(app), token))
}

/// The outbound side: [`Rest`] with Discord's limits.
pub struct Discord {
    rest: Rest,
}

impl Discord {
    /// An adapter sending through `rest`.
    pub fn new(rest: Rest) -> Self {
        Self { rest }
    }

    /// The REST client.
    pub fn rest(&self) -> &Rest {
        &self.rest
    }

    async fn respond(
        &self,
        id: serenity::all::InteractionId,
        token: &str,
        resp: &CreateInteractionResponse,
    ) -> anyhow::Result<()> {
        self.rest
            .json(
                Pace::Interaction,
                Route::InteractionResponse {
                    interaction_id: id,
                    token,
                },
                LightMethod::Post,
                resp,
            )
            .await?;
        Ok(())
    }

    /// A follow-up message to an interaction (`private`: only its user sees it).
    async fn follow_up(&self, reply: &str, text: &Rich, private: bool) -> anyhow::Result<()> {
        let (application_id, token) = parse_reply(reply)?;
        let body = CreateInteractionResponseFollowup::new()
            .content(fit(text, TEXT_LIMIT))
            .allowed_mentions(CreateAllowedMentions::new())
            .ephemeral(private);
        self.rest
            .json(
                Pace::Interaction,
                Route::WebhookFollowupMessages {
                    application_id,
                    token,
                },
                LightMethod::Post,
                &body,
            )
            .await?;
        Ok(())
    }
}

impl ChatPlatform for Discord {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    fn surface(&self) -> Surface {
        Surface::Discord
    }

    fn text_limit(&self) -> usize {
        TEXT_LIMIT
    }

    fn measure(&self, text: &Rich) -> usize {
        // The Markdown counts against Discord's 2000.
        text.discord_len()
    }

    fn answer_parts(&self) -> usize {
        ANSWER_PARTS
    }

    fn new_usage(&self) -> &'static str {
        "/new directory:<dir> name:<name>"
    }

    fn link(&self, place: &Place) -> Option<String> {
        Some(format!("<#{}>", place.chat))
    }

    async fn send(&self, to: &Place, msg: &Outgoing) -> anyhow::Result<String> {
        let channel = channel_id(&to.chat)?;
        let body = CreateMessage::new()
            .content(fit(&msg.text, TEXT_LIMIT))
            .components(components(msg))
            .allowed_mentions(CreateAllowedMentions::new());
        let sent = self
            .rest
            .json(
                Pace::Channel(&to.chat),
                Route::ChannelMessages {
                    channel_id: channel,
                },
                LightMethod::Post,
                &body,
            )
            .await?;
        message_id(&sent)
    }

    async fn edit(&self, to: &Place, id: &str, msg: &Outgoing) -> anyhow::Result<()> {
        let channel = channel_id(&to.chat)?;
        let id = id
            .parse::<u64>()
            .ok()
            .filter(|v| *v != 0)
            .map(MessageId::new)
            .ok_or_else(|| anyhow::anyhow!("`{id}` is not a message id"))?;
        let body = EditMessage::new()
            .content(fit(&msg.text, TEXT_LIMIT))
            .components(components(msg))
            .allowed_mentions(CreateAllowedMentions::new());
        self.rest
            .json(
                Pace::Channel(&to.chat),
                Route::ChannelMessage {
                    channel_id: channel,
                    message_id: id,
                },
                LightMethod::Patch,
                &body,
            )
            .await?;
        Ok(())
    }

    async fn send_file(
        &self,
        to: &Place,
        name: &str,
        bytes: Vec<u8>,
        caption: &Rich,
    ) -> anyhow::Result<()> {
        let channel = channel_id(&to.chat)?;
        let file = CreateAttachment::bytes(bytes, name);
        let embed = CreateEmbed::new()
            .title(format!("📎 {name}"))
            .description(fit(caption, EMBED_LIMIT));
        let body = CreateMessage::new()
            .embed(embed)
            .add_file(file.clone())
            .allowed_mentions(CreateAllowedMentions::new());
        let req = Request::new(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Post,
        )
        .multipart(Some(Multipart {
            upload: MultipartUpload::Attachments(vec![file]),
            fields: Vec::new(),
            payload_json: Some(serde_json::to_string(&body)?),
        }));
        self.rest.call(Pace::Channel(&to.chat), req).await?;
        Ok(())
    }

    async fn open_thread(&self, chat: &str, title: &str) -> anyhow::Result<Place> {
        let channel = channel_id(chat)?;
        let name = render::truncate(&render::one_line(title), THREAD_NAME_LIMIT);
        let body = CreateThread::new(name)
            .kind(ChannelType::PublicThread)
            .auto_archive_duration(AutoArchiveDuration::OneWeek);
        let thread = self
            .rest
            .json(
                Pace::Global,
                Route::ChannelThreads {
                    channel_id: channel,
                },
                LightMethod::Post,
                &body,
            )
            .await?;
        Ok(Place {
            chat: message_id(&thread)?,
            thread: None,
        })
    }

    async fn answer(&self, to: &Place, reply: Option<&str>, msg: &Outgoing) -> anyhow::Result<()> {
        let Some(reply) = reply else {
            return self.send(to, msg).await.map(drop);
        };
        let (application_id, token) = parse_reply(reply)?;
        // A long answer: the first part in the deferred response, the rest as follow-ups.
        let parts = render::split(&msg.text, TEXT_LIMIT, ANSWER_PARTS, Rich::discord_len)
            .unwrap_or_else(|| vec![msg.text.clone()]);
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        let body = EditInteractionResponse::new()
            .content(fit(&first, TEXT_LIMIT))
            .components(components(msg))
            .allowed_mentions(CreateAllowedMentions::new());
        self.rest
            .json(
                Pace::Interaction,
                Route::WebhookOriginalInteractionResponse {
                    application_id,
                    token,
                },
                LightMethod::Patch,
                &body,
            )
            .await?;
        for part in parts {
            self.follow_up(reply, &part, false).await?;
        }
        Ok(())
    }
}

/// Where a channel's (or thread's) messages go: Discord threads are channels, so a place
/// never has a separate thread id.
fn place_of(channel: ChannelId) -> Place {
    Place {
        chat: channel.to_string(),
        thread: None,
    }
}

/// The `id` of a message or channel object Discord answered with.
fn message_id(v: &Value) -> anyhow::Result<String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("Discord's answer has no id"))
}

fn sender(user: &User, roles: Option<&[RoleId]>) -> Sender {
    Sender {
        id: user.id.to_string(),
        name: user
            .global_name
            .clone()
            .unwrap_or_else(|| format!("@{}", user.name)),
        roles: roles
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

/// The chat command of a slash command interaction.
fn command_of(cmd: &CommandInteraction) -> Option<ChatCommand> {
    let opt = |name: &str| {
        cmd.data
            .options
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| match &o.value {
                CommandDataOptionValue::String(s) => Some(s.trim().to_owned()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
    };
    Some(match cmd.data.name.as_str() {
        "new" => ChatCommand::New(NewArgs {
            dir: opt("directory"),
            name: opt("name"),
            daemon: opt("daemon"),
        }),
        "sessions" => ChatCommand::List,
        "status" => ChatCommand::Status,
        "stop" => ChatCommand::Stop,
        "interrupt" => ChatCommand::Interrupt,
        "bind" => ChatCommand::Bind(opt("session").unwrap_or_default()),
        "prompt" => ChatCommand::Prompt(opt("text").unwrap_or_default()),
        "help" => ChatCommand::Help,
        _ => return None,
    })
}

/// What a button press or menu choice carries.
fn component_data(c: &ComponentInteraction) -> Option<String> {
    match &c.data.kind {
        ComponentInteractionDataKind::Button => Some(c.data.custom_id.clone()),
        ComponentInteractionDataKind::StringSelect { values } => values.first().cloned(),
        _ => None,
    }
}

/// The chat input of a user's message, or `None` for bots' messages and messages with
/// nothing to say. `bot` is the bot's user id (0 before READY).
fn incoming_of(msg: &Message, bot: u64) -> Option<Incoming> {
    if msg.author.bot {
        return None;
    }
    let mentioned = bot != 0 && msg.mentions.iter().any(|u| u.id.get() == bot);
    let mut text = msg.content.trim();
    for m in [format!("<@{bot}>"), format!("<@!{bot}>")] {
        if let Some(rest) = text.strip_prefix(m.as_str()) {
            text = rest.trim_start();
        }
    }
    if text.is_empty() {
        return None;
    }
    let roles = msg.member.as_ref().map(|m| m.roles.as_slice());
    Some(Incoming {
        place: place_of(msg.channel_id),
        from: sender(&msg.author, roles),
        threads: false,
        direct: msg.guild_id.is_none() || mentioned,
        msg_id: Some(msg.id.get()),
        reply: None,
        input: Input::Text(text.to_owned()),
    })
}

/// True the first time message `id` is claimed (see the module docs).
async fn claim(db: &Db, id: MessageId) -> bool {
    let Ok(id) = i64::try_from(id.get()) else {
        return true;
    };
    match db
        .chat_claim_message(PLATFORM, id, now_ms(), CLAIM_KEEP_MS)
        .await
    {
        Ok(first) => first,
        Err(e) => {
            // Better to handle a message twice than to lose it.
            warn!(error = %e, "cannot record a handled message");
            true
        }
    }
}

/// Handles what users wrote in bound threads while the bot was not connected: the most
/// recent [`CATCH_UP_LIMIT`] messages of each, from the last day and after it was bound,
/// that no one has handled (claimed) yet, oldest first.
///
/// Messages read over REST carry no member, so a sender not allowed by user id has their
/// roles looked up in the thread's server.
pub async fn catch_up(core: Arc<ChatCore<Discord>>, db: Db, bot: u64) {
    let rest = core.platform().rest();
    let since_window = now_ms().saturating_sub(CATCH_UP_WINDOW_MS);
    for (place, bound_ms) in core.bound_places() {
        let Ok(channel) = channel_id(&place.chat) else {
            continue;
        };
        let since = bound_ms.max(since_window);
        let req = Request::new(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Get,
        )
        .params(Some(vec![("limit", CATCH_UP_LIMIT.to_string())]));
        let list = match rest.call(Pace::Global, req).await {
            Ok(Value::Array(list)) => list,
            Ok(_) => continue,
            Err(e) => {
                warn!(channel = %channel, error = %e, "cannot read a bound thread's recent messages");
                continue;
            }
        };
        let mut msgs: Vec<Message> = list
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .filter(|m: &Message| (m.id.get() >> 22) + DISCORD_EPOCH_MS >= since)
            .collect();
        msgs.sort_by_key(|m| m.id);
        // Looked up at most once per thread and once per author.
        let mut guild: Option<Option<GuildId>> = None;
        let mut roles: HashMap<serenity::all::UserId, Vec<String>> = HashMap::new();
        for m in msgs {
            let Some(mut inc) = incoming_of(&m, bot) else {
                continue;
            };
            if !core.allows(&inc.from) {
                if guild.is_none() {
                    guild = Some(guild_of(rest, channel).await);
                }
                if let Some(Some(g)) = guild {
                    inc.from.roles = match roles.entry(m.author.id) {
                        Entry::Occupied(e) => e.get().clone(),
                        Entry::Vacant(e) => {
                            e.insert(member_roles(rest, g, m.author.id).await).clone()
                        }
                    };
                }
            }
            if !claim(&db, m.id).await {
                continue;
            }
            info!(channel = %channel, "handling a message sent while the bot was away");
            core.handle(inc).await;
        }
    }
}

/// The server a channel (thread) belongs to.
async fn guild_of(rest: &Rest, channel: ChannelId) -> Option<GuildId> {
    let req = Request::new(
        Route::Channel {
            channel_id: channel,
        },
        LightMethod::Get,
    );
    let v = rest.call(Pace::Global, req).await.ok()?;
    v.get("guild_id")
        .and_then(Value::as_str)
        .and_then(|g| g.parse::<u64>().ok())
        .filter(|g| *g != 0)
        .map(GuildId::new)
}

/// A member's role ids (none when they cannot be read).
async fn member_roles(rest: &Rest, guild: GuildId, user: serenity::all::UserId) -> Vec<String> {
    let req = Request::new(
        Route::GuildMember {
            guild_id: guild,
            user_id: user,
        },
        LightMethod::Get,
    );
    match rest.call(Pace::Global, req).await {
        Ok(v) => v
            .get("roles")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            warn!(error = %e, "cannot read a member's roles");
            Vec::new()
        }
    }
}

/// serenity's event handler: turns gateway events into [`ChatCore`] calls.
struct Handler {
    core: Arc<ChatCore<Discord>>,
    db: Db,
    guilds: Vec<u64>,
    global: bool,
    bot_id: AtomicU64,
    registered: AtomicBool,
    warned_content: AtomicBool,
}

impl Handler {
    async fn register(&self, app: ApplicationId) -> bool {
        let body = match serde_json::to_vec(&commands()) {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "cannot encode the slash commands");
                return false;
            }
        };
        let rest = self.core.platform().rest();
        let mut ok = true;
        for guild in &self.guilds {
            let Some(guild_id) = (*guild != 0).then(|| GuildId::new(*guild)) else {
                continue;
            };
            let req = Request::new(
                Route::GuildCommands {
                    application_id: app,
                    guild_id,
                },
                LightMethod::Put,
            )
            .body(Some(body.clone()));
            if let Err(e) = rest.call(Pace::Global, req).await {
                ok = false;
                error!(
                    guild,
                    error = %e,
                    "registering the slash commands failed (is the bot in that server, invited with the applications.commands scope?)"
                );
            }
        }
        if self.global || self.guilds.is_empty() {
            let req = Request::new(
                Route::Commands {
                    application_id: app,
                },
                LightMethod::Put,
            )
            .body(Some(body));
            if let Err(e) = rest.call(Pace::Global, req).await {
                ok = false;
                error!(error = %e, "registering the global slash commands failed");
            }
        }
        ok
    }

    async fn on_command(&self, cmd: CommandInteraction) {
        let platform = self.core.platform();
        let roles = cmd.member.as_ref().map(|m| m.roles.as_slice());
        let from = sender(&cmd.user, roles);
        let Some(command) = command_of(&cmd) else {
            let msg = CreateInteractionResponseMessage::new()
                .content("Unknown command: the bot's commands have changed; try again in a moment.")
                .ephemeral(true);
            if let Err(e) = platform
                .respond(cmd.id, &cmd.token, &CreateInteractionResponse::Message(msg))
                .await
            {
                warn!(
                    error = format!("{e:#}"),
                    "answering an unknown command failed"
                );
            }
            return;
        };
        // Acknowledge first: Discord drops an interaction not answered within 3 s. A
        // refusal is answered privately.
        let private = !self.core.allows(&from);
        let defer = CreateInteractionResponse::Defer(
            CreateInteractionResponseMessage::new().ephemeral(private),
        );
        let deferred = match platform.respond(cmd.id, &cmd.token, &defer).await {
            Ok(()) => true,
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "deferring a slash command failed; answering in the channel instead"
                );
                false
            }
        };
        let threads = cmd
            .channel
            .as_ref()
            .is_some_and(|c| matches!(c.kind, ChannelType::Text | ChannelType::News));
        let inc = Incoming {
            place: place_of(cmd.channel_id),
            from,
            threads,
            direct: true,
            msg_id: None,
            reply: deferred.then(|| reply_handle(cmd.application_id, &cmd.token)),
            input: Input::Command(command),
        };
        self.core.handle(inc).await;
    }

    async fn on_component(&self, c: ComponentInteraction) {
        let platform = self.core.platform();
        if let Err(e) = platform
            .respond(c.id, &c.token, &CreateInteractionResponse::Acknowledge)
            .await
        {
            warn!(
                error = format!("{e:#}"),
                "acknowledging a button press failed"
            );
        }
        let Some(data) = component_data(&c) else {
            return;
        };
        let roles = c.member.as_ref().map(|m| m.roles.as_slice());
        let inc = Incoming {
            place: place_of(c.channel_id),
            from: sender(&c.user, roles),
            threads: false,
            direct: true,
            msg_id: None,
            reply: None,
            input: Input::Button(data),
        };
        let reply = reply_handle(c.application_id, &c.token);
        // Deciding waits for a daemon: do it in a core task so this handler returns at once.
        let core = self.core.clone();
        self.core.spawn(async move {
            let Some(ack) = core.handle(inc).await else {
                return;
            };
            // The message edit shows a decision; only a press that did nothing gets a
            // word, and only its user sees it.
            if !ack.ok
                && let Err(e) = core
                    .platform()
                    .follow_up(&reply, &Rich::text(ack.text), true)
                    .await
            {
                warn!(error = format!("{e:#}"), "answering a button press failed");
            }
        });
    }

    async fn on_message(&self, msg: Message) {
        let bot = self.bot_id.load(Ordering::Relaxed);
        let Some(inc) = incoming_of(&msg, bot) else {
            let empty = msg.content.trim().is_empty()
                && msg.attachments.is_empty()
                && msg.embeds.is_empty();
            if !msg.author.bot
                && empty
                && msg.guild_id.is_some()
                && !self.warned_content.swap(true, Ordering::Relaxed)
            {
                warn!(
                    "a guild message arrived without content: is the MESSAGE CONTENT intent enabled for the bot in the Discord Developer Portal?"
                );
            }
            return;
        };
        if !self.core.concerns(&inc) || !claim(&self.db, msg.id).await {
            return;
        }
        // Quick: prompts go into the debounce buffer.
        self.core.handle(inc).await;
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.bot_id.store(ready.user.id.get(), Ordering::Relaxed);
        info!(
            user = %ready.user.name,
            guilds = ready.guilds.len(),
            "discord gateway ready"
        );
        if !self.registered.swap(true, Ordering::SeqCst)
            && !self.register(ready.application.id).await
        {
            // Try again on the next READY.
            self.registered.store(false, Ordering::SeqCst);
        }
        // A new gateway session: Discord will not replay what was written before it.
        let (core, db) = (self.core.clone(), self.db.clone());
        self.core.spawn(catch_up(core, db, ready.user.id.get()));
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        info!("discord gateway resumed");
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        self.on_message(msg).await;
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(cmd) => self.on_command(cmd).await,
            Interaction::Component(c) => self.on_component(c).await,
            _ => {}
        }
    }
}

/// Runs the Discord adapter until `stop` turns true.
pub async fn run(
    state: Arc<AppState>,
    token: String,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let cfg = &state.cfg;
    let rest = Rest::new(&token, &cfg.discord_api_url)?;
    let mut http = HttpBuilder::new(&token);
    if let Some(proxy) = rest.proxy() {
        // serenity's ratelimiter would send to discord.com whatever the proxy says.
        http = http.proxy(proxy).ratelimiter_disabled(true);
    }
    let http = http.build();
    let access = Access {
        users: cfg
            .discord_allowed_users
            .iter()
            .map(u64::to_string)
            .collect(),
        roles: cfg
            .discord_allowed_roles
            .iter()
            .map(u64::to_string)
            .collect(),
    };
    if access.users.is_empty() && access.roles.is_empty() {
        warn!(
            "no one may use the Discord bot: set CCRM_BOT_DISCORD_ALLOWED_USERS or CCRM_BOT_DISCORD_ALLOWED_ROLES"
        );
    }
    let core = ChatCore::new(
        state.clone(),
        Discord::new(rest),
        access,
        cfg.chat_prompts_per_minute,
    )
    .await?;
    let events = tokio::spawn(core.clone().run_events(stop.clone()));
    let handler = Handler {
        core: core.clone(),
        db: state.db.clone(),
        guilds: cfg.discord_guilds.clone(),
        global: cfg.discord_global_commands,
        bot_id: AtomicU64::new(0),
        registered: AtomicBool::new(false),
        warned_content: AtomicBool::new(false),
    };
    let mut client = serenity::all::ClientBuilder::new_with_http(http, intents())
        .event_handler(handler)
        .await?;
    let shards = client.shard_manager.clone();
    let mut gateway = tokio::spawn(async move { client.start().await });
    info!("discord adapter running");
    let ended = tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        r = &mut gateway => {
            match r {
                Ok(Err(e)) => error!(error = %e, "the discord gateway client stopped"),
                Ok(Ok(())) => warn!("the discord gateway client stopped"),
                Err(e) => error!(error = %e, "the discord gateway task failed"),
            }
            true
        }
    };
    if !ended {
        if tokio::time::timeout(STOP_GRACE, shards.shutdown_all())
            .await
            .is_err()
        {
            warn!("the discord shards did not stop in time");
        }
        if tokio::time::timeout(STOP_GRACE, &mut gateway)
            .await
            .is_err()
        {
            warn!("the discord gateway client did not stop in time; aborting it");
            gateway.abort();
        }
    }
    if tokio::time::timeout(STOP_GRACE, events).await.is_err() {
        warn!("the chat event loop did not stop in time");
    }
    core.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chat::Button;

    #[test]
    fn commands_serialize_as_discord_expects() {
        let v = serde_json::to_value(commands()).expect("json");
        let names: Vec<&str> = v
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "new",
                "sessions",
                "status",
                "stop",
                "interrupt",
                "bind",
                "prompt",
                "help"
            ]
        );
        let new = &v[0];
        assert_eq!(new["options"][0]["name"], "directory");
        assert_eq!(new["options"][0]["type"], 3);
        assert_eq!(v[5]["options"][0]["required"], true);
    }

    #[test]
    fn buttons_and_menus() {
        let b = |label: &str, data: &str, style| Button {
            label: label.into(),
            data: data.into(),
            style,
        };
        let msg = Outgoing {
            text: Rich::text("x"),
            buttons: vec![vec![
                b("Allow", "a:1:a", ButtonStyle::Success),
                b("Deny", "a:1:d", ButtonStyle::Danger),
            ]],
            choice: false,
        };
        let rows = serde_json::to_value(components(&msg)).expect("json");
        assert_eq!(rows[0]["type"], 1);
        assert_eq!(rows[0]["components"][0]["custom_id"], "a:1:a");
        assert_eq!(rows[0]["components"][0]["style"], 3);
        assert_eq!(rows[0]["components"][1]["style"], 4);
        let q = Outgoing {
            choice: true,
            buttons: vec![
                vec![b("Red", "q:2:0", ButtonStyle::Secondary)],
                vec![b("Blue", "q:2:1", ButtonStyle::Secondary)],
            ],
            ..msg
        };
        let rows = serde_json::to_value(components(&q)).expect("json");
        assert_eq!(rows[0]["components"][0]["type"], 3);
        assert_eq!(
            rows[0]["components"][0]["options"],
            json!([{"label": "Red", "value": "q:2:0"}, {"label": "Blue", "value": "q:2:1"}])
        );
        assert!(components(&Outgoing::text(Rich::text("y"))).is_empty());
    }

    #[test]
    fn fit_keeps_messages_under_the_limit() {
        assert_eq!(fit(&Rich::text(""), TEXT_LIMIT), "…");
        let long = Rich::default().md("word ".repeat(1000));
        let out = fit(&long, TEXT_LIMIT);
        assert!(out.encode_utf16().count() <= TEXT_LIMIT && out.ends_with('…'));
        assert_eq!(
            parse_reply("42/tok").expect("ok"),
            (ApplicationId::new(42), "tok")
        );
        assert!(parse_reply("nope").is_err() && parse_reply("0/t").is_err());
    }
}
