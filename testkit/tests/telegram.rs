//! The fake Telegram Bot API driven by the real teloxide client (`Bot::set_api_url`),
//! plus a few raw HTTP checks of the wire format. Every wait is bounded.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ccrm_testkit::FakeTelegram;
use ccrm_testkit::telegram::BOT_USERNAME;
use futures::StreamExt as _;
use serde_json::{Value, json};
use teloxide::dispatching::ShutdownToken;
use teloxide::prelude::*;
use teloxide::types::{
    InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageEntityKind, MessageId, ParseMode,
    ThreadId, UpdateKind,
};
use teloxide::update_listeners::{AsUpdateStream as _, UpdateListener as _, polling_default};
use teloxide::{ApiError, RequestError};
use tokio::task::JoinHandle;

/// A token of the real shape: the bot's user id, a colon, a secret.
const TOKEN: &str = "123456789:AAtest-secret_token";
/// Upper bound for anything the tests wait on.
const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> anyhow::Result<(FakeTelegram, Bot)> {
    let fake = FakeTelegram::start(TOKEN).await?;
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url().parse().context("api url")?);
    Ok((fake, bot))
}

fn keyboard(buttons: &[(&str, &str)]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([buttons
        .iter()
        .map(|(text, data)| InlineKeyboardButton::callback(*text, *data))
        .collect::<Vec<_>>()])
}

/// The `ApiError` of a failed request, or a panic explaining what happened instead.
fn api_error<T: std::fmt::Debug>(result: Result<T, RequestError>) -> ApiError {
    match result {
        Err(RequestError::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn thread(id: i32) -> ThreadId {
    ThreadId(MessageId(id))
}

#[tokio::test]
async fn get_me_and_bad_tokens() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let me = bot.get_me().await?;
    assert_eq!(me.username(), BOT_USERNAME);
    assert_eq!(fake.bot_user_id(), 123_456_789);
    assert_eq!(i64::try_from(me.id.0)?, fake.bot_user_id());
    assert!(me.is_bot);

    let stranger = Bot::new("42:wrong").set_api_url(fake.api_url().parse()?);
    assert_eq!(api_error(stranger.get_me().await), ApiError::InvalidToken);
    let calls = fake.calls_named("getMe");
    assert_eq!(calls.len(), 2);
    assert!(calls[0].ok());
    assert_eq!(calls[1].status, 401);
    Ok(())
}

#[tokio::test]
async fn wire_format_errors_and_parameter_styles() -> anyhow::Result<()> {
    let fake = FakeTelegram::start(TOKEN).await?;
    let http = reqwest::Client::new();
    let url = |method: &str| format!("{}/bot{TOKEN}/{method}", fake.api_url());

    let response = http.post(url("noSuchMethod")).body("{}").send().await?;
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    assert_eq!(
        body,
        json!({"ok":false,"error_code":404,"description":"Not Found: method not found"})
    );

    let response = http
        .post(format!("{}/botWRONG/getMe", fake.api_url()))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    assert_eq!(
        body,
        json!({"ok":false,"error_code":401,"description":"Unauthorized"})
    );

    let response = http
        .post(url("sendMessage"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    assert_eq!(body["ok"], false);
    assert_eq!(body["error_code"], 400);

    // GET with a query string, and an urlencoded form, like other clients send.
    let response = http.get(url("getMe")).send().await?;
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    assert_eq!(body["result"]["username"], BOT_USERNAME);

    let chat = fake.private_chat(55);
    let response = http
        .post(url("sendMessage"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("chat_id={chat}&text=hi%20there"))
        .send()
        .await?;
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["result"]["text"], "hi there");
    assert_eq!(body["result"]["chat"]["type"], "private");

    let response = http
        .post(url("sendMessage"))
        .header("content-type", "application/json")
        .body(json!({"chat_id": -5, "text": "x"}).to_string())
        .send()
        .await?;
    let body: Value = serde_json::from_slice(&response.bytes().await?)?;
    assert_eq!(body["description"], "Bad Request: chat not found");
    Ok(())
}

#[tokio::test]
async fn polling_delivers_messages_and_callbacks_in_order_exactly_once() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.forum_group("ccrm");
    let user = 4242;
    let prompt = bot
        .send_message(ChatId(chat), "Allow?")
        .reply_markup(keyboard(&[("Yes", "yes"), ("No", "no")]))
        .await?;

    let first = fake.user_message(chat, user, "/new@ccrm_test_bot hello", None);
    let second = fake.user_message(chat, user, "second", None);
    let query = fake.press_button(chat, user, prompt.id.0, "yes");
    assert_eq!(fake.pending_updates(), 3);

    let mut listener = polling_default(bot.clone()).await;
    let stop = listener.stop_token();
    let mut received: Vec<Update> = Vec::new();
    {
        let mut stream = std::pin::pin!(listener.as_stream());
        while received.len() < 3 {
            let update = tokio::time::timeout(WAIT, stream.next())
                .await
                .context("waiting for an update")?
                .context("stream ended")??;
            received.push(update);
        }
        // One more, injected while the listener is long polling.
        let inject = async {
            fake.wait_for_poll(WAIT).await?;
            fake.user_message(chat, user, "third", None);
            anyhow::Ok(())
        };
        let (update, injected) = tokio::join!(tokio::time::timeout(WAIT, stream.next()), inject);
        injected?;
        received.push(
            update
                .context("waiting for an update")?
                .context("stream ended")??,
        );
        stop.stop();
        let end = tokio::time::timeout(WAIT, stream.next()).await?;
        assert!(end.is_none(), "stream should end after stop: {end:?}");
    }

    let UpdateKind::Message(m) = &received[0].kind else {
        panic!("first update: {:?}", received[0].kind);
    };
    assert_eq!(m.id.0, first);
    assert_eq!(m.text(), Some("/new@ccrm_test_bot hello"));
    let entities = m.entities().context("command entity")?;
    assert_eq!(entities[0].kind, MessageEntityKind::BotCommand);
    assert_eq!((entities[0].offset, entities[0].length), (0, 18));
    assert_eq!(m.from.as_ref().map(|u| u.id.0), Some(4242));
    assert!(m.chat.is_supergroup());

    let UpdateKind::Message(m) = &received[1].kind else {
        panic!("second update: {:?}", received[1].kind);
    };
    assert_eq!(m.id.0, second);

    let UpdateKind::CallbackQuery(q) = &received[2].kind else {
        panic!("third update: {:?}", received[2].kind);
    };
    assert_eq!(q.id.0, query);
    assert_eq!(q.data.as_deref(), Some("yes"));
    assert_eq!(q.message.as_ref().map(|m| m.id()), Some(prompt.id));

    let UpdateKind::Message(m) = &received[3].kind else {
        panic!("fourth update: {:?}", received[3].kind);
    };
    assert_eq!(m.text(), Some("third"));

    let served = fake.updates_served();
    let ids: Vec<i64> = received.iter().map(|u| i64::from(u.id.0)).collect();
    assert_eq!(served, ids, "every update handed out once, in order");
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        fake.pending_updates(),
        0,
        "stopping confirms the last offset"
    );
    assert!(fake.calls_named("getUpdates").is_empty());
    assert_eq!(fake.calls_named("getWebhookInfo").len(), 1);
    Ok(())
}

#[tokio::test]
async fn inline_keyboard_edits_and_message_errors() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.private_chat(77);
    let kb = keyboard(&[("Allow", "allow:1"), ("Deny", "deny:1")]);
    let sent = bot
        .send_message(ChatId(chat), "Run tool?")
        .reply_markup(kb.clone())
        .await?;
    assert_eq!(sent.reply_markup(), Some(&kb));
    assert_eq!(sent.chat.id, ChatId(chat));
    assert_eq!(sent.from.as_ref().map(|u| u.is_bot), Some(true));
    let messages = fake.messages_in(chat, None);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].button_data(), ["allow:1", "deny:1"]);

    // An edit without reply_markup removes the keyboard, as on Telegram.
    let edited = bot
        .edit_message_text(ChatId(chat), sent.id, "Allowed")
        .await?;
    assert_eq!(edited.text(), Some("Allowed"));
    assert!(edited.reply_markup().is_none());
    assert!(edited.edit_date().is_some());
    let now = &fake.messages_in(chat, None)[0];
    assert_eq!((now.text.as_str(), now.edits), ("Allowed", 1));
    assert!(now.reply_markup.is_none());

    let same = bot
        .edit_message_text(ChatId(chat), sent.id, "Allowed")
        .await;
    assert_eq!(api_error(same), ApiError::MessageNotModified);

    let back = bot
        .edit_message_reply_markup(ChatId(chat), sent.id)
        .reply_markup(kb.clone())
        .await?;
    assert_eq!(back.reply_markup(), Some(&kb));
    assert_eq!(fake.messages_in(chat, None)[0].edits, 2);

    let missing = bot
        .edit_message_text(ChatId(chat), MessageId(9999), "x")
        .await;
    assert_eq!(api_error(missing), ApiError::MessageToEditNotFound);

    let long_data = "d".repeat(65);
    let bad_button = bot
        .send_message(ChatId(chat), "x")
        .reply_markup(keyboard(&[("Too long", &long_data)]))
        .await;
    assert_eq!(api_error(bad_button), ApiError::ButtonDataInvalid);

    let too_long = bot.send_message(ChatId(chat), "é".repeat(4097)).await;
    assert_eq!(api_error(too_long), ApiError::MessageIsTooLong);
    bot.send_message(ChatId(chat), "é".repeat(4096)).await?;

    let calls = fake.calls();
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "sendMessage",
            "editMessageText",
            "editMessageText",
            "editMessageReplyMarkup",
            "editMessageText",
            "sendMessage",
            "sendMessage",
            "sendMessage",
        ]
    );
    assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(calls[2].status, 400);
    assert!(
        calls[2]
            .error_description()
            .is_some_and(|d| d.contains("message is not modified"))
    );
    assert_eq!(calls[0].chat_id, Some(chat));
    assert_eq!(fake.messages_in(chat, None).len(), 2);
    Ok(())
}

#[tokio::test]
async fn forum_topics_and_messages_in_them() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.forum_group("Projects");
    assert!(chat < -1_000_000_000_000);
    let topic = bot.create_forum_topic(ChatId(chat), "session abc").await?;
    assert_eq!(topic.name, "session abc");
    let t = topic.thread_id.0.0;
    assert_eq!(fake.topics(chat), vec![(t, "session abc".to_owned())]);

    let m = bot
        .send_message(ChatId(chat), "hello topic")
        .message_thread_id(topic.thread_id)
        .await?;
    assert_eq!(m.thread_id, Some(topic.thread_id));
    assert!(m.is_topic_message);
    assert!(m.id.0 > t, "message ids continue after the topic's");
    assert_eq!(fake.messages_in(chat, Some(t)).len(), 1);
    assert!(fake.messages_in(chat, None).is_empty());
    let call = fake.wait_for(WAIT, |c| c.method == "sendMessage").await?;
    assert_eq!((call.chat_id, call.thread_id), (Some(chat), Some(t)));
    assert_eq!(fake.calls_named("createForumTopic")[0].thread_id, Some(t));

    // A user writes in the topic: the update says which topic, like Telegram's.
    fake.user_message(chat, 5, "in topic", Some(t));
    let updates = bot.get_updates().await?;
    let UpdateKind::Message(incoming) = &updates[0].kind else {
        panic!("{:?}", updates[0].kind);
    };
    assert_eq!(incoming.thread_id, Some(topic.thread_id));
    assert!(incoming.is_topic_message);
    assert!(incoming.chat.is_supergroup());

    let nowhere = bot
        .send_message(ChatId(chat), "x")
        .message_thread_id(thread(424_242))
        .await;
    assert_eq!(
        api_error(nowhere),
        ApiError::Unknown("Bad Request: message thread not found".to_owned())
    );
    let private = fake.private_chat(6);
    let not_forum = bot.create_forum_topic(ChatId(private), "x").await;
    assert_eq!(
        api_error(not_forum),
        ApiError::Unknown("Bad Request: the chat is not a forum".to_owned())
    );
    Ok(())
}

#[tokio::test]
async fn send_document_records_the_upload() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.forum_group("Docs");
    let topic = bot.create_forum_topic(ChatId(chat), "t").await?;
    let bytes = b"{\"type\":\"user\"}\n".to_vec();
    let sent = bot
        .send_document(
            ChatId(chat),
            InputFile::memory(bytes.clone()).file_name("session.jsonl"),
        )
        .caption("transcript")
        .message_thread_id(topic.thread_id)
        .await?;
    let document = sent.document().context("document in the reply")?;
    assert_eq!(document.file_name.as_deref(), Some("session.jsonl"));
    assert_eq!(document.file.size as usize, bytes.len());
    assert_eq!(sent.caption(), Some("transcript"));

    let documents = fake.documents();
    assert_eq!(documents.len(), 1);
    let d = &documents[0];
    assert_eq!(d.chat_id, chat);
    assert_eq!(d.thread_id, Some(topic.thread_id.0.0));
    assert_eq!(d.file_name, "session.jsonl");
    assert_eq!(d.bytes, bytes);
    assert_eq!(d.caption.as_deref(), Some("transcript"));
    assert_eq!(d.message_id, sent.id.0);

    let call = &fake.calls_named("sendDocument")[0];
    assert_eq!(
        call.params["document"],
        json!({"file_name": "session.jsonl", "size": bytes.len()})
    );
    assert_eq!(call.thread_id, Some(topic.thread_id.0.0));
    // Documents are not text messages.
    assert!(fake.messages_in(chat, Some(topic.thread_id.0.0)).is_empty());
    Ok(())
}

#[tokio::test]
async fn injected_429_reaches_teloxide_as_retry_after() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.private_chat(1);
    fake.fail_next("sendMessage", 429, Some(3));
    match bot.send_message(ChatId(chat), "first").await {
        Err(RequestError::RetryAfter(seconds)) => assert_eq!(seconds.seconds(), 3),
        other => panic!("expected RetryAfter, got {other:?}"),
    }
    bot.send_message(ChatId(chat), "second").await?;
    let calls = fake.calls_named("sendMessage");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, 429);
    assert_eq!(calls[0].result["parameters"]["retry_after"], 3);
    assert_eq!(calls[0].chat_id, Some(chat));
    assert!(calls[1].ok());
    assert_eq!(
        fake.messages_in(chat, None).len(),
        1,
        "the failed send left nothing"
    );

    fake.fail_next("getMe", 403, None);
    assert_eq!(api_error(bot.get_me().await), ApiError::BotBlocked);
    bot.get_me().await?;
    Ok(())
}

#[tokio::test]
async fn html_is_checked_and_rendered() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.private_chat(2);

    let broken = bot
        .send_message(ChatId(chat), "<b>unclosed *stuff*")
        .parse_mode(ParseMode::Html)
        .await;
    match api_error(broken) {
        ApiError::CantParseEntities(d) => assert!(d.contains("Can't find end tag"), "{d}"),
        other => panic!("{other:?}"),
    }
    let unknown = bot
        .send_message(ChatId(chat), "<div>x</div>")
        .parse_mode(ParseMode::Html)
        .await;
    assert!(matches!(api_error(unknown), ApiError::CantParseEntities(_)));

    // The plain-text fallback goes through unchanged.
    let plain = bot
        .send_message(ChatId(chat), "<b>unclosed *stuff*")
        .await?;
    assert_eq!(plain.text(), Some("<b>unclosed *stuff*"));

    let html = bot
        .send_message(ChatId(chat), "<b>ok</b> &amp; <code>x</code>")
        .parse_mode(ParseMode::Html)
        .await?;
    assert_eq!(html.text(), Some("ok & x"));
    let kinds: Vec<_> = html
        .entities()
        .unwrap_or_default()
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(kinds, [MessageEntityKind::Bold, MessageEntityKind::Code]);
    let stored = fake.messages_in(chat, None);
    assert_eq!(stored[1].text, "<b>ok</b> &amp; <code>x</code>");
    assert_eq!(stored[1].visible_text, "ok & x");
    assert_eq!(stored[1].parse_mode.as_deref(), Some("HTML"));

    // An injected rejection hits valid markup once, then things work again.
    fake.reject_entities_next();
    let rejected = bot
        .send_message(ChatId(chat), "<i>fine</i>")
        .parse_mode(ParseMode::Html)
        .await;
    assert!(matches!(
        api_error(rejected),
        ApiError::CantParseEntities(_)
    ));
    bot.send_message(ChatId(chat), "<i>fine</i>")
        .parse_mode(ParseMode::Html)
        .await?;

    let v2 = bot
        .send_message(ChatId(chat), "1.5 is unescaped")
        .parse_mode(ParseMode::MarkdownV2)
        .await;
    assert!(matches!(api_error(v2), ApiError::CantParseEntities(_)));
    Ok(())
}

#[tokio::test]
async fn long_poll_is_held_and_answers_promptly() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.private_chat(9);

    let poller = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(10).send().await }
    });
    fake.wait_for_poll(WAIT).await?;
    let injected = Instant::now();
    fake.user_message(chat, 9, "ping", None);
    let updates = tokio::time::timeout(WAIT, poller).await???;
    assert!(
        injected.elapsed() < Duration::from_secs(2),
        "answered {:?} after the update was queued",
        injected.elapsed()
    );
    assert_eq!(updates.len(), 1);
    let next_offset = updates[0].id.as_offset();

    // Nothing queued: the request is held for its timeout, then answered empty.
    let started = Instant::now();
    let empty = bot
        .get_updates()
        .offset(next_offset)
        .timeout(1)
        .send()
        .await?;
    assert!(empty.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(fake.pending_updates(), 0);

    // A newer getUpdates ends an older one still waiting, as Telegram does.
    let older = tokio::spawn({
        let bot = bot.clone();
        async move {
            bot.get_updates()
                .offset(next_offset)
                .timeout(10)
                .send()
                .await
        }
    });
    fake.wait_for_poll(WAIT).await?;
    let newer = bot.get_updates().offset(next_offset).send().await?;
    assert!(newer.is_empty());
    let older = tokio::time::timeout(WAIT, older).await??;
    assert_eq!(api_error(older), ApiError::TerminatedByOtherGetUpdates);
    Ok(())
}

#[tokio::test]
async fn offsets_confirm_and_drop_updates() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.private_chat(3);
    for text in ["a", "b", "c"] {
        fake.user_message(chat, 3, text, None);
    }
    let all = bot.get_updates().limit(2).send().await?;
    assert_eq!(all.len(), 2);
    assert_eq!(fake.pending_updates(), 3, "handing out confirms nothing");
    let rest = bot
        .get_updates()
        .offset(all[1].id.as_offset())
        .send()
        .await?;
    assert_eq!(rest.len(), 1);
    assert_eq!(fake.pending_updates(), 1);

    fake.user_message(chat, 3, "d", None);
    fake.user_message(chat, 3, "e", None);
    // A negative offset keeps only the newest updates.
    let last = bot.get_updates().offset(-1).send().await?;
    assert_eq!(last.len(), 1);
    let UpdateKind::Message(m) = &last[0].kind else {
        panic!("{:?}", last[0].kind);
    };
    assert_eq!(m.text(), Some("e"));

    bot.delete_webhook().drop_pending_updates(true).await?;
    assert_eq!(fake.pending_updates(), 0);
    fake.wait_updates_confirmed(WAIT).await?;
    Ok(())
}

#[tokio::test]
async fn commands_and_misc_methods() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.private_chat(8);
    bot.set_my_commands([
        teloxide::types::BotCommand::new("new", "Start a session"),
        teloxide::types::BotCommand::new("stop", "Stop it"),
    ])
    .await?;
    assert_eq!(
        fake.my_commands(),
        [
            ("new".to_owned(), "Start a session".to_owned()),
            ("stop".to_owned(), "Stop it".to_owned())
        ]
    );
    assert_eq!(bot.get_my_commands().await?.len(), 2);
    let bad = bot
        .set_my_commands([teloxide::types::BotCommand::new("Bad-Name", "x")])
        .await;
    assert!(matches!(api_error(bad), ApiError::Unknown(d) if d.contains("BOT_COMMAND_INVALID")));
    bot.delete_my_commands().await?;
    assert!(fake.my_commands().is_empty());

    bot.send_chat_action(ChatId(chat), teloxide::types::ChatAction::Typing)
        .await?;
    let sent = bot.send_message(ChatId(chat), "bye").await?;
    bot.delete_message(ChatId(chat), sent.id).await?;
    assert!(fake.messages_in(chat, None).is_empty());
    assert!(bot.get_webhook_info().await?.url.is_none());
    bot.log_out().await?;
    bot.close().await?;
    Ok(())
}

/// An echo bot on teloxide's `Dispatcher`, as the adapter will be built.
fn start_echo_bot(bot: Bot) -> (ShutdownToken, JoinHandle<()>) {
    let handler = dptree::entry()
        .branch(
            Update::filter_message().endpoint(|bot: Bot, msg: Message| async move {
                let text = msg.text().unwrap_or_default().to_owned();
                let mut reply = bot.send_message(msg.chat.id, format!("echo: {text}"));
                if let Some(t) = msg.thread_id {
                    reply = reply.message_thread_id(t);
                }
                reply.reply_markup(keyboard(&[("Again", "again")])).await?;
                Ok::<(), RequestError>(())
            }),
        )
        .branch(Update::filter_callback_query().endpoint(
            |bot: Bot, q: CallbackQuery| async move {
                bot.answer_callback_query(q.id).text("done").await?;
                Ok::<(), RequestError>(())
            },
        ));
    let mut dispatcher = Dispatcher::builder(bot, handler).build();
    let token = dispatcher.shutdown_token();
    let task = tokio::spawn(async move { dispatcher.dispatch().await });
    (token, task)
}

/// Stops the dispatcher and waits for `dispatch()` to return. The future `shutdown()`
/// returns is not awaited: it registers for teloxide's `notify_waiters` only when first
/// polled, so a dispatcher that finishes first leaves it hanging.
async fn stop_echo_bot(token: ShutdownToken, task: JoinHandle<()>) -> anyhow::Result<()> {
    drop(
        token
            .shutdown()
            .map_err(|e| anyhow::anyhow!("dispatcher was idle: {e:?}"))?,
    );
    tokio::time::timeout(WAIT, task).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_restart_processes_every_update_once() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.forum_group("Echo");
    let topic = bot.create_forum_topic(ChatId(chat), "room").await?;
    let t = topic.thread_id.0.0;

    let (token, task) = start_echo_bot(bot.clone());
    fake.wait_for_poll(WAIT).await?;
    fake.user_message(chat, 10, "one", Some(t));
    let echo = fake
        .wait_for(WAIT, |c| c.text() == Some("echo: one"))
        .await?;
    assert_eq!(echo.thread_id, Some(t));
    stop_echo_bot(token, task).await?;
    assert_eq!(fake.pending_updates(), 0, "shutdown confirmed the offset");

    // Queued while no bot runs; the next one picks it up.
    fake.user_message(chat, 10, "two", Some(t));
    let (token, task) = start_echo_bot(bot.clone());
    let echo = fake
        .wait_for(WAIT, |c| c.text() == Some("echo: two") && c.ok())
        .await?;
    let message_id = i32::try_from(echo.result["message_id"].as_i64().unwrap_or(0))?;
    let query = fake.press_button(chat, 10, message_id, "again");
    let answer = fake
        .wait_for(WAIT, |c| c.method == "answerCallbackQuery")
        .await?;
    assert!(answer.ok());
    assert_eq!(answer.str_param("callback_query_id"), Some(query.as_str()));
    assert_eq!((answer.chat_id, answer.thread_id), (Some(chat), Some(t)));
    fake.wait_updates_confirmed(WAIT).await?;
    stop_echo_bot(token, task).await?;

    // What teloxide's Dispatcher calls on each start: getWebhookInfo (polling_default),
    // getMe (the dispatcher), then only getUpdates until there is work.
    let methods: Vec<String> = fake.calls().into_iter().map(|c| c.method).collect();
    assert_eq!(
        methods,
        [
            "createForumTopic",
            "getWebhookInfo",
            "getMe",
            "sendMessage",
            "getWebhookInfo",
            "getMe",
            "sendMessage",
            "answerCallbackQuery",
        ]
    );
    let served = fake.updates_served();
    let unique: HashSet<i64> = served.iter().copied().collect();
    assert_eq!(served.len(), 3, "served: {served:?}");
    assert_eq!(unique.len(), served.len(), "nothing handed out twice");
    for text in ["echo: one", "echo: two"] {
        let n = fake
            .calls_named("sendMessage")
            .iter()
            .filter(|c| c.text() == Some(text))
            .count();
        assert_eq!(n, 1, "{text} sent {n} times");
    }
    assert_eq!(fake.callback_answers().len(), 1);
    assert_eq!(fake.messages_in(chat, Some(t)).len(), 2);
    Ok(())
}

#[tokio::test]
async fn polling_rides_out_a_429_on_get_updates() -> anyhow::Result<()> {
    let (fake, bot) = setup().await?;
    let chat = fake.private_chat(12);
    fake.fail_next("getUpdates", 429, Some(1));
    fake.user_message(chat, 12, "after the pause", None);
    let mut listener = polling_default(bot).await;
    let mut stream = std::pin::pin!(listener.as_stream());
    let first = tokio::time::timeout(WAIT, stream.next())
        .await?
        .context("stream ended")?;
    assert!(
        matches!(first, Err(RequestError::RetryAfter(s)) if s.seconds() == 1),
        "{first:?}"
    );
    let started = Instant::now();
    let update = tokio::time::timeout(WAIT, stream.next())
        .await?
        .context("stream ended")??;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "teloxide waited"
    );
    let UpdateKind::Message(m) = update.kind else {
        panic!("{:?}", update.kind);
    };
    assert_eq!(m.text(), Some("after the pause"));
    assert_eq!(fake.updates_served().len(), 1);
    Ok(())
}
