//! Several `ccrm-bot` replicas on one throwaway PostgreSQL cluster, with real linked ccrmd
//! and the real Claude Code CLI: a command for a daemon linked to another replica is
//! routed there and answered (through PostgreSQL, then over a direct link between the
//! replicas, and back through PostgreSQL when the link moved elsewhere meanwhile), every
//! replica's SSE shows every event once in row-id order, and an approval answered on two
//! replicas at once has exactly one winner.

mod common;

use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{
    daemon_to, direct_count, direct_link_up, gauge, get_at, post_at, replica, replica_with,
    wait_online,
};
use common::{WAIT, World};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Reads SSE events from `resp` until `stop` matches one; returns (id, event) pairs.
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

/// A second ccrmd (own runtime and state directories, so its own daemon id) linked to
/// the bot at `addr`.
fn second_daemon(w: &World, addr: SocketAddr) -> Child {
    let run = w.dir.path().join("run2").display().to_string();
    let state = w.dir.path().join("state2").display().to_string();
    daemon_with(w, Some((run, state)), &format!("ws://{addr}"))
}

/// A ccrmd with `bot_urls` (comma-separated), in the World's directories unless `dirs`.
fn daemon_with(w: &World, dirs: Option<(String, String)>, bot_urls: &str) -> Child {
    let mut env = w.daemon_env();
    for (k, v) in &mut env {
        match (k.as_str(), &dirs) {
            ("CCRM_RUNTIME_DIR", Some((run, _))) => v.clone_from(run),
            ("CCRM_STATE_DIR", Some((_, state))) => v.clone_from(state),
            ("CCRM_BOT_URL", _) => *v = bot_urls.to_owned(),
            _ => {}
        }
    }
    let mut cmd = std::process::Command::new(common::ccrmd_bin());
    cmd.envs(env);
    let (child, _) = testkit::process::spawn_ready(cmd, "ccrmd ready", "ccrmd-2", WAIT, None)
        .expect("second ccrmd did not start");
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_sent_to_replica_a_for_a_daemon_on_replica_c_is_answered_and_a_sse_shows_it() {
    // Replica C is the World's bot, with ccrmd #1 linked to it; ccrmd #2 links to B. B
    // gives a clear-text address off this machine, which no replica dials: calls to it go
    // through PostgreSQL, while A links directly to C.
    let mut w = World::bot_only_on_postgres(&[]).await;
    w.start_daemon();
    let d1 = w.wait_daemon_online().await;
    let a = replica(&w, "bot-a");
    let b = replica_with(&w, "bot-b", &[("CCRM_BOT_REPLICA_URL", "ws://192.0.2.1:9")]);
    let mut d2 = Some(second_daemon(&w, b.addr));
    // Every replica sees both daemons online, whichever replica holds their links.
    for addr in [a.addr, b.addr, w.addr] {
        wait_online(&w, addr, 2).await;
    }
    let d2_id = wait_online(&w, a.addr, 2)
        .await
        .iter()
        .filter_map(|d| d["id"].as_str())
        .find(|id| *id != d1)
        .expect("ccrmd #2's id")
        .to_owned();
    let (status, health) = get_at(&w, a.addr, "/healthz").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["database"], "ok", "{health}");
    assert_eq!(health["backend"], "postgres", "{health}");

    // A session on ccrmd #1 (started on C, where its link is; two daemons are online in
    // the cluster, so it is named).
    let sid = w.new_session(json!({"name": "routed", "daemon": d1})).await;
    // A, which does not hold ccrmd #1's link, says it is online (the cluster's view).
    let (status, d) = get_at(&w, a.addr, &format!("/api/daemons/{d1}")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        (&d["online"], &d["status"]),
        (&json!(true), &json!("healthy")),
        "{d}"
    );
    let (_, s) = get_at(&w, a.addr, &format!("/api/sessions/{sid}")).await;
    assert_eq!(s["online"], true, "{s}");

    // A's SSE, opened before the prompt, and the prompt sent to A.
    let sse = w
        .http
        .get(format!("http://{}/api/sessions/{sid}/stream", a.addr))
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("SSE on A");
    assert_eq!(sse.status().as_u16(), 200);
    let (status, v) = post_at(
        &w,
        a.addr,
        &format!("/api/sessions/{sid}/prompt"),
        json!({"text": "hello from replica A"}),
    )
    .await;
    assert_eq!(status, 202, "the prompt is routed to C's link: {v}");
    let seen = read_sse(sse, |v| kind(v) == "turn_result").await;
    let answered = seen
        .iter()
        .any(|(_, v)| v.to_string().contains("Echo: hello from replica A"));
    assert!(answered, "A's SSE shows the answer: {seen:#?}");
    assert!(
        seen.windows(2).all(|p| p[0].0 < p[1].0),
        "row ids increase: {:?}",
        seen.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );

    // Every replica pages the same stored events; A resumes with Last-Event-ID.
    let all_c = w.all_events(&sid).await;
    let first_id = seen[0].0;
    let resumed = w
        .http
        .get(format!("http://{}/api/sessions/{sid}/stream", b.addr))
        .bearer_auth(&w.user_token)
        .header("Last-Event-ID", first_id.to_string())
        .send()
        .await
        .expect("SSE on B");
    let replay = read_sse(resumed, |v| kind(v) == "turn_result").await;
    assert_eq!(replay.first().map(|(id, _)| *id > first_id), Some(true));
    let stored_after: Vec<i64> = all_c
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .filter(|id| *id > first_id && *id <= replay.last().map_or(0, |(id, _)| *id))
        .collect();
    let replay_ids: Vec<i64> = replay.iter().map(|(id, _)| *id).collect();
    assert_eq!(replay_ids, stored_after, "B replays exactly what is stored");

    // That first call went through PostgreSQL; A has dialled C since. The next one, and
    // its reply, travel over that direct link.
    let direct = direct_link_up(&w, &[a.addr, w.addr]).await;
    let (status, v) = post_at(
        &w,
        a.addr,
        &format!("/api/sessions/{sid}/prompt"),
        json!({"text": "over the direct link"}),
    )
    .await;
    assert_eq!(status, 202, "the prompt goes over A's link to C: {v}");
    w.wait_stored(&sid, |e| {
        e.to_string().contains("Echo: over the direct link")
    })
    .await;
    let after = direct_count(&w, a.addr).await;
    assert!(
        after > direct,
        "A sent the call over the link: {direct} -> {after}"
    );
    assert!(direct_count(&w, w.addr).await >= 1.0, "C replied over it");

    // B gives no address A may dial, so a call for ccrmd #2 goes through PostgreSQL; one
    // too big for a NOTIFY payload (over 7 KB) goes through a `replica_calls` row, and is
    // answered the same way.
    let sid2 = w
        .new_session(json!({"name": "on-b", "daemon": d2_id}))
        .await;
    let long = format!("long prompt via A {}", "x".repeat(20_000));
    let (status, v) = post_at(
        &w,
        a.addr,
        &format!("/api/sessions/{sid2}/prompt"),
        json!({"text": long}),
    )
    .await;
    assert_eq!(status, 202, "a 20 KB prompt is routed to B's link: {v}");
    let stored = w
        .wait_stored(&sid2, |e| {
            let e = e.to_string();
            e.contains("turn_result") && e.contains("Echo: long prompt via A")
        })
        .await;
    assert!(!stored.is_empty());
    assert_eq!(
        gauge(&w, a.addr, "ccrm_replica_links").await,
        Some(1.0),
        "A links to C only"
    );

    // The link endpoint wants the token of the replica it belongs to.
    let mut req = format!("ws://{}/ws/replica", a.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        "Bearer not-the-token".parse().expect("hdr"),
    );
    req.headers_mut()
        .insert("x-ccrm-replica", "0123abcd".parse().expect("hdr"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a wrong replica token is refused with 401: {other:?}"),
    }
    World::kill9(&mut d2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_answered_on_two_replicas_at_once_has_exactly_one_winner() {
    let mut w = World::bot_only_on_postgres(&[]).await;
    w.start_daemon();
    w.wait_daemon_online().await;
    let a = replica(&w, "bot-a");
    let b = replica(&w, "bot-b");
    let sid = w.new_session(json!({"name": "race"})).await;
    for round in 0..3u32 {
        let target = w.work.join(format!("race-{round}.txt"));
        let (status, v) = post_at(
            &w,
            a.addr,
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": format!("WRITE:{} round-{round}", target.display())}),
        )
        .await;
        assert_eq!(status, 202, "{v}");
        let deadline = tokio::time::Instant::now() + WAIT;
        let aid = loop {
            let (_, v) = get_at(&w, b.addr, &format!("/api/approvals?session={sid}")).await;
            if let Some(id) = v["approvals"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["status"] == "pending"))
                .and_then(|x| x["id"].as_str())
            {
                break id.to_owned();
            }
            assert!(tokio::time::Instant::now() < deadline, "no approval: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let answer = |addr: SocketAddr| {
            let (barrier, http, token) = (barrier.clone(), w.http.clone(), w.user_token.clone());
            let url = format!("http://{addr}/api/approvals/{aid}");
            tokio::spawn(async move {
                barrier.wait().await;
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"decision": "allow"}))
                    .send()
                    .await
                    .expect("decide");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        };
        let (on_a, on_b) = (answer(a.addr), answer(b.addr));
        let (ra, rb) = tokio::time::timeout(WAIT, async {
            (on_a.await.expect("A"), on_b.await.expect("B"))
        })
        .await
        .expect("both answers return");
        let mut statuses = [ra.0, rb.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: A {ra:?}, B {rb:?}");
        let loser = if ra.0 == 409 { &ra.1 } else { &rb.1 };
        assert_eq!(loser["error"]["code"], "already_decided", "{loser}");
        assert!(
            loser["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("alice") && m.contains("answered first")),
            "the database's claim refused the loser, naming who answered: {loser}"
        );
        // The turn goes on once.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let events = w.all_events(&sid).await;
            let results = events.iter().filter(|e| kind(e) == "turn_result").count();
            if results > round as usize {
                let decisions = events
                    .iter()
                    .filter(|e| {
                        kind(e) == "permission_decision"
                            && e["event"]["approval_id"] == aid.as_str()
                    })
                    .count();
                assert_eq!(decisions, 1, "round {round}: one decision stored");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "turn never ended");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the daemon's uplink is connected with everything acknowledged; returns its
/// last seq.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_replica_holding_the_link_mid_turn_moves_the_daemon_and_loses_nothing() {
    // C is the World's bot; the daemon lists C first, then A.
    let mut w = World::bot_only_on_postgres(&[]).await;
    let a = replica(&w, "bot-a");
    let urls = format!("ws://{},ws://{}", w.addr, a.addr);
    w.daemon = Some(daemon_with(&w, None, &urls));
    w.wait_daemon_online().await;
    let id = w.new_session(json!({})).await;
    let (status, v) = w
        .post(
            &format!("/api/sessions/{id}/prompt"),
            json!({"text": "DELTAS:6000"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let cut = rand::random_range(200..3000);
    w.wait_stored(&id, |e| e["event"]["seq"].as_u64().unwrap_or(0) >= cut)
        .await;
    World::kill9(&mut w.bot);
    // From here on the World's helpers talk to A.
    w.addr = a.addr;
    w.wait_stored(&id, |e| e["event"]["kind"] == "turn_result")
        .await;
    let last = wait_drained(&w).await;
    let events = w.all_events(&id).await;
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(seqs.len(), expected.len(), "every event stored once");
    assert_eq!(seqs, expected, "in order, no gap, no repeat");
    let ids: Vec<i64> = events.iter().filter_map(|e| e["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "row ids increase");
    let deltas = events
        .iter()
        .filter(|e| kind(e) == "assistant_delta")
        .count();
    assert_eq!(deltas, 6000, "every streamed delta stored once");
    // The daemon's link is now A's.
    let (_, m) = get_at(&w, a.addr, "/api/daemons").await;
    assert_eq!(m["daemons"][0]["online"], true, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_sent_on_an_old_memory_of_the_holder_is_answered_moved_and_goes_the_database_way() {
    // C (the World's bot) holds the daemon's link; A learns that with its first call and
    // links to C directly.
    let mut w = World::bot_only_on_postgres(&[]).await;
    w.start_daemon();
    w.wait_daemon_online().await;
    let a = replica(&w, "bot-a");
    let b = replica(&w, "bot-b");
    wait_online(&w, a.addr, 1).await;
    let sid = w.new_session(json!({"name": "moving"})).await;
    let prompt = |text: &str| json!({"text": text});
    let path = format!("/api/sessions/{sid}/prompt");
    let (status, v) = post_at(&w, a.addr, &path, prompt("before the move")).await;
    assert_eq!(status, 202, "{v}");
    w.wait_stored(&sid, |e| e.to_string().contains("Echo: before the move"))
        .await;
    let before = direct_link_up(&w, &[a.addr, w.addr]).await;

    // The daemon moves to B (killed, started again with only B's address) while C and
    // A's link to it run on.
    World::kill9(&mut w.daemon);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = get_at(&w, a.addr, "/api/daemons").await;
        if v["daemons"][0]["online"] == false {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still online: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _moved = daemon_to(&w, &format!("ws://{}", b.addr));
    wait_online(&w, a.addr, 1).await;

    // A still remembers C: the call goes there over the link, C answers that it does not
    // hold the link (nothing run), and A asks the database, which names B.
    let (status, v) = post_at(
        &w,
        a.addr,
        &format!("/api/sessions/{sid}/resume"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "the resume reaches the daemon on B: {v}");
    assert!(
        direct_count(&w, a.addr).await > before,
        "A tried C over the link first"
    );
    let (status, v) = post_at(&w, a.addr, &path, prompt("after the move")).await;
    assert_eq!(status, 202, "{v}");
    w.wait_stored(&sid, |e| e.to_string().contains("Echo: after the move"))
        .await;
}
