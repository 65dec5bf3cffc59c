//! Benchmark: what ccrmd adds on top of the Claude Code CLI, measured against a baseline in
//! the same run.
//!
//! 1. Latency: `prompt.send` over the socket → first assistant event (a streamed text
//!    delta) seen by a follower, versus writing the same prompt straight into a claude
//!    child and reading its first text delta. Both children are warm, run against the same
//!    fake Messages API, and turns alternate between the two so drift hits both equally.
//!    Target: ccrmd p50 ≤ 1.03× direct p50.
//! 2. Memory: ccrmd RSS idle and with 10 idle sessions (children are separate processes
//!    and are not counted). Target: ≤ 10 MB idle. A claude child's RSS is printed beside
//!    it for scale.
//!
//! Run with `cargo bench -p ccrm-daemon --bench overhead` (env `BENCH_TURNS`, default 200).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use anyhow::Context;
use ccrm_daemon::client::Client;
use common::event::EventKind;
use common::ipc::{Command, EventsArgs, PromptArgs};
use support::{ms, pct, rss_kb, start_daemon, start_session};
use testkit::{ClaudeHome, FakeApi, TEST_API_KEY, claude_bin, claude_env};

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let turns: usize = std::env::var("BENCH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let api = FakeApi::start().await?;
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()])?;
    let env = claude_env(&api, home.path());
    let claude = claude_bin()?;

    // ---- latency -------------------------------------------------------------------
    let daemon = start_daemon(dir.path(), &env, &claude)?;
    let session = start_session(&daemon.socket, &work).await?;
    let sid = session.id.to_string();
    let mut direct = testkit::DirectClaude::start(&claude, &env, &work).await?;

    // A follower that reports (prompt_id, first-delta instant, result instant).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, Instant)>();
    let mut follower = Client::connect(&daemon.socket).await?;
    let follow_sid = sid.clone();
    let follow = tokio::spawn(async move {
        let mut in_turn = false;
        let args = EventsArgs {
            session: follow_sid,
            after: 0,
            limit: None,
            follow: true,
        };
        let _ = follower
            .stream(Command::SessionEvents(args), |ev| match &ev.kind {
                EventKind::TurnStarted { .. } => in_turn = true,
                EventKind::AssistantDelta { .. } if in_turn => {
                    in_turn = false;
                    let _ = tx.send((false, Instant::now()));
                }
                EventKind::TurnResult { .. } => {
                    let _ = tx.send((true, Instant::now()));
                }
                _ => {}
            })
            .await;
    });
    let mut sender = Client::connect(&daemon.socket).await?;

    let mut via_ccrmd = Vec::new();
    let mut via_direct = Vec::new();
    // Warm-up turns (first turns of a process are slower), then measured ones.
    for i in 0..turns + 3 {
        let text = format!("bench turn {i}");
        // Alternate which side goes first so neither always runs right after the other.
        let mut d = Duration::ZERO;
        if i % 2 == 0 {
            d = direct.turn(&text).await?.0;
        }
        let t0 = Instant::now();
        sender
            .call(Command::PromptSend(PromptArgs {
                session: sid.clone(),
                text: text.clone(),
                follow: false,
                origin: None,
                images: Vec::new(),
            }))
            .await?;
        let mut first = None;
        loop {
            let (is_result, at) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await?
                .context("follower ended")?;
            if is_result {
                break;
            }
            first.get_or_insert(at - t0);
        }
        if i % 2 == 1 {
            d = direct.turn(&text).await?.0;
        }
        if i >= 3 {
            via_direct.push(d);
            via_ccrmd.push(first.context("no delta in a ccrmd turn")?);
        }
    }
    follow.abort();
    via_direct.sort();
    via_ccrmd.sort();
    println!(
        "ccrmd overhead: prompt → first assistant event, {turns} warm turns each, same fake API"
    );
    println!(
        "  {:<22} {:>9} {:>9} {:>9} {:>9}",
        "", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, v) in [
        ("claude direct (base)", &via_direct),
        ("through ccrmd", &via_ccrmd),
    ] {
        println!(
            "  {:<22} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            ms(pct(v, 0.5)),
            ms(pct(v, 0.9)),
            ms(pct(v, 0.99)),
            ms(*v.last().context("samples")?)
        );
    }
    let ratio50 = ms(pct(&via_ccrmd, 0.5)) / ms(pct(&via_direct, 0.5));
    let ratio99 = ms(pct(&via_ccrmd, 0.99)) / ms(pct(&via_direct, 0.99));
    println!(
        "  ratio p50 {ratio50:.3}× (target ≤ 1.03×: {}), p99 {ratio99:.3}×",
        if ratio50 <= 1.03 { "met" } else { "NOT met" }
    );
    drop(direct);
    drop(daemon);

    // ---- memory --------------------------------------------------------------------
    let mem_dir = tempfile::tempdir()?;
    let daemon = start_daemon(mem_dir.path(), &env, &claude)?;
    let pid = daemon.child.id();
    // Let the daemon settle, then take the idle figure.
    Client::connect(&daemon.socket)
        .await?
        .call(Command::DaemonStatus(Default::default()))
        .await?;
    let idle = rss_kb(pid)?;
    let mut infos = Vec::new();
    for _ in 0..10 {
        infos.push(start_session(&daemon.socket, &work).await?);
    }
    let ten = rss_kb(pid)?;
    let child_rss = infos
        .first()
        .and_then(|i| i.pid)
        .map(rss_kb)
        .transpose()?
        .unwrap_or(0);
    println!("ccrmd memory (RSS, children excluded)");
    println!(
        "  idle:              {:>8.2} MB (target ≤ 10 MB: {})",
        idle as f64 / 1024.0,
        if idle <= 10 * 1024 { "met" } else { "NOT met" }
    );
    println!("  10 idle sessions:  {:>8.2} MB", ten as f64 / 1024.0);
    println!(
        "  for scale, one idle claude child: {:>8.2} MB",
        child_rss as f64 / 1024.0
    );
    drop(daemon);
    Ok(())
}
