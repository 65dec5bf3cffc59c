//! The Discord adapter (serenity 0.12: gateway, models, builders) on the chat core in
//! [`crate::chat`]. [`run`] wires it up and stops it; the work is in the modules:
//!
//! - [`platform`]: [`Discord`] implements [`crate::chat::ChatPlatform`]: Discord Markdown
//!   within 2000 characters (a long answer split into up to [`ANSWER_PARTS`] messages with
//!   code blocks closed and reopened at the cuts, beyond that sent as `answer.md` with a
//!   summary embed), buttons (approvals) and a select menu (question options), threads for
//!   sessions. No message pings anyone (`allowed_mentions` is empty). [`render`] is its
//!   pure part (fitting text to a limit, action rows).
//! - [`rest`]: every request, paced to ≤ 5 messages per 5 s per channel and 50 requests/s
//!   overall, waiting out 429s.
//! - [`gateway`]: serenity's event handler (READY, interactions, messages) with the intents
//!   the adapter needs; serenity does HELLO, IDENTIFY, heartbeats and RESUME.
//! - [`commands`]: the slash commands: definitions, registration on the first READY (per
//!   configured guild and/or globally), and handling (deferred at once, so well inside
//!   Discord's 3 s, and answered by the core by editing the deferred response). In a text
//!   channel `/new` creates a public thread named after the session and binds it; in a
//!   thread or a DM it binds that place itself.
//! - [`inbound`]: Discord models as neutral inputs, and the message claims; [`files`]:
//!   message attachments and their bounded download from Discord's CDN.
//! - [`catch_up`]: nothing written while the bot was away is lost: a RESUME gets the
//!   missed events from Discord, and after a fresh IDENTIFY the bot reads the recent
//!   messages of every bound thread. Every message is claimed in SQLite before it is
//!   handled, so one seen both ways is handled once.

mod catch_up;
mod commands;
mod files;
mod gateway;
mod inbound;
mod platform;
mod render;
pub mod rest;

use std::sync::Arc;
use std::time::Duration;

use serenity::all::HttpBuilder;
use tokio::sync::watch;
use tracing::{error, info, warn};

pub use self::catch_up::catch_up;
pub use self::commands::commands;
use self::gateway::Handler;
pub use self::gateway::intents;
pub use self::platform::Discord;
use self::rest::Rest;
use crate::AppState;
use crate::chat::Access;
use crate::chat::core::ChatCore;

/// The `platform` name in the `chat_*` tables.
pub const PLATFORM: &str = "discord";

/// Discord's message length limit.
pub const TEXT_LIMIT: usize = 2000;

/// Most messages one final answer is split into; a longer answer goes as a file.
pub const ANSWER_PARTS: usize = 4;

/// How long each step of stopping may take before it is cut short.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the Discord adapter until `stop` turns true.
pub async fn run(
    state: Arc<AppState>,
    token: String,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let cfg = &state.cfg;
    let rest = Rest::new(&token, &cfg.discord_api_url)?;
    let mut http = HttpBuilder::new(&token);
    if let Some(proxy) = rest.proxy() {
        // serenity's ratelimiter would send to discord.com whatever the proxy says.
        http = http.proxy(proxy).ratelimiter_disabled(true);
    }
    let http = http.build();
    let access = Access {
        users: cfg
            .discord_allowed_users
            .iter()
            .map(u64::to_string)
            .collect(),
        roles: cfg
            .discord_allowed_roles
            .iter()
            .map(u64::to_string)
            .collect(),
    };
    if access.users.is_empty() && access.roles.is_empty() {
        warn!(
            "no one may use the Discord bot: set CCRM_BOT_DISCORD_ALLOWED_USERS or CCRM_BOT_DISCORD_ALLOWED_ROLES"
        );
    }
    let core = ChatCore::new(
        state.clone(),
        Discord::new(rest),
        access,
        cfg.chat_prompts_per_minute,
    )
    .await?;
    // Prompts a killed bot had claimed but not delivered.
    core.replay_pending().await;
    let events = tokio::spawn(core.clone().run_events(stop.clone()));
    let handler = Handler::new(
        core.clone(),
        cfg.discord_guilds.clone(),
        cfg.discord_global_commands,
    );
    let mut client = serenity::all::ClientBuilder::new_with_http(http, intents())
        .event_handler(handler)
        .await?;
    let shards = client.shard_manager.clone();
    let mut gateway = tokio::spawn(async move { client.start().await });
    info!("discord adapter running");
    let ended = tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        r = &mut gateway => {
            match r {
                Ok(Err(e)) => error!(error = %e, "the discord gateway client stopped"),
                Ok(Ok(())) => warn!("the discord gateway client stopped"),
                Err(e) => error!(error = %e, "the discord gateway task failed"),
            }
            true
        }
    };
    if !ended {
        if tokio::time::timeout(STOP_GRACE, shards.shutdown_all())
            .await
            .is_err()
        {
            warn!("the discord shards did not stop in time");
        }
        if tokio::time::timeout(STOP_GRACE, &mut gateway)
            .await
            .is_err()
        {
            warn!("the discord gateway client did not stop in time; aborting it");
            gateway.abort();
        }
    }
    if tokio::time::timeout(STOP_GRACE, events).await.is_err() {
        warn!("the chat event loop did not stop in time");
    }
    core.shutdown().await;
    Ok(())
}
