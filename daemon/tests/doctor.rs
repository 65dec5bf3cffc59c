//! `ccrm doctor` against real parts: a real `ccrm-bot` process, a real `ccrmd` linked to
//! it, the pinned Claude Code CLI. A healthy setup passes every check (exit 0); then, one
//! at a time, tmux missing from PATH (a warning), a daemon whose key the bot refuses, a
//! daemon that is down and a bot that is down each give their finding, with a fix, and
//! exit 1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, WAIT};
use serde_json::Value;

/// The bot binary next to `ccrm` (the workspace build makes both).
fn bot_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_ccrm")).with_file_name("ccrm-bot");
    assert!(p.exists(), "build the workspace first: {}", p.display());
    p
}

struct Setup {
    env: Env,
    bot: Option<Child>,
    bot_addr: String,
    key: String,
}

impl Setup {
    async fn start() -> Self {
        let env = Env::prepare(None).await;
        let data = env.dir.path().join("bot");
        let out = Command::new(bot_bin())
            .args(["keys", "create", "laptop", "--kind", "daemon", "--json"])
            .env("CCRM_BOT_DATA_DIR", &data)
            .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
            .output()
            .expect("keys create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        let key = v["secret"].as_str().expect("secret").to_owned();
        let mut cmd = Command::new(bot_bin());
        cmd.env("CCRM_BOT_LISTEN", "127.0.0.1:0")
            .env("CCRM_BOT_DATA_DIR", &data)
            .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
            .env("NO_COLOR", "1");
        let (bot, line) =
            testkit::process::spawn_ready(cmd, "ccrm-bot listening", "bot", WAIT, None)
                .expect("ccrm-bot starts");
        let bot_addr = testkit::process::strip_ansi(&line)
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr=").map(str::to_owned))
            .expect("addr");
        Self {
            env,
            bot: Some(bot),
            bot_addr,
            key,
        }
    }

    /// The environment of the daemon and of `ccrm doctor` (the same config).
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.env.env_vars();
        v.push(("CCRM_BOT_URL".into(), format!("ws://{}", self.bot_addr)));
        v.push(("CCRM_BOT_API_KEY".into(), self.key.clone()));
        v
    }

    fn start_daemon(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccrmd"));
        cmd.envs(self.vars());
        let (child, _) = testkit::process::spawn_ready(cmd, "ccrmd ready", "ccrmd", WAIT, None)
            .expect("ccrmd starts");
        self.env.daemon = Some(child);
    }

    fn stop_daemon(&mut self) {
        if let Some(mut d) = self.env.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    /// `ccrm --json doctor`: exit code and the findings by check name.
    fn doctor(&self, path: Option<&str>) -> (i32, Value) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccrm"));
        cmd.args(["--json", "doctor"])
            .envs(self.vars())
            .stdin(Stdio::null());
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let out = cmd.output().expect("ccrm doctor");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "not JSON: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let mut by_check = serde_json::Map::new();
        for f in report["findings"].as_array().expect("findings") {
            by_check.insert(f["check"].as_str().expect("check").to_owned(), f.clone());
        }
        assert_eq!(
            report["ok"],
            out.status.success(),
            "ok matches the exit code"
        );
        (out.status.code().unwrap_or(-1), Value::Object(by_check))
    }

    /// Runs doctor until `check` has `status` (the daemon links and retries on its own
    /// schedule); returns the last run.
    async fn doctor_until(&self, check: &str, status: &str) -> (i32, Value) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (code, f) = self.doctor(None);
            if f[check]["status"] == status {
                return (code, f);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{check} never became {status}: {f:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut b) = self.bot.take() {
            let _ = b.kill();
            let _ = b.wait();
        }
    }
}

fn status(f: &Value, check: &str) -> String {
    f[check]["status"].as_str().unwrap_or("missing").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_setup_and_explains_each_broken_one() {
    let mut s = Setup::start().await;
    s.start_daemon();

    // Healthy: every check passes, exit 0.
    let (code, f) = s.doctor_until("bot_link", "ok").await;
    for check in [
        "config",
        "claude",
        "credentials",
        "tmux",
        "dirs",
        "disk",
        "daemon",
        "bot_link",
        "bot",
        "clock",
    ] {
        assert_eq!(status(&f, check), "ok", "{check}: {f:#}");
    }
    assert_eq!(code, 0);
    assert!(
        f["claude"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("2.1.328 (the pinned version)")),
        "{f:#}"
    );
    assert!(
        f["bot"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("plain, no TLS"))
    );
    // The human form says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_ccrm"))
        .arg("doctor")
        .envs(s.vars())
        .output()
        .expect("ccrm doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("everything looks fine"),
        "{text}"
    );
    assert!(text.contains("[ok  ] bot_link"), "{text}");

    // No tmux on PATH: a warning with the install command; nothing else breaks.
    let bare = tempfile::tempdir().expect("tempdir");
    let node = which("node").expect("node (claude runs on it)");
    std::os::unix::fs::symlink(&node, bare.path().join("node")).expect("symlink node");
    let (code, f) = s.doctor(Some(bare.path().to_str().expect("utf8")));
    assert_eq!(status(&f, "tmux"), "warn", "{f:#}");
    assert!(
        f["tmux"]["fix"]
            .as_str()
            .is_some_and(|x| x.contains("apt-get install tmux"))
    );
    assert_eq!(status(&f, "claude"), "ok", "{f:#}");
    assert_eq!(code, 0, "a missing tmux only costs `ccrm attach`");

    // A key the bot refuses: the link check fails and says how to get a key.
    s.stop_daemon();
    s.key = "ccrm_daemon_00000000000000000000000000000000".to_owned();
    s.start_daemon();
    let (code, f) = s.doctor_until("bot_link", "fail").await;
    assert_eq!(code, 1);
    let detail = f["bot_link"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("401"), "{f:#}");
    assert!(
        f["bot_link"]["fix"]
            .as_str()
            .is_some_and(|x| x.contains("ccrm-bot keys create")),
        "{f:#}"
    );
    assert_eq!(status(&f, "daemon"), "ok");

    // The daemon down: that is the failure, with how to start it.
    s.stop_daemon();
    let (code, f) = s.doctor(None);
    assert_eq!(code, 1);
    assert_eq!(status(&f, "daemon"), "fail", "{f:#}");
    assert!(
        f["daemon"]["fix"]
            .as_str()
            .is_some_and(|x| x.contains("ccrm daemon start"))
    );
    assert_eq!(status(&f, "bot_link"), "skip");
    assert_eq!(status(&f, "bot"), "ok", "the bot itself still answers");

    // The bot down too.
    if let Some(mut b) = s.bot.take() {
        let _ = b.kill();
        let _ = b.wait();
    }
    let (code, f) = s.doctor(None);
    assert_eq!(code, 1);
    assert_eq!(status(&f, "bot"), "fail", "{f:#}");
    assert!(
        f["bot"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot connect")),
        "{f:#}"
    );
    assert_eq!(status(&f, "clock"), "skip");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
