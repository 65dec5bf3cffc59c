//! Chat throughput: a message → its answer for 20 Telegram forum topics and 20 Discord
//! threads written to at the same moment, through the whole chain (the real `ccrm-bot`
//! with its adapters against the loopback fakes of `testkit`, a real linked ccrmd, the
//! real Claude Code CLI against the fake Messages API).
//!
//! Printed beside each figure, from the same run: one turn of the CLI driven directly (the
//! model's own time to an answer) and the floor the platform's budget puts under the last
//! answer (Telegram: 20 messages a minute per group, so the n sends the bot made need
//! (n − 1) × 3 s; Discord: 5 messages per 5 s per channel, each thread its own channel).
//! Also the bot's sends per turn. What the chat does per turn (progress message, edits,
//! answer) is the chat adapters' business; this measures whatever this branch does.
//!
//! Setup is slow on purpose: every topic and thread is opened with `/new`, paced like any
//! other message. Run with `cargo bench -p ccrm-bot --bench chat` (env `BENCH_TOPICS`,
//! default 20).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::World;
use support::{env_num, ms, pct};
use testkit::discord::{FakeDiscord, GUILD_ID};
use testkit::{FakeTelegram, claude_bin, claude_env};

const TG_TOKEN: &str = "123456:BENCH-SECRET";
const DC_TOKEN: &str = "MTAxMDEwMTAxMDEwMTAxMDEw.discord-bench.SECRET";
const TG_ALICE: i64 = 111;
const DC_ALICE: u64 = 310_000_000_000_000_001;
/// Bound for the slowest answer (Telegram's group budget alone needs a minute for 20).
const ANSWER_WAIT: Duration = Duration::from_secs(600);

/// Polls `found` every 20 ms until it holds for every index; each one's time since `t0`.
async fn wait_all(
    n: usize,
    t0: Instant,
    found: impl Fn(usize) -> bool,
) -> anyhow::Result<Vec<Duration>> {
    let mut at: Vec<Option<Duration>> = vec![None; n];
    let deadline = t0 + ANSWER_WAIT;
    while at.iter().any(Option::is_none) {
        ensure!(
            Instant::now() < deadline,
            "{} of {n} answers missing after {ANSWER_WAIT:?}",
            at.iter().filter(|a| a.is_none()).count()
        );
        for (i, slot) in at.iter_mut().enumerate() {
            if slot.is_none() && found(i) {
                *slot = Some(t0.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(at.into_iter().flatten().collect())
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + ANSWER_WAIT;
    while !cond() {
        ensure!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn row(name: &str, v: &[Duration]) {
    println!(
        "  {:<40} {:>9.0} {:>9.0} {:>9.0}",
        name,
        ms(pct(v, 0.5)),
        ms(pct(v, 0.9)),
        ms(v.last().copied().unwrap_or_default())
    );
}

/// n topics in one forum group, a message in each at once.
async fn telegram(n: usize) -> anyhow::Result<(Vec<Duration>, f64)> {
    let tg = FakeTelegram::start(TG_TOKEN).await?;
    let url = tg.api_url();
    let alice = TG_ALICE.to_string();
    let w = World::start_with(&[
        ("CCRM_BOT_TELEGRAM_TOKEN", TG_TOKEN),
        ("CCRM_BOT_TELEGRAM_API_URL", url.as_str()),
        ("CCRM_BOT_TELEGRAM_ALLOWED_USERS", alice.as_str()),
    ])
    .await;
    let group = tg.forum_group("bench");
    let mut topics = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench-{i:02}");
        tg.user_message(
            group,
            TG_ALICE,
            &format!("/new {} {name}", w.work.display()),
            None,
        );
        let call = tg
            .wait_for(ANSWER_WAIT, |c| {
                c.method == "createForumTopic"
                    && c.ok()
                    && c.str_param("name") == Some(name.as_str())
            })
            .await
            .context("a topic was not created")?;
        let topic = i32::try_from(
            call.result["message_thread_id"]
                .as_i64()
                .context("thread id")?,
        )?;
        wait_until("the session started", || {
            tg.messages_in(group, Some(topic))
                .iter()
                .any(|m| m.visible_text.contains("started"))
        })
        .await?;
        topics.push(topic);
    }
    // Let the setup's messages drain from the group's budget window.
    let calls_before = tg.calls().len();
    let t0 = Instant::now();
    for (i, topic) in topics.iter().enumerate() {
        tg.user_message(group, TG_ALICE, &format!("bench topic {i}"), Some(*topic));
    }
    let mut got = wait_all(n, t0, |i| {
        let want = format!("Echo: bench topic {i}");
        tg.messages_in(group, Some(topics[i]))
            .iter()
            .any(|m| m.visible_text.contains(&want))
    })
    .await?;
    got.sort();
    let sends = tg.calls()[calls_before..]
        .iter()
        .filter(|c| {
            matches!(
                c.method.as_str(),
                "sendMessage" | "editMessageText" | "sendDocument"
            )
        })
        .count();
    drop(w);
    Ok((got, sends as f64 / n as f64))
}

/// n threads in one server channel, a message in each at once.
async fn discord(n: usize) -> anyhow::Result<(Vec<Duration>, f64)> {
    let dc = FakeDiscord::start(DC_TOKEN).await?;
    let url = dc.api_url();
    let alice = DC_ALICE.to_string();
    let guild = GUILD_ID.to_string();
    let w = World::start_with(&[
        ("CCRM_BOT_DISCORD_TOKEN", DC_TOKEN),
        ("CCRM_BOT_DISCORD_API_URL", url.as_str()),
        ("CCRM_BOT_DISCORD_ALLOWED_USERS", alice.as_str()),
        ("CCRM_BOT_DISCORD_GUILDS", guild.as_str()),
    ])
    .await;
    dc.wait_ready(ANSWER_WAIT).await?;
    dc.wait_for(ANSWER_WAIT, |c| {
        c.method == "PUT" && c.path.contains("/guilds/") && c.path.ends_with("/commands") && c.ok()
    })
    .await
    .context("slash commands")?;
    let general = dc.text_channel("general");
    let work = w.work.display().to_string();
    let mut threads = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench-{i:02}");
        dc.slash_command(
            general,
            DC_ALICE,
            "new",
            &[("directory", work.as_str()), ("name", name.as_str())],
        );
        wait_until("the thread is created", || {
            dc.threads(general).iter().any(|(_, t)| *t == name)
        })
        .await?;
        let thread = dc
            .threads(general)
            .into_iter()
            .find(|(_, t)| *t == name)
            .map(|(id, _)| id)
            .context("thread")?;
        wait_until("the session started", || {
            dc.messages_in(thread)
                .iter()
                .any(|m| m.content.contains("started"))
        })
        .await?;
        threads.push(thread);
    }
    let calls_before = dc.calls().len();
    let t0 = Instant::now();
    for (i, thread) in threads.iter().enumerate() {
        dc.user_message(*thread, DC_ALICE, &format!("bench thread {i}"));
    }
    let mut got = wait_all(n, t0, |i| {
        let want = format!("Echo: bench thread {i}");
        dc.messages_in(threads[i])
            .iter()
            .any(|m| m.author == testkit::discord::BOT_USER_ID && m.content.contains(&want))
    })
    .await?;
    got.sort();
    let sends = dc.calls()[calls_before..]
        .iter()
        .filter(|c| matches!(c.method.as_str(), "POST" | "PATCH") && c.path.contains("/messages"))
        .count();
    drop(w);
    Ok((got, sends as f64 / n as f64))
}

async fn run() -> anyhow::Result<()> {
    let n = usize::try_from(env_num("BENCH_TOPICS", 20)?)?;
    println!("chat throughput: a message in each of {n} topics / threads at once → its answer");

    // Baseline: the model's own time to an answer, the CLI driven directly.
    let api = testkit::FakeApi::start().await?;
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let home = testkit::ClaudeHome::new(testkit::TEST_API_KEY, &[work.as_path()])?;
    let env = claude_env(&api, home.path());
    let mut direct = testkit::DirectClaude::start(&claude_bin()?, &env, &work).await?;
    let mut base = Vec::new();
    for i in 0..6 {
        let t0 = Instant::now();
        direct.turn(&format!("direct {i}")).await?;
        if i > 0 {
            base.push(t0.elapsed());
        }
    }
    base.sort();
    drop(direct);

    let (tg, tg_sends) = telegram(n).await?;
    let (dc, dc_sends) = discord(n).await?;
    println!(
        "  {:<40} {:>9} {:>9} {:>9}",
        "message → answer", "p50 ms", "p90 ms", "max ms"
    );
    row("claude direct, one turn (baseline)", &base);
    row(&format!("Telegram, {n} topics of one group"), &tg);
    // 20 messages a minute per group: the k-th send can go out 3 s after the one before,
    // so the last of all the sends counted cannot land before (sends - 1) × 3 s.
    let tg_total = (tg_sends * n as f64).round();
    let tg_floor = (tg_total - 1.0).max(0.0) * 3000.0;
    println!(
        "  {:<40} {:>9} {:>9} {:>9.0}   ({tg_sends:.1} sends per turn; last answer at {:.2}× this floor)",
        "  floor: 20 messages/min per group",
        "",
        "",
        tg_floor,
        ms(tg.last().copied().unwrap_or_default()) / tg_floor.max(1.0)
    );
    row(&format!("Discord, {n} threads"), &dc);
    println!(
        "  {:<40} {:>9} {:>9} {:>9.0}   ({dc_sends:.1} sends per turn)",
        "  floor: 5 messages/5 s per thread",
        "",
        "",
        ms(base.first().copied().unwrap_or_default())
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if !support::asked_for("BENCH_TOPICS") {
        println!("chat: run with `cargo bench -p ccrm-bot --bench chat`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The chain needs ccrmd beside ccrm-bot (`cargo build --release -p ccrm-daemon`).
    let _ = common::ccrmd_bin;
    rt.block_on(run())
}
