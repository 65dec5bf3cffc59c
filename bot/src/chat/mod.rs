//! The platform-neutral chat core (DESIGN.md "Chat"): chat threads bound to sessions,
//! commands, debounced prompts, turns summarised for chat, approvals as buttons, access
//! control with audit, and rate limits. Adapters ([`crate::telegram`] now, Discord next)
//! implement [`ChatPlatform`] for the outbound side and hand inbound messages to
//! [`core::ChatCore`] as [`Incoming`] values.
//!
//! Layout:
//! - [`core`]: bindings, commands, debounce, turn rendering, approvals, access.
//! - [`render`]: pure text formatting, escaping, splitting.
//! - [`ratelimit`]: `governor` limiters for outbound pacing and inbound prompts.
//!
//! Storage is in [`crate::db`] (`chat_*` tables); daemons are driven only through the hub,
//! like the REST layer.

pub mod core;
pub mod ratelimit;
pub mod render;

use std::future::Future;

use common::event::Surface;

use self::render::Rich;

/// Where a message goes: a chat and, on platforms with threads, a thread in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    /// The platform's chat id.
    pub chat: String,
    /// A thread (Telegram forum topic, Discord thread) of that chat.
    pub thread: Option<String>,
}

/// A button under a message; `data` comes back in [`Input::Button`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    /// What the user sees.
    pub label: String,
    /// What the press carries (short: Telegram allows 64 bytes).
    pub data: String,
}

/// A message to send or the new content of one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// The text.
    pub text: Rich,
    /// Rows of buttons (none: no keyboard; editing with none removes it).
    pub buttons: Vec<Vec<Button>>,
}

impl Outgoing {
    /// A message without buttons.
    pub fn text(text: Rich) -> Self {
        Self {
            text,
            buttons: Vec::new(),
        }
    }
}

/// Who sent something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// The platform user id (what the allowlist holds).
    pub id: String,
    /// `@name` or a display name, for messages.
    pub name: String,
}

/// A command, parsed by the adapter from its own syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatCommand {
    /// Start a session and bind a thread (or this chat) to it. Arguments are words:
    /// `dir=…`, `name=…`, `daemon=…`, or positional directory then name.
    New(String),
    /// List sessions.
    List,
    /// Show the bound session.
    Status,
    /// Stop the bound session.
    Stop,
    /// Interrupt the bound session's turn.
    Interrupt,
    /// Bind to an existing session (id, id prefix or name).
    Bind(String),
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
}

/// One inbound message or button press, in neutral form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// Where it happened.
    pub place: Place,
    /// Who.
    pub from: Sender,
    /// Whether the chat can hold threads that the bot creates (a Telegram forum).
    pub threads: bool,
    /// What.
    pub input: Input,
}

/// The outbound side of a chat platform. Implementations pace their requests (see
/// [`ratelimit`]) and retry when the platform says "too many requests", so a call
/// returns once the message is really delivered or has failed for good.
pub trait ChatPlatform: Send + Sync + 'static {
    /// Short lowercase name, the `platform` column of the `chat_*` tables.
    fn name(&self) -> &'static str;

    /// The surface prompts from this platform carry.
    fn surface(&self) -> Surface;

    /// Longest message text, in characters.
    fn text_limit(&self) -> usize;

    /// Sends a message; returns its id.
    fn send(
        &self,
        to: &Place,
        msg: &Outgoing,
    ) -> impl Future<Output = anyhow::Result<String>> + Send;

    /// Replaces the text and buttons of message `id`.
    fn edit(
        &self,
        to: &Place,
        id: &str,
        msg: &Outgoing,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Sends a file.
    fn send_file(
        &self,
        to: &Place,
        name: &str,
        bytes: Vec<u8>,
        caption: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Creates a thread titled `title` in `chat` and returns it.
    fn open_thread(
        &self,
        chat: &str,
        title: &str,
    ) -> impl Future<Output = anyhow::Result<Place>> + Send;
}
