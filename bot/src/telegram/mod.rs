//! The Telegram adapter (teloxide, long polling) on the chat core in [`crate::chat`].
//!
//! - [`platform`]: [`Telegram`] implements [`crate::chat::ChatPlatform`]: HTML messages
//!   with a plain-text retry, inline keyboards, documents, forum topics and their links,
//!   "typing…"; paced per chat and group with answers ahead of progress.
//! - [`inbound`]: the commands ([`TgCommand`], also the command menu), and the handlers
//!   that hand messages and button presses to the core; chatter not addressed to the bot
//!   in a place with no session is ignored.
//! - [`run`] (here) wires a teloxide `Dispatcher` (dptree; dependencies via
//!   `dptree::deps!`) to the core. Messages of one topic are handled in order; callback
//!   queries are handled concurrently with everything (their distribution key is `None`),
//!   and handlers only hand work to the core, so a pending approval never blocks other
//!   updates.
//! - The update offset is persisted (`chat_offsets`) and each update is claimed once
//!   (`chat_updates`), so a restart neither loses nor repeats updates. The offset moves
//!   only after every update handed out was claimed ([`inflight`]), and a prompt piece is
//!   claimed together with its pending row (`crate::chat::inbox`). `setMyCommands`
//!   runs on start; the dispatcher stops with its shutdown token.
//! - [`webhook`]: webhook mode (`telegram_webhook_url`) instead of polling: the route
//!   Telegram posts updates to, served by every replica, which keeps each update in the
//!   database; `webhook_feed.rs`: on the chat leader, `setWebhook` with a secret token and
//!   the handling of what any replica kept, through the same handlers and claims.

mod inbound;
mod inflight;
mod platform;
pub mod webhook;
mod webhook_feed;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use teloxide::Bot;
use teloxide::RequestError;
use teloxide::dispatching::{Dispatcher, UpdateFilterExt};
use teloxide::dptree;
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::payloads::setters::*;
use teloxide::prelude::Requester;
use teloxide::requests::Request;
use teloxide::stop::{StopFlag, StopToken, mk_stop_token};
use teloxide::types::{Update, UpdateKind};
use teloxide::update_listeners::StatefulListener;
use teloxide::utils::command::BotCommands;
use tokio::sync::watch;
use tracing::{info, warn};

pub use self::inbound::TgCommand;
use self::inbound::{Ctx, on_callback, on_message};
use self::inflight::Inflight;
pub use self::platform::Telegram;
use crate::AppState;
use crate::chat::Access;
use crate::chat::core::ChatCore;
use crate::db::Db;

/// The `platform` name in the `chat_*` tables.
pub const PLATFORM: &str = "telegram";

/// How long each step of stopping may take before it is cut short.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Long-poll timeout of `getUpdates`, in seconds. Must stay below teloxide's HTTP client
/// timeout (17 s), or every idle poll would fail as a network error.
const POLL_TIMEOUT: u32 = 10;

/// Messages of one chat topic are handled in order (prompts must keep their order);
/// everything else (button presses) concurrently.
fn distribution(u: &Update) -> Option<(i64, i32)> {
    match &u.kind {
        UpdateKind::Message(m) => Some((m.chat.id.0, m.thread_id.map_or(0, |t| t.0.0))),
        _ => None,
    }
}

/// Long polling that starts at the stored offset and stores it before each poll (which
/// confirms the previous batch to Telegram).
struct Poll {
    bot: Bot,
    db: Db,
    offset: i32,
    buf: VecDeque<Update>,
    /// Updates handed out and not yet claimed by their handlers.
    inflight: Arc<Inflight>,
    flag: Pin<Box<StopFlag>>,
    /// The server's own stop signal. teloxide's dispatcher can miss a shutdown request
    /// that arrives while it is handing an update to a worker, and would then never stop
    /// the listener; ending the stream here makes the dispatcher stop in any case.
    stop: watch::Receiver<bool>,
}

impl Poll {
    async fn next(mut self) -> Option<(Result<Update, RequestError>, Self)> {
        let mut failures = 0u32;
        loop {
            if let Some(u) = self.buf.pop_front() {
                self.inflight.add(u.id.0);
                return Some((Ok(u), self));
            }
            // Everything handed out is claimed before Telegram hears the new offset.
            self.inflight.settled().await;
            if let Err(e) = self
                .db
                .set_chat_offset(PLATFORM, i64::from(self.offset))
                .await
            {
                warn!(error = %e, "cannot store the telegram offset");
            }
            let req = self
                .bot
                .get_updates()
                .offset(self.offset)
                .timeout(POLL_TIMEOUT);
            let got = tokio::select! {
                () = &mut self.flag => return None,
                _ = self.stop.wait_for(|s| *s) => return None,
                got = req.send() => got,
            };
            match got {
                Ok(updates) => {
                    failures = 0;
                    if let Some(last) = updates.last() {
                        self.offset = last.id.as_offset();
                    }
                    self.buf.extend(updates);
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = match &e {
                        RequestError::RetryAfter(s) => s.duration(),
                        _ => Duration::from_secs(u64::from(failures.min(30))),
                    };
                    warn!(error = %e, wait_s = wait.as_secs(), "telegram getUpdates failed");
                    tokio::select! {
                        () = &mut self.flag => return None,
                        _ = self.stop.wait_for(|s| *s) => return None,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

fn listener(
    bot: Bot,
    db: Db,
    inflight: Arc<Inflight>,
    offset: i32,
    stop: watch::Receiver<bool>,
) -> impl teloxide::update_listeners::UpdateListener<Err = RequestError> {
    let (token, flag) = mk_stop_token();
    struct St {
        poll: Option<Poll>,
        token: StopToken,
    }
    let st = St {
        poll: Some(Poll {
            bot,
            db,
            offset,
            buf: VecDeque::new(),
            inflight,
            flag: Box::pin(flag),
            stop,
        }),
        token,
    };
    StatefulListener::new(
        st,
        |st: &mut St| -> Pin<Box<dyn Stream<Item = Result<Update, RequestError>> + Send>> {
            match st.poll.take() {
                Some(p) => Box::pin(futures::stream::unfold(p, Poll::next)),
                None => Box::pin(futures::stream::empty()),
            }
        },
        |st: &mut St| st.token.clone(),
    )
}

/// Runs the Telegram adapter until `stop` turns true.
pub async fn run(
    state: Arc<AppState>,
    token: String,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url: url::Url = state
        .cfg
        .telegram_api_url
        .parse()
        .map_err(|e| anyhow::anyhow!("telegram_api_url: {e}"))?;
    let bot = Bot::new(token).set_api_url(url);
    let allowed = Access::users(state.cfg.telegram_allowed_users.iter().map(i64::to_string));
    let core = ChatCore::new(
        state.clone(),
        Telegram::new(bot.clone()),
        allowed,
        state.cfg.chat_prompts_per_minute,
    )
    .await?;
    // Telegram wants the names without the leading slash.
    let commands = TgCommand::bot_commands().into_iter().map(|mut c| {
        c.command = c.command.trim_start_matches('/').to_owned();
        c
    });
    if let Err(e) = bot.set_my_commands(commands).await {
        warn!(error = %e, "setMyCommands failed");
    }
    let (username, bot_id) = match bot.get_me().await {
        Ok(me) => (me.username.clone().unwrap_or_default(), me.id.0),
        Err(e) => {
            warn!(error = %e, "getMe failed; commands with @botname and mentions are not recognised");
            (String::new(), 0)
        }
    };
    // Prompts a killed bot had claimed but not delivered.
    core.replay_pending().await;
    let events = tokio::spawn(core.clone().run_events(stop.clone()));
    let inflight = Arc::new(Inflight::default());
    let ctx = Arc::new(Ctx {
        core: core.clone(),
        db: state.db.clone(),
        inflight: inflight.clone(),
        username,
        bot_id,
    });
    if let Some(url) = state.cfg.telegram_webhook_url.clone() {
        let served = webhook_feed::serve(state.clone(), bot, ctx, &url, stop.clone()).await;
        if tokio::time::timeout(STOP_GRACE, events).await.is_err() {
            warn!("the chat event loop did not stop in time");
        }
        core.shutdown().await;
        return served;
    }
    webhook::leave(&bot).await;
    // Deliveries kept while the bot was in webhook mode are handled before polling.
    webhook_feed::drain(&state, &ctx, &stop).await;
    let offset = state.db.chat_offset(PLATFORM).await?;
    let handler = dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback));
    let mut dp = Dispatcher::builder(bot.clone(), handler)
        .dependencies(dptree::deps![ctx])
        .distribution_function(distribution)
        .default_handler({
            let inflight = inflight.clone();
            move |upd: Arc<Update>| {
                inflight.done(upd.id.0);
                async {}
            }
        })
        .build();
    let shutdown = dp.shutdown_token();
    let listener = listener(
        bot,
        state.db.clone(),
        inflight,
        i32::try_from(offset).unwrap_or(0),
        stop.clone(),
    );
    let mut dispatch = tokio::spawn(async move {
        dp.dispatch_with_listener(
            listener,
            LoggingErrorHandler::with_custom_text("telegram update listener"),
        )
        .await;
    });
    info!("telegram adapter running");
    let ended = tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = &mut dispatch => {
            warn!("telegram dispatcher ended");
            true
        }
    };
    if !ended {
        // Ask the dispatcher to stop and wait for it (bounded: a stop must never hang the
        // process). Its own "done" future is not awaited: it misses a dispatcher that
        // finished first, which ours does as soon as the listener sees `stop`.
        let _ = shutdown.shutdown();
        if tokio::time::timeout(STOP_GRACE, &mut dispatch)
            .await
            .is_err()
        {
            warn!("the telegram dispatcher did not stop in time; aborting it");
            dispatch.abort();
        }
    }
    if tokio::time::timeout(STOP_GRACE, events).await.is_err() {
        warn!("the chat event loop did not stop in time");
    }
    core.shutdown().await;
    Ok(())
}
