//! The fake's world: the guild's channels and threads, DM channels, members, every
//! message (users', the bot's, interaction responses and follow-ups), interactions,
//! registered commands, injected faults and the record of calls. Every REST endpoint is a
//! plain function of the world and the request ([`World::handle`]); what users do
//! ([`World::user_message`], and the interactions in `interactions`) changes the world
//! and emits gateway dispatches through [`Gateway`], filtered by the session's intents.
//! JSON objects are built in `shapes`; the records and constants are in `model`, refused
//! requests in `error`; the HTTP side lives in the parent module, the WebSocket side in
//! `gateway` (protocol) and `connection` (one task per socket).
//!
//! Served here: the gateway URL, the current user and application, guild members
//! (`GET /guilds/{guild}/members/{user}`: every user is a member), channels (get, thread
//! edits), DMs (`POST /users/@me/channels`), messages (create with JSON or multipart,
//! get, list newest first with `limit`/`before`/`after`, edit, delete; `nonce` with
//! `enforce_nonce` returns the message a repeated nonce created), typing, threads
//! (with or without a starter message, thread members), and command bulk overwrites. A thread started from a
//! message takes the message's id, as on Discord; a message in an archived thread
//! unarchives it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::error::ApiError;
use super::gateway::Gateway;
use super::model::{
    Channel, ChannelKind, DISCORD_EPOCH_MS, FLAG_COMPONENTS_V2, FLAG_EPHEMERAL, FLAG_HAS_THREAD,
    FLAG_LOADING, FLAG_SUPPRESS_EMBEDS, FLAG_SUPPRESS_NOTIFICATIONS, InteractionRec,
    MAX_FILE_BYTES, MAX_FILES, MemberInfo, Stored, StoredFile, TYPE_DEFAULT, TYPE_REPLY,
};
use super::validate::{self, FormErrors, MessageDraft, opt_int, opt_string};
use super::{APPLICATION_ID, BOT_USER_ID, Call, GUILD_ID, InteractionState, Message, intents};

/// A file part of a multipart request.
#[derive(Debug, Clone)]
pub(super) struct Upload {
    /// The part name, e.g. `files[0]`.
    pub field: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// A REST request as the world sees it.
#[derive(Debug, Clone)]
pub(super) struct ApiRequest {
    /// Upper case, e.g. `POST`.
    pub method: String,
    /// Without `/api/v10` and without the query, e.g. `/channels/1/messages`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The JSON body (`payload_json` for multipart); `Null` if there was none.
    pub body: Value,
    pub files: Vec<Upload>,
}

impl ApiRequest {
    pub(super) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What an endpoint did: status and body (`Null` for 204), and the channel it acted on.
pub(super) struct Handled {
    pub result: Result<(u16, Value), ApiError>,
    pub channel: Option<u64>,
}

/// An injected failure waiting for its route.
struct Fault {
    route: String,
    status: u16,
    retry_after: Option<f64>,
}

/// Everything the fake knows. Owned by one std `Mutex` in the parent module.
/// How long Discord remembers a nonce for `enforce_nonce` ("the past few minutes").
const NONCE_WINDOW: Duration = Duration::from_secs(5 * 60);

pub(super) struct World {
    /// `http://127.0.0.1:PORT`.
    pub(super) base_url: String,
    pub calls: Vec<Call>,
    pub(super) channels: BTreeMap<u64, Channel>,
    /// User id → DM channel id.
    pub(super) dms: HashMap<u64, u64>,
    pub(super) members: HashMap<u64, MemberInfo>,
    pub(super) messages: BTreeMap<u64, Stored>,
    pub(super) interactions: BTreeMap<u64, InteractionRec>,
    pub(super) guild_commands: Vec<Value>,
    pub(super) global_commands: Vec<Value>,
    faults: Vec<Fault>,
    pub gw: Gateway,
    pub(super) last_id: u64,
    pub interaction_deadline: Duration,
    /// Set when the last handle is dropped.
    pub closed: bool,
    /// Nonces of the bot's created messages: nonce → (message, when), for `enforce_nonce`.
    pub(super) nonces: HashMap<String, (u64, SystemTime)>,
    /// Downloads of users' attachments ([`super::uploads`]).
    pub(super) attachment_downloads: usize,
}

impl World {
    pub fn new(base_url: String, gw: Gateway) -> Self {
        Self {
            base_url,
            calls: Vec::new(),
            channels: BTreeMap::new(),
            dms: HashMap::new(),
            members: HashMap::new(),
            messages: BTreeMap::new(),
            interactions: BTreeMap::new(),
            guild_commands: Vec::new(),
            global_commands: Vec::new(),
            faults: Vec::new(),
            gw,
            last_id: 0,
            interaction_deadline: Duration::from_secs(3),
            closed: false,
            nonces: HashMap::new(),
            attachment_downloads: 0,
        }
    }

    /// A new snowflake: the current time since Discord's epoch in the top bits, strictly
    /// increasing.
    pub(super) fn next_id(&mut self) -> u64 {
        let ms = unix_ms().saturating_sub(DISCORD_EPOCH_MS);
        self.last_id = (ms << 22).max(self.last_id + 1);
        self.last_id
    }

    pub(super) fn gateway_url(&self) -> String {
        format!("{}/gateway", self.base_url.replacen("http://", "ws://", 1))
    }

    // ---- test-side setup -------------------------------------------------------------

    pub fn text_channel(&mut self, name: &str) -> u64 {
        let id = self.next_id();
        self.channels.insert(
            id,
            Channel {
                id,
                name: name.to_owned(),
                kind: ChannelKind::Text,
                last_message_id: None,
                message_count: 0,
            },
        );
        id
    }

    pub fn dm_channel(&mut self, user: u64) -> u64 {
        if let Some(id) = self.dms.get(&user) {
            return *id;
        }
        let id = self.next_id();
        self.channels.insert(
            id,
            Channel {
                id,
                name: String::new(),
                kind: ChannelKind::Dm { user },
                last_message_id: None,
                message_count: 0,
            },
        );
        self.dms.insert(user, id);
        id
    }

    pub fn member(&mut self, user: u64, name: &str, roles: &[u64]) {
        self.members.insert(
            user,
            MemberInfo {
                name: name.to_owned(),
                nick: None,
                roles: roles.to_vec(),
                joined: SystemTime::now(),
            },
        );
    }

    pub fn set_nick(&mut self, user: u64, nick: Option<&str>) {
        let member = self.members.entry(user).or_insert_with(|| MemberInfo {
            name: format!("user{user}"),
            nick: None,
            roles: Vec::new(),
            joined: SystemTime::now(),
        });
        member.nick = nick.map(str::to_owned);
    }

    pub fn fail_next(&mut self, route: &str, status: u16, retry_after: Option<f64>) {
        self.faults.push(Fault {
            route: normalize_route(route),
            status,
            retry_after,
        });
    }

    /// Takes the first injected failure for `route` (already templated), if any.
    pub fn take_fault(&mut self, route: &str) -> Option<ApiError> {
        let index = self.faults.iter().position(|f| f.route == route)?;
        let fault = self.faults.remove(index);
        Some(ApiError::injected(fault.status, fault.retry_after))
    }

    // ---- what users do ---------------------------------------------------------------

    /// A user's message; `Err` says why a real user could not send it.
    pub fn user_message(&mut self, channel: u64, user: u64, content: &str) -> Result<u64, String> {
        if user == 0 {
            return Err("user id 0 is not a snowflake".to_owned());
        }
        let ch = self
            .channels
            .get(&channel)
            .ok_or_else(|| format!("no channel {channel} (set it up first)"))?;
        if let ChannelKind::Dm { user: owner } = ch.kind
            && owner != user
        {
            return Err(format!(
                "channel {channel} is the DM with user {owner}, not {user}"
            ));
        }
        if let ChannelKind::Thread {
            archived: true,
            locked: true,
            ..
        } = ch.kind
        {
            return Err(format!("thread {channel} is archived and locked"));
        }
        if validate::utf16_len(content) > validate::MAX_CONTENT || content.trim().is_empty() {
            return Err("a user message has 1 to 2000 characters".to_owned());
        }
        self.unarchive(channel);
        let (mentions, mention_roles, mention_everyone) = resolve_mentions(content, None, None);
        let id = self.next_id();
        let stored = Stored {
            id,
            channel,
            author: user,
            kind: TYPE_DEFAULT,
            content: content.to_owned(),
            embeds: Vec::new(),
            components: Vec::new(),
            attachments: Vec::new(),
            flags: 0,
            tts: false,
            mentions,
            mention_roles,
            mention_everyone,
            reference: None,
            interaction: None,
            thread: None,
            edits: 0,
            created_at: SystemTime::now(),
            edited_at: None,
        };
        self.insert_message(stored);
        Ok(id)
    }

    pub(super) fn insert_message(&mut self, stored: Stored) {
        let (id, channel) = (stored.id, stored.channel);
        let ephemeral = stored.flags & FLAG_EPHEMERAL != 0;
        self.messages.insert(id, stored);
        if !ephemeral && let Some(ch) = self.channels.get_mut(&channel) {
            ch.last_message_id = Some(id);
            ch.message_count += 1;
        }
        if !ephemeral {
            self.dispatch_message("MESSAGE_CREATE", id);
        }
    }

    /// MESSAGE_CREATE/MESSAGE_UPDATE for a message, filtered by the session's intents:
    /// guild messages need GUILD_MESSAGES, DMs DIRECT_MESSAGES; without MESSAGE_CONTENT,
    /// guild messages arrive with empty content, embeds, attachments and components
    /// unless the bot wrote them or is mentioned.
    pub(super) fn dispatch_message(&mut self, t: &str, id: u64) {
        let Some(session_intents) = self.gw.intents() else {
            return;
        };
        let Some(stored) = self.messages.get(&id) else {
            return;
        };
        let Some(ch) = self.channels.get(&stored.channel) else {
            return;
        };
        let needed = if ch.in_guild() {
            intents::GUILD_MESSAGES
        } else {
            intents::DIRECT_MESSAGES
        };
        if session_intents & needed == 0 {
            return;
        }
        let mut d = self.message_json(stored, true);
        let readable = session_intents & intents::MESSAGE_CONTENT != 0
            || !ch.in_guild()
            || stored.author == BOT_USER_ID
            || stored.mentions.contains(&BOT_USER_ID);
        if !readable {
            d["content"] = json!("");
            d["embeds"] = json!([]);
            d["attachments"] = json!([]);
            d["components"] = json!([]);
        }
        self.gw.dispatch(t, d, None);
    }

    pub(super) fn dispatch_delete(&mut self, id: u64, channel: u64) {
        let Some(session_intents) = self.gw.intents() else {
            return;
        };
        let Some(ch) = self.channels.get(&channel) else {
            return;
        };
        let needed = if ch.in_guild() {
            intents::GUILD_MESSAGES
        } else {
            intents::DIRECT_MESSAGES
        };
        if session_intents & needed == 0 {
            return;
        }
        let mut d = json!({ "id": id.to_string(), "channel_id": channel.to_string() });
        if ch.in_guild() {
            d["guild_id"] = json!(GUILD_ID.to_string());
        }
        self.gw.dispatch("MESSAGE_DELETE", d, None);
    }

    /// THREAD_CREATE/THREAD_UPDATE (GUILDS intent).
    pub(super) fn dispatch_thread(&mut self, t: &str, id: u64, newly_created: bool) {
        let Some(session_intents) = self.gw.intents() else {
            return;
        };
        if session_intents & intents::GUILDS == 0 {
            return;
        }
        let Some(ch) = self.channels.get(&id) else {
            return;
        };
        let mut d = self.channel_json(ch);
        if newly_created {
            d["newly_created"] = json!(true);
        }
        self.gw.dispatch(t, d, None);
    }

    // ---- reading state for tests -----------------------------------------------------

    pub fn messages_in(&self, channel: u64) -> Vec<Message> {
        self.messages
            .values()
            .filter(|m| m.channel == channel)
            .map(Stored::public)
            .collect()
    }

    pub fn message(&self, id: u64) -> Option<Message> {
        self.messages.get(&id).map(Stored::public)
    }

    pub fn threads(&self, parent: u64) -> Vec<(u64, String)> {
        self.channels
            .values()
            .filter(|c| matches!(c.kind, ChannelKind::Thread { parent: p, .. } if p == parent))
            .map(|c| (c.id, c.name.clone()))
            .collect()
    }

    pub fn interaction(&self, id: u64) -> Option<InteractionState> {
        self.interactions.get(&id).map(InteractionRec::public)
    }

    pub fn commands(&self, guild: Option<u64>) -> Vec<Value> {
        match guild {
            Some(GUILD_ID) => self.guild_commands.clone(),
            Some(_) => Vec::new(),
            None => self.global_commands.clone(),
        }
    }

    // ---- REST ------------------------------------------------------------------------

    /// Runs one request (auth and injected faults were handled by the caller).
    pub fn handle(&mut self, req: &ApiRequest) -> Handled {
        let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        let method = req.method.as_str();
        let mut channel = None;
        let result = self.route(method, &segments, req, &mut channel);
        Handled { result, channel }
    }

    /// The channel a path acts on, without running it: `/channels/{id}/...`, or the
    /// channel of the interaction behind `/interactions/{id}/...` and
    /// `/webhooks/{app}/{token}/...`.
    pub fn channel_of(&self, path: &str) -> Option<u64> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["channels", c, ..] => c.parse().ok(),
            ["interactions", i, ..] => i
                .parse()
                .ok()
                .and_then(|i| self.interactions.get(&i))
                .map(|r| r.channel),
            ["webhooks", _, token, ..] => self
                .interactions
                .values()
                .find(|r| r.token == *token)
                .map(|r| r.channel),
            _ => None,
        }
    }

    pub(super) fn route(
        &mut self,
        method: &str,
        segments: &[&str],
        req: &ApiRequest,
        channel: &mut Option<u64>,
    ) -> Result<(u16, Value), ApiError> {
        let allowed = |methods: &[&str]| {
            if methods.contains(&method) {
                Ok(())
            } else {
                Err(ApiError::method_not_allowed())
            }
        };
        match segments {
            ["gateway"] => {
                allowed(&["GET"])?;
                Ok((200, json!({ "url": self.gateway_url() })))
            }
            ["gateway", "bot"] => {
                allowed(&["GET"])?;
                let used = u64::try_from(self.gw.identifies).unwrap_or(u64::MAX);
                Ok((
                    200,
                    json!({
                        "url": self.gateway_url(),
                        "shards": 1,
                        "session_start_limit": {
                            "total": 1000,
                            "remaining": 1000_u64.saturating_sub(used),
                            "reset_after": 86_400_000,
                            "max_concurrency": 1,
                        },
                    }),
                ))
            }
            ["users", "@me"] => {
                allowed(&["GET"])?;
                Ok((200, self.current_user_json()))
            }
            ["oauth2", "applications", "@me"] | ["applications", "@me"] => {
                allowed(&["GET"])?;
                Ok((200, self.application_json()))
            }
            ["applications", app, "commands"] => {
                allowed(&["GET", "PUT"])?;
                self.commands_endpoint(method, app, None, req)
            }
            ["applications", app, "guilds", guild, "commands"] => {
                allowed(&["GET", "PUT"])?;
                self.commands_endpoint(method, app, Some(guild), req)
            }
            ["channels", c] => {
                allowed(&["GET", "PATCH"])?;
                let id = snowflake("channel_id", c)?;
                *channel = Some(id);
                match method {
                    "GET" => {
                        let ch = self
                            .channels
                            .get(&id)
                            .ok_or_else(ApiError::unknown_channel)?;
                        Ok((200, self.channel_json(ch)))
                    }
                    _ => self.edit_channel(id, &req.body),
                }
            }
            ["guilds", guild, "members", user] => {
                allowed(&["GET"])?;
                if snowflake("guild_id", guild)? != GUILD_ID {
                    return Err(ApiError::new(404, 10004, "Unknown Guild"));
                }
                let user = snowflake("user_id", user)?;
                if user == 0 {
                    return Err(ApiError::new(404, 10013, "Unknown User"));
                }
                Ok((200, self.member_json(user, true, false)))
            }
            ["users", "@me", "channels"] => {
                allowed(&["POST"])?;
                self.open_dm(&req.body, channel)
            }
            ["channels", c, "thread-members", user] => {
                allowed(&["PUT", "DELETE"])?;
                let id = snowflake("channel_id", c)?;
                *channel = Some(id);
                if *user != "@me" {
                    snowflake("user_id", user)?;
                }
                let ch = self
                    .channels
                    .get(&id)
                    .ok_or_else(ApiError::unknown_channel)?;
                if !matches!(ch.kind, ChannelKind::Thread { .. }) {
                    return Err(ApiError::wrong_channel_type());
                }
                Ok((204, Value::Null))
            }
            ["channels", c, "typing"] => {
                allowed(&["POST"])?;
                let id = snowflake("channel_id", c)?;
                *channel = Some(id);
                self.channels
                    .get(&id)
                    .ok_or_else(ApiError::unknown_channel)?;
                Ok((204, Value::Null))
            }
            ["channels", c, "messages"] => {
                allowed(&["GET", "POST"])?;
                let id = snowflake("channel_id", c)?;
                *channel = Some(id);
                match method {
                    "GET" => self.list_messages(id, req),
                    _ => self.create_message(id, req),
                }
            }
            ["channels", c, "messages", m] => {
                allowed(&["GET", "PATCH", "DELETE"])?;
                let id = snowflake("channel_id", c)?;
                *channel = Some(id);
                let mid = snowflake("message_id", m)?;
                match method {
                    "GET" => {
                        let stored = self.channel_message(id, mid)?;
                        Ok((200, self.message_json(stored, false)))
                    }
                    "PATCH" => self.edit_channel_message(id, mid, req),
                    _ => self.delete_channel_message(id, mid),
                }
            }
            ["channels", c, "threads"] => {
                allowed(&["POST"])?;
                let id = snowflake("channel_id", c)?;
                *channel = Some(id);
                self.create_thread(id, None, &req.body)
            }
            ["channels", c, "messages", m, "threads"] => {
                allowed(&["POST"])?;
                let id = snowflake("channel_id", c)?;
                *channel = Some(id);
                let mid = snowflake("message_id", m)?;
                self.create_thread(id, Some(mid), &req.body)
            }
            ["interactions", i, token, "callback"] => {
                allowed(&["POST"])?;
                let id = snowflake("interaction_id", i)?;
                *channel = self.interactions.get(&id).map(|r| r.channel);
                self.interaction_callback(id, token, req)
            }
            ["webhooks", app, token] => {
                allowed(&["POST"])?;
                let id = self.interaction_by_token(app, token)?;
                *channel = self.interactions.get(&id).map(|r| r.channel);
                self.create_followup(id, req)
            }
            ["webhooks", app, token, "messages", m] => {
                allowed(&["GET", "PATCH", "DELETE"])?;
                let id = self.interaction_by_token(app, token)?;
                *channel = self.interactions.get(&id).map(|r| r.channel);
                self.webhook_message(id, m, req)
            }
            _ => Err(ApiError::not_found()),
        }
    }

    // ---- commands --------------------------------------------------------------------

    pub(super) fn commands_endpoint(
        &mut self,
        method: &str,
        app: &str,
        guild: Option<&str>,
        req: &ApiRequest,
    ) -> Result<(u16, Value), ApiError> {
        let app = snowflake("application_id", app)?;
        if app != APPLICATION_ID {
            return Err(ApiError::new(403, 50001, "Missing Access"));
        }
        let guild = guild.map(|g| snowflake("guild_id", g)).transpose()?;
        if guild.is_some_and(|g| g != GUILD_ID) {
            return Err(ApiError::new(404, 10004, "Unknown Guild"));
        }
        if method == "GET" {
            return Ok((200, Value::Array(self.commands(guild))));
        }
        let list = validate::commands(&req.body)?;
        let existing = if guild.is_some() {
            self.guild_commands.clone()
        } else {
            self.global_commands.clone()
        };
        let mut out = Vec::new();
        for c in list {
            let kind = c.get("type").and_then(Value::as_i64).unwrap_or(1);
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let previous = existing.iter().find(|e| {
                e.get("name").and_then(Value::as_str) == Some(name.as_str())
                    && e.get("type").and_then(Value::as_i64) == Some(kind)
            });
            let id = match previous.and_then(|p| p.get("id")).and_then(Value::as_str) {
                Some(id) => id.to_owned(),
                None => self.next_id().to_string(),
            };
            let mut command = json!({
                "id": id,
                "application_id": APPLICATION_ID.to_string(),
                "version": self.next_id().to_string(),
                "type": kind,
                "name": name,
                "name_localizations": c.get("name_localizations").cloned().unwrap_or(Value::Null),
                "description": c.get("description").cloned().unwrap_or(json!("")),
                "description_localizations":
                    c.get("description_localizations").cloned().unwrap_or(Value::Null),
                "default_member_permissions":
                    c.get("default_member_permissions").cloned().unwrap_or(Value::Null),
                "nsfw": c.get("nsfw").and_then(Value::as_bool).unwrap_or(false),
                "integration_types": c.get("integration_types").cloned().unwrap_or(json!([0])),
                "contexts": c.get("contexts").cloned().unwrap_or(Value::Null),
            });
            if let Some(options) = c.get("options").filter(|o| !o.is_null()) {
                command["options"] = normalize_options(options);
            }
            match guild {
                Some(g) => command["guild_id"] = json!(g.to_string()),
                None => {
                    command["dm_permission"] = json!(
                        c.get("dm_permission")
                            .and_then(Value::as_bool)
                            .unwrap_or(true)
                    );
                }
            }
            out.push(command);
        }
        if guild.is_some() {
            self.guild_commands.clone_from(&out);
        } else {
            self.global_commands.clone_from(&out);
        }
        Ok((200, Value::Array(out)))
    }

    // ---- channels and messages -------------------------------------------------------

    pub(super) fn edit_channel(&mut self, id: u64, body: &Value) -> Result<(u16, Value), ApiError> {
        let ch = self
            .channels
            .get(&id)
            .ok_or_else(ApiError::unknown_channel)?;
        if !matches!(ch.kind, ChannelKind::Thread { .. }) {
            // The bot has no MANAGE_CHANNELS.
            return Err(ApiError::missing_permissions());
        }
        let mut errors = FormErrors::new();
        let Some(obj) = validate::object(body, "", &mut errors) else {
            return Err(errors.into_error());
        };
        let name = opt_string(obj, "name", "", &mut errors);
        if let Some(n) = &name
            && !(1..=100).contains(&n.chars().count())
        {
            errors.add(
                "name",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            );
        }
        let auto_archive = opt_int(obj, "auto_archive_duration", "", &mut errors);
        check_auto_archive(auto_archive, &mut errors);
        let archived = obj.get("archived").and_then(Value::as_bool);
        let locked_new = obj.get("locked").and_then(Value::as_bool);
        errors.finish()?;
        let now = SystemTime::now();
        if let Some(ch) = self.channels.get_mut(&id) {
            if let Some(n) = name {
                ch.name = n;
            }
            if let ChannelKind::Thread {
                archived: a,
                locked: l,
                auto_archive: d,
                archive_changed,
                ..
            } = &mut ch.kind
            {
                if let Some(new) = archived
                    && new != *a
                {
                    *a = new;
                    *archive_changed = now;
                }
                if let Some(new) = locked_new {
                    *l = new;
                }
                if let Some(new) = auto_archive {
                    *d = new.unsigned_abs();
                }
            }
        }
        self.dispatch_thread("THREAD_UPDATE", id, false);
        let ch = self
            .channels
            .get(&id)
            .ok_or_else(ApiError::unknown_channel)?;
        Ok((200, self.channel_json(ch)))
    }

    /// A message in an archived thread unarchives it (the bot has MANAGE_THREADS, so
    /// locked ones too), with a THREAD_UPDATE.
    pub(super) fn unarchive(&mut self, channel: u64) {
        let Some(Channel {
            kind:
                ChannelKind::Thread {
                    archived,
                    archive_changed,
                    ..
                },
            ..
        }) = self.channels.get_mut(&channel)
        else {
            return;
        };
        if *archived {
            *archived = false;
            *archive_changed = SystemTime::now();
            self.dispatch_thread("THREAD_UPDATE", channel, false);
        }
    }

    /// `POST /users/@me/channels` `{recipient_id}`: the DM channel with a user.
    pub(super) fn open_dm(
        &mut self,
        body: &Value,
        channel: &mut Option<u64>,
    ) -> Result<(u16, Value), ApiError> {
        let recipient = match body.get("recipient_id") {
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .filter(|id| *id != 0);
        let Some(recipient) = recipient else {
            return Err(validate::field_error(
                "recipient_id",
                "BASE_TYPE_REQUIRED",
                "This field is required",
            ));
        };
        if recipient == BOT_USER_ID {
            return Err(ApiError::new(
                400,
                50007,
                "Cannot send messages to this user",
            ));
        }
        let id = self.dm_channel(recipient);
        *channel = Some(id);
        let ch = self
            .channels
            .get(&id)
            .ok_or_else(ApiError::unknown_channel)?;
        Ok((200, self.channel_json(ch)))
    }

    pub(super) fn list_messages(
        &self,
        channel: u64,
        req: &ApiRequest,
    ) -> Result<(u16, Value), ApiError> {
        self.channels
            .get(&channel)
            .ok_or_else(ApiError::unknown_channel)?;
        let limit = match req.query("limit") {
            None => 50,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    return Err(validate::field_error(
                        "limit",
                        "NUMBER_TYPE_MAX",
                        "int value should be between 1 and 100.",
                    ));
                }
            },
        };
        let bound = |key: &str| -> Result<Option<u64>, ApiError> {
            req.query(key).map(|raw| snowflake(key, raw)).transpose()
        };
        let (before, after) = (bound("before")?, bound("after")?);
        // Newest first, as Discord lists them.
        let list: Vec<Value> = self
            .messages
            .values()
            .rev()
            .filter(|m| m.channel == channel && m.flags & FLAG_EPHEMERAL == 0)
            .filter(|m| before.is_none_or(|b| m.id < b) && after.is_none_or(|a| m.id > a))
            .take(limit)
            .map(|m| self.message_json(m, false))
            .collect();
        Ok((200, Value::Array(list)))
    }

    /// A non-ephemeral message of a channel (ephemeral ones are only reachable through
    /// their interaction's webhook).
    pub(super) fn channel_message(&self, channel: u64, id: u64) -> Result<&Stored, ApiError> {
        self.channels
            .get(&channel)
            .ok_or_else(ApiError::unknown_channel)?;
        self.messages
            .get(&id)
            .filter(|m| m.channel == channel && m.flags & FLAG_EPHEMERAL == 0)
            .ok_or_else(ApiError::unknown_message)
    }

    pub(super) fn create_message(
        &mut self,
        channel: u64,
        req: &ApiRequest,
    ) -> Result<(u16, Value), ApiError> {
        self.channels
            .get(&channel)
            .ok_or_else(ApiError::unknown_channel)?;
        let mut errors = FormErrors::new();
        let draft = validate::message_draft(&body_or_empty(&req.body), "", &mut errors);
        check_flags(
            draft.flags,
            FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS,
            "flags",
            &mut errors,
        );
        errors.finish()?;
        // Discord: with `enforce_nonce`, a nonce the same author used within the last few
        // minutes returns that message and creates nothing.
        if draft.enforce_nonce
            && let Some(nonce) = &draft.nonce
            && let Some((id, at)) = self.nonces.get(nonce)
            && at.elapsed().unwrap_or_default() < NONCE_WINDOW
            && let Some(stored) = self.messages.get(id)
        {
            let mut v = self.message_json(stored, false);
            v["nonce"] = Value::String(nonce.clone());
            return Ok((200, v));
        }
        self.unarchive(channel);
        let flags = draft.flags.unwrap_or(0);
        let id = self.new_bot_message(channel, &draft, &req.files, None, TYPE_DEFAULT, flags)?;
        let stored = self
            .messages
            .get(&id)
            .ok_or_else(ApiError::unknown_message)?;
        let mut v = self.message_json(stored, false);
        if let Some(nonce) = &draft.nonce {
            v["nonce"] = Value::String(nonce.clone());
            self.nonces.insert(nonce.clone(), (id, SystemTime::now()));
        }
        Ok((200, v))
    }

    /// Creates a message of the bot's from a checked draft: attachments from the files,
    /// the reply reference, mentions as `allowed_mentions` lets them ping.
    pub(super) fn new_bot_message(
        &mut self,
        channel: u64,
        draft: &MessageDraft,
        files: &[Upload],
        interaction: Option<u64>,
        kind: u8,
        flags: u64,
    ) -> Result<u64, ApiError> {
        let attachments = self.attachments_for(draft, files, &[])?;
        let reference = match &draft.message_reference {
            None => None,
            Some(r) => self.resolve_reference(channel, r)?,
        };
        let replied_author = reference
            .and_then(|r| self.messages.get(&r))
            .map(|m| m.author);
        let content = draft.content.clone().unwrap_or_default();
        let (mentions, mention_roles, mention_everyone) =
            resolve_mentions(&content, draft.allowed_mentions.as_ref(), replied_author);
        let id = self.next_id();
        let stored = Stored {
            id,
            channel,
            author: BOT_USER_ID,
            kind: if reference.is_some() && kind == TYPE_DEFAULT {
                TYPE_REPLY
            } else {
                kind
            },
            content,
            embeds: draft.embeds.clone().unwrap_or_default(),
            components: draft.components.clone().unwrap_or_default(),
            attachments,
            flags,
            tts: draft.tts,
            mentions,
            mention_roles,
            mention_everyone,
            reference,
            interaction,
            thread: None,
            edits: 0,
            created_at: SystemTime::now(),
            edited_at: None,
        };
        if stored.is_empty(draft.has_other_content) && flags & FLAG_LOADING == 0 {
            return Err(ApiError::empty_message());
        }
        self.insert_message(stored);
        Ok(id)
    }

    /// `message_reference` → the referenced message id (same channel unless it names
    /// another); unknown with `fail_if_not_exists: false` → no reference.
    pub(super) fn resolve_reference(
        &self,
        channel: u64,
        r: &Value,
    ) -> Result<Option<u64>, ApiError> {
        let unknown = || {
            validate::field_error(
                "message_reference",
                "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                "Unknown message",
            )
        };
        let id = match r.get("message_id") {
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        let in_channel = match r.get("channel_id") {
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .unwrap_or(channel);
        let found = id.filter(|id| {
            self.messages
                .get(id)
                .is_some_and(|m| m.channel == in_channel && m.flags & FLAG_EPHEMERAL == 0)
        });
        match found {
            Some(id) => Ok(Some(id)),
            None if r.get("fail_if_not_exists").and_then(Value::as_bool) == Some(false) => Ok(None),
            None => Err(unknown()),
        }
    }

    /// The attachments after a request: kept ones (`attachments` lists their ids, or
    /// all of `existing` if it is absent), then every uploaded file, with the
    /// `filename`/`description` the `attachments` entry of the same placeholder id gives.
    pub(super) fn attachments_for(
        &mut self,
        draft: &MessageDraft,
        files: &[Upload],
        existing: &[StoredFile],
    ) -> Result<Vec<StoredFile>, ApiError> {
        if files.len() > MAX_FILES {
            return Err(validate::field_error(
                "files",
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {MAX_FILES} or fewer in length."),
            ));
        }
        if files.iter().any(|f| f.bytes.len() > MAX_FILE_BYTES) {
            return Err(ApiError::too_large());
        }
        let entry_id = |a: &Value| match a.get("id") {
            Some(Value::String(s)) => s.parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        let mut out: Vec<StoredFile> = match &draft.attachments {
            None => existing.to_vec(),
            Some(list) => existing
                .iter()
                .filter(|a| list.iter().any(|e| entry_id(e) == Some(a.id)))
                .cloned()
                .collect(),
        };
        for (index, file) in files.iter().enumerate() {
            let placeholder = file
                .field
                .strip_prefix("files[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(index as u64);
            let meta = draft
                .attachments
                .iter()
                .flatten()
                .find(|e| entry_id(e) == Some(placeholder) && e.get("filename").is_some());
            let filename = meta
                .and_then(|m| m.get("filename"))
                .and_then(Value::as_str)
                .map_or_else(|| file.filename.clone(), str::to_owned);
            let description = meta
                .and_then(|m| m.get("description"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let id = self.next_id();
            out.push(StoredFile {
                id,
                filename,
                content_type: file.content_type.clone(),
                description,
                bytes: file.bytes.clone(),
            });
        }
        Ok(out)
    }

    pub(super) fn edit_channel_message(
        &mut self,
        channel: u64,
        id: u64,
        req: &ApiRequest,
    ) -> Result<(u16, Value), ApiError> {
        let author = self.channel_message(channel, id)?.author;
        if author != BOT_USER_ID {
            return Err(ApiError::new(
                403,
                50005,
                "Cannot edit a message authored by another user",
            ));
        }
        self.edit_message(id, &req.body, &req.files, "")?;
        let stored = self
            .messages
            .get(&id)
            .ok_or_else(ApiError::unknown_message)?;
        Ok((200, self.message_json(stored, false)))
    }

    /// Applies an edit: absent fields stay, `components: []` removes them; the result
    /// must not be empty. Only SUPPRESS_EMBEDS may change among the flags.
    pub(super) fn edit_message(
        &mut self,
        id: u64,
        body: &Value,
        files: &[Upload],
        path: &str,
    ) -> Result<(), ApiError> {
        let mut errors = FormErrors::new();
        let draft = validate::message_draft(&body_or_empty(body), path, &mut errors);
        errors.finish()?;
        let mut edited = self
            .messages
            .get(&id)
            .cloned()
            .ok_or_else(ApiError::unknown_message)?;
        let existing = edited.attachments.clone();
        edited.attachments = self.attachments_for(&draft, files, &existing)?;
        if let Some(content) = &draft.content {
            edited.content.clone_from(content);
            let (mentions, roles, everyone) =
                resolve_mentions(content, draft.allowed_mentions.as_ref(), None);
            edited.mentions = mentions;
            edited.mention_roles = roles;
            edited.mention_everyone = everyone;
        }
        if let Some(embeds) = &draft.embeds {
            edited.embeds.clone_from(embeds);
        }
        if let Some(components) = &draft.components {
            edited.components.clone_from(components);
        }
        if let Some(flags) = draft.flags {
            edited.flags = (edited.flags & !FLAG_SUPPRESS_EMBEDS) | (flags & FLAG_SUPPRESS_EMBEDS);
        }
        edited.flags &= !FLAG_LOADING;
        if edited.is_empty(draft.has_other_content) {
            return Err(ApiError::empty_message());
        }
        edited.edits += 1;
        edited.edited_at = Some(SystemTime::now());
        let ephemeral = edited.flags & FLAG_EPHEMERAL != 0;
        self.messages.insert(id, edited);
        if !ephemeral {
            self.dispatch_message("MESSAGE_UPDATE", id);
        }
        Ok(())
    }

    pub(super) fn delete_channel_message(
        &mut self,
        channel: u64,
        id: u64,
    ) -> Result<(u16, Value), ApiError> {
        let stored = self.channel_message(channel, id)?;
        let in_guild = self.channels.get(&channel).is_some_and(Channel::in_guild);
        if stored.author != BOT_USER_ID && !in_guild {
            return Err(ApiError::new(
                403,
                50003,
                "Cannot execute action on a DM channel",
            ));
        }
        self.remove_message(id);
        Ok((204, Value::Null))
    }

    pub(super) fn remove_message(&mut self, id: u64) {
        if let Some(stored) = self.messages.remove(&id)
            && stored.flags & FLAG_EPHEMERAL == 0
        {
            self.dispatch_delete(id, stored.channel);
        }
    }

    // ---- threads ---------------------------------------------------------------------

    pub(super) fn create_thread(
        &mut self,
        parent: u64,
        from_message: Option<u64>,
        body: &Value,
    ) -> Result<(u16, Value), ApiError> {
        let ch = self
            .channels
            .get(&parent)
            .ok_or_else(ApiError::unknown_channel)?;
        if !matches!(ch.kind, ChannelKind::Text) {
            return Err(ApiError::wrong_channel_type());
        }
        if let Some(mid) = from_message {
            let starter = self.channel_message(parent, mid)?;
            if starter.thread.is_some() {
                return Err(ApiError::new(
                    400,
                    160_004,
                    "A thread has already been created for this message",
                ));
            }
        }
        let mut errors = FormErrors::new();
        let Some(obj) = validate::object(&body_or_empty(body), "", &mut errors).cloned() else {
            return Err(errors.into_error());
        };
        let name = match opt_string(&obj, "name", "", &mut errors) {
            Some(n) if (1..=100).contains(&n.chars().count()) => n,
            Some(_) => {
                errors.add(
                    "name",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                );
                String::new()
            }
            None => {
                errors.add("name", "BASE_TYPE_REQUIRED", "This field is required");
                String::new()
            }
        };
        let auto_archive = opt_int(&obj, "auto_archive_duration", "", &mut errors);
        check_auto_archive(auto_archive, &mut errors);
        let kind = opt_int(&obj, "type", "", &mut errors);
        let private = match (from_message, kind) {
            (Some(_), _) => false,
            (None, None | Some(12)) => true,
            (None, Some(11)) => false,
            (None, Some(_)) => {
                errors.add(
                    "type",
                    "BASE_TYPE_CHOICES",
                    "Value must be one of {11, 12}.",
                );
                false
            }
        };
        if let Some(slowmode) = opt_int(&obj, "rate_limit_per_user", "", &mut errors)
            && !(0..=21_600).contains(&slowmode)
        {
            errors.add(
                "rate_limit_per_user",
                "NUMBER_TYPE_MAX",
                "int value should be between 0 and 21600.",
            );
        }
        errors.finish()?;
        let id = match from_message {
            // A thread started from a message takes the message's id, as on Discord.
            Some(mid) => mid,
            None => self.next_id(),
        };
        let now = SystemTime::now();
        self.channels.insert(
            id,
            Channel {
                id,
                name,
                kind: ChannelKind::Thread {
                    parent,
                    owner: BOT_USER_ID,
                    private,
                    archived: false,
                    locked: false,
                    auto_archive: auto_archive.map_or(1440, i64::unsigned_abs),
                    created: now,
                    archive_changed: now,
                },
                last_message_id: None,
                message_count: 0,
            },
        );
        if let Some(mid) = from_message
            && let Some(starter) = self.messages.get_mut(&mid)
        {
            starter.thread = Some(id);
            starter.flags |= FLAG_HAS_THREAD;
        }
        self.dispatch_thread("THREAD_CREATE", id, true);
        let ch = self
            .channels
            .get(&id)
            .ok_or_else(ApiError::unknown_channel)?;
        Ok((201, self.channel_json(ch)))
    }
}

/// `null`/absent body → `{}`.
pub(super) fn body_or_empty(body: &Value) -> Value {
    if body.is_null() {
        json!({})
    } else {
        body.clone()
    }
}

/// Flags outside `allowed` are refused (e.g. EPHEMERAL on a channel message).
pub(super) fn check_flags(flags: Option<u64>, allowed: u64, path: &str, errors: &mut FormErrors) {
    let Some(flags) = flags else {
        return;
    };
    if flags & FLAG_COMPONENTS_V2 != 0 {
        errors.add(
            path,
            "FAKE_DISCORD_UNSUPPORTED",
            "FakeDiscord does not serve components v2 (flag 32768)",
        );
    } else if flags & !allowed != 0 {
        errors.add(path, "MESSAGE_FLAGS_INVALID", "Invalid message flags");
    }
}

fn check_auto_archive(value: Option<i64>, errors: &mut FormErrors) {
    if let Some(d) = value
        && ![60, 1440, 4320, 10080].contains(&d)
    {
        errors.add(
            "auto_archive_duration",
            "BASE_TYPE_CHOICES",
            "Value must be one of {60, 1440, 4320, 10080}.",
        );
    }
}

/// Options as Discord returns them: `required: false` omitted, nested options kept.
fn normalize_options(options: &Value) -> Value {
    let Some(list) = options.as_array() else {
        return json!([]);
    };
    Value::Array(
        list.iter()
            .map(|o| {
                let mut o = o.clone();
                if let Some(obj) = o.as_object_mut() {
                    if obj.get("required") == Some(&json!(false)) {
                        obj.remove("required");
                    }
                    if let Some(nested) = obj.get("options").cloned() {
                        obj.insert("options".to_owned(), normalize_options(&nested));
                    }
                }
                o
            })
            .collect(),
    )
}

/// Mentions in `content` (`<@id>`, `<@!id>`, `<@&role>`, `@everyone`/`@here`) that
/// `allowed_mentions` lets ping (all of them when it is absent), plus the replied-to
/// author (always when absent, else only with `replied_user: true`).
fn resolve_mentions(
    content: &str,
    allowed: Option<&Value>,
    replied_author: Option<u64>,
) -> (Vec<u64>, Vec<u64>, bool) {
    let (users, roles) = parse_mentions(content);
    let everyone = content.contains("@everyone") || content.contains("@here");
    let ids = |am: &Value, key: &str| -> Vec<u64> {
        am.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| match v {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            })
            .collect()
    };
    let (mut users, roles, everyone) = match allowed {
        None => (users, roles, everyone),
        Some(am) => {
            let parse: Vec<&str> = am
                .get("parse")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let listed_users = ids(am, "users");
            let listed_roles = ids(am, "roles");
            let users = users
                .into_iter()
                .filter(|u| parse.contains(&"users") || listed_users.contains(u))
                .collect();
            let roles = roles
                .into_iter()
                .filter(|r| parse.contains(&"roles") || listed_roles.contains(r))
                .collect();
            (users, roles, everyone && parse.contains(&"everyone"))
        }
    };
    let ping_reply = match allowed {
        None => true,
        Some(am) => am.get("replied_user").and_then(Value::as_bool) == Some(true),
    };
    if ping_reply
        && let Some(author) = replied_author
        && !users.contains(&author)
    {
        users.push(author);
    }
    (users, roles, everyone)
}

/// `(users, roles)` mentioned in `content`, in order, without duplicates.
fn parse_mentions(content: &str) -> (Vec<u64>, Vec<u64>) {
    let mut users = Vec::new();
    let mut roles = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let (is_role, body) = match rest.as_bytes().first() {
            Some(b'&') => (true, &rest[1..]),
            Some(b'!') => (false, &rest[1..]),
            _ => (false, rest),
        };
        let digits = body.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || body.as_bytes().get(digits) != Some(&b'>') {
            continue;
        }
        if let Ok(id) = body[..digits].parse::<u64>() {
            let list = if is_role { &mut roles } else { &mut users };
            if !list.contains(&id) {
                list.push(id);
            }
        }
    }
    (users, roles)
}

/// A path id: a snowflake, else 400 50035 `NUMBER_TYPE_COERCE` like Discord.
pub(super) fn snowflake(field: &str, raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>().map_err(|_| {
        validate::field_error(
            field,
            "NUMBER_TYPE_COERCE",
            format!("Value \"{raw}\" is not snowflake."),
        )
    })
}

/// `"POST /channels/{id}/messages"` for a method and a path (without `/api/v10`):
/// numeric segments become `{id}`, interaction and webhook tokens `{token}`.
pub(super) fn route_of(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let templated: Vec<&str> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 2 && matches!(segments.first(), Some(&("interactions" | "webhooks"))) {
                "{token}"
            } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{} /{}", method.to_ascii_uppercase(), templated.join("/"))
}

/// A route as a test writes it (`"post /channels/{channel_id}/messages"`, a concrete
/// path, or with `/api/v10`) in [`route_of`]'s form.
pub(super) fn normalize_route(route: &str) -> String {
    let (method, path) = route.trim().split_once(' ').unwrap_or(("", route));
    let path = path.trim();
    let path = path.strip_prefix("/api/v10").unwrap_or(path);
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') && s != "{token}" {
                "0".to_owned()
            } else {
                s.to_owned()
            }
        })
        .collect();
    let rebuilt = format!("/{}", segments.join("/"));
    route_of(method, &rebuilt)
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn routes_are_templated() {
        assert_eq!(
            route_of("post", "/channels/123/messages"),
            "POST /channels/{id}/messages"
        );
        assert_eq!(
            route_of("PATCH", "/webhooks/9/tok-en/messages/@original"),
            "PATCH /webhooks/{id}/{token}/messages/@original"
        );
        assert_eq!(
            normalize_route("POST /interactions/{interaction_id}/{token}/callback"),
            "POST /interactions/{id}/{token}/callback"
        );
        assert_eq!(
            normalize_route("patch /api/v10/channels/{id}/messages/{id}"),
            "PATCH /channels/{id}/messages/{id}"
        );
    }

    #[test]
    pub(super) fn mentions_follow_allowed_mentions() {
        let content = "<@1> <@!2> <@&3> @everyone <@x>";
        assert_eq!(
            resolve_mentions(content, None, None),
            (vec![1, 2], vec![3], true)
        );
        let none = json!({"parse": []});
        assert_eq!(
            resolve_mentions(content, Some(&none), Some(9)),
            (vec![], vec![], false)
        );
        let some = json!({"users": ["2"], "replied_user": true});
        assert_eq!(
            resolve_mentions(content, Some(&some), Some(9)),
            (vec![2, 9], vec![], false)
        );
    }
}
