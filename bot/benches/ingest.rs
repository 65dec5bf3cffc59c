//! Hub ingest benchmark: events per second from a daemon over the WebSocket link into
//! SQLite (committed and acknowledged), with two SSE subscribers attached, against a raw
//! batched SQLite insert of the same rows measured in the same run. Also the idle RSS of
//! the `ccrm-bot` binary.
//!
//! 1. Through the hub: `ccrm_bot::serve` in-process on `127.0.0.1:0`; a fake daemon
//!    (tokio-tungstenite, a real daemon key) says hello, gets its welcome, then sends
//!    `events` frames of [`BATCH`] link events, keeping at most [`WINDOW`] unacknowledged
//!    like ccrmd's uplink. Events alternate between two sessions; one SSE client follows
//!    each. Timed from the first frame to the ack of the last event. Then checked: rows
//!    stored == events sent, every SSE client got every event of its session, in order.
//! 2. Baseline: the same rows with plain `INSERT`s, one row per statement, in transactions
//!    of [`BATCH`] rows, through a raw sqlx pool on a fresh database with the same schema
//!    (made by [`Db::open`]). Measured before and after the hub run; the ratio uses the
//!    faster of the two. Target: hub ≥ 30 % of raw. For information, also 64 rows per
//!    statement (the statement shape `Db::insert_events` uses), the floor for SQLite here.
//! 3. Idle RSS: the `ccrm-bot` binary with a fresh data dir, right after its
//!    "ccrm-bot listening" line (and again after one `/healthz`). Target: ≤ 20 MB.
//!
//! Run with `cargo bench -p ccrm-bot --bench ingest` (env `BENCH_EVENTS`, default 100000).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ccrm_bot::AppState;
use ccrm_bot::auth::KeyKind;
use ccrm_bot::config::BotConfig;
use ccrm_bot::db::Db;
use common::event::{Event, EventKind, SessionState};
use common::ids::SessionId;
use common::link::{DaemonMsg, HubMsg, LINK_PROTOCOL_VERSION, LinkEvent};
use futures::{SinkExt, StreamExt};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Events per `events` frame (ccrmd's uplink batch) and per baseline transaction.
const BATCH: usize = 500;
/// Most unacknowledged events in flight (ccrmd's uplink window).
const WINDOW: u64 = 5_000;
/// Sessions the events alternate between; one SSE subscriber each.
const SESSIONS: usize = 2;
/// Bound for every wait.
const WAIT: Duration = Duration::from_secs(120);
const TARGET_RATIO: f64 = 0.30;
const TARGET_RSS_KB: u64 = 20 * 1024;

/// The event with daemon-wide `seq`: mostly assistant text, some tool calls and results,
/// now and then a state change (which also updates the session row).
fn make_event(seq: u64, sessions: &[SessionId]) -> LinkEvent {
    let idx = usize::try_from(seq).unwrap_or(0) % sessions.len();
    let session_seq = (seq - 1) / sessions.len() as u64 + 1;
    let kind = match seq % 50 {
        0 => EventKind::State {
            state: if seq.is_multiple_of(100) {
                SessionState::Active
            } else {
                SessionState::Idle
            },
            reason: None,
        },
        1 | 11 | 21 | 31 | 41 => EventKind::ToolUse {
            tool_use_id: format!("toolu_{seq:016x}"),
            name: "Bash".into(),
            input: serde_json::json!({"command": format!("ls -la /home/user/project/src/{seq}")}),
        },
        2 | 12 | 22 | 32 | 42 => EventKind::ToolResult {
            tool_use_id: format!("toolu_{:016x}", seq - 1),
            content: "total 48\ndrwxr-xr-x 2 user user 4096 main.rs\n".repeat(4),
            is_error: false,
        },
        _ => EventKind::AssistantText {
            text: format!(
                "Step {seq}: I read the module and the tests; next I will change the parser \
                 so the error names the line, then run the suite again."
            ),
        },
    };
    LinkEvent {
        seq,
        event: Event {
            seq: session_seq,
            ts_ms: 1_700_000_000_000 + seq,
            session_id: sessions[idx],
            kind,
            raw: None,
        },
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

// ---- baseline ------------------------------------------------------------------------

async fn raw_pool(path: &Path) -> anyhow::Result<SqlitePool> {
    // The same settings as `Db::open`: WAL, synchronous=NORMAL.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    Ok(SqlitePool::connect_with(options).await?)
}

/// Plain INSERTs of `batches` into a fresh database at `path`, one transaction per batch,
/// one row per statement or (`multi`) 64 rows per statement; returns the time spent
/// inserting.
async fn raw_ingest(
    path: &Path,
    batches: &[Vec<LinkEvent>],
    multi: bool,
) -> anyhow::Result<Duration> {
    Db::open(path).await?.close().await;
    let pool = raw_pool(path).await?;
    sqlx::query(
        "INSERT INTO daemons (id, hostname, version, first_seen_ms, last_seen_ms)
         VALUES ('bench-daemon', 'bench', '0', 1, 1)",
    )
    .execute(&pool)
    .await?;
    let t = Instant::now();
    for batch in batches {
        let mut tx = pool.begin().await?;
        if multi {
            insert_multi(&mut tx, batch).await?;
            tx.commit().await?;
            continue;
        }
        for link in batch {
            let ev = &link.event;
            sqlx::query(
                "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind("bench-daemon")
            .bind(i64::try_from(link.seq)?)
            .bind(ev.session_id.to_string())
            .bind(i64::try_from(ev.seq)?)
            .bind(i64::try_from(ev.ts_ms)?)
            .bind(ev.kind.name())
            .bind(serde_json::to_string(ev)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    let took = t.elapsed();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&pool)
        .await?;
    let sent: usize = batches.iter().map(Vec::len).sum();
    ensure!(
        usize::try_from(rows)? == sent,
        "raw insert stored {rows} of {sent} rows"
    );
    pool.close().await;
    Ok(took)
}

/// 64-row INSERT statements (the shape `Db::insert_events` uses, without its dedup,
/// `RETURNING` and derived tables).
async fn insert_multi(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    batch: &[LinkEvent],
) -> anyhow::Result<()> {
    for chunk in batch.chunks(64) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data) VALUES {values}"
        );
        // Only placeholders are formatted in; the data goes through binds.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for link in chunk {
            let ev = &link.event;
            query = query
                .bind("bench-daemon")
                .bind(i64::try_from(link.seq)?)
                .bind(ev.session_id.to_string())
                .bind(i64::try_from(ev.seq)?)
                .bind(i64::try_from(ev.ts_ms)?)
                .bind(ev.kind.name())
                .bind(serde_json::to_string(ev)?);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

// ---- through the hub -------------------------------------------------------------------

/// What one SSE subscriber saw.
struct SseResult {
    events: u64,
    in_order: bool,
    done_at: Instant,
}

/// Follows `/api/sessions/<session>/stream` until `expect` events arrived.
async fn sse_follow(
    resp: reqwest::Response,
    session: String,
    expect: u64,
) -> anyhow::Result<SseResult> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = 0;
    let mut last_id = 0i64;
    let mut in_order = true;
    while events < expect {
        let chunk = body.next().await.context("SSE stream ended early")??;
        buf.push_str(std::str::from_utf8(&chunk).context("SSE is UTF-8")?);
        let mut start = 0;
        while let Some(end) = buf[start..].find("\n\n") {
            let block = &buf[start..start + end];
            start += end + 2;
            let mut id = None;
            let mut ours = false;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    ours = v.contains(&session);
                }
            }
            if let Some(id) = id {
                in_order &= ours && id > last_id;
                last_id = id;
                events += 1;
            }
        }
        buf.drain(..start);
    }
    Ok(SseResult {
        events,
        in_order,
        done_at: Instant::now(),
    })
}

struct HubRun {
    ingest: Duration,
    with_sse: Duration,
    sse: Vec<SseResult>,
}

async fn hub_ingest(
    dir: &Path,
    batches: Vec<Vec<LinkEvent>>,
    sessions: &[SessionId],
) -> anyhow::Result<HubRun> {
    let cfg = BotConfig {
        data_dir: dir.to_owned(),
        ..BotConfig::default()
    };
    let state = AppState::open(cfg).await?;
    let (_, key) = state
        .db
        .create_key("bench-daemon", KeyKind::Daemon, 1)
        .await?;
    let (_, token) = state
        .db
        .create_key("bench-viewer", KeyKind::User, 1)
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ccrm_bot::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    // The fake daemon: hello (describing both sessions, so SSE can attach now) → welcome.
    let mut req = format!("ws://{addr}/ws/daemon").into_client_request()?;
    req.headers_mut().insert("x-api-key", key.parse()?);
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(req, None, true),
    )
    .await??;
    let infos: Vec<common::ipc::SessionInfo> = sessions
        .iter()
        .map(|s| {
            serde_json::from_value(serde_json::json!({
                "id": s, "cwd": "/bench", "permission_mode": "default", "state": "idle",
                "created_ms": 1, "last_event_ms": 1,
            }))
        })
        .collect::<Result<_, _>>()?;
    let hello = DaemonMsg::Hello {
        protocol: LINK_PROTOCOL_VERSION,
        daemon_id: common::ids::DaemonId("bench-daemon".into()),
        hostname: "bench".into(),
        version: "0".into(),
        sessions: infos,
        features: vec![],
    };
    ws.send(Message::text(serde_json::to_string(&hello)?))
        .await?;
    match next_hub_msg(&mut ws).await? {
        HubMsg::Welcome { acked_seq: 0, .. } => {}
        other => bail!("expected a fresh welcome, got {other:?}"),
    }

    // The SSE subscribers, attached before the first event.
    let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let http = reqwest::Client::new();
    let mut followers = Vec::new();
    for s in sessions {
        let resp = http
            .get(format!("http://{addr}/api/sessions/{s}/stream"))
            .bearer_auth(&token)
            .send()
            .await?;
        ensure!(resp.status() == 200, "SSE refused: {}", resp.status());
        let expect = total / sessions.len() as u64;
        followers.push(tokio::spawn(sse_follow(resp, s.to_string(), expect)));
    }

    // Frames are encoded up front: the bench measures the bot, not the fake daemon's JSON.
    let frames: Vec<(u64, String)> = batches
        .into_iter()
        .map(|events| {
            let last = events.last().map_or(0, |e| e.seq);
            Ok((last, serde_json::to_string(&DaemonMsg::Events { events })?))
        })
        .collect::<anyhow::Result<_>>()?;

    let t0 = Instant::now();
    let mut acked = 0;
    let mut frames = frames.into_iter().peekable();
    while acked < total {
        while let Some((last, _)) = frames.peek() {
            if last - acked > WINDOW {
                break;
            }
            let Some((_, text)) = frames.next() else {
                break;
            };
            ws.send(Message::text(text)).await?;
        }
        match next_hub_msg(&mut ws).await? {
            HubMsg::Ack { seq } => acked = seq,
            other => bail!("expected an ack, got {other:?}"),
        }
    }
    let ingest = t0.elapsed();
    let mut sse = Vec::new();
    for f in followers {
        sse.push(
            tokio::time::timeout(WAIT, f)
                .await
                .context("SSE subscriber timed out")???,
        );
    }
    let with_sse = sse
        .iter()
        .map(|r| r.done_at)
        .max()
        .map_or(ingest, |t| t - t0);

    // Zero loss.
    let counts = state.db.counts().await?;
    ensure!(
        counts.events == total,
        "{} rows stored for {total} events sent",
        counts.events
    );
    let ingested = state
        .hub
        .metrics
        .events_ingested
        .load(std::sync::atomic::Ordering::Relaxed);
    ensure!(
        ingested == total,
        "{ingested} counted as ingested for {total} sent"
    );
    for (r, s) in sse.iter().zip(sessions) {
        ensure!(
            r.events == total / sessions.len() as u64 && r.in_order,
            "SSE for {s}: {} events, in order: {}",
            r.events,
            r.in_order
        );
    }
    let _ = ws.close(None).await;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, server).await???;
    state.db.close().await;
    Ok(HubRun {
        ingest,
        with_sse,
        sse,
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_hub_msg(ws: &mut Ws) -> anyhow::Result<HubMsg> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("the bot went silent")?
            .context("the bot closed the link")??;
        if let Message::Text(t) = msg {
            return Ok(serde_json::from_str(t.as_str())?);
        }
    }
}

// ---- idle RSS ----------------------------------------------------------------------------

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

/// Starts the binary with a fresh data dir; returns (RSS when listening, RSS after one
/// `/healthz`), in KiB.
async fn idle_rss(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm-bot"))
        .env("CCRM_BOT_LISTEN", "127.0.0.1:0")
        .env("CCRM_BOT_DATA_DIR", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("CCRM_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ccrm-bot")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ccrm-bot listening")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line);
            }
        }
    });
    let result = async {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .context("ccrm-bot did not start")?;
        let listening = rss_kb(child.id())?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .context("no addr= in the listening line")?;
        let r = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(WAIT)
            .send()
            .await?;
        ensure!(r.status() == 200, "healthz: {}", r.status());
        Ok((listening, rss_kb(child.id())?))
    }
    .await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn run() -> anyhow::Result<()> {
    let total: u64 = match std::env::var("BENCH_EVENTS") {
        Ok(v) => v.trim().replace('_', "").parse()?,
        Err(_) => 100_000,
    };
    ensure!(
        total > 0 && total.is_multiple_of(SESSIONS as u64),
        "BENCH_EVENTS must be a positive multiple of {SESSIONS}"
    );
    let dir = tempfile::tempdir()?;
    let sessions: Vec<SessionId> = (0..SESSIONS).map(|_| SessionId::new()).collect();
    let events: Vec<LinkEvent> = (1..=total).map(|s| make_event(s, &sessions)).collect();
    let batches: Vec<Vec<LinkEvent>> = events.chunks(BATCH).map(<[LinkEvent]>::to_vec).collect();
    println!(
        "hub ingest: {total} events in frames of {BATCH}, window {WINDOW}, {SESSIONS} sessions with one SSE subscriber each"
    );

    let raw_before = raw_ingest(&dir.path().join("raw1/ccrm.db"), &batches, false).await?;
    let hub = hub_ingest(&dir.path().join("hub"), batches.clone(), &sessions).await?;
    let raw_after = raw_ingest(&dir.path().join("raw2/ccrm.db"), &batches, false).await?;
    let raw_multi = raw_ingest(&dir.path().join("raw3/ccrm.db"), &batches, true).await?;
    let raw = raw_before.min(raw_after);

    let hub_rate = rate(total, hub.ingest);
    let raw_rate = rate(total, raw);
    println!(
        "  {:<48} {:>8.2} s {:>10.0} events/s",
        "raw SQLite INSERT, txn of 500 (before)",
        raw_before.as_secs_f64(),
        rate(total, raw_before)
    );
    println!(
        "  {:<48} {:>8.2} s {:>10.0} events/s",
        "raw SQLite INSERT, txn of 500 (after)",
        raw_after.as_secs_f64(),
        rate(total, raw_after)
    );
    println!(
        "  {:<48} {:>8.2} s {:>10.0} events/s",
        "raw SQLite INSERT, 64 rows/stmt (floor, info)",
        raw_multi.as_secs_f64(),
        rate(total, raw_multi)
    );
    println!(
        "  {:<48} {:>8.2} s {:>10.0} events/s",
        "hub: daemon → WS → SQLite → ack",
        hub.ingest.as_secs_f64(),
        hub_rate
    );
    println!(
        "  {:<48} {:>8.2} s {:>10.0} events/s  ({} events each, in order)",
        "hub: ... and both SSE subscribers caught up",
        hub.with_sse.as_secs_f64(),
        rate(total, hub.with_sse),
        hub.sse.first().map_or(0, |r| r.events)
    );
    let ratio = hub_rate / raw_rate;
    println!(
        "  zero loss: {total} rows stored, every SSE subscriber got all of its session's events"
    );
    println!(
        "  ratio hub / raw (faster raw run): {:.0} % (target ≥ {:.0} %: {})",
        ratio * 100.0,
        TARGET_RATIO * 100.0,
        if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  hub / raw 64 rows/stmt: {:.0} %",
        hub_rate / rate(total, raw_multi) * 100.0
    );

    let (listening, after) = idle_rss(&dir.path().join("rss")).await?;
    println!("ccrm-bot idle RSS (fresh data dir)");
    println!(
        "  when listening: {:>6.2} MB; after one /healthz: {:>6.2} MB (target ≤ {} MB: {})",
        listening as f64 / 1024.0,
        after as f64 / 1024.0,
        TARGET_RSS_KB / 1024,
        if after.max(listening) <= TARGET_RSS_KB {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick check, not a full run.
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os("BENCH_EVENTS").is_none() {
        println!("ingest: run with `cargo bench -p ccrm-bot --bench ingest`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}
