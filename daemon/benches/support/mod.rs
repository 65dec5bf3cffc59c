//! What ccrmd's benches share: the real `ccrmd` started on a fresh directory, sessions,
//! percentiles and process figures from `/proc` (RSS, CPU time).

#![allow(dead_code)] // each bench uses its own part of this

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use ccrm_daemon::client::Client;
use common::ipc::{Command, SessionInfo, StartArgs};

/// The real ccrmd, stopped with SIGTERM when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}

/// Starts ccrmd on `dir` (runtime, state and config inside it) with `env` for its claude
/// children and waits for its ready line.
pub fn start_daemon(dir: &Path, env: &[(String, String)], claude: &Path) -> anyhow::Result<Daemon> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccrmd"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("CCRM_RUNTIME_DIR", dir.join("run"))
        .env("CCRM_STATE_DIR", dir.join("state"))
        .env("CCRM_CLAUDE_BIN", claude)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("CCRM_LOG", "warn,ccrm_daemon::lifecycle=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("ccrmd ready") => break,
            Some(_) => {}
            None => bail!("ccrmd exited at start"),
        }
    }
    // ccrmd logs warnings and errors only: show them, they explain a failed run.
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            eprintln!("ccrmd: {l}");
        }
    });
    Ok(Daemon {
        child,
        socket: dir.join("run/ccrmd.sock"),
    })
}

/// Starts a session in `cwd`.
pub async fn start_session(socket: &Path, cwd: &Path) -> anyhow::Result<SessionInfo> {
    let v = Client::connect(socket)
        .await?
        .call(Command::SessionStart(StartArgs {
            cwd: cwd.to_owned(),
            ..Default::default()
        }))
        .await?;
    Ok(serde_json::from_value(v)?)
}

/// A process's resident set, KiB.
pub fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

/// A process's user + system CPU time so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// The value at fraction `p` of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// MB from KiB.
pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// A positive number from the environment, else `default`.
pub fn env_num(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => {
            let n: usize = v
                .trim()
                .replace('_', "")
                .parse()
                .with_context(|| format!("{name}={v}"))?;
            anyhow::ensure!(n > 0, "{name} must be positive");
            Ok(n)
        }
        Err(_) => Ok(default),
    }
}
