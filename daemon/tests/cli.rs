//! The `ccrm` binary end to end: daemon start/status/stop, human and `--json` output, id
//! prefixes, exit statuses, and errors that say what to do.

mod common;

use common::Env;
use serde_json::Value;

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_a_session_from_daemon_start_to_stop() {
    let env = Env::prepare(None).await;

    // Not running yet: clear advice, distinct exit codes.
    let out = env.ccrm(&["list"]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("ccrmd is not running") && err.contains("ccrm daemon start"),
        "{err}"
    );
    let out = env.ccrm(&["daemon", "status"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let out = env.ccrm(&["--json", "list"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json error");
    assert_eq!(v["error"]["code"], "daemon_not_running");

    // Start in the background; a second start says it is running.
    let out = env.ccrm(&["daemon", "start"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    assert!(o.contains("ccrmd started"), "{o}");
    let out = env.ccrm(&["daemon", "start"]);
    assert!(text(&out).0.contains("already running"));
    let out = env.ccrm(&["--json", "daemon", "status"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status["protocol"], ::common::IPC_PROTOCOL_VERSION);
    let pid = status["pid"].as_u64().expect("pid") as u32;

    // A session in the current directory, named, then addressed by name and by prefix.
    let out = env.ccrm(&["--json", "start", "--name", "demo"]);
    let info: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{:?}", text(&out)));
    assert_eq!(info["state"], "idle");
    assert_eq!(info["cwd"], env.work.display().to_string());
    let id = info["id"].as_str().expect("id").to_owned();
    let out = env.ccrm(&["start", "--name", "demo"]);
    assert!(text(&out).1.contains("already exists"));

    let out = env.ccrm(&[
        "prompt",
        &id[..5],
        "hello",
        "from",
        "the",
        "cli",
        "--follow",
    ]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "{o}{e}");
    assert!(o.contains("Echo: hello from the cli"), "{o}");
    assert!(o.contains("✓ done"), "{o}");

    // A failing turn gives exit status 1.
    let out = env.ccrm(&["prompt", "demo", "ERR400", "-f"]);
    let (o, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{o}");
    assert!(o.contains("turn failed"), "{o}");

    let out = env.ccrm(&["list"]);
    let (o, _) = text(&out);
    assert!(
        o.contains(&id[..8]) && o.contains("demo") && o.contains("idle"),
        "{o}"
    );
    let out = env.ccrm(&["--json", "events", "demo", "--limit", "3"]);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["seq"], 1);

    // Errors for unknown or ambiguous sessions say what to do.
    let out = env.ccrm(&["status", "zzzz"]);
    assert!(text(&out).1.contains("ccrm list"));
    let out = env.ccrm(&["approve", "demo"]);
    assert!(text(&out).1.contains("no pending approval"));
    let out = env.ccrm(&["attach", "demo"]);
    assert!(text(&out).1.contains("not supported yet"));

    let out = env.ccrm(&["stop", "demo"]);
    assert!(text(&out).0.contains("stopped"), "{:?}", text(&out));
    let out = env.ccrm(&["daemon", "stop"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(!common::alive(pid), "ccrmd exited");
    let out = env.ccrm(&["daemon", "status"]);
    assert_eq!(out.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_answers_a_question_and_shows_approvals() {
    let env = Env::start().await;
    let s = env.new_session().await;
    let short = s.id.short();
    let out = env.ccrm(&["prompt", &short, "ASK:Which color?|Red|Blue"]);
    assert!(out.status.success(), "{:?}", text(&out));
    env.wait_for(&s.id.to_string(), 0, |e| {
        matches!(e.kind, ::common::event::EventKind::Question { .. })
    })
    .await;
    let out = env.ccrm(&["approvals"]);
    let (o, _) = text(&out);
    assert!(o.contains("Which color?") && o.contains("2. Blue"), "{o}");
    let out = env.ccrm(&["approve", &short]);
    assert!(
        text(&out).1.contains("ccrm answer"),
        "approve refuses a question: {:?}",
        text(&out)
    );
    let out = env.ccrm(&["answer", &short, "2"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let evs = env.wait_result(&s.id.to_string(), 1).await;
    let (is_error, result, _) = common::result_of(&evs);
    assert!(!is_error);
    assert!(
        result.unwrap_or_default().contains("Blue"),
        "the model got the answer"
    );
}

#[test]
fn help_is_clear() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm"))
        .arg("--help")
        .output()
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "start",
        "list",
        "prompt",
        "events",
        "stop",
        "kill",
        "resume",
        "interrupt",
        "approve",
        "deny",
        "answer",
        "daemon",
    ] {
        assert!(help.contains(cmd), "--help lists {cmd}: {help}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm"))
        .args(["prompt"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}
