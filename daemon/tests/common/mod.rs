//! Shared test harness: a fake Messages API, a throwaway HOME for claude, private runtime and
//! state dirs, and a real `ccrmd` process driven over its real Unix socket.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use ::common::event::{Event, EventKind};
use ::common::ipc::{Command, EventsArgs, NoArgs, SessionInfo, StartArgs};
use ccrm_daemon::client::Client;
use serde_json::Value;
use tempfile::TempDir;
use testkit::{ClaudeHome, FakeApi, TEST_API_KEY, claude_bin, claude_env};

/// Bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Env {
    pub api: FakeApi,
    pub home: ClaudeHome,
    pub dir: TempDir,
    pub work: PathBuf,
    pub claude: PathBuf,
    pub daemon: Option<Child>,
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    /// A fake API, a HOME, dirs, and a running ccrmd using the real claude.
    pub async fn start() -> Self {
        let env = Self::prepare(None).await;
        env.with_daemon()
    }

    /// Same, but sessions run `claude` = `program` (a stand-in fault child).
    pub async fn start_with_claude(program: &Path, extra_env: &[(&str, &str)]) -> Self {
        let mut env = Self::prepare(Some(program.to_owned())).await;
        env.extra_env = extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.with_daemon()
    }

    pub async fn prepare(claude: Option<PathBuf>) -> Self {
        let api = FakeApi::start().await.expect("fake api");
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        let work = work.canonicalize().expect("canonical work dir");
        let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()]).expect("claude home");
        let claude = claude.unwrap_or_else(|| {
            claude_bin().expect("claude binary (run scripts/install-claude.sh)")
        });
        Self {
            api,
            home,
            dir,
            work,
            claude,
            daemon: None,
            extra_env: Vec::new(),
        }
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("ccrmd.sock")
    }

    /// Environment for ccrmd and ccrm.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut v = claude_env(&self.api, self.home.path());
        v.push((
            "CCRM_RUNTIME_DIR".into(),
            self.runtime_dir().display().to_string(),
        ));
        v.push((
            "CCRM_STATE_DIR".into(),
            self.state_dir().display().to_string(),
        ));
        v.push(("CCRM_CLAUDE_BIN".into(), self.claude.display().to_string()));
        v.push((
            "XDG_CONFIG_HOME".into(),
            self.dir.path().join("config").display().to_string(),
        ));
        v.push(("CCRM_STOP_GRACE_SECS".into(), "3".into()));
        v.push(("CCRM_LOG".into(), "info".into()));
        v.extend(self.extra_env.iter().cloned());
        v
    }

    fn with_daemon(mut self) -> Self {
        self.daemon = Some(self.spawn_daemon().expect("ccrmd did not start"));
        self
    }

    /// Spawns ccrmd and waits (bounded) for its "ready" log line.
    pub fn spawn_daemon(&self) -> Result<Child, String> {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ccrmd"));
        cmd.envs(self.env_vars());
        testkit::process::spawn_ready(cmd, "ccrmd ready", "ccrmd", WAIT, None)
            .map(|(child, _)| child)
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().map(Child::id).expect("daemon running")
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.socket())
            .await
            .expect("connect to ccrmd")
    }

    pub async fn call(&self, cmd: Command) -> Result<Value, ccrm_daemon::client::ClientError> {
        tokio::time::timeout(WAIT, async { self.client().await.call(cmd).await })
            .await
            .expect("call timed out")
    }

    pub async fn start_session(&self, args: StartArgs) -> SessionInfo {
        let data = self
            .call(Command::SessionStart(args))
            .await
            .expect("session.start");
        serde_json::from_value(data).expect("session info")
    }

    pub async fn new_session(&self) -> SessionInfo {
        let info = self
            .start_session(StartArgs {
                cwd: self.work.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(
            info.state.as_str(),
            "idle",
            "session did not become idle: {info:?}"
        );
        info
    }

    pub async fn info(&self, session: &str) -> SessionInfo {
        let data = self
            .call(Command::SessionGet(::common::ipc::SessionRef {
                session: session.to_owned(),
            }))
            .await
            .expect("session.get");
        serde_json::from_value(data["session"].clone()).expect("info")
    }

    pub async fn status(&self) -> Value {
        self.call(Command::DaemonStatus(NoArgs {}))
            .await
            .expect("status")
    }

    /// Follows a session's events from `after` until `pred` matches one; returns every event
    /// seen up to and including it.
    pub async fn wait_for(
        &self,
        session: &str,
        after: u64,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Vec<Event> {
        let mut client = self.client().await;
        let mut seen = Vec::new();
        let fut = async {
            // The stream only ends when we stop reading; stop by returning from the callback
            // side: collect until the predicate matches, then drop the connection.
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let args = EventsArgs {
                session: session.to_owned(),
                after,
                limit: None,
                follow: true,
            };
            let stream = client.stream(Command::SessionEvents(args), move |ev| {
                let _ = tx.send(ev.clone());
            });
            tokio::pin!(stream);
            loop {
                tokio::select! {
                    r = &mut stream => panic!("event stream ended: {r:?}"),
                    Some(ev) = rx.recv() => {
                        let hit = pred(&ev);
                        seen.push(ev);
                        if hit { return; }
                    }
                }
            }
        };
        if tokio::time::timeout(WAIT, fut).await.is_err() {
            panic!(
                "timed out waiting for an event; saw: {:#?}",
                seen.iter().map(|e| &e.kind).collect::<Vec<_>>()
            );
        }
        seen
    }

    /// Waits for the turn result of prompt `prompt_id`.
    pub async fn wait_result(&self, session: &str, prompt_id: u64) -> Vec<Event> {
        self.wait_for(session, 0, |e| matches!(&e.kind, EventKind::TurnResult { prompt_id: Some(p), .. } if *p == prompt_id)).await
    }

    /// Runs the `ccrm` binary against this daemon.
    pub fn ccrm(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_ccrm"))
            .args(args)
            .envs(self.env_vars())
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .output()
            .expect("run ccrm")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A daemon started in the background by `ccrm daemon start` is not our child: find
        // it by its pidfile so a failing test does not leak it.
        if self.daemon.is_none()
            && let Some(pid) = std::fs::read_to_string(self.runtime_dir().join("ccrmd.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while nix::sys::signal::kill(pid, None).is_ok() && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(mut d) = self.daemon.take() {
            testkit::process::stop(&mut d, Duration::from_secs(15));
        }
    }
}

/// The result event of a list of events.
pub fn result_of(events: &[Event]) -> (bool, Option<String>, String) {
    events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            EventKind::TurnResult {
                is_error,
                text,
                subtype,
                ..
            } => Some((*is_error, text.clone(), subtype.clone())),
            _ => None,
        })
        .expect("a turn result")
}

/// True while a process with this pid exists (and is not a zombie we could reap).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3 is the state; Z = zombie (dead, waiting for its parent).
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is gone.
pub async fn wait_gone(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
