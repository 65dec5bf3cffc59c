//! The way in to a session: [`SessionHandle`], a cheap clonable handle that sends
//! [`Cmd`]s to the actor ([`super::actor`]) and reads its published snapshot, and
//! [`start`], which creates the actor for a session record.

use std::sync::{Arc, Mutex};

use common::event::{Decision, Origin, Surface};
use common::ids::SessionId;
use common::ipc::{ApprovalInfo, AttachInfo, DecisionInfo, ErrorBody, PromptAccepted, SessionInfo};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info_span};

use super::Ctx;
use super::actor::Actor;
use super::cmd::{Cmd, Reply, Shared, gone};
use crate::eventlog::EventLog;
use crate::store::SessionRecord;

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
        self.prompt_with(text, Vec::new(), origin).await
    }

    /// Queues a prompt with images (image content blocks before its text).
    pub async fn prompt_with(
        &self,
        text: String,
        images: Vec<common::attach::ImageBlock>,
        origin: Origin,
    ) -> Result<PromptAccepted, ErrorBody> {
        self.call(|reply| Cmd::Prompt {
            text,
            images,
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
    let log = Arc::new(EventLog::open(
        rec.id,
        ctx.cfg.event_log_capacity,
        &ctx.cfg.state_dir.join("events").join(rec.id.to_string()),
        ctx.spool.clone(),
    ));
    let (tx, rx) = mpsc::channel(64);
    let shared = Arc::new(Mutex::new(Shared::new(&rec)));
    let handle = SessionHandle {
        id: rec.id,
        tx,
        log: log.clone(),
        shared: shared.clone(),
    };
    let mut actor = Actor::new(ctx, rec, log, shared, rx);
    match launch {
        Launch::New => actor.spawn_first()?,
        Launch::Stored => actor.load_stored(),
    }
    let span = info_span!("session", id = %handle.id.short());
    let task = tokio::spawn(actor.run().instrument(span));
    Ok((handle, task))
}

/// Builds the `by` text of a decision from an origin.
pub fn by_of(origin: Option<&Origin>) -> String {
    origin.map_or_else(
        || Origin::new(Surface::Cli).to_string(),
        ToString::to_string,
    )
}
