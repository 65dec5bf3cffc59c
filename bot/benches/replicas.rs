//! Several replicas on one PostgreSQL (issue 17), measured against SQLite in the same run,
//! on a throwaway cluster (`testkit::PgCluster`: Unix socket, `fsync=off`, so neither side
//! waits for the disk; SQLite runs with its usual WAL + `synchronous=NORMAL`):
//!
//! 1. Ingest: fake daemons (one WebSocket link each) send frames of 100 events as fast as
//!    acks come back (4 frames in flight); events/s from the first frame to the last ack,
//!    into one SQLite bot (the baseline), one PostgreSQL replica, and three replicas with
//!    the daemons spread over them (aggregate). Every event is then counted in the store.
//! 2. REST prompt → first SSE event: a prompt sent to the replica that holds the fake
//!    daemon's link (local) versus to another one (routed: over the direct link between
//!    the replicas, which the first routed prompt, through a `NOTIFY`, brings up), each
//!    time read on the SSE stream of the replica it was sent to; p50/p90/p99, interleaved,
//!    after [`LAT_WARMUP`] uncounted prompts per side. Target: routed ≤ 1.2 × local at
//!    p50. The fake daemon answers at once, so this shows the routing's own cost with
//!    nothing else in the loop; how many routed calls took the direct link is printed.
//!    2b (`replicas/real.rs`): the same with the real chain — the release `ccrmd` and a
//!    warm claude child on the fake Messages API — timed to the first SSE event (ccrmd's
//!    `prompt`) and to the first assistant text of each turn.
//! 3. 1,000 simulated daemon links on one replica (the `ccrm-bot` binary), each sending
//!    one event a frame at `BENCH_RATE`/s for `BENCH_SECS` s: the bot's RSS idle and with
//!    every link open, and the commit latency (frame sent → its ack, which comes after
//!    the commit) p50/p99; the same load into a SQLite bot as the baseline.
//!
//! Run with `cargo bench -p ccrm-bot --bench replicas` (env: `BENCH_EVENTS`, default
//! 60,000; `BENCH_PROMPTS` per side, default 60; `BENCH_TURNS` per side in 2b, default
//! 100; `BENCH_LINKS`, default 1,000;
//! `BENCH_RATE`, default 2; `BENCH_SECS`, default 10). Needs Debian's `postgresql`.

#[path = "replicas/fleet.rs"]
mod fleet;
#[path = "replicas/real.rs"]
mod real;
#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ccrm_bot::AppState;
use ccrm_bot::auth::KeyKind;
use ccrm_bot::config::BotConfig;
use common::event::{Event, EventKind};
use common::ids::{DaemonId, SessionId};
use common::link::{DaemonMsg, HubMsg, LinkEvent};
use futures::{SinkExt, StreamExt};
use support::{WAIT, env_num, ms, pct};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Events per frame in the ingest run.
const BATCH: u64 = 100;
/// Frames in flight per link in the ingest run.
const WINDOW: usize = 4;
/// Fake daemons in the ingest run (spread over the replicas).
const DAEMONS: usize = 6;
/// Prompts per side not counted in part 2 (connections, and the direct link, come up).
const LAT_WARMUP: u64 = 5;

/// One in-process replica (`AppState` + `serve`) on a port of its own.
struct Replica {
    state: Arc<AppState>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    async fn start(dir: &Path, db_url: Option<&str>) -> anyhow::Result<Self> {
        let cfg = BotConfig {
            data_dir: dir.to_owned(),
            database_url: db_url.map(str::to_owned),
            ..BotConfig::default()
        };
        let state = AppState::open(cfg).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(ccrm_bot::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        Ok(Self {
            state,
            addr,
            stop: Some(stop),
            server,
        })
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(WAIT, &mut self.server).await;
    }
}

fn event(seq: u64, session: SessionId, text: String) -> LinkEvent {
    LinkEvent {
        seq,
        event: Event {
            seq,
            ts_ms: 1_700_000_000_000 + seq,
            session_id: session,
            kind: EventKind::AssistantText { text },
            raw: None,
        },
    }
}

/// One fake daemon sends `total` events in frames of [`BATCH`], [`WINDOW`] in flight,
/// and returns when the last one is acknowledged.
async fn pump(addr: SocketAddr, key: String, daemon: DaemonId, total: u64) -> anyhow::Result<()> {
    let session = SessionId::new();
    let (ws, acked) = support::link(&addr.to_string(), &key, &daemon, session).await?;
    ensure!(
        acked == 0,
        "a fresh daemon id was welcomed with acked {acked}"
    );
    let frames: Vec<(u64, String)> = (0..total.div_ceil(BATCH))
        .map(|f| {
            let first = f * BATCH + 1;
            let last = ((f + 1) * BATCH).min(total);
            let events = (first..=last)
                .map(|s| event(s, session, format!("token {s} of a streamed answer")))
                .collect();
            Ok((last, serde_json::to_string(&DaemonMsg::Events { events })?))
        })
        .collect::<anyhow::Result<_>>()?;
    let (mut tx, mut rx) = ws.split();
    let mut next = 0;
    let mut in_flight = 0;
    let mut acked = 0;
    while acked < total {
        while in_flight < WINDOW && next < frames.len() {
            tx.send(Message::text(frames[next].1.clone())).await?;
            next += 1;
            in_flight += 1;
        }
        let msg = tokio::time::timeout(WAIT, rx.next())
            .await
            .context("acks stopped coming")?
            .context("the bot closed a link")??;
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<HubMsg>(t.as_str())? {
            HubMsg::Ack { seq } => {
                while in_flight > 0 && frames[next - in_flight].0 <= seq {
                    in_flight -= 1;
                }
                acked = seq;
            }
            HubMsg::Error { error } => bail!("the bot refused a frame: {}", error.message),
            _ => {}
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

/// Ingest into `replicas` (the daemons spread over them); events/s, checked in the store.
async fn ingest(replicas: &[Replica], total: u64) -> anyhow::Result<f64> {
    let db = &replicas[0].state.db;
    let (_, key) = db.create_key("bench-ingest", KeyKind::Daemon, 1).await?;
    let per = total / DAEMONS as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for d in 0..DAEMONS {
        let addr = replicas[d % replicas.len()].addr;
        let daemon = DaemonId(format!("ingest-{d}"));
        tasks.push(tokio::spawn(pump(addr, key.clone(), daemon, per)));
    }
    for t in tasks {
        t.await??;
    }
    let took = started.elapsed();
    let stored = db.counts().await?.events;
    ensure!(
        stored == per * DAEMONS as u64,
        "stored {stored} events, sent {}",
        per * DAEMONS as u64
    );
    Ok(stored as f64 / took.as_secs_f64())
}

/// Reads an SSE stream and forwards each `lat-<n>` marker with when it arrived.
async fn sse_markers(resp: reqwest::Response, out: mpsc::UnboundedSender<(u64, Instant)>) {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(i) = block.find("lat-") {
                let n: String = block[i + 4..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(n) = n.parse() {
                    let _ = out.send((n, now));
                }
            }
        }
    }
}

/// The fake daemon of the latency run: answers every prompt and then sends one event
/// whose text carries the prompt's marker.
async fn answering_daemon(ws: support::Ws, session: SessionId) -> anyhow::Result<()> {
    let (mut tx, mut rx) = ws.split();
    let mut seq = 0;
    while let Some(msg) = rx.next().await {
        let Message::Text(t) = msg? else { continue };
        if let HubMsg::Command { req_id, cmd } = serde_json::from_str::<HubMsg>(t.as_str())? {
            let text = match &cmd {
                common::ipc::Command::PromptSend(p) => p.text.clone(),
                _ => String::new(),
            };
            let reply = DaemonMsg::Reply {
                req_id,
                ok: true,
                data: Some(serde_json::json!({"accepted": true})),
                error: None,
            };
            tx.send(Message::text(serde_json::to_string(&reply)?))
                .await?;
            seq += 1;
            let events = vec![event(seq, session, text)];
            tx.send(Message::text(serde_json::to_string(&DaemonMsg::Events {
                events,
            })?))
            .await?;
        }
    }
    Ok(())
}

/// Prompt → first SSE event, sent to the link's replica (`local`) and to the other
/// (`routed`), interleaved; the sorted latencies of each, and how many of the counted
/// routed calls went over the direct link.
async fn latency(
    a: &Replica,
    b: &Replica,
    n: u64,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, u64)> {
    let db = &a.state.db;
    let (_, key) = db.create_key("bench-latency", KeyKind::Daemon, 1).await?;
    let (_, token) = db.create_key("bench-user", KeyKind::User, 1).await?;
    let session = SessionId::new();
    // The daemon holds its link on B.
    let (ws, _) =
        support::link(&b.addr.to_string(), &key, &DaemonId("lat".into()), session).await?;
    let daemon = tokio::spawn(answering_daemon(ws, session));
    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    // Both replicas list the daemon before the first prompt.
    for r in [a, b] {
        let deadline = Instant::now() + WAIT;
        loop {
            let v: serde_json::Value = http
                .get(format!("http://{}/api/sessions/{session}", r.addr))
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            if v.get("session").is_some() {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "replica never saw the session: {v}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut streams = Vec::new();
    for r in [b, a] {
        let resp = http
            .get(format!("http://{}/api/sessions/{session}/stream", r.addr))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(3600))
            .send()
            .await?;
        ensure!(resp.status() == 200, "SSE refused: {}", resp.status());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(sse_markers(resp, tx));
        streams.push(rx);
    }
    let (mut local, mut routed) = (Vec::new(), Vec::new());
    let direct = || {
        a.state
            .hub
            .metrics
            .replica_direct
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut direct_before = 0;
    for i in 0..2 * (n + LAT_WARMUP) {
        if i == 2 * LAT_WARMUP {
            direct_before = direct();
        }
        // Alternate which replica gets the prompt (B holds the link).
        let side = usize::try_from(i % 2)?;
        let addr = [b.addr, a.addr][side];
        for s in &mut streams {
            while s.try_recv().is_ok() {}
        }
        let t0 = Instant::now();
        let r = http
            .post(format!("http://{addr}/api/sessions/{session}/prompt"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"text": format!("lat-{i}")}))
            .send()
            .await?;
        ensure!(r.status() == 202, "prompt refused: {}", r.status());
        let at = loop {
            let (marker, at) = tokio::time::timeout(WAIT, streams[side].recv())
                .await
                .context("the SSE event never came")?
                .context("the SSE stream ended")?;
            if marker == i {
                break at;
            }
        };
        if i >= 2 * LAT_WARMUP {
            [&mut local, &mut routed][side].push(at - t0);
        }
    }
    daemon.abort();
    local.sort_unstable();
    routed.sort_unstable();
    Ok((local, routed, direct() - direct_before))
}

fn lat_row(name: &str, v: &[Duration]) {
    println!(
        "  {:<44} {:>8.2} {:>8.2} {:>8.2}",
        name,
        ms(pct(v, 0.5)),
        ms(pct(v, 0.9)),
        ms(pct(v, 0.99))
    );
}

async fn run() -> anyhow::Result<()> {
    let total = env_num("BENCH_EVENTS", 60_000)?;
    let prompts = env_num("BENCH_PROMPTS", 60)?;
    let real_turns = usize::try_from(env_num("BENCH_TURNS", 100)?)?;
    let dir = tempfile::tempdir()?;
    let pg = testkit::PgCluster::start()?;

    println!(
        "ingest: {total} events, {DAEMONS} fake daemons, frames of {BATCH}, {WINDOW} in flight ({})",
        support::load_note()
    );
    let sqlite = Replica::start(&dir.path().join("sqlite"), None).await?;
    let sqlite_rate = ingest(std::slice::from_ref(&sqlite), total).await?;
    sqlite.stop().await;
    let url1 = pg.create_db("ingest1")?;
    let one = Replica::start(&dir.path().join("pg1"), Some(&url1)).await?;
    let one_rate = ingest(std::slice::from_ref(&one), total).await?;
    one.stop().await;
    let url3 = pg.create_db("ingest3")?;
    let mut three = Vec::new();
    for i in 0..3 {
        three.push(Replica::start(&dir.path().join(format!("pg3-{i}")), Some(&url3)).await?);
    }
    let three_rate = ingest(&three, total).await?;
    for r in three {
        r.stop().await;
    }
    println!(
        "  {:<44} {:>10.0} events/s",
        "SQLite, one bot (baseline)", sqlite_rate
    );
    println!(
        "  {:<44} {:>10.0} events/s",
        "PostgreSQL, 1 replica", one_rate
    );
    println!(
        "  {:<44} {:>10.0} events/s ({:.0} per replica)",
        "PostgreSQL, 3 replicas (aggregate)",
        three_rate,
        three_rate / 3.0
    );

    println!(
        "REST prompt → first SSE event, fake daemon answering at once (the routing's own cost), {prompts} prompts each, interleaved (ms)"
    );
    println!("  {:<44} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99");
    let url = pg.create_db("latency")?;
    let a = Replica::start(&dir.path().join("lat-a"), Some(&url)).await?;
    let b = Replica::start(&dir.path().join("lat-b"), Some(&url)).await?;
    let (local, routed, direct) = latency(&a, &b, prompts).await?;
    a.stop().await;
    b.stop().await;
    lat_row("replica holding the link (local)", &local);
    lat_row("another replica (routed)", &routed);
    ratio_row(&local, &routed);
    println!(
        "  routed calls over the direct link: {direct} of {}",
        routed.len()
    );

    let (first, text) = real::run(&pg, dir.path(), real_turns).await?;
    println!(
        "REST prompt → first SSE event (ccrmd's `prompt`), real ccrmd + claude (fake Messages API) linked to B, {real_turns} turns each, alternated (ms)"
    );
    println!("  {:<44} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99");
    lat_row("replica holding the link (local)", &first.local);
    lat_row("another replica (routed)", &first.routed);
    ratio_row(&first.local, &first.routed);
    println!("REST prompt → first assistant text on SSE, the same turns (ms)");
    println!("  {:<44} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99");
    lat_row("replica holding the link (local)", &text.local);
    lat_row("another replica (routed)", &text.routed);
    ratio_row(&text.local, &text.routed);

    fleet::run(&pg, dir.path()).await
}

/// Routed over local at p50, against the target.
fn ratio_row(local: &[Duration], routed: &[Duration]) {
    let ratio = ms(pct(routed, 0.5)) / ms(pct(local, 0.5)).max(f64::EPSILON);
    println!(
        "  routed / local p50: {ratio:.2}× (target ≤ 1.2×: {})",
        if ratio <= 1.2 { "met" } else { "NOT met" }
    );
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick no-op, not a full run.
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os("BENCH_EVENTS").is_none() {
        println!("replicas: run with `cargo bench -p ccrm-bot --bench replicas`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}
