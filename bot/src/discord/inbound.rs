//! What arrives from Discord, in the chat core's neutral terms: the [`Place`] of a channel
//! (Discord threads are channels), the [`Sender`] of a user with their roles, a user's
//! message as an [`Incoming`] prompt (the bot's mention stripped), and what a button press
//! or menu choice carries.
//!
//! Every message is claimed in SQLite ([`claim_and_handle`]) before it is handled, so one
//! that arrives both from the gateway ([`super::gateway`]) and from a catch-up read
//! ([`super::catch_up`]) is handled once; the claim keeps the message as a pending prompt
//! piece until it is delivered ([`crate::chat::core::ChatCore::claim_text`]), so a bot
//! killed inside the debounce window loses it not.

use serenity::all::{ChannelId, ComponentInteraction, ComponentInteractionDataKind, Message};
use serenity::model::id::{MessageId, RoleId};
use serenity::model::user::User;

use super::Discord;
use crate::chat::core::ChatCore;
use crate::chat::{Incoming, Input, Place, Sender};

/// Where a channel's (or thread's) messages go: Discord threads are channels, so a place
/// never has a separate thread id.
pub fn place_of(channel: ChannelId) -> Place {
    Place {
        chat: channel.to_string(),
        thread: None,
    }
}

/// `user` as a sender, named as the server shows them (their nickname there, else their
/// display name, else their username), with their role ids in the server when known.
pub fn sender(user: &User, nick: Option<&str>, roles: Option<&[RoleId]>) -> Sender {
    let name = nick
        .or(user.global_name.as_deref())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map_or_else(|| user.name.clone(), str::to_owned);
    Sender {
        id: user.id.to_string(),
        name,
        roles: roles
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

/// What a button press or menu choice carries.
pub fn component_data(c: &ComponentInteraction) -> Option<String> {
    match &c.data.kind {
        ComponentInteractionDataKind::Button => Some(c.data.custom_id.clone()),
        ComponentInteractionDataKind::StringSelect { values } => values.first().cloned(),
        _ => None,
    }
}

/// The chat input of a user's message, or `None` for bots' messages and messages with
/// nothing to say. `bot` is the bot's user id (0 before READY).
pub fn incoming_of(msg: &Message, bot: u64) -> Option<Incoming> {
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
    let files = super::files::attachments(msg);
    if text.is_empty() && files.is_empty() {
        return None;
    }
    let roles = msg.member.as_ref().map(|m| m.roles.as_slice());
    let nick = msg.member.as_ref().and_then(|m| m.nick.as_deref());
    Some(Incoming {
        place: place_of(msg.channel_id),
        from: sender(&msg.author, nick, roles),
        threads: false,
        direct: msg.guild_id.is_none() || mentioned,
        msg_id: Some(msg.id.get()),
        reply: None,
        input: if files.is_empty() {
            Input::Text(text.to_owned())
        } else {
            Input::Files {
                text: text.to_owned(),
                files,
            }
        },
    })
}

/// Claims message `id` with its pending row and hands it to the core (see the module
/// docs); false when it was claimed before (and nothing happens now).
pub async fn claim_and_handle(core: &ChatCore<Discord>, id: MessageId, inc: Incoming) -> bool {
    let Ok(claim) = i64::try_from(id.get()) else {
        core.handle(inc).await;
        return true;
    };
    core.claim_text(claim, inc).await
}
