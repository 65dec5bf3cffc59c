//! What arrives from Telegram, in the chat core's terms: the bot's commands ([`TgCommand`],
//! also its command menu), messages and button presses handed to the core by the
//! dispatcher's handlers ([`on_message`], [`on_callback`]), each update claimed once.
//!
//! A message counts as addressed to the bot ([`crate::chat::Incoming::direct`]) in a
//! private chat, as a command, as a reply to one of the bot's messages, or when it
//! mentions the bot. Everything else in a place with no session (a group's General topic)
//! is chatter: the core ignores it, so members talking among themselves get no reply and
//! the group's message budget is not spent on them.

use std::sync::Arc;

use common::attach::MAX_IMAGE_EDGE;
use common::event::now_ms;
use teloxide::payloads::setters::*;
use teloxide::prelude::Requester;
use teloxide::types::{
    CallbackQuery, ChatKind, FileMeta, Message, MessageEntityKind, PhotoSize, PublicChatKind,
    Update, User,
};
use teloxide::utils::command::BotCommands;
use teloxide::{RequestError, respond};
use tracing::warn;

use super::PLATFORM;
use super::inflight::Inflight;
use super::platform::Telegram;
use crate::chat::core::ChatCore;
use crate::chat::{
    Attachment, AttachmentKind, ChatCommand, Incoming, Input, Lane, NewArgs, Place, Sender,
};
use crate::db::Db;

/// The bot's commands; each doc line is its one description in Telegram's command menu.
#[derive(BotCommands, Clone, Debug, PartialEq, Eq)]
#[command(rename_rule = "lowercase")]
pub enum TgCommand {
    /// Start a session: /new <dir> [name], or pick a recent directory
    New(String),
    /// List sessions, with buttons to show one here
    List,
    /// The session shown here: state, machine, cost
    Status,
    /// Show an existing session here: /bind <id or name>
    Bind(String),
    /// Send a prompt at once: /prompt <text>
    Prompt(String),
    /// End the running turn (queued prompts stay)
    Interrupt,
    /// Stop the session shown here
    Stop,
    /// Bring a stopped session back, with its history
    Resume,
    /// What the bot can do
    Help,
    /// Telegram's first message in a private chat.
    #[command(hide)]
    Start,
}

impl From<TgCommand> for ChatCommand {
    fn from(c: TgCommand) -> Self {
        match c {
            TgCommand::New(a) => Self::New(NewArgs::parse(&a)),
            TgCommand::List => Self::List,
            TgCommand::Status => Self::Status,
            TgCommand::Stop => Self::Stop,
            TgCommand::Interrupt => Self::Interrupt,
            TgCommand::Resume => Self::Resume,
            TgCommand::Bind(a) => Self::Bind(a),
            TgCommand::Prompt(a) => Self::Prompt(a),
            TgCommand::Help | TgCommand::Start => Self::Help,
        }
    }
}

/// What every handler gets (one `dptree` dependency).
pub struct Ctx {
    /// The chat core.
    pub core: Arc<ChatCore<Telegram>>,
    /// The store (update claims).
    pub db: Db,
    /// The updates not yet claimed (see [`super::inflight`]).
    pub inflight: Arc<Inflight>,
    /// The bot's username (for `/cmd@bot` and mentions).
    pub username: String,
    /// The bot's user id (for replies to it).
    pub bot_id: u64,
}

impl Ctx {
    /// True the first time update `id` is seen (see the module docs).
    async fn claim(&self, id: i64) -> bool {
        match self.db.chat_claim_update(PLATFORM, id, now_ms()).await {
            Ok(first) => first,
            Err(e) => {
                // Better to handle an update twice than to lose it.
                warn!(error = %e, "cannot record a handled update");
                true
            }
        }
    }

    /// True when `msg` is addressed to the bot (see the module docs).
    fn addressed(&self, msg: &Message, command: bool) -> bool {
        if command || msg.chat.is_private() {
            return true;
        }
        // In a forum every topic message "replies" to the topic's creation message; that
        // is not a reply to the bot.
        let replied = msg.reply_to_message().is_some_and(|r| {
            r.forum_topic_created().is_none()
                && r.from.as_ref().is_some_and(|u| u.id.0 == self.bot_id)
        });
        replied || self.mentions_bot(msg)
    }

    /// True when `msg` mentions the bot (`@name`, or a mention of its user).
    fn mentions_bot(&self, msg: &Message) -> bool {
        let Some(entities) = msg.parse_entities() else {
            return false;
        };
        entities.iter().any(|e| match e.kind() {
            MessageEntityKind::Mention => {
                !self.username.is_empty()
                    && e.text()
                        .trim_start_matches('@')
                        .eq_ignore_ascii_case(&self.username)
            }
            MessageEntityKind::TextMention { user } => user.id.0 == self.bot_id,
            _ => false,
        })
    }
}

/// `u` as a sender, named by their first name (last name too), else `@username`.
fn sender(u: &User) -> Sender {
    let full = match &u.last_name {
        Some(l) if !l.trim().is_empty() => format!("{} {l}", u.first_name),
        _ => u.first_name.clone(),
    };
    let name = if full.trim().is_empty() {
        u.username
            .as_ref()
            .map_or_else(|| u.id.0.to_string(), |n| format!("@{n}"))
    } else {
        full.trim().to_owned()
    };
    Sender {
        id: u.id.0.to_string(),
        name,
        roles: Vec::new(),
    }
}

fn place_of(m: &Message) -> Place {
    Place {
        chat: m.chat.id.0.to_string(),
        thread: m
            .is_topic_message
            .then_some(m.thread_id)
            .flatten()
            .map(|t| t.0.0.to_string()),
    }
}

fn is_forum(m: &Message) -> bool {
    match &m.chat.kind {
        ChatKind::Public(p) => matches!(&p.kind, PublicChatKind::Supergroup(s) if s.is_forum),
        ChatKind::Private(_) => false,
    }
}

/// The largest photo size whose long edge the model takes unscaled, else the smallest
/// (scaled down later).
fn photo_size(sizes: &[PhotoSize]) -> Option<&PhotoSize> {
    let edge = |p: &PhotoSize| p.width.max(p.height);
    sizes
        .iter()
        .filter(|p| edge(p) <= MAX_IMAGE_EDGE)
        .max_by_key(|p| edge(p))
        .or_else(|| sizes.iter().min_by_key(|p| edge(p)))
}

/// The files of `msg` (photo, document, voice, audio, video), if it carries any.
fn attachments(msg: &Message) -> Vec<Attachment> {
    let mk = |name: String, meta: &FileMeta, kind| Attachment {
        name,
        size: Some(u64::from(meta.size)),
        kind,
        handle: meta.id.0.clone(),
    };
    let mut out = Vec::new();
    if let Some(p) = msg.photo().and_then(photo_size) {
        out.push(mk(
            format!("photo-{}.jpg", msg.id.0),
            &p.file,
            AttachmentKind::Image,
        ));
    }
    if let Some(d) = msg.document() {
        let image = d
            .mime_type
            .as_ref()
            .is_some_and(|m| m.type_().as_str() == "image");
        let name = d
            .file_name
            .clone()
            .unwrap_or_else(|| format!("file-{}", msg.id.0));
        let kind = if image {
            AttachmentKind::Image
        } else {
            AttachmentKind::File
        };
        out.push(mk(name, &d.file, kind));
    }
    if let Some(v) = msg.voice() {
        out.push(mk(
            format!("voice-{}.ogg", msg.id.0),
            &v.file,
            AttachmentKind::Voice,
        ));
    }
    if let Some(v) = msg.video_note() {
        out.push(mk(
            format!("video-note-{}.mp4", msg.id.0),
            &v.file,
            AttachmentKind::Voice,
        ));
    }
    if let Some(a) = msg.audio() {
        let name = a
            .file_name
            .clone()
            .unwrap_or_else(|| format!("audio-{}", msg.id.0));
        out.push(mk(name, &a.file, AttachmentKind::File));
    }
    if let Some(v) = msg.video() {
        let name = v
            .file_name
            .clone()
            .unwrap_or_else(|| format!("video-{}.mp4", msg.id.0));
        out.push(mk(name, &v.file, AttachmentKind::File));
    }
    out
}

/// A message: a command or a prompt piece for the core.
pub async fn on_message(upd: Update, msg: Message, ctx: Arc<Ctx>) -> Result<(), RequestError> {
    let _claimed = ctx.inflight.guard(upd.id.0);
    let Some(from) = msg.from.as_ref() else {
        return respond(());
    };
    let files = attachments(&msg);
    let text = match (msg.text(), files.is_empty()) {
        (Some(t), _) => t,
        (None, false) => msg.caption().unwrap_or_default(),
        (None, true) => return respond(()),
    };
    if from.is_bot {
        return respond(());
    }
    let input = if !files.is_empty() {
        Input::Files {
            text: text.to_owned(),
            files,
        }
    } else if text.starts_with('/') {
        match TgCommand::parse(text, &ctx.username) {
            Ok(c) => Input::Command(c.into()),
            // Unknown slash words go to Claude (it has its own slash commands).
            Err(_) => Input::Text(text.to_owned()),
        }
    } else {
        Input::Text(text.to_owned())
    };
    let command = matches!(input, Input::Command(_));
    let inc = Incoming {
        place: place_of(&msg),
        from: sender(from),
        threads: is_forum(&msg),
        direct: ctx.addressed(&msg, command),
        msg_id: u64::try_from(msg.id.0).ok(),
        reply: None,
        input,
    };
    let update = i64::from(upd.id.0);
    // Quick: prompts go into the debounce buffer, commands into core tasks. Text for a
    // session is claimed with its pending row, so a crash before it is delivered loses it
    // not.
    if !command && ctx.core.concerns(&inc) {
        ctx.core.claim_text(update, inc).await;
    } else if ctx.claim(update).await {
        ctx.core.handle(inc).await;
    }
    respond(())
}

/// A button press: handled in a core task, then answered with a short toast.
pub async fn on_callback(upd: Update, q: CallbackQuery, ctx: Arc<Ctx>) -> Result<(), RequestError> {
    let _claimed = ctx.inflight.guard(upd.id.0);
    if !ctx.claim(i64::from(upd.id.0)).await {
        return respond(());
    }
    let (Some(data), Some(m)) = (q.data.clone(), q.regular_message()) else {
        return respond(());
    };
    let inc = Incoming {
        place: place_of(m),
        from: sender(&q.from),
        threads: is_forum(m),
        direct: true,
        msg_id: u64::try_from(m.id.0).ok(),
        reply: None,
        input: Input::Button(data),
    };
    // Deciding waits for a daemon: do it in a core task so this handler returns at once.
    let core = ctx.core.clone();
    ctx.core.spawn(async move {
        let toast = core.handle(inc).await.map(|a| a.text).unwrap_or_default();
        let platform = core.platform();
        let answer = platform
            .call(Lane::Answer, None, |_| {
                let req = platform
                    .bot
                    .answer_callback_query(q.id.clone())
                    .text(toast.clone());
                async move { req.await }
            })
            .await;
        if let Err(e) = answer {
            warn!(error = %e, "answering a button press failed");
        }
    });
    respond(())
}
