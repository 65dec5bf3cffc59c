//! Two `ccrm-bot` replicas on one throwaway PostgreSQL cluster, a real ccrmd linked to one
//! of them (C), the real Claude Code CLI and the fake Messages API; everything asked of
//! the other replica (A):
//!
//! - the daemon's detail, list and workspace list say it is online and runs workspaces
//!   (the cluster's view, not A's own links); workspace uploads through A reach the
//!   daemon byte for byte (the zip's frames passed to C, the daemon's window end to end);
//! - a one-shot execution started on A streams its events through A to the end (the
//!   daemon's `exec.follow` stream passed back from C), and A's replay of it is the same
//!   as C's, item for item;
//! - after a kill -9 of C (the daemon knows no other replica), its link stops counting
//!   once C's heartbeat is stale: A says the daemon is offline and answers its commands
//!   with `DAEMON_OFFLINE` at once, and the row is removed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::{daemon_to, gauge, get_at, post_at, replica};
use common::{WAIT, World};
use futures::StreamExt;
use serde_json::{Value, json};

/// One SSE event: its name and data.
#[derive(Debug, PartialEq)]
struct Ev {
    name: String,
    data: Value,
}

/// Reads SSE events from `resp` until a `complete` or `error` one (bounded).
async fn events_to_end(resp: reqwest::Response) -> Vec<Ev> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let work = async {
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.expect("sse chunk")));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let end = name == "complete" || name == "error";
                out.push(Ev {
                    name,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                });
                if end {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, work)
        .await
        .expect("SSE timed out");
    out
}

/// Uploads `zip` as workspace `id` through replica `addr`.
async fn upload_at(
    w: &World,
    addr: SocketAddr,
    daemon: &str,
    id: &str,
    zip: Vec<u8>,
) -> (u16, Value) {
    let zip = reqwest::multipart::Part::bytes(zip)
        .file_name("workspace.zip")
        .mime_str("application/zip")
        .expect("mime");
    let form = reqwest::multipart::Form::new()
        .text("workspaceId", id.to_owned())
        .text("name", format!("Workspace {id}"))
        .text("description", "made by a test")
        .text("processPolicy", "overwrite")
        .part("zip", zip);
    let r = w
        .http
        .post(format!("http://{addr}/api/daemons/{daemon}/workspaces"))
        .bearer_auth(&w.user_token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST /api/execute` with `body` on replica `addr`: its SSE response, once it said 200.
async fn execute_at(w: &World, addr: SocketAddr, body: Value) -> reqwest::Response {
    let resp = w
        .http
        .post(format!("http://{addr}/api/execute"))
        .bearer_auth(&w.user_token)
        .json(&body)
        .send()
        .await
        .expect("execute");
    assert_eq!(resp.status(), 200);
    resp
}

/// `GET path` on `addr` as an SSE stream (after `last` when given).
async fn sse_at(w: &World, addr: SocketAddr, path: &str) -> reqwest::Response {
    w.http
        .get(format!("http://{addr}{path}"))
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_the_link_uploads_streams_executions_and_sees_a_dead_replicas_links_go() {
    let mut w = World::bot_only_on_postgres(&[]).await;
    let c = w.addr;
    let a = replica(&w, "bot-a");
    // The daemon knows only C, so C's death leaves its link row behind.
    let mut daemon = daemon_to(&w, &format!("ws://{c}"));
    let id = w.wait_daemon_online().await;

    // A's view is the cluster's: online, running workspaces.
    let (status, d) = get_at(&w, a.addr, &format!("/api/daemons/{id}")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["online"], true, "{d}");
    assert_eq!(d["status"], "healthy", "{d}");
    assert_eq!(d["workspaces"], true, "{d}");
    let (_, list) = get_at(&w, a.addr, "/api/daemons").await;
    assert!(
        list["daemons"].as_array().is_some_and(|l| l
            .iter()
            .any(|x| x["id"] == json!(id) && x["online"] == true)),
        "{list}"
    );

    // Workspaces uploaded through A (the zip passed on to C's link with the daemon's
    // window end to end; 3 MiB is three windows), byte for byte on disk, listed through A.
    let (status, v) = upload_at(&w, a.addr, &id, "site", testkit::zips::small_project()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success", "{v}");
    let blob = testkit::zips::noise(3 << 20, 17);
    let zip = testkit::zips::RawZip::new()
        .with(testkit::zips::Entry::file("blob.bin", blob.clone()).stored())
        .build();
    let (status, v) = upload_at(&w, a.addr, &id, "blob", zip).await;
    assert_eq!(status, 200, "{v}");
    let path = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    assert!(
        std::fs::read(path.join("blob.bin")).expect("unpacked") == blob,
        "the file uploaded through A differs"
    );
    let (status, v) = get_at(&w, a.addr, &format!("/api/daemons/{id}/workspaces")).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.to_string().contains("\"site\""), "{v}");

    // An execution started on A streams through A to its end.
    let resp = execute_at(
        &w,
        a.addr,
        json!({"executionId": "exec-a", "workspaceId": "site", "daemon": id,
            "prompt": "WRITE:notes.txt from the model", "allowedTools": ["Write"]}),
    )
    .await;
    let live = events_to_end(resp).await;
    let names: Vec<&str> = live.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"complete"), "{live:#?}");
    assert!(names.contains(&"output"), "{names:?}");
    assert_eq!(
        live.last().map(|e| e.data["exitCode"].clone()),
        Some(json!(0))
    );
    // Replayed on A and on C: the same events, item for item, as the live stream.
    let on_a = events_to_end(sse_at(&w, a.addr, "/api/executions/exec-a/stream").await).await;
    let on_c = events_to_end(sse_at(&w, c, "/api/executions/exec-a/stream").await).await;
    let strip = |v: &[Ev]| -> Vec<(String, Value)> {
        v.iter()
            .map(|e| {
                let mut d = e.data.clone();
                if let Some(o) = d.as_object_mut() {
                    o.remove("timestamp");
                }
                (e.name.clone(), d)
            })
            .collect()
    };
    assert_eq!(strip(&on_a), strip(&on_c), "A's replay differs from C's");
    assert_eq!(
        strip(&on_a),
        strip(&live),
        "the replay differs from the live stream"
    );
    let (status, e) = get_at(&w, a.addr, "/api/executions/exec-a").await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["status"], "completed", "{e}");

    // An execution read through A by its client and by A's recorder runs as two streams
    // on C. The client going away mid-run stops its stream on C (C runs one, for the
    // recorder) while the execution runs on; cancelled, it ends the recorder's too.
    let resp = execute_at(
        &w,
        a.addr,
        json!({"executionId": "exec-slow", "workspaceId": "site", "daemon": id,
            "prompt": "SLOW:600:100"}),
    )
    .await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    tokio::time::timeout(WAIT, async {
        while !seen.contains("event: output") {
            let chunk = body.next().await.expect("stream open").expect("chunk");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("no output from the slow execution");
    let served = |want: f64| {
        let w = &w;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let now = gauge(w, c, "ccrm_replica_streams").await;
                if now == Some(want) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "C runs {now:?} streams for A, not {want}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    served(2.0).await;
    drop(body);
    served(1.0).await;
    let (status, e) = get_at(&w, a.addr, "/api/executions/exec-slow").await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["status"], "running", "{e}");
    let (status, v) = post_at(&w, a.addr, "/api/executions/exec-slow/cancel", json!({})).await;
    assert_eq!(status, 200, "{v}");
    served(0.0).await;

    // kill -9 of C: its link stops counting once C's heartbeat is stale (bounded wait).
    World::kill9(&mut w.bot);
    w.addr = a.addr;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, d) = get_at(&w, a.addr, &format!("/api/daemons/{id}")).await;
        if d["online"] == false {
            assert_eq!(d["status"], "offline", "{d}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead replica's link still counts: {d}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (status, v) = get_at(&w, a.addr, &format!("/api/daemons/{id}/workspaces")).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("DAEMON_OFFLINE")),
        "{v}"
    );
    // And A (or any replica) removed the row as it beat.
    let db = w.db().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while db.daemon_link_count().await.expect("links") > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead replica's link row stayed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    db.close().await;
    World::kill9(&mut daemon.0);
}
