//! `ccrm up`: the all-in-one mode. Starts `ccrm-bot` and `ccrmd` wired together — a daemon
//! key and a user token are generated once and kept (0600) in the data dir — prints the
//! dashboard and API URLs and the token, and keeps both running until Ctrl-C or SIGTERM,
//! then stops them in order. A crashed bot or daemon is restarted with backoff while the
//! other keeps running (`procs`); `banner` prints commands that work as shown.
//!
//! `--demo` also serves the demo crate's scripted model on loopback and points the daemon's
//! Claude Code at it (with a throwaway HOME), so someone without an Anthropic account sees
//! the whole thing work. It says so loudly: nothing in demo mode talks to Claude.

mod banner;
mod procs;

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub(crate) use procs::wait_until;

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
    let work = dir.join("demo-work");
    if args.demo {
        let api = demo::FakeApi::start()
            .await
            .context("cannot start the demo model")?;
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
        _demo_guard = Some((api, home));
    }
    let socket = match demo_env.iter().find(|(k, _)| k == "CCRM_RUNTIME_DIR") {
        Some((_, v)) => PathBuf::from(v).join("ccrmd.sock"),
        None => crate::config::Config::load(&Default::default())?.socket_path(),
    };

    let mut launch = procs::Launch {
        bot_bin,
        ccrmd_bin,
        bot_dir: dir.join("bot"),
        bot_log: dir.join("bot.log"),
        daemon_log: dir.join("ccrmd.log"),
        daemon_env: Vec::new(),
        socket: socket.clone(),
    };
    let (mut bot, listen) = procs::start_bot(&launch, args.listen).await?;
    launch.daemon_env = vec![
        ("CCRM_BOT_URL".into(), format!("ws://{listen}")),
        ("CCRM_BOT_API_KEY".into(), creds.daemon_key.clone()),
    ];
    launch.daemon_env.extend(demo_env);
    let mut daemon = match procs::start_daemon(&launch).await {
        Ok(d) => d,
        Err(e) => {
            procs::stop(&mut bot.child, "ccrm-bot").await;
            return Err(e);
        }
    };

    let url = format!("http://{listen}");
    if json {
        let prompts: Vec<&str> = if args.demo {
            demo::prompts::PROMPTS.iter().map(|(p, _)| *p).collect()
        } else {
            Vec::new()
        };
        println!(
            "{}",
            serde_json::json!({
                "url": url, "dashboard": format!("{url}/"), "token": creds.user_token,
                "socket": socket, "demo": args.demo, "data_dir": dir,
                "bot_pid": bot.pid(), "daemon_pid": daemon.pid(), "demo_prompts": prompts,
            })
        );
    } else {
        banner::Banner {
            listen,
            token: &creds.user_token,
            bot_log: &launch.bot_log,
            daemon_log: &launch.daemon_log,
            demo: args.demo,
            socket: args.demo.then_some(socket.as_path()),
            demo_work: &work,
        }
        .print();
    }

    let reason = procs::supervise(&launch, listen, &mut bot, &mut daemon).await?;
    eprintln!("stopping ({reason})...");
    procs::stop(&mut daemon.child, "ccrmd").await;
    procs::stop(&mut bot.child, "ccrm-bot").await;
    eprintln!("stopped");
    Ok(std::process::ExitCode::SUCCESS)
}
