//! REST latency benchmark: `POST /api/sessions/<id>/prompt` → the turn's first assistant
//! event (a streamed text delta) on the session's SSE stream, through the whole chain
//! (ccrm-bot → WebSocket → ccrmd → claude → ccrmd spool → WebSocket → SQLite → SSE), versus
//! writing the same prompt straight into a claude child and reading its first text delta.
//!
//! Both claude children are warm and talk to the same fake Messages API (on a thread and
//! runtime of its own, as the real API is elsewhere); the bot runs in-process, ccrmd is
//! the real release binary, and turns alternate which side goes first so drift hits both
//! equally (the approach of `daemon/benches/overhead.rs`). Targets: p50 ≤ 1.05× and
//! p99 ≤ 1.2× the direct figures.
//!
//! The fake API's record of when each turn's request arrived splits both figures into the
//! way in (prompt → claude → API request) and the way out (API → first delta seen), which
//! shows whether extra time is spent getting the prompt to claude or getting the delta
//! back. Nothing extra listens during the run (a ccrmd follower would add load).
//!
//! Two claude processes can differ in speed by a few percent for their whole life (one
//! answers every turn 1-2 ms sooner), which is more than the relay's cost; so the turns are
//! spread over segments (`BENCH_SEGMENTS`, default 4), each with a fresh session and a
//! fresh direct child, and the figures pool them. `BENCH_AA=1` replaces the relay with a
//! second direct child: the ratio it prints is the noise floor of two processes.
//!
//! Run with `cargo build --release -p ccrm-daemon && cargo bench -p ccrm-bot --bench
//! rest_latency` (env `BENCH_TURNS`, default 200).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, ensure};
use ccrm_bot::AppState;
use ccrm_bot::auth::KeyKind;
use ccrm_bot::config::BotConfig;
use serde_json::json;
use support::ccrmd::{Mark, ccrmd_bin, follow_sse, linked, start_daemon, start_session};
use support::{asked_for, env_num, ms, pct};
use testkit::{ClaudeHome, TEST_API_KEY, claude_bin, claude_env};

/// Bound for every wait.
const WAIT: Duration = Duration::from_secs(60);
const WARMUP: usize = 3;

/// One measured turn.
struct Sample {
    /// Prompt → first assistant event.
    first: Duration,
    /// When the prompt left (wall clock, to compare with the fake API's records).
    sent: SystemTime,
    /// The prompt, to find its API request.
    text: String,
    /// REST only: when the 202 came back.
    accepted: Option<Duration>,
}

async fn run() -> anyhow::Result<()> {
    let turns = usize::try_from(env_num("BENCH_TURNS", 200)?)?;
    let ccrmd = ccrmd_bin()?;
    // The API on its own thread and runtime (see `api_apart`).
    let apart = support::api_apart()?;
    let api = apart.api.clone();
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()])?;
    let env = claude_env(&api, home.path());
    let claude = claude_bin()?;

    // The bot, in-process.
    let cfg = BotConfig {
        data_dir: dir.path().join("bot"),
        ..BotConfig::default()
    };
    let state = AppState::open(cfg).await?;
    let (_, key) = state
        .db
        .create_key("bench-daemon", KeyKind::Daemon, 1)
        .await?;
    let (_, token) = state.db.create_key("bench-user", KeyKind::User, 1).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ccrm_bot::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    // ccrmd linked to it.
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
    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    let base = format!("http://{addr}");
    // The relay's cost is small next to how much two claude processes can differ in speed
    // (one may run every turn 1-2 ms faster than the other for the whole run), so the turns
    // are spread over segments, each with a fresh session and a fresh direct child, and
    // the figures pool every segment's turns.
    let segments = usize::try_from(env_num("BENCH_SEGMENTS", 4)?)?.min(turns);
    // Calibration: with BENCH_AA set, the "relay" side is a second direct child, which
    // shows how far apart two claude processes are with no relay at all.
    let aa = std::env::var_os("BENCH_AA").is_some();
    let mut via_direct = Vec::new();
    let mut via_rest = Vec::new();
    let mut per_segment = Vec::new();
    for seg in 0..segments {
        let n = turns / segments + usize::from(seg < turns % segments);
        let (d, r) = segment(&http, &base, &token, &work, &claude, &env, seg, n, aa).await?;
        let mut df: Vec<Duration> = d.iter().map(|s| s.first).collect();
        let mut rf: Vec<Duration> = r.iter().map(|s| s.first).collect();
        df.sort();
        rf.sort();
        per_segment.push(ms(pct(&rf, 0.5)) / ms(pct(&df, 0.5)));
        via_direct.extend(d);
        via_rest.extend(r);
    }

    // When the fake API got each turn's request splits a figure in two: the way in
    // (prompt → claude → API) and the way out (API → first delta seen).
    let requests = api.message_requests();
    let split =
        |samples: &[Sample]| -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Vec<Duration>)> {
            let mut first = Vec::new();
            let mut way_in = Vec::new();
            let mut way_out = Vec::new();
            for s in samples {
                let at = requests
                    .iter()
                    .find(|r| r.last_human_text().as_deref() == Some(s.text.as_str()))
                    .map(|r| r.received_at)
                    .context("no API request for a turn")?;
                let d_in = at.duration_since(s.sent).unwrap_or_default();
                first.push(s.first);
                way_in.push(d_in);
                way_out.push(s.first.saturating_sub(d_in));
            }
            first.sort();
            way_in.sort();
            way_out.sort();
            Ok((first, way_in, way_out))
        };
    let (direct_first, direct_in, direct_out) = split(&via_direct)?;
    let (rest_first, rest_in, rest_out) = split(&via_rest)?;
    let mut accepted: Vec<Duration> = via_rest.iter().filter_map(|s| s.accepted).collect();
    accepted.sort();

    let relay = if aa {
        "second claude direct (A/A)"
    } else {
        "REST → bot → ccrmd → SSE"
    };
    println!(
        "REST latency: POST prompt → first assistant event on SSE, {turns} warm turns each in {segments} segments (fresh claude children each), same fake API"
    );
    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>9}",
        "", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, v) in [
        ("claude direct (baseline)", &direct_first),
        (relay, &rest_first),
    ] {
        println!(
            "  {:<28} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            name,
            ms(pct(v, 0.5)),
            ms(pct(v, 0.9)),
            ms(pct(v, 0.99)),
            ms(*v.last().context("samples")?)
        );
    }
    println!(
        "  p50 split: prompt → API request {:.2} ms direct / {:.2} ms REST; API request → delta seen {:.2} / {:.2} ms",
        ms(pct(&direct_in, 0.5)),
        ms(pct(&rest_in, 0.5)),
        ms(pct(&direct_out, 0.5)),
        ms(pct(&rest_out, 0.5))
    );
    println!(
        "  REST 202 answered after {:.2} ms (p50)",
        ms(pct(&accepted, 0.5))
    );
    let shown: Vec<String> = per_segment.iter().map(|r| format!("{r:.3}")).collect();
    println!("  p50 ratio per segment: {}×", shown.join(" / "));
    let r50 = ms(pct(&rest_first, 0.5)) / ms(pct(&direct_first, 0.5));
    let r99 = ms(pct(&rest_first, 0.99)) / ms(pct(&direct_first, 0.99));
    println!(
        "  ratio p50 {r50:.3}× (target ≤ 1.05×: {}), p99 {r99:.3}× (target ≤ 1.2×: {})",
        if r50 <= 1.05 { "met" } else { "NOT met" },
        if r99 <= 1.2 { "met" } else { "NOT met" }
    );

    drop(daemon);
    let _ = stop.send(());
    let _ = tokio::time::timeout(WAIT, server).await;
    state.db.close().await;
    Ok(())
}

/// One segment: a fresh session (or, with `aa`, a second direct child) and a fresh direct
/// child, `turns` measured turns after a warm-up, alternating which side goes first.
#[allow(clippy::too_many_arguments)]
async fn segment(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    work: &std::path::Path,
    claude: &std::path::Path,
    env: &[(String, String)],
    seg: usize,
    turns: usize,
    aa: bool,
) -> anyhow::Result<(Vec<Sample>, Vec<Sample>)> {
    let sid = start_session(http, base, token, work).await?;
    let resp = http
        .get(format!("{base}/api/sessions/{sid}/stream"))
        .timeout(Duration::from_secs(24 * 3600))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(resp.status() == 200, "SSE: {}", resp.status());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(follow_sse(resp, tx));
    let mut direct = testkit::DirectClaude::start(claude, env, work).await?;
    let mut other = if aa {
        Some(testkit::DirectClaude::start(claude, env, work).await?)
    } else {
        None
    };

    let mut via_direct = Vec::new();
    let mut via_rest = Vec::new();
    let prompt_url = format!("{base}/api/sessions/{sid}/prompt");
    for i in 0..turns + WARMUP {
        // Alternate which side goes first so neither always runs right after the other.
        let direct_text = format!("bench turn {seg}.{i} direct");
        let mut d = None;
        if i % 2 == 0 {
            d = Some(direct.turn(&direct_text).await?);
        }
        let text = format!("bench turn {seg}.{i} via rest");
        let (first, sent, accepted) = match other.as_mut() {
            Some(other) => {
                let (first, sent) = other.turn(&text).await?;
                (first, sent, None)
            }
            None => {
                let sent = SystemTime::now();
                let t0 = Instant::now();
                let r = http
                    .post(&prompt_url)
                    .bearer_auth(token)
                    .json(&json!({"text": text}))
                    .send()
                    .await?;
                ensure!(r.status() == 202, "prompt: {}", r.status());
                let accepted = t0.elapsed();
                let mut first = None;
                loop {
                    let (mark, at) = tokio::time::timeout(WAIT, rx.recv())
                        .await
                        .context("no SSE event")?
                        .context("SSE ended")?;
                    match mark {
                        Mark::Result => break,
                        Mark::Text => {
                            first.get_or_insert(at - t0);
                        }
                        Mark::Prompt => {}
                    }
                }
                (
                    first.context("no delta in a REST turn")?,
                    sent,
                    Some(accepted),
                )
            }
        };
        if i % 2 == 1 {
            d = Some(direct.turn(&direct_text).await?);
        }
        if i >= WARMUP {
            let (first_direct, sent_direct) = d.context("no direct turn")?;
            via_direct.push(Sample {
                first: first_direct,
                sent: sent_direct,
                text: direct_text,
                accepted: None,
            });
            via_rest.push(Sample {
                first,
                sent,
                text,
                accepted,
            });
        }
    }
    follower.abort();
    // End the session's claude child before the next segment starts one.
    let r = http
        .post(format!("{base}/api/sessions/{sid}/stop"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(r.status().is_success(), "session stop: {}", r.status());
    Ok((via_direct, via_rest))
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick check, not a minute of turns.
    if !asked_for("BENCH_TURNS") {
        println!("rest_latency: run with `cargo bench -p ccrm-bot --bench rest_latency`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}
