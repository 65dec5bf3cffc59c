//! The Telegram adapter (teloxide, long polling) on the chat core in [`crate::chat`].
//!
//! - [`Telegram`] implements [`ChatPlatform`]: HTML messages (escaped; code in `<pre>`)
//!   that fall back to plain text when Telegram rejects the entities, inline keyboards,
//!   documents, forum topics. Every request is paced by [`Outbound`] (30/s global, 1/s per
//!   chat, 20/min per group) and retried after a 429's `retry_after`, so nothing final is
//!   dropped.
//! - [`run`] wires a teloxide `Dispatcher` (dptree; dependencies via `dptree::deps!`) to
//!   [`ChatCore`]. Messages of one topic are handled in order; callback queries are handled
//!   concurrently with everything (their distribution key is `None`), and handlers only
//!   hand work to the core, so a pending approval never blocks other updates.
//! - The update offset is persisted (`chat_offsets`) and each update is claimed once
//!   (`chat_updates`), so a restart neither loses nor repeats updates. `setMyCommands`
//!   runs on start; the dispatcher stops with its shutdown token.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::event::{Surface, now_ms};
use futures::Stream;
use teloxide::ApiError;
use teloxide::RequestError;
use teloxide::dispatching::{Dispatcher, UpdateFilterExt};
use teloxide::dptree;
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::payloads::setters::*;
use teloxide::prelude::Requester;
use teloxide::requests::Request;
use teloxide::stop::{StopFlag, StopToken, mk_stop_token};
use teloxide::types::{
    CallbackQuery, ChatId, ChatKind, InlineKeyboardButton, InlineKeyboardMarkup, InputFile,
    Message, MessageId, ParseMode, PublicChatKind, ThreadId, Update, UpdateKind,
};
use teloxide::update_listeners::StatefulListener;
use teloxide::utils::command::BotCommands;
use teloxide::{Bot, respond};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::AppState;
use crate::chat::core::ChatCore;
use crate::chat::ratelimit::{Outbound, OutboundQuotas};
use crate::chat::render::Rich;
use crate::chat::{
    Access, ChatCommand, ChatPlatform, Incoming, Input, NewArgs, Outgoing, Place, Sender,
};
use crate::db::Db;

/// The `platform` name in the `chat_*` tables.
pub const PLATFORM: &str = "telegram";

/// Telegram's message length limit.
const TEXT_LIMIT: usize = 4096;

/// Attempts per request before giving up (429s wait their `retry_after` in between).
const ATTEMPTS: u32 = 12;

/// How long each step of stopping may take before it is cut short.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Long-poll timeout of `getUpdates`, in seconds. Must stay below teloxide's HTTP client
/// timeout (17 s), or every idle poll would fail as a network error.
const POLL_TIMEOUT: u32 = 10;

/// The bot's commands (also sent with `setMyCommands`).
#[derive(BotCommands, Clone, Debug, PartialEq, Eq)]
#[command(rename_rule = "lowercase", description = "ccrm commands:")]
pub enum TgCommand {
    /// Start a session.
    #[command(description = "start a session: /new <dir> [name] [daemon=<id>]")]
    New(String),
    /// List sessions.
    #[command(description = "list sessions")]
    List,
    /// Show the bound session.
    #[command(description = "show the session bound here")]
    Status,
    /// Stop the bound session.
    #[command(description = "stop the session bound here")]
    Stop,
    /// Interrupt the running turn.
    #[command(description = "interrupt the running turn")]
    Interrupt,
    /// Bind an existing session here.
    #[command(description = "show an existing session here: /bind <id or name>")]
    Bind(String),
    /// Send a prompt at once.
    #[command(description = "send a prompt at once: /prompt <text>")]
    Prompt(String),
    /// Help.
    #[command(description = "show help")]
    Help,
    /// Telegram's first message in a private chat.
    #[command(hide)]
    Start,
}

impl From<TgCommand> for ChatCommand {
    fn from(c: TgCommand) -> Self {
        match c {
            TgCommand::New(a) => Self::New(NewArgs::parse(&a)),
            TgCommand::List => Self::List,
            TgCommand::Status => Self::Status,
            TgCommand::Stop => Self::Stop,
            TgCommand::Interrupt => Self::Interrupt,
            TgCommand::Bind(a) => Self::Bind(a),
            TgCommand::Prompt(a) => Self::Prompt(a),
            TgCommand::Help | TgCommand::Start => Self::Help,
        }
    }
}

/// The outbound side: a teloxide [`Bot`] behind [`Outbound`] pacing.
pub struct Telegram {
    bot: Bot,
    limits: Outbound,
}

fn chat_id(s: &str) -> anyhow::Result<ChatId> {
    s.parse()
        .map(ChatId)
        .map_err(|_| anyhow::anyhow!("`{s}` is not a Telegram chat id"))
}

fn thread_id(p: &Place) -> Option<ThreadId> {
    p.thread
        .as_deref()
        .and_then(|t| t.parse().ok())
        .map(|t| ThreadId(MessageId(t)))
}

/// Group and supergroup ids are negative; the per-group limit applies to them.
fn is_group(chat: ChatId) -> bool {
    chat.0 < 0
}

fn keyboard(msg: &Outgoing) -> Option<InlineKeyboardMarkup> {
    if msg.buttons.is_empty() {
        return None;
    }
    Some(InlineKeyboardMarkup::new(msg.buttons.iter().map(|row| {
        row.iter()
            .map(|b| InlineKeyboardButton::callback(b.label.clone(), b.data.clone()))
            .collect::<Vec<_>>()
    })))
}

/// What to do after a failed attempt.
enum Retry {
    /// Wait this long, then try again.
    After(Duration),
    /// Try again as plain text.
    Plain,
    /// Give up.
    No,
}

fn retry_for(e: &RequestError, attempt: u32) -> Retry {
    match e {
        RequestError::RetryAfter(s) => Retry::After(s.duration()),
        RequestError::Api(ApiError::CantParseEntities(_)) => Retry::Plain,
        RequestError::Network(_) | RequestError::Io(_) if attempt < 3 => {
            Retry::After(Duration::from_millis(500 * u64::from(attempt + 1)))
        }
        _ => Retry::No,
    }
}

impl Telegram {
    /// An adapter sending through `bot` with Telegram's limits.
    pub fn new(bot: Bot) -> Self {
        Self {
            bot,
            limits: Outbound::new(OutboundQuotas::TELEGRAM),
        }
    }

    /// Runs `req(plain)` paced for `chat`, retrying after 429s and once as plain text
    /// when the HTML is rejected.
    async fn call<T, F, Fut>(&self, chat: Option<ChatId>, mut req: F) -> anyhow::Result<T>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut plain = false;
        let mut attempt = 0;
        loop {
            match chat {
                Some(c) => self.limits.message(&c.0.to_string(), is_group(c)).await,
                None => self.limits.other().await,
            }
            let err = match req(plain).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            attempt += 1;
            match retry_for(&err, attempt) {
                Retry::After(d) if attempt < ATTEMPTS => {
                    warn!(error = %err, wait_ms = d.as_millis() as u64, "telegram asked to wait");
                    tokio::time::sleep(d).await;
                }
                Retry::Plain if !plain => {
                    warn!(error = %err, "telegram rejected the HTML; sending plain text");
                    plain = true;
                }
                _ => return Err(err.into()),
            }
        }
    }
}

impl ChatPlatform for Telegram {
    fn name(&self) -> &'static str {
        PLATFORM
    }

    fn surface(&self) -> Surface {
        Surface::Telegram
    }

    fn text_limit(&self) -> usize {
        TEXT_LIMIT
    }

    fn measure(&self, text: &Rich) -> usize {
        // Telegram counts the text after entity parsing, in UTF-16 code units.
        text.len()
    }

    fn answer_parts(&self) -> usize {
        // Past 4096 characters an answer reads better as a file than as a run of messages.
        1
    }

    fn new_usage(&self) -> &'static str {
        "/new <dir> [name] [daemon=<id>]"
    }

    fn link(&self, _place: &Place) -> Option<String> {
        None
    }

    async fn send(&self, to: &Place, msg: &Outgoing) -> anyhow::Result<String> {
        let chat = chat_id(&to.chat)?;
        let thread = thread_id(to);
        let kb = keyboard(msg);
        let sent = self
            .call(Some(chat), |plain| {
                let mut req = if plain {
                    self.bot.send_message(chat, msg.text.plain())
                } else {
                    self.bot
                        .send_message(chat, msg.text.html())
                        .parse_mode(ParseMode::Html)
                };
                if let Some(t) = thread {
                    req = req.message_thread_id(t);
                }
                if let Some(k) = kb.clone() {
                    req = req.reply_markup(k);
                }
                async move { req.await }
            })
            .await?;
        Ok(sent.id.0.to_string())
    }

    async fn edit(&self, to: &Place, id: &str, msg: &Outgoing) -> anyhow::Result<()> {
        let chat = chat_id(&to.chat)?;
        let id = MessageId(
            id.parse()
                .map_err(|_| anyhow::anyhow!("`{id}` is not a message id"))?,
        );
        let kb = keyboard(msg);
        self.call(Some(chat), |plain| {
            let mut req = if plain {
                self.bot.edit_message_text(chat, id, msg.text.plain())
            } else {
                self.bot
                    .edit_message_text(chat, id, msg.text.html())
                    .parse_mode(ParseMode::Html)
            };
            if let Some(k) = kb.clone() {
                req = req.reply_markup(k);
            }
            async move {
                match req.await {
                    Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    async fn send_file(
        &self,
        to: &Place,
        name: &str,
        bytes: Vec<u8>,
        caption: &Rich,
    ) -> anyhow::Result<()> {
        // A document caption holds only 1024 characters: the text goes first, on its own.
        self.send(to, &Outgoing::text(caption.clone())).await?;
        let caption = "Full answer";
        let chat = chat_id(&to.chat)?;
        let thread = thread_id(to);
        let name = name.to_owned();
        self.call(Some(chat), |_| {
            let file = InputFile::memory(bytes.clone()).file_name(name.clone());
            let mut req = self.bot.send_document(chat, file).caption(caption);
            if let Some(t) = thread {
                req = req.message_thread_id(t);
            }
            async move { req.await }
        })
        .await?;
        Ok(())
    }

    async fn open_thread(&self, chat: &str, title: &str) -> anyhow::Result<Place> {
        let id = chat_id(chat)?;
        let title: String = title.chars().take(128).collect();
        let topic = self
            .call(None, |_| {
                let req = self.bot.create_forum_topic(id, title.clone());
                async move { req.await }
            })
            .await?;
        Ok(Place {
            chat: chat.to_owned(),
            thread: Some(topic.thread_id.0.0.to_string()),
        })
    }

    async fn answer(&self, to: &Place, _reply: Option<&str>, msg: &Outgoing) -> anyhow::Result<()> {
        self.send(to, msg).await.map(drop)
    }
}

/// What every handler gets (one `dptree` dependency).
struct Ctx {
    core: Arc<ChatCore<Telegram>>,
    db: Db,
    username: String,
}

impl Ctx {
    /// True the first time update `id` is seen (see the module docs).
    async fn claim(&self, id: i64) -> bool {
        match self.db.chat_claim_update(PLATFORM, id, now_ms()).await {
            Ok(first) => first,
            Err(e) => {
                // Better to handle an update twice than to lose it.
                warn!(error = %e, "cannot record a handled update");
                true
            }
        }
    }
}

fn sender(u: &teloxide::types::User) -> Sender {
    Sender {
        id: u.id.0.to_string(),
        name: u
            .username
            .as_ref()
            .map_or_else(|| u.first_name.clone(), |n| format!("@{n}")),
        roles: Vec::new(),
    }
}

fn place_of(m: &Message) -> Place {
    Place {
        chat: m.chat.id.0.to_string(),
        thread: m
            .is_topic_message
            .then_some(m.thread_id)
            .flatten()
            .map(|t| t.0.0.to_string()),
    }
}

fn is_forum(m: &Message) -> bool {
    match &m.chat.kind {
        ChatKind::Public(p) => matches!(&p.kind, PublicChatKind::Supergroup(s) if s.is_forum),
        ChatKind::Private(_) => false,
    }
}

async fn on_message(upd: Update, msg: Message, ctx: Arc<Ctx>) -> Result<(), RequestError> {
    let (Some(from), Some(text)) = (msg.from.as_ref(), msg.text()) else {
        return respond(());
    };
    if from.is_bot || !ctx.claim(i64::from(upd.id.0)).await {
        return respond(());
    }
    let input = if text.starts_with('/') {
        match TgCommand::parse(text, &ctx.username) {
            Ok(c) => Input::Command(c.into()),
            // Unknown slash words go to Claude (it has its own slash commands).
            Err(_) => Input::Text(text.to_owned()),
        }
    } else {
        Input::Text(text.to_owned())
    };
    let inc = Incoming {
        place: place_of(&msg),
        from: sender(from),
        threads: is_forum(&msg),
        direct: true,
        msg_id: u64::try_from(msg.id.0).ok(),
        reply: None,
        input,
    };
    // Quick: prompts go into the debounce buffer, commands into core tasks.
    ctx.core.handle(inc).await;
    respond(())
}

async fn on_callback(upd: Update, q: CallbackQuery, ctx: Arc<Ctx>) -> Result<(), RequestError> {
    if !ctx.claim(i64::from(upd.id.0)).await {
        return respond(());
    }
    let (Some(data), Some(m)) = (q.data.clone(), q.regular_message()) else {
        return respond(());
    };
    let inc = Incoming {
        place: place_of(m),
        from: sender(&q.from),
        threads: is_forum(m),
        direct: true,
        msg_id: None,
        reply: None,
        input: Input::Button(data),
    };
    // Deciding waits for a daemon: do it in a core task so this handler returns at once.
    let core = ctx.core.clone();
    ctx.core.spawn(async move {
        let toast = core.handle(inc).await.map(|a| a.text).unwrap_or_default();
        let platform = core.platform();
        let answer = platform
            .call(None, |_| {
                let req = platform
                    .bot
                    .answer_callback_query(q.id.clone())
                    .text(toast.clone());
                async move { req.await }
            })
            .await;
        if let Err(e) = answer {
            warn!(error = %e, "answering a button press failed");
        }
    });
    respond(())
}

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
                return Some((Ok(u), self));
            }
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
    let username = match bot.get_me().await {
        Ok(me) => me.username.clone().unwrap_or_default(),
        Err(e) => {
            warn!(error = %e, "getMe failed; commands with @botname are not recognised");
            String::new()
        }
    };
    let events = tokio::spawn(core.clone().run_events(stop.clone()));
    let offset = state.db.chat_offset(PLATFORM).await?;
    let ctx = Arc::new(Ctx {
        core: core.clone(),
        db: state.db.clone(),
        username,
    });
    let handler = dptree::entry()
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_callback));
    let mut dp = Dispatcher::builder(bot.clone(), handler)
        .dependencies(dptree::deps![ctx])
        .distribution_function(distribution)
        .default_handler(|_| async {})
        .build();
    let shutdown = dp.shutdown_token();
    let listener = listener(
        bot,
        state.db.clone(),
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
