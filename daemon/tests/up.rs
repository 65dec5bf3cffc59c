//! `ccrm up` supervises: a `kill -9` of its bot in the middle of a turn leaves the daemon
//! and the session's claude child running, `ccrm up` restarts the bot on the same address
//! and says so, the turn's answer reaches the restarted bot's `/events` exactly once (from
//! the daemon's spool), and `ccrm up` keeps running until it is told to stop.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, WAIT, alive};
use serde_json::Value;

fn http_get(addr: &str, path: &str, token: &str) -> Option<(String, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// Polls `f` every 50 ms until it returns `Some`, at most [`WAIT`].
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bot_is_restarted_and_the_running_turn_is_delivered_once() {
    let env = Env::prepare(None).await;
    let data = env.dir.path().join("up");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ccrm"))
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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ccrm up");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut up = Up(child);
    let said: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[up] {line}");
            log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(WAIT, first)
        .await
        .expect("ccrm up printed nothing")
        .expect("join")
        .expect("read");
    let info: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    let addr = info["url"]
        .as_str()
        .expect("url")
        .trim_start_matches("http://")
        .to_owned();
    let token = info["token"].as_str().expect("token").to_owned();
    let socket = info["socket"].as_str().expect("socket").to_owned();
    let bot_pid = info["bot_pid"].as_u64().expect("bot pid") as i32;
    let daemon_pid = info["daemon_pid"].as_u64().expect("daemon pid") as u32;
    assert_eq!(info["dashboard"], format!("http://{addr}/"));
    assert!(
        info["demo_prompts"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == "write a hello world file")),
        "{info}"
    );

    let ccrm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ccrm"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("ccrm")
    };
    let work = data.join("demo-work");
    let out = ccrm(&["--json", "start", "--cwd", work.to_str().expect("utf8")]);
    let s: Value = serde_json::from_slice(&out.stdout).expect("session json");
    let id = s["id"].as_str().expect("id").to_owned();
    // Wait until the bot knows the session (the link is up), then start a 6 s turn.
    until("the bot stores the session", || {
        http_get(&addr, &format!("/api/sessions/{id}"), &token)
            .filter(|(status, _)| status.contains("200"))
    })
    .await;
    assert!(ccrm(&["prompt", &id, "SLOW:60:100"]).status.success());
    // Mid-turn: streaming has begun.
    until("the turn streams", || {
        let out = ccrm(&["--json", "events", &id]);
        String::from_utf8_lossy(&out.stdout)
            .contains("assistant_delta")
            .then_some(())
    })
    .await;
    let session: Value =
        serde_json::from_slice(&ccrm(&["--json", "status", &id]).stdout).expect("status json");
    let claude_pid = session["session"]["pid"].as_u64().expect("claude pid") as u32;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bot_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the bot");

    // `ccrm up` notices, says so, and brings the bot back on the same address.
    until("ccrm up restarts the bot", || {
        let lines = said.lock().unwrap_or_else(|e| e.into_inner());
        (lines
            .iter()
            .any(|l| l.contains("ccrm-bot exited") && l.contains("restarting"))
            && lines.iter().any(|l| l.contains("ccrm-bot restarted")))
        .then_some(())
    })
    .await;
    assert!(alive(daemon_pid), "the daemon kept running");
    assert!(alive(claude_pid), "the session's claude kept running");
    assert!(
        up.0.try_wait().expect("try_wait").is_none(),
        "ccrm up is still running"
    );

    // The answer arrives once at the restarted bot.
    let events = until("the turn's result reaches the bot", || {
        let (status, body) = http_get(
            &addr,
            &format!("/api/sessions/{id}/events?limit=1000"),
            &token,
        )?;
        if !status.contains("200") {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let events = v["events"].as_array()?.clone();
        events
            .iter()
            .any(|e| e["event"]["kind"] == "turn_result")
            .then_some(events)
    })
    .await;
    let kinds = |k: &str| events.iter().filter(|e| e["event"]["kind"] == k).count();
    assert_eq!(kinds("turn_result"), 1, "{events:#?}");
    let answers: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"]["kind"] == "assistant_text")
        .collect();
    assert_eq!(answers.len(), 1, "the answer once: {answers:#?}");
    assert!(
        answers[0]["event"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("chunk0 chunk1") && t.contains("chunk59")),
        "{answers:#?}"
    );
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(seqs, unique, "no event stored twice");
    assert!(alive(claude_pid), "the session lives on after the turn");
    assert!(
        up.0.try_wait().expect("try_wait").is_none(),
        "ccrm up is still running"
    );

    // And it still stops cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("term");
    let status = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(s) = up.0.try_wait().expect("try_wait") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("ccrm up stops");
    assert!(status.success(), "{status}");
}
