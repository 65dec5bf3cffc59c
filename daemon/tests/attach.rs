//! `ccrm attach` end to end: a real ccrmd hands sessions to the real Claude Code TUI in
//! tmux (driven with `send-keys`, read with `capture-pane`) and takes them back; the fake
//! Messages API shows what each side sent.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ::common::event::{Event, EventKind, SessionState, Surface};
use ::common::ipc::{AttachInfo, Command, PromptArgs};
use common::{Env, WAIT, alive, result_of, wait_gone};
use testkit::{TEST_API_KEY, claude_bin};

fn prompt(session: &str, text: &str) -> Command {
    Command::PromptSend(PromptArgs {
        session: session.to_owned(),
        text: text.to_owned(),
        follow: false,
        origin: None,
        images: Vec::new(),
    })
}

async fn send(env: &Env, session: &str, text: &str) -> serde_json::Value {
    env.call(prompt(session, text)).await.expect("prompt.send")
}

async fn turn(env: &Env, session: &str, text: &str) -> Vec<Event> {
    let data = send(env, session, text).await;
    let id = data["prompt_id"].as_u64().expect("prompt id");
    let evs = env.wait_result(session, id).await;
    assert!(!result_of(&evs).0, "turn `{text}` failed: {evs:#?}");
    evs
}

/// Runs the `ccrm` binary against `env`'s daemon, bounded by [`WAIT`].
fn ccrm(env: &Env, args: &[&str]) -> std::process::Output {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm"))
        .args(args)
        .envs(env.env_vars())
        .current_dir(&env.work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ccrm");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => out.expect("ccrm output"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("`ccrm {}` did not finish within {WAIT:?}", args.join(" "));
        }
    }
}

/// `ccrm --json attach <session> --no-attach [extra]`, which must succeed.
fn attach(env: &Env, session: &str, extra: &[&str]) -> AttachInfo {
    let mut args = vec!["--json", "attach", session, "--no-attach"];
    args.extend_from_slice(extra);
    let out = ccrm(env, &args);
    assert!(
        out.status.success(),
        "attach failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("attach info")
}

/// The TUI of an attached session, seen through tmux.
struct Tui {
    socket: PathBuf,
    name: String,
}

impl Tui {
    fn new(info: &AttachInfo) -> Self {
        Self {
            socket: info.socket.clone(),
            name: info.tmux_session.clone(),
        }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    fn target(&self) -> String {
        format!("={}:", self.name)
    }

    fn exists(&self) -> bool {
        self.tmux(&["has-session", "-t", &format!("={}", self.name)])
            .status
            .success()
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(
            &self
                .tmux(&["capture-pane", "-p", "-t", &self.target()])
                .stdout,
        )
        .into_owned()
    }

    /// Polls the screen (bounded) until `pred` holds; returns it.
    async fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the idle input prompt (the `❯` box with its footer).
    async fn wait_ready(&self) -> String {
        self.wait_screen("the TUI prompt", |s| {
            s.lines().any(|l| l.trim_end() == "❯") && s.contains("for shortcuts")
        })
        .await
    }

    /// Types `text` and presses Enter.
    fn type_line(&self, text: &str) {
        assert!(
            self.tmux(&["send-keys", "-t", &self.target(), "-l", text])
                .status
                .success()
        );
        assert!(
            self.tmux(&["send-keys", "-t", &self.target(), "Enter"])
                .status
                .success()
        );
    }

    /// Clients attached to the tmux session.
    fn clients(&self) -> u32 {
        let out = self.tmux(&[
            "display-message",
            "-p",
            "-t",
            &self.target(),
            "#{session_attached}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

/// Waits until the session is back under the daemon after a detach; returns its events.
async fn wait_back(env: &Env, session: &str, after: u64) -> Vec<Event> {
    let mut detached = false;
    env.wait_for(session, after, |e| {
        if matches!(e.kind, EventKind::Detached { .. }) {
            detached = true;
        }
        detached
            && matches!(
                e.kind,
                EventKind::State {
                    state: SessionState::Idle,
                    ..
                }
            )
    })
    .await
}

fn tui_prompt_events(events: &[Event]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Prompt {
                prompt_id,
                text,
                origin,
                ..
            } if origin.surface == Surface::Tui => Some((*prompt_id, text.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_shows_remote_turns_and_a_tui_turn_reaches_the_api_with_them() {
    let env = Env::start().await;
    let s = env.new_session().await;
    let id = s.id.to_string();
    turn(&env, &id, "first remote turn").await;
    turn(&env, &id, "second remote turn").await;
    let child = env.info(&id).await.pid.expect("child pid");
    let seq = env.info(&id).await.last_seq;

    let a = attach(&env, &s.id.short(), &[]);
    assert!(!a.joined);
    let tui_pid = a.pid.expect("TUI pid");
    assert!(!alive(child), "the stream-json child {child} must be gone");
    let info = env.info(&id).await;
    assert_eq!(info.state, SessionState::Attached);
    assert_eq!(info.pid, Some(tui_pid));
    let out = ccrm(&env, &["list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id[..8]) && l.contains("attached")),
        "{listed}"
    );

    // The TUI has the session's environment; no secret shows on a command line.
    let environ = std::fs::read(format!("/proc/{tui_pid}/environ")).expect("TUI environ");
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    for want in [
        format!("ANTHROPIC_API_KEY={TEST_API_KEY}"),
        format!("HOME={}", env.home.path().display()),
        format!("ANTHROPIC_BASE_URL={}", env.api.base_url()),
    ] {
        assert!(vars.contains(&want), "{want} missing from the TUI's env");
    }
    assert!(
        vars.iter()
            .any(|v| v.starts_with("CCRM_OWNER=") && v.ends_with(&id))
    );
    let stat = std::fs::read_to_string(format!("/proc/{tui_pid}/stat")).expect("stat");
    let server: u32 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .expect("ppid");
    let cmdline = std::fs::read(format!("/proc/{server}/cmdline")).expect("server cmdline");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.starts_with("tmux") || cmdline.contains("/tmux"),
        "{cmdline}"
    );
    assert!(
        !cmdline.contains(TEST_API_KEY),
        "the key is on the command line: {cmdline}"
    );

    // The history is on screen.
    let tui = Tui::new(&a);
    let screen = tui.wait_ready().await;
    for text in [
        "first remote turn",
        "Echo: first remote turn",
        "Echo: second remote turn",
    ] {
        assert!(screen.contains(text), "`{text}` not on screen:\n{screen}");
    }

    // A turn typed in the TUI reaches the API with the earlier history.
    tui.type_line("typed in the tui");
    tui.wait_screen("the TUI's answer", |s| s.contains("Echo: typed in the tui"))
        .await;
    let req = env
        .api
        .message_requests()
        .into_iter()
        .rev()
        .find(|r| r.last_human_text().as_deref() == Some("typed in the tui"))
        .expect("the TUI's request reached the fake API");
    let history = req.all_text();
    for text in [
        "first remote turn",
        "Echo: first remote turn",
        "second remote turn",
        "Echo: second remote turn",
    ] {
        assert!(history.contains(text), "`{text}` missing from {history}");
    }
    assert_eq!(req.session_id.as_deref(), Some(id.as_str()));

    // ... and shows up as events with origin `tui`.
    let evs = env.wait_for(&id, seq, |e| {
        matches!(&e.kind, EventKind::TurnResult { text: Some(t), .. } if t == "Echo: typed in the tui")
    })
    .await;
    assert!(
        evs.iter().any(
            |e| matches!(&e.kind, EventKind::Attached { target } if *target == a.tmux_session)
        ),
        "no attached event: {evs:#?}"
    );
    let prompts = tui_prompt_events(&evs);
    assert_eq!(
        prompts.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        ["typed in the tui"],
        "{evs:#?}"
    );
    let tui_prompt = prompts[0].0;
    assert!(
        evs.iter().any(
            |e| matches!(&e.kind, EventKind::AssistantText { text } if text == "Echo: typed in the tui")
        ),
        "{evs:#?}"
    );
    assert!(evs.iter().any(|e| matches!(&e.kind,
        EventKind::TurnResult { prompt_id: Some(p), is_error: false, .. } if *p == tui_prompt)));

    // /exit gives the session back; the next remote turn sees the TUI's turn.
    let seq = env.info(&id).await.last_seq;
    tui.type_line("/exit");
    let evs = wait_back(&env, &id, seq).await;
    assert!(
        evs.iter().any(
            |e| matches!(&e.kind, EventKind::Detached { reason } if reason.contains("exited"))
        ),
        "{evs:#?}"
    );
    assert!(wait_gone(tui_pid).await, "the TUI {tui_pid} is still alive");
    assert!(!tui.exists(), "the tmux session is still there");
    let info = env.info(&id).await;
    let new_child = info.pid.expect("a new child");
    assert_ne!(new_child, tui_pid);
    let evs = turn(&env, &id, "after the attach").await;
    assert_eq!(result_of(&evs).1.as_deref(), Some("Echo: after the attach"));
    let last = env.api.message_requests().last().cloned().expect("request");
    assert!(last.all_text().contains("Echo: typed in the tui"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_sent_while_attached_waits_and_runs_after_the_last_client_detaches() {
    let env = Env::start().await;
    let s = env.new_session().await;
    let id = s.id.to_string();
    turn(&env, &id, "remote before the attach").await;

    let a = attach(&env, &id, &[]);
    let tui = Tui::new(&a);
    tui.wait_ready().await;

    // A remote prompt is queued, and its sender is told why.
    let data = send(&env, &id, "queued while attached").await;
    let queued = data["prompt_id"].as_u64().expect("prompt id");
    let note = data["note"].as_str().unwrap_or_default();
    assert!(note.contains("in use at the terminal"), "{data}");
    let out = ccrm(&env, &["prompt", &id, "second", "queued", "prompt"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("in use at the terminal"),
        "{said}"
    );
    let info = env.info(&id).await;
    assert_eq!(info.state, SessionState::Attached);
    assert_eq!(info.queued, 2);
    let out = ccrm(&env, &["list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("attached"));

    tui.type_line("typed while prompts wait");
    tui.wait_screen("the TUI's answer", |s| {
        s.contains("Echo: typed while prompts wait")
    })
    .await;
    let seen: Vec<String> = env
        .api
        .message_requests()
        .iter()
        .filter_map(|r| r.last_human_text())
        .collect();
    assert!(
        !seen.iter().any(|t| t.contains("queued")),
        "a queued prompt ran while attached: {seen:?}"
    );

    // A terminal (a pty from script(1)) runs `ccrm attach`, which joins the TUI and becomes
    // the tmux client; when it detaches, the daemon takes the session back.
    let mut client = std::process::Command::new("script")
        .args(["-qfc"])
        .arg(format!("'{}' attach {id}", env!("CARGO_BIN_EXE_ccrm")))
        .arg("/dev/null")
        .envs(env.env_vars())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tui.clients() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tmux client attached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.info(&id).await.state, SessionState::Attached);
    // The client leaves in the middle of a TUI turn: the daemon lets the turn finish.
    tui.type_line("SLOW:20:100");
    tui.wait_screen("the slow answer", |s| s.contains("chunk1"))
        .await;
    assert!(
        tui.tmux(&["detach-client", "-s", &format!("={}", a.tmux_session)])
            .status
            .success()
    );

    let evs = env.wait_result(&id, queued).await;
    let (is_error, text, _) = result_of(&evs);
    assert!(!is_error, "{evs:#?}");
    assert_eq!(text.as_deref(), Some("Echo: queued while attached"));
    assert!(
        evs.iter().any(|e| matches!(&e.kind,
            EventKind::Detached { reason } if reason.contains("detached"))),
        "{evs:#?}"
    );
    // Order: the TUI turn, the detach, then the queued prompt's turn.
    let pos = |p: &dyn Fn(&EventKind) -> bool| evs.iter().position(|e| p(&e.kind));
    let tui_turn = pos(&|k| matches!(k, EventKind::AssistantText { text } if text == "Echo: typed while prompts wait"))
        .expect("TUI turn event");
    let detached = pos(&|k| matches!(k, EventKind::Detached { .. })).expect("detached");
    let started =
        pos(&|k| matches!(k, EventKind::TurnStarted { prompt_id } if *prompt_id == queued))
            .expect("queued turn started");
    assert!(tui_turn < detached && detached < started, "{evs:#?}");
    let slow = tui_prompt_events(&evs)
        .into_iter()
        .find(|(_, t)| t == "SLOW:20:100")
        .expect("the slow TUI prompt")
        .0;
    let slow_done = pos(&|k| {
        matches!(k, EventKind::TurnResult { prompt_id: Some(p), is_error: false, text: Some(t), .. }
            if *p == slow && t.contains("chunk19"))
    })
    .expect("the slow TUI turn finished");
    assert!(slow_done < detached, "{evs:#?}");
    assert!(!alive(a.pid.expect("pid")), "the TUI is still alive");

    // Its API request carries the turn typed in the TUI.
    let req = env
        .api
        .message_requests()
        .into_iter()
        .find(|r| r.last_human_text().as_deref() == Some("queued while attached"))
        .expect("queued prompt reached the API");
    let history = req.all_text();
    for text in [
        "remote before the attach",
        "typed while prompts wait",
        "Echo: typed while prompts wait",
    ] {
        assert!(history.contains(text), "`{text}` missing from {history}");
    }
    let evs = env.wait_for(&id, 0, |e| {
        matches!(&e.kind, EventKind::TurnResult { text: Some(t), .. } if t == "Echo: second queued prompt")
    })
    .await;
    assert!(!result_of(&evs).0);

    let deadline = tokio::time::Instant::now() + WAIT;
    while client.try_wait().ok().flatten().is_none() {
        if tokio::time::Instant::now() > deadline {
            let _ = client.kill();
            panic!("the tmux client did not exit after its detach");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pids of claude processes (stream-json child or TUI) carrying `marker` in their
/// environment. A claude forks briefly before it execs a helper; such a fork (its parent
/// is one of them) is part of its parent, not a second claude.
fn claude_pids(marker: &str, claude: &Path) -> Vec<u32> {
    let mut found: Vec<(u32, u32)> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let claude = claude.to_string_lossy().into_owned();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let ppid = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok())
            })
            .unwrap_or(0);
        if String::from_utf8_lossy(argv0) == claude && alive(pid) {
            found.push((pid, ppid));
        }
    }
    found
        .iter()
        .filter(|(_, ppid)| !found.iter().any(|(p, _)| p == ppid))
        .map(|(pid, _)| *pid)
        .collect()
}

/// `daemon.stop` over the socket, then waits (bounded) for the harness's ccrmd to exit.
async fn stop_daemon(env: &mut Env) {
    env.call(Command::DaemonStop(::common::ipc::NoArgs {}))
        .await
        .expect("daemon.stop");
    let mut daemon = env.daemon.take().expect("daemon running");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = daemon.try_wait() {
            assert!(status.success(), "ccrmd exited with {status}");
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = daemon.kill();
            panic!("ccrmd did not stop");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn any_with_marker(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(environ) = std::fs::read(entry.path().join("environ"))
            && environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
            && alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_attach_detach_cycles_never_run_two_claudes_and_leave_none() {
    let mut env = Env::start().await;
    let s = env.new_session().await;
    let id = s.id.to_string();
    let marker = format!(
        "CCRM_OWNER={}",
        ccrm_daemon::spawn::owner_value(&ccrm_daemon::spawn::daemon_tag(&env.state_dir()), &id)
    );

    // Watch every claude of the session, all the time.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, most, marker, claude) = (
            stop.clone(),
            most.clone(),
            marker.clone(),
            env.claude.clone(),
        );
        std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let pids = claude_pids(&marker, &claude);
                most.fetch_max(pids.len(), Ordering::Relaxed);
                if pids.len() > 1 {
                    let describe: Vec<String> = pids
                        .iter()
                        .map(|p| {
                            let stat = std::fs::read_to_string(format!("/proc/{p}/stat"))
                                .unwrap_or_default();
                            let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                                .unwrap_or_default()
                                .split(|b| *b == 0)
                                .map(|a| String::from_utf8_lossy(a).into_owned())
                                .collect::<Vec<_>>()
                                .join(" ");
                            format!("{stat} :: {cmd}")
                        })
                        .collect();
                    eprintln!("two claudes at once: {describe:#?}");
                }
                seen.extend(pids);
                std::thread::sleep(Duration::from_millis(10));
            }
            seen
        })
    };

    let mut tui_pids = Vec::new();
    for cycle in 1..=5 {
        let seq = env.info(&id).await.last_seq;
        let child = env.info(&id).await.pid.expect("child pid");
        let a = match cycle {
            2 => {
                // A running turn finishes before the TUI gets the session.
                env.api.set_chunk_delay(Duration::from_millis(40));
                let p = send(&env, &id, "SLOW:25").await["prompt_id"]
                    .as_u64()
                    .expect("id");
                env.wait_for(&id, seq, |e| {
                    matches!(e.kind, EventKind::AssistantDelta { .. })
                })
                .await;
                let a = attach(&env, &id, &[]);
                let evs = env
                    .wait_for(&id, seq, |e| matches!(e.kind, EventKind::Attached { .. }))
                    .await;
                let result = evs.iter().position(|e| {
                    matches!(&e.kind,
                    EventKind::TurnResult { prompt_id: Some(x), is_error: false, .. } if *x == p)
                });
                assert!(
                    result.is_some(),
                    "attach did not wait for the turn: {evs:#?}"
                );
                a
            }
            3 => {
                // `--now` interrupts it instead.
                env.api.set_chunk_delay(Duration::from_millis(500));
                let p = send(&env, &id, "SLOW:120").await["prompt_id"]
                    .as_u64()
                    .expect("id");
                env.wait_for(&id, seq, |e| {
                    matches!(e.kind, EventKind::AssistantDelta { .. })
                })
                .await;
                let asked = std::time::Instant::now();
                let a = attach(&env, &id, &["--now"]);
                // The turn would stream for a minute; bounded, not timed.
                assert!(
                    asked.elapsed() < Duration::from_secs(30),
                    "attach --now was not prompt"
                );
                let evs = env
                    .wait_for(&id, seq, |e| matches!(e.kind, EventKind::Attached { .. }))
                    .await;
                assert!(
                    evs.iter().any(|e| matches!(&e.kind,
                    EventKind::TurnResult { prompt_id: Some(x), is_error: true, .. } if *x == p)),
                    "{evs:#?}"
                );
                a
            }
            _ => attach(&env, &id, &[]),
        };
        assert!(
            !alive(child),
            "cycle {cycle}: the child outlived the handover"
        );
        let tui_pid = a.pid.expect("TUI pid");
        tui_pids.push(tui_pid);
        let tui = Tui::new(&a);
        tui.wait_ready().await;
        if cycle == 1 {
            tui.type_line("cycle one");
            tui.wait_screen("the answer", |s| s.contains("Echo: cycle one"))
                .await;
        }
        let seq = env.info(&id).await.last_seq;
        tui.type_line("/exit");
        wait_back(&env, &id, seq).await;
        assert!(
            !alive(tui_pid),
            "cycle {cycle}: the TUI outlived the detach"
        );
        assert!(!tui.exists());
    }
    env.api.set_chunk_delay(Duration::from_millis(0));
    let evs = turn(&env, &id, "after five cycles").await;
    assert_eq!(
        result_of(&evs).1.as_deref(),
        Some("Echo: after five cycles")
    );
    let last = env.api.message_requests().last().cloned().expect("request");
    assert!(
        last.all_text().contains("Echo: cycle one"),
        "the TUI turn is in the history"
    );

    // Stopping the daemon leaves nothing behind: no claude, no tool, no tmux server.
    stop_daemon(&mut env).await;
    stop.store(true, Ordering::Relaxed);
    let seen = sampler.join().expect("sampler");
    assert_eq!(
        most.load(Ordering::Relaxed),
        1,
        "two claude processes ran for one session at once"
    );
    for pid in &tui_pids {
        assert!(seen.contains(pid), "the sampler missed TUI {pid}");
    }
    assert!(
        any_with_marker(&marker).is_empty(),
        "left behind: {:?}",
        any_with_marker(&marker)
    );
    let socket = ccrm_daemon::attach::tmux_socket(&env.runtime_dir(), &s.id);
    let ls = std::process::Command::new("tmux")
        .arg("-S")
        .arg(&socket)
        .arg("list-sessions")
        .stdin(Stdio::null())
        .output()
        .expect("tmux");
    assert!(!ls.status.success(), "the tmux server still has sessions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tmux_attach_says_how_to_install_it() {
    let empty = tempfile::tempdir().expect("tmp");
    let path = empty.path().display().to_string();
    let claude = claude_bin().expect("claude");
    let env = Env::start_with_claude(&claude, &[("PATH", &path)]).await;
    let s = env.new_session().await;
    let short = s.id.short();
    for args in [
        vec!["attach", short.as_str(), "--no-attach"],
        vec!["attach", short.as_str()],
    ] {
        let out = ccrm(&env, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("tmux is not installed") && err.contains("apt-get install tmux"),
            "{err}"
        );
    }
    let info = env.info(&s.id.to_string()).await;
    assert_eq!(info.state, SessionState::Idle, "the session is untouched");
    assert_eq!(info.pid, s.pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_sessions_resume_into_tmux_a_second_attach_joins_and_daemon_stop_ends_it() {
    // In the background, as a user runs it, so `ccrm daemon stop` can wait for its exit.
    let env = Env::prepare(None).await;
    let out = ccrm(&env, &["daemon", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ccrm(&env, &["attach", "no-such-session", "--no-attach"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session matches"));

    let s = env.new_session().await;
    let id = s.id.to_string();
    turn(&env, &id, "before the stop").await;
    let out = ccrm(&env, &["stop", &id]);
    assert!(out.status.success());
    assert_eq!(env.info(&id).await.state, SessionState::Stopped);

    // A stopped session resumes straight into the TUI, history included.
    let a = attach(&env, &id, &[]);
    let tui = Tui::new(&a);
    let screen = tui.wait_ready().await;
    assert!(screen.contains("Echo: before the stop"), "{screen}");
    assert_eq!(env.info(&id).await.state, SessionState::Attached);
    // A stream-json-only command is refused while attached.
    let out = ccrm(&env, &["resume", &id]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use at the terminal"));

    // A second attach joins the same TUI.
    let b = attach(&env, &id, &[]);
    assert!(b.joined);
    assert_eq!(
        (&b.tmux_session, b.pid, &b.socket),
        (&a.tmux_session, a.pid, &a.socket)
    );
    let out = ccrm(&env, &["attach", &id, "--no-attach"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tmux") && text.contains(&a.tmux_session),
        "{text}"
    );

    // `ccrm stop` while attached ends the TUI; the next attach resumes it into tmux again.
    let seq = env.info(&id).await.last_seq;
    let out = ccrm(&env, &["stop", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.info(&id).await.state, SessionState::Stopped);
    assert!(!alive(a.pid.expect("pid")), "the TUI outlived `ccrm stop`");
    assert!(!tui.exists());
    let evs = env
        .wait_for(&id, seq, |e| matches!(e.kind, EventKind::Detached { .. }))
        .await;
    assert!(
        evs.iter().any(
            |e| matches!(&e.kind, EventKind::Detached { reason } if reason.contains("stopped"))
        )
    );
    let a = attach(&env, &id, &[]);
    let tui = Tui::new(&a);
    tui.wait_ready().await;

    // `ccrm daemon stop` ends the TUI and records it.
    let pid = a.pid.expect("pid");
    let out = ccrm(&env, &["daemon", "stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!alive(pid), "the TUI outlived the daemon");
    assert!(!tui.exists(), "the tmux session outlived the daemon");
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.state_dir().join("sessions").join(format!("{id}.json")))
            .expect("session record"),
    )
    .expect("record json");
    assert_eq!(rec["state"], "stopped", "{rec}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("attached"),
        "{rec}"
    );

    // The next daemon shows it stopped, and it resumes with the history.
    let out = ccrm(&env, &["daemon", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = env.info(&id).await;
    assert_eq!(info.state, SessionState::Stopped);
    assert!(info.reason.unwrap_or_default().contains("attached"));
    let out = ccrm(&env, &["resume", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    turn(&env, &id, "after the restart").await;

    // A ccrmd killed with -9 while attached: the next one ends the TUI and its tmux server.
    let a = attach(&env, &id, &[]);
    let tui = Tui::new(&a);
    tui.wait_ready().await;
    let daemon_pid: i32 = std::fs::read_to_string(env.runtime_dir().join("ccrmd.pid"))
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 ccrmd");
    assert!(wait_gone(daemon_pid as u32).await);
    let out = ccrm(&env, &["daemon", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_gone(a.pid.expect("pid")).await, "the TUI survived");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tui.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tmux session survived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(env.info(&id).await.state, SessionState::Stopped);
}
