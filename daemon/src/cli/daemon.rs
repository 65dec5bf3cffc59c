//! `ccrm daemon start|stop|status`: managing ccrmd itself (`install`/`uninstall` are in
//! [`super::service`]). `start` spawns `ccrmd` detached,
//! in its own process group with its log in the state dir, and waits until it answers;
//! `stop` asks it to stop and waits for the process to go; `status` reports it, or exit
//! status 3 when it is not running.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::ipc::{Command, DaemonStatus, NoArgs};

use super::args::{Cli, DaemonCmd};
use super::call::{Failure, decode, load_config, socket_path};
use super::output::print_json;
use crate::client::{Client, ClientError};
use crate::config::Config;

/// Runs one `ccrm daemon` subcommand.
pub(super) async fn run(cli: &Cli, cmd: &DaemonCmd) -> Result<ExitCode, Failure> {
    let socket = socket_path(cli)?;
    match cmd {
        DaemonCmd::Status => status(cli, &socket).await,
        DaemonCmd::Stop => stop(cli, &socket).await,
        DaemonCmd::Start { workers } => start(cli, &socket, *workers).await,
        DaemonCmd::Install(args) => super::service::install(cli, args).await,
        DaemonCmd::Uninstall(args) => super::service::uninstall(cli, args).await,
    }
}

/// `ccrm daemon status`: the daemon's status, or exit status 3 when it is not running.
async fn status(cli: &Cli, socket: &Path) -> Result<ExitCode, Failure> {
    match Client::connect(socket).await {
        Ok(mut c) => {
            let data = c.call(Command::DaemonStatus(NoArgs {})).await?;
            if cli.json {
                print_json(&data);
            } else {
                print_status(&decode(data)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::NotRunning { .. }) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"running": false, "socket": socket})
                );
            } else {
                println!(
                    "ccrmd is not running (socket {}); start it with `ccrm daemon start`",
                    socket.display()
                );
            }
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints a running daemon's status, warning when it speaks another protocol than this
/// `ccrm`.
fn print_status(st: &DaemonStatus) {
    println!(
        "ccrmd {} running (pid {}, protocol {})",
        st.version, st.pid, st.protocol
    );
    println!("  socket:    {}", st.socket.display());
    println!("  state dir: {}", st.state_dir.display());
    if let Some(b) = &st.claude_bin {
        println!("  claude:    {}", b.display());
    }
    let counts: Vec<String> = st
        .sessions
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    println!(
        "  sessions:  {}",
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        }
    );
    println!("  pending approvals: {}", st.pending_approvals);
    let e = &st.executions;
    println!(
        "  executions: {} running, {} queued ({} workers, queue up to {})",
        e.running, e.queued, e.workers, e.queue_max
    );
    if st.protocol != common::IPC_PROTOCOL_VERSION {
        println!(
            "  warning: this ccrm speaks protocol {}; restart the daemon (`ccrm daemon stop && ccrm daemon start`)",
            common::IPC_PROTOCOL_VERSION
        );
    }
}

/// `ccrm daemon stop`: asks the daemon to stop and waits (60 s at most) for its process to
/// go; sessions get their grace period first.
async fn stop(cli: &Cli, socket: &Path) -> Result<ExitCode, Failure> {
    let mut c = match Client::connect(socket).await {
        Ok(c) => c,
        Err(ClientError::NotRunning { .. }) => {
            println!("ccrmd is not running");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let st: DaemonStatus = decode(c.call(Command::DaemonStatus(NoArgs {})).await?)?;
    c.call(Command::DaemonStop(NoArgs {})).await?;
    // Wait for the process to go (sessions get their grace period first).
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = nix::unistd::Pid::from_raw(st.pid as i32);
    while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if nix::sys::signal::kill(pid, None).is_ok() {
        return Err(anyhow::anyhow!("ccrmd (pid {}) is still running after 60 s", st.pid).into());
    }
    if cli.json {
        println!("{}", serde_json::json!({"stopped": true, "pid": st.pid}));
    } else {
        println!("ccrmd stopped (pid {})", st.pid);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ccrm daemon start`: starts ccrmd in the background unless it already runs.
async fn start(cli: &Cli, socket: &Path, workers: Option<usize>) -> Result<ExitCode, Failure> {
    if let Ok(mut c) = Client::connect(socket).await {
        let st: DaemonStatus = decode(c.call(Command::DaemonStatus(NoArgs {})).await?)?;
        println!("ccrmd is already running (pid {})", st.pid);
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = load_config(cli)?;
    let pid = start_background(cli, &cfg, socket, workers).await?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"started": true, "pid": pid, "socket": socket, "log": cfg.log_path()})
        );
    } else {
        println!(
            "ccrmd started (pid {pid}); log: {}",
            cfg.log_path().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Spawns `ccrmd` in the background and waits until it answers; returns its pid.
async fn start_background(
    cli: &Cli,
    cfg: &Config,
    socket: &Path,
    workers: Option<usize>,
) -> anyhow::Result<u32> {
    crate::fsutil::private_dir(&cfg.state_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(cfg.log_path())?;
    let mut cmd = std::process::Command::new(crate::up::find_bin("ccrmd")?);
    if let Some(c) = &cli.config {
        cmd.arg("--config").arg(c);
    }
    if let Some(n) = workers {
        cmd.arg("--workers").arg(n.to_string());
    }
    if cli.socket.is_some() {
        // The socket lives in the runtime dir; keep the daemon on the one we will poll.
        if let Some(dir) = socket.parent() {
            cmd.arg("--runtime-dir").arg(dir);
        }
    }
    // Not killed when `ccrm` exits: the daemon lives on in its own process group.
    let mut child = tokio::process::Command::from(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    crate::up::wait_until("ccrmd", &mut child, &cfg.log_path(), || async {
        match Client::connect(socket).await {
            Ok(mut c) => c.call(Command::DaemonStatus(NoArgs {})).await.is_ok(),
            Err(_) => false,
        }
    })
    .await?;
    Ok(pid)
}
