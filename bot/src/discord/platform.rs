//! The outbound side of the Discord adapter: [`Discord`] implements [`ChatPlatform`] over
//! [`Rest`]. Messages are Discord Markdown within 2000 characters ([`super::render`]), a
//! long answer takes up to [`ANSWER_PARTS`] messages and beyond that goes as a file with a
//! summary embed, approvals carry buttons and questions a select menu, sessions get public
//! threads, and no message pings anyone (`allowed_mentions` is empty). A command deferred
//! by the gateway handler is answered by editing its deferred response, with follow-ups
//! for the rest of a long answer.
//!
//! It also answers interactions directly for [`super::gateway`] and [`super::commands`]
//! ([`Discord::respond`], [`Discord::follow_up`]), and owns the reply handle format they
//! put into [`crate::chat::Incoming::reply`].

use common::event::Surface;
use serde_json::Value;
use serenity::all::{
    AutoArchiveDuration, ChannelId, ChannelType, CreateAllowedMentions, CreateAttachment,
    CreateEmbed, CreateInteractionResponse, CreateInteractionResponseFollowup, CreateMessage,
    CreateThread, EditInteractionResponse, EditMessage, InteractionId, LightMethod, MessageId,
    Multipart, MultipartUpload, Nonce, Request, Route,
};
use serenity::model::id::ApplicationId;

use super::render::{components, fit};
use super::rest::{Pace, Rest};
use super::{ANSWER_PARTS, PLATFORM, TEXT_LIMIT};
use crate::chat::render::{self, Rich};
use crate::chat::{Attachment, ChatPlatform, CommandKind, Lane, Outgoing, Place};

/// Embed description limit.
const EMBED_LIMIT: usize = 4096;

/// Thread name limit.
const THREAD_NAME_LIMIT: usize = 100;

/// The channel (or thread) id in `s`.
pub fn channel_id(s: &str) -> anyhow::Result<ChannelId> {
    s.parse::<u64>()
        .ok()
        .filter(|v| *v != 0)
        .map(ChannelId::new)
        .ok_or_else(|| anyhow::anyhow!("`{s}` is not a Discord channel id"))
}

/// The `id` of a message or channel object Discord answered with.
fn message_id(v: &Value) -> anyhow::Result<String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("Discord's answer has no id"))
}

/// A reply handle (see [`crate::chat::Incoming::reply`]): `<application id>/<interaction
/// token>`.
pub fn reply_handle(app: ApplicationId, token: &str) -> String {
    format!("{app}/{token}")
}

/// The application id and interaction token of a reply handle.
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

/// How a message of `lane` to `channel` is paced.
fn pace(lane: Lane, channel: &str) -> Pace<'_> {
    match lane {
        Lane::Answer => Pace::Channel(channel),
        Lane::Tidy => Pace::Tidy(channel),
        Lane::Progress => Pace::Progress(channel),
    }
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

    /// Posts `body` as a new message to `to` in `lane`; `None` when a progress message was
    /// skipped.
    async fn create(
        &self,
        lane: Lane,
        to: &Place,
        body: CreateMessage,
    ) -> anyhow::Result<Option<String>> {
        let channel = channel_id(&to.chat)?;
        let sent = self
            .rest
            .try_json(
                pace(lane, &to.chat),
                Route::ChannelMessages {
                    channel_id: channel,
                },
                LightMethod::Post,
                &body,
            )
            .await?;
        sent.map(|v| message_id(&v)).transpose()
    }

    /// The REST client.
    pub fn rest(&self) -> &Rest {
        &self.rest
    }

    /// Answers interaction `id` with `resp` (unpaced: Discord wants it within 3 s).
    pub async fn respond(
        &self,
        id: InteractionId,
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
    pub async fn follow_up(&self, reply: &str, text: &Rich, private: bool) -> anyhow::Result<()> {
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

    fn usage(&self, cmd: CommandKind) -> Option<&'static str> {
        Some(match cmd {
            CommandKind::New => "/new directory:<dir> name:<name> daemon:<machine>",
            CommandKind::List => "/sessions",
            CommandKind::Status => "/status",
            CommandKind::Stop => "/stop",
            CommandKind::Interrupt => "/interrupt",
            CommandKind::Resume => "/resume",
            CommandKind::Bind => "/bind session:<session>",
            CommandKind::Prompt => "/prompt text:<text>",
            CommandKind::Help => "/help",
        })
    }

    fn link(&self, place: &Place, _title: &str) -> Option<Rich> {
        Some(Rich::default().md(format!("<#{}>", place.chat)))
    }

    async fn send_in(
        &self,
        lane: Lane,
        to: &Place,
        msg: &Outgoing,
    ) -> anyhow::Result<Option<String>> {
        self.create(lane, to, message_body(msg)).await
    }

    async fn send_keyed(
        &self,
        lane: Lane,
        to: &Place,
        msg: &Outgoing,
        key: &str,
    ) -> anyhow::Result<Option<String>> {
        let body = message_body(msg)
            .nonce(Nonce::String(nonce(&to.chat, key)))
            .enforce_nonce(true);
        self.create(lane, to, body).await
    }

    async fn typing(&self, to: &Place) -> anyhow::Result<()> {
        let channel = channel_id(&to.chat)?;
        let req = Request::new(
            Route::ChannelTyping {
                channel_id: channel,
            },
            LightMethod::Post,
        );
        // Not a message: the bot-wide pace only.
        self.rest.call(Pace::Global, req).await?;
        Ok(())
    }

    async fn edit_in(
        &self,
        lane: Lane,
        to: &Place,
        id: &str,
        msg: &Outgoing,
    ) -> anyhow::Result<bool> {
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
        let done = self
            .rest
            .try_json(
                pace(lane, &to.chat),
                Route::ChannelMessage {
                    channel_id: channel,
                    message_id: id,
                },
                LightMethod::Patch,
                &body,
            )
            .await?;
        Ok(done.is_some())
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

    async fn fetch(&self, file: &Attachment, max: u64) -> anyhow::Result<Vec<u8>> {
        super::files::download(&self.rest, file, max).await
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

/// A new message's body: text, components, no pings.
fn message_body(msg: &Outgoing) -> CreateMessage {
    CreateMessage::new()
        .content(fit(&msg.text, TEXT_LIMIT))
        .components(components(msg))
        .allowed_mentions(CreateAllowedMentions::new())
}

/// The `nonce` of a keyed send: Discord compares nonces per author, across channels, so
/// the channel is part of it; 24 hex digits of a SHA-256 fit its 25 characters.
fn nonce(channel: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{channel}/{key}").as_bytes());
    hex::encode(digest)[..24].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
