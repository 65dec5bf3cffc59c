//! Workspaces and one-shot executions through the real bot: a real `ccrm-bot` process, a
//! real linked `ccrmd`, the real Claude Code CLI and the fake Messages API. Uploads use
//! OCC's multipart field names (in any order), executions answer with OCC's SSE events,
//! hostile archives are refused over REST with their codes, an oversized upload is refused
//! while it streams, a 50 MB upload stays out of both processes' memory, and an execution's
//! result survives the client going away and the bot being killed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{WAIT, World, ccrmd_bin, zip_part};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// Starts the daemon with extra environment (on top of the harness's).
async fn start_daemon_with(w: &mut World, extra: &[(&str, &str)]) {
    let mut cmd = std::process::Command::new(ccrmd_bin());
    cmd.envs(w.daemon_env())
        .envs(extra.iter().map(|(k, v)| (*k, *v)));
    let (child, _) = testkit::process::spawn_ready(cmd, "ccrmd ready", "ccrmd", WAIT, None)
        .expect("ccrmd did not start");
    w.daemon = Some(child);
    w.wait_daemon_online().await;
}

async fn world_with(daemon_env: &[(&str, &str)], bot_env: &[(&str, &str)]) -> (World, String) {
    let mut w = World::bot_only_with(bot_env).await;
    start_daemon_with(&mut w, daemon_env).await;
    let id = w.wait_daemon_online().await;
    (w, id)
}

/// Posts `form` to `daemon`'s workspaces (the upload route) as the test user.
async fn post_form(w: &World, daemon: &str, form: Form) -> reqwest::Result<reqwest::Response> {
    w.post_multipart(&format!("/api/daemons/{daemon}/workspaces"), form)
        .await
}

/// [`World::upload_small`], which must succeed.
async fn upload_ok(w: &World, daemon: &str, id: &str) {
    let (status, v) = w.upload_small(daemon, id).await;
    assert_eq!(status, 200, "{v}");
}

/// `DELETE` of `daemon`'s workspace `id` as the test user.
async fn delete_workspace(w: &World, daemon: &str, id: &str) -> reqwest::Response {
    w.http
        .delete(w.url(&format!("/api/daemons/{daemon}/workspaces/{id}")))
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("delete")
}

/// Checks that an answer is `want` with error code `code`.
fn assert_error(status: u16, v: &Value, want: u16, code: &str) {
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (want, json!(code)),
        "{v}"
    );
}

/// One SSE event: its name, data and id.
#[derive(Debug)]
struct Ev {
    name: String,
    data: Value,
    id: Option<u64>,
}

/// Reads SSE events until one matches `stop` (or the stream ends), bounded.
async fn read_events(resp: reqwest::Response, stop: impl Fn(&Ev) -> bool) -> Vec<Ev> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let work = async {
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.expect("sse chunk")));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut name, mut data, mut id) = (String::from("message"), String::new(), None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let ev = Ev {
                    name,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                    id,
                };
                let done = stop(&ev);
                out.push(ev);
                if done {
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

fn is_end(e: &Ev) -> bool {
    e.name == "complete" || e.name == "error"
}

async fn execute(w: &World, body: Value) -> reqwest::Response {
    w.post_response("/api/execute", body).await
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_execute_streams_output_then_complete_and_policies_apply() {
    let (w, daemon) = world_with(&[], &[]).await;
    // The file first, the fields after it: the form is checked at the end.
    let (status, v) = w
        .upload_workspace(
            &daemon,
            "site",
            "overwrite",
            testkit::zips::small_project(),
            true,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["workspaceId"], "site");
    assert_eq!(v["reused"], false);
    let path = PathBuf::from(v["path"].as_str().expect("path"));
    assert!(path.join("src/main.rs").exists(), "{v}");

    // Execute: output chunks as the answer streams, then complete.
    let resp = execute(
        &w,
        json!({"executionId": "exec-1", "workspaceId": "site", "prompt": "WRITE:notes.txt from the model", "allowedTools": ["Write"]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-execution-id"], "exec-1");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let events = read_events(resp, is_end).await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"complete"), "{events:#?}");
    assert!(
        names.iter().all(|n| *n == "output" || *n == "complete"),
        "{names:?}"
    );
    assert!(names.contains(&"output"), "{names:?}");
    let done = events.last().expect("complete");
    assert_eq!(done.data["exitCode"], 0);
    assert_eq!(done.data["executionId"], "exec-1");
    assert!(
        done.data["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(
        done.data["result"]["turns"].as_u64().is_some(),
        "{:?}",
        done.data
    );
    let output: String = events
        .iter()
        .filter(|e| e.name == "output")
        .map(|e| e.data["chunk"].as_str().unwrap_or_default())
        .collect();
    assert!(output.contains("Done."), "{output}");
    assert_eq!(
        std::fs::read_to_string(path.join("notes.txt")).expect("the model's file"),
        "from the model"
    );
    let (status, v) = w.get("/api/executions/exec-1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["exitCode"], 0);
    assert_eq!(v["workspaceId"], "site");
    assert_eq!(v["output"], output.as_str());
    assert!(v["error"].is_null(), "{v}");
    for k in ["created", "started", "finished"] {
        assert!(v[k].as_str().is_some(), "{k}: {v}");
    }

    // `reuse` keeps the workspace as it is, the model's file included.
    let other = testkit::zips::RawZip::new()
        .with(testkit::zips::Entry::file("fresh.txt", "new"))
        .build();
    let (status, v) = w
        .upload_workspace(&daemon, "site", "reuse", other.clone(), false)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reused"], true);
    assert!(path.join("notes.txt").exists() && !path.join("fresh.txt").exists());
    // `overwrite` replaces it.
    let (status, v) = w
        .upload_workspace(&daemon, "site", "overwrite", other, false)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["reused"], false);
    assert_eq!(files(&path), ["fresh.txt"]);

    // The list, by daemon id prefix and by hostname.
    let (status, v) = w
        .get(&format!("/api/daemons/{}/workspaces", &daemon[..8]))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["workspaces"][0]["id"], "site");
    assert_eq!(v["workspaces"][0]["files"], 1);
    assert_eq!(v["workspaces"][0]["name"], "Workspace site");
    let (_, d) = w.get(&format!("/api/daemons/{daemon}")).await;
    let host = d["hostname"].as_str().expect("hostname").to_owned();
    let (status, _) = w.get(&format!("/api/daemons/{host}/workspaces")).await;
    assert_eq!(status, 200);

    // Health in OCC's shape.
    assert_eq!(d["status"], "healthy", "{d}");
    assert!(d["uptime"].as_u64().is_some(), "{d}");
    assert!(d["version"].as_str().is_some());
    assert!(d["heartbeat"]["lastSuccessfulAt"].as_str().is_some(), "{d}");
    assert!(d["heartbeat"]["consecutiveFailures"].as_u64().is_some());
    assert!(d["heartbeat"]["seqNum"].as_u64().is_some());
    assert!(d["workers"].as_u64().is_some_and(|n| n >= 1), "{d}");
    assert_eq!(d["running"], 0);
    assert_eq!(d["queued"], 0);

    // Delete.
    let r = delete_workspace(&w, &daemon, "site").await;
    assert_eq!(r.status(), 200);
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_over_rest_and_nothing_is_written() {
    let max = 4 * 1024 * 1024;
    let (w, daemon) = world_with(
        &[
            ("CCRM_WORKSPACE_MAX_BYTES", &max.to_string()),
            ("CCRM_WORKSPACE_MAX_FILES", "20"),
        ],
        &[],
    )
    .await;
    let outside = w.dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    let root = w.dir.path().join("state/workspaces");
    for (i, h) in testkit::zips::hostile(&outside, max, 20)
        .into_iter()
        .enumerate()
    {
        let id = format!("evil-{i}");
        let (status, v) = w
            .upload_workspace(&daemon, &id, "overwrite", h.zip, i % 2 == 0)
            .await;
        // A hostile archive is a well-formed upload the daemon refuses: 422 (the contract
        // keeps 400 for requests that do not match the OpenAPI document).
        let want = if h.code == "ZIP_TOO_LARGE" { 413 } else { 422 };
        assert_eq!(status, want, "{}: {v}", h.what);
        assert_eq!(v["error"]["code"], h.code, "{}: {v}", h.what);
        assert!(!root.join(&id).exists(), "{}", h.what);
        let stray: Vec<String> = files(&root)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "{}: left {stray:?}", h.what);
    }
    assert!(files(&outside).is_empty());
    // Bad forms get their codes too.
    let (status, v) = w.upload_small(&daemon, "../up").await;
    assert_error(status, &v, 400, "BAD_WORKSPACE_ID");
    let (status, v) = w
        .upload_workspace(
            &daemon,
            "ok",
            "sometimes",
            testkit::zips::small_project(),
            false,
        )
        .await;
    assert_error(status, &v, 400, "BAD_REQUEST");
    let nozip = Form::new()
        .text("workspaceId", "nozip")
        .text("name", "n")
        .text("processPolicy", "reuse");
    let r = post_form(&w, &daemon, nozip).await.expect("post");
    assert_eq!(r.status(), 400);
    // A misspelt field after the zip: refused, naming it; the staged zip makes nothing.
    let typo = Form::new()
        .text("workspaceId", "typo")
        .text("name", "n")
        .text("processPolicy", "overwrite")
        .part("zip", zip_part(testkit::zips::small_project()))
        .text("descripton", "d");
    let r = post_form(&w, &daemon, typo).await.expect("post");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_error(status, &v, 400, "BAD_REQUEST");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`descripton`"),
        "{v}"
    );
    // The daemon goes on serving.
    let (status, v) = w
        .upload_workspace(
            &daemon,
            "fine",
            "overwrite",
            testkit::zips::small_project(),
            true,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, list) = w.get(&format!("/api/daemons/{daemon}/workspaces")).await;
    let ids: Vec<&str> = list["workspaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ws| ws["id"].as_str())
        .collect();
    assert!(ids.contains(&"fine") && !ids.contains(&"typo"), "{list}");
}

/// A body of `len` bytes sent in 64 KiB pieces with no length announced.
fn chunked(bytes: Vec<u8>) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(pieces))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_cap_is_refused_while_it_streams() {
    let cap = 1024 * 1024;
    let (w, daemon) = world_with(
        &[],
        &[("CCRM_BOT_WORKSPACE_MAX_UPLOAD_BYTES", &cap.to_string())],
    )
    .await;
    let big = testkit::zips::RawZip::new()
        .with(testkit::zips::Entry::file("noise.bin", testkit::zips::noise(3 * cap, 3)).stored())
        .build();
    // No Content-Length: the cap is found while the zip streams.
    let form = Form::new()
        .text("workspaceId", "big")
        .text("name", "big")
        .text("processPolicy", "overwrite")
        .part(
            "zip",
            Part::stream(chunked(big.clone())).file_name("big.zip"),
        );
    let r = post_form(&w, &daemon, form).await.expect("post");
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "ZIP_TOO_LARGE", "{v}");
    // With a Content-Length, before reading anything. The bot answers 413 without reading
    // the body and closes, so the client may see its write fail before it reads the answer
    // (a broken pipe); either way nothing is stored, which is checked below.
    let form = Form::new()
        .text("workspaceId", "big")
        .text("processPolicy", "overwrite")
        .part("zip", zip_part(big));
    match post_form(&w, &daemon, form).await {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["error"]["code"], "ZIP_TOO_LARGE", "{v}");
        }
        Err(e) => assert!(e.is_request(), "upload failed otherwise: {e:?}"),
    }
    // The daemon dropped what it had received.
    let root = w.dir.path().join("state/workspaces");
    let clean = tokio::time::timeout(WAIT, async {
        while files(&root).iter().any(|n| n.starts_with('.')) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(clean.is_ok(), "left: {:?}", files(&root));
    assert!(!root.join("big").exists());
}

/// Resident memory now and the peak since the last reset, in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_upload_streams_through_both_processes() {
    let (w, daemon) = world_with(&[], &[]).await;
    let mut zip = testkit::zips::RawZip::new();
    for i in 0..50 {
        zip = zip.with(
            testkit::zips::Entry::file(
                format!("blob-{i}.bin"),
                testkit::zips::noise(1024 * 1024, i + 1),
            )
            .stored(),
        );
    }
    let zip = zip.build();
    assert!(zip.len() >= 50 * 1024 * 1024);
    // Warm both processes up on a small upload first.
    upload_ok(&w, &daemon, "warm").await;
    let pids = [
        ("bot", w.bot.as_ref().expect("bot").id()),
        ("ccrmd", w.daemon.as_ref().expect("daemon").id()),
    ];
    let mut base = Vec::new();
    for (_, pid) in pids {
        // Reset the peak (VmHWM) to what is resident now.
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
        base.push(rss(pid).0);
    }
    let form = Form::new()
        .text("workspaceId", "large")
        .text("name", "large")
        .text("processPolicy", "overwrite")
        .part("zip", Part::stream(chunked(zip)).file_name("large.zip"));
    let r = post_form(&w, &daemon, form).await.expect("post");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["workspace"]["files"], 50, "{v}");
    for ((name, pid), before) in pids.into_iter().zip(base) {
        let (_, peak) = rss(pid);
        let grew = peak.saturating_sub(before);
        eprintln!("{name}: resident {before} KiB before, peak {peak} KiB during (+{grew} KiB)");
        assert!(
            grew <= 16 * 1024,
            "{name} grew by {grew} KiB during a 50 MB upload"
        );
    }
}

async fn wait_status(w: &World, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, v) = w.get(&format!("/api/executions/{id}")).await;
        if status == 200 && done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_outlives_the_client_and_a_bot_restart() {
    let (mut w, daemon) = world_with(&[], &[]).await;
    upload_ok(&w, &daemon, "long").await;
    let resp = execute(
        &w,
        json!({"executionId": "gone-1", "workspaceId": "long", "prompt": "SLOW:30:200"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // Read one chunk, then hang up.
    let first = read_events(resp, |e| e.name == "output").await;
    assert_eq!(first.last().map(|e| e.name.as_str()), Some("output"));
    // The bot dies meanwhile; the execution goes on at the daemon.
    World::kill9(&mut w.bot);
    w.start_bot();
    w.wait_daemon_online().await;
    let v = wait_status(&w, "gone-1", |v| v["status"] == "completed").await;
    let expected: String = (0..30).map(|n| format!("chunk{n} ")).collect();
    assert_eq!(v["output"], expected.as_str(), "{v}");
    assert_eq!(v["exitCode"], 0);
    // A stream opened again after the last seen item gets only what follows.
    let r = w
        .http
        .get(w.url("/api/executions/gone-1/stream"))
        .bearer_auth(&w.user_token)
        .header("Last-Event-ID", "3")
        .send()
        .await
        .expect("stream");
    let again = read_events(r, is_end).await;
    assert!(again.iter().all(|e| e.id.unwrap_or(0) > 3), "{again:#?}");
    assert_eq!(again.last().map(|e| e.name.as_str()), Some("complete"));
    // After the last item (a client that saw `complete` and reconnects) the stream ends at
    // once, empty, instead of waiting for an item that will never come.
    let stream_after = |last: String| {
        w.http
            .get(w.url("/api/executions/gone-1/stream"))
            .bearer_auth(&w.user_token)
            .header("Last-Event-ID", last)
            .send()
    };
    let last = again.last().and_then(|e| e.id).expect("complete has an id");
    for after in [last, last + 1000] {
        let r = stream_after(after.to_string()).await.expect("stream");
        assert_eq!(r.status(), 200);
        let body = tokio::time::timeout(WAIT, r.text())
            .await
            .unwrap_or_else(|_| panic!("the stream after {after} did not end"))
            .expect("body");
        assert!(!body.contains("data:"), "after {after}: {body}");
    }
    // A Last-Event-ID that is no event id is refused, not taken as "from the start".
    for bad in ["9223372036854775808", "-1", "x"] {
        let r = stream_after(bad.to_owned()).await.expect("stream");
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(v["error"]["code"], "BAD_REQUEST", "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_the_run_are_plain_json_and_during_it_are_events() {
    let (mut w, daemon) =
        world_with(&[("CCRM_WORKERS", "1"), ("CCRM_WORKERS_QUEUE", "1")], &[]).await;
    upload_ok(&w, &daemon, "errs").await;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_owned();
    let r = w
        .http
        .post(w.url("/api/execute"))
        .bearer_auth(&w.user_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    assert_eq!(code(&r.json().await.expect("json")), "BAD_REQUEST");
    // Not what the document admits: 400 BAD_REQUEST.
    for body in [
        json!({"workspaceId": "errs"}),
        json!({"workspaceId": "errs", "prompt": "hi", "executionId": "no spaces"}),
        json!({"workspaceId": "errs", "prompt": "   "}),
        json!({"workspaceId": "errs", "prompt": "hi", "timeoutSecs": 0}),
        json!({"workspaceId": "errs", "prompt": "hi", "timeoutSecs": 1.5}),
    ] {
        let r = execute(&w, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            code(&r.json().await.expect("json")),
            "BAD_REQUEST",
            "{body}"
        );
    }
    // What the document admits but nothing can serve: 422 or 404, never 400.
    for (body, want, want_code) in [
        (json!({"prompt": "hi"}), 422, "unprocessable"),
        (
            json!({"workspaceId": "errs", "cwd": "/tmp", "prompt": "hi"}),
            422,
            "unprocessable",
        ),
        (
            json!({"workspaceId": "errs", "prompt": "hi", "daemon": "no-such-daemon"}),
            404,
            "not_found",
        ),
        (
            json!({"cwd": "/no/such/dir", "prompt": "hi", "executionId": "nodir"}),
            422,
            "unprocessable",
        ),
    ] {
        let r = execute(&w, body.clone()).await;
        assert_eq!(r.status(), want, "{body}");
        assert_eq!(code(&r.json().await.expect("json")), want_code, "{body}");
    }
    let r = execute(&w, json!({"workspaceId": "nope", "prompt": "hi"})).await;
    assert_eq!(r.status(), 404);
    assert_eq!(code(&r.json().await.expect("json")), "WORKSPACE_NOT_FOUND");

    // The timeout ends the stream with EXECUTION_TIMEOUT.
    let slow = execute(
        &w,
        json!({"workspaceId": "errs", "prompt": "TOOL:echo start; sleep 60; echo done", "allowedTools": ["Bash"], "timeoutSecs": 3, "executionId": "slow-1"}),
    )
    .await;
    assert_eq!(slow.status(), 200);
    // While it runs, the only worker is busy: the next one waits (its stream says so)...
    let queued = execute(
        &w,
        json!({"workspaceId": "errs", "prompt": "after the wait"}),
    )
    .await;
    assert_eq!(queued.status(), 200);
    // ...and with the one queue place taken, the one after is refused at once.
    let r = execute(&w, json!({"workspaceId": "errs", "prompt": "hi"})).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(code(&r.json().await.expect("json")), "WORKERS_BUSY");
    let waited = read_events(queued, is_end).await;
    assert_eq!(waited[0].name, "queued", "{waited:#?}");
    assert_eq!(waited[0].data["position"], 1);
    assert_eq!(
        waited.last().map(|e| e.name.as_str()),
        Some("complete"),
        "{waited:#?}"
    );
    let events = read_events(slow, is_end).await;
    let last = events.last().expect("end");
    assert_eq!(last.name, "error", "{events:#?}");
    assert_eq!(last.data["code"], "EXECUTION_TIMEOUT");
    assert_eq!(last.data["executionId"], "slow-1");
    let v = wait_status(&w, "slow-1", |v| v["status"] == "timeout").await;
    assert_eq!(v["error"]["code"], "EXECUTION_TIMEOUT");

    // A second request with the same id is refused.
    let r = execute(
        &w,
        json!({"workspaceId": "errs", "prompt": "hi", "executionId": "slow-1"}),
    )
    .await;
    assert_eq!(r.status(), 409);

    // No daemon: 503 DAEMON_OFFLINE.
    World::kill9(&mut w.daemon);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = execute(&w, json!({"workspaceId": "errs", "prompt": "hi"})).await;
        if r.status() == 503 {
            assert_eq!(code(&r.json().await.expect("json")), "DAEMON_OFFLINE");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon never went offline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, d) = w.get(&format!("/api/daemons/{daemon}")).await;
    assert_eq!(d["status"], "offline", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_a_workspace_blocks_its_deletion_until_it_stops() {
    let (w, daemon) = world_with(&[], &[]).await;
    upload_ok(&w, &daemon, "shared").await;
    let (status, v) = w
        .post(
            "/api/sessions",
            json!({"daemon": daemon, "workspace": "shared"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert!(
        v["session"]["cwd"]
            .as_str()
            .is_some_and(|c| c.ends_with("workspaces/shared")),
        "{v}"
    );
    let session = v["session"]["id"].as_str().expect("id").to_owned();
    let del = || async { delete_workspace(&w, &daemon, "shared").await };
    let r = del().await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "WORKSPACE_IN_USE");
    let (_, list) = w.get(&format!("/api/daemons/{daemon}/workspaces")).await;
    assert_eq!(list["workspaces"][0]["sessions"][0], session.as_str());
    let (status, _) = w
        .post(&format!("/api/sessions/{session}/stop"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(del().await.status(), 200);
    let (status, v) = w
        .post(
            "/api/sessions",
            json!({"daemon": daemon, "workspace": "shared"}),
        )
        .await;
    assert_error(status, &v, 404, "WORKSPACE_NOT_FOUND");

    // The stopped session lost its directory: resuming it or giving it a file is the
    // session's state (409, saying the directory is gone), not a daemon failure (5xx).
    let (status, v) = w
        .post(&format!("/api/sessions/{session}/resume"), json!({}))
        .await;
    assert_error(status, &v, 409, "bad_state");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("is gone")),
        "{v}"
    );
    let form = Form::new().text("text", "read this").part(
        "files[]",
        Part::bytes(b"some notes".to_vec()).file_name("notes.txt"),
    );
    let r = w
        .post_multipart(&format!("/api/sessions/{session}/prompt"), form)
        .await
        .expect("prompt");
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_error(status, &v, 409, "bad_state");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("notes.txt") && message.contains("is gone"),
        "{v}"
    );
    let (_, s) = w.get(&format!("/api/sessions/{session}")).await;
    assert_eq!(s["session"]["info"]["state"], "stopped", "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_over_rest_ends_the_stream_and_frees_the_workspace() {
    let (w, daemon) = world_with(&[], &[]).await;
    upload_ok(&w, &daemon, "busy").await;
    let resp = execute(
        &w,
        json!({"executionId": "cx-1", "workspaceId": "busy", "prompt": "SLOW:200:300"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // Keep the stream open in a task of its own; it must end with the cancel.
    let stream = tokio::spawn(read_events(resp, is_end));
    let v = wait_status(&w, "cx-1", |v| v["status"] == "running").await;
    assert_eq!(v["daemon"].as_str(), Some(daemon.as_str()), "{v}");

    // While the execution runs its workspace cannot be deleted or overwritten.
    let del = || async { delete_workspace(&w, &daemon, "busy").await };
    let r = del().await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "WORKSPACE_IN_USE", "{body}");
    let (status, v) = w.upload_small(&daemon, "busy").await;
    assert_error(status, &v, 409, "WORKSPACE_IN_USE");

    // Cancel: the answer is the stored execution, already final.
    let (status, v) = w.post("/api/executions/cx-1/cancel", json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["error"]["code"], "EXECUTION_CANCELLED", "{v}");
    assert!(v["finished"].as_str().is_some(), "{v}");
    // The open stream ends with the matching error event.
    let events = tokio::time::timeout(WAIT, stream)
        .await
        .expect("the stream did not end")
        .expect("stream task");
    let last = events.last().expect("an end event");
    assert_eq!(last.name, "error", "{events:#?}");
    assert_eq!(last.data["code"], "EXECUTION_CANCELLED");
    assert_eq!(last.data["executionId"], "cx-1");
    // Cancelling again changes nothing; an unknown id is a 404.
    let (status, v) = w.post("/api/executions/cx-1/cancel", json!({})).await;
    assert_eq!((status, v["status"].clone()), (200, json!("cancelled")));
    let (status, v) = w.post("/api/executions/nope/cancel", json!({})).await;
    assert_error(status, &v, 404, "not_found");
    let (status, v) = w.get("/api/executions/nope").await;
    assert_error(status, &v, 404, "not_found");
    // The workspace is free again.
    assert_eq!(del().await.status(), 200);
}
