//! Many busy sessions on one ccrmd, against the same number of claude children driven
//! directly, in the same run and against the same fake Messages API.
//!
//! 1. Fairness: 50 sessions each given a prompt at the same moment (one client connection
//!    each, `prompt.send` with follow): every turn answered, prompt → first assistant event
//!    p50/p99/max, and the slowest against the median (none starved). Baseline: 50 claude
//!    children prompted directly at the same moment.
//! 2. Cost: ccrmd's CPU time per event over all the turns (`/proc/<pid>/stat`).
//! 3. Memory: ccrmd's RSS idle, with the 50 fresh sessions, and after every session has run
//!    `BENCH_TURNS` turns (rounds of 50 concurrent prompts), sampled as the turns go, so a
//!    growing log would show. Children are separate processes and are not counted. Targets:
//!    ≤ 10 MB idle, ≤ 25 MB with 50 sessions of 1,000 turns.
//!
//! Run with `cargo bench -p ccrm-daemon --bench sessions` (env `BENCH_SESSIONS`, default
//! 50; `BENCH_TURNS`, default 1000: 50,000 real CLI turns take a while on two cores).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use ccrm_daemon::client::Client;
use common::event::{EventKind, SessionState};
use common::ipc::{Command, EventsArgs, NoArgs, PromptArgs, SessionInfo, SessionRef};
use support::{cpu_time, env_num, mb, ms, pct, rss_kb, start_daemon, start_session};
use testkit::{ClaudeHome, FakeApi, TEST_API_KEY, claude_bin, claude_env};

/// Bound for one turn under load.
const TURN_WAIT: Duration = Duration::from_secs(300);

/// One turn through ccrmd on its own connection: prompt → first assistant event, and
/// whether the turn ended with a result.
async fn ccrmd_turn(socket: PathBuf, session: String, text: String) -> anyhow::Result<Duration> {
    let mut client = Client::connect(&socket).await?;
    let t0 = Instant::now();
    let mut first = None;
    let done = tokio::time::timeout(
        TURN_WAIT,
        client.stream(
            Command::PromptSend(PromptArgs {
                session: session.clone(),
                text,
                follow: true,
                origin: None,
                images: Vec::new(),
            }),
            |ev| {
                if matches!(
                    ev.kind,
                    EventKind::AssistantDelta { .. } | EventKind::AssistantText { .. }
                ) {
                    first.get_or_insert_with(|| t0.elapsed());
                }
            },
        ),
    )
    .await;
    let Ok(done) = done else {
        anyhow::bail!("{}", stalled(&socket, &session).await);
    };
    let done = done?;
    let done = done.context("the turn ended without a result")?;
    ensure!(done["is_error"] == false, "a turn failed: {done}");
    first.context("a turn through ccrmd had no assistant event")
}

/// What a turn that did not finish within [`TURN_WAIT`] left behind: the session as
/// ccrmd sees it and its newest events, so a stall explains itself.
async fn stalled(socket: &Path, session: &str) -> String {
    let mut why = format!(
        "a turn through ccrmd did not finish within {} s; session {session}",
        TURN_WAIT.as_secs()
    );
    let Ok(mut client) = Client::connect(socket).await else {
        return why + ": ccrmd does not answer on its socket";
    };
    let r = SessionRef {
        session: session.to_owned(),
    };
    let info = client
        .call(Command::SessionGet(r))
        .await
        .unwrap_or_default();
    why += &format!("\n  now: {info}");
    let newest = info["last_seq"].as_u64().unwrap_or(0);
    let last = client
        .call(Command::SessionEvents(EventsArgs {
            session: session.to_owned(),
            after: newest.saturating_sub(12),
            limit: None,
            follow: false,
        }))
        .await
        .unwrap_or_default();
    let events = last["events"].as_array().cloned().unwrap_or_default();
    for ev in &events {
        let mut ev = ev.clone();
        if let Some(o) = ev.as_object_mut() {
            o.remove("raw");
        }
        why += &format!("\n  event: {ev}");
    }
    why
}

/// Runs `f` for every index at the same moment (after all are ready) and returns the
/// results in index order.
async fn all_at_once<F, Fut, T>(n: usize, f: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let gate = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        let fut = f(i);
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

fn row(name: &str, v: &[Duration]) {
    println!(
        "  {:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        name,
        ms(pct(v, 0.5)),
        ms(pct(v, 0.9)),
        ms(pct(v, 0.99)),
        ms(v.last().copied().unwrap_or_default())
    );
}

async fn sessions_list(socket: &Path) -> anyhow::Result<Vec<SessionInfo>> {
    let v = Client::connect(socket)
        .await?
        .call(Command::SessionsList(NoArgs {}))
        .await?;
    Ok(serde_json::from_value(v)?)
}

async fn run() -> anyhow::Result<()> {
    let n = env_num("BENCH_SESSIONS", 50)?;
    let turns = env_num("BENCH_TURNS", 1000)?;
    let api = FakeApi::start().await?;
    // A thousand turns of fifty conversations: the fake must not keep every body.
    api.forget_bodies();
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()])?;
    let env = claude_env(&api, home.path());
    let claude = claude_bin()?;
    println!("{n} busy sessions on one ccrmd, {turns} turns each, same fake API");

    // ---- baseline: n children driven directly, prompted at the same moment ------------
    let mut starting = Vec::new();
    for _ in 0..n {
        let (claude, env, work) = (claude.clone(), env.clone(), work.clone());
        starting.push(tokio::spawn(async move {
            testkit::DirectClaude::start(&claude, &env, &work).await
        }));
    }
    let mut direct = Vec::with_capacity(n);
    for s in starting {
        direct.push(Arc::new(tokio::sync::Mutex::new(s.await??)));
    }
    // One warm turn each, then the measured one.
    for round in 0..2 {
        let children = direct.clone();
        let mut firsts = all_at_once(n, move |i| {
            let child = children[i].clone();
            async move {
                Ok(child
                    .lock()
                    .await
                    .turn(&format!("direct {i} round {round}"))
                    .await?
                    .0)
            }
        })
        .await?;
        firsts.sort();
        if round == 1 {
            println!(
                "  {:<34} {:>9} {:>9} {:>9} {:>9}",
                "prompt → first assistant event", "p50 ms", "p90 ms", "p99 ms", "max ms"
            );
            row(&format!("{n} claude children direct (base)"), &firsts);
        }
    }
    drop(direct);

    // ---- through ccrmd ---------------------------------------------------------------
    let daemon = start_daemon(dir.path(), &env, &claude)?;
    let pid = daemon.child.id();
    let socket = daemon.socket.clone();
    sessions_list(&socket).await?;
    let idle = rss_kb(pid)?;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(start_session(&socket, &work).await?.id.to_string());
    }
    let deadline = Instant::now() + TURN_WAIT;
    while sessions_list(&socket)
        .await?
        .iter()
        .any(|s| s.state == SessionState::Starting)
    {
        ensure!(
            Instant::now() < deadline,
            "sessions did not finish starting"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = rss_kb(pid)?;
    let ids = Arc::new(ids);
    let seq_before: u64 = sessions_list(&socket)
        .await?
        .iter()
        .map(|s| s.last_seq)
        .sum();
    let cpu0 = cpu_time(pid)?;

    let mut all_firsts = Vec::new();
    let mut samples = Vec::new();
    let started = Instant::now();
    for round in 0..turns {
        let (ids, socket) = (ids.clone(), socket.clone());
        let mut firsts = all_at_once(n, move |i| {
            ccrmd_turn(
                socket.clone(),
                ids[i].clone(),
                format!("session {i} round {round}"),
            )
        })
        .await?;
        firsts.sort();
        if round == 1 {
            // The first round warms the children, like the baseline's.
            row(&format!("{n} sessions through ccrmd"), &firsts);
            let p50 = pct(&firsts, 0.5);
            let max = firsts.last().copied().unwrap_or_default();
            println!(
                "  all {n} answered; slowest / median: {:.2}× through ccrmd",
                max.as_secs_f64() / p50.as_secs_f64().max(1e-9)
            );
        }
        if round > 0 {
            all_firsts.extend(firsts);
        }
        if (round + 1) % (turns / 5).max(1) == 0 || round + 1 == turns {
            samples.push((round + 1, rss_kb(pid)?));
        }
        if (round + 1) % (turns / 20).max(1) == 0 {
            eprintln!(
                "  … {} of {turns} rounds in {:.0} s, ccrmd {:.2} MB",
                round + 1,
                started.elapsed().as_secs_f64(),
                mb(rss_kb(pid)?)
            );
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid)?.saturating_sub(cpu0);
    let events: u64 = sessions_list(&socket)
        .await?
        .iter()
        .map(|s| s.last_seq)
        .sum::<u64>()
        .saturating_sub(seq_before);
    all_firsts.sort();
    if turns > 2 {
        row(
            &format!("all {} later turns through ccrmd", all_firsts.len()),
            &all_firsts,
        );
    }
    println!(
        "  ccrmd CPU: {:.1} µs per event ({events} events, {:.2} s CPU in {:.0} s of turns)",
        cpu.as_secs_f64() * 1e6 / events.max(1) as f64,
        cpu.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("ccrmd memory (RSS, children excluded)");
    println!(
        "  idle: {:>7.2} MB (target ≤ 10 MB: {})",
        mb(idle),
        verdict(idle <= 10 * 1024)
    );
    println!("  {n} fresh sessions: {:>7.2} MB", mb(fresh));
    for (t, kb) in &samples {
        println!("  after {t:>5} turns each: {:>7.2} MB", mb(*kb));
    }
    if let Some((t, kb)) = samples.last() {
        println!(
            "  {n} sessions × {t} turns: {:.2} MB (target ≤ 25 MB at 50 × 1,000: {})",
            mb(*kb),
            if *t >= 1000 && n >= 50 {
                verdict(*kb <= 25 * 1024)
            } else {
                "not measured at full size; set BENCH_TURNS=1000 BENCH_SESSIONS=50"
            }
        );
    }
    drop(daemon);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os("BENCH_TURNS").is_none() {
        println!("sessions: run with `cargo bench -p ccrm-daemon --bench sessions`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}
