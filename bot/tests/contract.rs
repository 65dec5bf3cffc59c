//! The REST contract, checked from outside:
//! - the served `/api/openapi.json` equals `docs/openapi.json` and validates as OpenAPI 3.1
//!   (`openapi-spec-validator`);
//! - schemathesis (pinned, from the venv of `scripts/install-contract-tools.sh`) runs every
//!   check against a live `ccrm-bot` with a linked `ccrmd` and the real Claude Code CLI on
//!   the fake Messages API, with a fixed seed and example budget, stateful links included
//!   (start a session → prompt → events → stop), and must find nothing.
//!
//! `/api/sessions/{id}/stream` never ends and is left out; everything else is exercised,
//! with real things to find that the test makes before schemathesis starts: a pending
//! approval for `decide`, and what the documented examples name (workspace `site`,
//! execution `build-42`) for the execution event streams.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::World;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// The whole schemathesis run must end within this.
const RUN_BOUND: Duration = Duration::from_secs(600);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The venv's bin directory: `CCRM_CONTRACT_TOOLS`, else what the install script prints
/// (it reuses an existing venv and installs one only when missing).
fn tools() -> PathBuf {
    if let Some(dir) = std::env::var_os("CCRM_CONTRACT_TOOLS").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let out = std::process::Command::new(root().join("scripts/install-contract-tools.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/install-contract-tools.sh");
    assert!(
        out.status.success(),
        "scripts/install-contract-tools.sh failed; it needs python3 with venv and PyPI"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs `cmd`, bounded; returns (success, stdout + stderr).
async fn run(mut cmd: tokio::process::Command, bound: Duration) -> (bool, String) {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn");
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let work = async {
        let (mut a, mut b) = (String::new(), String::new());
        let (_, _, status) = tokio::join!(
            out.read_to_string(&mut a),
            err.read_to_string(&mut b),
            child.wait()
        );
        (status.map(|s| s.success()).unwrap_or(false), a + &b)
    };
    match tokio::time::timeout(bound, work).await {
        Ok(r) => r,
        Err(_) => (false, format!("did not finish within {bound:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_document_is_the_checked_in_one_and_valid_openapi_3_1() {
    let w = World::bot_only().await;
    let (status, served) = w.get("/api/openapi.json").await;
    assert_eq!(status, 200, "{served}");
    let file =
        std::fs::read_to_string(root().join("docs/openapi.json")).expect("docs/openapi.json");
    let checked_in: Value = serde_json::from_str(&file).expect("docs/openapi.json is JSON");
    assert!(
        served == checked_in,
        "the served document differs from docs/openapi.json; regenerate it with\n  \
         CCRM_WRITE_OPENAPI=1 cargo test -p ccrm-bot --lib openapi::tests::checked_in_document_is_current"
    );
    assert_eq!(served["openapi"], "3.1.0");
    let bin = tools();
    let mut cmd = tokio::process::Command::new(bin.join("openapi-spec-validator"));
    cmd.arg(root().join("docs/openapi.json"));
    let (ok, out) = run(cmd, Duration::from_secs(120)).await;
    assert!(
        ok,
        "openapi-spec-validator refused docs/openapi.json:\n{out}"
    );
    assert!(out.contains("OK"), "{out}");
    // A document that is not valid is refused: the check can fail.
    let broken = w.dir.path().join("broken.json");
    let mut bad = served.clone();
    bad["paths"]["/api/sessions"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        json!({"type": "no-such-type"});
    std::fs::write(&broken, bad.to_string()).expect("write");
    let mut cmd = tokio::process::Command::new(bin.join("openapi-spec-validator"));
    cmd.arg(&broken);
    let (ok, out) = run(cmd, Duration::from_secs(120)).await;
    assert!(!ok, "a broken document passed:\n{out}");
}

/// Runs an execution and returns its whole event stream (bounded).
async fn execute_to_end(w: &World, body: Value) -> String {
    let r = w.post_response("/api/execute", body).await;
    assert_eq!(r.status(), 200);
    tokio::time::timeout(Duration::from_secs(120), r.text())
        .await
        .expect("the execution did not end in time")
        .expect("read the stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_live_stack() {
    // The per-address limit of failed token checks is off: schemathesis probes every route
    // with invalid tokens and expects 401 each time (the limit has its own test in
    // ccrm_compat.rs).
    let w = World::start_with(&[("CCRM_BOT_AUTH_FAILURES_PER_MINUTE", "0")]).await;
    // Something real to find: a session with a finished turn.
    let sid = w.new_session(json!({"name": "contract"})).await;
    let (status, v) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "hello"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    w.wait_stored(&sid, |e| e["event"]["kind"] == "turn_result")
        .await;
    // A pending approval, so `decide` meets a real id (through the links from
    // `GET /api/approvals` and `GET /api/sessions/{id}`), not only unknown ones.
    let asking = w.new_session(json!({"name": "contract-approval"})).await;
    let target = w.work.join("contract.txt");
    let (status, v) = w
        .post(
            &format!("/api/sessions/{asking}/prompt"),
            json!({"text": format!("WRITE:{} approved", target.display())}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    w.wait_stored(&asking, |e| e["event"]["kind"] == "permission_request")
        .await;
    let (_, pending) = w.get("/api/approvals").await;
    assert_eq!(
        pending["approvals"].as_array().map(Vec::len),
        Some(1),
        "{pending}"
    );
    // And what the documented examples name: workspace `site` (the example body of
    // `POST /api/execute` runs there) and a finished execution `build-42` (the example id of
    // the execution routes), so the examples phase checks both event streams, every event
    // against its schema, on each run rather than when the fuzzer happens on a real id.
    let daemon = w.wait_daemon_online().await;
    let (status, v) = w.upload_small(&daemon, "site").await;
    assert_eq!(status, 200, "{v}");
    let finished = execute_to_end(
        &w,
        json!({"executionId": "build-42", "workspaceId": "site", "prompt": "hello"}),
    )
    .await;
    assert!(finished.contains("event: complete"), "{finished}");

    let bin = tools();
    let report = w.dir.path().join("schemathesis.json");
    let mut cmd = tokio::process::Command::new(bin.join("schemathesis"));
    cmd.arg("--no-color")
        .arg("--config-file")
        .arg(root().join("bot/tests/contract/schemathesis.toml"))
        .arg("run")
        .arg(w.url("/api/openapi.json"))
        .args(["--checks", "all"])
        .args(["--exclude-path", "/api/sessions/{id}/stream"])
        // Served only in Telegram webhook mode (not configured here, so 404), and it takes
        // Telegram's secret header, not the bearer token; bot/tests/telegram_webhook.rs
        // covers its 200/400/401/413.
        .args(["--exclude-path", "/telegram/webhook"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--report", "ndjson"])
        .arg("--report-ndjson-path")
        .arg(&report)
        .env("CCRM_CONTRACT_TOKEN", &w.user_token)
        .env("NO_COLOR", "1")
        .current_dir(w.dir.path());
    let started = std::time::Instant::now();
    let (ok, out) = run(cmd, RUN_BOUND).await;
    // The summary for the note; not a timing assertion.
    eprintln!("schemathesis took {:?}\n{out}", started.elapsed());
    assert!(
        ok,
        "schemathesis found problems (or did not finish):\n{out}"
    );
    // "N generated, N passed": every generated case passed, and there were some.
    let counts = out
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let (generated, rest) = l.split_once(" generated, ")?;
            let passed = rest.split_once(" passed")?.0;
            Some((generated.parse::<u64>().ok()?, passed.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no test case counts in the output:\n{out}"));
    assert!(counts.0 > 0 && counts.0 == counts.1, "{counts:?}:\n{out}");
    assert!(!out.contains("Failures:"), "{out}");
    // The stack still serves after all that.
    let (status, v) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "still here"}),
        )
        .await;
    assert!(status == 202 || status == 409, "{status} {v}");
    let (status, _) = w.get("/api/daemons").await;
    assert_eq!(status, 200);
}
