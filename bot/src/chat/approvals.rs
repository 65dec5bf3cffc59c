//! Approvals and questions in chat. A pending permission request or question is posted to
//! every place that shows its session as a message with buttons ([`show`]); each message
//! is a `chat_approvals` row, whose id the buttons carry (`a:<id>:<a|d|s>` allows, denies
//! or allows for the session; `q:<id>:<n>` picks option n). A press is decided through the
//! daemon ([`decide`]); when the daemon reports the decision, from whichever surface, every
//! message of it is edited to say who decided, by the name people know them by, and its
//! buttons go.
//!
//! An `Edit`, `MultiEdit` or `Write` shows the change as a unified diff
//! ([`render::diff`]): in a code block when it fits the message, else its start there and
//! the whole as a `.diff` file sent just before the message.
//!
//! A question with several parts, or a multi-select one, is asked one question at a time
//! in its message ([`super::questions`]).
//!
//! The outbound workers ([`super::outbound`]) call [`show`]; the core calls [`decide`].

use common::event::{Decision, EventKind, Question, now_ms};
use common::ids::SessionId;
use common::ipc::{AnswerArgs, Command, DecideArgs, ErrorCode};
use serde_json::{Value, json};
use tracing::{error, warn};

use super::ctx::{Ctx, hub_msg};
use super::questions::{self, Steps};
use super::render::{self, Rich};
use super::{Ack, Button, ButtonStyle, ChatPlatform, Incoming, Outgoing, Place};
use crate::db::{ChatApprovalRow, DbError};
use crate::hub::HubError;

/// Longest tool input preview in an approval message.
const PREVIEW_CHARS: usize = 700;

/// Room kept in an approval message for the verdict line added when it is decided.
const VERDICT_ROOM: usize = 200;

/// Shows an approval event of `session`: a permission request or question gets its
/// message with buttons, a decision or answer closes its messages. Other events are not
/// this module's.
pub async fn show<P: ChatPlatform>(ctx: &Ctx<P>, session: SessionId, kind: &EventKind) {
    match kind {
        EventKind::PermissionRequest {
            approval_id,
            tool_name,
            input,
            description,
            ..
        } => {
            let (head, preview) = permission_text(tool_name, input, description.as_deref());
            match render::diff::change(tool_name, input) {
                Some(change) => {
                    let body = fit_diff(ctx, session, &head, change).await;
                    post(ctx, session, &approval_id.0, head, body, Vec::new()).await;
                }
                None => {
                    let body = Body {
                        text: preview,
                        lang: String::new(),
                    };
                    post(ctx, session, &approval_id.0, head, body, Vec::new()).await;
                }
            }
        }
        EventKind::Question {
            approval_id,
            questions,
        } => {
            let (head, options) = question_text(questions);
            let steps = Steps::of(questions);
            post_with(
                ctx,
                session,
                &approval_id.0,
                (head, Body::default(), options),
                steps.as_ref(),
            )
            .await;
        }
        EventKind::PermissionDecision {
            approval_id,
            decision,
            by,
            ..
        } => {
            let verdict = match decision {
                Decision::Allow => "✅ Allowed",
                Decision::AllowSession => "✅ Allowed for this session",
                Decision::Deny => "❌ Denied",
                Decision::Cancelled => "➖ Cancelled",
                Decision::Aborted => "➖ Aborted",
            };
            let who = ctx.gate.who(by, ctx.platform.surface());
            close(ctx, &approval_id.0, format!("{verdict} by {who}")).await;
        }
        EventKind::Answer {
            approval_id,
            answers,
            by,
            decision,
        } => {
            let who = ctx.gate.who(by, ctx.platform.surface());
            let text = if decision.allows() {
                let picked: Vec<_> = answers.values().cloned().collect();
                format!("💬 {} (answered by {who})", picked.join("; "))
            } else {
                format!("➖ Not answered ({decision:?} by {who})")
            };
            close(ctx, &approval_id.0, text).await;
        }
        _ => {}
    }
}

/// The head and input preview of a permission request's message.
fn permission_text(tool_name: &str, input: &Value, description: Option<&str>) -> (String, String) {
    let mut head = format!("🔐 {tool_name} needs approval");
    if let Some(d) = description {
        head.push_str(&format!(
            ": {}",
            render::truncate(&render::one_line(d), 300)
        ));
    }
    (head, render::tool_preview(tool_name, input, PREVIEW_CHARS))
}

/// The head of a question's message (every question) and the options its buttons offer.
fn question_text(questions: &[Question]) -> (String, Vec<String>) {
    let mut head = String::from("❓ ");
    for (i, q) in questions.iter().enumerate() {
        if i > 0 {
            head.push('\n');
        }
        head.push_str(&q.question);
    }
    // Buttons answer a single question at once; several go step by step (`Steps`).
    let options = questions
        .first()
        .map(|q| q.options.iter().map(|o| o.label.clone()).collect())
        .unwrap_or_default();
    (render::truncate(&head, 2000), options)
}

/// The code block under an approval's head: the tool input, or a diff.
#[derive(Default)]
struct Body {
    text: String,
    /// The block's language (`diff`), or empty.
    lang: String,
}

/// The diff of `change` as the body of an approval message headed `head`: whole when the
/// message can hold it, else its start, with the whole diff sent as a file to every place
/// of `session` first.
async fn fit_diff<P: ChatPlatform>(
    ctx: &Ctx<P>,
    session: SessionId,
    head: &str,
    change: render::diff::Change,
) -> Body {
    let platform = &ctx.platform;
    // Room for the verdict added when it is decided.
    let limit = platform.text_limit().saturating_sub(VERDICT_ROOM);
    let fits = |text: &str| {
        let msg = Rich::default()
            .bold(head.to_owned())
            .pre_lang("diff", text.to_owned());
        platform.measure(&msg) <= limit
    };
    if fits(&change.diff) {
        return Body {
            text: change.diff,
            lang: "diff".to_owned(),
        };
    }
    let name = format!(
        "{}.diff",
        std::path::Path::new(&change.file)
            .file_name()
            .map_or_else(|| "change".to_owned(), |n| n.to_string_lossy().into_owned())
    );
    let caption = Rich::text("📄 The change to ")
        .code(change.file.clone())
        .push(format!(
            " ({} lines), for the approval below.",
            change.diff.lines().count()
        ));
    for place in ctx.bindings.places_of(&session) {
        if let Err(e) = platform
            .send_file(&place, &name, change.diff.clone().into_bytes(), &caption)
            .await
        {
            error!(error = format!("{e:#}"), "sending a diff file failed");
        }
    }
    let note = format!("… (the whole diff is in {name} above)\n");
    let mut lines: Vec<&str> = change.diff.lines().collect();
    loop {
        let mut text = lines.join("\n");
        text.push('\n');
        text.push_str(&note);
        if fits(&text) || lines.is_empty() {
            return Body {
                text,
                lang: "diff".to_owned(),
            };
        }
        lines.truncate(lines.len() * 9 / 10);
    }
}

/// Posts an approval message to every place of `session`, storing each (the row id goes
/// into the buttons) and then its message id.
async fn post<P: ChatPlatform>(
    ctx: &Ctx<P>,
    session: SessionId,
    approval_id: &str,
    head: String,
    body: Body,
    options: Vec<String>,
) {
    post_with(ctx, session, approval_id, (head, body, options), None).await;
}

/// [`post`] for a message that may ask its questions in `steps`.
async fn post_with<P: ChatPlatform>(
    ctx: &Ctx<P>,
    session: SessionId,
    approval_id: &str,
    (head, body, options): (String, Body, Vec<String>),
    steps: Option<&Steps>,
) {
    let title = json!([head, body.text, body.lang]).to_string();
    for place in ctx.bindings.places_of(&session) {
        let mut row = ChatApprovalRow {
            id: 0,
            platform: ctx.platform.name().to_owned(),
            approval_id: approval_id.to_owned(),
            session_id: session,
            chat_id: place.chat.clone(),
            thread_id: place.thread.clone(),
            message_id: String::new(),
            title: title.clone(),
            options: options.clone(),
            decided: false,
            steps: steps.map(Steps::to_json).unwrap_or_default(),
        };
        row.id = match ctx.state.db.chat_approval_add(&row, now_ms()).await {
            Ok(id) => id,
            Err(e) => {
                error!(error = %e, "storing an approval message failed");
                continue;
            }
        };
        let msg = match steps {
            Some(s) => s.view(row.id),
            None => Outgoing {
                text: approval_text(&title, None),
                choice: !options.is_empty(),
                buttons: buttons(row.id, &options),
            },
        };
        if let Some(id) = ctx.send(&place, msg).await
            && let Err(e) = ctx.state.db.chat_approval_set_message(row.id, &id).await
        {
            error!(error = %e, "storing an approval message id failed");
        }
    }
}

/// The buttons of approval message `row`: allow / deny / allow for the session, or one
/// per option of a question.
fn buttons(row: i64, options: &[String]) -> Vec<Vec<Button>> {
    let button = |label: &str, data: String, style| Button {
        label: label.to_owned(),
        data,
        style,
    };
    if options.is_empty() {
        return vec![
            vec![
                button("✅ Allow", format!("a:{row}:a"), ButtonStyle::Success),
                button("❌ Deny", format!("a:{row}:d"), ButtonStyle::Danger),
            ],
            vec![button(
                "✅ Allow for this session",
                format!("a:{row}:s"),
                ButtonStyle::Primary,
            )],
        ];
    }
    options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            vec![button(
                &render::truncate(o, 60),
                format!("q:{row}:{i}"),
                ButtonStyle::Secondary,
            )]
        })
        .collect()
}

/// Marks the messages of `approval_id` decided and edits them to show `verdict` (without
/// buttons).
async fn close<P: ChatPlatform>(ctx: &Ctx<P>, approval_id: &str, verdict: String) {
    let rows = match ctx
        .state
        .db
        .chat_approvals_decide(ctx.platform.name(), approval_id)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "reading approval messages failed");
            return;
        }
    };
    for row in rows {
        if row.message_id.is_empty() {
            continue;
        }
        let place = Place {
            chat: row.chat_id.clone(),
            thread: row.thread_id.clone(),
        };
        let msg = Outgoing::text(approval_text(&row.title, Some(&verdict)));
        if let Err(e) = ctx.platform.edit(&place, &row.message_id, &msg).await {
            warn!(error = %e, "approval edit failed");
        }
    }
}

/// An approval message from its stored title (`[head, body, language]`; older rows have
/// no language) and verdict.
fn approval_text(title: &str, verdict: Option<&str>) -> Rich {
    let (head, preview, lang) = serde_json::from_str::<(String, String, String)>(title)
        .or_else(|_| {
            serde_json::from_str::<(String, String)>(title).map(|(h, p)| (h, p, String::new()))
        })
        .unwrap_or_else(|_| (title.to_owned(), String::new(), String::new()));
    let mut text = Rich::default().bold(head);
    if !preview.is_empty() {
        text = text.pre_lang(lang, preview);
    }
    if let Some(v) = verdict {
        text = text.push(format!("\n{v}"));
    }
    text
}

/// A button press in `inc` carrying `data` (see the module docs): decides the approval or
/// answers the question through the daemon, audits it, and says how it went.
pub async fn decide<P: ChatPlatform>(ctx: &Ctx<P>, inc: &Incoming, data: &str) -> Ack {
    let no = |text: &str| Ack {
        text: text.to_owned(),
        ok: false,
    };
    let mut parts = data.splitn(3, ':');
    let (Some(kind), Some(id), Some(choice)) = (parts.next(), parts.next(), parts.next()) else {
        return no("Unknown button");
    };
    let Ok(id) = id.parse::<i64>() else {
        return no("Unknown button");
    };
    let mut row = match ctx.state.db.chat_approval(id).await {
        Ok(r) => r,
        Err(DbError::NotFound) => return no("Unknown button"),
        Err(e) => {
            error!(error = %e, "reading a chat approval failed");
            return no("Internal error");
        }
    };
    // A press right after the message appeared can come before the poster recorded the
    // message's id; the press carries it, so the edits that follow (the next question, the
    // verdict) reach the message.
    if row.message_id.is_empty()
        && let Some(m) = inc.msg_id
    {
        row.message_id = m.to_string();
        if let Err(e) = ctx
            .state
            .db
            .chat_approval_set_message(row.id, &row.message_id)
            .await
        {
            error!(error = %e, "storing an approval message id failed");
        }
    }
    let daemon = match ctx.state.db.get_session(&row.session_id).await {
        Ok(s) => s.daemon_id,
        Err(e) => return no(&format!("Session unknown: {e}")),
    };
    let session = row.session_id.to_string();
    let origin = Some(ctx.origin(&inc.from));
    let (cmd, action, toast) = match (kind, choice) {
        ("a", c) => {
            let (decision, toast) = match c {
                "a" => (Decision::Allow, "Allowed"),
                "s" => (Decision::AllowSession, "Allowed for this session"),
                _ => (Decision::Deny, "Denied"),
            };
            let cmd = Command::ApprovalDecide(DecideArgs {
                session,
                approval: Some(row.approval_id.clone()),
                decision,
                message: (decision == Decision::Deny)
                    .then(|| format!("Denied by {} in chat", render::one_line(&inc.from.name))),
                origin,
            });
            (cmd, "approval.decide", toast.to_owned())
        }
        ("q", n) if !row.steps.is_empty() => {
            return questions::press(ctx, inc, &row, &daemon, n).await;
        }
        ("q", n) => {
            let Some(label) = n.parse::<usize>().ok().and_then(|n| row.options.get(n)) else {
                return no("Unknown option");
            };
            let cmd = Command::QuestionAnswer(AnswerArgs {
                session,
                approval: Some(row.approval_id.clone()),
                answers: vec![label.clone()],
                origin,
            });
            (cmd, "question.answer", format!("Answered: {label}"))
        }
        _ => return no("Unknown button"),
    };
    let result = ctx.command(&daemon, cmd).await;
    let detail = json!({"button": data, "ok": result.is_ok()});
    ctx.gate
        .audit(&inc.from, action, &row.approval_id, detail)
        .await;
    match result {
        Ok(_) => Ack {
            text: toast,
            ok: true,
        },
        Err(HubError::Daemon(e)) if e.code == ErrorCode::AlreadyDecided => no("Already decided"),
        Err(e) => no(&hub_msg(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_text_keeps_the_preview_and_adds_the_verdict() {
        let title = json!(["🔐 Write needs approval", "/tmp/x <b>"]).to_string();
        let open = approval_text(&title, None);
        assert_eq!(
            open.html(),
            "<b>🔐 Write needs approval</b><pre>/tmp/x &lt;b&gt;</pre>"
        );
        let closed = approval_text(&title, Some("✅ Allowed by Alice")).plain();
        assert!(closed.ends_with("\n✅ Allowed by Alice"), "{closed}");
        let diff = json!(["🔐 Edit needs approval", "-a\n+b\n", "diff"]).to_string();
        assert_eq!(
            approval_text(&diff, None).discord(),
            "**🔐 Edit needs approval**\n```diff\n-a\n+b\n```"
        );
        // A title that is not the stored pair still renders.
        assert_eq!(approval_text("plain", None).plain(), "plain");
    }
}
