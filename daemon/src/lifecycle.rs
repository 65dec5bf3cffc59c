//! Running ccrmd: private directories, the pidfile lock (one daemon per runtime dir), the
//! orphan sweep, the socket, signals, and the graceful shutdown that stops every child.
//!
//! This is also where the parts are wired together: the [`Daemon`] registry, the control
//! socket ([`crate::ipc`]) that serves it, and the bot [`crate::uplink`], which reaches the
//! registry only through the [`LinkTarget`] implemented here, so the registry and the uplink
//! do not know each other.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use common::ids::SessionId;
use common::ipc::{Command, ErrorBody, SessionInfo};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;
use tokio::net::UnixListener;
use tracing::{info, warn};

use crate::config::Config;
use crate::daemon::Daemon;
use crate::fsutil::private_dir;
use crate::session::{Ctx, SessionHandle};
use crate::spawn;
use crate::uplink::LinkTarget;

/// The held pidfile lock; released (and the file removed) on drop.
pub struct PidLock {
    lock: Option<Flock<std::fs::File>>,
    path: PathBuf,
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock.take());
    }
}

/// Takes the single-instance lock. A stale pidfile (its daemon died, even by `kill -9`)
/// does not block: the kernel released its lock with the process.
pub fn lock_pidfile(path: &Path) -> anyhow::Result<PidLock> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open pidfile {}", path.display()))?;
    let mut lock = match Flock::lock(file.try_clone()?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = text.trim();
            bail!(
                "ccrmd is already running (pid {}); stop it with `ccrm daemon stop`",
                if pid.is_empty() { "unknown" } else { pid }
            );
        }
        Err((_, errno)) => bail!("cannot lock pidfile {}: {errno}", path.display()),
    };
    lock.set_len(0)?;
    lock.rewind()?;
    writeln!(lock, "{}", std::process::id())?;
    lock.sync_data()?;
    Ok(PidLock {
        lock: Some(lock),
        path: path.to_owned(),
    })
}

/// Everything `run` needs besides the config.
pub struct RunOptions {
    /// Binary that understands the exec shim (normally `ccrmd` itself).
    pub shim: Option<PathBuf>,
}

/// Runs the daemon until SIGTERM/SIGINT or `daemon.stop`, then stops every session.
pub async fn run(cfg: Config, opts: RunOptions) -> anyhow::Result<()> {
    private_dir(&cfg.runtime_dir)?;
    private_dir(&cfg.state_dir)?;
    private_dir(&cfg.sessions_dir())?;
    let _lock = lock_pidfile(&cfg.pid_path())?;

    let claude_bin = spawn::find_claude(cfg.claude_bin.as_deref())?;
    let tag = spawn::daemon_tag(&cfg.state_dir);
    let swept = spawn::sweep_orphans(&format!("{tag}:"));
    if !swept.is_empty() {
        warn!(pids = ?swept, "killed processes left behind by an earlier ccrmd");
    }

    let socket = cfg.socket_path();
    // We hold the lock, so any socket file is a leftover.
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("cannot bind {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;

    let spool = match &cfg.bot_url {
        Some(_) => Some(Arc::new(
            crate::spool::Spool::open(&cfg.state_dir.join("spool"))
                .context("cannot open the event spool")?,
        )),
        None => None,
    };
    let daemon = Daemon::new(Ctx {
        cfg: cfg.clone(),
        claude_bin: claude_bin.clone(),
        shim: opts.shim,
        tag,
        spool: spool.clone(),
    });
    daemon.work().prepare()?;
    let (uplink_stop, uplink_stop_rx) = tokio::sync::watch::channel(false);
    let mut background = tokio::task::JoinSet::new();
    if let (Some(url), Some(key), Some(spool)) = (&cfg.bot_url, &cfg.bot_api_key, &spool) {
        let ucfg = crate::uplink::UplinkConfig::new(
            crate::uplink::daemon_ws_url(url),
            key.0.clone(),
            crate::uplink::daemon_id(&cfg.state_dir)?,
            cfg.hostname.clone(),
        );
        let urls: Vec<String> = cfg
            .bot_urls()
            .iter()
            .map(|u| crate::uplink::daemon_ws_url(u))
            .collect();
        let ucfg = crate::uplink::UplinkConfig {
            ca_file: cfg.bot_ca_file.clone(),
            url: urls.first().cloned().unwrap_or(ucfg.url.clone()),
            urls,
            ..ucfg
        };
        info!(bot = %ucfg.url, daemon_id = %ucfg.daemon_id, "uplink enabled");
        let link = Arc::new(crate::uplink::LinkState {
            cfg: ucfg,
            spool: spool.clone(),
            connected: std::sync::atomic::AtomicBool::new(false),
            last_error: std::sync::Mutex::default(),
        });
        let status = link.clone();
        daemon.set_uplink_status(move || status.status());
        background.spawn(crate::uplink::run(link, daemon.clone(), uplink_stop_rx));
        // Group fsyncs: at most one per 100 ms instead of one per event, each on a blocking
        // thread so the runtime's only thread (the sessions, the socket) never waits on disk.
        let s = spool.clone();
        let mut stop = uplink_stop.subscribe();
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let s = s.clone();
                        match tokio::task::spawn_blocking(move || s.sync()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => warn!(error = %e, "spool fsync failed"),
                            Err(e) => warn!(error = %e, "spool fsync task failed"),
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        });
    }
    info!(socket = %socket.display(), claude = %claude_bin.display(), pid = std::process::id(), "ccrmd ready");

    let server = tokio::spawn(crate::ipc::serve(listener, daemon.clone()));
    let mut stop = daemon.shutdown_requested();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
        _ = stop.changed() => info!("daemon.stop: shutting down"),
    }
    daemon.request_shutdown();
    let _ = std::fs::remove_file(&socket);
    daemon.shutdown_sessions().await;
    daemon.work().executions.shutdown().await;
    if let Some(spool) = &spool {
        // Give the uplink a moment to deliver the last events (the spool keeps the rest).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while spool.acked() < spool.last_seq() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = spool.sync() {
            warn!(error = %e, "spool fsync failed");
        }
    }
    uplink_stop.send_replace(true);
    while background.join_next().await.is_some() {}
    let _ = server.await;
    info!("ccrmd stopped");
    Ok(())
}

/// The bot drives the daemon through the uplink much as the CLI does through the socket.
impl LinkTarget for Daemon {
    fn sessions(&self) -> Vec<SessionInfo> {
        self.handles().iter().map(SessionHandle::info).collect()
    }

    fn session(&self, id: SessionId) -> Option<SessionInfo> {
        self.resolve(&id.to_string()).ok().map(|h| h.info())
    }

    fn streams(cmd: &Command) -> bool {
        Self::is_stream(cmd)
    }

    fn run(&self, cmd: Command) -> impl Future<Output = Result<Value, ErrorBody>> + Send {
        self.execute(cmd)
    }

    fn link_streams(cmd: &Command) -> bool {
        matches!(cmd, Command::ExecFollow(_))
    }

    fn stream(
        &self,
        cmd: Command,
        items: tokio::sync::mpsc::Sender<Value>,
    ) -> impl Future<Output = Result<Value, ErrorBody>> + Send {
        let executions = self.work().executions.clone();
        async move {
            let Command::ExecFollow(a) = cmd else {
                return Err(ErrorBody::new(
                    common::ipc::ErrorCode::BadRequest,
                    "only exec.follow streams over the link",
                ));
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let forward = async move {
                while let Some(item) = rx.recv().await {
                    let Ok(v) = serde_json::to_value(&item) else {
                        continue;
                    };
                    if items.send(v).await.is_err() {
                        break;
                    }
                }
            };
            let (info, ()) = tokio::join!(executions.follow(&a.execution_id, a.after, tx), forward);
            info.map(|i| serde_json::to_value(&i).unwrap_or(Value::Null))
        }
    }

    fn takes_body(cmd: &Command) -> bool {
        matches!(cmd, Command::WorkspaceUpload(_) | Command::SessionFile(_))
    }

    fn run_with_body(
        &self,
        cmd: Command,
        body: crate::workspace::Body,
    ) -> impl Future<Output = Result<Value, ErrorBody>> + Send {
        self.execute_with_body(cmd, body)
    }
}
