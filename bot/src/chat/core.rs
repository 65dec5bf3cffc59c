//! The chat core: everything about chat that is not one platform's API.
//!
//! - **Inbound** ([`ChatCore::handle`]): access check (allowlist; others get one short
//!   refusal and nothing reaches a daemon), audit, commands, debounced prompts
//!   ([`DEBOUNCE`]), button presses (approvals, question options). It returns quickly:
//!   slow work (starting a session, sending a prompt) runs in tasks the core owns, so an
//!   adapter's dispatcher is never blocked by a daemon or by a pending approval.
//! - **Outbound** ([`ChatCore::run_events`]): committed events from the hub, routed to one
//!   worker task per bound session. A worker keeps one progress message per turn, edited at
//!   most every [`EDIT_EVERY`], then posts the final answer with a summary line (and the
//!   full text as a file when it is too long), approval and question messages with buttons
//!   (edited to say who decided once decided, from any surface), errors, and what other
//!   surfaces did (prompts, attach/detach).
//!
//! Bindings live in SQLite (`chat_bindings`) and in memory; daemons are driven only through
//! [`crate::hub::Hub::command`], like the REST layer.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::event::{Decision, EventKind, Origin, now_ms};
use common::ids::{DaemonId, SessionId};
use common::ipc::{
    AnswerArgs, Command, DecideArgs, ErrorCode, PromptAccepted, PromptArgs, SessionInfo,
    SessionRef, StartArgs,
};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, warn};

use super::ratelimit::Inbound;
use super::render::{self, Rich};
use super::{
    Access, Ack, Button, ButtonStyle, ChatCommand, ChatPlatform, Incoming, Input, NewArgs,
    Outgoing, Place, Sender,
};
use crate::AppState;
use crate::db::{ChatApprovalRow, ChatBinding, DbError, StoredEvent};
use crate::http::{AppError, COMMAND_TIMEOUT, pick_daemon};
use crate::hub::HubError;

/// Messages closer together than this join one prompt.
pub const DEBOUNCE: Duration = Duration::from_millis(1500);

/// A progress message is edited at most this often.
pub const EDIT_EVERY: Duration = Duration::from_millis(1500);

/// How long [`ChatCore::shutdown`] lets pending prompts and messages go out.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Tool lines shown in a progress message (older ones are counted, not listed).
const PROGRESS_TOOLS: usize = 8;

/// Longest tool input preview in an approval message.
const PREVIEW_CHARS: usize = 700;

/// Most prompts shown from other surfaces, in characters.
const ECHO_CHARS: usize = 500;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn short(id: &SessionId) -> String {
    id.to_string().chars().take(8).collect()
}

/// Why a command failed, said to the user.
fn hub_msg(e: HubError) -> String {
    AppError::from(e).to_string()
}

/// Bindings in memory, both ways.
#[derive(Default)]
struct Bindings {
    by_place: HashMap<Place, ChatBinding>,
    by_session: HashMap<SessionId, Vec<Place>>,
}

impl Bindings {
    fn insert(&mut self, place: Place, b: ChatBinding) {
        if let Some(old) = self.by_place.insert(place.clone(), b.clone())
            && let Some(v) = self.by_session.get_mut(&old.session_id)
        {
            v.retain(|p| p != &place);
        }
        self.by_session.entry(b.session_id).or_default().push(place);
    }
}

/// A prompt piece waiting for the debounce window to close.
struct Piece {
    from: Sender,
    text: String,
    /// The platform's message id (see [`Incoming::msg_id`]).
    order: Option<u64>,
}

/// See the module docs.
pub struct ChatCore<P: ChatPlatform> {
    state: Arc<AppState>,
    platform: P,
    access: Access,
    inbound: Inbound,
    refused: Mutex<HashSet<String>>,
    bindings: Mutex<Bindings>,
    debounce: Mutex<HashMap<Place, mpsc::UnboundedSender<Piece>>>,
    workers: Mutex<HashMap<SessionId, mpsc::UnboundedSender<Arc<StoredEvent>>>>,
    tasks: Mutex<JoinSet<()>>,
    /// Where [`ChatCore::run_events`] starts: the lowest "shown up to" mark of the bound
    /// sessions, else the newest event when the core was made.
    start_cursor: i64,
    /// Per session, the event row id shown up to when the core was made; a worker skips
    /// events at or below it (they were shown before a restart).
    handled: Mutex<HashMap<SessionId, i64>>,
}

impl<P: ChatPlatform> ChatCore<P> {
    /// A core for `platform`, with the bindings stored for it. `access` says who may use
    /// it; `prompts_per_minute` limits prompts per user.
    pub async fn new(
        state: Arc<AppState>,
        platform: P,
        access: Access,
        prompts_per_minute: u32,
    ) -> anyhow::Result<Arc<Self>> {
        let mut bindings = Bindings::default();
        for b in state.db.chat_bindings(platform.name()).await? {
            let place = Place {
                chat: b.chat_id.clone(),
                thread: b.thread_id.clone(),
            };
            bindings.insert(place, b);
        }
        // Resume from the lowest "shown up to" mark of the bound sessions, so what was
        // committed but not yet shown when the bot last stopped is shown now.
        let last = state.db.last_event_id().await?;
        let handled: HashMap<SessionId, i64> = state
            .db
            .chat_handled(platform.name())
            .await?
            .into_iter()
            .filter(|(s, _)| bindings.by_session.contains_key(s))
            .collect();
        let start_cursor = handled
            .values()
            .copied()
            .min()
            .map_or(last, |m| m.min(last));
        Ok(Arc::new(Self {
            start_cursor,
            handled: Mutex::new(handled),
            state,
            platform,
            access,
            inbound: Inbound::new(prompts_per_minute),
            refused: Mutex::default(),
            bindings: Mutex::new(bindings),
            debounce: Mutex::default(),
            workers: Mutex::default(),
            tasks: Mutex::new(JoinSet::new()),
        }))
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// True when `who` may use the bot (adapters use it to answer refusals privately).
    pub fn allows(&self, who: &Sender) -> bool {
        self.access.allows(who)
    }

    /// False for chatter the bot ignores: text in a place with no session, not addressed
    /// to the bot (not even the allowlist or the audit log hear of it).
    pub fn concerns(&self, inc: &Incoming) -> bool {
        !matches!(inc.input, Input::Text(_)) || inc.direct || self.binding(&inc.place).is_some()
    }

    /// Every bound place with the time (Unix ms) it was bound.
    pub fn bound_places(&self) -> Vec<(Place, u64)> {
        lock(&self.bindings)
            .by_place
            .iter()
            .map(|(p, b)| (p.clone(), b.created_ms))
            .collect()
    }

    /// Runs `fut` as a task owned by the core (finished ones are reaped here).
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    /// Stops the core: prompts still inside their debounce window are sent now, session
    /// workers finish what they were given, and whatever is not done after
    /// [`SHUTDOWN_GRACE`] is aborted.
    pub async fn shutdown(&self) {
        // Dropping the senders ends the collectors' windows and the workers' inputs.
        lock(&self.debounce).clear();
        lock(&self.workers).clear();
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        let drained = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            warn!("chat tasks still busy at shutdown; aborting them");
        }
        tasks.abort_all();
    }

    fn actor(&self, from: &Sender) -> String {
        format!("{}:{}", self.platform.name(), from.id)
    }

    fn origin(&self, from: &Sender) -> Origin {
        Origin::user(self.platform.surface(), from.id.clone())
    }

    async fn audit(&self, from: &Sender, action: &str, target: &str, detail: Value) {
        if let Err(e) = self
            .state
            .db
            .audit(&self.actor(from), action, target, detail, now_ms())
            .await
        {
            error!(error = %e, "audit write failed");
        }
    }

    /// Sends `text` to `place` from a task (for replies that must not hold up the caller).
    fn reply(self: &Arc<Self>, place: &Place, text: Rich) {
        let me = self.clone();
        let place = place.clone();
        self.spawn(async move {
            me.send(&place, Outgoing::text(text)).await;
        });
    }

    async fn send(&self, place: &Place, msg: Outgoing) -> Option<String> {
        match self.platform.send(place, &msg).await {
            Ok(id) => Some(id),
            Err(e) => {
                error!(error = %e, chat = %place.chat, "chat send failed");
                None
            }
        }
    }

    fn binding(&self, place: &Place) -> Option<ChatBinding> {
        lock(&self.bindings).by_place.get(place).cloned()
    }

    fn places_of(&self, session: &SessionId) -> Vec<Place> {
        lock(&self.bindings)
            .by_session
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    /// Handles one inbound message or button press. Returns how a button press went
    /// (adapters that must answer presses show it; `None` for messages and commands).
    pub async fn handle(self: &Arc<Self>, inc: Incoming) -> Option<Ack> {
        if !self.concerns(&inc) {
            return None;
        }
        if !self.access.allows(&inc.from) {
            self.refuse(&inc).await;
            return matches!(inc.input, Input::Button(_)).then(|| Ack {
                text: "Not allowed".to_owned(),
                ok: false,
            });
        }
        match inc.input.clone() {
            Input::Text(text) => {
                self.on_text(inc, text).await;
                None
            }
            Input::Command(cmd) => {
                let me = self.clone();
                self.spawn(async move { me.on_command(inc, cmd).await });
                None
            }
            Input::Button(data) => Some(self.on_button(&inc, &data).await),
        }
    }

    /// Audits a refused input and says so: every time when the input awaits an answer in
    /// place (a Discord command), else once per user.
    async fn refuse(self: &Arc<Self>, inc: &Incoming) {
        let what = match &inc.input {
            Input::Text(_) => "text",
            Input::Command(_) => "command",
            Input::Button(_) => "button",
        };
        self.audit(
            &inc.from,
            "chat.refused",
            &inc.place.chat,
            json!({"input": what, "name": inc.from.name}),
        )
        .await;
        let text = Rich::text("Sorry, you are not allowed to use this bot.");
        if let Some(reply) = inc.reply.clone() {
            let me = self.clone();
            let place = inc.place.clone();
            self.spawn(async move {
                me.answer(&place, Some(&reply), Outgoing::text(text)).await;
            });
            return;
        }
        let first = lock(&self.refused).insert(inc.from.id.clone());
        if first && !matches!(inc.input, Input::Button(_)) {
            self.reply(&inc.place, text);
        }
    }

    async fn answer(&self, place: &Place, reply: Option<&str>, msg: Outgoing) {
        if let Err(e) = self.platform.answer(place, reply, &msg).await {
            error!(error = format!("{e:#}"), chat = %place.chat, "chat answer failed");
        }
    }

    async fn on_text(self: &Arc<Self>, inc: Incoming, text: String) {
        let Some(b) = self.binding(&inc.place) else {
            self.audit(&inc.from, "chat.unbound_text", &inc.place.chat, json!({}))
                .await;
            self.reply(
                &inc.place,
                Rich::text(format!(
                    "No session here yet. Start one with {}, or /bind <session>. /help lists the commands.",
                    self.platform.new_usage()
                )),
            );
            return;
        };
        if !self.within_rate(&inc.from, &b).await {
            self.reply(
                &inc.place,
                Rich::text("You are sending prompts faster than allowed; please wait a moment and try again."),
            );
            return;
        }
        let piece = Piece {
            from: inc.from,
            text,
            order: inc.msg_id,
        };
        // The map lock is held while sending so a collector closing its window cannot
        // miss a piece (it drains under the same lock).
        let mut map = lock(&self.debounce);
        let piece = match map.get(&inc.place) {
            Some(tx) => match tx.send(piece) {
                Ok(()) => return,
                Err(mpsc::error::SendError(p)) => p,
            },
            None => piece,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(piece);
        map.insert(inc.place.clone(), tx);
        drop(map);
        let me = self.clone();
        self.spawn(async move { me.collect_prompt(inc.place, b, rx).await });
    }

    /// True when `from` may send another prompt now; else the refusal is audited.
    async fn within_rate(&self, from: &Sender, b: &ChatBinding) -> bool {
        if self.inbound.check(&from.id) {
            return true;
        }
        self.audit(
            from,
            "prompt.rate_limited",
            &b.session_id.to_string(),
            json!({}),
        )
        .await;
        false
    }

    /// Gathers the pieces of one prompt until [`DEBOUNCE`] passes without a new one, then
    /// sends them as one prompt.
    async fn collect_prompt(
        self: Arc<Self>,
        place: Place,
        b: ChatBinding,
        mut rx: mpsc::UnboundedReceiver<Piece>,
    ) {
        let mut pieces = Vec::new();
        loop {
            match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                Ok(Some(p)) => pieces.push(p),
                Ok(None) => break,
                Err(_) => {
                    let mut map = lock(&self.debounce);
                    map.remove(&place);
                    while let Ok(p) = rx.try_recv() {
                        pieces.push(p);
                    }
                    break;
                }
            }
        }
        // Adapters may hand over messages concurrently: join them in the platform's order.
        pieces.sort_by_key(|p| p.order);
        let Some(first) = pieces.first() else {
            return;
        };
        let from = first.from.clone();
        let text = pieces
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let notes = match self.send_prompt(&b, &from, text, pieces.len()).await {
            Ok(notes) => notes,
            Err(msg) => format!("⚠️ Prompt not delivered: {msg}"),
        };
        if !notes.is_empty() {
            self.send(&place, Outgoing::text(Rich::text(notes))).await;
        }
    }

    /// Sends `text` to the bound session as one prompt from `from` and audits it. Returns
    /// what the sender should be told (queued behind others, a note from the daemon), or
    /// why it failed.
    async fn send_prompt(
        &self,
        b: &ChatBinding,
        from: &Sender,
        text: String,
        pieces: usize,
    ) -> Result<String, String> {
        let cmd = Command::PromptSend(PromptArgs {
            session: b.session_id.to_string(),
            text,
            follow: false,
            origin: Some(self.origin(from)),
        });
        let target = b.session_id.to_string();
        match self
            .state
            .hub
            .command(&b.daemon_id, cmd, COMMAND_TIMEOUT)
            .await
        {
            Ok(v) => {
                self.audit(from, "prompt.send", &target, json!({"pieces": pieces}))
                    .await;
                let mut notes = Vec::new();
                if let Ok(a) = serde_json::from_value::<PromptAccepted>(v) {
                    if a.queued_behind > 0 {
                        notes.push(format!("Queued behind {} prompt(s).", a.queued_behind));
                    }
                    if let Some(n) = a.note {
                        notes.push(n);
                    }
                }
                Ok(notes.join(" "))
            }
            Err(e) => {
                let msg = hub_msg(e);
                self.audit(from, "prompt.failed", &target, json!({"error": msg}))
                    .await;
                Err(msg)
            }
        }
    }

    async fn bind(
        &self,
        place: &Place,
        session: SessionId,
        daemon: DaemonId,
        from: &Sender,
    ) -> Result<(), DbError> {
        let b = ChatBinding {
            platform: self.platform.name().to_owned(),
            chat_id: place.chat.clone(),
            thread_id: place.thread.clone(),
            session_id: session,
            daemon_id: daemon,
            created_by: self.actor(from),
            created_ms: now_ms(),
        };
        self.state.db.chat_bind(&b).await?;
        lock(&self.bindings).insert(place.clone(), b);
        Ok(())
    }

    /// Where a newly bound session is shown: a new thread in a forum's general area, the
    /// current place otherwise.
    async fn target_place(&self, inc: &Incoming, title: &str) -> anyhow::Result<Place> {
        if inc.threads && inc.place.thread.is_none() {
            return self.platform.open_thread(&inc.place.chat, title).await;
        }
        Ok(inc.place.clone())
    }

    async fn on_command(self: Arc<Self>, inc: Incoming, cmd: ChatCommand) {
        let name = format!("{cmd:?}");
        self.audit(
            &inc.from,
            "chat.command",
            &inc.place.chat,
            json!({"command": name}),
        )
        .await;
        let answer = match cmd {
            ChatCommand::Help => Ok(Some(help(self.platform.new_usage()))),
            ChatCommand::List => self.cmd_list(&inc).await,
            ChatCommand::Status => self.cmd_status(&inc).await,
            ChatCommand::Stop => self.cmd_action(&inc, true).await,
            ChatCommand::Interrupt => self.cmd_action(&inc, false).await,
            ChatCommand::New(args) => self.cmd_new(&inc, args).await,
            ChatCommand::Bind(arg) => self.cmd_bind(&inc, &arg).await,
            ChatCommand::Prompt(text) => self.cmd_prompt(&inc, text).await,
        };
        let text = match answer {
            Ok(Some(t)) => t,
            // Shown elsewhere (a new thread), with no answer awaited in place (`announce`).
            Ok(None) => return,
            Err(e) => Rich::text("⚠️ ").push(e),
        };
        self.answer(&inc.place, inc.reply.as_deref(), Outgoing::text(text))
            .await;
    }

    /// What to answer after a command bound `place`: the news itself when that is where the
    /// command was given; else the news goes to `place` and the command gets a pointer to
    /// it when it awaits an answer in place.
    async fn announce(
        &self,
        inc: &Incoming,
        place: &Place,
        news: Rich,
        title: &str,
    ) -> Option<Rich> {
        if *place == inc.place {
            return Some(news);
        }
        self.send(place, Outgoing::text(news)).await;
        inc.reply.as_ref()?;
        let mut ack = Rich::text("➡️ ").bold(title.to_owned());
        ack = match self.platform.link(place) {
            Some(link) => ack.push(" is in ").md(link),
            None => ack.push(" has its own thread."),
        };
        Some(ack)
    }

    async fn cmd_new(&self, inc: &Incoming, args: NewArgs) -> Result<Option<Rich>, String> {
        let usage = self.platform.new_usage();
        let dir = args
            .dir
            .filter(|d| !d.trim().is_empty())
            .or_else(|| {
                self.state
                    .cfg
                    .chat_default_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
            })
            .ok_or_else(|| {
                format!(
                    "which directory? Usage: {usage} (or set chat_default_dir in the bot's config)"
                )
            })?;
        let name = args.name.filter(|n| !n.trim().is_empty());
        let daemon = pick_daemon(&self.state, args.daemon).map_err(|e| e.to_string())?;
        let args = StartArgs {
            cwd: dir.clone().into(),
            name: name.clone(),
            origin: Some(self.origin(&inc.from)),
            ..StartArgs::default()
        };
        let data = self
            .state
            .hub
            .command(&daemon, Command::SessionStart(args), COMMAND_TIMEOUT)
            .await
            .map_err(hub_msg)?;
        let info = serde_json::from_value::<SessionInfo>(data)
            .map_err(|e| format!("the daemon's answer did not parse: {e}"))?;
        if let Err(e) = self.state.db.upsert_session(&daemon, &info, now_ms()).await {
            error!(error = %e, "storing a new session failed");
        }
        self.audit(
            &inc.from,
            "session.start",
            &info.id.to_string(),
            json!({"daemon": daemon, "cwd": dir}),
        )
        .await;
        let title = info
            .name
            .clone()
            .unwrap_or_else(|| format!("session {}", short(&info.id)));
        let place = self
            .target_place(inc, &title)
            .await
            .map_err(|e| format!("session {} started, but: {e:#}", info.id))?;
        self.bind(&place, info.id, daemon.clone(), &inc.from)
            .await
            .map_err(|e| e.to_string())?;
        let text = Rich::text("🟢 Session ")
            .bold(title.clone())
            .push(" started on ")
            .code(daemon.0)
            .push(" in ")
            .code(info.cwd.display().to_string())
            .push("\nid ")
            .code(info.id.to_string())
            .push("\nWrite here to prompt it.");
        Ok(self.announce(inc, &place, text, &title).await)
    }

    async fn cmd_prompt(&self, inc: &Incoming, text: String) -> Result<Option<Rich>, String> {
        let b = self.bound(inc)?;
        if text.trim().is_empty() {
            return Err("usage: /prompt <text>".into());
        }
        if !self.within_rate(&inc.from, &b).await {
            return Err("you are sending prompts faster than allowed; please wait a moment".into());
        }
        let notes = self.send_prompt(&b, &inc.from, text, 1).await?;
        let mut out = Rich::text("📨 Prompt sent.");
        if !notes.is_empty() {
            out = out.push(format!(" {notes}"));
        }
        Ok(Some(out))
    }

    async fn cmd_bind(&self, inc: &Incoming, arg: &str) -> Result<Option<Rich>, String> {
        let arg = arg.trim();
        if arg.is_empty() {
            return Err("usage: /bind <session id, id prefix or name>".into());
        }
        let rows = self
            .state
            .db
            .list_sessions(None, None)
            .await
            .map_err(|e| e.to_string())?;
        let found: Vec<_> = rows
            .into_iter()
            .filter(|r| {
                r.info.id.to_string().starts_with(arg) || r.info.name.as_deref() == Some(arg)
            })
            .collect();
        let row = match found.as_slice() {
            [one] => one.clone(),
            [] => return Err(format!("no session matches `{arg}`")),
            _ => {
                return Err(format!(
                    "`{arg}` matches several sessions; give more of the id"
                ));
            }
        };
        let title = row
            .info
            .name
            .clone()
            .unwrap_or_else(|| format!("session {}", short(&row.info.id)));
        let place = self
            .target_place(inc, &title)
            .await
            .map_err(|e| format!("{e:#}"))?;
        self.bind(&place, row.info.id, row.daemon_id.clone(), &inc.from)
            .await
            .map_err(|e| e.to_string())?;
        self.audit(
            &inc.from,
            "session.bind",
            &row.info.id.to_string(),
            json!({"chat": place.chat, "thread": place.thread}),
        )
        .await;
        let text = Rich::text("🔗 Bound to ")
            .bold(title.clone())
            .push(format!(" ({})", row.info.state));
        Ok(self.announce(inc, &place, text, &title).await)
    }

    async fn cmd_list(&self, inc: &Incoming) -> Result<Option<Rich>, String> {
        let rows = self
            .state
            .db
            .list_sessions(None, None)
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(Some(Rich::text(
                "No sessions yet. Start one with /new <dir>.",
            )));
        }
        let here = self.binding(&inc.place).map(|b| b.session_id);
        let mut text = Rich::text("Sessions:\n");
        for r in rows.iter().rev().take(30) {
            let name = r.info.name.clone().unwrap_or_default();
            text = text
                .push("• ")
                .code(short(&r.info.id))
                .push(format!(" {name} — {} on {}", r.info.state, r.daemon_id));
            if here == Some(r.info.id) {
                text = text.push(" ← here");
            }
            text = text.push("\n");
        }
        Ok(Some(text))
    }

    fn bound(&self, inc: &Incoming) -> Result<ChatBinding, String> {
        self.binding(&inc.place)
            .ok_or_else(|| "no session is bound here; use /new or /bind".to_owned())
    }

    async fn cmd_status(&self, inc: &Incoming) -> Result<Option<Rich>, String> {
        let b = self.bound(inc)?;
        let row = self
            .state
            .db
            .get_session(&b.session_id)
            .await
            .map_err(|e| e.to_string())?;
        let i = &row.info;
        let online = self.state.hub.is_online(&row.daemon_id);
        let mut text = Rich::text("Session ")
            .bold(i.name.clone().unwrap_or_else(|| short(&i.id)))
            .push("\nid ")
            .code(i.id.to_string())
            .push(format!("\nstate: {}", i.state));
        if let Some(r) = &i.reason {
            text = text.push(format!(" ({r})"));
        }
        text = text
            .push("\ndir: ")
            .code(i.cwd.display().to_string())
            .push(format!(
                "\ndaemon: {} ({})\nturns: {}, queued: {}, pending approvals: {}",
                row.daemon_id,
                if online { "online" } else { "offline" },
                i.turns,
                i.queued,
                i.pending
            ));
        if let Some(c) = i.cost_usd {
            text = text.push(format!("\ncost: ${c:.4}"));
        }
        Ok(Some(text))
    }

    async fn cmd_action(&self, inc: &Incoming, stop: bool) -> Result<Option<Rich>, String> {
        let b = self.bound(inc)?;
        let r = SessionRef {
            session: b.session_id.to_string(),
        };
        let (cmd, action) = if stop {
            (Command::SessionStop(r), "session.stop")
        } else {
            (Command::SessionInterrupt(r), "session.interrupt")
        };
        let data = self
            .state
            .hub
            .command(&b.daemon_id, cmd, COMMAND_TIMEOUT)
            .await
            .map_err(hub_msg)?;
        if let Ok(info) = serde_json::from_value::<SessionInfo>(data)
            && let Err(e) = self
                .state
                .db
                .upsert_session(&b.daemon_id, &info, now_ms())
                .await
        {
            error!(error = %e, "storing a session failed");
        }
        self.audit(&inc.from, action, &b.session_id.to_string(), json!({}))
            .await;
        Ok(Some(Rich::text(if stop {
            "⏹ Stop requested."
        } else {
            "⏸ Interrupt requested."
        })))
    }

    /// A button press: `a:<id>:<a|d|s>` decides an approval, `q:<id>:<n>` picks option n.
    async fn on_button(&self, inc: &Incoming, data: &str) -> Ack {
        let no = |text: &str| Ack {
            text: text.to_owned(),
            ok: false,
        };
        let mut parts = data.splitn(3, ':');
        let (Some(kind), Some(id), Some(choice)) = (parts.next(), parts.next(), parts.next())
        else {
            return no("Unknown button");
        };
        let Ok(id) = id.parse::<i64>() else {
            return no("Unknown button");
        };
        let row = match self.state.db.chat_approval(id).await {
            Ok(r) => r,
            Err(DbError::NotFound) => return no("Unknown button"),
            Err(e) => {
                error!(error = %e, "reading a chat approval failed");
                return no("Internal error");
            }
        };
        let daemon = match self.state.db.get_session(&row.session_id).await {
            Ok(s) => s.daemon_id,
            Err(e) => return no(&format!("Session unknown: {e}")),
        };
        let session = row.session_id.to_string();
        let origin = Some(self.origin(&inc.from));
        let (cmd, action, toast) = match (kind, choice) {
            ("a", c) => {
                let (decision, toast) = match c {
                    "a" => (Decision::Allow, "Allowed"),
                    "s" => (Decision::AllowSession, "Allowed for this session"),
                    _ => (Decision::Deny, "Denied"),
                };
                let cmd = Command::ApprovalDecide(DecideArgs {
                    session,
                    approval: Some(row.approval_id.clone()),
                    decision,
                    message: (decision == Decision::Deny)
                        .then(|| format!("Denied by {} in chat", inc.from.name)),
                    origin,
                });
                (cmd, "approval.decide", toast.to_owned())
            }
            ("q", n) => {
                let Some(label) = n.parse::<usize>().ok().and_then(|n| row.options.get(n)) else {
                    return no("Unknown option");
                };
                let cmd = Command::QuestionAnswer(AnswerArgs {
                    session,
                    approval: Some(row.approval_id.clone()),
                    answers: vec![label.clone()],
                    origin,
                });
                (cmd, "question.answer", format!("Answered: {label}"))
            }
            _ => return no("Unknown button"),
        };
        let result = self.state.hub.command(&daemon, cmd, COMMAND_TIMEOUT).await;
        let detail = json!({"button": data, "ok": result.is_ok()});
        self.audit(&inc.from, action, &row.approval_id, detail)
            .await;
        match result {
            Ok(_) => Ack {
                text: toast,
                ok: true,
            },
            Err(HubError::Daemon(e)) if e.code == ErrorCode::AlreadyDecided => {
                no("Already decided")
            }
            Err(e) => no(&hub_msg(e)),
        }
    }

    /// Feeds committed events to the session workers until `stop` turns true.
    pub async fn run_events(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Subscribe first, then read what was committed since the core was made (while
        // the adapter was starting), so nothing falls between the two.
        let mut live = self.state.hub.subscribe();
        let mut last = self.start_cursor;
        self.catch_up(&mut last).await;
        loop {
            let got = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                got = live.recv() => got,
            };
            match got {
                Ok(ev) => {
                    if ev.id > last {
                        last = ev.id;
                        self.route(ev);
                    }
                }
                // Too slow for the live feed: catch up from the database.
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(&mut last).await,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Routes the stored events after `last` (advancing it).
    async fn catch_up(self: &Arc<Self>, last: &mut i64) {
        loop {
            let page = match self.state.db.events_since_id(*last, 500).await {
                Ok(p) => p,
                Err(e) => {
                    error!(error = %e, "chat catch-up read failed");
                    return;
                }
            };
            if page.is_empty() {
                return;
            }
            for ev in page {
                *last = ev.id;
                self.route(Arc::new(ev));
            }
        }
    }

    fn route(self: &Arc<Self>, ev: Arc<StoredEvent>) {
        let session = ev.event.session_id;
        if !lock(&self.bindings).by_session.contains_key(&session) {
            return;
        }
        let mut workers = lock(&self.workers);
        if let Some(tx) = workers.get(&session)
            && tx.send(ev.clone()).is_ok()
        {
            return;
        }
        // Unbounded on purpose: the broadcast feed must never wait for a chat platform's
        // pacing; a worker's backlog is bounded by what one session produces, and progress
        // edits coalesce.
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(ev);
        workers.insert(session, tx);
        drop(workers);
        let me = self.clone();
        self.spawn(async move { me.session_worker(session, rx).await });
    }

    async fn session_worker(
        self: Arc<Self>,
        session: SessionId,
        mut rx: mpsc::UnboundedReceiver<Arc<StoredEvent>>,
    ) {
        let mut turn: Option<Turn> = None;
        let skip_through = lock(&self.handled).remove(&session).unwrap_or(0);
        // The first handled event is recorded at once, later ones at most once a second.
        let mut saved = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        loop {
            let due = turn
                .as_ref()
                .filter(|t| t.dirty)
                .map(|t| t.last_edit + EDIT_EVERY);
            let ev = tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
                () = sleep_until(due) => {
                    if let Some(t) = turn.as_mut() {
                        self.flush(t).await;
                    }
                    continue;
                }
            };
            if ev.id <= skip_through {
                continue;
            }
            self.on_event(session, &ev, &mut turn).await;
            // Persist how far this session was shown: at once after a turn's end (so a final
            // answer is never posted twice after a restart), else at most once a second.
            let ended = matches!(ev.event.kind, EventKind::TurnResult { .. });
            if ended || saved.elapsed() >= Duration::from_secs(1) {
                if let Err(e) = self
                    .state
                    .db
                    .set_chat_handled(self.platform.name(), &session, ev.id)
                    .await
                {
                    warn!(error = %e, "cannot record how far the chat has shown a session");
                }
                saved = Instant::now();
            }
        }
    }

    async fn start_turn(&self, session: SessionId, turn: &mut Option<Turn>) {
        let mut t = Turn::new();
        for place in self.places_of(&session) {
            let text = t.progress_text(Phase::Running);
            if let Some(id) = self.send(&place, Outgoing::text(text)).await {
                t.progress.push((place, id));
            }
        }
        t.last_edit = Instant::now();
        *turn = Some(t);
    }

    async fn flush(&self, t: &mut Turn) {
        t.dirty = false;
        self.edit_progress(t, Phase::Running).await;
        t.last_edit = Instant::now();
    }

    async fn to_all(&self, session: SessionId, msg: Outgoing) {
        for place in self.places_of(&session) {
            self.send(&place, msg.clone()).await;
        }
    }

    async fn on_event(&self, session: SessionId, ev: &StoredEvent, turn: &mut Option<Turn>) {
        match &ev.event.kind {
            // Prompts from this platform are already in the chat; others are shown.
            EventKind::Prompt { text, origin, .. } if origin.surface != self.platform.surface() => {
                let msg = Rich::text("📝 ")
                    .bold(origin.to_string())
                    .push(": ")
                    .push(render::truncate(text, ECHO_CHARS));
                self.to_all(session, Outgoing::text(msg)).await;
            }
            EventKind::TurnStarted { .. } if turn.is_none() => {
                self.start_turn(session, turn).await;
            }
            EventKind::AssistantDelta { text } => {
                if let Some(t) = turn.as_mut() {
                    t.chars += text.chars().count();
                    t.dirty = true;
                }
            }
            EventKind::AssistantText { text } => {
                if turn.is_none() {
                    self.start_turn(session, turn).await;
                }
                if let Some(t) = turn.as_mut() {
                    t.text = text.clone();
                    t.dirty = true;
                }
            }
            EventKind::ToolUse { name, input, .. } => {
                if turn.is_none() {
                    self.start_turn(session, turn).await;
                }
                if let Some(t) = turn.as_mut() {
                    t.tools.push(render::tool_line(name, input));
                    if let Some(f) = render::changed_file(name, input) {
                        t.files.insert(f);
                    }
                    t.dirty = true;
                }
            }
            EventKind::ToolResult { is_error: true, .. } => {
                if let Some(t) = turn.as_mut() {
                    t.tool_errors += 1;
                    t.dirty = true;
                }
            }
            EventKind::ApiRetry { attempt, error, .. } => {
                if let Some(t) = turn.as_mut() {
                    t.note = Some(format!(
                        "API retry {attempt}{}",
                        error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ));
                    t.dirty = true;
                }
            }
            EventKind::PermissionRequest {
                approval_id,
                tool_name,
                input,
                description,
                ..
            } => {
                let mut head = format!("🔐 {tool_name} needs approval");
                if let Some(d) = description {
                    head.push_str(&format!(
                        ": {}",
                        render::truncate(&render::one_line(d), 300)
                    ));
                }
                let preview = render::tool_preview(tool_name, input, PREVIEW_CHARS);
                self.post_approval(session, &approval_id.0, head, preview, Vec::new())
                    .await;
            }
            EventKind::Question {
                approval_id,
                questions,
            } => {
                let mut head = String::from("❓ ");
                let mut options = Vec::new();
                for (i, q) in questions.iter().enumerate() {
                    if i > 0 {
                        head.push('\n');
                    }
                    head.push_str(&q.question);
                }
                // Buttons answer the first question; several questions at once are
                // answered from the CLI, REST or the dashboard.
                if let Some(q) = questions.first() {
                    options = q.options.iter().map(|o| o.label.clone()).collect();
                }
                let head = render::truncate(&head, 2000);
                self.post_approval(session, &approval_id.0, head, String::new(), options)
                    .await;
            }
            EventKind::PermissionDecision {
                approval_id,
                decision,
                by,
                ..
            } => {
                let verdict = match decision {
                    Decision::Allow => "✅ Allowed",
                    Decision::AllowSession => "✅ Allowed for this session",
                    Decision::Deny => "❌ Denied",
                    Decision::Cancelled => "➖ Cancelled",
                    Decision::Aborted => "➖ Aborted",
                };
                self.close_approval(&approval_id.0, format!("{verdict} by {by}"))
                    .await;
            }
            EventKind::Answer {
                approval_id,
                answers,
                by,
                decision,
            } => {
                let text = if decision.allows() {
                    let picked: Vec<_> = answers.values().cloned().collect();
                    format!("💬 {} (answered by {by})", picked.join("; "))
                } else {
                    format!("➖ Not answered ({decision:?} by {by})")
                };
                self.close_approval(&approval_id.0, text).await;
            }
            EventKind::TurnResult {
                text,
                is_error,
                subtype,
                cost_usd,
                duration_ms,
                ..
            } => {
                let t = turn.take().unwrap_or_else(Turn::new);
                self.finish_turn(
                    session,
                    t,
                    text.as_deref(),
                    *is_error,
                    subtype,
                    *cost_usd,
                    *duration_ms,
                )
                .await;
            }
            EventKind::Error { message } => {
                self.to_all(
                    session,
                    Outgoing::text(Rich::text("⚠️ Error: ").push(render::truncate(message, 1500))),
                )
                .await;
            }
            EventKind::Interrupted { by } => {
                self.to_all(
                    session,
                    Outgoing::text(Rich::text(format!("⏸ Interrupted by {by}"))),
                )
                .await;
            }
            EventKind::Attached { target } => {
                self.to_all(
                    session,
                    Outgoing::text(
                        Rich::text("🖥 Attached to a terminal (")
                            .code(target.clone())
                            .push("); prompts from here wait until it detaches."),
                    ),
                )
                .await;
            }
            EventKind::Detached { reason } => {
                self.to_all(
                    session,
                    Outgoing::text(Rich::text(format!(
                        "🖥 Detached from the terminal: {reason}"
                    ))),
                )
                .await;
            }
            EventKind::State { state, reason } => {
                use common::event::SessionState as S;
                let what = match state {
                    S::Failed => "💥 Session failed",
                    S::Stopped => "⏹ Session stopped",
                    _ => return,
                };
                let mut text = what.to_owned();
                if let Some(r) = reason {
                    text.push_str(&format!(": {r}"));
                }
                if let Some(mut t) = turn.take() {
                    self.edit_progress(&mut t, Phase::Failed).await;
                }
                self.to_all(session, Outgoing::text(Rich::text(text))).await;
            }
            _ => {}
        }
    }

    async fn edit_progress(&self, t: &mut Turn, phase: Phase) {
        let text = t.progress_text(phase);
        for (place, id) in &t.progress {
            if let Err(e) = self
                .platform
                .edit(place, id, &Outgoing::text(text.clone()))
                .await
            {
                warn!(error = %e, "progress edit failed");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_turn(
        &self,
        session: SessionId,
        mut t: Turn,
        text: Option<&str>,
        is_error: bool,
        subtype: &str,
        cost_usd: Option<f64>,
        duration_ms: Option<u64>,
    ) {
        self.edit_progress(&mut t, if is_error { Phase::Failed } else { Phase::Done })
            .await;
        let answer = text
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| t.text.clone());
        let summary = render::summary_line(t.tools.len(), t.files.len(), cost_usd, duration_ms);
        let mut head = Rich::default();
        if is_error {
            head = head
                .bold(format!("❌ The turn failed ({subtype})"))
                .push("\n");
        }
        let limit = self.platform.text_limit();
        let measure = |r: &Rich| self.platform.measure(r);
        let tail = format!("\n\n{summary}");
        let body = render::markdown(&answer);
        let full = head.clone().extend(body).push(tail.clone());
        // One message; else up to `answer_parts` messages (code blocks closed and
        // reopened at the cuts); else the start of it with the whole text as a file.
        if let Some(parts) = render::split(&full, limit, self.platform.answer_parts(), measure) {
            for place in self.places_of(&session) {
                for part in &parts {
                    self.send(&place, Outgoing::text(part.clone())).await;
                }
            }
            return;
        }
        let note = format!(
            "\n\n(full answer, {} characters, attached as a file){tail}",
            answer.chars().count()
        );
        let mut room = limit.saturating_sub(head.len() + note.chars().count() + 20);
        // Shrink until it fits: markup, and characters outside the BMP on Telegram, count
        // more than one.
        let preview = loop {
            let cut = render::truncate(&answer, room);
            let msg = head
                .clone()
                .extend(render::markdown(&cut))
                .push(note.clone());
            if measure(&msg) <= limit || room == 0 {
                break msg;
            }
            room = room * 9 / 10;
        };
        for place in self.places_of(&session) {
            if let Err(e) = self
                .platform
                .send_file(&place, "answer.md", answer.clone().into_bytes(), &preview)
                .await
            {
                error!(error = format!("{e:#}"), "sending the answer file failed");
            }
        }
    }

    async fn post_approval(
        &self,
        session: SessionId,
        approval_id: &str,
        head: String,
        preview: String,
        options: Vec<String>,
    ) {
        let title = json!([head, preview]).to_string();
        for place in self.places_of(&session) {
            let mut row = ChatApprovalRow {
                id: 0,
                platform: self.platform.name().to_owned(),
                approval_id: approval_id.to_owned(),
                session_id: session,
                chat_id: place.chat.clone(),
                thread_id: place.thread.clone(),
                message_id: String::new(),
                title: title.clone(),
                options: options.clone(),
                decided: false,
            };
            row.id = match self.state.db.chat_approval_add(&row, now_ms()).await {
                Ok(id) => id,
                Err(e) => {
                    error!(error = %e, "storing an approval message failed");
                    continue;
                }
            };
            let button = |label: &str, data: String, style| Button {
                label: label.to_owned(),
                data,
                style,
            };
            let buttons = if options.is_empty() {
                vec![
                    vec![
                        button("✅ Allow", format!("a:{}:a", row.id), ButtonStyle::Success),
                        button("❌ Deny", format!("a:{}:d", row.id), ButtonStyle::Danger),
                    ],
                    vec![button(
                        "✅ Allow for this session",
                        format!("a:{}:s", row.id),
                        ButtonStyle::Primary,
                    )],
                ]
            } else {
                options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| {
                        vec![button(
                            &render::truncate(o, 60),
                            format!("q:{}:{i}", row.id),
                            ButtonStyle::Secondary,
                        )]
                    })
                    .collect()
            };
            let msg = Outgoing {
                text: approval_text(&title, None),
                choice: !options.is_empty(),
                buttons,
            };
            if let Some(id) = self.send(&place, msg).await
                && let Err(e) = self.state.db.chat_approval_set_message(row.id, &id).await
            {
                error!(error = %e, "storing an approval message id failed");
            }
        }
    }

    async fn close_approval(&self, approval_id: &str, verdict: String) {
        let rows = match self
            .state
            .db
            .chat_approvals_decide(self.platform.name(), approval_id)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "reading approval messages failed");
                return;
            }
        };
        for row in rows {
            if row.message_id.is_empty() {
                continue;
            }
            let place = Place {
                chat: row.chat_id.clone(),
                thread: row.thread_id.clone(),
            };
            let msg = Outgoing::text(approval_text(&row.title, Some(&verdict)));
            if let Err(e) = self.platform.edit(&place, &row.message_id, &msg).await {
                warn!(error = %e, "approval edit failed");
            }
        }
    }
}

/// An approval message from its stored title (`[head, preview]`) and verdict.
fn approval_text(title: &str, verdict: Option<&str>) -> Rich {
    let (head, preview) = serde_json::from_str::<(String, String)>(title)
        .unwrap_or_else(|_| (title.to_owned(), String::new()));
    let mut text = Rich::default().bold(head);
    if !preview.is_empty() {
        text = text.pre(preview);
    }
    if let Some(v) = verdict {
        text = text.push(format!("\n{v}"));
    }
    text
}

fn help(new_usage: &str) -> Rich {
    Rich::text("ccrm drives Claude Code sessions from here.\n\n")
            .code(new_usage.to_owned())
            .push(" start a session (in a new thread or topic where the chat has them)\n")
            .code("/list")
            .push(" all sessions\n")
            .code("/status")
            .push(" the session bound here\n")
            .code("/stop")
            .push(" stop it\n")
            .code("/interrupt")
            .push(" interrupt its turn\n")
            .code("/bind <session>")
            .push(" show an existing session here\n")
            .code("/prompt <text>")
            .push(" send a prompt at once\n\n")
            .push("Anything else you write in a bound thread, topic or chat is a prompt; messages sent a moment apart are joined.")
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Done,
    Failed,
}

/// What the progress message of the running turn shows.
struct Turn {
    progress: Vec<(Place, String)>,
    tools: Vec<String>,
    files: BTreeSet<String>,
    tool_errors: usize,
    chars: usize,
    text: String,
    note: Option<String>,
    dirty: bool,
    last_edit: Instant,
}

impl Turn {
    fn new() -> Self {
        Self {
            progress: Vec::new(),
            tools: Vec::new(),
            files: BTreeSet::new(),
            tool_errors: 0,
            chars: 0,
            text: String::new(),
            note: None,
            dirty: false,
            last_edit: Instant::now(),
        }
    }

    fn progress_text(&self, phase: Phase) -> Rich {
        let head = match phase {
            Phase::Running => "⏳ Working…",
            Phase::Done => "✅ Done",
            Phase::Failed => "❌ Ended",
        };
        let mut text = Rich::default().bold(head);
        let hidden = self.tools.len().saturating_sub(PROGRESS_TOOLS);
        if hidden > 0 {
            text = text.push(format!("\n… {hidden} earlier tool call(s)"));
        }
        for t in self.tools.iter().skip(hidden) {
            text = text.push("\n• ").push(t.clone());
        }
        if self.tool_errors > 0 {
            text = text.push(format!("\n⚠️ {} tool error(s)", self.tool_errors));
        }
        if phase == Phase::Running && self.chars > 0 {
            text = text.push(format!("\n✍️ {} characters so far", self.chars));
        }
        if let Some(n) = &self.note
            && phase == Phase::Running
        {
            text = text.push(format!("\n{n}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lists_the_last_tools_and_counts_the_rest() {
        let mut t = Turn::new();
        for i in 0..10 {
            t.tools.push(format!("Bash: step {i}"));
        }
        t.chars = 42;
        let running = t.progress_text(Phase::Running).plain();
        assert!(running.starts_with("⏳ Working…\n… 2 earlier tool call(s)\n• Bash: step 2"));
        assert!(
            running.ends_with("• Bash: step 9\n✍️ 42 characters so far"),
            "{running}"
        );
        let done = t.progress_text(Phase::Done).plain();
        assert!(done.starts_with("✅ Done") && !done.contains("characters so far"));
    }

    #[test]
    fn approval_text_keeps_the_preview_and_adds_the_verdict() {
        let title = json!(["🔐 Write needs approval", "/tmp/x <b>"]).to_string();
        let open = approval_text(&title, None);
        assert_eq!(
            open.html(),
            "<b>🔐 Write needs approval</b><pre>/tmp/x &lt;b&gt;</pre>"
        );
        let closed = approval_text(&title, Some("✅ Allowed by telegram:1")).plain();
        assert!(closed.ends_with("\n✅ Allowed by telegram:1"), "{closed}");
        // A title that is not the stored pair still renders.
        assert_eq!(approval_text("plain", None).plain(), "plain");
    }
}
