//! The session's side of `ccrm attach` ([`Handover`]): the attach that waits for the child
//! to be gone, then the TUI that owns the session until it exits or its last client
//! detaches.
//!
//! The actor ([`super::actor`]) decides when to move on (after the running turn, once the
//! stream-json child has exited) and what happens after the TUI ([`AfterTui`]); this struct
//! keeps the callers waiting for the TUI, starts the monitor task ([`attach::run_tui`])
//! with the session's arguments ([`claude_args`]), and turns what the TUI writes to the
//! transcript ([`TuiItem`]) into events with origin `tui`. The tmux and transcript work
//! itself is in [`crate::attach`], which knows nothing of sessions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::event::{EventKind, Origin, Surface};
use common::ids::SessionId;
use common::ipc::{AttachInfo, ErrorBody, ErrorCode};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{Instrument, warn};

use super::Ctx;
use super::child::claude_args;
use super::cmd::Reply;
use super::ending::EndKind;
use super::output::{MAX_RAW_KEEP, tool_result};
use super::queue::PromptQueue;
use crate::attach::{self, FromTui, ToTui, TuiItem};
use crate::eventlog::EventLog;
use crate::store::SessionRecord;

/// What happens when the TUI is gone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum AfterTui {
    /// Back under the daemon: start the stream-json child with `--resume`.
    Resume,
    /// `ccrm stop` / `ccrm kill`: stay stopped.
    End(EndKind),
    /// The daemon is shutting down.
    Shutdown,
}

/// What [`Handover::start_tui`] came to.
pub(super) enum TuiLaunch {
    /// No attach was waiting.
    NotAsked,
    /// tmux is missing; the callers have been told.
    NoTmux {
        /// Whether the session had a live child when attach was asked for.
        was_live: bool,
    },
    /// The monitor task runs.
    Started {
        /// The session's transcript was found on disk though its record did not know it.
        found_transcript: bool,
    },
}

/// An attach that has been asked for but whose TUI has not started yet.
struct AttachWait {
    waiters: Vec<Reply<AttachInfo>>,
    /// Whether the session had a live child when attach was asked for (it gets one again
    /// if the TUI cannot start).
    was_live: bool,
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

/// The attach in progress, if any: waiting for the child to be gone, or the TUI running.
pub(super) struct Handover {
    wait: Option<AttachWait>,
    tui: Option<Tui>,
}

impl Handover {
    /// No attach.
    pub(super) fn new() -> Self {
        Self {
            wait: None,
            tui: None,
        }
    }

    /// Whether an attach waits or the TUI has the session: prompts queue, the pump is shut.
    pub(super) fn is_active(&self) -> bool {
        self.wait.is_some() || self.tui.is_some()
    }

    /// Whether an attach waits for the running turn and the child's exit.
    pub(super) fn is_waiting(&self) -> bool {
        self.wait.is_some()
    }

    /// Whether the TUI (or its monitor) has the session.
    pub(super) fn is_attached(&self) -> bool {
        self.tui.is_some()
    }

    /// The pid of the running TUI.
    pub(super) fn pid(&self) -> Option<u32> {
        self.tui.as_ref().and_then(|t| t.pid)
    }

    /// The next report of the monitor; never ready without a TUI.
    pub(super) async fn recv(&mut self) -> Option<FromTui> {
        match &mut self.tui {
            Some(t) => t.rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// What `ccrm attach` needs to reach the TUI (empty without one).
    pub(super) fn info(&self, session_id: SessionId, joined: bool) -> AttachInfo {
        let (socket, name, pid) = self.tui.as_ref().map_or_else(
            || (PathBuf::new(), String::new(), None),
            |t| (t.socket.clone(), t.name.clone(), t.pid),
        );
        AttachInfo {
            session_id,
            socket,
            tmux_session: name,
            pid,
            joined,
        }
    }

    /// Joins the TUI that has the session: answers at once when it runs, or once it has
    /// started. Gives `reply` back when there is no TUI.
    pub(super) fn join(
        &mut self,
        reply: Reply<AttachInfo>,
        session_id: SessionId,
    ) -> Option<Reply<AttachInfo>> {
        let Some(t) = &mut self.tui else {
            return Some(reply);
        };
        if t.pid.is_none() {
            t.waiters.push(reply);
        } else {
            let _ = reply.send(Ok(self.info(session_id, true)));
        }
        None
    }

    /// Adds a caller to the attach that waits for the child, or starts waiting.
    pub(super) fn wait(&mut self, reply: Reply<AttachInfo>, was_live: bool) {
        match &mut self.wait {
            Some(a) => a.waiters.push(reply),
            None => {
                self.wait = Some(AttachWait {
                    waiters: vec![reply],
                    was_live,
                });
            }
        }
    }

    /// Gives up a waiting attach; its callers get `err`. `false` when none waited.
    pub(super) fn cancel_wait(&mut self, err: &ErrorBody) -> bool {
        let Some(a) = self.wait.take() else {
            return false;
        };
        for w in a.waiters {
            let _ = w.send(Err(err.clone()));
        }
        true
    }

    /// Starts the monitor task that runs the TUI for the waiting attach. The child must be
    /// gone.
    pub(super) fn start_tui(&mut self, ctx: &Ctx, rec: &SessionRecord) -> TuiLaunch {
        let Some(wait) = self.wait.take() else {
            return TuiLaunch::NotAsked;
        };
        let Some(tmux_bin) = attach::find_tmux() else {
            for w in wait.waiters {
                let _ = w.send(Err(attach::tmux_missing()));
            }
            return TuiLaunch::NoTmux {
                was_live: wait.was_live,
            };
        };
        let cfg = &ctx.cfg;
        let tail = attach::Tail::new(attach::claude_config_dir(&cfg.child_env), rec.id);
        let found_transcript = !rec.has_transcript && transcript_on_disk(&cfg.child_env, &rec.id);
        let owner = ctx.owner(&rec.id);
        let name = attach::tmux_session_name(&rec.id);
        let socket = attach::tmux_socket(&cfg.runtime_dir, &rec.id);
        let start = attach::TuiStart {
            tmux: attach::Tmux::new(tmux_bin, socket.clone()),
            name: name.clone(),
            spec: attach::TuiSpec {
                program: ctx.claude_bin.clone(),
                args: claude_args(rec, rec.has_transcript || found_transcript, &cfg.extra_args),
                cwd: rec.cwd.clone(),
                env: attach::tui_env(&cfg.child_env, &owner),
            },
            tail,
            owner,
        };
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
        TuiLaunch::Started { found_transcript }
    }

    /// The TUI runs as `pid`: returns its tmux session name and the callers to answer.
    pub(super) fn started(&mut self, pid: u32) -> Option<(String, Vec<Reply<AttachInfo>>)> {
        let t = self.tui.as_mut()?;
        t.pid = Some(pid);
        Some((t.name.clone(), std::mem::take(&mut t.waiters)))
    }

    /// The TUI did not start: reports `reason`, tells the callers, and returns what was to
    /// happen after the TUI and whether the session had a live child.
    pub(super) fn failed(&mut self, reason: &str, log: &EventLog) -> Option<(AfterTui, bool)> {
        let t = self.tui.take()?;
        warn!(%reason, "the TUI did not start");
        log.push(
            EventKind::Error {
                message: reason.to_owned(),
            },
            None,
        );
        for w in t.waiters {
            let _ = w.send(Err(ErrorBody::new(
                ErrorCode::SpawnFailed,
                reason.to_owned(),
            )));
        }
        Some((t.after, t.was_live))
    }

    /// Asks the monitor to end the TUI now; [`FromTui::Ended`] follows. A shutdown wins
    /// over a stop, a stop over going back to the daemon.
    pub(super) fn end(&mut self, after: AfterTui, reason: &str, force: bool) {
        let Some(t) = &mut self.tui else { return };
        if t.after != AfterTui::Shutdown {
            t.after = after;
        }
        let _ = t.ctl.try_send(ToTui::End {
            reason: reason.to_owned(),
            force,
        });
    }

    /// Reports what the TUI wrote to the transcript; returns how many turns ended.
    pub(super) fn report(
        &mut self,
        items: Vec<(TuiItem, Value)>,
        queue: &mut PromptQueue,
        log: &EventLog,
    ) -> u64 {
        let Some(t) = &mut self.tui else { return 0 };
        items
            .into_iter()
            .map(|(item, raw)| t.report(item, raw, queue, log))
            .sum()
    }

    /// The TUI is gone (its process has exited): ends its open turn, tells the callers
    /// still waiting, reports the detach, and returns what happens next and how many turns
    /// ended.
    pub(super) fn finish(&mut self, reason: String, log: &EventLog) -> Option<(AfterTui, u64)> {
        let t = self.tui.take()?;
        t.task.abort();
        if let Some(prompt_id) = t.turn {
            let text = format!("the TUI ended during the turn ({reason})");
            turn_result(log, prompt_id, Some(text), true, "session_ended", None);
        }
        for w in t.waiters {
            let _ = w.send(Err(ErrorBody::new(
                ErrorCode::SpawnFailed,
                format!("the TUI ended before it was ready ({reason})"),
            )));
        }
        log.push(EventKind::Detached { reason }, None);
        Some((t.after, u64::from(t.turn.is_some())))
    }
}

impl Tui {
    /// Reports one thing the TUI wrote to the transcript as an event with origin `tui`;
    /// returns how many turns ended (0 or 1).
    fn report(
        &mut self,
        item: TuiItem,
        raw: Value,
        queue: &mut PromptQueue,
        log: &EventLog,
    ) -> u64 {
        let raw = (raw.to_string().len() <= MAX_RAW_KEEP).then_some(raw);
        match item {
            TuiItem::Prompt(text) => {
                let open = self.turn.take();
                let last = self.last_text.take();
                if let Some(prompt_id) = open {
                    turn_result(log, prompt_id, last, false, "success", None);
                }
                let prompt_id = queue.next_id();
                log.push(
                    EventKind::Prompt {
                        prompt_id,
                        text,
                        origin: Origin::new(Surface::Tui),
                        queued_behind: 0,
                    },
                    raw,
                );
                log.push(EventKind::TurnStarted { prompt_id }, None);
                self.turn = Some(prompt_id);
                u64::from(open.is_some())
            }
            TuiItem::Text(text) => {
                self.last_text = Some(text.clone());
                log.push(EventKind::AssistantText { text }, raw);
                0
            }
            TuiItem::ToolUse { id, name, input } => {
                log.push(
                    EventKind::ToolUse {
                        tool_use_id: id,
                        name,
                        input,
                    },
                    raw,
                );
                0
            }
            TuiItem::ToolResult {
                id,
                content,
                is_error,
            } => {
                log.push(tool_result(id, &content, is_error), raw);
                0
            }
            TuiItem::TurnEnd { duration_ms } => {
                let Some(prompt_id) = self.turn.take() else {
                    return 0;
                };
                let last = self.last_text.take();
                turn_result(log, prompt_id, last, false, "success", duration_ms);
                1
            }
            TuiItem::Interrupted => {
                let Some(prompt_id) = self.turn.take() else {
                    return 0;
                };
                self.last_text = None;
                log.push(
                    EventKind::Interrupted {
                        by: Origin::new(Surface::Tui).to_string(),
                    },
                    raw,
                );
                let text = Some("interrupted in the TUI".to_owned());
                turn_result(log, prompt_id, text, true, "interrupted", None);
                1
            }
        }
    }
}

/// Whether claude's transcript of `id` exists under the children's config dir.
pub(super) fn transcript_on_disk(child_env: &BTreeMap<String, String>, id: &SessionId) -> bool {
    attach::claude_config_dir(child_env)
        .as_deref()
        .is_some_and(|d| attach::find_transcript(d, id).is_some())
}

/// Reports the end of a TUI turn.
fn turn_result(
    log: &EventLog,
    prompt_id: u64,
    text: Option<String>,
    is_error: bool,
    subtype: &str,
    duration_ms: Option<u64>,
) {
    log.push(
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
