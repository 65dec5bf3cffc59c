//! The slash commands: their definitions ([`commands`]), their registration on the first
//! READY ([`register`]: a bulk overwrite per configured server, and/or globally), and
//! their handling ([`on_command`]): each is deferred at once and handed to the chat core,
//! which answers it by editing the deferred response ([`super::platform`]). Answers only
//! the asker needs (`/status`, `/sessions`, `/help`) are private unless they pass
//! `share:true`, and so is a stranger's refusal.
//!
//! The gateway handler ([`super::gateway`]) calls [`register`] and [`on_command`].

use std::sync::Arc;

use serenity::all::{
    ChannelType, CommandDataOptionValue, CommandInteraction, CommandOptionType, CreateCommand,
    CreateCommandOption, CreateInteractionResponse, CreateInteractionResponseMessage, GuildId,
    LightMethod, Request, Route,
};
use serenity::model::id::ApplicationId;
use tracing::{error, warn};

use super::inbound::{place_of, sender};
use super::platform::{Discord, reply_handle};
use super::rest::{Pace, Rest};
use crate::chat::core::ChatCore;
use crate::chat::{Attachment, AttachmentKind, ChatCommand, Incoming, Input, NewArgs};

/// The slash commands, as registered (bulk overwrite) on the first READY.
pub fn commands() -> Vec<CreateCommand> {
    let text = |name: &str, what: &str, required: bool| {
        CreateCommandOption::new(CommandOptionType::String, name, what).required(required)
    };
    let share = || {
        CreateCommandOption::new(
            CommandOptionType::Boolean,
            "share",
            "Show the answer to everyone here (it is private otherwise)",
        )
    };
    vec![
        CreateCommand::new("new")
            .description("Start a Claude Code session in a new thread")
            .add_option(text(
                "directory",
                "Working directory on the daemon's machine",
                false,
            ))
            .add_option(text(
                "daemon",
                "Which daemon (needed when several are connected)",
                false,
            ))
            .add_option(text("name", "A name for the session", false))
            .add_option(CreateCommandOption::new(
                CommandOptionType::Attachment,
                "zip",
                "A project .zip: unpacked into a workspace the session starts in",
            ))
            .add_option(text(
                "workspace",
                "With a zip: the workspace id (else named after the file)",
                false,
            ))
            .add_option(CreateCommandOption::new(
                CommandOptionType::Boolean,
                "overwrite",
                "With a zip: replace that workspace if it exists (else a fresh id)",
            )),
        CreateCommand::new("sessions")
            .description("List sessions, with buttons to show one here")
            .add_option(share()),
        CreateCommand::new("status")
            .description("The session shown here: state, machine, directory, cost")
            .add_option(share()),
        CreateCommand::new("stop").description("Stop the session shown here"),
        CreateCommand::new("interrupt").description("End the running turn (queued prompts stay)"),
        CreateCommand::new("resume")
            .description("Bring a stopped or failed session back, with its history"),
        CreateCommand::new("bind")
            .description("Show an existing session here")
            .add_option(text("session", "Session id, id prefix or name", true)),
        CreateCommand::new("prompt")
            .description("Send a prompt to the session bound here")
            .add_option(text("text", "The prompt", true)),
        CreateCommand::new("help")
            .description("What the bot can do")
            .add_option(share()),
    ]
}

/// Registers [`commands`] for application `app` in each of `guilds`, and globally when
/// `global` is set or no server is configured. False when a registration failed (the
/// caller tries again on the next READY).
pub async fn register(rest: &Rest, app: ApplicationId, guilds: &[u64], global: bool) -> bool {
    let body = match serde_json::to_vec(&commands()) {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "cannot encode the slash commands");
            return false;
        }
    };
    let mut ok = true;
    for guild in guilds {
        let Some(guild_id) = (*guild != 0).then(|| GuildId::new(*guild)) else {
            continue;
        };
        let req = Request::new(
            Route::GuildCommands {
                application_id: app,
                guild_id,
            },
            LightMethod::Put,
        )
        .body(Some(body.clone()));
        if let Err(e) = rest.call(Pace::Global, req).await {
            ok = false;
            error!(
                guild,
                error = %e,
                "registering the slash commands failed (is the bot in that server, invited with the applications.commands scope?)"
            );
        }
    }
    if global || guilds.is_empty() {
        let req = Request::new(
            Route::Commands {
                application_id: app,
            },
            LightMethod::Put,
        )
        .body(Some(body));
        if let Err(e) = rest.call(Pace::Global, req).await {
            ok = false;
            error!(error = %e, "registering the global slash commands failed");
        }
    }
    ok
}

/// The file given as the `zip` option of `/new`, from the interaction's resolved data.
fn zip_of(cmd: &CommandInteraction) -> Option<Attachment> {
    let id = cmd.data.options.iter().find_map(|o| match o.value {
        CommandDataOptionValue::Attachment(id) if o.name == "zip" => Some(id),
        _ => None,
    })?;
    let a = cmd.data.resolved.attachments.get(&id)?;
    Some(Attachment {
        name: a.filename.clone(),
        size: Some(u64::from(a.size)),
        kind: AttachmentKind::File,
        handle: a.url.clone(),
    })
}

/// The chat command of a slash command interaction.
fn command_of(cmd: &CommandInteraction) -> Option<ChatCommand> {
    let opt = |name: &str| {
        cmd.data
            .options
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| match &o.value {
                CommandDataOptionValue::String(s) => Some(s.trim().to_owned()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
    };
    let flag = |name: &str| {
        cmd.data
            .options
            .iter()
            .any(|o| o.name == name && matches!(o.value, CommandDataOptionValue::Boolean(true)))
    };
    Some(match cmd.data.name.as_str() {
        "new" => ChatCommand::New(NewArgs {
            dir: opt("directory"),
            name: opt("name"),
            daemon: opt("daemon"),
            workspace: opt("workspace"),
            overwrite: flag("overwrite"),
            zip: zip_of(cmd),
        }),
        "sessions" => ChatCommand::List,
        "status" => ChatCommand::Status,
        "stop" => ChatCommand::Stop,
        "interrupt" => ChatCommand::Interrupt,
        "resume" => ChatCommand::Resume,
        "bind" => ChatCommand::Bind(opt("session").unwrap_or_default()),
        "prompt" => ChatCommand::Prompt(opt("text").unwrap_or_default()),
        "help" => ChatCommand::Help,
        _ => return None,
    })
}

/// Defers slash command `cmd` and hands it to `core` (see the module docs). In a text
/// channel `/new` opens a thread; in a thread or a DM it binds that place itself.
pub async fn on_command(core: &Arc<ChatCore<Discord>>, cmd: CommandInteraction) {
    let platform = core.platform();
    let roles = cmd.member.as_ref().map(|m| m.roles.as_slice());
    let nick = cmd.member.as_ref().and_then(|m| m.nick.as_deref());
    let from = sender(&cmd.user, nick, roles);
    let Some(command) = command_of(&cmd) else {
        let msg = CreateInteractionResponseMessage::new()
            .content("Unknown command: the bot's commands have changed; try again in a moment.")
            .ephemeral(true);
        if let Err(e) = platform
            .respond(cmd.id, &cmd.token, &CreateInteractionResponse::Message(msg))
            .await
        {
            warn!(
                error = format!("{e:#}"),
                "answering an unknown command failed"
            );
        }
        return;
    };
    // Acknowledge first: Discord drops an interaction not answered within 3 s. A refusal
    // is answered privately, and so are answers only the asker needs unless shared.
    let shared = cmd
        .data
        .options
        .iter()
        .any(|o| o.name == "share" && matches!(o.value, CommandDataOptionValue::Boolean(true)));
    let personal = matches!(
        command,
        ChatCommand::Status | ChatCommand::List | ChatCommand::Help
    );
    let private = !core.allows(&from) || (personal && !shared);
    let defer = CreateInteractionResponse::Defer(
        CreateInteractionResponseMessage::new().ephemeral(private),
    );
    let deferred = match platform.respond(cmd.id, &cmd.token, &defer).await {
        Ok(()) => true,
        Err(e) => {
            warn!(
                error = format!("{e:#}"),
                "deferring a slash command failed; answering in the channel instead"
            );
            false
        }
    };
    let threads = cmd
        .channel
        .as_ref()
        .is_some_and(|c| matches!(c.kind, ChannelType::Text | ChannelType::News));
    let inc = Incoming {
        place: place_of(cmd.channel_id),
        from,
        threads,
        direct: true,
        msg_id: None,
        reply: deferred.then(|| reply_handle(cmd.application_id, &cmd.token)),
        input: Input::Command(command),
    };
    core.handle(inc).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_serialize_as_discord_expects() {
        let v = serde_json::to_value(commands()).expect("json");
        let names: Vec<&str> = v
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "new",
                "sessions",
                "status",
                "stop",
                "interrupt",
                "resume",
                "bind",
                "prompt",
                "help"
            ]
        );
        let new = &v[0];
        assert_eq!(new["options"][0]["name"], "directory");
        assert_eq!(new["options"][0]["type"], 3);
        assert_eq!(v[6]["options"][0]["required"], true);
        assert_eq!(v[1]["options"][0]["name"], "share");
        assert_eq!(v[1]["options"][0]["type"], 5);
    }
}
