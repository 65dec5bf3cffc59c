//! [`ChatCore`]: what a chat adapter calls. It builds the parts of the core and hands each
//! input to the part it concerns; it holds no logic of its own beyond that.
//!
//! - **Inbound** ([`ChatCore::handle`]): chatter in places with no session that is not
//!   addressed to the bot is ignored; everything else passes the access gate
//!   ([`super::access`]; others get one short refusal and nothing reaches a daemon) and
//!   goes to [`super::prompts`] (text, debounced by [`super::debounce`]),
//!   [`super::commands`], [`super::approvals`] (approval and question buttons) or
//!   [`super::places`] (Resume, Bind and `/new` menu buttons). It returns quickly:
//!   slow work (starting a session, sending a prompt) runs in tasks the core owns, so an
//!   adapter's dispatcher is never blocked by a daemon or by a pending approval.
//! - **Outbound** ([`ChatCore::run_events`]): the feed of [`super::outbound`], one worker
//!   task per bound session.
//!
//! - **Nothing lost** ([`ChatCore::claim_text`], [`ChatCore::replay_pending`]): a text
//!   message is claimed with its `chat_pending` row ([`super::inbox`]) and handled with
//!   it; rows a killed bot left are fed back in on start.
//!
//! Bindings live in SQLite (`chat_bindings`) and in memory ([`super::bindings`]); daemons
//! are driven only through [`crate::hub::Hub::command`], like the REST layer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::event::now_ms;
use tokio::sync::watch;
use tracing::{info, warn};

use super::access::{Gate, REFUSAL, Refusal};
use super::bindings::Bindings;
use super::ctx::Ctx;
use super::debounce::Debounce;
use super::inbox::{self, Claimed};
use super::outbound::Feed;
use super::outbox;
use super::render::Rich;
use super::{
    Access, Ack, ChatPlatform, Incoming, Input, Outgoing, Place, Sender, approvals, attachments,
    commands, places, prompts,
};
use crate::AppState;

/// How long [`ChatCore::shutdown`] lets pending prompts and messages go out.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// See the module docs.
pub struct ChatCore<P: ChatPlatform> {
    ctx: Arc<Ctx<P>>,
    debounce: Debounce,
    feed: Feed,
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
        let db = &state.db;
        let bindings = Bindings::load(db.clone(), platform.name()).await?;
        let feed = Feed::load(db, platform.name(), &bindings).await?;
        let gate = Gate::new(db.clone(), platform.name(), access, prompts_per_minute);
        Ok(Arc::new(Self {
            ctx: Arc::new(Ctx::new(state, platform, bindings, gate)),
            debounce: Debounce::default(),
            feed,
        }))
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.ctx.platform
    }

    /// True when `who` may use the bot (adapters use it to answer refusals privately).
    pub fn allows(&self, who: &Sender) -> bool {
        self.ctx.gate.allows(who)
    }

    /// False for chatter the bot ignores: text in a place with no session, not addressed
    /// to the bot (not even the allowlist or the audit log hear of it).
    pub fn concerns(&self, inc: &Incoming) -> bool {
        !matches!(inc.input, Input::Text(_) | Input::Files { .. })
            || inc.direct
            || self.ctx.bindings.get(&inc.place).is_some()
    }

    /// Every bound place with the time (Unix ms) it was bound.
    pub fn bound_places(&self) -> Vec<(Place, u64)> {
        self.ctx.bindings.all()
    }

    /// Runs `fut` as a task owned by the core (finished ones are reaped here).
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.ctx.spawn(fut);
    }

    /// Stops the core: prompts still inside their debounce window are sent now, session
    /// workers finish what they were given, and whatever is not done after
    /// [`SHUTDOWN_GRACE`] is aborted.
    pub async fn shutdown(&self) {
        // Ending the windows and the workers' inputs lets their tasks finish.
        self.debounce.close_all();
        self.feed.close();
        let mut tasks = self.ctx.take_tasks();
        let drained = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            warn!("chat tasks still busy at shutdown; aborting them");
        }
        tasks.abort_all();
    }

    /// Claims message `claim_id` (a Telegram update id, a Discord message id) together with
    /// its pending row (text, or photos and files with their caption), then handles it.
    /// False when it was claimed before (it was handled then, and nothing happens now).
    pub async fn claim_text(&self, claim_id: i64, inc: Incoming) -> bool {
        let platform = self.ctx.platform.name();
        match inbox::claim(&self.ctx.state.db, platform, claim_id, now_ms(), &inc).await {
            Claimed::Before => false,
            Claimed::Now(pending) => {
                self.handle_with(inc, pending).await;
                true
            }
        }
    }

    /// Feeds back the messages a previous process claimed but did not deliver (see
    /// [`super::inbox`]); they join debounce windows again and go out as prompts.
    pub async fn replay_pending(&self) {
        outbox::trim(&self.ctx).await;
        let rows = inbox::load(&self.ctx.state.db, self.ctx.platform.name()).await;
        if !rows.is_empty() {
            info!(
                count = rows.len(),
                "delivering chat messages left by the previous run"
            );
        }
        for (inc, id) in rows {
            self.handle_with(inc, Some(id)).await;
        }
    }

    /// Handles one inbound message or button press. Returns how a button press went
    /// (adapters that must answer presses show it; `None` for messages and commands).
    pub async fn handle(&self, inc: Incoming) -> Option<Ack> {
        self.handle_with(inc, None).await
    }

    /// [`ChatCore::handle`] for an input with its `chat_pending` row, which is deleted
    /// unless the input became a prompt piece (whose window then owns it).
    async fn handle_with(&self, inc: Incoming, pending: Option<i64>) -> Option<Ack> {
        let forget = |pending: Option<i64>| async move {
            if let Some(id) = pending {
                inbox::done(&self.ctx.state.db, &[id]).await;
            }
        };
        if !self.concerns(&inc) {
            forget(pending).await;
            return None;
        }
        if !self.ctx.gate.allows(&inc.from) {
            forget(pending).await;
            self.refuse(&inc).await;
            return matches!(inc.input, Input::Button(_)).then(|| Ack {
                text: "Not allowed".to_owned(),
                ok: false,
            });
        }
        match inc.input.clone() {
            Input::Text(text) => {
                if !prompts::on_text(&self.ctx, &self.debounce, inc, text, pending).await {
                    forget(pending).await;
                }
                None
            }
            Input::Files { text, files } => {
                attachments::on_files(&self.ctx, &self.debounce, inc, (text, files), pending).await;
                None
            }
            Input::Command(cmd) => {
                forget(pending).await;
                let ctx = self.ctx.clone();
                self.ctx
                    .spawn(async move { commands::run(&ctx, inc, cmd).await });
                None
            }
            Input::Button(data) if data.starts_with("a:") || data.starts_with("q:") => {
                Some(approvals::decide(&self.ctx, &inc, &data).await)
            }
            Input::Button(data) => Some(places::press(&self.ctx, &inc, &data).await),
        }
    }

    /// Feeds committed events to the session workers until `stop` turns true.
    pub async fn run_events(self: Arc<Self>, stop: watch::Receiver<bool>) {
        self.feed.run(&self.ctx, stop).await;
    }

    /// Tells a refused sender so, as the gate decides.
    async fn refuse(&self, inc: &Incoming) {
        let text = Rich::text(REFUSAL);
        match self.ctx.gate.refuse(inc).await {
            Refusal::InPlace(reply) => {
                let ctx = self.ctx.clone();
                let place = inc.place.clone();
                self.ctx.spawn(async move {
                    ctx.answer(&place, Some(&reply), Outgoing::text(text)).await;
                });
            }
            Refusal::Message => self.ctx.reply(&inc.place, text),
            Refusal::Silent => {}
        }
    }
}
