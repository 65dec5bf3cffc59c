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

/// Minimal HTTP/1.0 GET with a bearer token; returns (status line, body).
fn http_get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect bot");
    s.set_read_timeout(Some(common::WAIT)).expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_demo_wires_a_bot_and_a_daemon_and_stops_both() {
    use std::io::BufRead;
    let env = Env::prepare(None).await;
    let ccrm_bot = std::path::Path::new(env!("CARGO_BIN_EXE_ccrm")).with_file_name("ccrm-bot");
    assert!(
        ccrm_bot.exists(),
        "build the workspace first (cargo build --workspace): {}",
        ccrm_bot.display()
    );
    let data = env.dir.path().join("up");
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm"))
        .args([
            "--json",
            "up",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .env("CCRM_CLAUDE_BIN", &env.claude)
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ccrm up");
    let stdout = up.stdout.take().expect("stdout");
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let line = tokio::time::timeout(common::WAIT, first)
        .await
        .expect("ccrm up printed nothing")
        .expect("join")
        .expect("read");
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    assert_eq!(info["demo"], true);
    let url = info["url"]
        .as_str()
        .expect("url")
        .trim_start_matches("http://")
        .to_owned();
    let token = info["token"].as_str().expect("token").to_owned();
    let socket = info["socket"].as_str().expect("socket").to_owned();

    // The API answers with the token, refuses without it.
    let (status, _) = http_get(&url, "/api/sessions", None);
    assert!(status.contains("401"), "{status}");
    let (status, body) = http_get(&url, "/api/daemons", Some(&token));
    assert!(status.contains("200"), "{status} {body}");
    // The daemon is linked (it may take a moment to say hello).
    let deadline = std::time::Instant::now() + common::WAIT;
    while !http_get(&url, "/api/daemons", Some(&token))
        .1
        .contains("\"online\":true")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never came online"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A session through the CLI answers from the demo model; the bot stores its events.
    let work = data.join("demo-work");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ccrm"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("ccrm")
    };
    let out = run(&["--json", "start", "--cwd", work.to_str().expect("utf8")]);
    let s: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{:?}", text(&out)));
    let id = s["id"].as_str().expect("id").to_owned();
    let out = run(&["prompt", &id, "hello demo", "--follow"]);
    assert!(
        text(&out).0.contains("Echo: hello demo"),
        "{:?}",
        text(&out)
    );
    let deadline = std::time::Instant::now() + common::WAIT;
    while !http_get(
        &url,
        &format!("/api/sessions/{id}/events?limit=1000"),
        Some(&token),
    )
    .1
    .contains("Echo: hello demo")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the bot never stored the turn"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // SIGTERM stops everything.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("term");
    let status = tokio::task::spawn_blocking(move || up.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(&url).is_err(),
        "the bot is gone"
    );
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the daemon is gone"
    );
}
