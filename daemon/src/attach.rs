//! `ccrm attach`: handing a session to the Claude Code TUI in tmux, and taking it back.
//!
//! The session actor ([`crate::session`]) decides *when* (after the running turn, once the
//! stream-json child has exited); this module does the tmux and transcript work:
//!
//! - [`Tmux`] runs a tmux server of ccrm's own per attached session, on a socket in the
//!   runtime dir ([`tmux_socket`]), so the user's tmux servers are never touched and every
//!   daemon (and test) has its own. tmux itself starts `claude --resume=<id>` with an
//!   argument list: no shell sits between tmux and claude. The environment (sanitised like
//!   [`crate::spawn`]'s, plus the `CCRM_OWNER` marker) is the environment of the command
//!   that starts the server, which tmux hands to the pane. It is not passed with
//!   `new-session -e`: those values would sit in the server's command line, which every
//!   local user can read (API keys included).
//! - [`run_tui`] is the monitor task of one attach. It polls tmux every [`POLL`]: the TUI
//!   exited (session gone or pane dead), or the last client detached (the session had a
//!   client and now has none). After a detach it waits, bounded by [`IDLE_MAX`], until the
//!   TUI is idle (no "esc to interrupt" on screen and a quiet transcript), then ends it
//!   (`kill-session` = SIGHUP, then SIGTERM, then SIGKILL to its process group) and
//!   reports [`FromTui::Ended`] only once the claude process is gone, so the actor never
//!   runs two claude processes for one session.
//! - [`Tail`] reads what the TUI appends to the session's transcript
//!   (`<claude config dir>/projects/*/<id>.jsonl`, protocol §7.3) and turns it into
//!   [`TuiItem`]s, which the actor reports as events with origin `tui`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::ids::SessionId;
use common::ipc::{ErrorBody, ErrorCode};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::spawn;

/// How often the monitor looks at tmux and the transcript.
pub const POLL: Duration = Duration::from_millis(200);
/// Longest wait for a TUI to finish its turn after its last client detached.
pub const IDLE_MAX: Duration = Duration::from_secs(600);
/// How long the transcript must be quiet before a detached TUI counts as idle.
const QUIET: Duration = Duration::from_millis(1000);
/// After `kill-session` (SIGHUP), how long claude gets before SIGTERM; then before SIGKILL.
const HUP_GRACE: Duration = Duration::from_secs(5);
const TERM_GRACE: Duration = Duration::from_secs(2);
/// Longest a single tmux command may take.
const TMUX_TIMEOUT: Duration = Duration::from_secs(10);
/// The TUI's footer while a turn runs (protocol §9).
const BUSY_MARK: &str = "esc to interrupt";
/// Transcript bytes read per poll at most; the rest waits for the next poll.
const MAX_READ: u64 = 8 * 1024 * 1024;
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

/// Where claude keeps its state for our children: `CLAUDE_CONFIG_DIR`, else `$HOME/.claude`
/// (from `child_env` first, then the daemon's environment).
pub fn claude_config_dir(child_env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let var = |k: &str| {
        child_env
            .get(k)
            .cloned()
            .or_else(|| std::env::var(k).ok())
            .filter(|v| !v.is_empty())
    };
    if let Some(dir) = var("CLAUDE_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    var("HOME").map(|h| Path::new(&h).join(".claude"))
}

/// The transcript of `id` under `config_dir`, looked up by id (the folder is a mangled cwd).
pub fn find_transcript(config_dir: &Path, id: &SessionId) -> Option<PathBuf> {
    let file = format!("{id}.jsonl");
    std::fs::read_dir(config_dir.join("projects"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join(&file))
        .find(|p| p.is_file())
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

/// Something the TUI did, read from the transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum TuiItem {
    /// The user typed a prompt: a turn starts.
    Prompt(String),
    /// A finished assistant text block.
    Text(String),
    /// The model called a tool.
    ToolUse {
        /// Claude's id for the call.
        id: String,
        /// Tool name.
        name: String,
        /// Tool input.
        input: Value,
    },
    /// A tool finished.
    ToolResult {
        /// The call it answers.
        id: String,
        /// Result text.
        content: String,
        /// Whether it failed or was refused.
        is_error: bool,
    },
    /// The turn ended (`system/turn_duration`).
    TurnEnd {
        /// Wall time of the turn.
        duration_ms: Option<u64>,
    },
    /// The user interrupted the turn (Esc).
    Interrupted,
}

/// Prefixes of user texts the TUI writes for itself (slash commands, `!` shell mode).
const TUI_OWN_TEXT: &[&str] = &[
    "<command-name>",
    "<command-message>",
    "<command-args>",
    "<local-command-",
    "<bash-input>",
    "<bash-stdout>",
    "<bash-stderr>",
    "<system-reminder>",
];
const INTERRUPT_MARK: &str = "[Request interrupted by user";

/// The [`TuiItem`]s of one transcript line. Lenient: the transcript is an internal format
/// (protocol §7.3), so anything not recognised yields nothing.
pub fn transcript_items(line: &Value) -> Vec<TuiItem> {
    let flag = |k: &str| line.get(k).and_then(Value::as_bool).unwrap_or(false);
    if flag("isSidechain") {
        return Vec::new();
    }
    let kind = line.get("type").and_then(Value::as_str).unwrap_or_default();
    let message = line.get("message");
    let content = message.and_then(|m| m.get("content"));
    match kind {
        "user" if !flag("isMeta") => user_items(content),
        "assistant" => {
            let synthetic =
                message.and_then(|m| m.get("model")).and_then(Value::as_str) == Some("<synthetic>");
            if synthetic && !flag("isApiErrorMessage") {
                // "No response requested." and the like, written on resume.
                return Vec::new();
            }
            let Some(Value::Array(blocks)) = content else {
                return Vec::new();
            };
            blocks
                .iter()
                .filter_map(|b| match b.get("type").and_then(Value::as_str)? {
                    "text" => {
                        let text = b.get("text").and_then(Value::as_str)?;
                        (!text.trim().is_empty()).then(|| TuiItem::Text(text.to_owned()))
                    }
                    "tool_use" => Some(TuiItem::ToolUse {
                        id: str_field(b, "id"),
                        name: str_field(b, "name"),
                        input: b.get("input").cloned().unwrap_or(Value::Null),
                    }),
                    _ => None,
                })
                .collect()
        }
        "system" if line.get("subtype").and_then(Value::as_str) == Some("turn_duration") => {
            vec![TuiItem::TurnEnd {
                duration_ms: line.get("durationMs").and_then(Value::as_u64),
            }]
        }
        _ => Vec::new(),
    }
}

fn user_items(content: Option<&Value>) -> Vec<TuiItem> {
    let prompt = |text: &str| -> Option<TuiItem> {
        let t = text.trim_start();
        if t.starts_with(INTERRUPT_MARK) {
            return Some(TuiItem::Interrupted);
        }
        if t.is_empty() || TUI_OWN_TEXT.iter().any(|p| t.starts_with(p)) {
            return None;
        }
        Some(TuiItem::Prompt(text.to_owned()))
    };
    match content {
        Some(Value::String(s)) => prompt(s).into_iter().collect(),
        Some(Value::Array(blocks)) => {
            let mut items = Vec::new();
            let mut texts = Vec::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_result") => items.push(TuiItem::ToolResult {
                        id: str_field(b, "tool_use_id"),
                        content: tool_result_text(b.get("content")),
                        is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    }),
                    Some("text") => {
                        if let Some(t) = b.get("text").and_then(Value::as_str) {
                            texts.push(t);
                        }
                    }
                    _ => {}
                }
            }
            for t in texts {
                items.extend(prompt(t));
            }
            items
        }
        _ => Vec::new(),
    }
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn tool_result_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Follows what is appended to a session's transcript from a starting point on.
#[derive(Debug)]
pub struct Tail {
    config_dir: Option<PathBuf>,
    id: SessionId,
    path: Option<PathBuf>,
    offset: u64,
    partial: Vec<u8>,
    grew_at: Instant,
}

impl Tail {
    /// Starts at the current end of the transcript (or at its start, once it appears).
    pub fn new(config_dir: Option<PathBuf>, id: SessionId) -> Self {
        let path = config_dir.as_deref().and_then(|d| find_transcript(d, &id));
        let offset = path
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        Self {
            config_dir,
            id,
            path,
            offset,
            partial: Vec::new(),
            grew_at: Instant::now(),
        }
    }

    /// Whether the transcript has been quiet for at least `d`.
    pub fn quiet_for(&self, d: Duration) -> bool {
        self.grew_at.elapsed() >= d
    }

    /// The items of the complete lines appended since the last call, each with its line.
    pub fn read(&mut self) -> Vec<(TuiItem, Value)> {
        if self.path.is_none() {
            self.path = self
                .config_dir
                .as_deref()
                .and_then(|d| find_transcript(d, &self.id));
        }
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let bytes = match read_from(path, self.offset) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, path = %path.display(), "cannot read the transcript");
                return Vec::new();
            }
        };
        if bytes.is_empty() {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.grew_at = Instant::now();
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
            .flat_map(|v| {
                transcript_items(&v)
                    .into_iter()
                    .map(move |item| (item, v.clone()))
            })
            .collect()
    }
}

fn read_from(path: &Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= offset {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take((len - offset).min(MAX_READ)).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Everything one attach needs.
pub struct TuiStart {
    /// ccrm's tmux server.
    pub tmux: Tmux,
    /// The tmux session name.
    pub name: String,
    /// What runs in the pane.
    pub spec: TuiSpec,
    /// The transcript, positioned at the end of what the stream-json child wrote.
    pub tail: Tail,
    /// The `CCRM_OWNER` value of the session, for the final sweep.
    pub owner: String,
}

/// Reports of the monitor task to the session actor.
#[derive(Debug)]
pub enum FromTui {
    /// The TUI runs in tmux.
    Started {
        /// Its pid.
        pid: u32,
    },
    /// The TUI could not be started; no claude process of it is left.
    Failed(String),
    /// What the TUI wrote to the transcript, with the raw lines.
    Items(Vec<(TuiItem, Value)>),
    /// The TUI is gone (its process has exited); the session can have a child again.
    Ended {
        /// Why: it exited, its last client detached, or it was ended.
        reason: String,
    },
}

/// Orders of the session actor to the monitor task.
#[derive(Debug)]
pub enum ToTui {
    /// End the TUI now, without waiting for it to be idle.
    End {
        /// The reason reported in [`FromTui::Ended`].
        reason: String,
        /// SIGKILL at once instead of a graceful end.
        force: bool,
    },
}

/// Why the monitor stops watching.
enum Watch {
    Exited,
    Detached,
    End(String, bool),
}

/// The monitor task of one attach: starts the TUI, watches it, ends it, and reports. It
/// ends the TUI when `ctl` closes (the actor is gone).
pub async fn run_tui(
    mut start: TuiStart,
    tx: mpsc::Sender<FromTui>,
    mut ctl: mpsc::Receiver<ToTui>,
) {
    let name = start.name.clone();
    if let Err(e) = start.tmux.new_session(&name, &start.spec).await {
        let _ = tx
            .send(FromTui::Failed(format!(
                "cannot start the TUI in tmux: {e}"
            )))
            .await;
        return;
    }
    let Some(pane) = start.tmux.pane(&name).await.filter(|p| !p.dead) else {
        start.tmux.kill_session(&name).await;
        let items = start.tail.read();
        if !items.is_empty() {
            let _ = tx.send(FromTui::Items(items)).await;
        }
        let _ = tx
            .send(FromTui::Failed(
                "the Claude Code TUI exited as soon as it started".to_owned(),
            ))
            .await;
        return;
    };
    let pid = pane.pid;
    info!(pid, tmux_session = %name, "claude TUI started in tmux");
    let _ = tx.send(FromTui::Started { pid }).await;

    let watch = watch(&mut start, &tx, &mut ctl).await;
    let (reason, force) = match watch {
        Watch::Exited => ("the TUI exited".to_owned(), false),
        Watch::Detached => ("the last tmux client detached".to_owned(), false),
        Watch::End(reason, force) => (reason, force),
    };
    end_tui(&start, pid, force).await;
    let items = start.tail.read();
    if !items.is_empty() {
        let _ = tx.send(FromTui::Items(items)).await;
    }
    info!(pid, %reason, "claude TUI ended");
    let _ = tx.send(FromTui::Ended { reason }).await;
}

async fn watch(
    start: &mut TuiStart,
    tx: &mpsc::Sender<FromTui>,
    ctl: &mut mpsc::Receiver<ToTui>,
) -> Watch {
    let name = start.name.clone();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Set while the last client has gone and we wait for the TUI to be idle.
    let mut detached_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = ctl.recv() => return match msg {
                Some(ToTui::End { reason, force }) => Watch::End(reason, force),
                None => Watch::End("the daemon let go of the session".to_owned(), true),
            },
        }
        let items = start.tail.read();
        if !items.is_empty() {
            let _ = tx.send(FromTui::Items(items)).await;
        }
        let pane = match start.tmux.pane(&name).await {
            Some(p) if !p.dead => p,
            _ => return Watch::Exited,
        };
        if pane.clients > 0 {
            detached_since = None;
            continue;
        }
        if !pane.ever_attached {
            // Nobody attached yet (`--no-attach`, or the client is on its way).
            continue;
        }
        let since = *detached_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= IDLE_MAX {
            warn!("the TUI stayed busy after its last client detached; ending it anyway");
            return Watch::Detached;
        }
        let busy = start
            .tmux
            .capture(&name)
            .await
            .is_some_and(|screen| screen.contains(BUSY_MARK));
        if !busy && start.tail.quiet_for(QUIET) {
            return Watch::Detached;
        }
    }
}

/// Ends the TUI and returns once its process is gone (or could not be killed).
async fn end_tui(start: &TuiStart, pid: u32, force: bool) {
    if force {
        spawn::signal_group(pid, Signal::SIGKILL);
    }
    start.tmux.kill_session(&start.name).await;
    if !wait_gone(pid, HUP_GRACE).await {
        info!(pid, "the TUI ignored SIGHUP; sending SIGTERM");
        spawn::signal_group(pid, Signal::SIGTERM);
        if !wait_gone(pid, TERM_GRACE).await {
            warn!(pid, "the TUI ignored SIGTERM; sending SIGKILL");
            spawn::signal_group(pid, Signal::SIGKILL);
            if !wait_gone(pid, HUP_GRACE).await {
                warn!(pid, "the TUI is still alive after SIGKILL");
            }
        }
    }
    // Tools the TUI started run in process groups of their own.
    let leftovers = spawn::sweep_orphans(&start.owner);
    if !leftovers.is_empty() {
        info!(pids = ?leftovers, "killed processes left behind by the TUI");
    }
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typed_prompt_text_and_turn_end_are_items() {
        let user = json!({"type": "user", "message": {"role": "user", "content": "hi there"},
            "promptSource": "typed", "isSidechain": false});
        assert_eq!(
            transcript_items(&user),
            [TuiItem::Prompt("hi there".into())]
        );
        let asst = json!({"type": "assistant", "message": {"model": "claude-opus-5-5",
            "content": [{"type": "text", "text": "Echo: hi there"},
                        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]}});
        assert_eq!(
            transcript_items(&asst),
            [
                TuiItem::Text("Echo: hi there".into()),
                TuiItem::ToolUse {
                    id: "t1".into(),
                    name: "Bash".into(),
                    input: json!({"command": "ls"})
                }
            ]
        );
        let end = json!({"type": "system", "subtype": "turn_duration", "durationMs": 135});
        assert_eq!(
            transcript_items(&end),
            [TuiItem::TurnEnd {
                duration_ms: Some(135)
            }]
        );
    }

    #[test]
    fn meta_synthetic_commands_and_bookkeeping_are_skipped() {
        for line in [
            json!({"type": "user", "isMeta": true, "message": {"content": "caveat"}}),
            json!({"type": "user", "message": {"content": "<command-name>/exit</command-name>"}}),
            json!({"type": "assistant", "message": {"model": "<synthetic>",
                "content": [{"type": "text", "text": "No response requested."}]}}),
            json!({"type": "assistant", "isSidechain": true, "message": {"content": [{"type": "text", "text": "x"}]}}),
            json!({"type": "last-prompt", "lastPrompt": "hi"}),
            json!({"type": "queue-operation", "content": "hi"}),
            json!("not an object"),
        ] {
            assert!(transcript_items(&line).is_empty(), "{line}");
        }
    }

    #[test]
    fn interrupt_marker_and_tool_results() {
        let line = json!({"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "out"}], "is_error": true},
            {"type": "text", "text": "[Request interrupted by user]"}]}});
        assert_eq!(
            transcript_items(&line),
            [
                TuiItem::ToolResult {
                    id: "t1".into(),
                    content: "out".into(),
                    is_error: true
                },
                TuiItem::Interrupted
            ]
        );
    }

    #[test]
    fn tail_reads_only_complete_new_lines() -> anyhow::Result<()> {
        use std::io::Write;
        let dir = tempfile::tempdir()?;
        let id = SessionId::new();
        let project = dir.path().join("projects").join("-tmp-x");
        std::fs::create_dir_all(&project)?;
        let file = project.join(format!("{id}.jsonl"));
        std::fs::write(
            &file,
            "{\"type\":\"user\",\"message\":{\"content\":\"old\"}}\n",
        )?;
        let mut tail = Tail::new(Some(dir.path().to_owned()), id);
        assert!(tail.read().is_empty(), "starts at the end");
        let mut f = std::fs::OpenOptions::new().append(true).open(&file)?;
        write!(
            f,
            "{{\"type\":\"user\",\"message\":{{\"content\":\"new\"}}}}\n{{\"type\":"
        )?;
        let items: Vec<TuiItem> = tail.read().into_iter().map(|(i, _)| i).collect();
        assert_eq!(items, [TuiItem::Prompt("new".into())]);
        writeln!(f, "\"system\",\"subtype\":\"turn_duration\"}}")?;
        let items: Vec<TuiItem> = tail.read().into_iter().map(|(i, _)| i).collect();
        assert_eq!(items, [TuiItem::TurnEnd { duration_ms: None }]);
        Ok(())
    }

    #[test]
    fn tail_finds_a_transcript_that_appears_later() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let id = SessionId::new();
        let mut tail = Tail::new(Some(dir.path().to_owned()), id);
        assert!(tail.read().is_empty());
        let project = dir.path().join("projects").join("-p");
        std::fs::create_dir_all(&project)?;
        std::fs::write(
            project.join(format!("{id}.jsonl")),
            "{\"type\":\"user\",\"message\":{\"content\":\"first\"}}\n",
        )?;
        let items: Vec<TuiItem> = tail.read().into_iter().map(|(i, _)| i).collect();
        assert_eq!(items, [TuiItem::Prompt("first".into())]);
        Ok(())
    }

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
