//! What every part of the chat core shares: [`Ctx`] holds the app state (database, hub,
//! settings), the platform, the [`Bindings`], the access [`Gate`] with its audit log, and
//! the tasks the core owns; it sends messages (logging failures, which are never fatal to
//! the core) and sends daemons their commands.
//!
//! The parts ([`super::commands`], [`super::prompts`], [`super::approvals`],
//! [`super::outbound`]) work on a `Ctx`; [`super::core::ChatCore`] sits on top of them.
//! Daemons are driven only through [`Ctx::command`], with the REST layer's timeout and
//! error wording, so chat and REST behave alike. Machines are named by the hostname their
//! daemon reported ([`daemon_label`]), with the id only to tell two alike apart.
//!
//! It also keeps the small in-memory state the parts share: which notices a command already
//! gave in a place ([`Hush`]), prompts held for a stopped session until it is resumed, and
//! the menus `/new` offered (recent directories).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};

use common::event::Origin;
use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, PromptArgs};
use serde_json::Value;
use tokio::task::JoinSet;
use tracing::{error, warn};

use super::access::Gate;
use super::bindings::Bindings;
use super::render::Rich;
use super::{ChatPlatform, Outgoing, Place, Sender, lock};

use crate::AppState;
use crate::db::DaemonRow;
use crate::http::{AppError, COMMAND_TIMEOUT};
use crate::hub::HubError;

/// How people see daemon `id`: its hostname, with the id when another daemon has the
/// same hostname (or the id alone when it never said hello).
pub fn daemon_label(daemons: &[DaemonRow], id: &DaemonId) -> String {
    let Some(me) = daemons.iter().find(|d| &d.id == id) else {
        return id.0.clone();
    };
    if me.hostname.trim().is_empty() {
        return id.0.clone();
    }
    let twins = daemons.iter().filter(|d| d.hostname == me.hostname).count();
    if twins > 1 {
        format!("{} ({})", me.hostname, id.0)
    } else {
        me.hostname.clone()
    }
}

/// "connected: a, b" for error messages.
fn list_online(daemons: &[DaemonRow], online: &[DaemonId]) -> String {
    if online.is_empty() {
        return "none is connected".to_owned();
    }
    let names: Vec<String> = online.iter().map(|id| daemon_label(daemons, id)).collect();
    format!("connected: {}", names.join(", "))
}
/// Most `/new` menus remembered (older ones answer "run /new again"); also the most
/// notices waiting to be hushed.
const OFFERS_KEPT: usize = 200;

/// Most prompts held for one stopped session.
const HELD_KEPT: usize = 20;

/// A notice a command already gave in a place, so the session's worker does not repeat it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hush {
    /// `/stop` answered "stopped".
    Stopped,
    /// `/interrupt` answered "interrupted".
    Interrupted,
}

/// A prompt held for a stopped session, sent when it is resumed.
#[derive(Clone, Debug)]
pub struct Held {
    /// Who wrote it.
    pub from: Sender,
    /// What.
    pub text: String,
    /// Where it was written.
    pub place: Place,
    /// Images sent with it.
    pub images: Vec<common::attach::ImageBlock>,
}

/// A menu of directories `/new` offered.
#[derive(Clone, Debug)]
pub struct Offer {
    /// Per choice: the daemon and the directory.
    pub dirs: Vec<(DaemonId, String)>,
    /// The session name asked for.
    pub name: Option<String>,
}

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
    /// When the core was built (daemons may still be dialling back shortly after).
    pub started: std::time::Instant,
    tasks: Mutex<JoinSet<()>>,
    hushed: Mutex<HashSet<(SessionId, Place, Hush)>>,
    held: Mutex<HashMap<SessionId, Vec<Held>>>,
    offers: Mutex<(u64, VecDeque<(u64, Offer)>)>,
}

impl<P: ChatPlatform> Ctx<P> {
    /// A context with no tasks yet.
    pub fn new(state: Arc<AppState>, platform: P, bindings: Bindings, gate: Gate) -> Self {
        Self {
            state,
            platform,
            bindings,
            gate,
            started: std::time::Instant::now(),
            tasks: Mutex::new(JoinSet::new()),
            hushed: Mutex::default(),
            held: Mutex::default(),
            offers: Mutex::default(),
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

    /// Notes that a command in `place` already said what `what` would (see [`Hush`]).
    pub fn hush(&self, session: SessionId, place: &Place, what: Hush) {
        let mut hushed = lock(&self.hushed);
        // A notice that never came (the session was gone) must not pile up.
        if hushed.len() >= OFFERS_KEPT {
            hushed.clear();
        }
        hushed.insert((session, place.clone(), what));
    }

    /// True (once) when the worker should not tell `place` about `what`.
    pub fn hushed(&self, session: SessionId, place: &Place, what: Hush) -> bool {
        lock(&self.hushed).remove(&(session, place.clone(), what))
    }

    /// Forgets a [`Ctx::hush`] whose notice will not come after all.
    pub fn unhush(&self, session: SessionId, place: &Place, what: Hush) {
        lock(&self.hushed).remove(&(session, place.clone(), what));
    }

    /// Holds a prompt for `session` until it is resumed.
    pub fn hold(&self, session: SessionId, held: Held) {
        let mut map = lock(&self.held);
        let list = map.entry(session).or_default();
        // Bounded: past this many, the oldest goes (it was answered with a Resume offer).
        if list.len() >= HELD_KEPT {
            list.remove(0);
        }
        list.push(held);
    }

    /// Sends the prompts held for `session` (it is running again).
    pub async fn release_held(&self, session: SessionId) {
        let held = lock(&self.held).remove(&session).unwrap_or_default();
        for h in held {
            let Some(b) = self.bindings.get(&h.place) else {
                continue;
            };
            let cmd = Command::PromptSend(PromptArgs {
                session: session.to_string(),
                text: h.text,
                follow: false,
                origin: Some(self.origin(&h.from)),
                images: h.images,
            });
            match self.command(&b.daemon_id, cmd).await {
                Ok(_) => {
                    self.gate
                        .audit(
                            &h.from,
                            "prompt.send",
                            &session.to_string(),
                            serde_json::json!({"held": true}),
                        )
                        .await;
                }
                Err(e) => {
                    warn!(error = %e, "a held prompt could not be sent");
                    let text =
                        Rich::text("⚠️ Your held prompt was not delivered: ").push(hub_msg(e));
                    self.send(&h.place, Outgoing::text(text)).await;
                }
            }
        }
    }

    /// Remembers a `/new` menu; returns its id for the buttons.
    pub fn offer(&self, offer: Offer) -> u64 {
        let mut o = lock(&self.offers);
        o.0 += 1;
        let id = o.0;
        o.1.push_back((id, offer));
        while o.1.len() > OFFERS_KEPT {
            o.1.pop_front();
        }
        id
    }

    /// The `/new` menu `id`, if still remembered.
    pub fn offered(&self, id: u64) -> Option<Offer> {
        lock(&self.offers)
            .1
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, o)| o.clone())
    }

    /// Every daemon the bot knows (for names); empty when the store cannot be read.
    pub async fn daemons(&self) -> Vec<DaemonRow> {
        match self.state.db.list_daemons().await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot read the daemons");
                Vec::new()
            }
        }
    }

    /// The origin that events caused by `from` carry: their id, and the name people
    /// know them by.
    pub fn origin(&self, from: &Sender) -> Origin {
        Origin::user(self.platform.surface(), from.id.clone()).named(from.name.clone())
    }

    /// Sends `cmd` to `daemon` through the hub and waits for its answer.
    pub async fn command(&self, daemon: &DaemonId, cmd: Command) -> Result<Value, HubError> {
        // Answers to approvals are claimed in the database first (the first one wins).
        crate::replica::first_wins::command(&self.state, daemon, cmd, COMMAND_TIMEOUT).await
    }

    /// The daemon named `wanted` (its id, or its hostname when that is unique), else the
    /// only one online.
    pub async fn pick_daemon(&self, wanted: Option<String>) -> Result<DaemonId, String> {
        let daemons = self.daemons().await;
        // Linked to any replica (the chat adapters run on one, see `replica::leader`).
        let online = crate::replica::online_anywhere(&self.state).await;
        if let Some(w) = wanted
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty())
        {
            if let Some(d) = daemons.iter().find(|d| d.id.0 == w) {
                return Ok(d.id.clone());
            }
            let by_host: Vec<&DaemonRow> = daemons.iter().filter(|d| d.hostname == w).collect();
            return match by_host.as_slice() {
                [one] => Ok(one.id.clone()),
                [] => Err(format!(
                    "no machine is called `{w}`; {}",
                    list_online(&daemons, &online)
                )),
                _ => Err(format!(
                    "several machines are called `{w}`; name one by its id: {}",
                    list_online(&daemons, &online)
                )),
            };
        }
        match online.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(
                "no machine is connected: start ccrmd with bot_url pointing at this bot".to_owned(),
            ),
            _ => Err(format!(
                "several machines are connected; say which with daemon=<name>: {}",
                list_online(&daemons, &online)
            )),
        }
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
}
