//! Running ccrmd as a per-user service: `ccrm daemon install` writes a systemd user unit
//! (Linux) or a launchd agent (macOS) that starts ccrmd at login and restarts it if it
//! fails, and enables it; `ccrm daemon uninstall` disables and removes it.
//!
//! [`Spec`] is what the service runs (the ccrmd binary, its environment: the bot URL, key
//! file and CA, the config file, and the `PATH` it was installed from so that `claude` and
//! `tmux` are found); `systemd` and `launchd` render it in their formats and drive
//! `systemctl --user` / `launchctl`. Nothing goes through a shell. `crate::cli` has the
//! command line that calls [`install`] and [`uninstall`].

mod launchd;
mod systemd;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

/// Which service manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    /// A systemd user unit (`~/.config/systemd/user/ccrmd.service`).
    Systemd,
    /// A launchd agent (`~/Library/LaunchAgents/dev.ccrm.ccrmd.plist`).
    Launchd,
}

impl Manager {
    /// The one this platform uses.
    pub fn native() -> Self {
        if cfg!(target_os = "macos") {
            Self::Launchd
        } else {
            Self::Systemd
        }
    }
}

/// What the service runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spec {
    /// Absolute path of `ccrmd`.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Where launchd sends ccrmd's output (systemd uses the journal).
    pub log: PathBuf,
}

/// Where the service definition lives and what it says.
#[derive(Clone, Debug, Serialize)]
pub struct Unit {
    /// The manager.
    pub manager: Manager,
    /// The file.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// The service definition of `spec` for `manager`, at its usual place under `home` /
/// `config_home`.
pub fn unit(manager: Manager, spec: &Spec, home: &Path, config_home: &Path) -> Unit {
    match manager {
        Manager::Systemd => Unit {
            manager,
            path: config_home
                .join("systemd")
                .join("user")
                .join(systemd::UNIT_NAME),
            text: systemd::render(spec),
        },
        Manager::Launchd => Unit {
            manager,
            path: home
                .join("Library")
                .join("LaunchAgents")
                .join(format!("{}.plist", launchd::LABEL)),
            text: launchd::render(spec),
        },
    }
}

/// Writes `unit` (0644: the service manager reads it; it holds paths, never a secret) and,
/// with `enable`, loads and starts it. Returns what was done, for the user.
pub fn install(unit: &Unit, enable: bool) -> anyhow::Result<Vec<String>> {
    if let Some(dir) = unit.path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = unit.path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::io::Write::write_all(&mut f, unit.text.as_bytes())?;
    }
    std::fs::rename(&tmp, &unit.path)
        .with_context(|| format!("cannot write {}", unit.path.display()))?;
    let mut done = vec![format!("wrote {}", unit.path.display())];
    if enable {
        match unit.manager {
            Manager::Systemd => systemd::enable(&mut done)?,
            Manager::Launchd => launchd::enable(&unit.path, &mut done)?,
        }
    }
    Ok(done)
}

/// Stops and disables the service (with `disable`) and removes `path`. Returns what was
/// done; a manager that cannot be reached is reported, and the file is removed anyway.
pub fn uninstall(manager: Manager, path: &Path, disable: bool) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    if !path.exists() {
        bail!(
            "no ccrmd service is installed ({} does not exist)",
            path.display()
        );
    }
    if disable {
        let stopped = match manager {
            Manager::Systemd => systemd::disable(&mut done),
            Manager::Launchd => launchd::disable(&mut done),
        };
        if let Err(e) = stopped {
            done.push(format!("warning: {e:#}"));
        }
    }
    std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    done.push(format!("removed {}", path.display()));
    if disable && manager == Manager::Systemd {
        let _ = systemd::reload(&mut done);
    }
    Ok(done)
}

/// Runs a service manager command (no shell) and fails with its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
