//! The session actor: one task per session that owns its Claude Code child.
//!
//! [`SessionHandle`] is the cheap, clonable way in: it sends [`Cmd`]s to the actor and
//! reads the shared snapshot ([`SessionInfo`], pending approvals) and the [`EventLog`]
//! without waiting for the actor. The actor alone writes to the child and reacts to what
//! it prints. Helper tasks per child: a stdout reader (which also reaps the child), a stdin
//! writer fed by a bounded channel, and a stderr reader that logs and keeps a tail for
//! failure reasons (the helix `transport.rs` layout).
//!
//! Turns are strictly one at a time: prompts wait in our own FIFO queue and the next one is
//! written to the child only after the previous turn's `result`, so every prompt gets its
//! own turn and its own result (the CLI would otherwise fold messages into a running turn).
//!
//! Attach (`ccrm attach`): the actor waits for the running turn, stops the child, and hands
//! the session to a monitor task ([`crate::attach::run_tui`]) that runs the TUI in tmux. While
//! attached, prompts queue; when the monitor reports the TUI gone, the child is started
//! again with `--resume` and the queue drains. One claude process per session at a time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::child::{self, Block, ChildMsg};
use common::codec::{LineError, LineReader};
use common::event::{Decision, EventKind, Origin, Question, SessionState, Surface, now_ms};
use common::ids::{ApprovalId, SessionId};
use common::ipc::{
    ApprovalInfo, ApprovalKind, AttachInfo, DecisionInfo, ErrorBody, ErrorCode, PromptAccepted,
    SessionInfo,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::attach::{self, FromTui, ToTui, TuiItem};
use crate::config::Config;
use crate::eventlog::EventLog;
use crate::spawn::{self, ChildSpec};
use crate::store::{self, SessionRecord};

/// Longest stdout line accepted from the child (tool results can be large).
const MAX_CHILD_LINE: usize = 64 * 1024 * 1024;
/// Raw CLI lines longer than this are not kept beside their event.
const MAX_RAW_KEEP: usize = 64 * 1024;
/// Tool result text kept in the normalised event.
const MAX_TOOL_RESULT_TEXT: usize = 4000;
/// Stderr lines kept for failure reasons.
const STDERR_TAIL: usize = 20;
/// Decided approvals remembered to tell late answerers who won.
const DECIDED_MEMORY: usize = 256;

/// What every session needs from the daemon.
pub struct Ctx {
    /// The daemon config.
    pub cfg: Config,
    /// The claude binary.
    pub claude_bin: PathBuf,
    /// Binary that understands the exec shim (`ccrmd` itself), if any.
    pub shim: Option<PathBuf>,
    /// [`spawn::daemon_tag`] of this daemon.
    pub tag: String,
    /// The spool for the bot uplink, if the daemon has a bot.
    pub spool: Option<Arc<crate::spool::Spool>>,
}

/// A reply channel for actor commands.
type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

/// Commands for the actor.
pub enum Cmd {
    /// Queue a prompt.
    Prompt {
        /// Prompt text.
        text: String,
        /// Who sent it.
        origin: Origin,
        /// Reply.
        reply: Reply<PromptAccepted>,
    },
    /// Interrupt the running turn.
    Interrupt {
        /// Who asked.
        by: String,
        /// Reply: whether a turn was running.
        reply: Reply<bool>,
    },
    /// Graceful stop.
    Stop {
        /// Reply once the child is gone.
        reply: Reply<SessionInfo>,
    },
    /// Immediate kill.
    Kill {
        /// Reply once the child is gone.
        reply: Reply<SessionInfo>,
    },
    /// Restart a stopped/failed session with its history.
    Resume {
        /// Reply once the child is up (or failed).
        reply: Reply<SessionInfo>,
    },
    /// Answer a permission request.
    Decide {
        /// Approval id or prefix.
        approval: Option<String>,
        /// The decision.
        decision: Decision,
        /// Message for the model.
        message: Option<String>,
        /// Who decided.
        by: String,
        /// Reply.
        reply: Reply<DecisionInfo>,
    },
    /// Answer a question.
    Answer {
        /// Question id or prefix.
        approval: Option<String>,
        /// One answer per question.
        answers: Vec<String>,
        /// Who answered.
        by: String,
        /// Reply.
        reply: Reply<DecisionInfo>,
    },
    /// Hand the session to the TUI in tmux (or join the TUI that has it).
    Attach {
        /// Interrupt a running turn instead of waiting for it.
        now: bool,
        /// Reply once the TUI runs.
        reply: Reply<AttachInfo>,
    },
    /// Wait until the session leaves `starting`.
    WaitReady {
        /// Reply.
        reply: Reply<SessionInfo>,
    },
    /// Stop gracefully and end the actor (daemon shutdown).
    Shutdown {
        /// Reply once the child is gone.
        reply: oneshot::Sender<()>,
    },
}

struct Shared {
    info: SessionInfo,
    pending: Vec<ApprovalInfo>,
}

/// The way in to a session actor.
#[derive(Clone)]
pub struct SessionHandle {
    /// The session id.
    pub id: SessionId,
    tx: mpsc::Sender<Cmd>,
    /// The session's event log.
    pub log: Arc<EventLog>,
    shared: Arc<Mutex<Shared>>,
}

fn gone() -> ErrorBody {
    ErrorBody::new(ErrorCode::ShuttingDown, "the session is shutting down")
}

impl SessionHandle {
    /// A snapshot of the session.
    pub fn info(&self) -> SessionInfo {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .info
            .clone()
    }

    /// Pending approvals and questions.
    pub fn pending(&self) -> Vec<ApprovalInfo> {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, ErrorBody> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Queues a prompt.
    pub async fn prompt(&self, text: String, origin: Origin) -> Result<PromptAccepted, ErrorBody> {
        self.call(|reply| Cmd::Prompt {
            text,
            origin,
            reply,
        })
        .await
    }

    /// Interrupts the running turn; `Ok(false)` when none was running.
    pub async fn interrupt(&self, by: String) -> Result<bool, ErrorBody> {
        self.call(|reply| Cmd::Interrupt { by, reply }).await
    }

    /// Stops gracefully; returns once the child is gone.
    pub async fn stop(&self) -> Result<SessionInfo, ErrorBody> {
        self.call(|reply| Cmd::Stop { reply }).await
    }

    /// Kills the child at once.
    pub async fn kill(&self) -> Result<SessionInfo, ErrorBody> {
        self.call(|reply| Cmd::Kill { reply }).await
    }

    /// Resumes a stopped or failed session.
    pub async fn resume(&self) -> Result<SessionInfo, ErrorBody> {
        self.call(|reply| Cmd::Resume { reply }).await
    }

    /// Hands the session to the TUI in tmux once the running turn is over (`now`:
    /// interrupts it); returns once the TUI runs. Joins the TUI when already attached.
    pub async fn attach(&self, now: bool) -> Result<AttachInfo, ErrorBody> {
        self.call(|reply| Cmd::Attach { now, reply }).await
    }

    /// Waits until the session has left `starting`.
    pub async fn wait_ready(&self) -> Result<SessionInfo, ErrorBody> {
        self.call(|reply| Cmd::WaitReady { reply }).await
    }

    /// Answers a permission request.
    pub async fn decide(
        &self,
        approval: Option<String>,
        decision: Decision,
        message: Option<String>,
        by: String,
    ) -> Result<DecisionInfo, ErrorBody> {
        self.call(|reply| Cmd::Decide {
            approval,
            decision,
            message,
            by,
            reply,
        })
        .await
    }

    /// Answers a question.
    pub async fn answer(
        &self,
        approval: Option<String>,
        answers: Vec<String>,
        by: String,
    ) -> Result<DecisionInfo, ErrorBody> {
        self.call(|reply| Cmd::Answer {
            approval,
            answers,
            by,
            reply,
        })
        .await
    }

    /// Stops the child and ends the actor.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown { reply: tx }).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// How the session is: a new one (spawn with `--session-id`) or a known one loaded from
/// disk (stays stopped until resumed).
pub enum Launch {
    /// Start a child now.
    New,
    /// Load as stopped.
    Stored,
}

/// Creates the actor and returns its handle. With [`Launch::New`] the child is spawned
/// before this returns; a spawn error is returned and no actor is left behind.
pub fn start(
    ctx: Arc<Ctx>,
    rec: SessionRecord,
    launch: Launch,
) -> Result<(SessionHandle, tokio::task::JoinHandle<()>), ErrorBody> {
    let log = Arc::new(EventLog::new(
        rec.id,
        ctx.cfg.event_log_capacity,
        ctx.spool.clone(),
    ));
    let (tx, rx) = mpsc::channel(64);
    let info = SessionInfo {
        id: rec.id,
        name: rec.name.clone(),
        cwd: rec.cwd.clone(),
        model: rec.model.clone(),
        permission_mode: rec.permission_mode.clone(),
        state: rec.state,
        reason: rec.reason.clone(),
        pid: None,
        queued: 0,
        pending: 0,
        turns: 0,
        cost_usd: None,
        created_ms: rec.created_ms,
        last_event_ms: now_ms(),
        last_seq: 0,
        session_allowed_tools: rec.session_allowed_tools.clone(),
        auto_allow: rec.auto_allow,
    };
    let shared = Arc::new(Mutex::new(Shared {
        info,
        pending: Vec::new(),
    }));
    let handle = SessionHandle {
        id: rec.id,
        tx,
        log: log.clone(),
        shared: shared.clone(),
    };
    let session_allowed = rec.session_allowed_tools.iter().cloned().collect();
    let mut actor = Actor {
        ctx,
        state: rec.state,
        reason: rec.reason.clone(),
        rec,
        log,
        shared,
        rx,
        child: None,
        queue: VecDeque::new(),
        current: None,
        next_prompt: 1,
        pending: Vec::new(),
        decided: VecDeque::new(),
        session_allowed,
        turns: 0,
        cost: None,
        ending: None,
        fail_reason: None,
        stop_waiters: Vec::new(),
        ready_waiters: Vec::new(),
        shutdown_waiters: Vec::new(),
        ctl_seq: 0,
        init_request: None,
        attach: None,
        tui: None,
    };
    match launch {
        Launch::New => {
            actor.spawn_child(false).map_err(|e| {
                ErrorBody::new(ErrorCode::SpawnFailed, format!("cannot start claude: {e}"))
            })?;
        }
        Launch::Stored => {
            if actor.state.is_live() {
                actor.state = SessionState::Stopped;
                actor.reason = Some("the daemon restarted".to_owned());
            }
            actor.publish();
        }
    }
    let span = info_span!("session", id = %handle.id.short());
    let task = tokio::spawn(actor.run().instrument(span));
    Ok((handle, task))
}

/// Lines and the end of a child, from its reader task.
enum FromChild {
    Line(String),
    TooLong,
    Exited(Option<ExitStatus>),
}

struct Running {
    pid: u32,
    rx: mpsc::Receiver<FromChild>,
    stdin: Option<mpsc::Sender<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EndKind {
    Stop,
    Kill,
    /// Stop the child to hand the session to the TUI (`ccrm attach`).
    Handover,
}

struct Ending {
    kind: EndKind,
    deadline: Instant,
    stage: u8,
}

struct Pending {
    info: ApprovalInfo,
}

struct Actor {
    ctx: Arc<Ctx>,
    rec: SessionRecord,
    log: Arc<EventLog>,
    shared: Arc<Mutex<Shared>>,
    rx: mpsc::Receiver<Cmd>,
    child: Option<Running>,
    state: SessionState,
    reason: Option<String>,
    queue: VecDeque<(u64, String)>,
    current: Option<u64>,
    next_prompt: u64,
    pending: Vec<Pending>,
    decided: VecDeque<(ApprovalId, Decision, String)>,
    session_allowed: BTreeSet<String>,
    turns: u64,
    cost: Option<f64>,
    ending: Option<Ending>,
    fail_reason: Option<String>,
    stop_waiters: Vec<Reply<SessionInfo>>,
    ready_waiters: Vec<Reply<SessionInfo>>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    ctl_seq: u64,
    init_request: Option<String>,
    /// An attach waiting for the running turn and the child's exit.
    attach: Option<AttachWait>,
    /// The TUI that owns the session while attached.
    tui: Option<Tui>,
}

/// An attach that has been asked for but whose TUI has not started yet.
struct AttachWait {
    waiters: Vec<Reply<AttachInfo>>,
    /// Whether the session had a live child when attach was asked for (it gets one again
    /// if the TUI cannot start).
    was_live: bool,
}

/// What happens when the TUI is gone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AfterTui {
    /// Back under the daemon: start the stream-json child with `--resume`.
    Resume,
    /// `ccrm stop` / `ccrm kill`: stay stopped.
    End(EndKind),
    /// The daemon is shutting down.
    Shutdown,
}

/// The attached TUI, as the actor sees it.
struct Tui {
    rx: mpsc::Receiver<FromTui>,
    ctl: mpsc::Sender<ToTui>,
    task: tokio::task::JoinHandle<()>,
    socket: PathBuf,
    name: String,
    pid: Option<u32>,
    waiters: Vec<Reply<AttachInfo>>,
    after: AfterTui,
    was_live: bool,
    /// The TUI turn in progress (a prompt id from the session's counter).
    turn: Option<u64>,
    last_text: Option<String>,
}

async fn recv_tui(tui: &mut Option<Tui>) -> Option<FromTui> {
    match tui {
        Some(t) => t.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_child(child: &mut Option<Running>) -> Option<FromChild> {
    match child {
        Some(r) => r.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(mut self) {
        loop {
            let deadline = self.ending.as_ref().map(|e| e.deadline);
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    None => {
                        // Every handle is gone: nobody can reach this session any more.
                        self.kill_group();
                        break;
                    }
                },
                msg = recv_child(&mut self.child) => match msg {
                    Some(FromChild::Line(line)) => self.on_line(&line),
                    Some(FromChild::TooLong) => {
                        self.log.push(EventKind::Error { message: format!("claude printed a line longer than {MAX_CHILD_LINE} bytes; it was skipped") }, None);
                    }
                    Some(FromChild::Exited(status)) => self.on_exit(status),
                    None => self.on_exit(None),
                },
                () = sleep_opt(deadline) => self.escalate(),
                msg = recv_tui(&mut self.tui) => self.on_tui(msg),
            }
            self.advance_attach();
            if !self.shutdown_waiters.is_empty() && self.child.is_none() && self.tui.is_none() {
                for w in self.shutdown_waiters.drain(..) {
                    let _ = w.send(());
                }
                break;
            }
        }
    }

    // ----- commands -------------------------------------------------------------------

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Prompt {
                text,
                origin,
                reply,
            } => {
                let _ = reply.send(self.prompt(text, origin));
            }
            Cmd::Interrupt { by, reply } => {
                if self.tui.is_some() {
                    let _ = reply.send(Err(
                        self.in_use_at_terminal("interrupt the running turn there (Esc)")
                    ));
                } else {
                    let _ = reply.send(Ok(self.interrupt(&by)));
                }
            }
            Cmd::Stop { reply } => self.begin_end(EndKind::Stop, reply),
            Cmd::Kill { reply } => self.begin_end(EndKind::Kill, reply),
            Cmd::Resume { reply } => self.resume(reply),
            Cmd::Decide {
                approval,
                decision,
                message,
                by,
                reply,
            } => {
                let _ = reply.send(self.decide(approval.as_deref(), decision, message, &by));
            }
            Cmd::Answer {
                approval,
                answers,
                by,
                reply,
            } => {
                let _ = reply.send(self.answer(approval.as_deref(), &answers, &by));
            }
            Cmd::Attach { now, reply } => self.attach(now, reply),
            Cmd::WaitReady { reply } => {
                if self.state == SessionState::Starting {
                    self.ready_waiters.push(reply);
                } else {
                    let _ = reply.send(Ok(self.info()));
                }
            }
            Cmd::Shutdown { reply } => {
                self.shutdown_waiters.push(reply);
                self.cancel_attach(&gone());
                if self.tui.is_some() {
                    self.end_tui(AfterTui::Shutdown, "the daemon stopped", false);
                } else if self.child.is_some() && self.ending.is_none() {
                    self.start_ending(EndKind::Stop);
                }
            }
        }
    }

    fn prompt(&mut self, text: String, origin: Origin) -> Result<PromptAccepted, ErrorBody> {
        let attached = self.tui.is_some() || self.attach.is_some();
        if self.child.is_none() && !attached {
            return Err(ErrorBody::new(
                ErrorCode::BadState,
                format!(
                    "session {} is {}; run `ccrm resume {}` first",
                    self.rec.id.short(),
                    self.state,
                    self.rec.id.short()
                ),
            ));
        }
        if self
            .ending
            .as_ref()
            .is_some_and(|e| e.kind != EndKind::Handover)
        {
            return Err(ErrorBody::new(
                ErrorCode::BadState,
                "the session is stopping; resume it once it has stopped",
            ));
        }
        if text.trim().is_empty() {
            return Err(ErrorBody::new(ErrorCode::BadRequest, "the prompt is empty"));
        }
        let prompt_id = self.next_prompt;
        self.next_prompt += 1;
        let queued_behind = self.queue.len() + usize::from(self.current.is_some());
        self.log.push(
            EventKind::Prompt {
                prompt_id,
                text: text.clone(),
                origin,
                queued_behind,
            },
            None,
        );
        self.queue.push_back((prompt_id, text));
        self.pump();
        self.publish();
        let note = attached.then(|| {
            format!(
                "session {} is in use at the terminal (ccrm attach); the prompt is queued and runs when the terminal gives the session back",
                self.rec.id.short()
            )
        });
        Ok(PromptAccepted {
            session_id: self.rec.id,
            prompt_id,
            queued_behind,
            note,
        })
    }

    fn interrupt(&mut self, by: &str) -> bool {
        if self.current.is_none() || self.child.is_none() {
            return false;
        }
        self.log
            .push(EventKind::Interrupted { by: by.to_owned() }, None);
        let id = self.next_ctl_id("interrupt");
        self.send_child(child::control_request(&id, json!({"subtype": "interrupt"})));
        true
    }

    fn begin_end(&mut self, kind: EndKind, reply: Reply<SessionInfo>) {
        if self.tui.is_some() {
            self.stop_waiters.push(reply);
            let (reason, force) = if kind == EndKind::Kill {
                ("the session was killed", true)
            } else {
                ("the session was stopped", false)
            };
            self.end_tui(AfterTui::End(kind), reason, force);
            return;
        }
        self.cancel_attach(&ErrorBody::new(
            ErrorCode::BadState,
            "the session was stopped before the TUI started",
        ));
        if self.child.is_none() {
            let _ = reply.send(Ok(self.info()));
            return;
        }
        self.stop_waiters.push(reply);
        match &self.ending {
            Some(e) if e.kind == EndKind::Kill || kind == EndKind::Stop => {}
            _ => self.start_ending(kind),
        }
    }

    fn start_ending(&mut self, kind: EndKind) {
        match kind {
            EndKind::Stop | EndKind::Handover => {
                // Interrupt a running turn, then close stdin: the CLI finishes and exits.
                // Queued prompts stay in our queue for a later resume.
                if self.current.is_some() {
                    let id = self.next_ctl_id("interrupt");
                    self.send_child(child::control_request(&id, json!({"subtype": "interrupt"})));
                }
                if let Some(r) = &mut self.child {
                    r.stdin = None;
                }
                self.ending = Some(Ending {
                    kind,
                    deadline: Instant::now() + self.ctx.cfg.stop_grace,
                    stage: 0,
                });
            }
            EndKind::Kill => {
                self.kill_group();
                self.ending = Some(Ending {
                    kind,
                    deadline: Instant::now() + Duration::from_secs(5),
                    stage: 2,
                });
            }
        }
    }

    /// Called when a stop deadline passes: SIGTERM, then SIGKILL.
    fn escalate(&mut self) {
        let Some(pid) = self.child.as_ref().map(|c| c.pid) else {
            self.ending = None;
            return;
        };
        let Some(e) = &mut self.ending else { return };
        match e.stage {
            0 => {
                info!(pid, "grace period over; sending SIGTERM");
                spawn::signal_group(pid, Signal::SIGTERM);
                e.stage = 1;
                e.deadline = Instant::now() + Duration::from_secs(2);
            }
            _ => {
                warn!(pid, "child still alive; sending SIGKILL");
                spawn::signal_group(pid, Signal::SIGKILL);
                e.stage = 2;
                e.deadline = Instant::now() + Duration::from_secs(5);
            }
        }
    }

    fn kill_group(&self) {
        if let Some(r) = &self.child {
            spawn::signal_group(r.pid, Signal::SIGKILL);
        }
    }

    fn resume(&mut self, reply: Reply<SessionInfo>) {
        if self.tui.is_some() || self.attach.is_some() {
            let _ = reply.send(Err(self.in_use_at_terminal(
                "it goes back under the daemon when the TUI exits or its last client detaches",
            )));
            return;
        }
        if self.child.is_some() {
            let _ = reply.send(Err(ErrorBody::new(
                ErrorCode::BadState,
                format!(
                    "session {} is {}; only a stopped or failed session can be resumed",
                    self.rec.id.short(),
                    self.state
                ),
            )));
            return;
        }
        let resume = self.rec.has_transcript;
        match self.spawn_child(resume) {
            Ok(()) => self.ready_waiters.push(reply),
            Err(e) => {
                let msg = format!("cannot start claude: {e}");
                self.set_state(SessionState::Failed, Some(msg.clone()));
                let _ = reply.send(Err(ErrorBody::new(ErrorCode::SpawnFailed, msg)));
            }
        }
    }

    fn find_pending(&self, approval: Option<&str>) -> Result<usize, ErrorBody> {
        let short = self.rec.id.short();
        match approval {
            None => match self.pending.len() {
                0 => Err(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("session {short} has no pending approval"),
                )),
                1 => Ok(0),
                _ => Err(ErrorBody::new(
                    ErrorCode::Ambiguous,
                    format!(
                        "session {short} has {} pending approvals ({}); name one",
                        self.pending.len(),
                        self.pending
                            .iter()
                            .map(|p| p.info.approval_id.short().to_owned())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            },
            Some(prefix) => {
                let hits: Vec<usize> = self
                    .pending
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.info.approval_id.0.starts_with(prefix))
                    .map(|(i, _)| i)
                    .collect();
                match hits.as_slice() {
                    [i] => Ok(*i),
                    [] => {
                        if let Some((id, d, by)) = self
                            .decided
                            .iter()
                            .rev()
                            .find(|(id, _, _)| id.0.starts_with(prefix))
                        {
                            let verb = serde_json::to_value(d)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            return Err(ErrorBody::new(
                                ErrorCode::AlreadyDecided,
                                format!(
                                    "approval {} was already answered: {verb} by {by}",
                                    id.short()
                                ),
                            ));
                        }
                        Err(ErrorBody::new(
                            ErrorCode::NotFound,
                            format!(
                                "no pending approval `{prefix}` in session {short}; run `ccrm approvals`"
                            ),
                        ))
                    }
                    _ => Err(ErrorBody::new(
                        ErrorCode::Ambiguous,
                        format!(
                            "`{prefix}` matches {} approvals; give more characters",
                            hits.len()
                        ),
                    )),
                }
            }
        }
    }

    fn decide(
        &mut self,
        approval: Option<&str>,
        decision: Decision,
        message: Option<String>,
        by: &str,
    ) -> Result<DecisionInfo, ErrorBody> {
        if !matches!(
            decision,
            Decision::Allow | Decision::AllowSession | Decision::Deny
        ) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "decision must be allow, allow_session or deny",
            ));
        }
        let idx = self.find_pending(approval)?;
        let kind = self.pending[idx].info.kind;
        if kind == ApprovalKind::Question && decision != Decision::Deny {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "this is a question: answer it with `ccrm answer` (or deny it)",
            ));
        }
        let p = self.pending.remove(idx);
        let id = p.info.approval_id.clone();
        let tool = p.info.tool_name.clone();
        if decision == Decision::Deny {
            let msg = message
                .clone()
                .unwrap_or_else(|| format!("The user ({by}) denied this tool use."));
            self.send_child(child::control_success(
                &id.0,
                json!({"behavior": "deny", "message": msg}),
            ));
        } else {
            self.send_child(child::control_success(
                &id.0,
                json!({"behavior": "allow", "updatedInput": p.info.input}),
            ));
            if decision == Decision::AllowSession && self.session_allowed.insert(tool) {
                self.rec.session_allowed_tools = self.session_allowed.iter().cloned().collect();
                self.save();
            }
        }
        self.end_pending(p, decision, by, message);
        self.after_pending_change();
        Ok(DecisionInfo {
            approval_id: id,
            decision,
            by: by.to_owned(),
            answers: BTreeMap::new(),
        })
    }

    fn answer(
        &mut self,
        approval: Option<&str>,
        answers: &[String],
        by: &str,
    ) -> Result<DecisionInfo, ErrorBody> {
        let idx = self.find_pending(approval)?;
        if self.pending[idx].info.kind != ApprovalKind::Question {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "this is a permission request: use `ccrm approve` or `ccrm deny`",
            ));
        }
        let questions = &self.pending[idx].info.questions;
        if answers.len() != questions.len() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!(
                    "{} question(s) need {} answer(s), got {}",
                    questions.len(),
                    questions.len(),
                    answers.len()
                ),
            ));
        }
        let map: BTreeMap<String, String> = questions
            .iter()
            .zip(answers)
            .map(|(q, a)| (q.question.clone(), resolve_answer(q, a)))
            .collect();
        let p = self.pending.remove(idx);
        let id = p.info.approval_id.clone();
        let mut input = p.info.input;
        if let Value::Object(obj) = &mut input {
            obj.insert("answers".to_owned(), json!(map));
        }
        self.send_child(child::control_success(
            &id.0,
            json!({"behavior": "allow", "updatedInput": input}),
        ));
        self.log.push(
            EventKind::Answer {
                approval_id: id.clone(),
                answers: map.clone(),
                by: by.to_owned(),
                decision: Decision::Allow,
            },
            None,
        );
        self.remember_decided(&id, Decision::Allow, by);
        self.after_pending_change();
        Ok(DecisionInfo {
            approval_id: id,
            decision: Decision::Allow,
            by: by.to_owned(),
            answers: map,
        })
    }

    fn remember_decided(&mut self, id: &ApprovalId, d: Decision, by: &str) {
        if self.decided.len() == DECIDED_MEMORY {
            self.decided.pop_front();
        }
        self.decided.push_back((id.clone(), d, by.to_owned()));
    }

    fn after_pending_change(&mut self) {
        if self.pending.is_empty() && self.state == SessionState::WaitingPermission {
            self.set_state(SessionState::Active, None);
        }
        self.publish();
    }

    // ----- the child ------------------------------------------------------------------

    fn next_ctl_id(&mut self, what: &str) -> String {
        self.ctl_seq += 1;
        format!("ccrm_{what}_{}", self.ctl_seq)
    }

    fn send_child(&mut self, line: Value) {
        let Some(r) = &self.child else { return };
        let Some(stdin) = &r.stdin else { return };
        let text = line.to_string();
        if let Err(e) = stdin.try_send(text) {
            // The writer is 64 lines behind or gone: the child is not reading its stdin.
            warn!(error = %e, "cannot write to claude's stdin");
            self.log.push(
                EventKind::Error {
                    message: "claude is not reading its input; a message to it was dropped".into(),
                },
                None,
            );
        }
    }

    fn spawn_child(&mut self, resume: bool) -> anyhow::Result<()> {
        let cfg = &self.ctx.cfg;
        let mut args: Vec<String> = child::STREAM_JSON_ARGS
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        if cfg.partial_messages {
            args.push("--include-partial-messages".into());
        }
        if resume {
            args.push(format!("--resume={}", self.rec.id));
        } else {
            args.push(format!("--session-id={}", self.rec.id));
        }
        if let Some(model) = &self.rec.model {
            args.push(format!("--model={model}"));
        }
        args.push(format!("--permission-mode={}", self.rec.permission_mode));
        args.extend(cfg.extra_args.iter().cloned());
        let spec = ChildSpec {
            program: self.ctx.claude_bin.clone(),
            args,
            cwd: self.rec.cwd.clone(),
            env: cfg
                .child_env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            owner: spawn::owner_value(&self.ctx.tag, &self.rec.id.to_string()),
        };
        let mut child = spawn::spawn(&spec, self.ctx.shim.as_deref())?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdout), Some(stdin), Some(stderr)) =
            (child.stdout.take(), child.stdin.take(), child.stderr.take())
        else {
            anyhow::bail!("child stdio was not piped");
        };
        info!(pid, resume, "claude started");

        let (line_tx, line_rx) = mpsc::channel(256);
        tokio::spawn(read_child(child, stdout, line_tx).in_current_span());
        let (stdin_tx, stdin_rx) = mpsc::channel::<String>(64);
        tokio::spawn(write_child(stdin, stdin_rx).in_current_span());
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(read_stderr(stderr, tail.clone()).in_current_span());

        self.child = Some(Running {
            pid,
            rx: line_rx,
            stdin: Some(stdin_tx),
            stderr_tail: tail,
        });
        self.fail_reason = None;
        self.ending = None;
        self.set_state(SessionState::Starting, None);
        let init = self.next_ctl_id("init");
        self.init_request = Some(init.clone());
        self.send_child(child::control_request(
            &init,
            json!({"subtype": "initialize", "hooks": null}),
        ));
        Ok(())
    }

    fn on_line(&mut self, line: &str) {
        let (raw, msg) = match child::parse_line(line) {
            Ok(v) => v,
            Err(e) => {
                if line.trim().is_empty() {
                    return;
                }
                let reason = format!("claude printed something that is not JSON: {}", e.snippet);
                self.log.push(
                    EventKind::Error {
                        message: reason.clone(),
                    },
                    None,
                );
                self.fail_reason = Some(reason);
                self.kill_group();
                return;
            }
        };
        let keep = (line.len() <= MAX_RAW_KEEP).then_some(raw);
        match msg {
            ChildMsg::System { subtype } => {
                if subtype == "api_retry" {
                    let raw = keep.unwrap_or(Value::Null);
                    self.log.push(
                        EventKind::ApiRetry {
                            attempt: raw.get("attempt").and_then(Value::as_u64).unwrap_or(0),
                            status: raw.get("error_status").and_then(Value::as_u64),
                            error: raw.get("error").and_then(Value::as_str).map(str::to_owned),
                        },
                        Some(raw),
                    );
                }
            }
            ChildMsg::StreamEvent { event } => {
                if event.get("type").and_then(Value::as_str) == Some("content_block_delta")
                    && let Some(text) = event
                        .get("delta")
                        .filter(|d| d.get("type").and_then(Value::as_str) == Some("text_delta"))
                        .and_then(|d| d.get("text"))
                        .and_then(Value::as_str)
                {
                    self.log.push(
                        EventKind::AssistantDelta {
                            text: text.to_owned(),
                        },
                        None,
                    );
                }
            }
            ChildMsg::Assistant(a) => {
                for block in a.message.blocks() {
                    match block {
                        Block::Text { text } => {
                            self.log
                                .push(EventKind::AssistantText { text }, keep.clone());
                        }
                        Block::ToolUse { id, name, input } => {
                            self.log.push(
                                EventKind::ToolUse {
                                    tool_use_id: id,
                                    name,
                                    input,
                                },
                                keep.clone(),
                            );
                        }
                        _ => {}
                    }
                }
            }
            ChildMsg::User(u) => {
                if u.is_replay {
                    return;
                }
                for block in u.message.blocks() {
                    if let Block::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } = block
                    {
                        self.log.push(
                            EventKind::ToolResult {
                                tool_use_id,
                                content: truncate(&content, MAX_TOOL_RESULT_TEXT),
                                is_error,
                            },
                            keep.clone(),
                        );
                    }
                }
            }
            ChildMsg::Result(r) => self.on_result(&r, keep),
            ChildMsg::ControlRequest {
                request_id,
                request,
            } => {
                self.on_control_request(request_id, &request, keep);
            }
            ChildMsg::ControlResponse {
                request_id,
                subtype,
                body,
            } => {
                if self.init_request.as_deref() == Some(request_id.as_str()) {
                    self.init_request = None;
                    if subtype == "error" {
                        warn!(error = %body, "initialize failed; going on without it");
                    }
                    if self.state == SessionState::Starting {
                        self.set_state(SessionState::Idle, None);
                        self.answer_ready_waiters();
                        self.pump();
                    }
                } else if subtype == "error" {
                    debug!(request_id, error = %body, "control request failed");
                }
            }
            ChildMsg::ControlCancel { request_id } => {
                if let Some(idx) = self
                    .pending
                    .iter()
                    .position(|p| p.info.approval_id.0 == request_id)
                {
                    let p = self.pending.remove(idx);
                    self.end_pending(
                        p,
                        Decision::Cancelled,
                        "claude",
                        Some("withdrawn by claude (the turn was interrupted)".into()),
                    );
                    self.after_pending_change();
                }
            }
            ChildMsg::Other => {}
        }
    }

    fn on_result(&mut self, r: &child::ResultMsg, raw: Option<Value>) {
        self.turns += 1;
        if r.total_cost_usd.is_some() {
            self.cost = r.total_cost_usd;
        }
        // A pending prompt cannot outlive its turn; the CLI cancels them, but be sure.
        for p in std::mem::take(&mut self.pending) {
            self.end_pending(
                p,
                Decision::Cancelled,
                "claude",
                Some("the turn ended".into()),
            );
        }
        self.log.push(
            EventKind::TurnResult {
                prompt_id: self.current.take(),
                text: r.text(),
                is_error: r.is_error,
                subtype: r.subtype.clone(),
                cost_usd: r.total_cost_usd,
                duration_ms: r.duration_ms,
                num_turns: r.num_turns,
            },
            raw,
        );
        if self.child.is_some() && self.ending.is_none() {
            self.set_state(SessionState::Idle, None);
        }
        self.pump();
        self.publish();
    }

    fn on_control_request(&mut self, request_id: String, req: &Value, raw: Option<Value>) {
        let subtype = req
            .get("subtype")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if subtype != "can_use_tool" {
            self.send_child(child::control_error(
                &request_id,
                &format!("ccrm does not support the `{subtype}` control request"),
            ));
            return;
        }
        let tool = req
            .get("tool_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let input = req.get("input").cloned().unwrap_or_else(|| json!({}));
        let approval_id = ApprovalId(request_id.clone());
        let tool_use_id = req
            .get("tool_use_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let description = req
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned);

        if tool == "AskUserQuestion" {
            let questions: Vec<Question> = input
                .get("questions")
                .cloned()
                .and_then(|q| serde_json::from_value(q).ok())
                .unwrap_or_default();
            self.log.push(
                EventKind::Question {
                    approval_id: approval_id.clone(),
                    questions: questions.clone(),
                },
                raw,
            );
            self.add_pending(ApprovalInfo {
                approval_id,
                session_id: self.rec.id,
                kind: ApprovalKind::Question,
                tool_name: tool,
                input,
                description,
                questions,
                created_ms: now_ms(),
            });
            return;
        }

        let policy = if self.rec.auto_allow {
            Some("policy (auto-allow)")
        } else if self.rec.allowed_tools.contains(&tool) {
            Some("policy (always allowed)")
        } else if self.session_allowed.contains(&tool) {
            Some("session rule")
        } else {
            None
        };
        if let Some(by) = policy {
            self.send_child(child::control_success(
                &request_id,
                json!({"behavior": "allow", "updatedInput": input}),
            ));
            self.log.push(
                EventKind::PermissionDecision {
                    approval_id,
                    tool_name: tool,
                    decision: Decision::Allow,
                    by: by.to_owned(),
                    message: None,
                },
                raw,
            );
            return;
        }
        self.log.push(
            EventKind::PermissionRequest {
                approval_id: approval_id.clone(),
                tool_name: tool.clone(),
                input: input.clone(),
                tool_use_id,
                description: description.clone(),
            },
            raw,
        );
        self.add_pending(ApprovalInfo {
            approval_id,
            session_id: self.rec.id,
            kind: ApprovalKind::Permission,
            tool_name: tool,
            input,
            description,
            questions: Vec::new(),
            created_ms: now_ms(),
        });
    }

    fn add_pending(&mut self, info: ApprovalInfo) {
        self.pending.push(Pending { info });
        if self.state == SessionState::Active {
            self.set_state(SessionState::WaitingPermission, None);
        }
        self.publish();
    }

    /// Records how a pending approval ended (an event for every surface) and remembers it,
    /// so a late answer can be told who won.
    fn end_pending(&mut self, p: Pending, decision: Decision, by: &str, message: Option<String>) {
        let id = p.info.approval_id.clone();
        if p.info.kind == ApprovalKind::Question {
            self.log.push(
                EventKind::Answer {
                    approval_id: id.clone(),
                    answers: BTreeMap::new(),
                    by: by.to_owned(),
                    decision,
                },
                None,
            );
        } else {
            self.log.push(
                EventKind::PermissionDecision {
                    approval_id: id.clone(),
                    tool_name: p.info.tool_name,
                    decision,
                    by: by.to_owned(),
                    message,
                },
                None,
            );
        }
        self.remember_decided(&id, decision, by);
    }

    /// Starts the next queued prompt if the child is idle.
    fn pump(&mut self) {
        if self.state != SessionState::Idle
            || self.current.is_some()
            || self.ending.is_some()
            || self.attach.is_some()
            || self.tui.is_some()
        {
            return;
        }
        let Some((prompt_id, text)) = self.queue.pop_front() else {
            return;
        };
        self.current = Some(prompt_id);
        if !self.rec.has_transcript {
            self.rec.has_transcript = true;
            self.save();
        }
        self.send_child(child::user_line(&text));
        self.log.push(EventKind::TurnStarted { prompt_id }, None);
        self.set_state(SessionState::Active, None);
    }

    fn on_exit(&mut self, status: Option<ExitStatus>) {
        let Some(running) = self.child.take() else {
            return;
        };
        let tail: Vec<String> = running
            .stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let code = status.map_or_else(|| "unknown status".to_owned(), describe_status);
        // Tools claude started run in their own process groups; end any that outlive it.
        let leftovers =
            spawn::sweep_orphans(&spawn::owner_value(&self.ctx.tag, &self.rec.id.to_string()));
        if !leftovers.is_empty() {
            info!(pids = ?leftovers, "killed processes left behind by claude");
        }
        let ending = self.ending.take();
        let handover =
            self.attach.is_some() && ending.as_ref().is_some_and(|e| e.kind == EndKind::Handover);
        let (state, reason) = if let Some(reason) = self.fail_reason.take() {
            (SessionState::Failed, reason)
        } else if let Some(e) = ending {
            let what = if e.kind == EndKind::Kill {
                "killed"
            } else {
                "stopped"
            };
            (SessionState::Stopped, what.to_owned())
        } else {
            let mut reason = format!("claude exited unexpectedly ({code})");
            if !tail.is_empty() {
                reason.push_str(": ");
                reason.push_str(&tail.join(" | "));
            }
            (SessionState::Failed, reason)
        };
        info!(pid = running.pid, %code, state = %state, "claude exited");
        let why = format!("the session ended before an answer ({reason})");
        for p in std::mem::take(&mut self.pending) {
            self.end_pending(p, Decision::Aborted, "daemon", Some(why.clone()));
        }
        if let Some(prompt_id) = self.current.take() {
            self.log.push(
                EventKind::TurnResult {
                    prompt_id: Some(prompt_id),
                    text: Some(reason.clone()),
                    is_error: true,
                    subtype: "session_ended".into(),
                    cost_usd: self.cost,
                    duration_ms: None,
                    num_turns: None,
                },
                None,
            );
        }
        self.init_request = None;
        if handover {
            // The child is gone: now the TUI may have the session.
            self.start_tui();
        } else {
            self.set_state(state, Some(reason));
        }
        self.answer_ready_waiters();
        let info = self.info();
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(Ok(info.clone()));
        }
    }

    // ----- attach (the TUI in tmux) ---------------------------------------------------

    fn in_use_at_terminal(&self, what_to_do: &str) -> ErrorBody {
        ErrorBody::new(
            ErrorCode::BadState,
            format!(
                "session {} is in use at the terminal (ccrm attach); {what_to_do}",
                self.rec.id.short()
            ),
        )
    }

    fn attach(&mut self, now: bool, reply: Reply<AttachInfo>) {
        if let Some(t) = &mut self.tui {
            if t.pid.is_some() {
                let _ = reply.send(Ok(self.attach_info(true)));
            } else {
                t.waiters.push(reply);
            }
            return;
        }
        if self
            .ending
            .as_ref()
            .is_some_and(|e| e.kind != EndKind::Handover)
        {
            let _ = reply.send(Err(ErrorBody::new(
                ErrorCode::BadState,
                "the session is stopping; attach once it has stopped",
            )));
            return;
        }
        if attach::find_tmux().is_none() {
            let _ = reply.send(Err(attach::tmux_missing()));
            return;
        }
        if now && self.current.is_some() {
            self.interrupt(&format!(
                "{} (ccrm attach --now)",
                Origin::new(Surface::Cli)
            ));
        }
        match &mut self.attach {
            Some(a) => a.waiters.push(reply),
            None => {
                self.attach = Some(AttachWait {
                    waiters: vec![reply],
                    was_live: self.child.is_some(),
                });
            }
        }
    }

    /// Moves a pending attach on: once no turn runs, stop the child; once it is gone, start
    /// the TUI. Called after every actor step.
    fn advance_attach(&mut self) {
        if self.attach.is_none() || self.tui.is_some() || self.ending.is_some() {
            return;
        }
        if self.child.is_some() {
            if self.state != SessionState::Starting && self.current.is_none() {
                self.start_ending(EndKind::Handover);
            }
            return;
        }
        self.start_tui();
    }

    /// Gives up a pending attach (stop, kill, shutdown); its callers get `err`.
    fn cancel_attach(&mut self, err: &ErrorBody) {
        let Some(a) = self.attach.take() else { return };
        for w in a.waiters {
            let _ = w.send(Err(err.clone()));
        }
        if let Some(e) = &mut self.ending
            && e.kind == EndKind::Handover
        {
            e.kind = EndKind::Stop;
        }
    }

    /// Starts the monitor task that runs the TUI. The child must be gone.
    fn start_tui(&mut self) {
        let Some(wait) = self.attach.take() else {
            return;
        };
        let Some(tmux_bin) = attach::find_tmux() else {
            for w in wait.waiters {
                let _ = w.send(Err(attach::tmux_missing()));
            }
            self.after_failed_tui(wait.was_live, "tmux is not installed".to_owned());
            return;
        };
        let cfg = &self.ctx.cfg;
        let config_dir = attach::claude_config_dir(&cfg.child_env);
        let tail = attach::Tail::new(config_dir.clone(), self.rec.id);
        let has_transcript = self.rec.has_transcript
            || config_dir
                .as_deref()
                .is_some_and(|d| attach::find_transcript(d, &self.rec.id).is_some());
        let mut args = vec![if has_transcript {
            format!("--resume={}", self.rec.id)
        } else {
            format!("--session-id={}", self.rec.id)
        }];
        if let Some(model) = &self.rec.model {
            args.push(format!("--model={model}"));
        }
        args.push(format!("--permission-mode={}", self.rec.permission_mode));
        args.extend(cfg.extra_args.iter().cloned());
        let owner = spawn::owner_value(&self.ctx.tag, &self.rec.id.to_string());
        let name = attach::tmux_session_name(&self.rec.id);
        let socket = attach::tmux_socket(&cfg.runtime_dir, &self.rec.id);
        let start = attach::TuiStart {
            tmux: attach::Tmux::new(tmux_bin, socket.clone()),
            name: name.clone(),
            spec: attach::TuiSpec {
                program: self.ctx.claude_bin.clone(),
                args,
                cwd: self.rec.cwd.clone(),
                env: attach::tui_env(&cfg.child_env, &owner),
            },
            tail,
            owner,
        };
        if has_transcript && !self.rec.has_transcript {
            self.rec.has_transcript = true;
            self.save();
        }
        let (tx, rx) = mpsc::channel(64);
        let (ctl_tx, ctl_rx) = mpsc::channel(4);
        let task = tokio::spawn(attach::run_tui(start, tx, ctl_rx).in_current_span());
        self.tui = Some(Tui {
            rx,
            ctl: ctl_tx,
            task,
            socket,
            name,
            pid: None,
            waiters: wait.waiters,
            after: AfterTui::Resume,
            was_live: wait.was_live,
            turn: None,
            last_text: None,
        });
        self.set_state(SessionState::Attached, None);
    }

    fn attach_info(&self, joined: bool) -> AttachInfo {
        let (socket, name, pid) = self.tui.as_ref().map_or_else(
            || (PathBuf::new(), String::new(), None),
            |t| (t.socket.clone(), t.name.clone(), t.pid),
        );
        AttachInfo {
            session_id: self.rec.id,
            socket,
            tmux_session: name,
            pid,
            joined,
        }
    }

    /// Asks the monitor to end the TUI now; [`FromTui::Ended`] follows.
    fn end_tui(&mut self, after: AfterTui, reason: &str, force: bool) {
        let Some(t) = &mut self.tui else { return };
        // A shutdown wins over a stop; a stop over going back to the daemon.
        if t.after != AfterTui::Shutdown {
            t.after = after;
        }
        let _ = t.ctl.try_send(ToTui::End {
            reason: reason.to_owned(),
            force,
        });
    }

    fn on_tui(&mut self, msg: Option<FromTui>) {
        match msg {
            Some(FromTui::Started { pid }) => {
                let Some(t) = &mut self.tui else { return };
                t.pid = Some(pid);
                let waiters = std::mem::take(&mut t.waiters);
                let target = t.name.clone();
                self.log.push(EventKind::Attached { target }, None);
                self.publish();
                let info = self.attach_info(false);
                for w in waiters {
                    let _ = w.send(Ok(info.clone()));
                }
            }
            Some(FromTui::Failed(reason)) => {
                let Some(t) = self.tui.take() else { return };
                warn!(%reason, "the TUI did not start");
                self.log.push(
                    EventKind::Error {
                        message: reason.clone(),
                    },
                    None,
                );
                for w in t.waiters {
                    let _ = w.send(Err(ErrorBody::new(ErrorCode::SpawnFailed, reason.clone())));
                }
                match t.after {
                    AfterTui::Resume => self.after_failed_tui(t.was_live, reason),
                    AfterTui::End(kind) => self.stopped_after_tui(kind),
                    AfterTui::Shutdown => self.stopped_after_tui(EndKind::Stop),
                }
            }
            Some(FromTui::Items(items)) => {
                for (item, raw) in items {
                    self.on_tui_item(item, raw);
                }
                self.publish();
            }
            Some(FromTui::Ended { reason }) => self.finish_tui(reason),
            None => self.finish_tui("the tmux monitor ended".to_owned()),
        }
    }

    /// Reports one thing the TUI wrote to the transcript as an event with origin `tui`.
    fn on_tui_item(&mut self, item: TuiItem, raw: Value) {
        let raw = (raw.to_string().len() <= MAX_RAW_KEEP).then_some(raw);
        let Some(t) = &mut self.tui else { return };
        match item {
            TuiItem::Prompt(text) => {
                let open = t.turn.take();
                let last = t.last_text.take();
                if let Some(prompt_id) = open {
                    self.push_tui_result(prompt_id, last, false, "success", None);
                }
                let prompt_id = self.next_prompt;
                self.next_prompt += 1;
                self.log.push(
                    EventKind::Prompt {
                        prompt_id,
                        text,
                        origin: Origin::new(Surface::Tui),
                        queued_behind: 0,
                    },
                    raw,
                );
                self.log.push(EventKind::TurnStarted { prompt_id }, None);
                if let Some(t) = &mut self.tui {
                    t.turn = Some(prompt_id);
                }
            }
            TuiItem::Text(text) => {
                t.last_text = Some(text.clone());
                self.log.push(EventKind::AssistantText { text }, raw);
            }
            TuiItem::ToolUse { id, name, input } => {
                self.log.push(
                    EventKind::ToolUse {
                        tool_use_id: id,
                        name,
                        input,
                    },
                    raw,
                );
            }
            TuiItem::ToolResult {
                id,
                content,
                is_error,
            } => {
                self.log.push(
                    EventKind::ToolResult {
                        tool_use_id: id,
                        content: truncate(&content, MAX_TOOL_RESULT_TEXT),
                        is_error,
                    },
                    raw,
                );
            }
            TuiItem::TurnEnd { duration_ms } => {
                if let Some(prompt_id) = t.turn.take() {
                    let last = t.last_text.take();
                    self.push_tui_result(prompt_id, last, false, "success", duration_ms);
                }
            }
            TuiItem::Interrupted => {
                if let Some(prompt_id) = t.turn.take() {
                    t.last_text = None;
                    self.log.push(
                        EventKind::Interrupted {
                            by: Origin::new(Surface::Tui).to_string(),
                        },
                        raw,
                    );
                    self.push_tui_result(
                        prompt_id,
                        Some("interrupted in the TUI".to_owned()),
                        true,
                        "interrupted",
                        None,
                    );
                }
            }
        }
    }

    fn push_tui_result(
        &mut self,
        prompt_id: u64,
        text: Option<String>,
        is_error: bool,
        subtype: &str,
        duration_ms: Option<u64>,
    ) {
        self.turns += 1;
        self.log.push(
            EventKind::TurnResult {
                prompt_id: Some(prompt_id),
                text,
                is_error,
                subtype: subtype.to_owned(),
                cost_usd: None,
                duration_ms,
                num_turns: None,
            },
            None,
        );
    }

    /// The TUI is gone (its process has exited): report it and give the session back.
    fn finish_tui(&mut self, reason: String) {
        let Some(t) = self.tui.take() else { return };
        t.task.abort();
        if let Some(prompt_id) = t.turn {
            self.push_tui_result(
                prompt_id,
                Some(format!("the TUI ended during the turn ({reason})")),
                true,
                "session_ended",
                None,
            );
        }
        for w in t.waiters {
            let _ = w.send(Err(ErrorBody::new(
                ErrorCode::SpawnFailed,
                format!("the TUI ended before it was ready ({reason})"),
            )));
        }
        self.log.push(EventKind::Detached { reason }, None);
        match t.after {
            AfterTui::Resume => self.respawn_after_tui(),
            AfterTui::End(kind) => self.stopped_after_tui(kind),
            AfterTui::Shutdown => {
                self.set_state(
                    SessionState::Stopped,
                    Some("the daemon stopped while the session was attached".to_owned()),
                );
            }
        }
    }

    /// Starts the stream-json child again after the TUI; queued prompts then run.
    fn respawn_after_tui(&mut self) {
        if !self.rec.has_transcript
            && attach::claude_config_dir(&self.ctx.cfg.child_env)
                .as_deref()
                .is_some_and(|d| attach::find_transcript(d, &self.rec.id).is_some())
        {
            self.rec.has_transcript = true;
        }
        let resume = self.rec.has_transcript;
        if let Err(e) = self.spawn_child(resume) {
            let msg = format!("cannot start claude after the TUI: {e}");
            self.log.push(
                EventKind::Error {
                    message: msg.clone(),
                },
                None,
            );
            self.set_state(SessionState::Failed, Some(msg));
        }
    }

    fn stopped_after_tui(&mut self, kind: EndKind) {
        let what = if kind == EndKind::Kill {
            "killed"
        } else {
            "stopped"
        };
        self.set_state(SessionState::Stopped, Some(what.to_owned()));
        let info = self.info();
        for w in self.stop_waiters.drain(..) {
            let _ = w.send(Ok(info.clone()));
        }
    }

    /// The TUI did not start: a session that had a child gets one again; a stopped one
    /// stays stopped.
    fn after_failed_tui(&mut self, was_live: bool, reason: String) {
        if was_live {
            self.respawn_after_tui();
        } else {
            self.set_state(
                SessionState::Stopped,
                Some(format!("attach failed: {reason}")),
            );
        }
    }

    // ----- bookkeeping ----------------------------------------------------------------

    fn answer_ready_waiters(&mut self) {
        let info = self.info();
        for w in self.ready_waiters.drain(..) {
            let _ = w.send(Ok(info.clone()));
        }
    }

    fn set_state(&mut self, state: SessionState, reason: Option<String>) {
        if self.state == state && self.reason == reason {
            return;
        }
        self.state = state;
        self.reason = reason.clone();
        self.log.push(EventKind::State { state, reason }, None);
        self.publish();
        if matches!(
            state,
            SessionState::Stopped
                | SessionState::Failed
                | SessionState::Idle
                | SessionState::Starting
        ) {
            self.save();
        }
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            id: self.rec.id,
            name: self.rec.name.clone(),
            cwd: self.rec.cwd.clone(),
            model: self.rec.model.clone(),
            permission_mode: self.rec.permission_mode.clone(),
            state: self.state,
            reason: self.reason.clone(),
            pid: self
                .child
                .as_ref()
                .map(|c| c.pid)
                .or_else(|| self.tui.as_ref().and_then(|t| t.pid)),
            queued: self.queue.len(),
            pending: self.pending.len(),
            turns: self.turns,
            cost_usd: self.cost,
            created_ms: self.rec.created_ms,
            last_event_ms: now_ms(),
            last_seq: self.log.last_seq(),
            session_allowed_tools: self.session_allowed.iter().cloned().collect(),
            auto_allow: self.rec.auto_allow,
        }
    }

    fn publish(&self) {
        let info = self.info();
        let pending = self.pending.iter().map(|p| p.info.clone()).collect();
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.info = info;
        shared.pending = pending;
    }

    fn save(&mut self) {
        self.rec.state = self.state;
        self.rec.reason = self.reason.clone();
        if let Err(e) = store::save(&self.ctx.cfg.sessions_dir(), &self.rec) {
            warn!(error = %e, "cannot save session record");
        }
    }
}

/// Picks the label an answer names: an option number (1-based), a label (any case), or the
/// text itself (free-form answers are allowed).
fn resolve_answer(q: &Question, answer: &str) -> String {
    let answer = answer.trim();
    if let Ok(n) = answer.parse::<usize>()
        && let Some(opt) = n.checked_sub(1).and_then(|i| q.options.get(i))
    {
        return opt.label.clone();
    }
    q.options
        .iter()
        .find(|o| o.label.eq_ignore_ascii_case(answer))
        .map_or_else(|| answer.to_owned(), |o| o.label.clone())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
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

async fn write_child(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
    // Dropping stdin closes it: EOF tells the CLI to finish and exit.
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

/// Builds the `by` text of a decision from an origin.
pub fn by_of(origin: Option<&Origin>) -> String {
    origin.map_or_else(
        || Origin::new(Surface::Cli).to_string(),
        ToString::to_string,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::event::QuestionOption;

    #[test]
    fn answers_resolve_by_number_label_or_text() {
        let q = Question {
            question: "Pick".into(),
            header: None,
            options: vec![
                QuestionOption {
                    label: "Red".into(),
                    description: None,
                },
                QuestionOption {
                    label: "Blue".into(),
                    description: None,
                },
            ],
            multi_select: false,
        };
        assert_eq!(resolve_answer(&q, "2"), "Blue");
        assert_eq!(resolve_answer(&q, "red"), "Red");
        assert_eq!(resolve_answer(&q, "green"), "green");
        assert_eq!(resolve_answer(&q, "9"), "9");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(10);
        let t = truncate(&s, 5);
        assert!(t.starts_with("éé"));
        assert!(t.contains("more bytes"));
        assert_eq!(truncate("abc", 5), "abc");
    }
}
