//! Part 2b of the replicas bench: the same REST prompt → SSE comparison as part 2, with
//! the real chain in the loop — the release `ccrmd` linked to replica B, a warm claude
//! child talking to the testkit's fake Messages API — as a user of two replicas sees it.
//! Each prompt goes to B (local) or to A (routed through a `NOTIFY` to B), in
//! turn, and is timed to the turn's first assistant text delta on the SSE stream of the
//! replica it was sent to (on A that event arrives through the database tail).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use ccrm_bot::auth::KeyKind;
use serde_json::{Value, json};
use testkit::{ClaudeHome, FakeApi, PgCluster, TEST_API_KEY, claude_bin, claude_env};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::Replica;
use crate::support::WAIT;
use crate::support::ccrmd::{ccrmd_bin, follow_sse, linked, start_daemon};

/// Turns per side not counted (the first turns warm claude and the connections up).
const WARMUP: usize = 3;

/// Reads `rx` until the turn's result; returns when its first text delta came.
async fn turn_on(rx: &mut UnboundedReceiver<(bool, Instant)>) -> anyhow::Result<Option<Instant>> {
    let mut first = None;
    loop {
        let (is_result, at) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .context("no SSE event within the bound")?
            .context("the SSE stream ended")?;
        if is_result {
            return Ok(first);
        }
        first.get_or_insert(at);
    }
}

/// Runs `turns` measured prompts per side; returns (local, routed), sorted.
pub async fn run(
    pg: &PgCluster,
    dir: &Path,
    turns: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let url = pg.create_db("real")?;
    let a = Replica::start(&dir.join("real-a"), Some(&url)).await?;
    let b = Replica::start(&dir.join("real-b"), Some(&url)).await?;
    let (_, key) = b
        .state
        .db
        .create_key("bench-real", KeyKind::Daemon, 1)
        .await?;
    let (_, token) = b
        .state
        .db
        .create_key("bench-user", KeyKind::User, 1)
        .await?;

    let api = FakeApi::start().await?;
    let work = dir.join("real-work");
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()])?;
    let env = claude_env(&api, home.path());
    let daemon = start_daemon(
        &ccrmd_bin()?,
        &dir.join("real-daemon"),
        &env,
        &claude_bin()?,
        &format!("ws://{}", b.addr),
        &key,
        Duration::from_secs(60),
    )?;
    linked(&b.state.hub, WAIT).await?;

    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    let r = http
        .post(format!("http://{}/api/sessions", b.addr))
        .bearer_auth(&token)
        .json(&json!({"cwd": work}))
        .send()
        .await?;
    ensure!(r.status() == 201, "session start: {}", r.status());
    let v: Value = r.json().await?;
    let sid = v["session"]["id"]
        .as_str()
        .context("session id")?
        .to_owned();

    // Both replicas' SSE streams see every turn; index 0 is B's, 1 is A's.
    let mut streams = Vec::new();
    let mut followers = Vec::new();
    for r in [&b, &a] {
        let resp = http
            .get(format!("http://{}/api/sessions/{sid}/stream", r.addr))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await?;
        ensure!(resp.status() == 200, "SSE: {}", resp.status());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        followers.push(tokio::spawn(follow_sse(resp, tx)));
        streams.push(rx);
    }

    let (mut local, mut routed) = (Vec::new(), Vec::new());
    for i in 0..2 * (turns + WARMUP) {
        let side = i % 2;
        let addr = [b.addr, a.addr][side];
        let t0 = Instant::now();
        let r = http
            .post(format!("http://{addr}/api/sessions/{sid}/prompt"))
            .bearer_auth(&token)
            .json(&json!({"text": format!("replicas bench turn {i}")}))
            .send()
            .await?;
        ensure!(r.status() == 202, "prompt: {}", r.status());
        let first = turn_on(&mut streams[side])
            .await?
            .context("a turn without a text delta")?;
        // The other replica's stream carries the same turn: read it to its result so
        // both stay in step.
        turn_on(&mut streams[1 - side]).await?;
        if i >= 2 * WARMUP {
            [&mut local, &mut routed][side].push(first - t0);
        }
    }
    for f in followers {
        f.abort();
    }
    drop(daemon);
    a.stop().await;
    b.stop().await;
    local.sort_unstable();
    routed.sort_unstable();
    Ok((local, routed))
}
