//! The two children of `ccrm up` and their supervision: starting `ccrm-bot` (and learning
//! the address it bound from its log) and `ccrmd` (ready when its socket answers), each
//! waited for with a bound; and [`supervise`], which restarts whichever one dies, with
//! capped exponential backoff, while the other keeps running.
//!
//! A bot crash therefore ends no session: ccrmd and its claude children go on, the events
//! wait in the daemon's spool, and the uplink reconnects to the restarted bot, which stores
//! each event once. A daemon crash ends its sessions (their children die with it), but the
//! restarted daemon lists them as stopped and resumable, and the bot keeps serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// First restart delay.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before dying starts again at [`BACKOFF_MIN`].
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// How to start the bot and the daemon (the same way every time).
pub(super) struct Launch {
    pub bot_bin: PathBuf,
    pub ccrmd_bin: PathBuf,
    /// The bot's data dir.
    pub bot_dir: PathBuf,
    pub bot_log: PathBuf,
    pub daemon_log: PathBuf,
    /// Environment of ccrmd (bot URL, key, demo settings).
    pub daemon_env: Vec<(String, String)>,
    /// The daemon's control socket.
    pub socket: PathBuf,
}

/// A running child and what its restarts need.
pub(super) struct Proc {
    pub what: &'static str,
    pub child: Child,
    started: Instant,
    delay: Duration,
}

impl Proc {
    fn new(what: &'static str, child: Child) -> Self {
        Self {
            what,
            child,
            started: Instant::now(),
            delay: BACKOFF_MIN,
        }
    }

    /// The child's pid (0 once it has been reaped).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

pub(super) fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?)
}

/// Starts the bot on `listen` and waits until `/healthz` answers on the address it bound.
pub(super) async fn start_bot(
    l: &Launch,
    listen: SocketAddr,
) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut bot = Command::new(&l.bot_bin)
        .env("CCRM_BOT_LISTEN", listen.to_string())
        .env("CCRM_BOT_DATA_DIR", &l.bot_dir)
        .stdin(Stdio::null())
        .stdout(log_file(&l.bot_log)?)
        .stderr(log_file(&l.bot_log)?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start ccrm-bot")?;
    // The bot logs the address it bound (which is how port 0 works here too).
    let log_start = std::fs::metadata(&l.bot_log).map_or(0, |m| m.len());
    let mut bound: Option<SocketAddr> = None;
    let found = wait_until("ccrm-bot", &mut bot, &l.bot_log, || {
        let addr = bound_addr(&l.bot_log, log_start);
        if addr.is_some() {
            bound = addr;
        }
        let ready = bound;
        async move {
            match ready {
                Some(a) => healthy(a).await,
                None => false,
            }
        }
    })
    .await;
    if let Err(e) = found {
        stop(&mut bot, "ccrm-bot").await;
        return Err(e);
    }
    Ok((Proc::new("ccrm-bot", bot), bound.unwrap_or(listen)))
}

/// Starts ccrmd and waits until its socket answers.
pub(super) async fn start_daemon(l: &Launch) -> anyhow::Result<Proc> {
    let mut daemon = Command::new(&l.ccrmd_bin)
        .envs(l.daemon_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log_file(&l.daemon_log)?)
        .stderr(log_file(&l.daemon_log)?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start ccrmd")?;
    let sock = l.socket.clone();
    let up = wait_until("ccrmd", &mut daemon, &l.daemon_log, || {
        let s = sock.clone();
        async move { crate::client::Client::connect(&s).await.is_ok() }
    })
    .await;
    if let Err(e) = up {
        stop(&mut daemon, "ccrmd").await;
        return Err(e);
    }
    Ok(Proc::new("ccrmd", daemon))
}

/// Keeps both running until Ctrl-C or SIGTERM, restarting whichever dies (the bot on the
/// address it first bound); returns why it stopped.
pub(super) async fn supervise(
    l: &Launch,
    listen: SocketAddr,
    bot: &mut Proc,
    daemon: &mut Proc,
) -> anyhow::Result<String> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (which, status) = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok("interrupted".to_owned()),
            _ = term.recv() => return Ok("terminated".to_owned()),
            s = bot.child.wait() => ("bot", s),
            s = daemon.child.wait() => ("daemon", s),
        };
        let proc = if which == "bot" {
            &mut *bot
        } else {
            &mut *daemon
        };
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        // Keep trying (with growing pauses) until it is back or we are told to stop.
        loop {
            if proc.started.elapsed() > STABLE_AFTER {
                proc.delay = BACKOFF_MIN;
            }
            let wait = proc.delay;
            proc.delay = (proc.delay * 2).min(BACKOFF_MAX);
            eprintln!(
                "{} exited ({status}); restarting it in {:.1} s (the {} keeps running)",
                proc.what,
                wait.as_secs_f64(),
                if which == "bot" { "daemon" } else { "bot" }
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = tokio::signal::ctrl_c() => return Ok("interrupted".to_owned()),
                _ = term.recv() => return Ok("terminated".to_owned()),
            }
            let restarted = if which == "bot" {
                start_bot(l, listen).await.map(|(p, _)| p)
            } else {
                start_daemon(l).await
            };
            match restarted {
                Ok(mut fresh) => {
                    fresh.delay = proc.delay;
                    *proc = fresh;
                    eprintln!("{} restarted (pid {})", proc.what, proc.pid());
                    break;
                }
                Err(e) => {
                    eprintln!("{} did not come back: {e:#}", proc.what);
                }
            }
        }
    }
}

/// True once `GET /healthz` answers 200 on `addr`.
async fn healthy(addr: SocketAddr) -> bool {
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200")
}

/// The `addr=` of the bot's "listening" line written after byte `from` of its log.
fn bound_addr(log: &Path, from: u64) -> Option<SocketAddr> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(usize::try_from(from).ok()?..)?).into_owned();
    text.lines()
        .filter(|l| l.contains("ccrm-bot listening"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .and_then(|a| a.parse().ok())
        })
}

/// Waits (30 s at most) until `ready` holds, failing with the tail of `log` if `child`
/// exits first.
pub(crate) async fn wait_until<F, Fut>(
    what: &str,
    child: &mut Child,
    log: &Path,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!("{what} exited at start ({status}):\n{}", tail.join("\n"));
        }
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not come up within 30 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then SIGKILL after 30 s.
pub(super) async fn stop(child: &mut Child, what: &str) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        eprintln!("{what} did not stop in 30 s; killing it");
        let _ = child.kill().await;
    }
}
