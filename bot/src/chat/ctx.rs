//! What every part of the chat core shares: [`Ctx`] holds the app state (database, hub,
//! settings), the platform, the [`Bindings`], the access [`Gate`] with its audit log, and
//! the tasks the core owns; it sends messages (logging failures, which are never fatal to
//! the core) and sends daemons their commands.
//!
//! The parts ([`super::commands`], [`super::prompts`], [`super::approvals`],
//! [`super::outbound`]) work on a `Ctx`; [`super::core::ChatCore`] sits on top of them.
//! Daemons are driven only through [`Ctx::command`], with the REST layer's timeout and
//! error wording, so chat and REST behave alike.

use std::future::Future;
use std::sync::{Arc, Mutex};

use common::event::Origin;
use common::ids::{DaemonId, SessionId};
use common::ipc::Command;
use serde_json::Value;
use tokio::task::JoinSet;
use tracing::error;

use super::access::Gate;
use super::bindings::Bindings;
use super::render::Rich;
use super::{ChatPlatform, Outgoing, Place, Sender, lock};
use crate::AppState;
use crate::http::{AppError, COMMAND_TIMEOUT, pick_daemon};
use crate::hub::HubError;

/// Why a daemon command failed, said to the user.
pub fn hub_msg(e: HubError) -> String {
    AppError::from(e).to_string()
}

/// See the module docs.
pub struct Ctx<P: ChatPlatform> {
    /// The database, the hub and the settings.
    pub state: Arc<AppState>,
    /// The platform the core sends through.
    pub platform: P,
    /// Which places show which sessions.
    pub bindings: Bindings,
    /// Who may use the core, and the audit log of what they did.
    pub gate: Gate,
    tasks: Mutex<JoinSet<()>>,
}

impl<P: ChatPlatform> Ctx<P> {
    /// A context with no tasks yet.
    pub fn new(state: Arc<AppState>, platform: P, bindings: Bindings, gate: Gate) -> Self {
        Self {
            state,
            platform,
            bindings,
            gate,
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// Runs `fut` as a task owned by the core (finished ones are reaped here).
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    /// Hands over every task spawned so far, for shutting down.
    pub fn take_tasks(&self) -> JoinSet<()> {
        std::mem::take(&mut *lock(&self.tasks))
    }

    /// The origin that events caused by `from` carry.
    pub fn origin(&self, from: &Sender) -> Origin {
        Origin::user(self.platform.surface(), from.id.clone())
    }

    /// Sends `cmd` to `daemon` through the hub and waits for its answer.
    pub async fn command(&self, daemon: &DaemonId, cmd: Command) -> Result<Value, HubError> {
        self.state.hub.command(daemon, cmd, COMMAND_TIMEOUT).await
    }

    /// The daemon named `wanted`, else the only one online.
    pub fn pick_daemon(&self, wanted: Option<String>) -> Result<DaemonId, String> {
        pick_daemon(&self.state, wanted).map_err(|e| e.to_string())
    }

    /// Sends `msg` to `place`; returns its id, or `None` (logged) when it failed.
    pub async fn send(&self, place: &Place, msg: Outgoing) -> Option<String> {
        match self.platform.send(place, &msg).await {
            Ok(id) => Some(id),
            Err(e) => {
                error!(error = %e, chat = %place.chat, "chat send failed");
                None
            }
        }
    }

    /// Sends `text` to `place` from a task (for replies that must not hold up the caller).
    pub fn reply(self: &Arc<Self>, place: &Place, text: Rich) {
        let me = self.clone();
        let place = place.clone();
        self.spawn(async move {
            me.send(&place, Outgoing::text(text)).await;
        });
    }

    /// Answers a command given in `place`, in place when `reply` is set (see
    /// [`ChatPlatform::answer`]).
    pub async fn answer(&self, place: &Place, reply: Option<&str>, msg: Outgoing) {
        if let Err(e) = self.platform.answer(place, reply, &msg).await {
            error!(error = format!("{e:#}"), chat = %place.chat, "chat answer failed");
        }
    }

    /// Sends `msg` to every place that shows `session`.
    pub async fn to_all(&self, session: SessionId, msg: Outgoing) {
        for place in self.bindings.places_of(&session) {
            self.send(&place, msg.clone()).await;
        }
    }
}
