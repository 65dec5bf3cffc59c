//! Files users attach to their messages: [`World::user_files`] stores a user's message
//! with attachments (a voice message too, flagged as Discord flags it), and
//! [`World::attachment_bytes`] serves them at `GET /attachments/{channel}/{id}/{name}` on
//! the fake's own port, the URL their message JSON gives (Discord's CDN stands behind the
//! real URL; here the loopback fake does). Downloads need no token, as on the CDN.

use std::time::SystemTime;

use super::model::{Stored, StoredFile, TYPE_DEFAULT};
use super::world::World;

/// `IS_VOICE_MESSAGE` message flag.
pub(super) const FLAG_VOICE_MESSAGE: u64 = 1 << 13;

/// A file a user attaches (see [`crate::discord::FakeDiscord::user_files`]).
#[derive(Clone, Debug)]
pub struct UserAttachment {
    /// `filename`.
    pub filename: String,
    /// `content_type`.
    pub content_type: Option<String>,
    /// The bytes served at its URL.
    pub bytes: Vec<u8>,
}

impl World {
    /// A user's message with `files` attached (and `content`, which may be empty); a
    /// voice message when `voice`.
    pub fn user_files(
        &mut self,
        channel: u64,
        user: u64,
        content: &str,
        files: Vec<UserAttachment>,
        voice: bool,
    ) -> Result<u64, String> {
        if user == 0 {
            return Err("user id 0 is not a snowflake".to_owned());
        }
        if !self.channels.contains_key(&channel) {
            return Err(format!("no channel {channel} (set it up first)"));
        }
        if files.is_empty() || files.len() > 10 {
            return Err("a message has 1 to 10 attachments".to_owned());
        }
        self.unarchive(channel);
        let attachments = files
            .into_iter()
            .map(|f| StoredFile {
                id: self.next_id(),
                filename: f.filename,
                content_type: f.content_type,
                description: None,
                bytes: f.bytes,
            })
            .collect();
        let id = self.next_id();
        self.insert_message(Stored {
            id,
            channel,
            author: user,
            kind: TYPE_DEFAULT,
            content: content.to_owned(),
            embeds: Vec::new(),
            components: Vec::new(),
            attachments,
            flags: if voice { FLAG_VOICE_MESSAGE } else { 0 },
            tts: false,
            mentions: Vec::new(),
            mention_roles: Vec::new(),
            mention_everyone: false,
            reference: None,
            interaction: None,
            thread: None,
            edits: 0,
            created_at: SystemTime::now(),
            edited_at: None,
        });
        Ok(id)
    }

    /// The bytes of attachment `id` of a message in `channel`, counting the download.
    pub fn attachment_bytes(&mut self, channel: u64, id: u64) -> Option<Vec<u8>> {
        let bytes = self
            .messages
            .values()
            .filter(|m| m.channel == channel)
            .flat_map(|m| m.attachments.iter())
            .find(|a| a.id == id)
            .map(|a| a.bytes.clone())?;
        self.attachment_downloads += 1;
        Some(bytes)
    }
}
