//! Interactions: what users do with the bot's commands and components
//! ([`World::slash_command`], [`World::click_button`], [`World::select_menu`], each an
//! INTERACTION_CREATE), and the endpoints that answer them: the callback
//! (`POST /interactions/{id}/{token}/callback`) and the interaction webhook
//! (`/webhooks/{application}/{token}`: follow-ups, `@original`).
//!
//! Checked like Discord: a callback more than the deadline (3 s) after INTERACTION_CREATE
//! was written, or with a wrong token, is 404 10062 "Unknown interaction"; a second one
//! 400 40060; the callback type must fit the interaction (6 and 7 only for components);
//! message data are checked like messages (flag 64 = ephemeral allowed). Follow-ups and
//! `@original` need the callback first (10015, 10008), tokens work 15 minutes (50027).
//! The first follow-up after a deferred (type 5) response replaces the "thinking"
//! message, as on Discord. Modals (9), premium prompts (10) and activities (12) are
//! refused as unsupported; autocomplete is not served.

use std::collections::HashSet;
use std::time::SystemTime;

use serde_json::{Value, json};

use super::error::ApiError;
use super::model::{
    Channel, ChannelKind, FLAG_EPHEMERAL, FLAG_LOADING, FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS, InteractionRec, Stored, TOKEN_LIFETIME, TYPE_CHAT_INPUT_COMMAND,
    TYPE_DEFAULT,
};
use super::validate::{self, FormErrors, MessageDraft, opt_int};
use super::world::{ApiRequest, World, body_or_empty, check_flags, snowflake};
use super::{APPLICATION_ID, BOT_USER_ID};

impl World {
    /// An application command invocation; `Err` says why a real user could not send it.
    pub fn slash_command(
        &mut self,
        channel: u64,
        user: u64,
        name: &str,
        options: &[(&str, &str)],
    ) -> Result<(u64, String), String> {
        self.slash_command_with_file(channel, user, name, options, None)
    }

    /// [`World::slash_command`] with a file for an attachment option (type 11) too.
    pub fn slash_command_with_file(
        &mut self,
        channel: u64,
        user: u64,
        name: &str,
        options: &[(&str, &str)],
        file: Option<(&str, super::uploads::UserAttachment)>,
    ) -> Result<(u64, String), String> {
        let ch = self.channel_for_user(channel, user)?;
        let in_guild = ch.in_guild();
        let command = self
            .find_command(name, in_guild)
            .ok_or_else(|| {
                let scope = if in_guild {
                    "guild or global"
                } else {
                    "global (DM)"
                };
                format!("no {scope} command /{name} is registered")
            })?
            .clone();
        let registered: Vec<Value> = command
            .get("options")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if registered
            .iter()
            .any(|o| matches!(o.get("type").and_then(Value::as_i64), Some(1 | 2)))
        {
            return Err(format!(
                "/{name} has subcommands; FakeDiscord::slash_command does not send those"
            ));
        }
        let mut sent = Vec::new();
        let mut given = HashSet::new();
        for (opt_name, raw) in options {
            let Some(opt) = registered
                .iter()
                .find(|o| o.get("name").and_then(Value::as_str) == Some(opt_name))
            else {
                return Err(format!("/{name} has no option {opt_name}"));
            };
            if !given.insert(*opt_name) {
                return Err(format!("option {opt_name} given twice"));
            }
            let kind = opt.get("type").and_then(Value::as_i64).unwrap_or(0);
            let value = option_value(kind, opt_name, raw)?;
            check_option_value(opt, opt_name, &value)?;
            sent.push(json!({ "name": opt_name, "type": kind, "value": value }));
        }
        let mut resolved = None;
        if let Some((opt_name, f)) = file {
            let registered_file = registered.iter().any(|o| {
                o.get("name").and_then(Value::as_str) == Some(opt_name)
                    && o.get("type").and_then(Value::as_i64) == Some(11)
            });
            if !registered_file {
                return Err(format!("/{name} has no attachment option {opt_name}"));
            }
            if !given.insert(opt_name) {
                return Err(format!("option {opt_name} given twice"));
            }
            let (id, json) = self.command_file(channel, f);
            sent.push(json!({ "name": opt_name, "type": 11, "value": id.to_string() }));
            resolved = Some(json!({ "attachments": { id.to_string(): json } }));
        }
        for opt in &registered {
            let opt_name = opt.get("name").and_then(Value::as_str).unwrap_or("");
            if opt.get("required").and_then(Value::as_bool) == Some(true)
                && !given.contains(opt_name)
            {
                return Err(format!("/{name} requires option {opt_name}"));
            }
        }
        let mut data = json!({
            "id": command.get("id").cloned().unwrap_or(Value::Null),
            "name": name,
            "type": 1,
        });
        if !sent.is_empty() {
            data["options"] = Value::Array(sent);
        }
        if let Some(r) = resolved {
            data["resolved"] = r;
        }
        if let Some(guild) = command.get("guild_id") {
            data["guild_id"] = guild.clone();
        }
        Ok(self.new_interaction(2, channel, user, name, None, data))
    }

    /// A button press; `Err` says why a real user could not press it.
    pub fn click_button(
        &mut self,
        message: u64,
        user: u64,
        custom_id: &str,
    ) -> Result<(u64, String), String> {
        let stored = self.message_for_component(message, user)?;
        let component = find_component(&stored.components, custom_id)
            .ok_or_else(|| format!("message {message} has no component {custom_id:?}"))?;
        if component.get("type").and_then(Value::as_i64) != Some(2) {
            return Err(format!("component {custom_id:?} is not a button"));
        }
        if !matches!(component.get("style").and_then(Value::as_i64), Some(1..=4)) {
            return Err(format!("button {custom_id:?} is a link or premium button"));
        }
        if component.get("disabled").and_then(Value::as_bool) == Some(true) {
            return Err(format!("button {custom_id:?} is disabled"));
        }
        let data = json!({ "custom_id": custom_id, "component_type": 2 });
        let channel = stored.channel;
        Ok(self.new_interaction(3, channel, user, custom_id, Some(message), data))
    }

    /// A string select choice; `Err` says why a real user could not make it.
    pub fn select_menu(
        &mut self,
        message: u64,
        user: u64,
        custom_id: &str,
        values: &[&str],
    ) -> Result<(u64, String), String> {
        let stored = self.message_for_component(message, user)?;
        let component = find_component(&stored.components, custom_id)
            .ok_or_else(|| format!("message {message} has no component {custom_id:?}"))?;
        if component.get("type").and_then(Value::as_i64) != Some(3) {
            return Err(format!("component {custom_id:?} is not a string select"));
        }
        if component.get("disabled").and_then(Value::as_bool) == Some(true) {
            return Err(format!("select {custom_id:?} is disabled"));
        }
        let offered: Vec<&str> = component
            .get("options")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("value").and_then(Value::as_str))
            .collect();
        let mut unique = HashSet::new();
        for v in values {
            if !offered.contains(v) {
                return Err(format!("select {custom_id:?} has no option {v:?}"));
            }
            if !unique.insert(*v) {
                return Err(format!("value {v:?} chosen twice"));
            }
        }
        let min = component
            .get("min_values")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let max = component
            .get("max_values")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let count = values.len() as u64;
        if count < min || count > max {
            return Err(format!(
                "select {custom_id:?} takes {min} to {max} values, got {count}"
            ));
        }
        let data = json!({ "custom_id": custom_id, "component_type": 3, "values": values });
        let channel = stored.channel;
        Ok(self.new_interaction(3, channel, user, custom_id, Some(message), data))
    }

    pub(super) fn channel_for_user(&self, channel: u64, user: u64) -> Result<&Channel, String> {
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
        Ok(ch)
    }

    /// The bot message carrying components a user interacts with.
    pub(super) fn message_for_component(&self, message: u64, user: u64) -> Result<Stored, String> {
        let stored = self
            .messages
            .get(&message)
            .ok_or_else(|| format!("no message {message}"))?;
        if stored.author != BOT_USER_ID {
            return Err(format!("message {message} is not the bot's"));
        }
        self.channel_for_user(stored.channel, user)?;
        if stored.flags & FLAG_EPHEMERAL != 0
            && let Some(i) = stored.interaction.and_then(|i| self.interactions.get(&i))
            && i.user != user
        {
            return Err(format!(
                "message {message} is ephemeral: only user {} sees it",
                i.user
            ));
        }
        Ok(stored.clone())
    }

    /// A registered command by name: the guild's first (in guild channels), then global.
    pub(super) fn find_command(&self, name: &str, in_guild: bool) -> Option<&Value> {
        let named = |c: &&Value| {
            c.get("name").and_then(Value::as_str) == Some(name)
                && c.get("type").and_then(Value::as_i64).unwrap_or(1) == 1
        };
        let usable = |c: &&Value| {
            let context = if in_guild { 0 } else { 1 };
            match c.get("contexts").and_then(Value::as_array) {
                Some(list) => list.iter().any(|x| x.as_i64() == Some(context)),
                None => in_guild || c.get("dm_permission").and_then(Value::as_bool) != Some(false),
            }
        };
        if in_guild && let Some(c) = self.guild_commands.iter().find(named) {
            return Some(c);
        }
        self.global_commands.iter().filter(named).find(usable)
    }

    pub(super) fn new_interaction(
        &mut self,
        kind: u8,
        channel: u64,
        user: u64,
        name: &str,
        message: Option<u64>,
        data: Value,
    ) -> (u64, String) {
        let id = self.next_id();
        let token = format!(
            "aW50ZXJhY3Rpb246{id}{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let now = SystemTime::now();
        self.interactions.insert(
            id,
            InteractionRec {
                id,
                token: token.clone(),
                kind,
                channel,
                user,
                name: name.to_owned(),
                message,
                created: now,
                dispatched_at: now,
                written: false,
                acked_at: None,
                ack_type: None,
                original: None,
                followups: Vec::new(),
            },
        );
        let payload = self.interaction_json(id, data);
        self.gw.dispatch("INTERACTION_CREATE", payload, Some(id));
        (id, token)
    }

    /// Called when INTERACTION_CREATE `id` was written to a socket.
    pub fn interaction_written(&mut self, id: u64, at: SystemTime) {
        if let Some(rec) = self.interactions.get_mut(&id)
            && !rec.written
        {
            rec.written = true;
            rec.dispatched_at = at;
        }
    }

    // ---- interaction endpoints -------------------------------------------------------

    pub(super) fn interaction_callback(
        &mut self,
        id: u64,
        token: &str,
        req: &ApiRequest,
    ) -> Result<(u16, Value), ApiError> {
        let now = SystemTime::now();
        let deadline = self.interaction_deadline;
        let rec = self
            .interactions
            .get(&id)
            .filter(|r| r.token == token)
            .ok_or_else(ApiError::unknown_interaction)?;
        if rec.acked_at.is_some() {
            return Err(ApiError::new(
                400,
                40060,
                "Interaction has already been acknowledged.",
            ));
        }
        if now.duration_since(rec.dispatched_at).unwrap_or_default() > deadline {
            return Err(ApiError::unknown_interaction());
        }
        let (kind, channel, component_message) = (rec.kind, rec.channel, rec.message);
        let mut errors = FormErrors::new();
        let body = body_or_empty(&req.body);
        let Some(obj) = validate::object(&body, "", &mut errors) else {
            return Err(errors.into_error());
        };
        let response_type = opt_int(obj, "type", "", &mut errors);
        errors.finish()?;
        let data = obj.get("data").cloned().unwrap_or_else(|| json!({}));
        let invalid_type = |message: &str| {
            validate::field_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", message)
        };
        let original = match response_type {
            None => {
                return Err(validate::field_error(
                    "type",
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                ));
            }
            Some(4) => {
                let mut errors = FormErrors::new();
                let draft = validate::message_draft(&data, "data", &mut errors);
                check_flags(
                    draft.flags,
                    FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS,
                    "data.flags",
                    &mut errors,
                );
                errors.finish()?;
                let message_type = if kind == 2 {
                    TYPE_CHAT_INPUT_COMMAND
                } else {
                    TYPE_DEFAULT
                };
                let flags = draft.flags.unwrap_or(0);
                self.new_bot_message(channel, &draft, &req.files, Some(id), message_type, flags)?
            }
            Some(5) => {
                let mut errors = FormErrors::new();
                let draft = validate::message_draft(&data, "data", &mut errors);
                check_flags(draft.flags, FLAG_EPHEMERAL, "data.flags", &mut errors);
                errors.finish()?;
                let flags = draft.flags.unwrap_or(0) | FLAG_LOADING;
                let message_type = if kind == 2 {
                    TYPE_CHAT_INPUT_COMMAND
                } else {
                    TYPE_DEFAULT
                };
                let empty = MessageDraft::default();
                self.new_bot_message(channel, &empty, &[], Some(id), message_type, flags)?
            }
            Some(6) => {
                if kind != 3 {
                    return Err(invalid_type(
                        "DEFERRED_UPDATE_MESSAGE is only valid for component interactions",
                    ));
                }
                component_message.ok_or_else(ApiError::unknown_message)?
            }
            Some(7) => {
                if kind != 3 {
                    return Err(invalid_type(
                        "UPDATE_MESSAGE is only valid for component interactions",
                    ));
                }
                let message = component_message.ok_or_else(ApiError::unknown_message)?;
                self.edit_message(message, &data, &req.files, "data")?;
                message
            }
            Some(1) => return Err(invalid_type("PONG is only valid for HTTP interactions")),
            Some(8) => {
                return Err(invalid_type(
                    "APPLICATION_COMMAND_AUTOCOMPLETE_RESULT is only valid for autocomplete",
                ));
            }
            Some(9 | 10 | 12) => {
                return Err(validate::field_error(
                    "type",
                    "FAKE_DISCORD_UNSUPPORTED",
                    "FakeDiscord does not serve modals, premium prompts or activities",
                ));
            }
            Some(_) => {
                return Err(validate::field_error(
                    "type",
                    "BASE_TYPE_CHOICES",
                    "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}.",
                ));
            }
        };
        if let Some(rec) = self.interactions.get_mut(&id) {
            rec.acked_at = Some(now);
            rec.ack_type = response_type.and_then(|t| u8::try_from(t).ok());
            rec.original = Some(original);
        }
        let with_response = req
            .query("with_response")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !with_response {
            return Ok((204, Value::Null));
        }
        let message = self.messages.get(&original);
        let mut resource = json!({ "type": response_type });
        if let Some(m) = message {
            resource["message"] = self.message_json(m, false);
        }
        Ok((
            200,
            json!({
                "interaction": {
                    "id": id.to_string(),
                    "type": kind,
                    "response_message_id": original.to_string(),
                    "response_message_loading": message.is_some_and(|m| m.flags & FLAG_LOADING != 0),
                    "response_message_ephemeral":
                        message.is_some_and(|m| m.flags & FLAG_EPHEMERAL != 0),
                },
                "resource": resource,
            }),
        ))
    }

    /// The interaction behind `/webhooks/{application}/{token}`: an unknown application
    /// is 404 10015, an unknown or expired (15 minutes) token 401 50027.
    pub(super) fn interaction_by_token(&self, app: &str, token: &str) -> Result<u64, ApiError> {
        let app = snowflake("webhook_id", app)?;
        if app != APPLICATION_ID {
            return Err(ApiError::unknown_webhook());
        }
        let now = SystemTime::now();
        self.interactions
            .values()
            .find(|r| r.token == token)
            .filter(|r| now.duration_since(r.created).unwrap_or_default() <= TOKEN_LIFETIME)
            .map(|r| r.id)
            .ok_or_else(ApiError::invalid_webhook_token)
    }

    /// A follow-up message: only after the callback (else 404 10015). The first one
    /// after a deferred (type 5) response replaces the "thinking" original, as Discord
    /// does.
    pub(super) fn create_followup(
        &mut self,
        id: u64,
        req: &ApiRequest,
    ) -> Result<(u16, Value), ApiError> {
        let (channel, original, acked) = match self.interactions.get(&id) {
            Some(r) => (r.channel, r.original, r.acked_at.is_some()),
            None => return Err(ApiError::unknown_webhook()),
        };
        if !acked {
            return Err(ApiError::unknown_webhook());
        }
        let mut errors = FormErrors::new();
        let draft = validate::message_draft(&body_or_empty(&req.body), "", &mut errors);
        check_flags(
            draft.flags,
            FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS,
            "flags",
            &mut errors,
        );
        errors.finish()?;
        let loading = original
            .and_then(|o| self.messages.get(&o))
            .filter(|m| m.flags & FLAG_LOADING != 0 && m.interaction == Some(id))
            .map(|m| m.id);
        let message = match loading {
            Some(o) => {
                self.edit_message(o, &body_or_empty(&req.body), &req.files, "")?;
                o
            }
            None => {
                let flags = draft.flags.unwrap_or(0);
                self.new_bot_message(channel, &draft, &req.files, Some(id), TYPE_DEFAULT, flags)?
            }
        };
        if let Some(rec) = self.interactions.get_mut(&id)
            && !rec.followups.contains(&message)
        {
            rec.followups.push(message);
        }
        let stored = self
            .messages
            .get(&message)
            .ok_or_else(ApiError::unknown_message)?;
        Ok((200, self.message_json(stored, false)))
    }

    /// `GET`/`PATCH`/`DELETE` of `@original` or of a follow-up by id.
    pub(super) fn webhook_message(
        &mut self,
        id: u64,
        which: &str,
        req: &ApiRequest,
    ) -> Result<(u16, Value), ApiError> {
        let rec = self
            .interactions
            .get(&id)
            .ok_or_else(ApiError::unknown_webhook)?;
        let message = if which == "@original" {
            rec.original.ok_or_else(ApiError::unknown_message)?
        } else {
            let mid = snowflake("message_id", which)?;
            if rec.original != Some(mid) && !rec.followups.contains(&mid) {
                return Err(ApiError::unknown_message());
            }
            mid
        };
        if !self.messages.contains_key(&message) {
            return Err(ApiError::unknown_message());
        }
        match req.method.as_str() {
            "GET" => {}
            "PATCH" => self.edit_message(message, &req.body, &req.files, "")?,
            _ => {
                self.remove_message(message);
                return Ok((204, Value::Null));
            }
        }
        let stored = self
            .messages
            .get(&message)
            .ok_or_else(ApiError::unknown_message)?;
        Ok((200, self.message_json(stored, false)))
    }
}

/// A slash command option value, typed as the registered option says.
fn option_value(kind: i64, name: &str, raw: &str) -> Result<Value, String> {
    match kind {
        3 => Ok(json!(raw)),
        4 => raw
            .parse::<i64>()
            .map(|n| json!(n))
            .map_err(|_| format!("option {name} takes an integer, got {raw:?}")),
        5 => match raw {
            "true" => Ok(json!(true)),
            "false" => Ok(json!(false)),
            _ => Err(format!("option {name} takes true or false, got {raw:?}")),
        },
        10 => raw
            .parse::<f64>()
            .map(|n| json!(n))
            .map_err(|_| format!("option {name} takes a number, got {raw:?}")),
        other => Err(format!(
            "option {name} has type {other}; FakeDiscord::slash_command supports string, \
             integer, boolean and number options"
        )),
    }
}

/// Checks a slash command value against the registered option's `choices`,
/// `min_length`/`max_length` and `min_value`/`max_value`.
fn check_option_value(opt: &Value, name: &str, value: &Value) -> Result<(), String> {
    if let Some(choices) = opt.get("choices").and_then(Value::as_array)
        && !choices.is_empty()
        && !choices.iter().any(|c| c.get("value") == Some(value))
    {
        return Err(format!(
            "option {name} must be one of its choices, got {value}"
        ));
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        let min = opt.get("min_length").and_then(Value::as_u64).unwrap_or(0);
        let max = opt
            .get("max_length")
            .and_then(Value::as_u64)
            .unwrap_or(6000);
        if len < min || len > max {
            return Err(format!("option {name} takes {min} to {max} characters"));
        }
    }
    if let Some(n) = value.as_f64() {
        let below = opt
            .get("min_value")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m);
        let above = opt
            .get("max_value")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m);
        if below || above {
            return Err(format!("option {name} is out of its range"));
        }
    }
    Ok(())
}

/// The first component with `custom_id`, in row order.
fn find_component<'a>(rows: &'a [Value], custom_id: &str) -> Option<&'a Value> {
    rows.iter()
        .filter_map(|r| r.get("components").and_then(Value::as_array))
        .flatten()
        .find(|c| c.get("custom_id").and_then(Value::as_str) == Some(custom_id))
}
