//! Chat latency benchmark: for a one-line echo, from the model's reply (the fake Messages
//! API's record of when it finished answering) to the answer visible in chat (the fake
//! platform's record of when the message arrived), on Telegram (a forum topic, so the
//! group's 20-a-minute budget applies) and on Discord (a thread).
//!
//! The baseline, measured in the same run, is how soon the bot could have known the answer
//! at all: the model's reply → the turn's `turn_result` event as ccrmd timestamped it (the
//! same machine clock). The difference is what the chat side adds: the event link, the
//! session worker and the platform request. It also counts the bot's message requests per
//! turn (target: one on Discord, at most two on Telegram).
//!
//! Turns are a few seconds apart, as when a person reads an answer before writing the next
//! prompt, so the group budget is not what is measured. The bot runs in-process against
//! the fakes; ccrmd is the real release binary. Run with `cargo build --release -p
//! ccrm-daemon && cargo bench -p ccrm-bot --bench chat_latency` (env `BENCH_TURNS`,
//! default 20 per platform).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use ccrm_bot::AppState;
use ccrm_bot::auth::KeyKind;
use ccrm_bot::config::BotConfig;
use common::event::EventKind;
use support::ccrmd::{ccrmd_bin, linked, start_daemon};
use testkit::discord::{FakeDiscord, GUILD_ID};
use testkit::{ClaudeHome, FakeApi, FakeTelegram, TEST_API_KEY, claude_bin, claude_env};

/// Bound for every wait.
const WAIT: Duration = Duration::from_secs(60);
const WARMUP: usize = 2;
/// Pause after an answer before the next prompt (a person reading).
const READ_PAUSE: Duration = Duration::from_millis(1600);
const TG_TOKEN: &str = "123456:BENCH-SECRET";
const DC_TOKEN: &str = "MTAxMDEwMTAxMDEwMTAxMDEw.bench.SECRET";
const TG_USER: i64 = 111;
const DC_USER: u64 = 310_000_000_000_000_001;

/// Polls `check` until it yields (bounded by [`WAIT`]).
async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One measured turn.
struct Sample {
    /// Model reply → answer visible in chat.
    chat: Duration,
    /// Model reply → `turn_result` at ccrmd.
    base: Duration,
    /// Message requests (sends and edits) the turn cost.
    requests: usize,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn after(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

/// When the fake model finished answering `text`.
fn replied_at(api: &FakeApi, text: &str) -> Option<SystemTime> {
    api.message_requests()
        .into_iter()
        .filter(|r| r.last_human_text().as_deref() == Some(text))
        .filter_map(|r| r.finished_at)
        .max()
}

/// When ccrmd saw the `turn_result` whose text is `answer`.
async fn result_at(state: &AppState, answer: &str) -> anyhow::Result<SystemTime> {
    let deadline = Instant::now() + WAIT;
    loop {
        let events = state.db.events_since_id(0, 100_000).await?;
        let found = events.iter().rev().find(
            |e| matches!(&e.event.kind, EventKind::TurnResult { text: Some(t), .. } if t == answer),
        );
        if let Some(e) = found {
            return Ok(UNIX_EPOCH + Duration::from_millis(e.event.ts_ms));
        }
        ensure!(Instant::now() < deadline, "no turn_result for {answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(name: &str, samples: &[Sample]) {
    let mut chat: Vec<Duration> = samples.iter().map(|s| s.chat).collect();
    let mut base: Vec<Duration> = samples.iter().map(|s| s.base).collect();
    chat.sort();
    base.sort();
    let max_requests = samples.iter().map(|s| s.requests).max().unwrap_or(0);
    println!(
        "  {name:<10} answer visible: p50 {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms | baseline (turn_result at ccrmd): p50 {:>6.1} ms  p90 {:>6.1} ms | requests per turn ≤ {max_requests}",
        ms(pct(&chat, 0.5)),
        ms(pct(&chat, 0.9)),
        ms(pct(&chat, 1.0)),
        ms(pct(&base, 0.5)),
        ms(pct(&base, 0.9)),
    );
}

async fn run() -> anyhow::Result<()> {
    let turns: usize = std::env::var("BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    ensure!(turns > 0, "BENCH_TURNS must be positive");
    let ccrmd = ccrmd_bin()?;
    let api = FakeApi::start().await?;
    let tg = FakeTelegram::start(TG_TOKEN).await?;
    let dc = FakeDiscord::start(DC_TOKEN).await?;
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()])?;
    let env = claude_env(&api, home.path());
    let claude = claude_bin()?;

    // The bot, in-process, with both chat front ends on the fakes.
    let cfg = BotConfig {
        data_dir: dir.path().join("bot"),
        telegram_token: Some(TG_TOKEN.to_owned()),
        telegram_api_url: tg.api_url(),
        telegram_allowed_users: vec![TG_USER],
        discord_token: Some(DC_TOKEN.to_owned()),
        discord_api_url: dc.api_url(),
        discord_allowed_users: vec![DC_USER],
        discord_guilds: vec![GUILD_ID],
        ..BotConfig::default()
    };
    let state = AppState::open(cfg).await?;
    let (_, key) = state
        .db
        .create_key("bench-daemon", KeyKind::Daemon, 1)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ccrm_bot::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let daemon = start_daemon(
        &ccrmd,
        dir.path(),
        &env,
        &claude,
        &format!("ws://{addr}"),
        &key,
        WAIT,
    )?;
    linked(&state.hub, WAIT).await?;
    dc.wait_ready(WAIT).await?;

    // Telegram: a topic of a forum group.
    let group = tg.forum_group("bench");
    tg.user_message(group, TG_USER, &format!("/new {} tg", work.display()), None);
    let topic = tg
        .wait_for(WAIT, |c| c.method == "createForumTopic" && c.ok())
        .await?
        .result["message_thread_id"]
        .as_i64()
        .context("topic")? as i32;
    wait_for("the topic's first message", || {
        (!tg.messages_in(group, Some(topic)).is_empty()).then_some(())
    })
    .await?;
    let tg_samples = telegram(&api, &state, &tg, group, topic, turns).await?;

    // Discord: a thread opened by /new.
    dc.wait_for(WAIT, |c| {
        c.method == "PUT" && c.path.ends_with("/commands") && c.ok()
    })
    .await?;
    let channel = dc.text_channel("bench");
    let w = work.display().to_string();
    dc.slash_command(
        channel,
        DC_USER,
        "new",
        &[("directory", &w), ("name", "dc")],
    );
    let thread = wait_for("the thread", || dc.threads(channel).first().map(|t| t.0)).await?;
    wait_for("the thread's first message", || {
        (!dc.messages_in(thread).is_empty()).then_some(())
    })
    .await?;
    let dc_samples = discord(&api, &state, &dc, thread, turns).await?;

    println!(
        "Chat latency: one-line echo, model reply → answer visible in chat, {turns} turns per platform (measured under whatever load the machine has)"
    );
    report("telegram", &tg_samples);
    report("discord", &dc_samples);

    drop(daemon);
    let _ = stop.send(());
    let _ = tokio::time::timeout(WAIT, server).await;
    Ok(())
}

async fn telegram(
    api: &FakeApi,
    state: &Arc<AppState>,
    tg: &FakeTelegram,
    group: i64,
    topic: i32,
    turns: usize,
) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for i in 0..turns + WARMUP {
        let text = format!("telegram ping {i}");
        let answer = format!("Echo: {text}");
        let sent = SystemTime::now();
        tg.user_message(group, TG_USER, &text, Some(topic));
        let call = tg
            .wait_for(WAIT, |c| {
                c.ok()
                    && c.thread_id == Some(topic)
                    && c.text().is_some_and(|t| t.contains(&answer))
            })
            .await?;
        let replied = wait_for("the model's reply", || replied_at(api, &text)).await?;
        let result = result_at(state, &answer).await?;
        let requests = tg
            .calls()
            .iter()
            .filter(|c| {
                c.at >= sent
                    && c.thread_id == Some(topic)
                    && matches!(
                        c.method.as_str(),
                        "sendMessage" | "editMessageText" | "sendDocument"
                    )
            })
            .count();
        if i >= WARMUP {
            out.push(Sample {
                chat: after(replied, call.at),
                base: after(replied, result),
                requests,
            });
        }
        tokio::time::sleep(READ_PAUSE).await;
    }
    Ok(out)
}

async fn discord(
    api: &FakeApi,
    state: &Arc<AppState>,
    dc: &FakeDiscord,
    thread: u64,
    turns: usize,
) -> anyhow::Result<Vec<Sample>> {
    let mut out = Vec::new();
    for i in 0..turns + WARMUP {
        let text = format!("discord ping {i}");
        let answer = format!("Echo: {text}");
        let sent = SystemTime::now();
        dc.user_message(thread, DC_USER, &text);
        let call = dc
            .wait_for(WAIT, |c| {
                c.ok()
                    && c.channel == Some(thread)
                    && c.content().is_some_and(|t| t.contains(&answer))
            })
            .await?;
        let replied = wait_for("the model's reply", || replied_at(api, &text)).await?;
        let result = result_at(state, &answer).await?;
        let requests = dc
            .calls()
            .iter()
            .filter(|c| {
                c.at >= sent
                    && c.channel == Some(thread)
                    && (c.method == "POST" || c.method == "PATCH")
                    && c.path.contains("/messages")
            })
            .count();
        if i >= WARMUP {
            out.push(Sample {
                chat: after(replied, call.at),
                base: after(replied, result),
                requests,
            });
        }
        tokio::time::sleep(READ_PAUSE).await;
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
