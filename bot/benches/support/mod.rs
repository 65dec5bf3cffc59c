//! What the bot's benches share: percentiles, process figures from `/proc` (RSS, CPU
//! time), the `ccrm-bot` binary started on a fresh data dir, and a fake daemon's link;
//! `fleet.rs`: the fake-daemon load generator (deltas streamed on a link, timed to acks);
//! `ccrmd.rs`: the real ccrmd linked to a bot, and a follower of a session's SSE turns.

#![allow(dead_code)] // each bench uses its own part of this

pub mod ccrmd;
pub mod fleet;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use common::ids::{DaemonId, SessionId};
use common::link::{DaemonMsg, HubMsg, LINK_PROTOCOL_VERSION};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Bound for every wait.
pub const WAIT: Duration = Duration::from_secs(120);

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

/// A process's resident set split as `/proc` reports it, KiB: anonymous memory (heap,
/// SQLite's page caches), file pages mapped (the binary, SQLite's memory map of the
/// database) and shared memory (the WAL index).
pub fn rss_parts(pid: u32) -> anyhow::Result<[u64; 3]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| name.to_owned())
    };
    Ok([field("RssAnon:")?, field("RssFile:")?, field("RssShmem:")?])
}

/// A process's user + system CPU time so far.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// This machine's load averages (1, 5 and 15 minutes) as a note for a bench's output, so
/// a figure says how busy the machine was when it was taken.
pub fn load_note() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "load average unknown".to_owned(),
        |l| {
            let avg: Vec<&str> = l.split_whitespace().take(3).collect();
            format!("load average {}", avg.join(" "))
        },
    )
}

/// `MB` with two decimals.
pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The `ccrm-bot` binary on a data dir, stopped with SIGTERM when dropped.
pub struct BotProcess {
    pub child: Child,
    pub addr: String,
}

impl BotProcess {
    /// Starts the binary on `data_dir` (listening on port 0) and waits for its
    /// "listening" line.
    pub fn start(data_dir: &Path, config_home: &Path) -> anyhow::Result<Self> {
        Self::start_on(data_dir, config_home, None)
    }

    /// [`BotProcess::start`] on database `db_url` (a PostgreSQL URL; `None`: SQLite in
    /// `data_dir`).
    pub fn start_on(
        data_dir: &Path,
        config_home: &Path,
        db_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm-bot"))
            .env("CCRM_BOT_LISTEN", "127.0.0.1:0")
            .env("CCRM_BOT_DATA_DIR", data_dir)
            .env("XDG_CONFIG_HOME", config_home)
            .env("CCRM_LOG", "warn,ccrm_bot=info")
            .env("NO_COLOR", "1")
            .envs(db_url.map(|u| ("CCRM_BOT_DATABASE_URL", u)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ccrm-bot")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ccrm-bot listening") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line);
                    }
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("[ccrm-bot] {line}");
                }
            }
        });
        let mut bot = Self {
            child,
            addr: String::new(),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .context("ccrm-bot did not start")?;
        bot.addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .context("no addr= in the listening line")?
            .to_owned();
        Ok(bot)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("ccrm-bot did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.stop();
        }
    }
}

/// A fake daemon's WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Dials `/ws/daemon` with `key`, says hello as `daemon` with one idle session, and waits
/// for the welcome; returns the socket and the acked seq.
pub async fn link(
    addr: &str,
    key: &str,
    daemon: &DaemonId,
    session: SessionId,
) -> anyhow::Result<(Ws, u64)> {
    let mut req = format!("ws://{addr}/ws/daemon").into_client_request()?;
    req.headers_mut().insert("x-api-key", key.parse()?);
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(req, None, true),
    )
    .await
    .context("connecting timed out")??;
    let info: common::ipc::SessionInfo = serde_json::from_value(serde_json::json!({
        "id": session, "cwd": "/bench", "permission_mode": "default", "state": "idle",
        "created_ms": 1, "last_event_ms": 1,
    }))?;
    let hello = DaemonMsg::Hello {
        protocol: LINK_PROTOCOL_VERSION,
        daemon_id: daemon.clone(),
        hostname: "bench".into(),
        version: "0".into(),
        sessions: vec![info],
        features: Vec::new(),
    };
    ws.send(Message::text(serde_json::to_string(&hello)?))
        .await?;
    match next_hub_msg(&mut ws).await? {
        HubMsg::Welcome { acked_seq, .. } => Ok((ws, acked_seq)),
        other => bail!("expected a welcome, got {other:?}"),
    }
}

/// The next text frame from the bot, parsed (bounded).
pub async fn next_hub_msg(ws: &mut Ws) -> anyhow::Result<HubMsg> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("the bot went silent")?
            .context("the bot closed the link")??;
        if let Message::Text(t) = msg {
            return Ok(serde_json::from_str(t.as_str())?);
        }
    }
}

/// Whether the bench was asked for (`cargo bench` passes `--bench`; `cargo test
/// --benches` passes nothing and wants a quick no-op) or forced by `env`.
pub fn asked_for(env: &str) -> bool {
    std::env::args().any(|a| a == "--bench") || std::env::var_os(env).is_some()
}

/// A positive number from the environment, else `default`.
pub fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => {
            let n: u64 = v
                .trim()
                .replace('_', "")
                .parse()
                .with_context(|| format!("{name}={v}"))?;
            ensure!(n > 0, "{name} must be positive");
            Ok(n)
        }
        Err(_) => Ok(default),
    }
}

/// The fake Messages API on a thread and runtime of its own, as the real API is another
/// machine: its work (reading each turn's whole conversation, ~56 KB of JSON) must not
/// queue behind the bot's tasks on the bench's runtime, nor the bot's behind it, which
/// would charge the bot's path alone for sharing its two workers with the API. The
/// server stops when this is dropped.
pub struct ApiApart {
    /// The API's handle (its records are read from any thread).
    pub api: testkit::FakeApi,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts [`ApiApart`].
pub fn api_apart() -> anyhow::Result<ApiApart> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("fake-api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(anyhow::Error::from(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match testkit::FakeApi::start().await {
                    Ok(api) => {
                        let _ = tx.send(Ok(api.clone()));
                        let _ = stopped.await;
                        drop(api);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })
        .context("starting the fake API's thread")?;
    let api = rx
        .recv_timeout(WAIT)
        .context("the fake API's thread did not start")??;
    Ok(ApiApart {
        api,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl Drop for ApiApart {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
