//! Discord's JSON objects (API v10) built from the world's state: users, members, the
//! current user and application, channels and threads, messages (the REST shape, and
//! the gateway shape with `guild_id` and `member`) and INTERACTION_CREATE payloads.
//! Snowflakes are strings, timestamps ISO 8601 with microseconds, as Discord sends them.
//! Everything here is read-only; the world's endpoints and dispatches call it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::model::{
    ATTACHMENT_SIZE_LIMIT, BOT_PERMISSIONS, CHANNEL_DM, CHANNEL_TEXT, Channel, ChannelKind,
    FLAG_EPHEMERAL, MEMBER_PERMISSIONS, Stored,
};
use super::world::World;
use super::{APPLICATION_ID, BOT_USER_ID, BOT_USERNAME, GUILD_ID};

impl World {
    pub(super) fn user_json(&self, id: u64) -> Value {
        if id == BOT_USER_ID {
            return json!({
                "id": BOT_USER_ID.to_string(),
                "username": BOT_USERNAME,
                "discriminator": "0001",
                "global_name": null,
                "avatar": null,
                "bot": true,
                "public_flags": 0,
                "flags": 0,
                "banner": null,
                "accent_color": null,
                "avatar_decoration_data": null,
            });
        }
        let name = self
            .members
            .get(&id)
            .map_or_else(|| format!("user{id}"), |m| m.name.clone());
        json!({
            "id": id.to_string(),
            "username": name,
            "discriminator": "0",
            "global_name": name,
            "avatar": null,
            "public_flags": 0,
            "flags": 0,
            "banner": null,
            "accent_color": null,
            "avatar_decoration_data": null,
        })
    }

    /// The guild member object; `with_user` for interactions, without for messages.
    pub(super) fn member_json(&self, id: u64, with_user: bool, permissions: bool) -> Value {
        let (roles, joined, nick) = match self.members.get(&id) {
            Some(m) => (m.roles.clone(), m.joined, m.nick.clone()),
            None => (
                Vec::new(),
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000),
                None,
            ),
        };
        let mut member = json!({
            "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
            "nick": nick,
            "avatar": null,
            "banner": null,
            "premium_since": null,
            "joined_at": iso8601(joined),
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": null,
            "unusual_dm_activity_until": null,
        });
        if with_user {
            member["user"] = self.user_json(id);
        }
        if permissions {
            let perms = if id == BOT_USER_ID {
                BOT_PERMISSIONS
            } else {
                MEMBER_PERMISSIONS
            };
            member["permissions"] = json!(perms.to_string());
        }
        member
    }

    pub(super) fn current_user_json(&self) -> Value {
        let mut me = self.user_json(BOT_USER_ID);
        me["verified"] = json!(true);
        me["mfa_enabled"] = json!(false);
        me["email"] = Value::Null;
        me["locale"] = json!("en-US");
        me["premium_type"] = json!(0);
        me
    }

    pub(super) fn application_json(&self) -> Value {
        json!({
            "id": APPLICATION_ID.to_string(),
            "name": BOT_USERNAME,
            "icon": null,
            "description": "",
            "summary": "",
            "type": null,
            "bot_public": true,
            "bot_require_code_grant": false,
            "verify_key": "0".repeat(64),
            "flags": 0,
            "owner": self.user_json(BOT_USER_ID + 1_000),
            "team": null,
            "bot": self.user_json(BOT_USER_ID),
            "rpc_origins": [],
            "redirect_uris": [],
            "interactions_endpoint_url": null,
            "tags": [],
            "install_params": null,
            "integration_types_config": {"0": {}},
            "approximate_guild_count": 1,
        })
    }

    pub(super) fn channel_json(&self, ch: &Channel) -> Value {
        let last = ch.last_message_id.map(|m| m.to_string());
        match &ch.kind {
            ChannelKind::Text => json!({
                "id": ch.id.to_string(),
                "type": CHANNEL_TEXT,
                "guild_id": GUILD_ID.to_string(),
                "name": ch.name,
                "position": 0,
                "permission_overwrites": [],
                "nsfw": false,
                "topic": null,
                "last_message_id": last,
                "rate_limit_per_user": 0,
                "parent_id": null,
                "flags": 0,
                "default_auto_archive_duration": 1440,
            }),
            ChannelKind::Thread {
                parent,
                owner,
                private,
                archived,
                locked,
                auto_archive,
                created,
                archive_changed,
            } => {
                let mut metadata = json!({
                    "archived": archived,
                    "auto_archive_duration": auto_archive,
                    "archive_timestamp": iso8601(*archive_changed),
                    "locked": locked,
                    "create_timestamp": iso8601(*created),
                });
                if *private {
                    metadata["invitable"] = json!(true);
                }
                json!({
                    "id": ch.id.to_string(),
                    "type": ch.type_code(),
                    "guild_id": GUILD_ID.to_string(),
                    "parent_id": parent.to_string(),
                    "owner_id": owner.to_string(),
                    "name": ch.name,
                    "last_message_id": last,
                    "rate_limit_per_user": 0,
                    "flags": 0,
                    "message_count": ch.message_count,
                    "total_message_sent": ch.message_count,
                    "member_count": 1,
                    "thread_metadata": metadata,
                    "applied_tags": [],
                    "member": {
                        "id": ch.id.to_string(),
                        "user_id": owner.to_string(),
                        "join_timestamp": iso8601(*created),
                        "flags": 0,
                    },
                })
            }
            ChannelKind::Dm { user } => json!({
                "id": ch.id.to_string(),
                "type": CHANNEL_DM,
                "last_message_id": last,
                "flags": 0,
                "recipients": [self.user_json(*user)],
            }),
        }
    }

    /// A message object; `gateway` adds `guild_id` and `member` in guild channels (and
    /// members in `mentions`), as dispatches carry them and REST answers do not.
    pub(super) fn message_json(&self, m: &Stored, gateway: bool) -> Value {
        let in_guild = self.channels.get(&m.channel).is_some_and(Channel::in_guild);
        let guild_extras = gateway && in_guild;
        let mentions: Vec<Value> = m
            .mentions
            .iter()
            .map(|u| {
                let mut user = self.user_json(*u);
                if guild_extras {
                    user["member"] = self.member_json(*u, false, false);
                }
                user
            })
            .collect();
        let embeds: Vec<Value> = m
            .embeds
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if let Some(obj) = e.as_object_mut() {
                    obj.entry("type").or_insert_with(|| json!("rich"));
                }
                e
            })
            .collect();
        let attachments: Vec<Value> = m
            .attachments
            .iter()
            .map(|a| {
                // Users' files are served by the fake itself (see `uploads`).
                let host = if m.author == BOT_USER_ID {
                    "https://cdn.discordapp.com"
                } else {
                    self.base_url.as_str()
                };
                let url = format!("{host}/attachments/{}/{}/{}", m.channel, a.id, a.filename);
                let mut v = json!({
                    "id": a.id.to_string(),
                    "filename": a.filename,
                    "size": a.bytes.len(),
                    "url": url,
                    "proxy_url": url.replacen("cdn.discordapp.com", "media.discordapp.net", 1),
                });
                if let Some(ct) = &a.content_type {
                    v["content_type"] = json!(ct);
                }
                if let Some(d) = &a.description {
                    v["description"] = json!(d);
                }
                if m.flags & FLAG_EPHEMERAL != 0 {
                    v["ephemeral"] = json!(true);
                }
                if m.flags & super::uploads::FLAG_VOICE_MESSAGE != 0 {
                    v["duration_secs"] = json!(2.5);
                    v["waveform"] = json!("AAAA");
                }
                v
            })
            .collect();
        let mut v = json!({
            "id": m.id.to_string(),
            "channel_id": m.channel.to_string(),
            "type": m.kind,
            "author": self.user_json(m.author),
            "content": m.content,
            "timestamp": iso8601(m.created_at),
            "edited_timestamp": m.edited_at.map(iso8601),
            "tts": m.tts,
            "mention_everyone": m.mention_everyone,
            "mentions": mentions,
            "mention_roles": m.mention_roles.iter().map(u64::to_string).collect::<Vec<_>>(),
            "attachments": attachments,
            "embeds": embeds,
            "pinned": false,
            "flags": m.flags,
            "components": m.components,
        });
        if let Some(rec) = m.interaction.and_then(|i| self.interactions.get(&i)) {
            v["application_id"] = json!(APPLICATION_ID.to_string());
            v["webhook_id"] = json!(APPLICATION_ID.to_string());
            let mut metadata = json!({
                "id": rec.id.to_string(),
                "type": rec.kind,
                "user": self.user_json(rec.user),
                "authorizing_integration_owners": self.integration_owners(rec.channel),
            });
            if rec.original.is_some_and(|o| o != m.id) {
                metadata["original_response_message_id"] =
                    json!(rec.original.map(|o| o.to_string()));
            }
            if let Some(message) = rec.message {
                metadata["interacted_message_id"] = json!(message.to_string());
            }
            if rec.kind == 2 {
                metadata["name"] = json!(rec.name);
                v["interaction"] = json!({
                    "id": rec.id.to_string(),
                    "type": rec.kind,
                    "name": rec.name,
                    "user": self.user_json(rec.user),
                });
            }
            v["interaction_metadata"] = metadata;
        }
        if let Some(r) = m.reference {
            let mut reference = json!({
                "type": 0,
                "message_id": r.to_string(),
                "channel_id": m.channel.to_string(),
            });
            if in_guild {
                reference["guild_id"] = json!(GUILD_ID.to_string());
            }
            v["message_reference"] = reference;
            v["referenced_message"] = match self.messages.get(&r) {
                Some(referenced) => {
                    let mut inner = self.message_json_flat(referenced);
                    if guild_extras {
                        inner["guild_id"] = json!(GUILD_ID.to_string());
                    }
                    inner
                }
                None => Value::Null,
            };
        }
        if let Some(thread) = m.thread.and_then(|t| self.channels.get(&t)) {
            v["thread"] = self.channel_json(thread);
        }
        if guild_extras {
            v["guild_id"] = json!(GUILD_ID.to_string());
            v["member"] = self.member_json(m.author, false, false);
        }
        v
    }

    /// A referenced message: the REST shape without its own reference resolved.
    pub(super) fn message_json_flat(&self, m: &Stored) -> Value {
        let mut flat = m.clone();
        flat.reference = None;
        let mut v = self.message_json(&flat, false);
        if let Some(r) = m.reference {
            v["message_reference"] = json!({
                "type": 0,
                "message_id": r.to_string(),
                "channel_id": m.channel.to_string(),
            });
        }
        v
    }

    pub(super) fn integration_owners(&self, channel: u64) -> Value {
        let in_guild = self.channels.get(&channel).is_some_and(Channel::in_guild);
        if in_guild {
            json!({ "0": GUILD_ID.to_string() })
        } else {
            json!({ "0": "0" })
        }
    }

    /// The INTERACTION_CREATE payload.
    pub(super) fn interaction_json(&self, id: u64, data: Value) -> Value {
        let Some(rec) = self.interactions.get(&id) else {
            return Value::Null;
        };
        let Some(ch) = self.channels.get(&rec.channel) else {
            return Value::Null;
        };
        let in_guild = ch.in_guild();
        let mut channel = json!({
            "id": ch.id.to_string(),
            "type": ch.type_code(),
            "flags": 0,
            "last_message_id": ch.last_message_id.map(|m| m.to_string()),
        });
        if in_guild {
            channel["guild_id"] = json!(GUILD_ID.to_string());
            channel["name"] = json!(ch.name);
            channel["permissions"] = json!(MEMBER_PERMISSIONS.to_string());
            channel["nsfw"] = json!(false);
            channel["rate_limit_per_user"] = json!(0);
            if let ChannelKind::Thread { parent, .. } = ch.kind {
                channel["parent_id"] = json!(parent.to_string());
                if let Value::Object(full) = self.channel_json(ch) {
                    channel["thread_metadata"] = full["thread_metadata"].clone();
                    channel["owner_id"] = full["owner_id"].clone();
                }
            } else {
                channel["position"] = json!(0);
                channel["topic"] = Value::Null;
                channel["parent_id"] = Value::Null;
            }
        } else {
            channel["recipients"] = json!([self.user_json(rec.user)]);
        }
        let mut v = json!({
            "id": rec.id.to_string(),
            "application_id": APPLICATION_ID.to_string(),
            "type": rec.kind,
            "data": data,
            "channel_id": ch.id.to_string(),
            "channel": channel,
            "token": rec.token,
            "version": 1,
            "app_permissions": BOT_PERMISSIONS.to_string(),
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": self.integration_owners(rec.channel),
            "context": if in_guild { 0 } else { 1 },
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        });
        if in_guild {
            v["guild_id"] = json!(GUILD_ID.to_string());
            v["guild"] = json!({
                "id": GUILD_ID.to_string(),
                "locale": "en-US",
                "features": [],
            });
            v["guild_locale"] = json!("en-US");
            v["member"] = self.member_json(rec.user, true, true);
        } else {
            v["user"] = self.user_json(rec.user);
        }
        if let Some(message) = rec.message.and_then(|m| self.messages.get(&m)) {
            v["message"] = self.message_json(message, false);
        }
        v
    }
}

/// `2024-05-01T12:34:56.789000+00:00`, Discord's timestamp format.
pub(super) fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601() {
        let t = UNIX_EPOCH + Duration::from_micros(1_714_566_896_789_000);
        assert_eq!(iso8601(t), "2024-05-01T12:34:56.789000+00:00");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(iso8601(leap).starts_with("2000-02-29T"));
    }
}
