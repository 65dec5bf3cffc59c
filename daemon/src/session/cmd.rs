//! What passes between a [`SessionHandle`](super::SessionHandle) and its actor: the
//! [`Cmd`]s the handle sends (each with a [`Reply`] channel) and the [`Shared`] snapshot the
//! actor publishes for the handle to read without waiting.

use common::event::{Decision, Origin, now_ms};
use common::ipc::{
    ApprovalInfo, AttachInfo, DecisionInfo, ErrorBody, ErrorCode, PromptAccepted, SessionInfo,
};
use tokio::sync::oneshot;

use crate::store::SessionRecord;

/// A reply channel for actor commands.
pub(super) type Reply<T> = oneshot::Sender<Result<T, ErrorBody>>;

/// Commands for the actor.
pub enum Cmd {
    /// Queue a prompt.
    Prompt {
        /// Prompt text.
        text: String,
        /// Images sent with it.
        images: Vec<common::attach::ImageBlock>,
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

/// The snapshot of a session the actor publishes after every change.
pub(super) struct Shared {
    /// What `ccrm ls` shows.
    pub(super) info: SessionInfo,
    /// Pending approvals and questions.
    pub(super) pending: Vec<ApprovalInfo>,
}

impl Shared {
    /// The snapshot of a session loaded from its record, before the actor has run.
    pub(super) fn new(rec: &SessionRecord) -> Self {
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
        Self {
            info,
            pending: Vec::new(),
        }
    }
}

/// The error for a command the actor can no longer take (it has ended or is ending).
pub(super) fn gone() -> ErrorBody {
    ErrorBody::new(ErrorCode::ShuttingDown, "the session is shutting down")
}
