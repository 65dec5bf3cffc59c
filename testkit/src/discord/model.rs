//! The fake Discord's records and Discord's constants: channels and threads, members,
//! stored messages and files, interactions as handed out, and the message flags, types,
//! channel types, permissions and limits they are checked against.
//!
//! Plain data with their public views ([`Stored::public`], [`InteractionRec::public`]);
//! the [`World`](super::world::World) owns them, `interactions` and `shapes` read them.
//! Nothing here refers to a sibling module, so every other part of the fake can use it.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Attachment, InteractionState, Message};

/// Milliseconds from the Unix epoch to Discord's (2015-01-01).
pub(super) const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// How long an interaction token works for follow-ups and edits.
pub(super) const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Largest file a bot may upload to a guild without boosts (10 MiB).
pub(super) const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Most files in one message.
pub(super) const MAX_FILES: usize = 10;
/// `attachment_size_limit` in interactions.
pub(super) const ATTACHMENT_SIZE_LIMIT: usize = MAX_FILE_BYTES;

/// Message flags.
pub(super) const FLAG_SUPPRESS_EMBEDS: u64 = 1 << 2;
pub(super) const FLAG_HAS_THREAD: u64 = 1 << 5;
pub(super) const FLAG_EPHEMERAL: u64 = 1 << 6;
pub(super) const FLAG_LOADING: u64 = 1 << 7;
pub(super) const FLAG_SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;
pub(super) const FLAG_COMPONENTS_V2: u64 = 1 << 15;

/// Message types.
pub(super) const TYPE_DEFAULT: u8 = 0;
pub(super) const TYPE_REPLY: u8 = 19;
pub(super) const TYPE_CHAT_INPUT_COMMAND: u8 = 20;

/// Channel types.
pub(super) const CHANNEL_TEXT: u8 = 0;
pub(super) const CHANNEL_DM: u8 = 1;
pub(super) const CHANNEL_PUBLIC_THREAD: u8 = 11;
pub(super) const CHANNEL_PRIVATE_THREAD: u8 = 12;

/// Permissions of the bot in every channel (`app_permissions`): view, send, embed,
/// attach, history, mention everyone, external emojis, reactions, manage messages,
/// application commands, threads (manage, create public/private, send in threads).
pub(super) const BOT_PERMISSIONS: u64 = (1 << 6)
    | (1 << 10)
    | (1 << 11)
    | (1 << 13)
    | (1 << 14)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 18)
    | (1 << 31)
    | (1 << 34)
    | (1 << 35)
    | (1 << 36)
    | (1 << 38);
/// Permissions of a user member: view, send, embed, attach, history, reactions,
/// application commands, create public threads, send in threads.
pub(super) const MEMBER_PERMISSIONS: u64 = (1 << 6)
    | (1 << 10)
    | (1 << 11)
    | (1 << 14)
    | (1 << 15)
    | (1 << 16)
    | (1 << 31)
    | (1 << 35)
    | (1 << 38);

pub(super) enum ChannelKind {
    /// A guild text channel.
    Text,
    Thread {
        parent: u64,
        owner: u64,
        private: bool,
        archived: bool,
        locked: bool,
        auto_archive: u64,
        created: SystemTime,
        archive_changed: SystemTime,
    },
    Dm {
        user: u64,
    },
}

pub(super) struct Channel {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) kind: ChannelKind,
    pub(super) last_message_id: Option<u64>,
    /// Messages sent in a thread (Discord's `message_count`/`total_message_sent`).
    pub(super) message_count: u64,
}

impl Channel {
    pub(super) fn in_guild(&self) -> bool {
        !matches!(self.kind, ChannelKind::Dm { .. })
    }

    pub(super) fn type_code(&self) -> u8 {
        match self.kind {
            ChannelKind::Text => CHANNEL_TEXT,
            ChannelKind::Thread { private: false, .. } => CHANNEL_PUBLIC_THREAD,
            ChannelKind::Thread { private: true, .. } => CHANNEL_PRIVATE_THREAD,
            ChannelKind::Dm { .. } => CHANNEL_DM,
        }
    }
}

pub(super) struct MemberInfo {
    pub(super) name: String,
    /// The member's nickname in the guild, if they set one.
    pub(super) nick: Option<String>,
    pub(super) roles: Vec<u64>,
    pub(super) joined: SystemTime,
}

#[derive(Clone)]
pub(super) struct StoredFile {
    pub(super) id: u64,
    pub(super) filename: String,
    pub(super) content_type: Option<String>,
    pub(super) description: Option<String>,
    pub(super) bytes: Vec<u8>,
}

#[derive(Clone)]
pub(super) struct Stored {
    pub(super) id: u64,
    pub(super) channel: u64,
    pub(super) author: u64,
    pub(super) kind: u8,
    pub(super) content: String,
    pub(super) embeds: Vec<Value>,
    pub(super) components: Vec<Value>,
    pub(super) attachments: Vec<StoredFile>,
    pub(super) flags: u64,
    pub(super) tts: bool,
    pub(super) mentions: Vec<u64>,
    pub(super) mention_roles: Vec<u64>,
    pub(super) mention_everyone: bool,
    /// The message this one replies to.
    pub(super) reference: Option<u64>,
    /// The interaction it answers (responses and follow-ups).
    pub(super) interaction: Option<u64>,
    /// The thread started from it.
    pub(super) thread: Option<u64>,
    pub(super) edits: u32,
    pub(super) created_at: SystemTime,
    pub(super) edited_at: Option<SystemTime>,
}

impl Stored {
    pub(super) fn is_empty(&self, has_other: bool) -> bool {
        self.content.trim().is_empty()
            && self.embeds.is_empty()
            && self.attachments.is_empty()
            && self.components.is_empty()
            && !has_other
    }

    /// The message as tests see it ([`Message`]).
    pub(super) fn public(&self) -> Message {
        Message {
            id: self.id,
            channel: self.channel,
            author: self.author,
            kind: self.kind,
            content: self.content.clone(),
            embeds: self.embeds.clone(),
            components: self.components.clone(),
            attachments: self
                .attachments
                .iter()
                .map(|a| Attachment {
                    filename: a.filename.clone(),
                    bytes: a.bytes.clone(),
                    content_type: a.content_type.clone(),
                })
                .collect(),
            flags: self.flags,
            ephemeral: self.flags & FLAG_EPHEMERAL != 0,
            interaction: self.interaction,
            reply_to: self.reference,
            thread: self.thread,
            mentions: self.mentions.clone(),
            edits: self.edits,
            created_at: self.created_at,
            edited_at: self.edited_at,
        }
    }
}

/// An interaction the fake handed out, and how the bot answered it.
pub(super) struct InteractionRec {
    pub(super) id: u64,
    pub(super) token: String,
    /// 2 (application command) or 3 (message component).
    pub(super) kind: u8,
    pub(super) channel: u64,
    pub(super) user: u64,
    /// Command name or component `custom_id`.
    pub(super) name: String,
    /// The message a component is on.
    pub(super) message: Option<u64>,
    pub(super) created: SystemTime,
    pub(super) dispatched_at: SystemTime,
    pub(super) written: bool,
    pub(super) acked_at: Option<SystemTime>,
    pub(super) ack_type: Option<u8>,
    pub(super) original: Option<u64>,
    pub(super) followups: Vec<u64>,
}

impl InteractionRec {
    /// The interaction as tests see it ([`InteractionState`]).
    pub(super) fn public(&self) -> InteractionState {
        InteractionState {
            id: self.id,
            kind: self.kind,
            channel: self.channel,
            user: self.user,
            name: self.name.clone(),
            message: self.message,
            dispatched_at: self.dispatched_at,
            written: self.written,
            acked_at: self.acked_at,
            ack_type: self.ack_type,
            original: self.original,
            followups: self.followups.clone(),
        }
    }
}
