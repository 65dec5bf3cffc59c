//! `ccrm up`: the all-in-one mode. Starts `ccrm-bot` and `ccrmd` wired together — a daemon
//! key and a user token are generated once and kept (0600) in the data dir — prints the API
//! URL and token, and keeps both running until Ctrl-C or SIGTERM, then stops them in order.
//!
//! `--demo` also serves the demo crate's scripted model on loopback and points the daemon's
//! Claude Code at it (with a throwaway HOME), so someone without an Anthropic account sees
//! the whole thing work. It says so loudly: nothing in demo mode talks to Claude.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fsutil::private_dir;

/// Flags of `ccrm up`.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Serve a scripted demo model instead of Claude (no Anthropic account needed).
    #[arg(long)]
    pub demo: bool,
    /// Address for the bot's API.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Where the bot's database, the keys and the logs live [default: $XDG_DATA_HOME/ccrm/up].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Credentials {
    daemon_key: String,
    user_token: String,
}

fn data_home() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(v) if Path::new(&v).is_absolute() => PathBuf::from(v),
        _ => std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("/"), PathBuf::from)
            .join(".local/share"),
    }
}

/// Finds a sibling binary of this executable, else one on `PATH`.
pub fn find_bin(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        let cand = dir.join(name);
        if cand.is_file() {
            return Ok(cand);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join(name);
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    bail!(
        "cannot find the {name} binary next to ccrm or on PATH (build it with `cargo build --release`)"
    )
}

async fn create_key(bot: &Path, bot_dir: &Path, name: &str, kind: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(bot)
        .args(["keys", "create", name, "--kind", kind, "--json"])
        .env("CCRM_BOT_DATA_DIR", bot_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run ccrm-bot keys create")?;
    if !out.status.success() {
        bail!(
            "ccrm-bot keys create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("unexpected output of ccrm-bot keys create")?;
    v["secret"]
        .as_str()
        .map(str::to_owned)
        .context("no secret in ccrm-bot keys create output")
}

async fn credentials(bot: &Path, dir: &Path) -> anyhow::Result<Credentials> {
    let path = dir.join("credentials.json");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(c) = serde_json::from_str::<Credentials>(&text)
    {
        return Ok(c);
    }
    let bot_dir = dir.join("bot");
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let creds = Credentials {
        daemon_key: create_key(bot, &bot_dir, &format!("up-daemon-{suffix}"), "daemon").await?,
        user_token: create_key(bot, &bot_dir, &format!("up-user-{suffix}"), "user").await?,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::io::Write::write_all(&mut f, serde_json::to_string_pretty(&creds)?.as_bytes())?;
    Ok(creds)
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?)
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
    child: &mut tokio::process::Child,
    log: &Path,
    mut ready: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
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
        if tokio::time::Instant::now() > deadline {
            bail!("{what} did not come up within 30 s; see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop(child: &mut tokio::process::Child, what: &str) {
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

/// Runs `ccrm up`.
pub async fn run(args: &UpArgs, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| data_home().join("ccrm").join("up"));
    private_dir(&dir)?;
    let bot_bin = find_bin("ccrm-bot")?;
    let ccrmd_bin = find_bin("ccrmd")?;
    let creds = credentials(&bot_bin, &dir).await?;

    // The demo model, in this process, for as long as `up` runs.
    let mut demo_env: Vec<(String, String)> = Vec::new();
    let mut _demo_guard = None;
    if args.demo {
        let api = demo::FakeApi::start()
            .await
            .context("cannot start the demo model")?;
        let work = dir.join("demo-work");
        private_dir(&work)?;
        let home = demo::ClaudeHome::new(demo::TEST_API_KEY, &[work.as_path()])?;
        demo_env = demo::claude_env(&api, home.path());
        demo_env.push((
            "CCRM_RUNTIME_DIR".into(),
            dir.join("demo-run").display().to_string(),
        ));
        demo_env.push((
            "CCRM_STATE_DIR".into(),
            dir.join("demo-state").display().to_string(),
        ));
        _demo_guard = Some((api, home, work));
    }

    let bot_log = dir.join("bot.log");
    let mut bot = tokio::process::Command::new(&bot_bin)
        .env("CCRM_BOT_LISTEN", args.listen.to_string())
        .env("CCRM_BOT_DATA_DIR", dir.join("bot"))
        .stdin(Stdio::null())
        .stdout(log_file(&bot_log)?)
        .stderr(log_file(&bot_log)?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start ccrm-bot")?;
    // The bot logs the address it bound (which is how port 0 works here too).
    let log_start = std::fs::metadata(&bot_log).map_or(0, |m| m.len());
    let mut bound: Option<SocketAddr> = None;
    let found = wait_until("ccrm-bot", &mut bot, &bot_log, || {
        let addr = bound_addr(&bot_log, log_start);
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
    let listen = bound.unwrap_or(args.listen);

    let daemon_log = dir.join("ccrmd.log");
    let mut cmd = tokio::process::Command::new(&ccrmd_bin);
    cmd.env("CCRM_BOT_URL", format!("ws://{listen}"))
        .env("CCRM_BOT_API_KEY", &creds.daemon_key)
        .envs(demo_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log_file(&daemon_log)?)
        .stderr(log_file(&daemon_log)?)
        .kill_on_drop(true);
    let mut daemon = match cmd.spawn() {
        Ok(d) => d,
        Err(e) => {
            stop(&mut bot, "ccrm-bot").await;
            return Err(anyhow::Error::from(e).context("cannot start ccrmd"));
        }
    };
    let socket = demo_env
        .iter()
        .find(|(k, _)| k == "CCRM_RUNTIME_DIR")
        .map(|(_, v)| PathBuf::from(v).join("ccrmd.sock"));
    let socket = match socket {
        Some(s) => s,
        None => crate::config::Config::load(&Default::default())?.socket_path(),
    };
    let sock = socket.clone();
    let up = wait_until("ccrmd", &mut daemon, &daemon_log, || {
        let s = sock.clone();
        async move { crate::client::Client::connect(&s).await.is_ok() }
    })
    .await;
    if let Err(e) = up {
        stop(&mut bot, "ccrm-bot").await;
        return Err(e);
    }

    let url = format!("http://{listen}");
    if json {
        println!(
            "{}",
            serde_json::json!({"url": url, "token": creds.user_token, "socket": socket, "demo": args.demo, "data_dir": dir})
        );
    } else {
        if args.demo {
            println!("==================================================================");
            println!("  DEMO MODE: sessions talk to a scripted fake model, not to Claude.");
            println!("  No Anthropic account is used; replies are canned (\"Echo: ...\").");
            println!("==================================================================");
        }
        println!("ccrm is up");
        println!("  API:    {url}   (OpenAPI: {url}/api/openapi.json)");
        println!("  token:  {}", creds.user_token);
        println!(
            "  logs:   {} and {}",
            bot_log.display(),
            daemon_log.display()
        );
        println!();
        println!("  try:    curl -H \"Authorization: Bearer $TOKEN\" {url}/api/sessions");
        if args.demo {
            println!("          export CCRM_SOCKET={}", socket.display());
            println!(
                "          ccrm start --cwd {} && ccrm list",
                dir.join("demo-work").display()
            );
        } else {
            println!("          ccrm start && ccrm list");
        }
        println!("  stop:   Ctrl-C");
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted".to_owned(),
        _ = term.recv() => "terminated".to_owned(),
        s = bot.wait() => format!("ccrm-bot exited ({})", s.map_or_else(|e| e.to_string(), |s| s.to_string())),
        s = daemon.wait() => format!("ccrmd exited ({})", s.map_or_else(|e| e.to_string(), |s| s.to_string())),
    };
    eprintln!("stopping ({reason})...");
    stop(&mut daemon, "ccrmd").await;
    stop(&mut bot, "ccrm-bot").await;
    eprintln!("stopped");
    Ok(std::process::ExitCode::SUCCESS)
}
