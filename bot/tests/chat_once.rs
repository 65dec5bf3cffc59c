//! Issue 13 in chat, end to end with a real `ccrm-bot` process (killed with -9), a real
//! linked `ccrmd`, the real Claude Code CLI on the fake Messages API, and the loopback
//! Telegram and Discord fakes: a prompt inside its debounce window survives a kill -9, an
//! answer is posted once even when the bot dies between posting it and recording that,
//! and an `AskUserQuestion` with several questions is answered from chat one question at
//! a time.

mod common;

use std::time::Duration;

use ccrm_bot::db::Db;
use common::{WAIT, World};
use serde_json::Value;
use testkit::FakeTelegram;
use testkit::discord::{FakeDiscord, GUILD_ID};

const TG_TOKEN: &str = "123456:TEST-SECRET";
const DC_TOKEN: &str = "MTAxMDEwMTAxMDEwMTAxMDEw.discord-test.SECRET";
const TG_ALICE: i64 = 111;
const DC_ALICE: u64 = 310_000_000_000_000_001;

/// The bot with the fake Telegram (plus `extra` environment) and a daemon.
async fn telegram(extra: &[(&str, &str)]) -> (World, FakeTelegram) {
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

/// The bot with the fake Discord and a daemon, once the gateway is ready.
async fn discord() -> (World, FakeDiscord) {
    let dc = FakeDiscord::start(DC_TOKEN).await.expect("fake discord");
    dc.set_heartbeat_interval(3_000);
    let url = dc.api_url();
    let alice = DC_ALICE.to_string();
    let guild = GUILD_ID.to_string();
    let env = [
        ("CCRM_BOT_DISCORD_TOKEN", DC_TOKEN),
        ("CCRM_BOT_DISCORD_API_URL", url.as_str()),
        ("CCRM_BOT_DISCORD_ALLOWED_USERS", alice.as_str()),
        ("CCRM_BOT_DISCORD_GUILDS", guild.as_str()),
    ];
    let w = World::start_with(&env).await;
    dc.wait_ready(WAIT).await.expect("gateway ready");
    (w, dc)
}

/// Waits (bounded) until `cond` holds.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/new` in a Telegram forum; returns the topic, once the session said it started.
async fn tg_topic(w: &World, tg: &FakeTelegram, group: i64, name: &str) -> i32 {
    let cmd = format!("/new {} {name}", w.work.display());
    tg.user_message(group, TG_ALICE, &cmd, None);
    let call = tg
        .wait_for(WAIT, |c| {
            c.method == "createForumTopic" && c.ok() && c.str_param("name") == Some(name)
        })
        .await
        .expect("topic created");
    let topic = call.result["message_thread_id"].as_i64().expect("thread") as i32;
    wait_until("the session started", || {
        tg.messages_in(group, Some(topic))
            .iter()
            .any(|m| m.visible_text.contains("started"))
    })
    .await;
    topic
}

/// `/new` in a Discord channel; returns the thread, once the session said it started.
async fn dc_thread(w: &World, dc: &FakeDiscord, channel: u64, name: &str) -> u64 {
    let work = w.work.display().to_string();
    dc.slash_command(
        channel,
        DC_ALICE,
        "new",
        &[("directory", work.as_str()), ("name", name)],
    );
    wait_until("the thread is created", || {
        dc.threads(channel).iter().any(|(_, n)| n == name)
    })
    .await;
    let thread = dc
        .threads(channel)
        .into_iter()
        .find(|(_, n)| n == name)
        .map(|(id, _)| id)
        .expect("thread");
    wait_until("the session started", || {
        dc.messages_in(thread)
            .iter()
            .any(|m| m.content.contains("started"))
    })
    .await;
    thread
}

/// The only session's id.
async fn session_id(w: &World) -> String {
    let (_, v) = w.get("/api/sessions").await;
    v["sessions"][0]["info"]["id"]
        .as_str()
        .expect("session id")
        .to_owned()
}

/// The texts of the session's stored prompts, in order.
async fn prompts(w: &World, session: &str) -> Vec<String> {
    w.all_events(session)
        .await
        .iter()
        .filter(|e| e["event"]["kind"] == "prompt")
        .filter_map(|e| e["event"]["text"].as_str().map(str::to_owned))
        .collect()
}

/// The texts of the messages `platform` keeps as pending prompt pieces (read with the bot
/// down).
async fn pending_texts(w: &World, platform: &str) -> Vec<String> {
    let db = Db::open(&w.dir.path().join("bot/ccrm.db"))
        .await
        .expect("db");
    let rows = db.chat_pending(platform).await.expect("pending");
    db.close().await;
    rows.iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.payload).expect("payload json");
            v["text"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// How many requests the fake model got whose newest user text is `text`.
fn model_turns_for(w: &World, text: &str) -> usize {
    w.api
        .message_requests()
        .iter()
        .filter(|r| newest_user_text(&r.body).as_deref() == Some(text))
        .count()
}

/// The newest plain user text of a Messages API request body.
fn newest_user_text(body: &Value) -> Option<String> {
    let msgs = body["messages"].as_array()?;
    msgs.iter().rev().find_map(|m| {
        if m["role"] != "user" {
            return None;
        }
        match &m["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => parts
                .iter()
                .rev()
                .find(|p| p["type"] == "text")
                .and_then(|p| p["text"].as_str().map(str::to_owned)),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_prompt_survives_a_kill_9_inside_its_debounce_window() {
    let (mut w, tg) = telegram(&[]).await;
    let group = tg.forum_group("durable");
    let topic = tg_topic(&w, &tg, group, "keeper").await;
    let id = session_id(&w).await;

    let served = tg.updates_served().len();
    tg.user_message(group, TG_ALICE, "survive this", Some(topic));
    wait_until("the update was served", || {
        tg.updates_served().len() > served
    })
    .await;
    // 100 ms later, well inside the 1.5 s window: nothing was sent to the daemon yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    World::kill9(&mut w.bot);
    assert_eq!(
        pending_texts(&w, "telegram").await,
        ["survive this"],
        "the message is kept, undelivered, when the bot dies"
    );
    w.start_bot();
    wait_until("the answer after the restart", || {
        tg.messages_in(group, Some(topic))
            .iter()
            .any(|m| m.visible_text.contains("Echo: survive this"))
    })
    .await;
    w.wait_chat_shown("telegram", &id).await;
    assert!(w.bot_log_text().contains("left by the previous run"));
    assert!(pending_texts(&w, "telegram").await.is_empty());
    assert_eq!(prompts(&w, &id).await, ["survive this"]);
    assert_eq!(model_turns_for(&w, "survive this"), 1);
    let answers = tg
        .messages_in(group, Some(topic))
        .iter()
        .filter(|m| m.visible_text.contains("Echo: survive this"))
        .count();
    assert_eq!(answers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_prompt_survives_a_kill_9_inside_its_debounce_window() {
    let (mut w, dc) = discord().await;
    let general = dc.text_channel("general");
    let thread = dc_thread(&w, &dc, general, "keeper").await;
    let id = session_id(&w).await;

    dc.user_message(thread, DC_ALICE, "survive this");
    // The gateway delivered it (the frame is recorded when it is sent to the bot).
    dc.wait_for_frame(WAIT, |f| {
        !f.from_client
            && f.t.as_deref() == Some("MESSAGE_CREATE")
            && f.d["content"] == "survive this"
    })
    .await
    .expect("dispatched to the bot");
    tokio::time::sleep(Duration::from_millis(100)).await;
    World::kill9(&mut w.bot);
    assert_eq!(
        pending_texts(&w, "discord").await,
        ["survive this"],
        "the message is kept, undelivered, when the bot dies"
    );
    w.start_bot();
    dc.wait_ready(WAIT).await.expect("ready after restart");
    wait_until("the answer after the restart", || {
        dc.messages_in(thread)
            .iter()
            .any(|m| m.content.contains("Echo: survive this"))
    })
    .await;
    w.wait_chat_shown("discord", &id).await;
    assert!(w.bot_log_text().contains("left by the previous run"));
    assert!(pending_texts(&w, "discord").await.is_empty());
    assert_eq!(prompts(&w, &id).await, ["survive this"]);
    assert_eq!(model_turns_for(&w, "survive this"), 1);
    let answers = dc
        .messages_in(thread)
        .iter()
        .filter(|m| m.content.contains("Echo: survive this"))
        .count();
    assert_eq!(answers, 1);
}
