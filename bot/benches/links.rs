//! Many daemons into one bot: 200 simulated daemon links (a bounded load generator on
//! loopback) each streaming 20 events a second, one event per frame as ccrmd sends a live
//! turn, into the real `ccrm-bot` binary. Measured in the same run:
//!
//! 1. Commit latency: a frame sent → its ack (which the bot sends only once the frame is
//!    committed), p50/p90/p99/max over every frame, and zero loss: after the bot stops,
//!    the database holds every event once and each daemon's highest seq is what it sent.
//! 2. Baseline: the same frames at the same total rate into a fresh database with the
//!    same settings, one transaction per frame on one connection (what the bot did before
//!    group commit, without the WebSocket), timed from when each frame was due to its
//!    commit.
//! 3. The bot's memory: RSS idle (fresh data dir, after one `/healthz`) and with every
//!    link connected, and its CPU time per event while streaming. Targets: ≤ 20 MB idle,
//!    ≤ 40 MB with 200 daemons.
//!
//! Run with `cargo bench -p ccrm-bot --bench links` (env `BENCH_LINKS`, default 200;
//! `BENCH_RATE` events per second per link, default 20; `BENCH_SECS`, default 15).

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use ccrm_bot::auth::KeyKind;
use ccrm_bot::db::Db;
use common::ids::{DaemonId, SessionId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use support::fleet::{delta, stream};
use support::{BotProcess, WAIT, cpu_time, env_num, mb, ms, pct, rss_kb, rss_parts};

const TARGET_IDLE_KB: u64 = 20 * 1024;
const TARGET_LINKS_KB: u64 = 40 * 1024;

/// The baseline: `frames` single-event frames due every `period` from the start, each
/// committed in its own transaction on one connection; due → committed for each.
async fn baseline(
    path: &Path,
    links: usize,
    frames: u64,
    period: Duration,
) -> anyhow::Result<Vec<Duration>> {
    Db::open(path).await?.close().await;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePool::connect_with(options).await?;
    for d in 0..links {
        sqlx::query(
            "INSERT INTO daemons (id, hostname, version, first_seen_ms, last_seen_ms)
             VALUES (?1, 'bench', '0', 1, 1)",
        )
        .bind(format!("d{d}"))
        .execute(&pool)
        .await?;
    }
    let sessions: Vec<SessionId> = (0..links).map(|_| SessionId::new()).collect();
    let start = tokio::time::Instant::now();
    let mut out = Vec::with_capacity(usize::try_from(frames)?);
    for i in 0..frames {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let link = usize::try_from(i)? % links;
        let ev = delta(i / links as u64 + 1, sessions[link]);
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (daemon_id, seq) DO NOTHING RETURNING seq, id",
        )
        .bind(format!("d{link}"))
        .bind(i64::try_from(ev.seq)?)
        .bind(ev.event.session_id.to_string())
        .bind(i64::try_from(ev.event.seq)?)
        .bind(i64::try_from(ev.event.ts_ms)?)
        .bind(ev.event.kind.name())
        .bind(serde_json::to_string(&ev.event)?)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        out.push(due.elapsed());
    }
    pool.close().await;
    Ok(out)
}

fn row(name: &str, v: &[Duration]) {
    println!(
        "  {:<46} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        name,
        ms(pct(v, 0.5)),
        ms(pct(v, 0.9)),
        ms(pct(v, 0.99)),
        ms(v.last().copied().unwrap_or_default())
    );
}

async fn run() -> anyhow::Result<()> {
    let links = usize::try_from(env_num("BENCH_LINKS", 200)?)?;
    let rate = env_num("BENCH_RATE", 20)?;
    let secs = env_num("BENCH_SECS", 15)?;
    let period = Duration::from_secs(1) / u32::try_from(rate)?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("bot");
    println!(
        "{links} daemon links into one ccrm-bot, {rate} events/s each (one per frame) for {secs} s, loopback"
    );

    // Keys first, in the database the bot will open.
    let db = Db::open(&data.join(ccrm_bot::config::DB_FILE)).await?;
    let (_, key) = db.create_key("bench-daemons", KeyKind::Daemon, 1).await?;
    db.close().await;

    let mut bot = BotProcess::start(&data, &dir.path().join("config"))?;
    let pid = bot.pid();
    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    let r = http
        .get(format!("http://{}/healthz", bot.addr))
        .send()
        .await?;
    ensure!(r.status() == 200, "healthz: {}", r.status());
    let idle = rss_kb(pid)?;

    // Connect every link (a few at a time, like daemons coming back after a restart).
    let mut open = Vec::with_capacity(links);
    for chunk in (0..links).collect::<Vec<_>>().chunks(20) {
        let mut dials = Vec::new();
        for &i in chunk {
            let (addr, key) = (bot.addr.clone(), key.clone());
            dials.push(tokio::spawn(async move {
                let daemon = DaemonId(format!("bench-daemon-{i:03}"));
                let session = SessionId::new();
                let (ws, acked) = support::link(&addr, &key, &daemon, session).await?;
                ensure!(acked == 0, "a fresh daemon was welcomed with acked {acked}");
                anyhow::Ok((daemon, session, ws))
            }));
        }
        for d in dials {
            open.push(d.await??);
        }
    }
    let connected = rss_kb(pid)?;

    // Stream, every link staggered across one period.
    let cpu0 = cpu_time(pid)?;
    let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
    let until = t0 + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(links);
    for (i, (daemon, session, ws)) in open.into_iter().enumerate() {
        let start = t0 + period.mul_f64(i as f64 / links as f64);
        tasks.push(tokio::spawn(async move {
            stream(ws, session, start, period, until)
                .await
                .map(|r| (daemon, r))
        }));
    }
    // Sampled until the last ack (a backlog may peak after the window closes), with where
    // it went at the peak: anonymous (heap, SQLite caches), file-mapped, shared.
    let streaming = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still = streaming.clone();
    let sampler = tokio::spawn(async move {
        let mut peak = (0, [0; 3]);
        while still.load(std::sync::atomic::Ordering::Relaxed) {
            let rss = rss_kb(pid).unwrap_or(0);
            if rss > peak.0 {
                peak = (rss, rss_parts(pid).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        peak
    });
    let mut runs = Vec::with_capacity(links);
    for t in tasks {
        runs.push(
            tokio::time::timeout(WAIT + Duration::from_secs(secs), t)
                .await
                .context("a link never finished")???,
        );
    }
    streaming.store(false, std::sync::atomic::Ordering::Relaxed);
    let (busy_peak, [anon, file, shmem]) = sampler.await?;
    let after = rss_kb(pid)?;
    let cpu = cpu_time(pid)?.saturating_sub(cpu0);
    let streamed = t0.elapsed();
    bot.stop()?;

    // Zero loss, from the database the bot wrote.
    let sent: u64 = runs.iter().map(|(_, r)| r.sent).sum();
    let db = Db::open(&data.join(ccrm_bot::config::DB_FILE)).await?;
    let counts = db.counts().await?;
    ensure!(
        counts.events == sent,
        "{} events stored for {sent} sent",
        counts.events
    );
    for (daemon, r) in &runs {
        let max = db.max_seq(daemon).await?;
        ensure!(
            max == r.sent,
            "{daemon}: stored up to {max}, sent {}",
            r.sent
        );
    }
    db.close().await;
    let mut latencies: Vec<Duration> = runs
        .iter()
        .flat_map(|(_, r)| r.latencies.iter().copied())
        .collect();
    ensure!(latencies.len() as u64 == sent, "every frame was acked");
    latencies.sort();

    // The baseline, same frames at the same total rate.
    let total_period = period / u32::try_from(links)?;
    let mut base = baseline(&dir.path().join("raw/ccrm.db"), links, sent, total_period).await?;
    base.sort();

    println!(
        "  {sent} events sent in {:.1} s ({:.0}/s), all acked, all stored once (zero loss)",
        streamed.as_secs_f64(),
        sent as f64 / streamed.as_secs_f64()
    );
    println!(
        "  {:<46} {:>8} {:>8} {:>8} {:>8}",
        "frame → committed", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    row("raw SQLite, a transaction per frame (baseline)", &base);
    row("bot: link frame → ack (group commit)", &latencies);
    println!(
        "  bot CPU while streaming: {:.1} µs per event ({:.2} s for {sent} events)",
        cpu.as_secs_f64() * 1e6 / sent.max(1) as f64,
        cpu.as_secs_f64()
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("ccrm-bot memory (RSS)");
    println!(
        "  idle: {:>7.2} MB (target ≤ 20 MB: {})",
        mb(idle),
        verdict(idle <= TARGET_IDLE_KB)
    );
    println!(
        "  {links} links connected: {:>7.2} MB; streaming peak {:>7.2} MB (target ≤ 40 MB: {})",
        mb(connected),
        mb(busy_peak),
        verdict(connected.max(busy_peak) <= TARGET_LINKS_KB)
    );
    println!(
        "  at the peak: anonymous {:.2} MB, file-mapped {:.2} MB, shared {:.2} MB; after the last ack {:.2} MB",
        mb(anon),
        mb(file),
        mb(shmem),
        mb(after)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if !support::asked_for("BENCH_LINKS") {
        println!("links: run with `cargo bench -p ccrm-bot --bench links`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}
