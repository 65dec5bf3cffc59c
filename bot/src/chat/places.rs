//! Sessions and the places that show them: `/new` (with a menu of the machine's recent
//! directories when no directory is given; with a zip, [`super::workspace`]), `/bind` and the Bind buttons of `/list`, and
//! resuming a stopped session (`/resume`, the Resume buttons).
//!
//! In a chat that holds threads (a Telegram forum, a Discord text channel) a session gets
//! its own thread, named after the session or its directory; `/bind` there reuses the
//! thread the session already has. The command is acknowledged where it was typed, with a
//! link to the thread, and the news goes into the thread.

use std::collections::HashSet;
use std::path::Path;

use common::event::now_ms;
use common::ids::{DaemonId, SessionId};
use common::ipc::{Command, SessionInfo, SessionRef, StartArgs};
use serde_json::json;
use tracing::error;

use super::commands::{Answer, short, usage};
use super::ctx::{Ctx, Offer, daemon_label, hub_msg};
use super::render::{self, Rich};
use super::workspace;
use super::{
    Ack, Button, ButtonStyle, ChatPlatform, CommandKind, Incoming, NewArgs, Outgoing, Place, Sender,
};
use crate::db::{ChatBinding, SessionRow};

/// Recent directories offered by `/new` without one.
const RECENT_DIRS: usize = 6;

/// Longest directory shown on a `/new` menu button (its end: the part that tells them apart).
const DIR_LABEL: usize = 56;

/// The last `max` characters of `s`, starting with `…` when cut.
fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let rest: String = s.chars().skip(n - max + 1).collect();
    format!("…{rest}")
}

/// What people call a session: its name, else its directory's last component.
pub fn title(info: &SessionInfo) -> String {
    if let Some(n) = info.name.as_deref().filter(|n| !n.trim().is_empty()) {
        return n.to_owned();
    }
    dir_title(&info.cwd.display().to_string())
        .unwrap_or_else(|| format!("session {}", short(&info.id)))
}

/// The last component of a directory (`/srv/app/` → `app`).
fn dir_title(dir: &str) -> Option<String> {
    Path::new(dir.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
}

/// The button that resumes `session`.
pub fn resume_button(session: SessionId) -> Button {
    Button {
        label: "▶️ Resume".to_owned(),
        data: format!("r:{session}"),
        style: ButtonStyle::Primary,
    }
}

/// `/new`: starts a session in the given directory, or offers the recent ones.
pub async fn new<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, mut args: NewArgs) -> Answer {
    if let Some(zip) = args.zip.take() {
        if !workspace::is_zip(&zip.name) {
            return Err(format!(
                "{} with a file takes a .zip (it becomes the session's workspace); {} is not one",
                usage(ctx, CommandKind::New),
                zip.name
            ));
        }
        let made = workspace::from_zip(ctx, inc, args, zip).await?;
        return start_with(ctx, inc, &made.daemon, made.start, Some(made.note)).await;
    }
    let name = args.name.filter(|n| !n.trim().is_empty());
    let wanted = args.daemon.filter(|d| !d.trim().is_empty());
    if let Some(dir) = args.dir.filter(|d| !d.trim().is_empty()) {
        let daemon = ctx.pick_daemon(wanted).await?;
        return start(ctx, inc, &daemon, dir, name).await;
    }
    // No directory: the recent ones of the machine (of every connected one when several
    // are and none was named), else the configured default.
    let daemons: Vec<DaemonId> = match ctx.pick_daemon(wanted.clone()).await {
        Ok(d) => vec![d],
        Err(e) if wanted.is_some() => return Err(e),
        Err(e) => {
            let online = crate::replica::online_anywhere(&ctx.state).await;
            if online.is_empty() {
                return Err(e);
            }
            online
        }
    };
    let dirs = recent_dirs(ctx, &daemons).await;
    let default = ctx
        .state
        .cfg
        .chat_default_dir
        .as_ref()
        .map(|d| d.display().to_string());
    if dirs.is_empty() {
        let (Some(dir), [daemon]) = (default, daemons.as_slice()) else {
            return Err(format!(
                "which directory? Usage: {} (or set chat_default_dir in the bot's config)",
                usage(ctx, CommandKind::New)
            ));
        };
        return start(ctx, inc, daemon, dir, name).await;
    }
    let mut choices: Vec<(DaemonId, String)> = Vec::new();
    if let (Some(d), [daemon]) = (default, daemons.as_slice())
        && !dirs.iter().any(|(_, x)| x == &d)
    {
        choices.push((daemon.clone(), d));
    }
    choices.extend(dirs);
    choices.truncate(RECENT_DIRS);
    let known = ctx.daemons().await;
    let several = daemons.len() > 1;
    let offer = ctx.offer(Offer {
        dirs: choices.clone(),
        name,
    });
    let buttons = choices
        .iter()
        .enumerate()
        .map(|(i, (daemon, dir))| {
            let mut label = tail(dir, DIR_LABEL);
            if several {
                label = format!("{label} ({})", daemon_label(&known, daemon));
            }
            vec![Button {
                label,
                data: format!("n:{offer}:{i}"),
                style: ButtonStyle::Secondary,
            }]
        })
        .collect();
    Ok(Some(Outgoing {
        text: Rich::text(format!(
            "📂 Start a session in which directory? Pick a recent one, or give one: {}",
            usage(ctx, CommandKind::New)
        )),
        buttons,
        choice: true,
    }))
}

/// A press of a `/new` menu choice (`n:<offer>:<i>`).
pub async fn new_from_offer<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, data: &str) -> Answer {
    let mut parts = data.splitn(3, ':').skip(1);
    let (Some(offer), Some(i)) = (
        parts.next().and_then(|o| o.parse::<u64>().ok()),
        parts.next().and_then(|i| i.parse::<usize>().ok()),
    ) else {
        return Err("unknown button".to_owned());
    };
    let Some(o) = ctx.offered(offer) else {
        return Err(format!(
            "this menu is from before a restart; run {} again",
            usage(ctx, CommandKind::New)
        ));
    };
    let Some((daemon, dir)) = o.dirs.get(i).cloned() else {
        return Err("unknown choice".to_owned());
    };
    start(ctx, inc, &daemon, dir, o.name).await
}

/// The most recent distinct directories of sessions on `daemons`, newest first.
async fn recent_dirs<P: ChatPlatform>(
    ctx: &Ctx<P>,
    daemons: &[DaemonId],
) -> Vec<(DaemonId, String)> {
    let mut rows: Vec<SessionRow> = Vec::new();
    for d in daemons {
        match ctx.state.db.list_sessions(Some(d.0.as_str()), None).await {
            Ok(r) => rows.extend(r),
            Err(e) => error!(error = %e, "cannot list sessions"),
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.info.last_event_ms.max(r.info.created_ms)));
    let mut seen = HashSet::new();
    rows.into_iter()
        .map(|r| (r.daemon_id, r.info.cwd.display().to_string()))
        .filter(|x| seen.insert(x.clone()))
        .take(RECENT_DIRS)
        .collect()
}

/// Starts a session on `daemon` in `dir` for `inc` and shows it (see the module docs).
async fn start<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    daemon: &DaemonId,
    dir: String,
    name: Option<String>,
) -> Answer {
    let args = StartArgs {
        cwd: dir.into(),
        name,
        ..StartArgs::default()
    };
    start_with(ctx, inc, daemon, args, None).await
}

/// Starts a session on `daemon` with `args` (its origin set to `inc`'s sender) and shows
/// it; `note` is added to the announcement (what the workspace holds).
pub async fn start_with<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    daemon: &DaemonId,
    mut args: StartArgs,
    note: Option<Rich>,
) -> Answer {
    args.origin = Some(ctx.origin(&inc.from));
    let workspace = args.workspace.clone();
    let data = ctx
        .command(daemon, Command::SessionStart(args))
        .await
        .map_err(hub_msg)?;
    let info = serde_json::from_value::<SessionInfo>(data)
        .map_err(|e| format!("the daemon's answer did not parse: {e}"))?;
    if let Err(e) = ctx.state.db.upsert_session(daemon, &info, now_ms()).await {
        error!(error = %e, "storing a new session failed");
    }
    ctx.gate
        .audit(
            &inc.from,
            "session.start",
            &info.id.to_string(),
            json!({"daemon": daemon, "cwd": info.cwd, "workspace": workspace}),
        )
        .await;
    let title = title(&info);
    let (place, parent) = target_place(ctx, inc, info.id, &title, false)
        .await
        .map_err(|e| format!("session {title} started, but: {e:#}"))?;
    bind(ctx, &place, parent, info.id, daemon.clone(), &inc.from).await?;
    let known = ctx.daemons().await;
    let mut text = Rich::text("🟢 Session ")
        .bold(title.clone())
        .push(format!(
            " started by {} on {} in ",
            inc.from.name,
            daemon_label(&known, daemon)
        ))
        .code(info.cwd.display().to_string());
    if let Some(note) = note {
        text = text.push("\n").extend(note);
    }
    let text = text.push("\nWrite here to prompt it.");
    Ok(announce(ctx, inc, &place, Outgoing::text(text), &title).await)
}

/// `/bind <session>`.
pub async fn bind_arg<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, arg: &str) -> Answer {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(format!("usage: {}", usage(ctx, CommandKind::Bind)));
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
    match found.as_slice() {
        [one] => show(ctx, inc, one).await,
        [] => Err(format!(
            "no session matches `{arg}`; {} lists them",
            usage(ctx, CommandKind::List)
        )),
        _ => Err(format!(
            "`{arg}` matches several sessions; give more of the id"
        )),
    }
}

/// A Bind button (`b:<session id>`).
pub async fn bind_button<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, data: &str) -> Answer {
    let id = data
        .strip_prefix("b:")
        .and_then(|s| s.parse::<SessionId>().ok())
        .ok_or_else(|| "unknown button".to_owned())?;
    let row = ctx
        .state
        .db
        .get_session(&id)
        .await
        .map_err(|e| format!("that session is unknown: {e}"))?;
    show(ctx, inc, &row).await
}

/// Shows session `row` where `inc` came from (its own thread in a chat with threads).
async fn show<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, row: &SessionRow) -> Answer {
    let title = title(&row.info);
    let (place, parent) = target_place(ctx, inc, row.info.id, &title, true)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let already = ctx
        .bindings
        .get(&place)
        .is_some_and(|b| b.session_id == row.info.id);
    if !already {
        bind(
            ctx,
            &place,
            parent,
            row.info.id,
            row.daemon_id.clone(),
            &inc.from,
        )
        .await?;
    }
    ctx.gate
        .audit(
            &inc.from,
            "session.bind",
            &row.info.id.to_string(),
            json!({"chat": place.chat, "thread": place.thread, "reused": already}),
        )
        .await;
    let mut msg = Outgoing::text(
        Rich::text("🔗 ")
            .bold(title.clone())
            .push(format!(" ({}) is shown here.", row.info.state)),
    );
    if !row.info.state.is_live() {
        msg.buttons = vec![vec![resume_button(row.info.id)]];
    }
    if already && place != inc.place {
        // Nothing new in the thread: just point at it.
        return Ok(Some(pointer(ctx, &place, &title)));
    }
    Ok(announce(ctx, inc, &place, msg, &title).await)
}

/// Binds `place` (opened from `parent`) to `session` on `daemon`, on behalf of `from`.
async fn bind<P: ChatPlatform>(
    ctx: &Ctx<P>,
    place: &Place,
    parent: Option<String>,
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
        parent,
    };
    ctx.bindings.bind(b).await.map_err(|e| e.to_string())
}

/// Where a session is shown for `inc`, and the chat its thread was opened from: in a
/// chat's main area that holds threads, the session's thread there (`reuse`: the one it
/// already has, else a new one); elsewhere the place itself.
async fn target_place<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    session: SessionId,
    title: &str,
    reuse: bool,
) -> anyhow::Result<(Place, Option<String>)> {
    if !(inc.threads && inc.place.thread.is_none()) {
        return Ok((inc.place.clone(), None));
    }
    let parent = Some(inc.place.chat.clone());
    if reuse && let Some(p) = ctx.bindings.thread_of(&session, &inc.place.chat) {
        return Ok((p, parent));
    }
    let place = ctx.platform.open_thread(&inc.place.chat, title).await?;
    Ok((place, parent))
}

/// "➡️ **title** is in <link>".
fn pointer<P: ChatPlatform>(ctx: &Ctx<P>, place: &Place, title: &str) -> Outgoing {
    let mut text = Rich::text("➡️ ").bold(title.to_owned());
    text = match ctx.platform.link(place, title) {
        Some(link) => text.push(" is in ").extend(link),
        None => text.push(" has its own thread."),
    };
    Outgoing::text(text)
}

/// What to answer after a command bound `place`: the news itself when that is where the
/// command was given; else the news goes to `place` and the command gets a pointer to it.
async fn announce<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    place: &Place,
    news: Outgoing,
    title: &str,
) -> Option<Outgoing> {
    if *place == inc.place {
        return Some(news);
    }
    ctx.send(place, news).await;
    Some(pointer(ctx, place, title))
}

/// A press of a button that is not an approval's (`r:` resume, `b:` bind, `n:` a `/new`
/// menu choice): does it, answers in the place, and says how it went.
pub async fn press<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, data: &str) -> Ack {
    ctx.gate
        .audit(
            &inc.from,
            "chat.button",
            &inc.place.chat,
            json!({"button": data}),
        )
        .await;
    let (result, done) = match data.split(':').next() {
        Some("r") => (resume_button_pressed(ctx, inc, data).await, "Resumed"),
        Some("b") => (bind_button(ctx, inc, data).await, "Shown here"),
        Some("n") => (new_from_offer(ctx, inc, data).await, "Started"),
        _ => (Err("unknown button".to_owned()), ""),
    };
    match result {
        Ok(msg) => {
            if let Some(msg) = msg {
                ctx.answer(&inc.place, inc.reply.as_deref(), msg).await;
            }
            Ack {
                text: done.to_owned(),
                ok: true,
            }
        }
        Err(e) => Ack {
            text: render::truncate(&e, 190),
            ok: false,
        },
    }
}

/// Resumes the session of binding `b` for `from`; what to answer.
pub async fn resume<P: ChatPlatform>(
    ctx: &Ctx<P>,
    from: &Sender,
    b: &ChatBinding,
) -> Result<Outgoing, String> {
    let r = SessionRef {
        session: b.session_id.to_string(),
    };
    let data = ctx
        .command(&b.daemon_id, Command::SessionResume(r))
        .await
        .map_err(hub_msg)?;
    let info = serde_json::from_value::<SessionInfo>(data).ok();
    if let Some(i) = &info
        && let Err(e) = ctx.state.db.upsert_session(&b.daemon_id, i, now_ms()).await
    {
        error!(error = %e, "storing a session failed");
    }
    ctx.gate
        .audit(from, "session.resume", &b.session_id.to_string(), json!({}))
        .await;
    ctx.release_held(b.session_id).await;
    let title = info
        .as_ref()
        .map(title)
        .unwrap_or_else(|| short(&b.session_id));
    Ok(Outgoing::text(Rich::text("▶️ ").bold(title).push(format!(
        " is back (resumed by {}), with its history. Write here to go on.",
        render::one_line(&from.name)
    ))))
}

/// A Resume button (`r:<session id>`), pressed in `inc.place`.
pub async fn resume_button_pressed<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    data: &str,
) -> Answer {
    let id = data
        .strip_prefix("r:")
        .and_then(|s| s.parse::<SessionId>().ok())
        .ok_or_else(|| "unknown button".to_owned())?;
    let b = match ctx.bindings.get(&inc.place).filter(|b| b.session_id == id) {
        Some(b) => b,
        None => {
            let row = ctx
                .state
                .db
                .get_session(&id)
                .await
                .map_err(|e| format!("that session is unknown: {e}"))?;
            ChatBinding {
                platform: ctx.platform.name().to_owned(),
                chat_id: inc.place.chat.clone(),
                thread_id: inc.place.thread.clone(),
                session_id: id,
                daemon_id: row.daemon_id,
                created_by: ctx.gate.actor(&inc.from),
                created_ms: now_ms(),
                parent: None,
            }
        }
    };
    resume(ctx, &inc.from, &b).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_titled_by_name_or_directory() {
        assert_eq!(dir_title("/srv/app/").as_deref(), Some("app"));
        assert_eq!(dir_title("/"), None);
        assert_eq!(resume_button(SessionId::new()).data.len(), 38);
        assert_eq!(tail("/home/me/src/app", 8), "…src/app");
        assert_eq!(tail("/a", 8), "/a");
    }
}
