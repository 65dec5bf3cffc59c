//! What the chat suites share: the fake platforms' tokens and users, a bot + daemon wired to
//! the loopback Telegram or Discord fake ([`telegram_world`], [`discord_world`]), the
//! bounded waits for a bot message ([`tg_msg`], [`dc_msg`]) or any condition
//! ([`wait_until`]), `/new` in a Telegram forum up to its topic's news
//! ([`tg_new_topic`], [`tg_topic_started`]) and in a Discord channel up to its thread's
//! news ([`dc_new_thread`], [`dc_thread_started`]), a file the bot sent to a topic
//! ([`tg_document`]), a Discord command's answer in place ([`dc_answer`],
//! [`dc_answered`]), the bot's own Discord messages ([`dc_bot_messages`]) and a select
//! menu's options ([`dc_select`]), the messages a bot keeps undelivered
//! ([`pending_texts`]) and a kill -9 while it keeps them ([`kill9_while_pending`]).

use std::path::Path;
use std::time::Duration;

use testkit::FakeTelegram;
use testkit::discord::{FakeDiscord, GUILD_ID};

use super::{WAIT, World};

/// The fake Telegram bot's token (`<bot id>:<secret>`).
pub const TG_TOKEN: &str = "123456:TEST-SECRET";
/// The fake Discord bot's token.
pub const DC_TOKEN: &str = "MTAxMDEwMTAxMDEwMTAxMDEw.discord-test.SECRET";
/// The allowed Telegram user.
pub const TG_ALICE: i64 = 111;
/// The allowed Discord user.
pub const DC_ALICE: u64 = 310_000_000_000_000_001;

/// The bot (with `extra` environment) on the fake Telegram, allowing [`TG_ALICE`], and a
/// linked daemon.
pub async fn telegram_world(extra: &[(&str, &str)]) -> (World, FakeTelegram) {
    let tg = FakeTelegram::start(TG_TOKEN).await.expect("fake telegram");
    let url = tg.api_url();
    let alice = TG_ALICE.to_string();
    let mut env = vec![
        ("CCRM_BOT_TELEGRAM_TOKEN", TG_TOKEN),
        ("CCRM_BOT_TELEGRAM_API_URL", url.as_str()),
        ("CCRM_BOT_TELEGRAM_ALLOWED_USERS", alice.as_str()),
    ];
    env.extend_from_slice(extra);
    (World::start_with(&env).await, tg)
}

/// The bot (with `extra` environment) on the fake Discord, allowing [`DC_ALICE`] in
/// [`GUILD_ID`], and a linked daemon; once the gateway is ready and the slash commands are
/// registered.
pub async fn discord_world(extra: &[(&str, &str)]) -> (World, FakeDiscord) {
    let dc = FakeDiscord::start(DC_TOKEN).await.expect("fake discord");
    dc.set_heartbeat_interval(3_000);
    let url = dc.api_url();
    let alice = DC_ALICE.to_string();
    let guild = GUILD_ID.to_string();
    let mut env = vec![
        ("CCRM_BOT_DISCORD_TOKEN", DC_TOKEN),
        ("CCRM_BOT_DISCORD_API_URL", url.as_str()),
        ("CCRM_BOT_DISCORD_ALLOWED_USERS", alice.as_str()),
        ("CCRM_BOT_DISCORD_GUILDS", guild.as_str()),
    ];
    env.extend_from_slice(extra);
    let w = World::start_with(&env).await;
    dc.wait_ready(WAIT).await.expect("gateway ready");
    dc.wait_for(WAIT, |c| {
        c.method == "PUT" && c.path.contains("/guilds/") && c.path.ends_with("/commands") && c.ok()
    })
    .await
    .expect("slash commands registered");
    (w, dc)
}

/// Waits (bounded) until `cond` holds.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) for a bot message in Telegram `chat`/`thread` that `pred` accepts.
pub async fn tg_msg(
    tg: &FakeTelegram,
    chat: i64,
    thread: Option<i32>,
    pred: impl Fn(&testkit::telegram::Message) -> bool,
) -> testkit::telegram::Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = tg.messages_in(chat, thread).into_iter().find(|m| pred(m)) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no matching message in {chat}/{thread:?}: {:#?}",
            tg.messages_in(chat, thread)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) for a message in Discord `channel` that `pred` accepts.
pub async fn dc_msg(
    dc: &FakeDiscord,
    channel: u64,
    pred: impl Fn(&testkit::discord::Message) -> bool,
) -> testkit::discord::Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = dc.messages_in(channel).into_iter().find(|m| pred(m)) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no matching message in {channel}: {:#?}",
            dc.messages_in(channel)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) for the bot to create a forum topic (named `name`, when given) and for
/// the news in it that its session started; the topic's thread id.
pub async fn tg_topic_started(tg: &FakeTelegram, group: i64, name: Option<&str>) -> i32 {
    let created = tg
        .wait_for(WAIT, |c| {
            c.method == "createForumTopic"
                && c.ok()
                && name.is_none_or(|n| c.str_param("name") == Some(n))
        })
        .await
        .expect("topic created");
    let topic = created.result["message_thread_id"]
        .as_i64()
        .expect("thread id") as i32;
    tg_msg(tg, group, Some(topic), |m| {
        m.visible_text.contains("started by")
    })
    .await;
    topic
}

/// `/new <dir> [name]` from [`TG_ALICE`] in `group`'s General topic, then
/// [`tg_topic_started`] (filtered by `name`, when given); the topic's thread id.
pub async fn tg_new_topic(tg: &FakeTelegram, group: i64, dir: &Path, name: Option<&str>) -> i32 {
    let cmd = match name {
        Some(n) => format!("/new {} {n}", dir.display()),
        None => format!("/new {}", dir.display()),
    };
    tg.user_message(group, TG_ALICE, &cmd, None);
    tg_topic_started(tg, group, name).await
}

/// The original response of Discord interaction `id` (a command answered in place), as
/// it is now.
pub fn dc_answer(dc: &FakeDiscord, id: u64) -> Option<testkit::discord::Message> {
    dc.interaction(id)
        .and_then(|s| s.original)
        .and_then(|m| dc.message(m))
}

/// Waits (bounded) until interaction `id`'s original response says something; that
/// response.
pub async fn dc_answered(dc: &FakeDiscord, id: u64) -> testkit::discord::Message {
    let said = || dc_answer(dc, id).filter(|m| !m.content.is_empty());
    wait_until("the command is answered", || said().is_some()).await;
    said().expect("answer")
}

/// Waits (bounded) for a file the bot sent to Telegram topic `topic`; the first one.
pub async fn tg_document(tg: &FakeTelegram, topic: i32) -> testkit::telegram::Document {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(d) = tg
            .documents()
            .into_iter()
            .find(|d| d.thread_id == Some(topic))
        {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "no document");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bot's own messages in Discord `channel` (not users', not interaction responses).
pub fn dc_bot_messages(dc: &FakeDiscord, channel: u64) -> Vec<testkit::discord::Message> {
    dc.messages_in(channel)
        .into_iter()
        .filter(|m| m.author == testkit::discord::BOT_USER_ID && m.interaction.is_none())
        .collect()
}

/// The first component of message `m`, which must be a string select menu: its
/// `custom_id` and its options' values.
pub fn dc_select(m: &testkit::discord::Message) -> (String, Vec<String>) {
    let menu = &m.components[0]["components"][0];
    assert_eq!(menu["type"], 3, "a string select: {menu}");
    let values = menu["options"]
        .as_array()
        .expect("options")
        .iter()
        .filter_map(|o| o["value"].as_str().map(str::to_owned))
        .collect();
    let custom = menu["custom_id"].as_str().expect("custom id").to_owned();
    (custom, values)
}

/// Waits (bounded) for the bot to open a thread named `name` in Discord `channel` and for
/// the news in it that its session started; the thread id.
pub async fn dc_thread_started(dc: &FakeDiscord, channel: u64, name: &str) -> u64 {
    let thread = || {
        dc.threads(channel)
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| id)
    };
    wait_until("the thread is created", || thread().is_some()).await;
    let thread = thread().expect("thread");
    dc_msg(dc, thread, |m| m.content.contains("started by")).await;
    thread
}

/// `/new directory:<dir> name:<name>` from [`DC_ALICE`] in Discord `channel`, then
/// [`dc_thread_started`]; the command's interaction and the thread id.
pub async fn dc_new_thread(
    dc: &FakeDiscord,
    channel: u64,
    dir: &Path,
    name: &str,
) -> (testkit::discord::Interaction, u64) {
    let dir = dir.display().to_string();
    let i = dc.slash_command(
        channel,
        DC_ALICE,
        "new",
        &[("directory", dir.as_str()), ("name", name)],
    );
    (i, dc_thread_started(dc, channel, name).await)
}

/// Waits (bounded) until the bot has kept a chat message of `platform` undelivered in the
/// database: polled on one connection, so the kill that follows lands as soon as the
/// message is durable, inside the 1.5 s window that joins a user's messages.
async fn until_pending(w: &World, platform: &str) {
    let db = w.db().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while db.chat_pending(platform).await.expect("pending").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: the {platform} message kept in the database"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db.close().await;
}

/// The texts of the messages `platform` keeps as pending prompt pieces (read with the bot
/// down).
pub async fn pending_texts(w: &World, platform: &str) -> Vec<String> {
    let db = w.db().await;
    let rows = db.chat_pending(platform).await.expect("pending");
    db.close().await;
    rows.iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.payload).expect("payload json");
            v["text"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Once the bot has kept `platform`'s message undelivered ([`until_pending`]: well inside
/// the 1.5 s window that joins a user's messages, so nothing went to the daemon yet),
/// kills it with -9, checks that the database keeps exactly `texts` as pending pieces,
/// and starts the bot again.
pub async fn kill9_while_pending(w: &mut World, platform: &str, texts: &[&str]) {
    until_pending(w, platform).await;
    World::kill9(&mut w.bot);
    assert_eq!(
        pending_texts(w, platform).await,
        texts,
        "the message is kept, undelivered, when the bot dies"
    );
    w.start_bot();
}
