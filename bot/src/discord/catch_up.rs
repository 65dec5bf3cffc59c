//! Prompts written while the bot was away. A RESUME gets the missed events from Discord;
//! after a fresh IDENTIFY (a restart, or a session Discord forgot) the gateway handler
//! ([`super::gateway`]) runs [`catch_up`], which reads the recent messages of every bound
//! thread over REST and hands the ones no one has claimed yet to the core.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use common::event::now_ms;
use serde_json::Value;
use serenity::all::{ChannelId, GuildId, LightMethod, Message, Request, Route, UserId};
use tracing::{info, warn};

use super::inbound::{claim_and_handle, incoming_of};
use super::platform::{Discord, channel_id};
use super::rest::{Pace, Rest};
use crate::chat::core::ChatCore;

/// How far back [`catch_up`] looks for messages sent while the bot was away.
const CATCH_UP_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Messages read per bound thread when catching up.
const CATCH_UP_LIMIT: u32 = 50;

/// Discord's epoch (2015-01-01) in Unix ms: a snowflake's creation time is
/// `(id >> 22) + DISCORD_EPOCH_MS`.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Handles what users wrote in bound threads while the bot was not connected: the most
/// recent [`CATCH_UP_LIMIT`] messages of each, from the last day and after it was bound,
/// that no one has handled (claimed) yet, oldest first.
///
/// Messages read over REST carry no member, so a sender not allowed by user id has their
/// roles looked up in the thread's server.
pub async fn catch_up(core: Arc<ChatCore<Discord>>, bot: u64) {
    let rest = core.platform().rest();
    let since_window = now_ms().saturating_sub(CATCH_UP_WINDOW_MS);
    for (place, bound_ms) in core.bound_places() {
        let Ok(channel) = channel_id(&place.chat) else {
            continue;
        };
        let since = bound_ms.max(since_window);
        let req = Request::new(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Get,
        )
        .params(Some(vec![("limit", CATCH_UP_LIMIT.to_string())]));
        let list = match rest.call(Pace::Global, req).await {
            Ok(Value::Array(list)) => list,
            Ok(_) => continue,
            Err(e) => {
                warn!(channel = %channel, error = %e, "cannot read a bound thread's recent messages");
                continue;
            }
        };
        let mut msgs: Vec<Message> = list
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .filter(|m: &Message| (m.id.get() >> 22) + DISCORD_EPOCH_MS >= since)
            .collect();
        msgs.sort_by_key(|m| m.id);
        // Looked up at most once per thread and once per author.
        let mut guild: Option<Option<GuildId>> = None;
        let mut roles: HashMap<UserId, Vec<String>> = HashMap::new();
        for m in msgs {
            let Some(mut inc) = incoming_of(&m, bot) else {
                continue;
            };
            if !core.allows(&inc.from) {
                if guild.is_none() {
                    guild = Some(guild_of(rest, channel).await);
                }
                if let Some(Some(g)) = guild {
                    inc.from.roles = match roles.entry(m.author.id) {
                        Entry::Occupied(e) => e.get().clone(),
                        Entry::Vacant(e) => {
                            e.insert(member_roles(rest, g, m.author.id).await).clone()
                        }
                    };
                }
            }
            if !core.concerns(&inc) {
                continue;
            }
            if claim_and_handle(&core, m.id, inc).await {
                info!(channel = %channel, "handling a message sent while the bot was away");
            }
        }
    }
}

/// The server a channel (thread) belongs to.
async fn guild_of(rest: &Rest, channel: ChannelId) -> Option<GuildId> {
    let req = Request::new(
        Route::Channel {
            channel_id: channel,
        },
        LightMethod::Get,
    );
    let v = rest.call(Pace::Global, req).await.ok()?;
    v.get("guild_id")
        .and_then(Value::as_str)
        .and_then(|g| g.parse::<u64>().ok())
        .filter(|g| *g != 0)
        .map(GuildId::new)
}

/// A member's role ids (none when they cannot be read).
async fn member_roles(rest: &Rest, guild: GuildId, user: UserId) -> Vec<String> {
    let req = Request::new(
        Route::GuildMember {
            guild_id: guild,
            user_id: user,
        },
        LightMethod::Get,
    );
    match rest.call(Pace::Global, req).await {
        Ok(v) => v
            .get("roles")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            warn!(error = %e, "cannot read a member's roles");
            Vec::new()
        }
    }
}
