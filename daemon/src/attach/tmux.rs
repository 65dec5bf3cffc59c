//! tmux control for `ccrm attach`: ccrm's own tmux server per attached session, the pane's
//! command and environment, and what tmux reports about the pane.
//!
//! [`Tmux`] runs a tmux server of ccrm's own per attached session, on a socket in the
//! runtime dir ([`tmux_socket`]), so the user's tmux servers are never touched and every
//! daemon (and test) has its own. tmux itself starts `claude --resume=<id>` with an argument
//! list ([`TuiSpec`]): no shell sits between tmux and claude. The environment ([`tui_env`]:
//! sanitised like [`crate::spawn`]'s, plus the `CCRM_OWNER` marker) is the environment of
//! the command that starts the server, which tmux hands to the pane. It is not passed with
//! `new-session -e`: those values would sit in the server's command line, which every local
//! user can read (API keys included). The monitor ([`super::monitor`]) polls [`Tmux::pane`]
//! and [`alive`]; the CLI uses [`find_tmux`] and [`tmux_socket`] to attach a client.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::ids::SessionId;
use common::ipc::{ErrorBody, ErrorCode};

use crate::spawn;

/// Longest a single tmux command may take.
const TMUX_TIMEOUT: Duration = Duration::from_secs(10);
/// Initial size of the TUI window (a client that attaches resizes it).
const COLS: &str = "200";
const ROWS: &str = "50";

/// Variables of the daemon's environment that must not reach the TUI: tmux sets its own
/// `TERM`, and the rest describe the daemon's terminal or directory.
const TUI_SKIPPED_VARS: &[&str] = &[
    "TERM",
    "TMUX",
    "TMUX_PANE",
    "COLUMNS",
    "LINES",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
];

/// The error for a machine without tmux.
pub fn tmux_missing() -> ErrorBody {
    ErrorBody::new(
        ErrorCode::NotSupported,
        "tmux is not installed, and `ccrm attach` runs the Claude Code TUI in tmux: install it \
         (`apt-get install tmux` on Debian/Ubuntu, `dnf install tmux` on Fedora, `brew install \
         tmux` on macOS) and make sure it is on ccrmd's PATH",
    )
}

/// Finds `tmux` on `PATH`.
pub fn find_tmux() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("tmux"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The socket of the tmux server of a ccrm session (in the 0700 runtime dir).
pub fn tmux_socket(runtime_dir: &Path, id: &SessionId) -> PathBuf {
    runtime_dir.join(format!("tmux-{}.sock", id.short()))
}

/// The tmux session name of a ccrm session.
pub fn tmux_session_name(id: &SessionId) -> String {
    format!("ccrm-{}", id.short())
}

/// The environment of the TUI: the daemon's, sanitised like a stream-json child's, then
/// `child_env`, then the owner marker.
pub fn tui_env(child_env: &BTreeMap<String, String>, owner: &str) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| {
            !spawn::is_removed_var(k)
                && !TUI_SKIPPED_VARS.contains(&k.as_str())
                && k != spawn::OWNER_VAR
                && !k.contains('=')
        })
        .collect();
    env.extend(child_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert(spawn::OWNER_VAR.to_owned(), owner.to_owned());
    env.into_iter().collect()
}

/// What tmux should run in the session's pane.
#[derive(Debug, Clone)]
pub struct TuiSpec {
    /// The claude binary.
    pub program: PathBuf,
    /// Its arguments (`--resume=<id>`, `--permission-mode=...`, ...).
    pub args: Vec<String>,
    /// Working directory (the session's cwd).
    pub cwd: PathBuf,
    /// The whole environment of the TUI (see [`tui_env`]).
    pub env: Vec<(String, String)>,
}

/// The pane of a TUI as tmux reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pane {
    /// Pid of the process in the pane (claude itself: tmux runs it without a shell).
    pub pid: u32,
    /// The process exited but the pane stayed (`remain-on-exit`).
    pub dead: bool,
    /// Clients attached to the session.
    pub clients: u32,
    /// Whether a client has ever been attached (tmux remembers it, so a short visit
    /// between two polls still counts).
    pub ever_attached: bool,
}

/// ccrm's own tmux server, reached by its socket.
#[derive(Debug, Clone)]
pub struct Tmux {
    bin: PathBuf,
    socket: PathBuf,
}

impl Tmux {
    /// A handle on the server at `socket` run by the tmux binary `bin`.
    pub fn new(bin: PathBuf, socket: PathBuf) -> Self {
        Self { bin, socket }
    }

    /// The server socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs one tmux command. With `env`, the command runs with exactly that environment
    /// (a server it starts keeps it); without, with the daemon's, sanitised.
    async fn run(
        &self,
        args: Vec<OsString>,
        env: Option<&[(String, String)]>,
    ) -> Result<String, String> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("-S").arg(&self.socket).args(&args);
        match env {
            Some(env) => {
                cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
            }
            None => {
                for name in spawn::sanitise_env(std::env::vars_os()) {
                    cmd.env_remove(name);
                }
            }
        }
        // tmux must not think it is nested in the user's tmux.
        cmd.env_remove("TMUX")
            .env_remove("TMUX_PANE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(TMUX_TIMEOUT, cmd.output())
            .await
            .map_err(|_| format!("tmux did not answer within {TMUX_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Starts a fresh server with a detached session `name` running `spec`.
    pub async fn new_session(&self, name: &str, spec: &TuiSpec) -> Result<(), String> {
        // The pane gets the environment the server started with, so the server must be
        // new: end a leftover one (of a daemon that died hard; its TUI is gone already).
        let _ = self.run(vec!["kill-server".into()], None).await;
        let mut args: Vec<OsString> = vec![
            "new-session".into(),
            "-d".into(),
            "-s".into(),
            name.into(),
            "-x".into(),
            COLS.into(),
            "-y".into(),
            ROWS.into(),
            "-c".into(),
            spec.cwd.clone().into(),
        ];
        args.push("--".into());
        args.push(spec.program.clone().into());
        args.extend(spec.args.iter().map(OsString::from));
        self.run(args, Some(&spec.env)).await.map(drop)
    }

    /// The session's pane, or `None` when the session does not exist.
    pub async fn pane(&self, name: &str) -> Option<Pane> {
        let out = self
            .run(
                vec![
                    "display-message".into(),
                    "-p".into(),
                    "-t".into(),
                    pane_target(name).into(),
                    "#{pane_pid} #{pane_dead} #{session_attached} #{session_last_attached}".into(),
                ],
                None,
            )
            .await
            .ok()?;
        parse_pane(&out)
    }

    /// The visible text of the session's pane.
    pub async fn capture(&self, name: &str) -> Option<String> {
        self.run(
            vec![
                "capture-pane".into(),
                "-p".into(),
                "-t".into(),
                pane_target(name).into(),
            ],
            None,
        )
        .await
        .ok()
    }

    /// Ends the session (tmux sends SIGHUP to the pane's process).
    pub async fn kill_session(&self, name: &str) {
        let _ = self
            .run(
                vec![
                    "kill-session".into(),
                    "-t".into(),
                    format!("={name}").into(),
                ],
                None,
            )
            .await;
    }
}

/// `=name:` names the session exactly (no prefix match) and its current pane.
fn pane_target(name: &str) -> String {
    format!("={name}:")
}

fn parse_pane(out: &str) -> Option<Pane> {
    let mut it = out.split_whitespace();
    let pid = it.next()?.parse().ok()?;
    let dead = it.next()? == "1";
    let clients = it.next()?.parse().ok()?;
    // Empty until the first client attaches.
    let ever_attached = clients > 0 || it.next().is_some_and(|t| t != "0");
    Some(Pane {
        pid,
        dead,
        clients,
        ever_attached,
    })
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_sanitised_and_marked() {
        let mut child_env = BTreeMap::new();
        child_env.insert("EXTRA".to_owned(), "1".to_owned());
        let env = tui_env(&child_env, "tag:sid");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("EXTRA"), Some("1"));
        assert_eq!(get(spawn::OWNER_VAR), Some("tag:sid"));
        assert_eq!(get("TERM"), None);
        assert_eq!(get("LD_PRELOAD"), None);
    }

    #[test]
    fn pane_lines_parse() {
        assert_eq!(
            parse_pane("123 0 2 1795620935\n"),
            Some(Pane {
                pid: 123,
                dead: false,
                clients: 2,
                ever_attached: true
            })
        );
        // Never attached: tmux leaves the last-attached time empty.
        assert_eq!(
            parse_pane("123 1 0 \n"),
            Some(Pane {
                pid: 123,
                dead: true,
                clients: 0,
                ever_attached: false
            })
        );
        // Attached once, gone now.
        assert!(parse_pane("7 0 0 1795620935").is_some_and(|p| p.ever_attached));
        assert_eq!(parse_pane(""), None);
    }

    #[test]
    fn missing_tmux_says_how_to_install_it() {
        let e = tmux_missing();
        assert!(e.message.contains("apt-get install tmux"), "{e}");
        assert!(e.message.contains("brew install tmux"), "{e}");
    }
}
