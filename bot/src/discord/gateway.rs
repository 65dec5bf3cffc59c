//! serenity's event handler for the Discord adapter: it turns gateway events into chat
//! core calls. HELLO, IDENTIFY, heartbeats and RESUME are serenity's; [`Handler`] does the
//! rest:
//!
//! - READY: remembers the bot's user id, registers the slash commands the first time
//!   ([`super::commands::register`], again on the next READY if that failed), and starts a
//!   [`catch_up`] (a new gateway session: Discord will not replay what came before it).
//! - Interactions: a slash command goes to [`super::commands::on_command`]; a button press
//!   or menu choice is acknowledged at once (type 6), decided in a core task, and followed
//!   up privately only when it did nothing.
//! - Messages: a user's message in a bound thread (or addressed to the bot) is claimed and
//!   handed to the core as a prompt piece. Serenity runs handlers concurrently; the core
//!   joins prompt pieces in message-id (snowflake) order, so that cannot reorder a prompt.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serenity::all::{
    ChannelType, ComponentInteraction, Context, CreateInteractionResponse, EventHandler,
    GatewayIntents, Interaction, Message, Ready, ResumedEvent,
};
use tracing::{info, warn};

use super::catch_up::catch_up;
use super::commands;
use super::inbound::{claim_and_handle, component_data, incoming_of, place_of, sender};
use super::platform::{Discord, reply_handle};
use crate::chat::core::ChatCore;
use crate::chat::render::Rich;
use crate::chat::{Incoming, Input};

/// The intents the adapter needs: guilds (channels and threads), guild and direct messages,
/// and message content (privileged: enable it in the Developer Portal).
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// serenity's event handler (see the module docs).
pub struct Handler {
    core: Arc<ChatCore<Discord>>,
    guilds: Vec<u64>,
    global: bool,
    bot_id: AtomicU64,
    registered: AtomicBool,
    warned_content: AtomicBool,
}

impl Handler {
    /// A handler feeding `core`, registering the slash commands in `guilds` (and globally
    /// when `global` is set or `guilds` is empty).
    pub fn new(core: Arc<ChatCore<Discord>>, guilds: Vec<u64>, global: bool) -> Self {
        Self {
            core,
            guilds,
            global,
            bot_id: AtomicU64::new(0),
            registered: AtomicBool::new(false),
            warned_content: AtomicBool::new(false),
        }
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
        let nick = c.member.as_ref().and_then(|m| m.nick.as_deref());
        let threads = c
            .channel
            .as_ref()
            .is_some_and(|ch| matches!(ch.kind, ChannelType::Text | ChannelType::News));
        let inc = Incoming {
            place: place_of(c.channel_id),
            from: sender(&c.user, nick, roles),
            threads,
            direct: true,
            msg_id: Some(c.message.id.get()),
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
        if !self.core.concerns(&inc) {
            return;
        }
        // Quick: prompts go into the debounce buffer.
        claim_and_handle(&self.core, msg.id, inc).await;
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
        let rest = self.core.platform().rest();
        if !self.registered.swap(true, Ordering::SeqCst)
            && !commands::register(rest, ready.application.id, &self.guilds, self.global).await
        {
            // Try again on the next READY.
            self.registered.store(false, Ordering::SeqCst);
        }
        // A new gateway session: Discord will not replay what was written before it.
        let core = self.core.clone();
        self.core.spawn(catch_up(core, ready.user.id.get()));
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        info!("discord gateway resumed");
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        self.on_message(msg).await;
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        match interaction {
            Interaction::Command(cmd) => commands::on_command(&self.core, cmd).await,
            Interaction::Component(c) => self.on_component(c).await,
            _ => {}
        }
    }
}
