//! Inbound prompt pieces kept until they are delivered, so a bot killed inside the debounce
//! window (or while a photo or file downloads) loses no prompt. A text message, or one
//! with photos or files, is claimed together with a `chat_pending` row in one transaction
//! ([`claim`]): before Telegram's offset moves past the update, and before a Discord
//! catch-up would take the message as handled. The row carries the message as JSON
//! ([`Stored`]): its text, and its attachments as the platform describes them (their
//! handles, not their bytes), which are downloaded again when the row is replayed. [`super::prompts`] deletes the rows of a window
//! once its prompt was delivered (or refused for good); [`super::core::ChatCore`] reads the
//! rows left after a restart ([`load`]) and feeds them back, which rebuilds the windows.
//!
//! A prompt delivered to the daemon whose rows were not yet deleted when the bot died is
//! delivered again after the restart: this one step is at-least-once.

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{Attachment, AttachmentKind, Incoming, Input, Place, Sender};
use crate::db::{ChatPendingRow, Db};

/// How long claims of messages kept here are remembered (longer than any catch-up window).
pub const CLAIM_KEEP_MS: u64 = 3 * 24 * 3600 * 1000;

/// A sender as stored.
#[derive(Serialize, Deserialize)]
struct StoredSender {
    id: String,
    name: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// An attachment as stored: what [`Attachment`] says of it before the download.
#[derive(Serialize, Deserialize)]
struct StoredFile {
    name: String,
    size: Option<u64>,
    /// `image`, `voice` or `file`.
    kind: String,
    handle: String,
}

impl StoredFile {
    fn of(a: &Attachment) -> Self {
        let kind = match a.kind {
            AttachmentKind::Image => "image",
            AttachmentKind::Voice => "voice",
            AttachmentKind::File => "file",
        };
        Self {
            name: a.name.clone(),
            size: a.size,
            kind: kind.to_owned(),
            handle: a.handle.clone(),
        }
    }

    fn attachment(self) -> Option<Attachment> {
        let kind = match self.kind.as_str() {
            "image" => AttachmentKind::Image,
            "voice" => AttachmentKind::Voice,
            "file" => AttachmentKind::File,
            _ => return None,
        };
        Some(Attachment {
            name: self.name,
            size: self.size,
            kind,
            handle: self.handle,
        })
    }
}

/// What a pending message says, as stored in its `payload` column. New fields must have
/// defaults, so rows written by an older bot still read.
#[derive(Serialize, Deserialize, Default)]
pub struct Stored {
    /// The text (a file message's caption).
    pub text: String,
    /// Whether it was addressed to the bot ([`Incoming::direct`]).
    #[serde(default)]
    pub direct: bool,
    /// Whether its chat holds threads ([`Incoming::threads`]).
    #[serde(default)]
    pub threads: bool,
    /// Its photos and files ([`Input::Files`]); none for a text message.
    #[serde(default)]
    files: Vec<StoredFile>,
}

/// The outcome of [`claim`].
pub enum Claimed {
    /// Claimed before: already handled.
    Before,
    /// Claimed now; the pending row's id, or `None` when it could not be stored (the
    /// message is handled anyway: better twice than lost).
    Now(Option<i64>),
}

/// Claims message `claim_id` of `platform` with its pending row (see the module docs).
pub async fn claim(db: &Db, platform: &str, claim_id: i64, now_ms: u64, inc: &Incoming) -> Claimed {
    let (text, files) = match &inc.input {
        Input::Text(text) => (text.clone(), Vec::new()),
        Input::Files { text, files } => (text.clone(), files.iter().map(StoredFile::of).collect()),
        // Commands written as messages (`/new` with a zip) have no pending row, but are
        // still handled once.
        Input::Command(_) | Input::Button(_) => {
            return match db.chat_claim_update(platform, claim_id, now_ms).await {
                Ok(false) => Claimed::Before,
                Ok(true) => Claimed::Now(None),
                Err(e) => {
                    warn!(error = %e, "cannot record a handled message");
                    Claimed::Now(None)
                }
            };
        }
    };
    let sender = StoredSender {
        id: inc.from.id.clone(),
        name: inc.from.name.clone(),
        roles: inc.from.roles.clone(),
    };
    let payload = Stored {
        text,
        direct: inc.direct,
        threads: inc.threads,
        files,
    };
    let row = ChatPendingRow {
        id: 0,
        chat_id: inc.place.chat.clone(),
        thread_id: inc.place.thread.clone(),
        msg_id: inc.msg_id.and_then(|m| i64::try_from(m).ok()),
        sender: serde_json::to_string(&sender).unwrap_or_default(),
        payload: serde_json::to_string(&payload).unwrap_or_default(),
    };
    match db
        .chat_claim_pending(platform, claim_id, now_ms, CLAIM_KEEP_MS, &row)
        .await
    {
        Ok(Some(id)) => Claimed::Now(Some(id)),
        Ok(None) => Claimed::Before,
        Err(e) => {
            warn!(error = %e, "cannot store an incoming message");
            Claimed::Now(None)
        }
    }
}

/// The pending rows of `platform` left by a previous process, as inputs with their row ids
/// (oldest first). Rows that do not read are dropped (and deleted).
pub async fn load(db: &Db, platform: &str) -> Vec<(Incoming, i64)> {
    let rows = match db.chat_pending(platform).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "cannot read pending chat messages");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for row in rows {
        match incoming_of(&row) {
            Some(inc) => out.push((inc, row.id)),
            None => {
                warn!(
                    id = row.id,
                    "a pending chat message does not read; dropping it"
                );
                bad.push(row.id);
            }
        }
    }
    done(db, &bad).await;
    out
}

/// A stored row back as an input.
fn incoming_of(row: &ChatPendingRow) -> Option<Incoming> {
    let sender: StoredSender = serde_json::from_str(&row.sender).ok()?;
    let payload: Stored = serde_json::from_str(&row.payload).ok()?;
    Some(Incoming {
        place: Place {
            chat: row.chat_id.clone(),
            thread: row.thread_id.clone(),
        },
        from: Sender {
            id: sender.id,
            name: sender.name,
            roles: sender.roles,
        },
        threads: payload.threads,
        direct: payload.direct,
        msg_id: row.msg_id.and_then(|m| u64::try_from(m).ok()),
        reply: None,
        input: if payload.files.is_empty() {
            Input::Text(payload.text)
        } else {
            Input::Files {
                text: payload.text,
                files: payload
                    .files
                    .into_iter()
                    .map(StoredFile::attachment)
                    .collect::<Option<_>>()?,
            }
        },
    })
}

/// Deletes pending rows `ids` (delivered, or refused for good).
pub async fn done(db: &Db, ids: &[i64]) {
    if let Err(e) = db.chat_pending_done(ids).await {
        warn!(error = %e, "cannot forget delivered chat messages");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_row_reads_back_as_the_same_input() {
        let row = ChatPendingRow {
            id: 3,
            chat_id: "-100".into(),
            thread_id: Some("7".into()),
            msg_id: Some(42),
            sender: r#"{"id":"1","name":"Alice","roles":["9"]}"#.into(),
            payload: r#"{"text":"hi","direct":true,"attachments":[]}"#.into(),
        };
        let inc = incoming_of(&row).expect("reads");
        assert_eq!(inc.input, Input::Text("hi".into()));
        assert_eq!(inc.from.roles, ["9"]);
        assert_eq!(inc.place.thread.as_deref(), Some("7"));
        assert_eq!(inc.msg_id, Some(42));
        assert!(inc.direct && !inc.threads);
        let broken = ChatPendingRow {
            payload: "not json".into(),
            ..row
        };
        assert!(incoming_of(&broken).is_none());
    }

    #[test]
    fn a_files_message_is_stored_with_its_handles_and_reads_back() {
        let files = vec![
            Attachment {
                name: "photo.jpg".into(),
                size: Some(2048),
                kind: AttachmentKind::Image,
                handle: "file-id-1".into(),
            },
            Attachment {
                name: "app.log".into(),
                size: None,
                kind: AttachmentKind::File,
                handle: "https://cdn.example/app.log".into(),
            },
        ];
        let payload = Stored {
            text: "what does this say".into(),
            direct: false,
            threads: true,
            files: files.iter().map(StoredFile::of).collect(),
        };
        let row = ChatPendingRow {
            id: 1,
            chat_id: "-100".into(),
            thread_id: None,
            msg_id: Some(5),
            sender: r#"{"id":"1","name":"Alice"}"#.into(),
            payload: serde_json::to_string(&payload).expect("json"),
        };
        let inc = incoming_of(&row).expect("reads");
        assert_eq!(
            inc.input,
            Input::Files {
                text: "what does this say".into(),
                files
            }
        );
        // A kind this bot does not know makes the row unreadable, not a wrong input.
        let odd = ChatPendingRow {
            payload: row.payload.replace("\"image\"", "\"hologram\""),
            ..row
        };
        assert!(incoming_of(&odd).is_none());
    }
}
