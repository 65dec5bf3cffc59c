//! The bot with a real linked ccrmd and the real Claude Code CLI: REST start → prompt → SSE,
//! paging, and the delivery guarantee across kill -9 of either side.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{WAIT, World};
use futures::StreamExt;
use serde_json::{Value, json};

/// Reads SSE events from `resp` until `stop` matches one; returns (id, event json) pairs.
async fn read_sse(resp: reqwest::Response, stop: impl Fn(&Value) -> bool) -> Vec<(i64, Value)> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let fut = async {
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.expect("sse chunk")));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<i64>().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let (Some(id), Ok(v)) = (id, serde_json::from_str::<Value>(&data)) {
                    let done = stop(&v);
                    out.push((id, v));
                    if done {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("SSE timed out");
    out
}

fn kind(v: &Value) -> &str {
    v["event"]["kind"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_start_prompt_and_sse_show_the_turn_and_events_page_the_same() {
    let w = World::start().await;
    let id = w.new_session(json!({"name": "rest-demo"})).await;
    let (status, v) = w.get(&format!("/api/sessions/{id}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["session"]["info"]["name"], "rest-demo");

    // Open the stream first, then prompt.
    let resp = w
        .http
        .get(w.url(&format!("/api/sessions/{id}/stream")))
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), 200);
    let (status, v) = w
        .post(
            &format!("/api/sessions/{id}/prompt"),
            json!({"text": "hello over rest"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let seen = read_sse(resp, |v| kind(v) == "turn_result").await;
    assert!(
        seen.iter()
            .any(|(_, v)| kind(v) == "assistant_text"
                && v["event"]["text"] == "Echo: hello over rest"),
        "{seen:#?}"
    );
    let result = &seen.last().expect("result").1;
    assert_eq!(result["event"]["is_error"], false);
    assert!(seen.iter().any(|(_, v)| kind(v) == "prompt"
        && v["event"]["origin"]["surface"] == "rest"
        && v["event"]["origin"]["user"] == "alice"));

    // The same events come back paged, in the same order with the same ids.
    let stored = w.all_events(&id).await;
    let stored_ids: Vec<i64> = stored.iter().filter_map(|e| e["id"].as_i64()).collect();
    let sse_ids: Vec<i64> = seen.iter().map(|(i, _)| *i).collect();
    assert!(
        stored_ids.starts_with(&sse_ids) || stored_ids == sse_ids,
        "sse {sse_ids:?} vs stored {stored_ids:?}"
    );
    // Small pages and offset paging agree with keyset paging.
    let (_, p1) = w.get(&format!("/api/sessions/{id}/events?limit=2")).await;
    let (_, p2) = w
        .get(&format!(
            "/api/sessions/{id}/events?limit=2&after={}",
            p1["next_after"]
        ))
        .await;
    let (_, o2) = w
        .get(&format!("/api/sessions/{id}/events?limit=2&offset=2"))
        .await;
    assert_eq!(p2["events"], o2["events"]);
    assert_eq!(p1["events"][0]["id"].as_i64(), stored_ids.first().copied());

    // Resuming the SSE stream with Last-Event-ID skips what was seen.
    let mid = sse_ids[sse_ids.len() / 2];
    let resp = w
        .http
        .get(w.url(&format!("/api/sessions/{id}/stream")))
        .bearer_auth(&w.user_token)
        .header("Last-Event-ID", mid.to_string())
        .send()
        .await
        .expect("sse");
    let again = read_sse(resp, |v| kind(v) == "turn_result").await;
    assert_eq!(
        again.first().map(|(i, _)| *i),
        sse_ids.iter().copied().find(|i| *i > mid)
    );
}

/// Checks the delivery guarantee on what SQLite holds for a daemon with one session: link
/// seqs exactly 1..=last with no gap or repeat, in row order, each event's own seq equal to
/// its link seq. `last` is the daemon's drained `last_seq` from the same settled snapshot
/// (see [`settled_events`]).
fn assert_complete(events: &[Value], last: u64) {
    let link: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let expected: Vec<u64> = (1..=last).collect();
    if link != expected {
        let have: HashSet<u64> = link.iter().copied().collect();
        let missing: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|s| !have.contains(s))
            .take(10)
            .collect();
        panic!(
            "stored {} events for seqs 1..={last}; first missing {missing:?}",
            link.len()
        );
    }
    for e in events {
        assert_eq!(e["seq"], e["event"]["seq"], "event seq is its spool seq");
    }
}

/// Waits until the daemon's uplink is connected with everything acked; returns its `last_seq`.
async fn wait_drained(w: &World) -> u64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let st = w.daemon_status().await;
        let up = &st["uplink"];
        if up["connected"] == true && up["acked"] == up["last_seq"] {
            return up["last_seq"].as_u64().unwrap_or(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "uplink never drained: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A consistent view of what the bot stored for `session` and the daemon's `last_seq`: the
/// events are read between two drained statuses with the same `last_seq`, so nothing was
/// emitted (e.g. the restarted daemon's own lifecycle events) while they were read. Re-reads
/// until that holds, bounded by [`WAIT`].
async fn settled_events(w: &World, session: &str) -> (Vec<Value>, u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut before = wait_drained(w).await;
    loop {
        let events = w.all_events(session).await;
        let after = wait_drained(w).await;
        if after == before {
            return (events, after);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon kept emitting: last_seq {before} then {after}"
        );
        before = after;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_bot_mid_stream_loses_and_duplicates_nothing() {
    let mut w = World::start().await;
    let id = w.new_session(json!({})).await;
    let (status, v) = w
        .post(
            &format!("/api/sessions/{id}/prompt"),
            json!({"text": "DELTAS:6000"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    // Let a random share of the stream through, then kill the bot.
    let cut = rand::random_range(200..3000);
    w.wait_stored(&id, |e| e["event"]["seq"].as_u64().unwrap_or(0) >= cut)
        .await;
    World::kill9(&mut w.bot);
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..800))).await;
    w.start_bot();
    // The daemon reconnects by itself; the turn ends and everything arrives.
    w.wait_stored(&id, |e| e["event"]["kind"] == "turn_result")
        .await;
    let (events, last) = settled_events(&w, &id).await;
    assert_complete(&events, last);
    let deltas = events
        .iter()
        .filter(|e| e["event"]["kind"] == "assistant_delta")
        .count();
    assert_eq!(deltas, 6000, "every streamed delta stored once");
    let (_, m) = (
        200,
        w.http
            .get(w.url("/metrics"))
            .bearer_auth(&w.user_token)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text"),
    );
    assert!(m.contains("ccrm_daemons_connected 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ccrmd_mid_stream_replays_the_spool_after_restart() {
    let mut w = World::start().await;
    let id = w.new_session(json!({})).await;
    let (status, _) = w
        .post(
            &format!("/api/sessions/{id}/prompt"),
            json!({"text": "DELTAS:6000"}),
        )
        .await;
    assert_eq!(status, 202);
    let cut = rand::random_range(200..3000);
    w.wait_stored(&id, |e| e["event"]["seq"].as_u64().unwrap_or(0) >= cut)
        .await;
    World::kill9(&mut w.daemon);
    w.start_daemon();
    let (events, last) = settled_events(&w, &id).await;
    assert_complete(&events, last);
    assert!(
        events.len() as u64 >= cut,
        "events before the kill are kept"
    );
    // The restarted daemon knows the session (stopped) and the bot can resume it.
    let (status, v) = w
        .post(&format!("/api/sessions/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = w
        .post(
            &format!("/api/sessions/{id}/prompt"),
            json!({"text": "after the crash"}),
        )
        .await;
    assert_eq!(status, 202);
    w.wait_stored(&id, |e| {
        e["event"]["kind"] == "assistant_text" && e["event"]["text"] == "Echo: after the crash"
    })
    .await;
    let (events, last) = settled_events(&w, &id).await;
    assert_complete(&events, last);
}

/// The harness refuses a daemon binary older than its sources, naming the command that
/// rebuilds it (`common::bins`), and takes a fresh one.
#[test]
fn a_stale_daemon_binary_is_refused_with_the_command_to_run() {
    use common::bins::{check_fresh, newest_under};
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src/nested");
    std::fs::create_dir_all(&src).expect("src");
    let bin = dir.path().join("ccrmd");
    let set = |path: &std::path::Path, age_secs: u64| {
        std::fs::write(path, "x").expect("write");
        let at = SystemTime::now() - Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(at))
            .expect("set mtime");
    };
    set(&bin, 100);
    set(&dir.path().join("src/old.rs"), 200);
    set(&src.join("new.rs"), 10);
    let roots = [dir.path().join("src")];
    let newest = newest_under(&roots).expect("a newest file");
    assert_eq!(newest.1, src.join("new.rs"));
    let err =
        check_fresh(&bin, Some(&newest), "cargo build -p ccrm-daemon --bins").expect_err("stale");
    assert!(
        err.contains("is older than the daemon sources")
            && err.contains("new.rs")
            && err.contains("run `cargo build -p ccrm-daemon --bins`"),
        "{err}"
    );
    // Rebuilt: fresh again.
    set(&bin, 1);
    check_fresh(&bin, Some(&newest), "cargo build -p ccrm-daemon --bins").expect("fresh");
    // Missing: says so, with the same command.
    let gone =
        check_fresh(&dir.path().join("ccrm"), Some(&newest), "cargo build").expect_err("missing");
    assert!(
        gone.contains("is missing") && gone.contains("`cargo build`"),
        "{gone}"
    );
    // The real harness accepts the binaries this run uses.
    assert!(common::ccrmd_bin().exists());
}
