//! What the chat suites share: the fake platforms' tokens and users, a bot + daemon wired to
//! the loopback Telegram or Discord fake ([`telegram_world`], [`discord_world`]), and the
//! bounded waits for a bot message ([`tg_msg`], [`dc_msg`]) or any condition
//! ([`wait_until`]).

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
