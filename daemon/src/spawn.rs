//! Starting Claude Code children so that none outlives ccrmd, on any exit path.
//!
//! - No shell: the child is started by `execve` of the claude binary with an argument list.
//! - The environment is sanitised ([`sanitise_env`]): loader and runtime injection variables
//!   (`LD_PRELOAD`, `DYLD_*`, `NODE_OPTIONS`, ...) and ccrm's own secrets are removed.
//! - Each child leads its own process group, so stop/kill reach the tools it started too.
//! - Parent-death signal: ccrmd re-executes itself as a tiny shim ([`SHIM_ARG`]) that sets
//!   `PR_SET_PDEATHSIG = SIGKILL` on itself and then `exec`s claude. The flag survives exec,
//!   so a `kill -9` of ccrmd takes the claude process down with it. This needs no `unsafe`
//!   (unlike `pre_exec`). The shim is forked from the runtime's main thread, which lives as
//!   long as ccrmd (the death signal follows the forking *thread*).
//! - Every child carries `CCRM_OWNER=<daemon tag>:<session>` in its environment; a fresh
//!   ccrmd kills whatever still carries its tag ([`sweep_orphans`]), which catches tools the
//!   children started if a previous ccrmd died hard.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// First argument that turns `ccrmd` into the exec shim.
pub const SHIM_ARG: &str = "__ccrm-exec";

/// Environment variable that marks our children (and their descendants).
pub const OWNER_VAR: &str = "CCRM_OWNER";

/// Variables never passed to a child: dynamic-loader and runtime injection hooks, markers
/// that change Claude Code's behaviour, and ccrm's own credentials.
const REMOVED_VARS: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "LD_DEBUG",
    "LD_PROFILE",
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    "BUN_OPTIONS",
    "PYTHONSTARTUP",
    "PERL5OPT",
    "CLAUDECODE",
    "CLAUDE_CODE_ENTRYPOINT",
    "CCRM_API_KEY",
    "CCRM_BOT_API_KEY",
    "CCRM_TOKEN",
    "CCRM_DISCORD_TOKEN",
    "CCRM_TELEGRAM_TOKEN",
];

/// True for variables that must not reach a child.
pub fn is_removed_var(name: &str) -> bool {
    REMOVED_VARS.contains(&name) || name.starts_with("DYLD_")
}

/// The names of variables in `vars` that [`is_removed_var`] rejects.
pub fn sanitise_env(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<OsString> {
    vars.filter_map(|(k, _)| k.to_str().filter(|k| is_removed_var(k)).map(|_| k.clone()))
        .collect()
}

/// Runs the shim: called by `ccrmd` when its first argument is [`SHIM_ARG`]. Never returns
/// on success (the process becomes claude).
/// Arguments: `<parent pid> <program> [args...]`.
pub fn run_shim(args: &[OsString]) -> ! {
    let code = match shim(args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("ccrm exec shim: {e:#}");
            127
        }
    };
    std::process::exit(code)
}

enum Never {}

fn shim(args: &[OsString]) -> anyhow::Result<Never> {
    use std::os::unix::process::CommandExt;
    let [parent, program, rest @ ..] = args else {
        bail!("usage: {SHIM_ARG} <parent pid> <program> [args...]");
    };
    let parent: i32 = parent
        .to_str()
        .and_then(|s| s.parse().ok())
        .context("bad parent pid")?;
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("prctl(PR_SET_PDEATHSIG)")?;
    // The parent may have died between fork and prctl; then nobody would kill us.
    if nix::unistd::getppid().as_raw() != parent {
        bail!("parent {parent} is gone");
    }
    let err = std::process::Command::new(program).args(rest).exec();
    Err(anyhow::Error::from(err).context(format!("cannot run {}", Path::new(program).display())))
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// The claude binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Extra variables.
    pub env: Vec<(String, String)>,
    /// Value of [`OWNER_VAR`].
    pub owner: String,
}

/// Spawns `spec` with piped stdio in its own process group, through the shim when one is
/// available (`shim` = path of a binary that understands [`SHIM_ARG`]).
pub fn spawn(spec: &ChildSpec, shim: Option<&Path>) -> std::io::Result<tokio::process::Child> {
    let mut cmd = match shim {
        Some(shim) => {
            let mut c = tokio::process::Command::new(shim);
            c.arg(SHIM_ARG)
                .arg(std::process::id().to_string())
                .arg(&spec.program)
                .args(&spec.args);
            c
        }
        None => {
            let mut c = tokio::process::Command::new(&spec.program);
            c.args(&spec.args);
            c
        }
    };
    for name in sanitise_env(std::env::vars_os()) {
        cmd.env_remove(name);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(OWNER_VAR, &spec.owner)
        .current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// Sends `sig` to the process group led by `pid` (our children lead their own groups).
pub fn signal_group(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(pid), sig);
    }
}

/// Kills every process whose environment carries `CCRM_OWNER=<owner>…`. With a daemon tag
/// plus `:` this finds leftovers of an earlier ccrmd with the same state directory that died
/// without cleaning up; with `<tag>:<session>` it finds what one session's child started
/// (claude runs its tools in process groups of their own, out of reach of `killpg`).
/// Returns their pids. Only processes we may read (same user) are looked at.
pub fn sweep_orphans(owner: &str) -> Vec<i32> {
    let needle = format!("{OWNER_VAR}={owner}");
    let me = std::process::id() as i32;
    let mut killed = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killed;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let found = environ
            .split(|b| *b == 0)
            .any(|var| var.starts_with(needle.as_bytes()));
        if found && nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed.push(pid);
        }
    }
    killed
}

/// The [`OWNER_VAR`] value of a session's child.
pub fn owner_value(tag: &str, session: &str) -> String {
    format!("{tag}:{session}")
}

/// A short stable tag for a state directory, used in [`OWNER_VAR`].
pub fn daemon_tag(state_dir: &Path) -> String {
    // FNV-1a: stable across runs and Rust versions (unlike DefaultHasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Finds the claude binary: the configured path, else `claude` on `PATH`.
pub fn find_claude(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = configured {
        if is_executable(p) {
            return Ok(p.to_owned());
        }
        bail!(
            "claude binary {} does not exist or is not executable (config `claude_bin` / env CCRM_CLAUDE_BIN); install the pinned CLI with scripts/install-claude.sh",
            p.display()
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let cand = dir.join("claude");
            if is_executable(&cand) {
                return Ok(cand);
            }
        }
    }
    bail!(
        "Claude Code CLI not found: set `claude_bin` in ccrmd.toml or CCRM_CLAUDE_BIN, or put `claude` on PATH (scripts/install-claude.sh installs the pinned version)"
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_injection_vars_only() {
        let vars = [
            ("LD_PRELOAD", "x"),
            ("DYLD_INSERT_LIBRARIES", "y"),
            ("NODE_OPTIONS", "--require evil"),
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("CCRM_API_KEY", "secret"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let mut removed: Vec<_> = sanitise_env(vars)
            .into_iter()
            .map(|s| s.into_string().unwrap_or_default())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            [
                "CCRM_API_KEY",
                "DYLD_INSERT_LIBRARIES",
                "LD_PRELOAD",
                "NODE_OPTIONS"
            ]
        );
    }

    #[test]
    fn tag_is_stable_and_distinct() {
        assert_eq!(daemon_tag(Path::new("/a")), daemon_tag(Path::new("/a")));
        assert_ne!(daemon_tag(Path::new("/a")), daemon_tag(Path::new("/b")));
    }

    #[test]
    fn missing_claude_says_what_to_do() {
        let err = find_claude(Some(Path::new("/nonexistent/claude"))).expect_err("missing");
        assert!(err.to_string().contains("install-claude.sh"), "{err}");
    }
}
