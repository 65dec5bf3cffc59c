//! The fake's world: chats, the bot's messages, forum topics, the update queue, uploads
//! and the record of calls. Every Bot API method is a plain function of the world and the
//! request's parameters ([`World::dispatch`]); the HTTP side lives in the parent module.
//!
//! Descriptions of errors are the real Bot API's, so teloxide maps them onto the same
//! `ApiError` variants it would in production (`MessageNotModified`,
//! `MessageToEditNotFound`, `MessageIsTooLong`, `ButtonDataInvalid`, `CantParseEntities`,
//! `ChatNotFound`, ...).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::markup::{self, Rendered};
use super::{Call, Document, Message};

/// Every method the fake answers, spelled as the Bot API spells them. Names are matched
/// case-insensitively, as Telegram does.
pub(super) const METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "getWebhookInfo",
    "deleteWebhook",
    "logOut",
    "close",
    "sendMessage",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
    "answerCallbackQuery",
    "createForumTopic",
    "editForumTopic",
    "closeForumTopic",
    "reopenForumTopic",
    "deleteForumTopic",
    "sendDocument",
    "sendChatAction",
    "setMyCommands",
    "deleteMyCommands",
    "getMyCommands",
    "getFile",
];

/// The canonical spelling of a method name, if the fake knows it.
pub(super) fn canonical_method(name: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.eq_ignore_ascii_case(name))
}

/// Longest text of a message, in characters after entity parsing.
const MAX_TEXT_CHARS: usize = 4096;
/// Longest caption of a document, in characters after entity parsing.
const MAX_CAPTION_CHARS: usize = 1024;
/// Longest `callback_data` of an inline button, in bytes.
const MAX_CALLBACK_DATA_BYTES: usize = 64;
/// Longest forum topic name, in characters.
const MAX_TOPIC_NAME_CHARS: usize = 128;
/// Topic icon colour when the bot does not choose one (Telegram's blue).
const DEFAULT_TOPIC_COLOR: u32 = 0x6F_B9F0;
/// First update id handed out. Real ids are large; teloxide keeps them in a `u32`.
const FIRST_UPDATE_ID: i64 = 500_000_001;

/// The description of `error_code` 400 "message is not modified", verbatim.
const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and \
     reply markup are exactly the same as a current content and reply markup of the message";

/// A Bot API error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// `error_code`, also the HTTP status.
    pub code: u16,
    /// `description`, e.g. "Bad Request: chat not found".
    pub description: String,
    /// `parameters.retry_after`.
    pub retry_after: Option<u32>,
}

impl Failure {
    /// A 400 whose description is `Bad Request: {detail}`.
    pub fn bad(detail: impl std::fmt::Display) -> Self {
        Self {
            code: 400,
            description: format!("Bad Request: {detail}"),
            retry_after: None,
        }
    }

    /// A 400 with a description used verbatim.
    fn bad_verbatim(description: &str) -> Self {
        Self {
            code: 400,
            description: description.to_owned(),
            retry_after: None,
        }
    }

    /// An injected failure with the usual description for `status`.
    pub fn injected(status: u16, retry_after: Option<u32>) -> Self {
        let retry_after = match (status, retry_after) {
            // Telegram never sends a 429 without saying how long to wait.
            (429, None) => Some(1),
            (_, r) => r,
        };
        let description = match status {
            400 => "Bad Request: failure injected by FakeTelegram".to_owned(),
            401 => "Unauthorized".to_owned(),
            403 => "Forbidden: bot was blocked by the user".to_owned(),
            404 => "Not Found".to_owned(),
            409 => "Conflict: terminated by other getUpdates request; make sure that only one \
                    bot instance is running"
                .to_owned(),
            429 => format!(
                "Too Many Requests: retry after {}",
                retry_after.unwrap_or(1)
            ),
            500..=599 => "Internal Server Error".to_owned(),
            other => format!("Error {other} injected by FakeTelegram"),
        };
        Self {
            code: status,
            description,
            retry_after,
        }
    }

    /// The response body: `{"ok":false,"error_code":..,"description":..,"parameters":..}`.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        if let Some(seconds) = self.retry_after {
            body["parameters"] = json!({ "retry_after": seconds });
        }
        body
    }
}

/// An uploaded file part of a multipart request.
#[derive(Debug, Clone)]
pub(super) struct Upload {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// A request's parameters: JSON fields (multipart and form fields are strings) and the
/// file parts of a multipart body, by part name.
#[derive(Debug, Default)]
pub(super) struct Params {
    pub fields: Map<String, Value>,
    pub files: HashMap<String, Upload>,
}

impl Params {
    /// The value of a field; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// An integer field, given as a number or a numeric string.
    pub fn int(&self, key: &str) -> Result<Option<i64>, Failure> {
        let invalid = || Failure::bad(format!("field \"{key}\" must be an integer"));
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(invalid),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid()),
            Some(_) => Err(invalid()),
        }
    }

    /// A 32-bit integer field (message and thread ids).
    fn int32(&self, key: &str) -> Result<Option<i32>, Failure> {
        match self.int(key)? {
            None => Ok(None),
            Some(v) => i32::try_from(v)
                .map(Some)
                .map_err(|_| Failure::bad(format!("field \"{key}\" is out of range"))),
        }
    }

    /// A string field; numbers and booleans are taken as their text.
    fn string(&self, key: &str) -> Result<Option<String>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
            Some(_) => Err(Failure::bad(format!("field \"{key}\" must be a String"))),
        }
    }

    /// A boolean field, given as a JSON bool or `"true"`/`"false"`.
    fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        }
    }

    /// A JSON-serialised field (objects and arrays arrive as strings in multipart and
    /// form bodies). `what` names it in the error.
    fn structured(&self, key: &str, what: &str) -> Result<Option<Value>, Failure> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| Failure::bad(format!("can't parse {what} JSON object"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// The `parse_mode` field; an empty one means none.
    fn parse_mode(&self) -> Result<Option<String>, Failure> {
        Ok(self.string("parse_mode")?.filter(|m| !m.is_empty()))
    }

    /// The upload a file field refers to: `attach://<part>` or a file part of that name.
    fn upload(&self, key: &str) -> Option<&Upload> {
        if let Some(Value::String(s)) = self.get(key)
            && let Some(part) = s.strip_prefix("attach://")
        {
            return self.files.get(part);
        }
        self.files.get(key)
    }

    /// The parameters as recorded in a [`Call`]: fields as given, files as
    /// `{"file_name":..,"size":..}` in the field that refers to them.
    pub fn to_json(&self) -> Value {
        let describe = |u: &Upload| json!({ "file_name": u.file_name, "size": u.bytes.len() });
        let mut out = self.fields.clone();
        let mut referenced = Vec::new();
        for value in out.values_mut() {
            if let Value::String(s) = value
                && let Some(part) = s.strip_prefix("attach://")
                && let Some(upload) = self.files.get(part)
            {
                referenced.push(part.to_owned());
                *value = describe(upload);
            }
        }
        for (name, upload) in &self.files {
            if !referenced.contains(name) {
                out.insert(name.clone(), describe(upload));
            }
        }
        Value::Object(out)
    }
}

/// What a method did: its result, and the chat and topic it acted on (for the [`Call`]).
pub(super) struct Handled {
    pub result: Result<Value, Failure>,
    pub chat_id: Option<i64>,
    pub thread_id: Option<i32>,
}

/// An injected failure waiting for its method.
struct Fault {
    method: String,
    status: u16,
    retry_after: Option<u32>,
}

/// A chat the fake knows.
struct ChatState {
    id: i64,
    kind: ChatKind,
    /// Message ids are per chat; topics take ids from the same sequence.
    last_message_id: i32,
    /// The bot's messages (not deleted), in send order.
    messages: Vec<Stored>,
    /// Forum topics (not deleted), in creation order.
    topics: Vec<Topic>,
}

enum ChatKind {
    Private { user_id: i64 },
    Supergroup { title: String, forum: bool },
}

struct Topic {
    thread_id: i32,
    name: String,
    icon_color: u32,
    closed: bool,
    /// The user who created it (the bot, or a test user).
    creator: Value,
    date: i64,
}

/// A message the bot sent.
struct Stored {
    message_id: i32,
    thread_id: Option<i32>,
    date: i64,
    edit_date: Option<i64>,
    content: Content,
    /// Inline keyboard (`{"inline_keyboard":[...]}`), if any.
    reply_markup: Option<Value>,
    edits: u32,
}

enum Content {
    Text {
        raw: String,
        parse_mode: Option<String>,
        rendered: Rendered,
    },
    Document {
        file_id: String,
        file_unique_id: String,
        file_name: String,
        size: usize,
        caption: Option<Rendered>,
    },
}

/// A callback query handed to the bot.
struct Callback {
    chat_id: i64,
    thread_id: Option<i32>,
    answered: bool,
}

/// Everything the fake knows. Owned by one std `Mutex` in the parent module.
pub(super) struct World {
    bot_id: i64,
    bot_username: String,
    chats: BTreeMap<i64, ChatState>,
    /// Serial of the last `forum_group` created.
    group_serial: i64,
    /// `(update_id, update)` not yet confirmed by an offset, oldest first.
    pub queue: VecDeque<(i64, Value)>,
    next_update_id: i64,
    /// Update ids handed out by getUpdates, in order.
    pub served: Vec<i64>,
    /// Ticket of the newest getUpdates request; older ones end with 409 Conflict.
    pub poll_ticket: u64,
    /// getUpdates requests being held right now (long polls with nothing to hand out).
    pub waiting_polls: usize,
    /// Every request except getUpdates.
    pub calls: Vec<Call>,
    pub documents: Vec<Document>,
    callbacks: HashMap<String, Callback>,
    callback_serial: u64,
    faults: Vec<Fault>,
    reject_entities: u32,
    commands: Vec<(String, String)>,
    file_serial: u64,
    /// Set when the last handle is dropped: long polls end at once.
    pub closed: bool,
}

impl World {
    pub fn new(bot_id: i64, bot_username: &str) -> Self {
        Self {
            bot_id,
            bot_username: bot_username.to_owned(),
            chats: BTreeMap::new(),
            group_serial: 0,
            queue: VecDeque::new(),
            next_update_id: FIRST_UPDATE_ID,
            served: Vec::new(),
            poll_ticket: 0,
            waiting_polls: 0,
            calls: Vec::new(),
            documents: Vec::new(),
            callbacks: HashMap::new(),
            callback_serial: 0,
            faults: Vec::new(),
            reject_entities: 0,
            commands: Vec::new(),
            file_serial: 0,
            closed: false,
        }
    }

    // ---- test-side setup and injection -------------------------------------------

    pub fn forum_group(&mut self, title: &str) -> i64 {
        self.group_serial += 1;
        let id = -1_001_000_000_000 - self.group_serial;
        self.chats.insert(
            id,
            ChatState::new(
                id,
                ChatKind::Supergroup {
                    title: title.to_owned(),
                    forum: true,
                },
            ),
        );
        id
    }

    pub fn private_chat(&mut self, user_id: i64) -> i64 {
        self.chats
            .entry(user_id)
            .or_insert_with(|| ChatState::new(user_id, ChatKind::Private { user_id }));
        user_id
    }

    /// The chat, registered on first use when a test injects into an id it never set
    /// up: a positive id is a private chat, a negative one a plain (non-forum) supergroup.
    fn chat_for_injection(&mut self, chat_id: i64) -> &mut ChatState {
        self.chats.entry(chat_id).or_insert_with(|| {
            let kind = if chat_id > 0 {
                ChatKind::Private { user_id: chat_id }
            } else {
                ChatKind::Supergroup {
                    title: format!("Group {chat_id}"),
                    forum: false,
                }
            };
            ChatState::new(chat_id, kind)
        })
    }

    pub fn user_topic(&mut self, chat_id: i64, from: i64, name: &str) -> i32 {
        let creator = user_json(from);
        let chat = self.chat_for_injection(chat_id);
        let thread_id = chat.next_message_id();
        chat.topics.push(Topic {
            thread_id,
            name: name.to_owned(),
            icon_color: DEFAULT_TOPIC_COLOR,
            closed: false,
            creator,
            date: unix_now(),
        });
        thread_id
    }

    pub fn user_message(
        &mut self,
        chat_id: i64,
        from: i64,
        text: &str,
        thread_id: Option<i32>,
    ) -> i32 {
        let chat = self.chat_for_injection(chat_id);
        let message_id = chat.next_message_id();
        let mut message = json!({
            "message_id": message_id,
            "from": user_json(from),
            "chat": chat.json(),
            "date": unix_now(),
            "text": text,
        });
        chat.place_in_thread(&mut message, thread_id);
        let mut entities = Vec::new();
        if text.starts_with('/') {
            let command = text.split(char::is_whitespace).next().unwrap_or(text);
            entities.push(json!({
                "type": "bot_command",
                "offset": 0,
                "length": markup::utf16_len(command),
            }));
        }
        entities.extend(mention_entities(text));
        if !entities.is_empty() {
            message["entities"] = Value::Array(entities);
        }
        self.enqueue("message", message);
        message_id
    }

    /// A user's message that replies to the bot's message `reply_to` (the update carries
    /// that message as `reply_to_message`, as Telegram does). `None` if the bot sent no
    /// such message in that chat.
    pub fn user_reply(
        &mut self,
        chat_id: i64,
        from: i64,
        text: &str,
        reply_to: i32,
    ) -> Option<i32> {
        let bot = self.bot_json();
        let chat = self.chats.get(&chat_id)?;
        let stored = chat.messages.iter().find(|m| m.message_id == reply_to)?;
        let replied = chat.message_json(stored, &bot);
        let thread_id = stored.thread_id;
        let id = self.user_message(chat_id, from, text, thread_id);
        if let Some((_, update)) = self.queue.back_mut() {
            update["message"]["reply_to_message"] = replied;
        }
        Some(id)
    }

    /// Queues a callback query for a button of a bot message. `None` if the bot sent no
    /// such message.
    pub fn press_button(
        &mut self,
        chat_id: i64,
        from: i64,
        message_id: i32,
        data: &str,
    ) -> Option<String> {
        let bot = self.bot_json();
        let chat = self.chats.get(&chat_id)?;
        let stored = chat.messages.iter().find(|m| m.message_id == message_id)?;
        let message = chat.message_json(stored, &bot);
        let thread_id = stored.thread_id;
        self.callback_serial += 1;
        let id = format!("{}{:08}", self.bot_id.unsigned_abs(), self.callback_serial);
        self.callbacks.insert(
            id.clone(),
            Callback {
                chat_id,
                thread_id,
                answered: false,
            },
        );
        let query = json!({
            "id": id,
            "from": user_json(from),
            "message": message,
            "chat_instance": format!("{}", chat_id.unsigned_abs().wrapping_mul(7919)),
            "data": data,
        });
        self.enqueue("callback_query", query);
        Some(id)
    }

    fn enqueue(&mut self, kind: &str, payload: Value) {
        let id = self.next_update_id;
        self.next_update_id += 1;
        let mut update = json!({ "update_id": id });
        update[kind] = payload;
        self.queue.push_back((id, update));
    }

    pub fn fail_next(&mut self, method: &str, status: u16, retry_after: Option<u32>) {
        let method = canonical_method(method).unwrap_or(method).to_owned();
        self.faults.push(Fault {
            method,
            status,
            retry_after,
        });
    }

    /// Takes the first injected failure for `method`, if any.
    pub fn take_fault(&mut self, method: &str) -> Option<Failure> {
        let index = self
            .faults
            .iter()
            .position(|f| f.method.eq_ignore_ascii_case(method))?;
        let fault = self.faults.remove(index);
        Some(Failure::injected(fault.status, fault.retry_after))
    }

    pub fn reject_entities_next(&mut self) {
        self.reject_entities += 1;
    }

    // ---- getUpdates ----------------------------------------------------------------

    /// Applies getUpdates' `offset`: a positive one confirms (drops) every update with a
    /// smaller id; a negative one keeps only the last `-offset` updates.
    pub fn confirm(&mut self, offset: i64) {
        if offset > 0 {
            self.queue.retain(|(id, _)| *id >= offset);
        } else if offset < 0 {
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            while self.queue.len() > keep {
                self.queue.pop_front();
            }
        }
    }

    /// The first `limit` unconfirmed updates, recorded as served.
    pub fn take_updates(&mut self, limit: usize) -> Vec<Value> {
        let batch: Vec<(i64, Value)> = self.queue.iter().take(limit).cloned().collect();
        self.served.extend(batch.iter().map(|(id, _)| *id));
        batch.into_iter().map(|(_, u)| u).collect()
    }

    // ---- reading state for tests ---------------------------------------------------

    pub fn bot_id(&self) -> i64 {
        self.bot_id
    }

    pub fn messages_in(&self, chat_id: i64, thread_id: Option<i32>) -> Vec<Message> {
        let Some(chat) = self.chats.get(&chat_id) else {
            return Vec::new();
        };
        chat.messages
            .iter()
            .filter(|m| m.thread_id == thread_id)
            .filter_map(|m| m.public(chat_id))
            .collect()
    }

    pub fn topics(&self, chat_id: i64) -> Vec<(i32, String)> {
        self.chats
            .get(&chat_id)
            .map(|c| {
                c.topics
                    .iter()
                    .map(|t| (t.thread_id, t.name.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn my_commands(&self) -> Vec<(String, String)> {
        self.commands.clone()
    }

    // ---- the Bot API ---------------------------------------------------------------

    /// Runs one method (never getUpdates, which the parent module serves).
    pub fn dispatch(&mut self, method: &str, p: &Params) -> Handled {
        let mut chat_id = p.int("chat_id").ok().flatten();
        let mut thread_id = p.int32("message_thread_id").ok().flatten();
        let result = match method {
            "getMe" => Ok(self.me_json()),
            "getWebhookInfo" => Ok(json!({
                "url": "",
                "has_custom_certificate": false,
                "pending_update_count": self.queue.len(),
            })),
            "deleteWebhook" => {
                if p.flag("drop_pending_updates") {
                    self.queue.clear();
                }
                Ok(json!(true))
            }
            "logOut" | "close" => Ok(json!(true)),
            "sendMessage" => self.send_message(p),
            "editMessageText" => self.edit_message_text(p, &mut thread_id),
            "editMessageReplyMarkup" => self.edit_reply_markup(p, &mut thread_id),
            "deleteMessage" => self.delete_message(p, &mut thread_id),
            "answerCallbackQuery" => self.answer_callback(p, &mut chat_id, &mut thread_id),
            "createForumTopic" => self.create_topic(p, &mut thread_id),
            "editForumTopic" => self.edit_topic(p),
            "closeForumTopic" => self.set_topic_closed(p, true),
            "reopenForumTopic" => self.set_topic_closed(p, false),
            "deleteForumTopic" => self.delete_topic(p),
            "sendDocument" => self.send_document(p),
            "sendChatAction" => self.send_chat_action(p),
            "setMyCommands" => self.set_my_commands(p),
            "deleteMyCommands" => {
                if is_default_scope(p) {
                    self.commands.clear();
                }
                Ok(json!(true))
            }
            "getMyCommands" => Ok(Value::Array(
                self.commands
                    .iter()
                    .map(|(c, d)| json!({ "command": c, "description": d }))
                    .collect(),
            )),
            other => Err(Failure {
                code: 404,
                description: format!("Not Found: method {other} is not served by FakeTelegram"),
                retry_after: None,
            }),
        };
        Handled {
            result,
            chat_id,
            thread_id,
        }
    }

    fn bot_json(&self) -> Value {
        json!({
            "id": self.bot_id,
            "is_bot": true,
            "first_name": "ccrm test bot",
            "username": self.bot_username,
        })
    }

    fn me_json(&self) -> Value {
        let mut me = self.bot_json();
        me["can_join_groups"] = json!(true);
        me["can_read_all_group_messages"] = json!(true);
        me["supports_inline_queries"] = json!(false);
        me["can_connect_to_business"] = json!(false);
        me["has_main_web_app"] = json!(false);
        me
    }

    /// The chat named by `chat_id`.
    fn chat_mut(&mut self, p: &Params) -> Result<&mut ChatState, Failure> {
        let Some(raw) = p.get("chat_id") else {
            return Err(Failure::bad("chat_id is empty"));
        };
        let id = match raw {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        id.and_then(|id| self.chats.get_mut(&id))
            .ok_or_else(|| Failure::bad("chat not found"))
    }

    /// A text message of the bot's, looked up for editing.
    fn message_to_edit(&mut self, p: &Params) -> Result<(&mut ChatState, usize), Failure> {
        if p.get("inline_message_id").is_some() {
            return Err(Failure::bad(
                "inline messages are not served by FakeTelegram",
            ));
        }
        let message_id = p
            .int32("message_id")?
            .ok_or_else(|| Failure::bad("message identifier is not specified"))?;
        let chat = self.chat_mut(p)?;
        let index = chat
            .messages
            .iter()
            .position(|m| m.message_id == message_id)
            .ok_or_else(|| Failure::bad("message to edit not found"))?;
        Ok((chat, index))
    }

    /// Consumes one [`World::reject_entities_next`] if this request formats its text.
    fn injected_entity_failure(&mut self, parse_mode: Option<&str>) -> Result<(), Failure> {
        if parse_mode.is_some() && self.reject_entities > 0 {
            self.reject_entities -= 1;
            return Err(Failure::bad(
                "can't parse entities: Unsupported start tag \"injected\" at byte offset 0",
            ));
        }
        Ok(())
    }

    fn send_message(&mut self, p: &Params) -> Result<Value, Failure> {
        let bot = self.bot_json();
        let text = p.string("text")?.unwrap_or_default();
        let parse_mode = p.parse_mode()?;
        let markup = reply_markup(p)?;
        let chat = self.chat_mut(p)?;
        let thread_id = chat.thread_for_send(p)?;
        if text.trim().is_empty() {
            return Err(Failure::bad("message text is empty"));
        }
        self.injected_entity_failure(parse_mode.as_deref())?;
        let rendered = render(&text, parse_mode.as_deref())?;
        if rendered.text.trim().is_empty() {
            return Err(Failure::bad("message text is empty"));
        }
        if rendered.text.chars().count() > MAX_TEXT_CHARS {
            return Err(Failure::bad("message is too long"));
        }
        let chat = self.chat_mut(p)?;
        let message_id = chat.next_message_id();
        chat.messages.push(Stored {
            message_id,
            thread_id,
            date: unix_now(),
            edit_date: None,
            content: Content::Text {
                raw: text,
                parse_mode,
                rendered,
            },
            reply_markup: markup,
            edits: 0,
        });
        Ok(chat.last_message_json(&bot))
    }

    fn edit_message_text(
        &mut self,
        p: &Params,
        thread_id: &mut Option<i32>,
    ) -> Result<Value, Failure> {
        let bot = self.bot_json();
        let text = p.string("text")?.unwrap_or_default();
        let parse_mode = p.parse_mode()?;
        let markup = reply_markup(p)?;
        if text.trim().is_empty() {
            return Err(Failure::bad("message text is empty"));
        }
        self.injected_entity_failure(parse_mode.as_deref())?;
        let rendered = render(&text, parse_mode.as_deref())?;
        if rendered.text.trim().is_empty() {
            return Err(Failure::bad("message text is empty"));
        }
        if rendered.text.chars().count() > MAX_TEXT_CHARS {
            return Err(Failure::bad("MESSAGE_TOO_LONG"));
        }
        let (chat, index) = self.message_to_edit(p)?;
        let stored = &mut chat.messages[index];
        *thread_id = stored.thread_id;
        let Content::Text {
            raw,
            parse_mode: old_mode,
            rendered: old_rendered,
        } = &mut stored.content
        else {
            return Err(Failure::bad("there is no text in the message to edit"));
        };
        // Telegram compares what the user would see: text, entities and keyboard.
        if *old_rendered == rendered && stored.reply_markup == markup {
            return Err(Failure::bad_verbatim(NOT_MODIFIED));
        }
        *raw = text;
        *old_mode = parse_mode;
        *old_rendered = rendered;
        // Like the real API: an edit without reply_markup removes the keyboard.
        stored.reply_markup = markup;
        stored.edits += 1;
        stored.edit_date = Some(unix_now());
        Ok(chat.message_json(&chat.messages[index], &bot))
    }

    fn edit_reply_markup(
        &mut self,
        p: &Params,
        thread_id: &mut Option<i32>,
    ) -> Result<Value, Failure> {
        let bot = self.bot_json();
        let markup = reply_markup(p)?;
        let (chat, index) = self.message_to_edit(p)?;
        let stored = &mut chat.messages[index];
        *thread_id = stored.thread_id;
        if stored.reply_markup == markup {
            return Err(Failure::bad_verbatim(NOT_MODIFIED));
        }
        stored.reply_markup = markup;
        stored.edits += 1;
        stored.edit_date = Some(unix_now());
        Ok(chat.message_json(&chat.messages[index], &bot))
    }

    fn delete_message(
        &mut self,
        p: &Params,
        thread_id: &mut Option<i32>,
    ) -> Result<Value, Failure> {
        let message_id = p
            .int32("message_id")?
            .ok_or_else(|| Failure::bad("message identifier is not specified"))?;
        let chat = self.chat_mut(p)?;
        let index = chat
            .messages
            .iter()
            .position(|m| m.message_id == message_id)
            .ok_or_else(|| Failure::bad("message to delete not found"))?;
        *thread_id = chat.messages.remove(index).thread_id;
        Ok(json!(true))
    }

    fn answer_callback(
        &mut self,
        p: &Params,
        chat_id: &mut Option<i64>,
        thread_id: &mut Option<i32>,
    ) -> Result<Value, Failure> {
        let invalid =
            || Failure::bad("query is too old and response timeout expired or query id is invalid");
        let id = p.string("callback_query_id")?.ok_or_else(invalid)?;
        if p.string("text")?.is_some_and(|t| t.chars().count() > 200) {
            return Err(Failure::bad("MESSAGE_TOO_LONG"));
        }
        let callback = self.callbacks.get_mut(&id).ok_or_else(invalid)?;
        *chat_id = Some(callback.chat_id);
        *thread_id = callback.thread_id;
        if callback.answered {
            return Err(invalid());
        }
        callback.answered = true;
        Ok(json!(true))
    }

    fn create_topic(&mut self, p: &Params, thread_id: &mut Option<i32>) -> Result<Value, Failure> {
        let creator = self.bot_json();
        let name = p.string("name")?.unwrap_or_default();
        let icon_color = match p.int("icon_color")? {
            None => DEFAULT_TOPIC_COLOR,
            Some(c) => u32::try_from(c).map_err(|_| Failure::bad("TOPIC_COLOR_INVALID"))?,
        };
        let chat = self.chat_mut(p)?;
        chat.require_forum()?;
        let length = name.chars().count();
        if length == 0 || length > MAX_TOPIC_NAME_CHARS {
            return Err(Failure::bad("TOPIC_NAME_INVALID"));
        }
        let id = chat.next_message_id();
        chat.topics.push(Topic {
            thread_id: id,
            name: name.clone(),
            icon_color,
            closed: false,
            creator,
            date: unix_now(),
        });
        *thread_id = Some(id);
        Ok(json!({ "message_thread_id": id, "name": name, "icon_color": icon_color }))
    }

    fn edit_topic(&mut self, p: &Params) -> Result<Value, Failure> {
        let name = p.string("name")?;
        let chat = self.chat_mut(p)?;
        chat.require_forum()?;
        let topic = chat.topic_mut(p)?;
        let Some(name) = name else {
            return Err(Failure::bad("TOPIC_NOT_MODIFIED"));
        };
        let length = name.chars().count();
        if length == 0 || length > MAX_TOPIC_NAME_CHARS {
            return Err(Failure::bad("TOPIC_NAME_INVALID"));
        }
        if topic.name == name {
            return Err(Failure::bad("TOPIC_NOT_MODIFIED"));
        }
        topic.name = name;
        Ok(json!(true))
    }

    fn set_topic_closed(&mut self, p: &Params, closed: bool) -> Result<Value, Failure> {
        let chat = self.chat_mut(p)?;
        chat.require_forum()?;
        let topic = chat.topic_mut(p)?;
        if topic.closed == closed {
            return Err(Failure::bad("TOPIC_NOT_MODIFIED"));
        }
        topic.closed = closed;
        Ok(json!(true))
    }

    fn delete_topic(&mut self, p: &Params) -> Result<Value, Failure> {
        let chat = self.chat_mut(p)?;
        chat.require_forum()?;
        let thread_id = chat.topic_mut(p)?.thread_id;
        chat.topics.retain(|t| t.thread_id != thread_id);
        chat.messages.retain(|m| m.thread_id != Some(thread_id));
        Ok(json!(true))
    }

    fn send_document(&mut self, p: &Params) -> Result<Value, Failure> {
        let bot = self.bot_json();
        let caption_raw = p.string("caption")?.filter(|c| !c.is_empty());
        let parse_mode = p.parse_mode()?;
        let markup = reply_markup(p)?;
        let chat = self.chat_mut(p)?;
        let thread_id = chat.thread_for_send(p)?;
        let upload = match (p.get("document"), p.upload("document")) {
            (_, Some(upload)) => upload.clone(),
            (None, None) => return Err(Failure::bad("there is no document in the request")),
            (Some(_), None) => {
                return Err(Failure::bad("wrong file identifier/HTTP URL specified"));
            }
        };
        if upload.bytes.is_empty() {
            return Err(Failure::bad("file must be non-empty"));
        }
        let caption = match &caption_raw {
            None => None,
            Some(c) => {
                let rendered = render(c, parse_mode.as_deref())?;
                if rendered.text.chars().count() > MAX_CAPTION_CHARS {
                    return Err(Failure::bad("message caption is too long"));
                }
                Some(rendered)
            }
        };
        self.file_serial += 1;
        let serial = self.file_serial;
        let chat_id = p.int("chat_id")?.unwrap_or_default();
        let chat = self.chat_mut(p)?;
        let message_id = chat.next_message_id();
        chat.messages.push(Stored {
            message_id,
            thread_id,
            date: unix_now(),
            edit_date: None,
            content: Content::Document {
                file_id: format!("BQACAgIAAxkDAAI{serial:08}"),
                file_unique_id: format!("AgAD{serial:06}"),
                file_name: upload.file_name.clone(),
                size: upload.bytes.len(),
                caption,
            },
            reply_markup: markup,
            edits: 0,
        });
        let result = chat.last_message_json(&bot);
        self.documents.push(Document {
            chat_id,
            thread_id,
            message_id,
            file_name: upload.file_name,
            bytes: upload.bytes,
            caption: caption_raw,
        });
        Ok(result)
    }

    fn send_chat_action(&mut self, p: &Params) -> Result<Value, Failure> {
        let action = p.string("action")?.unwrap_or_default();
        let chat = self.chat_mut(p)?;
        chat.thread_for_send(p)?;
        if action.is_empty() {
            return Err(Failure::bad("wrong parameter action in request"));
        }
        Ok(json!(true))
    }

    fn set_my_commands(&mut self, p: &Params) -> Result<Value, Failure> {
        let Some(Value::Array(items)) = p.structured("commands", "commands")? else {
            return Err(Failure::bad("parameter \"commands\" is required"));
        };
        if items.len() > 100 {
            return Err(Failure::bad("BOT_COMMANDS_TOO_MUCH"));
        }
        let mut commands = Vec::with_capacity(items.len());
        for item in &items {
            let command = item.get("command").and_then(Value::as_str).unwrap_or("");
            let description = item
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let command_ok = (1..=32).contains(&command.len())
                && command
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !command_ok {
                return Err(Failure::bad("BOT_COMMAND_INVALID"));
            }
            if !(1..=256).contains(&description.chars().count()) {
                return Err(Failure::bad("command description must be non-empty"));
            }
            commands.push((command.to_owned(), description.to_owned()));
        }
        if is_default_scope(p) {
            self.commands = commands;
        }
        Ok(json!(true))
    }
}

impl ChatState {
    fn new(id: i64, kind: ChatKind) -> Self {
        Self {
            id,
            kind,
            last_message_id: 0,
            messages: Vec::new(),
            topics: Vec::new(),
        }
    }

    fn next_message_id(&mut self) -> i32 {
        self.last_message_id += 1;
        self.last_message_id
    }

    fn is_forum(&self) -> bool {
        matches!(self.kind, ChatKind::Supergroup { forum: true, .. })
    }

    fn require_forum(&self) -> Result<(), Failure> {
        if self.is_forum() {
            Ok(())
        } else {
            Err(Failure::bad("the chat is not a forum"))
        }
    }

    /// The topic named by `message_thread_id`.
    fn topic_mut(&mut self, p: &Params) -> Result<&mut Topic, Failure> {
        let id = p
            .int32("message_thread_id")?
            .ok_or_else(|| Failure::bad("message thread not found"))?;
        self.topics
            .iter_mut()
            .find(|t| t.thread_id == id)
            .ok_or_else(|| Failure::bad("message thread not found"))
    }

    /// The thread a new message goes to, checked like the real API does.
    fn thread_for_send(&self, p: &Params) -> Result<Option<i32>, Failure> {
        let Some(thread_id) = p.int32("message_thread_id")? else {
            return Ok(None);
        };
        match &self.kind {
            // Private chats with topics exist; the fake takes the id as given.
            ChatKind::Private { .. } => Ok(Some(thread_id)),
            ChatKind::Supergroup { forum: false, .. } => {
                Err(Failure::bad("message thread not found"))
            }
            ChatKind::Supergroup { forum: true, .. } => {
                let topic = self
                    .topics
                    .iter()
                    .find(|t| t.thread_id == thread_id)
                    .ok_or_else(|| Failure::bad("message thread not found"))?;
                if topic.closed {
                    return Err(Failure::bad("TOPIC_CLOSED"));
                }
                Ok(Some(thread_id))
            }
        }
    }

    fn json(&self) -> Value {
        match &self.kind {
            ChatKind::Private { user_id } => json!({
                "id": self.id,
                "type": "private",
                "first_name": user_first_name(*user_id),
                "username": user_username(*user_id),
            }),
            ChatKind::Supergroup { title, forum } => {
                let mut chat = json!({ "id": self.id, "type": "supergroup", "title": title });
                if *forum {
                    chat["is_forum"] = json!(true);
                }
                chat
            }
        }
    }

    /// Adds `message_thread_id`, and in forums `is_topic_message` and the topic's
    /// creation message as `reply_to_message`, as Telegram does for topic messages.
    fn place_in_thread(&self, message: &mut Value, thread_id: Option<i32>) {
        let Some(thread_id) = thread_id else {
            return;
        };
        message["message_thread_id"] = json!(thread_id);
        if !self.is_forum() {
            return;
        }
        message["is_topic_message"] = json!(true);
        if let Some(topic) = self.topics.iter().find(|t| t.thread_id == thread_id) {
            message["reply_to_message"] = json!({
                "message_id": topic.thread_id,
                "from": topic.creator,
                "chat": self.json(),
                "date": topic.date,
                "message_thread_id": topic.thread_id,
                "is_topic_message": true,
                "forum_topic_created": { "name": topic.name, "icon_color": topic.icon_color },
            });
        }
    }

    /// A bot message as the Bot API returns it.
    fn message_json(&self, m: &Stored, bot: &Value) -> Value {
        let mut message = json!({
            "message_id": m.message_id,
            "from": bot,
            "chat": self.json(),
            "date": m.date,
        });
        self.place_in_thread(&mut message, m.thread_id);
        match &m.content {
            Content::Text { rendered, .. } => {
                message["text"] = json!(rendered.text);
                if !rendered.entities.is_empty() {
                    message["entities"] = json!(rendered.entities);
                }
            }
            Content::Document {
                file_id,
                file_unique_id,
                file_name,
                size,
                caption,
            } => {
                let mut document = json!({
                    "file_id": file_id,
                    "file_unique_id": file_unique_id,
                    "file_size": size,
                });
                if !file_name.is_empty() {
                    document["file_name"] = json!(file_name);
                }
                message["document"] = document;
                if let Some(caption) = caption {
                    message["caption"] = json!(caption.text);
                    if !caption.entities.is_empty() {
                        message["caption_entities"] = json!(caption.entities);
                    }
                }
            }
        }
        if let Some(markup) = &m.reply_markup {
            message["reply_markup"] = markup.clone();
        }
        if let Some(edit_date) = m.edit_date {
            message["edit_date"] = json!(edit_date);
        }
        message
    }

    fn last_message_json(&self, bot: &Value) -> Value {
        match self.messages.last() {
            Some(m) => self.message_json(m, bot),
            None => Value::Null,
        }
    }
}

impl Stored {
    /// The test-facing view of a text message (documents have none).
    fn public(&self, chat_id: i64) -> Option<Message> {
        let Content::Text {
            raw,
            parse_mode,
            rendered,
        } = &self.content
        else {
            return None;
        };
        Some(Message {
            message_id: self.message_id,
            chat_id,
            thread_id: self.thread_id,
            text: raw.clone(),
            parse_mode: parse_mode.clone(),
            reply_markup: self.reply_markup.clone(),
            edits: self.edits,
            visible_text: rendered.text.clone(),
            entities: rendered.entities.clone(),
        })
    }
}

fn render(text: &str, parse_mode: Option<&str>) -> Result<Rendered, Failure> {
    markup::render(text, parse_mode).map_err(|e| Failure::bad_verbatim(&e.description()))
}

/// The `reply_markup` of a request, checked. Returns the inline keyboard to show on the
/// message; other keyboards (reply keyboards, force_reply, remove) are accepted and not
/// shown, as on a real message.
fn reply_markup(p: &Params) -> Result<Option<Value>, Failure> {
    let Some(markup) = p.structured("reply_markup", "reply keyboard markup")? else {
        return Ok(None);
    };
    let Some(obj) = markup.as_object() else {
        return Err(Failure::bad(
            "can't parse reply keyboard markup JSON object",
        ));
    };
    let Some(rows) = obj.get("inline_keyboard") else {
        let known = ["keyboard", "remove_keyboard", "force_reply"];
        if known.iter().any(|k| obj.contains_key(*k)) {
            return Ok(None);
        }
        return Err(Failure::bad(
            "can't parse reply keyboard markup JSON object",
        ));
    };
    let Some(rows) = rows.as_array() else {
        return Err(Failure::bad("field \"inline_keyboard\" must be an Array"));
    };
    for row in rows {
        let Some(buttons) = row.as_array() else {
            return Err(Failure::bad(
                "can't parse inline keyboard button: InlineKeyboardButton must be an Object",
            ));
        };
        for button in buttons {
            check_button(button)?;
        }
    }
    Ok(Some(json!({ "inline_keyboard": rows })))
}

fn check_button(button: &Value) -> Result<(), Failure> {
    let parse =
        |detail: &str| Failure::bad(format!("can't parse inline keyboard button: {detail}"));
    let Some(obj) = button.as_object() else {
        return Err(parse("InlineKeyboardButton must be an Object"));
    };
    match obj.get("text").and_then(Value::as_str) {
        Some(t) if !t.trim().is_empty() => {}
        Some(_) => return Err(Failure::bad("BUTTON_TEXT_INVALID")),
        None => return Err(parse("Field \"text\" must be of type String")),
    }
    if let Some(data) = obj.get("callback_data") {
        let data = data.as_str().unwrap_or("");
        if data.is_empty() || data.len() > MAX_CALLBACK_DATA_BYTES {
            return Err(Failure::bad("BUTTON_DATA_INVALID"));
        }
        return Ok(());
    }
    if let Some(url) = obj.get("url") {
        let url = url.as_str().unwrap_or("");
        let ok = ["http://", "https://", "tg://"]
            .iter()
            .any(|s| url.starts_with(s) && url.len() > s.len())
            && !url.contains(char::is_whitespace);
        if !ok {
            return Err(Failure::bad("BUTTON_URL_INVALID"));
        }
        return Ok(());
    }
    let other_kinds = [
        "login_url",
        "web_app",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ];
    if other_kinds.iter().any(|k| obj.contains_key(*k)) {
        return Ok(());
    }
    Err(parse("Text buttons are unallowed in the inline keyboard"))
}

/// A `mention` entity for every `@username` in `text` (5 to 32 letters, digits or `_`), as
/// Telegram reports them.
fn mention_entities(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut offset = 0; // UTF-16 units before `i`
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if chars[i] == '@' && starts_word {
            let name_len = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            if (5..=32).contains(&name_len) {
                out.push(json!({
                    "type": "mention",
                    "offset": offset,
                    "length": name_len + 1,
                }));
                offset += name_len + 1;
                i += name_len + 1;
                continue;
            }
        }
        offset += chars[i].len_utf16();
        i += 1;
    }
    out
}

/// True when a command request has no scope or the default one.
fn is_default_scope(p: &Params) -> bool {
    match p.structured("scope", "scope") {
        Ok(None) => true,
        Ok(Some(scope)) => scope.get("type").and_then(Value::as_str) == Some("default"),
        Err(_) => false,
    }
}

fn user_first_name(id: i64) -> String {
    format!("Tester {id}")
}

fn user_username(id: i64) -> String {
    format!("tester{id}")
}

/// A (human) Telegram user.
fn user_json(id: i64) -> Value {
    json!({
        "id": id,
        "is_bot": false,
        "first_name": user_first_name(id),
        "username": user_username(id),
        "language_code": "en",
    })
}

/// Seconds since the epoch, the unit of `date`.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
