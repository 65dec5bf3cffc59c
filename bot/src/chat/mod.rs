//! The platform-neutral chat core (DESIGN.md "Chat"): chat threads bound to sessions,
//! commands, debounced prompts, turns summarised for chat, approvals as buttons, access
//! control with audit, and rate limits. Adapters ([`crate::telegram`], [`crate::discord`])
//! implement [`ChatPlatform`] for the outbound side and hand inbound messages to
//! [`core::ChatCore`] as [`Incoming`] values. This file is that boundary: the trait and
//! the neutral types both sides speak.
//!
//! Layout (the parts that act work on the shared [`ctx::Ctx`]; none of them knows the core,
//! which sits on top):
//! - [`core`]: [`core::ChatCore`], the entry points the adapters call, delegating to the
//!   parts below.
//! - [`ctx`]: what every part shares: app state, platform, bindings, audit, owned tasks,
//!   and the one way to send a daemon a command.
//! - [`access`]: the allowlist, the per-user prompt limit, refusals and audit rows.
//! - [`bindings`]: which places show which sessions (memory and `chat_bindings`).
//! - [`commands`]: `/list`, `/status`, `/stop`, `/interrupt`, `/resume`, `/prompt`,
//!   `/help`, each platform's commands in its own syntax.
//! - [`places`]: `/new` (with a menu of recent directories), `/bind` and the Bind, Resume
//!   and menu buttons: sessions shown in a place, a thread per session where the chat has
//!   them.
//! - [`debounce`] and [`prompts`]: messages a moment apart joined into one prompt, and
//!   prompts sent to a session; [`inbox`]: those messages kept in SQLite until delivered;
//!   [`attachments`]: photos and files become image blocks or files in the session's inbox,
//!   voice notes a polite "not yet".
//! - [`approvals`]: approval and question messages with buttons, decisions from presses;
//!   [`questions`]: several questions (and multi-select) asked one at a time.
//! - [`outbound`]: hub events routed to one worker per bound session: progress message,
//!   final answer, notices; [`outbox`]: answers posted once across restarts.
//! - [`render`]: pure text formatting, escaping, splitting.
//! - [`ratelimit`]: `governor` limiters for outbound pacing and inbound prompts.
//!
//! Storage is in [`crate::db`] (`chat_*` tables); daemons are driven only through the hub,
//! like the REST layer.

mod access;
mod approvals;
mod attachments;
mod bindings;
mod commands;
pub mod core;
mod ctx;
mod debounce;
mod inbox;
mod outbound;
mod outbox;
mod places;
mod prompts;
mod questions;
pub mod ratelimit;
pub mod render;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};

use common::event::Surface;

pub use self::ratelimit::Lane;
use self::render::Rich;

/// Locks `m`, going on with the data when another task panicked while holding it (the
/// core's critical sections are single map or set operations, so the data stays whole).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a message goes: a chat and, on platforms with threads, a thread in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    /// The platform's chat id.
    pub chat: String,
    /// A thread (Telegram forum topic, Discord thread) of that chat.
    pub thread: Option<String>,
}

/// How a button looks where the platform can colour it (Discord); others ignore it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ButtonStyle {
    /// The main choice.
    Primary,
    /// A neutral choice.
    #[default]
    Secondary,
    /// Go ahead (allow).
    Success,
    /// Stop (deny).
    Danger,
}

/// A button under a message; `data` comes back in [`Input::Button`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    /// What the user sees.
    pub label: String,
    /// What the press carries (short: Telegram allows 64 bytes, Discord 100).
    pub data: String,
    /// Its look.
    pub style: ButtonStyle,
}

/// A message to send or the new content of one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The text.
    pub text: Rich,
    /// Rows of buttons (none: no keyboard; editing with none removes it).
    pub buttons: Vec<Vec<Button>>,
    /// The buttons are the options of a question: platforms with menus (Discord) may show
    /// them as one select menu instead.
    pub choice: bool,
}

impl Outgoing {
    /// A message without buttons.
    pub fn text(text: Rich) -> Self {
        Self {
            text,
            ..Self::default()
        }
    }
}

/// Who sent something.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sender {
    /// The platform user id (what the allowlist holds).
    pub id: String,
    /// `@name` or a display name, for messages.
    pub name: String,
    /// The sender's role ids where the platform has roles (Discord guild members).
    pub roles: Vec<String>,
}

/// Who may use a chat adapter: user ids, and (Discord) role ids; anyone matching either.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Allowed user ids.
    pub users: HashSet<String>,
    /// Allowed role ids.
    pub roles: HashSet<String>,
}

impl Access {
    /// An allowlist of user ids only.
    pub fn users(ids: impl IntoIterator<Item = String>) -> Self {
        Self {
            users: ids.into_iter().collect(),
            roles: HashSet::new(),
        }
    }

    /// True when `who` is allowed: their id, or one of their roles, is on the list.
    pub fn allows(&self, who: &Sender) -> bool {
        self.users.contains(&who.id) || who.roles.iter().any(|r| self.roles.contains(r))
    }
}

/// What `/new` was given (each adapter parses its own syntax into this).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewArgs {
    /// The session's working directory (the bot's `chat_default_dir` when absent).
    pub dir: Option<String>,
    /// A name for the session.
    pub name: Option<String>,
    /// The daemon to start it on (needed only when several are connected).
    pub daemon: Option<String>,
}

impl NewArgs {
    /// Parses words: `dir=…`, `name=…`, `daemon=…`, or positional directory then name.
    pub fn parse(words: &str) -> Self {
        let mut out = Self::default();
        let mut positional = Vec::new();
        for word in words.split_whitespace() {
            match word.split_once('=') {
                Some(("dir", v)) => out.dir = Some(v.to_owned()),
                Some(("name", v)) => out.name = Some(v.to_owned()),
                Some(("daemon", v)) => out.daemon = Some(v.to_owned()),
                _ => positional.push(word.to_owned()),
            }
        }
        let mut positional = positional.into_iter();
        if out.dir.is_none() {
            out.dir = positional.next();
        }
        if out.name.is_none() {
            out.name = positional.next();
        }
        out
    }
}

/// The commands a platform may offer, for `/help` and usage hints (see
/// [`ChatPlatform::usage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// `/new`.
    New,
    /// `/list` (Telegram), `/sessions` (Discord).
    List,
    /// `/status`.
    Status,
    /// `/stop`.
    Stop,
    /// `/interrupt`.
    Interrupt,
    /// `/resume`.
    Resume,
    /// `/bind`.
    Bind,
    /// `/prompt`.
    Prompt,
    /// `/help`.
    Help,
}

impl CommandKind {
    /// Every command, in the order help lists them.
    pub const ALL: [Self; 9] = [
        Self::New,
        Self::List,
        Self::Status,
        Self::Bind,
        Self::Prompt,
        Self::Interrupt,
        Self::Stop,
        Self::Resume,
        Self::Help,
    ];

    /// What the command does, in a few words (help text and command menus).
    pub fn about(self) -> &'static str {
        match self {
            Self::New => "start a session (pick a recent directory when you give none)",
            Self::List => "all sessions, with buttons to show one here",
            Self::Status => "the session shown here: state, machine, directory, cost",
            Self::Stop => "stop the session shown here",
            Self::Interrupt => "end its running turn (queued prompts stay)",
            Self::Resume => "bring a stopped or failed session back, with its history",
            Self::Bind => "show an existing session here",
            Self::Prompt => "send a prompt at once, without waiting for more messages",
            Self::Help => "this list",
        }
    }
}

/// A command, parsed by the adapter from its own syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatCommand {
    /// Start a session and bind a thread (or this chat) to it.
    New(NewArgs),
    /// List sessions.
    List,
    /// Show the bound session.
    Status,
    /// Stop the bound session.
    Stop,
    /// Interrupt the bound session's turn.
    Interrupt,
    /// Resume the bound session (stopped or failed).
    Resume,
    /// Bind to an existing session (id, id prefix or name).
    Bind(String),
    /// Send a prompt to the bound session at once (no joining with other messages).
    Prompt(String),
    /// Show help.
    Help,
}

/// What came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Plain text (a prompt in a bound thread).
    Text(String),
    /// A command.
    Command(ChatCommand),
    /// A button press with its data; the adapter acknowledges it with the returned text.
    Button(String),
    /// Photos, files or voice notes, with the caption written with them (maybe empty).
    Files {
        /// The caption.
        text: String,
        /// What was sent, not yet downloaded.
        files: Vec<Attachment>,
    },
}

/// What kind of file was sent (the adapter judges it from the platform's message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentKind {
    /// A photo or an image file: an image block of the prompt when the model takes it.
    Image,
    /// A voice note or audio message (not supported yet: the sender is told).
    Voice,
    /// Any other file: saved in the session's `.ccrm/inbox/`.
    File,
}

/// A file sent in chat, as the adapter describes it before downloading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The file name to save it under (the adapter makes one up for photos).
    pub name: String,
    /// Its size as the platform announces it, when it does.
    pub size: Option<u64>,
    /// What it is.
    pub kind: AttachmentKind,
    /// What [`ChatPlatform::fetch`] needs to download it (a Telegram file id, a Discord
    /// attachment URL).
    pub handle: String,
}

/// The error of [`ChatPlatform::fetch`] when a file turns out larger than allowed.
#[derive(Debug, thiserror::Error)]
#[error("the file is larger than {0} bytes")]
pub struct TooLarge(pub u64);

/// One inbound message or button press, in neutral form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// Where it happened.
    pub place: Place,
    /// Who.
    pub from: Sender,
    /// Whether the chat can hold threads that the bot creates (a Telegram forum, a Discord
    /// text channel).
    pub threads: bool,
    /// Addressed to the bot (a private chat, a mention, a command): text in a place with no
    /// session gets a hint only then, and is otherwise ignored (a Discord bot sees every
    /// channel of its servers).
    pub direct: bool,
    /// The platform's id of the message, increasing in time within a chat. Pieces of one
    /// prompt are joined in this order, since adapters may handle messages concurrently.
    /// For a button press: the message that carries the button.
    pub msg_id: Option<u64>,
    /// A handle for answering this input in place (a Discord interaction); `None`: answers
    /// are new messages.
    pub reply: Option<String>,
    /// What.
    pub input: Input,
}

/// How a button press went, for the adapter to acknowledge it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// A short text ("Allowed", "Already decided").
    pub text: String,
    /// False when nothing happened (refused, already decided, failed).
    pub ok: bool,
}

/// The outbound side of a chat platform. Implementations pace their requests (see
/// [`ratelimit`]) and retry when the platform says "too many requests", so a call
/// returns once the message is really delivered or has failed for good; only
/// [`Lane::Progress`] requests may be skipped instead.
pub trait ChatPlatform: Send + Sync + 'static {
    /// Short lowercase name, the `platform` column of the `chat_*` tables.
    fn name(&self) -> &'static str;

    /// The surface prompts from this platform carry.
    fn surface(&self) -> Surface;

    /// Longest message text, as [`ChatPlatform::measure`] counts it.
    fn text_limit(&self) -> usize;

    /// How long `text` is on this platform (its markup included where the platform counts
    /// it).
    fn measure(&self, text: &Rich) -> usize;

    /// Most messages a long final answer is split into; a longer one is sent as a file.
    fn answer_parts(&self) -> usize;

    /// How `cmd` is written here (`/new directory:<dir>` on Discord), or `None` when the
    /// platform does not offer it.
    fn usage(&self, cmd: CommandKind) -> Option<&'static str>;

    /// A clickable reference to `place` (a thread or topic titled `title`), where the
    /// platform has one (Discord `<#id>`, a Telegram topic link).
    fn link(&self, place: &Place, title: &str) -> Option<Rich>;

    /// Sends a message as [`Lane::Answer`]; returns its id.
    fn send(
        &self,
        to: &Place,
        msg: &Outgoing,
    ) -> impl Future<Output = anyhow::Result<String>> + Send {
        async move {
            self.send_in(Lane::Answer, to, msg)
                .await?
                .ok_or_else(|| anyhow::anyhow!("an answer was not sent"))
        }
    }

    /// Sends a message in `lane`; `None` when a [`Lane::Progress`] message was skipped.
    fn send_in(
        &self,
        lane: Lane,
        to: &Place,
        msg: &Outgoing,
    ) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;

    /// Sends a message in `lane` under the idempotency key `key` (see
    /// [`outbox`](self::outbox)): platforms that can make a repeated send return the
    /// message already posted (Discord's `nonce` with `enforce_nonce`) do so; others send.
    fn send_keyed(
        &self,
        lane: Lane,
        to: &Place,
        msg: &Outgoing,
        key: &str,
    ) -> impl Future<Output = anyhow::Result<Option<String>>> + Send {
        let _ = key;
        self.send_in(lane, to, msg)
    }

    /// Replaces the text and buttons of message `id`, as [`Lane::Answer`].
    fn edit(
        &self,
        to: &Place,
        id: &str,
        msg: &Outgoing,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async move { self.edit_in(Lane::Answer, to, id, msg).await.map(drop) }
    }

    /// Replaces message `id` in `lane`; false when a [`Lane::Progress`] edit was skipped.
    fn edit_in(
        &self,
        lane: Lane,
        to: &Place,
        id: &str,
        msg: &Outgoing,
    ) -> impl Future<Output = anyhow::Result<bool>> + Send;

    /// Shows "typing…" in `to` for a few seconds (or until the bot's next message).
    fn typing(&self, to: &Place) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Sends `caption` with a file: one message where the platform can, else the caption
    /// first and then the file.
    fn send_file(
        &self,
        to: &Place,
        name: &str,
        bytes: Vec<u8>,
        caption: &Rich,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Downloads an attachment of at most `max` bytes (a larger one fails with
    /// [`TooLarge`], found by downcasting). Platforms that cannot download files keep the
    /// default, which says so.
    fn fetch(
        &self,
        file: &Attachment,
        max: u64,
    ) -> impl Future<Output = anyhow::Result<Vec<u8>>> + Send {
        let _ = (file, max);
        async move { anyhow::bail!("files cannot be downloaded from {}", self.name()) }
    }

    /// Creates a thread titled `title` in `chat` and returns it.
    fn open_thread(
        &self,
        chat: &str,
        title: &str,
    ) -> impl Future<Output = anyhow::Result<Place>> + Send;

    /// Answers a command given in `to`: in place when `reply` (its [`Incoming::reply`]) is
    /// set, else as a new message.
    fn answer(
        &self,
        to: &Place,
        reply: Option<&str>,
        msg: &Outgoing,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_args_take_words_or_keys() {
        let a = NewArgs::parse("/srv/app web daemon=box");
        assert_eq!(a.dir.as_deref(), Some("/srv/app"));
        assert_eq!(a.name.as_deref(), Some("web"));
        assert_eq!(a.daemon.as_deref(), Some("box"));
        let b = NewArgs::parse("name=x dir=/a");
        assert_eq!(
            (b.dir.as_deref(), b.name.as_deref()),
            (Some("/a"), Some("x"))
        );
        assert_eq!(NewArgs::parse("  "), NewArgs::default());
    }

    #[test]
    fn access_by_user_or_role() {
        let mut a = Access::users(["1".to_owned()]);
        a.roles.insert("77".into());
        let user = |id: &str, roles: &[&str]| Sender {
            id: id.into(),
            name: String::new(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        assert!(a.allows(&user("1", &[])));
        assert!(a.allows(&user("2", &["5", "77"])));
        assert!(!a.allows(&user("2", &["5"])));
        assert!(!Access::default().allows(&user("1", &["77"])));
    }
}
