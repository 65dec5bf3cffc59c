//! The chat commands: `/new`, `/list`, `/status`, `/stop`, `/interrupt`, `/bind`,
//! `/prompt` and `/help`, as parsed by each adapter into a [`ChatCommand`]. [`run`] audits
//! the command, runs it and answers it: in place when the input carries a reply handle (a
//! Discord interaction), else as a new message. `/new` and `/bind` bind a place (a new
//! thread where the chat has them) and announce the session there.
//!
//! Commands reach daemons through [`Ctx::command`] and the store through [`Ctx::state`];
//! `/prompt` sends through [`super::prompts::send`], skipping the debounce.

use common::event::now_ms;
use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, SessionInfo, SessionRef, StartArgs};
use serde_json::json;
use tracing::error;

use super::ctx::{Ctx, hub_msg};
use super::prompts;
use super::render::Rich;
use super::{ChatCommand, ChatPlatform, Incoming, NewArgs, Outgoing, Place, Sender};
use crate::db::ChatBinding;

/// What a command answers: text, nothing (the news went elsewhere), or why it failed.
type Answer = Result<Option<Rich>, String>;

/// The first 8 characters of a session id, as lists show it.
fn short(id: &SessionId) -> String {
    id.to_string().chars().take(8).collect()
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
        ChatCommand::Help => Ok(Some(help(ctx.platform.new_usage()))),
        ChatCommand::List => cmd_list(ctx, &inc).await,
        ChatCommand::Status => cmd_status(ctx, &inc).await,
        ChatCommand::Stop => cmd_action(ctx, &inc, true).await,
        ChatCommand::Interrupt => cmd_action(ctx, &inc, false).await,
        ChatCommand::New(args) => cmd_new(ctx, &inc, args).await,
        ChatCommand::Bind(arg) => cmd_bind(ctx, &inc, &arg).await,
        ChatCommand::Prompt(text) => cmd_prompt(ctx, &inc, text).await,
    };
    let text = match answer {
        Ok(Some(t)) => t,
        // Shown elsewhere (a new thread), with no answer awaited in place (`announce`).
        Ok(None) => return,
        Err(e) => Rich::text("⚠️ ").push(e),
    };
    ctx.answer(&inc.place, inc.reply.as_deref(), Outgoing::text(text))
        .await;
}

/// The binding of the place `inc` came from, or the error a command says without one.
fn bound<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Result<ChatBinding, String> {
    ctx.bindings
        .get(&inc.place)
        .ok_or_else(|| "no session is bound here; use /new or /bind".to_owned())
}

/// Binds `place` to `session` on `daemon`, on behalf of `from`.
async fn bind<P: ChatPlatform>(
    ctx: &Ctx<P>,
    place: &Place,
    session: SessionId,
    daemon: DaemonId,
    from: &Sender,
) -> Result<(), String> {
    let b = ChatBinding {
        platform: ctx.platform.name().to_owned(),
        chat_id: place.chat.clone(),
        thread_id: place.thread.clone(),
        session_id: session,
        daemon_id: daemon,
        created_by: ctx.gate.actor(from),
        created_ms: now_ms(),
    };
    ctx.bindings.bind(b).await.map_err(|e| e.to_string())
}

/// Where a newly bound session is shown: a new thread in a forum's general area, the
/// current place otherwise.
async fn target_place<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    title: &str,
) -> anyhow::Result<Place> {
    if inc.threads && inc.place.thread.is_none() {
        return ctx.platform.open_thread(&inc.place.chat, title).await;
    }
    Ok(inc.place.clone())
}

/// What to answer after a command bound `place`: the news itself when that is where the
/// command was given; else the news goes to `place` and the command gets a pointer to it
/// when it awaits an answer in place.
async fn announce<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    place: &Place,
    news: Rich,
    title: &str,
) -> Option<Rich> {
    if *place == inc.place {
        return Some(news);
    }
    ctx.send(place, Outgoing::text(news)).await;
    inc.reply.as_ref()?;
    let mut ack = Rich::text("➡️ ").bold(title.to_owned());
    ack = match ctx.platform.link(place) {
        Some(link) => ack.push(" is in ").md(link),
        None => ack.push(" has its own thread."),
    };
    Some(ack)
}

async fn cmd_new<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, args: NewArgs) -> Answer {
    let usage = ctx.platform.new_usage();
    let dir = args
        .dir
        .filter(|d| !d.trim().is_empty())
        .or_else(|| {
            ctx.state
                .cfg
                .chat_default_dir
                .as_ref()
                .map(|d| d.display().to_string())
        })
        .ok_or_else(|| {
            format!("which directory? Usage: {usage} (or set chat_default_dir in the bot's config)")
        })?;
    let name = args.name.filter(|n| !n.trim().is_empty());
    let daemon = ctx.pick_daemon(args.daemon)?;
    let args = StartArgs {
        cwd: dir.clone().into(),
        name: name.clone(),
        origin: Some(ctx.origin(&inc.from)),
        ..StartArgs::default()
    };
    let data = ctx
        .command(&daemon, Command::SessionStart(args))
        .await
        .map_err(hub_msg)?;
    let info = serde_json::from_value::<SessionInfo>(data)
        .map_err(|e| format!("the daemon's answer did not parse: {e}"))?;
    if let Err(e) = ctx.state.db.upsert_session(&daemon, &info, now_ms()).await {
        error!(error = %e, "storing a new session failed");
    }
    ctx.gate
        .audit(
            &inc.from,
            "session.start",
            &info.id.to_string(),
            json!({"daemon": daemon, "cwd": dir}),
        )
        .await;
    let title = info
        .name
        .clone()
        .unwrap_or_else(|| format!("session {}", short(&info.id)));
    let place = target_place(ctx, inc, &title)
        .await
        .map_err(|e| format!("session {} started, but: {e:#}", info.id))?;
    bind(ctx, &place, info.id, daemon.clone(), &inc.from).await?;
    let text = Rich::text("🟢 Session ")
        .bold(title.clone())
        .push(" started on ")
        .code(daemon.0)
        .push(" in ")
        .code(info.cwd.display().to_string())
        .push("\nid ")
        .code(info.id.to_string())
        .push("\nWrite here to prompt it.");
    Ok(announce(ctx, inc, &place, text, &title).await)
}

async fn cmd_prompt<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, text: String) -> Answer {
    let b = bound(ctx, inc)?;
    if text.trim().is_empty() {
        return Err("usage: /prompt <text>".into());
    }
    if !ctx.gate.within_rate(&inc.from, &b.session_id).await {
        return Err("you are sending prompts faster than allowed; please wait a moment".into());
    }
    let notes = prompts::send(ctx, &b, &inc.from, text, 1).await?;
    let mut out = Rich::text("📨 Prompt sent.");
    if !notes.is_empty() {
        out = out.push(format!(" {notes}"));
    }
    Ok(Some(out))
}

async fn cmd_bind<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, arg: &str) -> Answer {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err("usage: /bind <session id, id prefix or name>".into());
    }
    let rows = ctx
        .state
        .db
        .list_sessions(None, None)
        .await
        .map_err(|e| e.to_string())?;
    let found: Vec<_> = rows
        .into_iter()
        .filter(|r| r.info.id.to_string().starts_with(arg) || r.info.name.as_deref() == Some(arg))
        .collect();
    let row = match found.as_slice() {
        [one] => one.clone(),
        [] => return Err(format!("no session matches `{arg}`")),
        _ => {
            return Err(format!(
                "`{arg}` matches several sessions; give more of the id"
            ));
        }
    };
    let title = row
        .info
        .name
        .clone()
        .unwrap_or_else(|| format!("session {}", short(&row.info.id)));
    let place = target_place(ctx, inc, &title)
        .await
        .map_err(|e| format!("{e:#}"))?;
    bind(ctx, &place, row.info.id, row.daemon_id.clone(), &inc.from).await?;
    ctx.gate
        .audit(
            &inc.from,
            "session.bind",
            &row.info.id.to_string(),
            json!({"chat": place.chat, "thread": place.thread}),
        )
        .await;
    let text = Rich::text("🔗 Bound to ")
        .bold(title.clone())
        .push(format!(" ({})", row.info.state));
    Ok(announce(ctx, inc, &place, text, &title).await)
}

async fn cmd_list<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming) -> Answer {
    let rows = ctx
        .state
        .db
        .list_sessions(None, None)
        .await
        .map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Ok(Some(Rich::text(
            "No sessions yet. Start one with /new <dir>.",
        )));
    }
    let here = ctx.bindings.get(&inc.place).map(|b| b.session_id);
    let mut text = Rich::text("Sessions:\n");
    for r in rows.iter().rev().take(30) {
        let name = r.info.name.clone().unwrap_or_default();
        text = text
            .push("• ")
            .code(short(&r.info.id))
            .push(format!(" {name} — {} on {}", r.info.state, r.daemon_id));
        if here == Some(r.info.id) {
            text = text.push(" ← here");
        }
        text = text.push("\n");
    }
    Ok(Some(text))
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
    let online = ctx.state.hub.is_online(&row.daemon_id);
    let mut text = Rich::text("Session ")
        .bold(i.name.clone().unwrap_or_else(|| short(&i.id)))
        .push("\nid ")
        .code(i.id.to_string())
        .push(format!("\nstate: {}", i.state));
    if let Some(r) = &i.reason {
        text = text.push(format!(" ({r})"));
    }
    text = text
        .push("\ndir: ")
        .code(i.cwd.display().to_string())
        .push(format!(
            "\ndaemon: {} ({})\nturns: {}, queued: {}, pending approvals: {}",
            row.daemon_id,
            if online { "online" } else { "offline" },
            i.turns,
            i.queued,
            i.pending
        ));
    if let Some(c) = i.cost_usd {
        text = text.push(format!("\ncost: ${c:.4}"));
    }
    Ok(Some(text))
}

/// `/stop` (`stop`) or `/interrupt`.
async fn cmd_action<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, stop: bool) -> Answer {
    let b = bound(ctx, inc)?;
    let r = SessionRef {
        session: b.session_id.to_string(),
    };
    let (cmd, action) = if stop {
        (Command::SessionStop(r), "session.stop")
    } else {
        (Command::SessionInterrupt(r), "session.interrupt")
    };
    let data = ctx.command(&b.daemon_id, cmd).await.map_err(hub_msg)?;
    if let Ok(info) = serde_json::from_value::<SessionInfo>(data)
        && let Err(e) = ctx
            .state
            .db
            .upsert_session(&b.daemon_id, &info, now_ms())
            .await
    {
        error!(error = %e, "storing a session failed");
    }
    ctx.gate
        .audit(&inc.from, action, &b.session_id.to_string(), json!({}))
        .await;
    Ok(Some(Rich::text(if stop {
        "⏹ Stop requested."
    } else {
        "⏸ Interrupt requested."
    })))
}

/// The `/help` text; `new_usage` is how `/new` is written on the platform.
fn help(new_usage: &str) -> Rich {
    Rich::text("ccrm drives Claude Code sessions from here.\n\n")
            .code(new_usage.to_owned())
            .push(" start a session (in a new thread or topic where the chat has them)\n")
            .code("/list")
            .push(" all sessions\n")
            .code("/status")
            .push(" the session bound here\n")
            .code("/stop")
            .push(" stop it\n")
            .code("/interrupt")
            .push(" interrupt its turn\n")
            .code("/bind <session>")
            .push(" show an existing session here\n")
            .code("/prompt <text>")
            .push(" send a prompt at once\n\n")
            .push("Anything else you write in a bound thread, topic or chat is a prompt; messages sent a moment apart are joined.")
}
