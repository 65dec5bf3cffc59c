//! Workspaces and executions, measured against a baseline in the same run:
//!
//! - **Upload + unpack**: a 50 MB zip of 5,000 files sent as `POST /api/daemons/{daemon}/
//!   workspaces` (multipart) → bot → link → ccrmd, timed until the reply (the workspace is
//!   unpacked and in place), versus `unzip` of the same file into the same disk. Target
//!   ≤ 2×.
//! - **Execute overhead**: `POST /api/execute` → the first `output` event on its SSE
//!   stream, versus starting the same claude directly (same flags, same fake API) and
//!   reading its first text delta. Both start a fresh claude each time, as an execution
//!   does. Target ≤ 1.1× p50.
//!
//! Runs alternate which side goes first. The bot runs in-process, ccrmd is the real release
//! binary. Run with `cargo build --release -p ccrm-daemon && cargo bench -p ccrm-bot --bench
//! workspace` (env `BENCH_UPLOADS`, default 5; `BENCH_EXECS`, default 20).

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ccrm_bot::AppState;
use ccrm_bot::auth::KeyKind;
use ccrm_bot::config::BotConfig;
use futures::StreamExt;
use serde_json::json;
use support::ccrmd::{ccrmd_bin, linked, start_daemon};
use testkit::zips::{Entry, RawZip, noise};
use testkit::{ClaudeHome, FakeApi, TEST_API_KEY, claude_bin, claude_env};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Bound for every wait.
const WAIT: Duration = Duration::from_secs(120);

fn pct(v: &[Duration], p: f64) -> Duration {
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn runs(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// A 50 MiB zip of 5,000 10 KiB files (stored, as incompressible data would be).
fn big_zip() -> Vec<u8> {
    let mut z = RawZip::new();
    for i in 0..5_000u64 {
        z = z.with(
            Entry::file(
                format!("dir{}/file{i}.bin", i % 50),
                noise(10 * 1024, i + 1),
            )
            .stored(),
        );
    }
    z.build()
}

/// Times `unzip -q` of `zip` into a fresh directory under `under`.
fn unzip(zip: &Path, under: &Path, n: usize) -> anyhow::Result<Duration> {
    let dest = under.join(format!("unzip-{n}"));
    let t0 = Instant::now();
    let st = std::process::Command::new("unzip")
        .arg("-q")
        .arg(zip)
        .arg("-d")
        .arg(&dest)
        .status()
        .context("running unzip (install it: apt-get install unzip)")?;
    let took = t0.elapsed();
    ensure!(st.success(), "unzip failed: {st}");
    std::fs::remove_dir_all(&dest)?;
    Ok(took)
}

/// Starts claude as an execution does and times the first text delta of `prompt`.
async fn direct_first_output(
    claude: &Path,
    env: &[(String, String)],
    cwd: &Path,
    prompt: &str,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(claude)
        .args(common::child::STREAM_JSON_ARGS)
        .args(["--include-partial-messages", "--permission-mode=default"])
        .arg(format!("--session-id={}", uuid::Uuid::new_v4()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    stdin
        .write_all(format!("{}\n", common::child::user_line(prompt)).as_bytes())
        .await?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.next_line().await? {
            if l.contains("\"text_delta\"") {
                return Ok(t0.elapsed());
            }
        }
        bail!("claude ended without text")
    })
    .await
    .context("claude went silent")??;
    drop(stdin);
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
    Ok(first)
}

async fn run() -> anyhow::Result<()> {
    let uploads = runs("BENCH_UPLOADS", 5);
    let execs = runs("BENCH_EXECS", 20);
    let api = FakeApi::start().await?;
    let dir = tempfile::tempdir()?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()])?;
    let env = claude_env(&api, home.path());
    let claude = claude_bin()?;

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
    let daemon = start_daemon(
        &ccrmd_bin()?,
        dir.path(),
        &env,
        &claude,
        &format!("ws://{addr}"),
        &key,
        WAIT,
    )?;
    linked(&state.hub, WAIT).await?;
    let daemon_id = state.hub.online()[0].to_string();
    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    let base = format!("http://{addr}");

    // Upload + unpack versus unzip.
    let zip = big_zip();
    let zip_path = dir.path().join("bench.zip");
    std::fs::write(&zip_path, &zip)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..uploads + 1 {
        let time_upload = async {
            let form = reqwest::multipart::Form::new()
                .text("workspaceId", format!("bench-{i}"))
                .text("name", "bench")
                .text("processPolicy", "overwrite")
                .part(
                    "zip",
                    reqwest::multipart::Part::bytes(zip.clone()).file_name("bench.zip"),
                );
            let t0 = Instant::now();
            let r = http
                .post(format!("{base}/api/daemons/{daemon_id}/workspaces"))
                .bearer_auth(&token)
                .multipart(form)
                .send()
                .await?;
            let took = t0.elapsed();
            ensure!(
                r.status() == 200,
                "upload: {} {}",
                r.status(),
                r.text().await?
            );
            Ok(took)
        };
        let (u, z) = if i % 2 == 0 {
            let u = time_upload.await?;
            (u, unzip(&zip_path, dir.path(), i)?)
        } else {
            let z = unzip(&zip_path, dir.path(), i)?;
            (time_upload.await?, z)
        };
        // Remove it again so every run unpacks into the same empty state.
        let r = http
            .delete(format!(
                "{base}/api/daemons/{daemon_id}/workspaces/bench-{i}"
            ))
            .bearer_auth(&token)
            .send()
            .await?;
        ensure!(r.status() == 200, "delete: {}", r.status());
        if i > 0 {
            ours.push(u);
            theirs.push(z);
        }
    }
    ours.sort();
    theirs.sort();
    println!(
        "Upload + unpack of a {:.1} MB, 5,000-file zip, {uploads} runs each (first run discarded)",
        zip.len() as f64 / 1e6
    );
    println!("  {:<40} {:>9} {:>9}", "", "p50 ms", "max ms");
    for (name, v) in [
        ("unzip -q (baseline)", &theirs),
        ("REST → bot → link → ccrmd, unpacked", &ours),
    ] {
        println!(
            "  {:<40} {:>9.1} {:>9.1}",
            name,
            ms(pct(v, 0.5)),
            ms(*v.last().context("runs")?)
        );
    }
    let r = ms(pct(&ours, 0.5)) / ms(pct(&theirs, 0.5));
    println!(
        "  ratio p50 {r:.2}× (target ≤ 2×: {})",
        if r <= 2.0 { "met" } else { "NOT met" }
    );

    // Execute overhead: first output event versus claude's first text delta, both cold.
    let r = http
        .post(format!("{base}/api/daemons/{daemon_id}/workspaces"))
        .bearer_auth(&token)
        .multipart(
            reqwest::multipart::Form::new()
                .text("workspaceId", "exec")
                .text("name", "exec")
                .text("processPolicy", "overwrite")
                .part(
                    "zip",
                    reqwest::multipart::Part::bytes(testkit::zips::small_project())
                        .file_name("p.zip"),
                ),
        )
        .send()
        .await?;
    ensure!(r.status() == 200, "upload: {}", r.status());
    let ws_dir = dir.path().join("state/workspaces/exec");
    let (mut via, mut direct) = (Vec::new(), Vec::new());
    for i in 0..execs + 2 {
        let prompt = format!("bench execution {i}");
        let time_exec = async {
            let t0 = Instant::now();
            let resp = http
                .post(format!("{base}/api/execute"))
                .bearer_auth(&token)
                .json(&json!({"workspaceId": "exec", "prompt": prompt, "executionId": format!("bench-{i}")}))
                .send()
                .await?;
            ensure!(resp.status() == 200, "execute: {}", resp.status());
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            let mut first = None;
            while let Some(chunk) = tokio::time::timeout(WAIT, body.next())
                .await
                .context("SSE went silent")?
            {
                buf.push_str(&String::from_utf8_lossy(&chunk?));
                if first.is_none() && buf.contains("event: output") {
                    first = Some(t0.elapsed());
                }
                if buf.contains("event: complete") || buf.contains("event: error") {
                    break;
                }
            }
            first.context("no output event")
        };
        let (e, d) = if i % 2 == 0 {
            let e = time_exec.await?;
            (
                e,
                direct_first_output(&claude, &env, &ws_dir, &prompt).await?,
            )
        } else {
            let d = direct_first_output(&claude, &env, &ws_dir, &prompt).await?;
            (time_exec.await?, d)
        };
        if i >= 2 {
            via.push(e);
            direct.push(d);
        }
    }
    via.sort();
    direct.sort();
    println!(
        "Execute: request → first output, {execs} cold runs each (2 discarded), same fake API"
    );
    println!(
        "  {:<40} {:>9} {:>9} {:>9}",
        "", "p50 ms", "p90 ms", "max ms"
    );
    for (name, v) in [
        ("claude started directly (baseline)", &direct),
        ("POST /api/execute → SSE output", &via),
    ] {
        println!(
            "  {:<40} {:>9.1} {:>9.1} {:>9.1}",
            name,
            ms(pct(v, 0.5)),
            ms(pct(v, 0.9)),
            ms(*v.last().context("runs")?)
        );
    }
    let r = ms(pct(&via, 0.5)) / ms(pct(&direct, 0.5));
    println!(
        "  ratio p50 {r:.3}× (target ≤ 1.1×: {})",
        if r <= 1.1 { "met" } else { "NOT met" }
    );

    drop(daemon);
    let _ = stop.send(());
    let _ = tokio::time::timeout(WAIT, server).await;
    state.db.close().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick check, not minutes of uploads.
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os("BENCH_UPLOADS").is_none() {
        println!("workspace: run with `cargo bench -p ccrm-bot --bench workspace`");
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run())
}
