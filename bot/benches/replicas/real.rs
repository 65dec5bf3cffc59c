//! Part 2b of the replicas bench: the same REST prompt → SSE comparison as part 2, with
//! the real chain in the loop — the release `ccrmd` linked to replica B, a warm claude
//! child talking to the testkit's fake Messages API — as a user of two replicas sees it.
//! Each prompt goes to B (local) or to A (routed to B: over their direct link once the
//! warm-up's first routed prompt, through a `NOTIFY`, brought it up), in turn, and is timed on the SSE stream of the replica it was sent to (on A the events
//! arrive through the database tail) to two events: the first SSE event of the turn,
//! ccrmd's `prompt` (the "REST prompt → first SSE event", with the real daemon),
//! and the turn's first assistant text delta (what a user waits for).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use ccrm_bot::auth::KeyKind;
use serde_json::json;
use testkit::{ClaudeHome, FakeApi, PgCluster, TEST_API_KEY, claude_bin, claude_env};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::Replica;
use crate::support::WAIT;
use crate::support::ccrmd::{Mark, ccrmd_bin, follow_sse, linked, start_daemon, start_session};

/// Turns per side not counted (the first turns warm claude and the connections up).
const WARMUP: usize = 3;

/// When a turn's marks came: its prompt event and its first text delta.
#[derive(Default)]
struct Turn {
    prompt: Option<Instant>,
    text: Option<Instant>,
}

/// Reads `rx` until the turn's result; returns when its prompt event and its first text
/// delta came.
async fn turn_on(rx: &mut UnboundedReceiver<(Mark, Instant)>) -> anyhow::Result<Turn> {
    let mut turn = Turn::default();
    loop {
        let (mark, at) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .context("no SSE event within the bound")?
            .context("the SSE stream ended")?;
        match mark {
            Mark::Result => return Ok(turn),
            Mark::Prompt => {
                turn.prompt.get_or_insert(at);
            }
            Mark::Text => {
                turn.text.get_or_insert(at);
            }
        }
    }
}

/// Local and routed samples of one measure, sorted.
#[derive(Default)]
pub struct Sides {
    pub local: Vec<Duration>,
    pub routed: Vec<Duration>,
}

/// Runs `turns` measured prompts per side; returns the samples to the first SSE event
/// (the prompt event) and to the first assistant text.
pub async fn run(pg: &PgCluster, dir: &Path, turns: usize) -> anyhow::Result<(Sides, Sides)> {
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
    let sid = start_session(&http, &format!("http://{}", b.addr), &token, &work).await?;

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

    let (mut first, mut text) = (Sides::default(), Sides::default());
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
        let turn = turn_on(&mut streams[side]).await?;
        let prompt = turn.prompt.context("a turn without a prompt event")?;
        let delta = turn.text.context("a turn without a text delta")?;
        // The other replica's stream carries the same turn: read it to its result so
        // both stay in step.
        turn_on(&mut streams[1 - side]).await?;
        if i >= 2 * WARMUP {
            for (s, d) in [(&mut first, prompt - t0), (&mut text, delta - t0)] {
                if side == 0 {
                    &mut s.local
                } else {
                    &mut s.routed
                }
                .push(d);
            }
        }
    }
    for f in followers {
        f.abort();
    }
    drop(daemon);
    a.stop().await;
    b.stop().await;
    for s in [&mut first, &mut text] {
        s.local.sort_unstable();
        s.routed.sort_unstable();
    }
    Ok((first, text))
}
