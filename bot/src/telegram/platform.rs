//! The outbound side of the Telegram adapter: [`Telegram`] implements [`ChatPlatform`] on a
//! teloxide [`Bot`]: HTML messages (escaped; code in `<pre>`) that fall back to plain text
//! when Telegram rejects the entities, inline keyboards, documents (the caption in the same
//! message when it fits Telegram's 1024), forum topics with links, and "typing…" (`sendChatAction`).
//!
//! Every message is paced by [`Outbound`] (30/s overall, 1/s per chat, 20/min per group)
//! in its [`Lane`]: answers first, tidy-ups behind them, progress only when the budget is
//! free. Answers are retried after a 429's `retry_after`, so nothing final is dropped;
//! progress is given up instead (it shows again later).

use std::time::Duration;

use common::event::Surface;
use futures::StreamExt;
use teloxide::net::Download;
use teloxide::payloads::setters::*;
use teloxide::prelude::Requester;
use teloxide::types::{
    ChatAction, ChatId, FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId,
    ParseMode, ThreadId,
};
use teloxide::{ApiError, Bot, RequestError};
use tracing::warn;

use super::PLATFORM;
use crate::chat::ratelimit::{Outbound, OutboundQuotas};
use crate::chat::render::Rich;
use crate::chat::{Attachment, ChatPlatform, CommandKind, Lane, Outgoing, Place, TooLarge};

/// Telegram's message length limit.
const TEXT_LIMIT: usize = 4096;

/// Telegram's caption length limit.
const CAPTION_LIMIT: usize = 1024;

/// Attempts per request before giving up (429s wait their `retry_after` in between).
const ATTEMPTS: u32 = 12;

/// The outbound side: a teloxide [`Bot`] behind [`Outbound`] pacing.
pub struct Telegram {
    /// The client.
    pub bot: Bot,
    limits: Outbound,
}

fn chat_id(s: &str) -> anyhow::Result<ChatId> {
    s.parse()
        .map(ChatId)
        .map_err(|_| anyhow::anyhow!("`{s}` is not a Telegram chat id"))
}

fn thread_id(p: &Place) -> Option<ThreadId> {
    p.thread
        .as_deref()
        .and_then(|t| t.parse().ok())
        .map(|t| ThreadId(MessageId(t)))
}

/// Group and supergroup ids are negative; the per-group limit applies to them.
fn is_group(chat: ChatId) -> bool {
    chat.0 < 0
}

fn keyboard(msg: &Outgoing) -> Option<InlineKeyboardMarkup> {
    if msg.buttons.is_empty() {
        return None;
    }
    Some(InlineKeyboardMarkup::new(msg.buttons.iter().map(|row| {
        row.iter()
            .map(|b| InlineKeyboardButton::callback(b.label.clone(), b.data.clone()))
            .collect::<Vec<_>>()
    })))
}

/// The `t.me` link of a topic in a supergroup (`-100<id>` → `https://t.me/c/<id>/<topic>`);
/// members of the group can open it.
pub fn topic_link(place: &Place) -> Option<String> {
    let chat = place.chat.strip_prefix("-100")?;
    let thread = place.thread.as_deref()?;
    Some(format!("https://t.me/c/{chat}/{thread}"))
}

/// What to do after a failed attempt.
enum Retry {
    /// Wait this long, then try again.
    After(Duration),
    /// Try again as plain text.
    Plain,
    /// Give up.
    No,
}

fn retry_for(e: &RequestError, attempt: u32) -> Retry {
    match e {
        RequestError::RetryAfter(s) => Retry::After(s.duration()),
        RequestError::Api(ApiError::CantParseEntities(_)) => Retry::Plain,
        RequestError::Network(_) | RequestError::Io(_) if attempt < 3 => {
            Retry::After(Duration::from_millis(500 * u64::from(attempt + 1)))
        }
        _ => Retry::No,
    }
}

impl Telegram {
    /// An adapter sending through `bot` with Telegram's limits.
    pub fn new(bot: Bot) -> Self {
        Self {
            bot,
            limits: Outbound::new(OutboundQuotas::TELEGRAM),
        }
    }

    /// Runs `req(plain)` paced for `chat` in `lane`, retrying after 429s (progress gives
    /// up instead) and once as plain text when the HTML is rejected. `None`: a progress
    /// request that did not go.
    pub async fn call<T, F, Fut>(
        &self,
        lane: Lane,
        chat: Option<ChatId>,
        mut req: F,
    ) -> anyhow::Result<Option<T>>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut plain = false;
        let mut attempt = 0;
        loop {
            match chat {
                Some(c) => {
                    if !self
                        .limits
                        .message_in(lane, &c.0.to_string(), is_group(c))
                        .await
                    {
                        return Ok(None);
                    }
                }
                None => self.limits.other().await,
            }
            let err = match req(plain).await {
                Ok(v) => return Ok(Some(v)),
                Err(e) => e,
            };
            attempt += 1;
            match retry_for(&err, attempt) {
                Retry::After(_) if lane == Lane::Progress => return Ok(None),
                Retry::After(d) if attempt < ATTEMPTS => {
                    warn!(error = %err, wait_ms = d.as_millis() as u64, "telegram asked to wait");
                    tokio::time::sleep(d).await;
                }
                Retry::Plain if !plain => {
                    warn!(error = %err, "telegram rejected the HTML; sending plain text");
                    plain = true;
                }
                _ => return Err(err.into()),
            }
        }
    }

    /// Sends a document with `caption` (HTML) to `to`.
    async fn document(
        &self,
        to: &Place,
        name: &str,
        bytes: Vec<u8>,
        caption: &Rich,
    ) -> anyhow::Result<()> {
        let chat = chat_id(&to.chat)?;
        let thread = thread_id(to);
        let name = name.to_owned();
        self.call(Lane::Answer, Some(chat), |plain| {
            let file = InputFile::memory(bytes.clone()).file_name(name.clone());
            let mut req = if plain {
                self.bot.send_document(chat, file).caption(caption.plain())
            } else {
                self.bot
                    .send_document(chat, file)
                    .caption(caption.html())
                    .parse_mode(ParseMode::Html)
            };
            if let Some(t) = thread {
                req = req.message_thread_id(t);
            }
            async move { req.await }
        })
        .await?;
        Ok(())
    }
}

impl ChatPlatform for Telegram {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    fn surface(&self) -> Surface {
        Surface::Telegram
    }

    fn text_limit(&self) -> usize {
        TEXT_LIMIT
    }

    fn measure(&self, text: &Rich) -> usize {
        // Telegram counts the text after entity parsing, in UTF-16 code units.
        text.len()
    }

    fn answer_parts(&self) -> usize {
        // Past 4096 characters an answer reads better as a file than as a run of messages.
        1
    }

    fn usage(&self, cmd: CommandKind) -> Option<&'static str> {
        Some(match cmd {
            CommandKind::New => "/new <dir> [name] [daemon=<machine>]",
            CommandKind::List => "/list",
            CommandKind::Status => "/status",
            CommandKind::Stop => "/stop",
            CommandKind::Interrupt => "/interrupt",
            CommandKind::Resume => "/resume",
            CommandKind::Bind => "/bind <session>",
            CommandKind::Prompt => "/prompt <text>",
            CommandKind::Help => "/help",
        })
    }

    fn link(&self, place: &Place, title: &str) -> Option<Rich> {
        topic_link(place).map(|url| Rich::default().link(title.to_owned(), url))
    }

    async fn send_in(
        &self,
        lane: Lane,
        to: &Place,
        msg: &Outgoing,
    ) -> anyhow::Result<Option<String>> {
        let chat = chat_id(&to.chat)?;
        let thread = thread_id(to);
        let kb = keyboard(msg);
        let sent = self
            .call(lane, Some(chat), |plain| {
                let mut req = if plain {
                    self.bot.send_message(chat, msg.text.plain())
                } else {
                    self.bot
                        .send_message(chat, msg.text.html())
                        .parse_mode(ParseMode::Html)
                };
                if let Some(t) = thread {
                    req = req.message_thread_id(t);
                }
                if let Some(k) = kb.clone() {
                    req = req.reply_markup(k);
                }
                async move { req.await }
            })
            .await?;
        Ok(sent.map(|m| m.id.0.to_string()))
    }

    async fn edit_in(
        &self,
        lane: Lane,
        to: &Place,
        id: &str,
        msg: &Outgoing,
    ) -> anyhow::Result<bool> {
        let chat = chat_id(&to.chat)?;
        let id = MessageId(
            id.parse()
                .map_err(|_| anyhow::anyhow!("`{id}` is not a message id"))?,
        );
        let kb = keyboard(msg);
        let done = self
            .call(lane, Some(chat), |plain| {
                let mut req = if plain {
                    self.bot.edit_message_text(chat, id, msg.text.plain())
                } else {
                    self.bot
                        .edit_message_text(chat, id, msg.text.html())
                        .parse_mode(ParseMode::Html)
                };
                if let Some(k) = kb.clone() {
                    req = req.reply_markup(k);
                }
                async move {
                    match req.await {
                        Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        Ok(done.is_some())
    }

    async fn typing(&self, to: &Place) -> anyhow::Result<()> {
        let chat = chat_id(&to.chat)?;
        let thread = thread_id(to);
        // Not a message: only the bot-wide pace applies, and a 429 is not worth a wait.
        self.limits.other().await;
        let mut req = self.bot.send_chat_action(chat, ChatAction::Typing);
        if let Some(t) = thread {
            req = req.message_thread_id(t);
        }
        req.await?;
        Ok(())
    }

    async fn send_file(
        &self,
        to: &Place,
        name: &str,
        bytes: Vec<u8>,
        caption: &Rich,
    ) -> anyhow::Result<()> {
        if caption.len() <= CAPTION_LIMIT {
            return self.document(to, name, bytes, caption).await;
        }
        // A document caption holds only 1024 characters: a longer text goes first.
        self.send(to, &Outgoing::text(caption.clone())).await?;
        self.document(to, name, bytes, &Rich::text(name.to_owned()))
            .await
    }

    async fn fetch(&self, file: &Attachment, max: u64) -> anyhow::Result<Vec<u8>> {
        let meta = self.bot.get_file(FileId(file.handle.clone())).await?;
        if u64::from(meta.meta.size) > max {
            return Err(TooLarge(max).into());
        }
        let mut stream = self.bot.download_file_stream(&meta.path);
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if (out.len() + chunk.len()) as u64 > max {
                return Err(TooLarge(max).into());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    async fn open_thread(&self, chat: &str, title: &str) -> anyhow::Result<Place> {
        let id = chat_id(chat)?;
        let title: String = title.chars().take(128).collect();
        let topic = self
            .call(Lane::Answer, None, |_| {
                let req = self.bot.create_forum_topic(id, title.clone());
                async move { req.await }
            })
            .await?
            .ok_or_else(|| anyhow::anyhow!("the topic was not created"))?;
        Ok(Place {
            chat: chat.to_owned(),
            thread: Some(topic.thread_id.0.0.to_string()),
        })
    }

    async fn answer(&self, to: &Place, _reply: Option<&str>, msg: &Outgoing) -> anyhow::Result<()> {
        self.send(to, msg).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_link_into_their_group() {
        let p = Place {
            chat: "-1001000000001".into(),
            thread: Some("7".into()),
        };
        assert_eq!(
            topic_link(&p).as_deref(),
            Some("https://t.me/c/1000000001/7")
        );
        let general = Place {
            chat: "-1001000000001".into(),
            thread: None,
        };
        assert_eq!(topic_link(&general), None);
    }
}
