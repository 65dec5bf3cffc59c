//! The chat commands: `/new`, `/list` (`/sessions`), `/status`, `/stop`, `/interrupt`,
//! `/resume`, `/bind`, `/prompt` and `/help`, as parsed by each adapter into a
//! [`ChatCommand`]. [`run`] audits the command, runs it and answers it: in place when the
//! input carries a reply handle (a Discord interaction), else as a new message. `/new` and
//! `/bind` are in [`super::places`], which also serves the buttons that bind and start.
//!
//! Answers name machines by hostname and people by name; `/help` lists exactly the
//! commands of the platform, in its own syntax ([`ChatPlatform::usage`]). Commands reach
//! daemons through [`Ctx::command`]; `/prompt` sends through [`super::prompts::send`],
//! skipping the debounce.

use common::event::now_ms;
use common::ids::SessionId;
use common::ipc::{Command, SessionInfo, SessionRef};
use serde_json::{Value, json};
use tracing::error;

use super::ctx::{Ctx, Hush, daemon_label, hub_msg};
use super::render::Rich;
use super::{
    Button, ButtonStyle, ChatCommand, ChatPlatform, CommandKind, Incoming, Outgoing, places,
    prompts,
};
use crate::db::ChatBinding;

/// What a command answers: a message, nothing (the news went elsewhere), or why it failed.
pub type Answer = Result<Option<Outgoing>, String>;

/// Sessions listed by `/list`, and Bind buttons offered under it.
const LISTED: usize = 30;
const BIND_BUTTONS: usize = 8;

/// The first 8 characters of a session id, as lists show it.
pub fn short(id: &SessionId) -> String {
    id.to_string().chars().take(8).collect()
}

/// How `cmd` is written on this platform (its plain name when it has no usage).
pub fn usage<P: ChatPlatform>(ctx: &Ctx<P>, cmd: CommandKind) -> &'static str {
    ctx.platform.usage(cmd).unwrap_or(match cmd {
        CommandKind::New => "/new",
        CommandKind::List => "/list",
        CommandKind::Status => "/status",
        CommandKind::Stop => "/stop",
        CommandKind::Interrupt => "/interrupt",
        CommandKind::Resume => "/resume",
        CommandKind::Bind => "/bind",
        CommandKind::Prompt => "/prompt",
        CommandKind::Help => "/help",
    })
}

/// Runs `cmd` given in `inc` and answers it (see the module docs).
pub async fn run<P: ChatPlatform>(ctx: &Ctx<P>, inc: Incoming, cmd: ChatCommand) {
    let name = format!("{cmd:?}");
    ctx.gate
        .audit(
            &inc.from,
            "chat.command",
            &inc.place.chat,
            json!({"command": name}),
        )
        .await;
    let answer = match cmd {
        ChatCommand::Help => Ok(Some(Outgoing::text(help(ctx)))),
        ChatCommand::List => cmd_list(ctx, &inc).await,
        ChatCommand::Status => cmd_status(ctx, &inc).await,
        ChatCommand::Stop => cmd_stop(ctx, &inc).await,
        ChatCommand::Interrupt => cmd_interrupt(ctx, &inc).await,
        ChatCommand::Resume => cmd_resume(ctx, &inc).await,
        ChatCommand::New(args) => places::new(ctx, &inc, args).await,
        ChatCommand::Bind(arg) => places::bind_arg(ctx, &inc, &arg).await,
        ChatCommand::Prompt(text) => cmd_prompt(ctx, &inc, text).await,
    };
    let msg = match answer {
        Ok(Some(m)) => m,
        // Shown elsewhere (a new thread), with no answer awaited in place.
        Ok(None) => return,
        Err(e) => Outgoing::text(Rich::text("⚠️ ").push(e)),
    };
    ctx.answer(&inc.place, inc.reply.as_deref(), msg).await;
}

/// The binding of the place `inc` came from, or the error a command says without one.
pub fn bound<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Result<ChatBinding, String> {
    ctx.bindings.get(&inc.place).ok_or_else(|| {
        format!(
            "no session is shown here. Start one with {}, or show one with {} ({} lists them).",
            usage(ctx, CommandKind::New),
            usage(ctx, CommandKind::Bind),
            usage(ctx, CommandKind::List)
        )
    })
}

/// Stores what a daemon said about a session (logged when it fails).
async fn store<P: ChatPlatform>(ctx: &Ctx<P>, b: &ChatBinding, data: Value) {
    if let Ok(info) = serde_json::from_value::<SessionInfo>(data)
        && let Err(e) = ctx
            .state
            .db
            .upsert_session(&b.daemon_id, &info, now_ms())
            .await
    {
        error!(error = %e, "storing a session failed");
    }
}

/// The stored state of the bound session, when the store knows it.
async fn stored_state<P: ChatPlatform>(
    ctx: &Ctx<P>,
    b: &ChatBinding,
) -> Option<common::event::SessionState> {
    ctx.state
        .db
        .get_session(&b.session_id)
        .await
        .ok()
        .map(|r| r.info.state)
}

async fn cmd_prompt<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, text: String) -> Answer {
    let b = bound(ctx, inc)?;
    if text.trim().is_empty() {
        return Err(format!("usage: {}", usage(ctx, CommandKind::Prompt)));
    }
    if !ctx.gate.within_rate(&inc.from, &b.session_id).await {
        return Err(prompts::TOO_FAST.to_owned());
    }
    match prompts::send(ctx, &b, &inc.from, text.clone(), 1).await {
        Ok(notes) => {
            let mut out = Rich::text("📨 Prompt sent.");
            if !notes.is_empty() {
                out = out.push(format!(" {notes}"));
            }
            Ok(Some(Outgoing::text(out)))
        }
        Err(e) => Ok(Some(prompts::not_sent(ctx, &b, inc, text, e).await)),
    }
}

async fn cmd_list<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Answer {
    let rows = ctx
        .state
        .db
        .list_sessions(None, None)
        .await
        .map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Ok(Some(Outgoing::text(Rich::text(format!(
            "No sessions yet. Start one with {}.",
            usage(ctx, CommandKind::New)
        )))));
    }
    let daemons = ctx.daemons().await;
    let here = ctx.bindings.get(&inc.place).map(|b| b.session_id);
    let mut text = Rich::text("Sessions:\n");
    let mut buttons = Vec::new();
    for r in rows.iter().rev().take(LISTED) {
        let title = places::title(&r.info);
        text = text
            .push("• ")
            .bold(title.clone())
            .push(" ")
            .code(short(&r.info.id))
            .push(format!(
                " — {} on {}",
                r.info.state,
                daemon_label(&daemons, &r.daemon_id)
            ));
        if here == Some(r.info.id) {
            text = text.push(" ← here");
        } else if buttons.len() < BIND_BUTTONS {
            buttons.push(vec![Button {
                label: format!("🔗 Show {title} here"),
                data: format!("b:{}", r.info.id),
                style: ButtonStyle::Secondary,
            }]);
        }
        text = text.push("\n");
    }
    if rows.len() > LISTED {
        text = text.push(format!("… and {} older\n", rows.len() - LISTED));
    }
    Ok(Some(Outgoing {
        text,
        buttons,
        choice: false,
    }))
}

async fn cmd_status<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Answer {
    let b = bound(ctx, inc)?;
    let row = ctx
        .state
        .db
        .get_session(&b.session_id)
        .await
        .map_err(|e| e.to_string())?;
    let i = &row.info;
    let online = crate::replica::online_somewhere(&ctx.state, &row.daemon_id).await;
    let daemons = ctx.daemons().await;
    let mut text = Rich::text("Session ")
        .bold(places::title(i))
        .push(format!("\nstate: {}", i.state));
    if let Some(r) = &i.reason {
        text = text.push(format!(" ({r})"));
    }
    text = text
        .push(format!(
            "\nmachine: {} ({})",
            daemon_label(&daemons, &row.daemon_id),
            if online { "online" } else { "offline" }
        ))
        .push("\ndirectory: ")
        .code(i.cwd.display().to_string())
        .push(format!(
            "\nturns: {}, queued: {}, pending approvals: {}",
            i.turns, i.queued, i.pending
        ));
    if let Some(c) = i.cost_usd {
        text = text.push(format!("\ncost: ${c:.4}"));
    }
    text = text.push("\nid ").code(i.id.to_string());
    let mut msg = Outgoing::text(text);
    if !i.state.is_live() {
        msg.buttons = vec![vec![places::resume_button(i.id)]];
    }
    Ok(Some(msg))
}

async fn cmd_stop<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Answer {
    let b = bound(ctx, inc)?;
    if stored_state(ctx, &b).await.is_some_and(|s| !s.is_live()) {
        return Ok(Some(Outgoing::text(Rich::text(format!(
            "It is already stopped. {} brings it back.",
            usage(ctx, CommandKind::Resume)
        )))));
    }
    let r = SessionRef {
        session: b.session_id.to_string(),
    };
    // This answer says "stopped"; the session's own notice would say it again here.
    ctx.hush(b.session_id, &inc.place, Hush::Stopped);
    let data = match ctx.command(&b.daemon_id, Command::SessionStop(r)).await {
        Ok(d) => d,
        Err(e) => {
            ctx.unhush(b.session_id, &inc.place, Hush::Stopped);
            return Err(hub_msg(e));
        }
    };
    store(ctx, &b, data).await;
    ctx.gate
        .audit(
            &inc.from,
            "session.stop",
            &b.session_id.to_string(),
            json!({}),
        )
        .await;
    Ok(Some(Outgoing {
        text: Rich::text(format!("⏹ Stopped by {}.", inc.from.name)),
        buttons: vec![vec![places::resume_button(b.session_id)]],
        choice: false,
    }))
}

async fn cmd_interrupt<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Answer {
    let b = bound(ctx, inc)?;
    let r = SessionRef {
        session: b.session_id.to_string(),
    };
    ctx.hush(b.session_id, &inc.place, Hush::Interrupted);
    let data = match ctx
        .command(&b.daemon_id, Command::SessionInterrupt(r))
        .await
    {
        Ok(d) => d,
        Err(e) => {
            ctx.unhush(b.session_id, &inc.place, Hush::Interrupted);
            return Err(hub_msg(e));
        }
    };
    let interrupted = data
        .get("interrupted")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    ctx.gate
        .audit(
            &inc.from,
            "session.interrupt",
            &b.session_id.to_string(),
            json!({"interrupted": interrupted}),
        )
        .await;
    if !interrupted {
        ctx.unhush(b.session_id, &inc.place, Hush::Interrupted);
        return Ok(Some(Outgoing::text(Rich::text(
            "Nothing is running, so there is nothing to interrupt.",
        ))));
    }
    Ok(Some(Outgoing::text(Rich::text(format!(
        "⏸ Interrupted by {}. Queued prompts stay queued.",
        inc.from.name
    )))))
}

async fn cmd_resume<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Answer {
    let b = bound(ctx, inc)?;
    places::resume(ctx, &inc.from, &b).await.map(Some)
}

/// The `/help` text: exactly the platform's commands, in its syntax.
pub fn help<P: ChatPlatform>(ctx: &Ctx<P>) -> Rich {
    let mut text = Rich::text("ccrm drives Claude Code sessions from here.\n\n");
    for cmd in CommandKind::ALL {
        if let Some(u) = ctx.platform.usage(cmd) {
            text = text.code(u).push(format!(" — {}\n", cmd.about()));
        }
    }
    text.push(
        "\nAnything else you write where a session is shown is a prompt; messages sent a moment apart are joined.",
    )
}
