//! Faults: kill -9 of ccrmd (no orphan claude), garbage and oversized socket input, a child
//! that dies mid-turn or prints non-JSON, a second daemon.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use ::common::event::{EventKind, SessionState};
use ::common::ipc::{Command, PromptArgs, SessionRef};
use common::{Env, WAIT, alive, result_of, wait_gone};
use serde_json::Value;

fn fault_child() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fault-child.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ccrmd_leaves_no_claude_and_a_new_daemon_starts_cleanly() {
    let mut env = Env::start().await;
    // Three sessions: one idle, one streaming slowly, one running a shell loop as a tool.
    let idle = env.new_session().await;
    let busy = env.new_session().await;
    let tool = env
        .start_session(::common::ipc::StartArgs {
            cwd: env.work.clone(),
            auto_allow: true,
            ..Default::default()
        })
        .await;
    env.call(Command::PromptSend(PromptArgs {
        session: busy.id.to_string(),
        text: "SLOW:200".into(),
        follow: false,
        origin: None,
        images: Vec::new(),
    }))
    .await
    .expect("prompt");
    env.call(Command::PromptSend(PromptArgs {
        session: tool.id.to_string(),
        text: "SLOWTOOL:120".into(),
        follow: false,
        origin: None,
        images: Vec::new(),
    }))
    .await
    .expect("prompt");
    env.wait_for(&busy.id.to_string(), 0, |e| {
        matches!(e.kind, EventKind::AssistantDelta { .. })
    })
    .await;
    let tool_pid = tool.pid.expect("pid");
    // Wait (bounded) until the tool's shell runs.
    let deadline = tokio::time::Instant::now() + WAIT;
    let grandchildren = loop {
        let g = session_processes(&tool.id.to_string(), tool_pid);
        if !g.is_empty() || tokio::time::Instant::now() > deadline {
            break g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!grandchildren.is_empty(), "the Bash tool should be running");
    let pids: Vec<u32> = [idle.id, busy.id]
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .iter()
        .map(|id| futures::executor::block_on(env.info(id)).pid.expect("pid"))
        .collect();
    for pid in &pids {
        assert!(alive(*pid), "claude {pid} should run");
    }

    let mut daemon = env.daemon.take().expect("daemon");
    daemon.kill().expect("kill -9"); // std's kill is SIGKILL
    daemon.wait().expect("reap ccrmd");
    for pid in pids.iter().chain([&tool_pid]) {
        assert!(
            wait_gone(*pid).await,
            "claude {pid} outlived a kill -9 of ccrmd"
        );
    }

    // A stale pidfile and socket are left behind; a new daemon starts anyway.
    assert!(env.runtime_dir().join("ccrmd.pid").exists());
    env.daemon = Some(env.spawn_daemon().expect("a new ccrmd starts cleanly"));
    // The new daemon swept the tool processes the dead claude left behind.
    for pid in &grandchildren {
        assert!(
            wait_gone(*pid).await,
            "tool process {pid} survived the restart"
        );
    }
    let listed = env
        .call(Command::SessionsList(Default::default()))
        .await
        .expect("list");
    let states: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["stopped", "stopped", "stopped"],
        "sessions survive as stopped: {listed}"
    );
    let info = env.info(&busy.id.to_string()).await;
    assert_eq!(info.reason.as_deref(), Some("the daemon restarted"));
    // And they can be resumed.
    let resumed = env
        .call(Command::SessionResume(SessionRef {
            session: idle.id.to_string(),
        }))
        .await
        .expect("resume");
    assert_eq!(resumed["state"], "idle", "{resumed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_refuses_clearly() {
    let env = Env::start().await;
    let err = env.spawn_daemon().expect_err("second daemon must refuse");
    assert!(err.contains("already running"), "{err}");
    assert!(
        err.contains(&env.daemon_pid().to_string()),
        "names the pid: {err}"
    );
    // The first one is unaffected.
    assert_eq!(env.status().await["pid"], env.daemon_pid());
}

/// Processes other than `leader` whose environment marks them as started for `session`
/// (claude passes its environment on to the tools it runs, in their own process groups).
fn session_processes(session: &str, leader: u32) -> Vec<u32> {
    let needle = format!(":{session}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == leader || !alive(pid) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let marked = environ.split(|b| *b == 0).any(|v| {
            let v = String::from_utf8_lossy(v);
            v.starts_with("CCRM_OWNER=") && v.ends_with(&needle)
        });
        if marked {
            out.push(pid);
        }
    }
    out
}

fn raw_roundtrip(
    stream: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
    line: &[u8],
) -> Value {
    stream.write_all(line).expect("write");
    stream.write_all(b"\n").expect("write");
    let mut reply = String::new();
    reader.read_line(&mut reply).expect("read reply");
    serde_json::from_str(&reply).expect("reply is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_lines_get_errors_while_another_client_works() {
    let env = Env::start().await;
    let s = env.new_session().await;
    let id = s.id.to_string();

    // A well-behaved client runs a turn the whole time.
    let good = async {
        let mut client = env.client().await;
        let mut n = 0;
        let end = client
            .stream(
                Command::PromptSend(PromptArgs {
                    session: id.clone(),
                    text: "SLOW:6".into(),
                    follow: true,
                    origin: None,
                    images: Vec::new(),
                }),
                |_| n += 1,
            )
            .await
            .expect("good client works")
            .expect("end");
        (end, n)
    };
    let socket = env.socket();
    let bad = tokio::task::spawn_blocking(move || {
        let mut stream = UnixStream::connect(&socket).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut codes = Vec::new();
        for line in [
            b"this is not json".to_vec(),
            b"[1,2,3]".to_vec(),
            br#"{"id":1,"cmd":"no.such.command"}"#.to_vec(),
            br#"{"id":2,"cmd":"prompt.send","args":{"session":42}}"#.to_vec(),
            br#"{"id":3,"cmd":"session.get","args":{"session":"ffffffff"}}"#.to_vec(),
            vec![b'x'; 2 * 1024 * 1024],
            vec![0xff, 0xfe, b'{'],
        ] {
            let reply = raw_roundtrip(&mut stream, &mut reader, &line);
            assert_eq!(reply["ok"], false, "{reply}");
            codes.push(
                reply["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        // The same connection still serves a valid request.
        let reply = raw_roundtrip(
            &mut stream,
            &mut reader,
            br#"{"id":9,"cmd":"daemon.status"}"#,
        );
        assert_eq!(reply["ok"], true, "{reply}");
        assert_eq!(reply["id"], 9);
        codes
    });
    let ((end, n), codes) = tokio::join!(good, bad);
    let codes = codes.expect("bad client thread");
    assert_eq!(
        codes,
        [
            "parse_error",
            "bad_request",
            "unknown_command",
            "bad_request",
            "not_found",
            "too_large",
            "parse_error"
        ]
    );
    assert_eq!(end["is_error"], false, "{end}");
    assert!(n > 3, "the good client got its events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_dies_mid_turn_fails_the_session_with_the_reason() {
    let env = Env::start_with_claude(&fault_child(), &[("FAULT_MODE", "die")]).await;
    let s = env.new_session().await;
    let id = s.id.to_string();
    let data = env
        .call(Command::PromptSend(PromptArgs {
            session: id.clone(),
            text: "hello".into(),
            follow: false,
            origin: None,
            images: Vec::new(),
        }))
        .await
        .expect("prompt");
    let p = data["prompt_id"].as_u64().expect("id");
    let evs = env.wait_result(&id, p).await;
    let (is_error, text, subtype) = result_of(&evs);
    assert!(is_error);
    assert_eq!(subtype, "session_ended");
    assert!(text.unwrap_or_default().contains("exit code 3"));
    assert!(
        evs.iter()
            .any(|e| matches!(&e.kind, EventKind::AssistantText { text } if text == "half an ans"))
    );
    let info = env.info(&id).await;
    assert_eq!(info.state, SessionState::Failed);
    let reason = info.reason.unwrap_or_default();
    assert!(
        reason.contains("exit code 3") && reason.contains("simulated crash"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_prints_non_json_fails_the_session() {
    let env = Env::start_with_claude(&fault_child(), &[("FAULT_MODE", "garbage")]).await;
    let s = env.new_session().await;
    let id = s.id.to_string();
    let pid = s.pid.expect("pid");
    env.call(Command::PromptSend(PromptArgs {
        session: id.clone(),
        text: "hello".into(),
        follow: false,
        origin: None,
        images: Vec::new(),
    }))
    .await
    .expect("prompt");
    env.wait_for(&id, 0, |e| {
        matches!(
            e.kind,
            EventKind::State {
                state: SessionState::Failed,
                ..
            }
        )
    })
    .await;
    let info = env.info(&id).await;
    assert!(info.reason.unwrap_or_default().contains("not JSON"));
    assert!(wait_gone(pid).await, "the misbehaving child was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_terminates_a_child_that_ignores_eof_after_the_grace_period() {
    let env = Env::start_with_claude(&fault_child(), &[("FAULT_MODE", "hang")]).await;
    let s = env.new_session().await;
    let pid = s.pid.expect("pid");
    let data = env
        .call(Command::SessionStop(SessionRef {
            session: s.id.to_string(),
        }))
        .await
        .expect("stop");
    assert_eq!(data["state"], "stopped", "{data}");
    assert!(wait_gone(pid).await);
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_children_and_removes_the_socket() {
    let mut env = Env::start().await;
    let s = env.new_session().await;
    let pid = s.pid.expect("pid");
    let mut daemon = env.daemon.take().expect("daemon");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("term");
    let status = tokio::task::spawn_blocking(move || daemon.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "graceful exit: {status}");
    assert!(!alive(pid), "claude {pid} outlived ccrmd");
    assert!(!env.socket().exists(), "socket removed");
    assert!(
        !env.runtime_dir().join("ccrmd.pid").exists(),
        "pidfile removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_a_session_also_ends_the_tools_claude_started() {
    let env = Env::start().await;
    let s = env
        .start_session(::common::ipc::StartArgs {
            cwd: env.work.clone(),
            auto_allow: true,
            ..Default::default()
        })
        .await;
    let id = s.id.to_string();
    let pid = s.pid.expect("pid");
    env.call(Command::PromptSend(PromptArgs {
        session: id.clone(),
        text: "SLOWTOOL:120".into(),
        follow: false,
        origin: None,
        images: Vec::new(),
    }))
    .await
    .expect("prompt");
    let deadline = tokio::time::Instant::now() + WAIT;
    let tools = loop {
        let t = session_processes(&id, pid);
        if !t.is_empty() || tokio::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!tools.is_empty(), "the Bash tool should be running");
    let info = env
        .call(Command::SessionKill(SessionRef {
            session: id.clone(),
        }))
        .await
        .expect("kill");
    assert_eq!(info["state"], "stopped");
    for p in tools.iter().chain([&pid]) {
        assert!(wait_gone(*p).await, "process {p} outlived the session kill");
    }
}
