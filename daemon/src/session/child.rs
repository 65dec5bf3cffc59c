//! The running claude process of a session ([`Child`]): spawning it, its stdio tasks,
//! writing lines and control requests to it, and what is left when it exits ([`Exit`]).
//!
//! Three helper tasks per child (the helix `transport.rs` layout): a stdout reader that
//! also reaps the child ([`FromChild`] lines, then its exit status), a stdin writer for the
//! lines the pipe could not take at once ([`super::stdin`]), and a stderr reader that logs
//! and keeps a tail for failure reasons. The
//! actor ([`super::actor`]) reads [`Child::recv`] in its event loop and decides what a line
//! means with [`super::output`]. [`claude_args`] are the session arguments the child and
//! the TUI ([`super::handover`]) share.

use std::collections::VecDeque;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::child;
use common::codec::{LineError, LineReader};
use common::event::EventKind;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{Instrument, info, warn};

use super::Ctx;
use super::stdin::Stdin;
use crate::eventlog::EventLog;
use crate::spawn::{self, ChildSpec};
use crate::store::SessionRecord;

/// Longest stdout line accepted from the child (tool results can be large).
pub(super) const MAX_CHILD_LINE: usize = 64 * 1024 * 1024;
/// Stderr lines kept for failure reasons.
const STDERR_TAIL: usize = 20;

/// Lines and the end of a child, from its reader task.
pub(super) enum FromChild {
    /// One line of stdout (a non-UTF-8 line arrives as U+FFFD).
    Line(String),
    /// A line longer than [`MAX_CHILD_LINE`] was skipped.
    TooLong,
    /// The child has exited and was reaped.
    Exited(Option<ExitStatus>),
}

/// The arguments that make claude run this session: resume it or start it under its id,
/// its model and permission mode, then the configured extra arguments and the session's own
/// (`claude_args`).
pub(super) fn claude_args(rec: &SessionRecord, resume: bool, extra: &[String]) -> Vec<String> {
    let mut args = vec![if resume {
        format!("--resume={}", rec.id)
    } else {
        format!("--session-id={}", rec.id)
    }];
    if let Some(model) = &rec.model {
        args.push(format!("--model={model}"));
    }
    args.push(format!("--permission-mode={}", rec.permission_mode));
    args.extend(extra.iter().cloned());
    args.extend(rec.claude_args.iter().cloned());
    args
}

/// The live process and the channels to its helper tasks.
struct Running {
    pid: u32,
    rx: mpsc::Receiver<FromChild>,
    stdin: Option<Stdin>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Its `CCRM_OWNER` marker, to sweep the tools it leaves behind.
    owner: String,
}

/// How a child ended.
pub(super) struct Exit {
    /// Its pid.
    pub(super) pid: u32,
    /// `exit code N`, `killed by signal X` or `unknown status`.
    pub(super) code: String,
    /// Why ccrm made it fail ([`Child::fail`]), if it did.
    pub(super) failed: Option<String>,
    /// The last lines it wrote to stderr.
    tail: Vec<String>,
}

impl Exit {
    /// The reason of an exit nobody asked for: the status and the stderr tail.
    pub(super) fn unexpected(&self) -> String {
        let mut reason = format!("claude exited unexpectedly ({})", self.code);
        if !self.tail.is_empty() {
            reason.push_str(": ");
            reason.push_str(&self.tail.join(" | "));
        }
        reason
    }
}

/// The session's claude process, when it has one, and the state of our side of its
/// protocol (control request ids, the pending `initialize`, a failure we caused).
pub(super) struct Child {
    log: Arc<EventLog>,
    running: Option<Running>,
    ctl_seq: u64,
    init_request: Option<String>,
    fail_reason: Option<String>,
}

impl Child {
    /// No process yet; problems writing to one are reported to `log`.
    pub(super) fn new(log: Arc<EventLog>) -> Self {
        Self {
            log,
            running: None,
            ctl_seq: 0,
            init_request: None,
            fail_reason: None,
        }
    }

    /// Whether a process runs (until its exit has been reaped).
    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The pid of the running process.
    pub(super) fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.pid)
    }

    /// Starts claude in stream-json mode for `rec` (`resume`: with its history) and the
    /// helper tasks. The caller sends [`Self::initialize`] next.
    pub(super) fn spawn(
        &mut self,
        ctx: &Ctx,
        rec: &SessionRecord,
        resume: bool,
    ) -> anyhow::Result<()> {
        let cfg = &ctx.cfg;
        let mut args: Vec<String> = child::STREAM_JSON_ARGS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if cfg.partial_messages {
            args.push("--include-partial-messages".into());
        }
        args.extend(claude_args(rec, resume, &cfg.extra_args));
        let owner = ctx.owner(&rec.id);
        let spec = ChildSpec {
            program: ctx.claude_bin.clone(),
            args,
            cwd: rec.cwd.clone(),
            env: cfg
                .child_env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            owner: owner.clone(),
        };
        let mut child = spawn::spawn(&spec, ctx.shim.as_deref())?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdout), Some(stdin), Some(stderr)) =
            (child.stdout.take(), child.stdin.take(), child.stderr.take())
        else {
            anyhow::bail!("child stdio was not piped");
        };
        info!(pid, resume, "claude started");

        let (line_tx, line_rx) = mpsc::channel(256);
        tokio::spawn(read_child(child, stdout, line_tx).in_current_span());
        let stdin =
            anyhow::Context::context(Stdin::start(stdin), "cannot take over claude's stdin")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(read_stderr(stderr, tail.clone()).in_current_span());

        self.running = Some(Running {
            pid,
            rx: line_rx,
            stdin: Some(stdin),
            stderr_tail: tail,
            owner,
        });
        self.fail_reason = None;
        Ok(())
    }

    /// Sends `initialize`; its response ([`Self::is_init_response`]) means the child is ready.
    pub(super) fn initialize(&mut self) {
        let id = self.request("init", json!({"subtype": "initialize", "hooks": null}));
        self.init_request = Some(id);
    }

    /// Whether `request_id` answers our `initialize` (true once).
    pub(super) fn is_init_response(&mut self, request_id: &str) -> bool {
        if self.init_request.as_deref() != Some(request_id) {
            return false;
        }
        self.init_request = None;
        true
    }

    /// Asks the child to interrupt its running turn.
    pub(super) fn interrupt(&mut self) {
        self.request("interrupt", json!({"subtype": "interrupt"}));
    }

    /// Sends a control request and returns its id.
    fn request(&mut self, what: &str, request: Value) -> String {
        self.ctl_seq += 1;
        let id = format!("ccrm_{what}_{}", self.ctl_seq);
        self.send(child::control_request(&id, request));
        id
    }

    /// Writes one line to the child's stdin, at once if the pipe takes it (dropped, with an
    /// error event, when the child does not read its input or has no stdin any more).
    pub(super) fn send(&self, line: Value) {
        let Some(r) = &self.running else { return };
        let Some(stdin) = &r.stdin else { return };
        if let Err(e) = stdin.send(line.to_string()) {
            // 64 lines wait already, or the pipe is closed: the child is not reading.
            warn!(error = %e, "cannot write to claude's stdin");
            self.log.push(
                EventKind::Error {
                    message: "claude is not reading its input; a message to it was dropped".into(),
                },
                None,
            );
        }
    }

    /// Closes the child's stdin: EOF tells the CLI to finish and exit.
    pub(super) fn close_stdin(&mut self) {
        if let Some(r) = &mut self.running {
            r.stdin = None;
        }
    }

    /// Kills the child because it is broken; its exit then reports `reason`.
    pub(super) fn fail(&mut self, reason: String) {
        self.fail_reason = Some(reason);
        self.kill_group();
    }

    /// SIGKILL to the child's process group.
    pub(super) fn kill_group(&self) {
        if let Some(r) = &self.running {
            spawn::signal_group(r.pid, Signal::SIGKILL);
        }
    }

    /// The next line or the exit of the running child; never ready without one.
    pub(super) async fn recv(&mut self) -> Option<FromChild> {
        match &mut self.running {
            Some(r) => r.rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Takes the exited child: kills the tools it left behind and says how it ended.
    pub(super) fn reap(&mut self, status: Option<ExitStatus>) -> Option<Exit> {
        let running = self.running.take()?;
        let tail: Vec<String> = running
            .stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let code = status.map_or_else(|| "unknown status".to_owned(), describe_status);
        // Tools claude started run in their own process groups; end any that outlive it.
        let leftovers = spawn::sweep_orphans(&running.owner);
        if !leftovers.is_empty() {
            info!(pids = ?leftovers, "killed processes left behind by claude");
        }
        self.init_request = None;
        Some(Exit {
            pid: running.pid,
            code,
            failed: self.fail_reason.take(),
            tail,
        })
    }
}

fn describe_status(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!(
            "killed by signal {}",
            Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.as_str().to_owned())
        ),
        _ => "unknown status".to_owned(),
    }
}

/// Reads the child's stdout until EOF, then reaps it. Owning the `Child` here means the
/// actor never blocks on `wait`; it kills by process group instead.
async fn read_child(
    mut child: tokio::process::Child,
    stdout: tokio::process::ChildStdout,
    tx: mpsc::Sender<FromChild>,
) {
    let mut lines = LineReader::new(stdout, MAX_CHILD_LINE);
    let mut status = None;
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Some(Ok(line)) => {
                    if tx.send(FromChild::Line(line)).await.is_err() {
                        break;
                    }
                }
                Some(Err(LineError::TooLong { .. })) => {
                    let _ = tx.send(FromChild::TooLong).await;
                }
                Some(Err(LineError::NotUtf8)) => {
                    let _ = tx.send(FromChild::Line("\u{fffd}".to_owned())).await;
                }
                Some(Err(LineError::Io(_))) | None => break,
            },
            st = child.wait(), if status.is_none() => {
                // The child is gone; a descendant may still hold stdout open, so drain
                // what is buffered for a moment and then stop reading.
                status = Some(st.ok());
                let drain = async {
                    while let Some(Ok(line)) = lines.next_line().await {
                        if tx.send(FromChild::Line(line)).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
                break;
            }
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait().await.ok(),
    };
    let _ = tx.send(FromChild::Exited(status)).await;
}

async fn read_stderr(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = LineReader::new(stderr, 64 * 1024);
    while let Some(line) = lines.next_line().await {
        let Ok(line) = line else { continue };
        if line.trim().is_empty() {
            continue;
        }
        warn!(stderr = %line, "claude stderr");
        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == STDERR_TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}
