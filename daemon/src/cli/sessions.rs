//! The session commands of `ccrm`: `start` (with `--claude-args` split like a shell would),
//! `list` (with each session's mode), `status`, `prompt` (alias `send`), `stop`, `kill`,
//! `resume` and `interrupt`. Each sends its request through [`super::call`] and prints the
//! reply with [`super::output`] (or as JSON); `prompt --follow` streams the turn through the
//! event [`Printer`] of [`super::events`].

use std::process::ExitCode;

use common::ipc::{ApprovalInfo, Command, NoArgs, PromptArgs, SessionInfo, StartArgs};
use serde_json::Value;

use super::args::Cli;
use super::call::{Failure, connect, decode, send_and_print, session_ref};
use super::events::Printer;
use super::output::{mode, print_approvals, print_json, print_session, print_sessions};

/// `ccrm start`: starts a session and says how to prompt it.
pub(super) async fn start(cli: &Cli, args: StartArgs) -> Result<ExitCode, Failure> {
    send_and_print(cli, Command::SessionStart(args), |data| {
        let info: SessionInfo = decode(data)?;
        println!("started session {} ({})", info.id, info.state);
        if let Some(reason) = &info.reason {
            println!("  reason: {reason}");
        }
        println!(
            "  send a prompt: ccrm prompt {} \"...\" --follow",
            info.id.short()
        );
        Ok(())
    })
    .await
}

/// `--claude-args "..."` split the way a shell would, and checked against the flags ccrm
/// manages, so a mistake is reported before the request leaves.
pub(super) fn split_claude_args(raw: Option<&str>) -> Result<Option<Vec<String>>, Failure> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let args = shlex::split(raw).ok_or_else(|| {
        anyhow::anyhow!(
            "--claude-args `{raw}` cannot be split like a shell would (an unclosed quote?)"
        )
    })?;
    common::claude_args::check(&args).map_err(|e| anyhow::anyhow!("--claude-args: {e}"))?;
    Ok(Some(args))
}

/// `ccrm list`: every session, as a table with its mode (`--json`: each with `mode`).
pub(super) async fn list(cli: &Cli) -> Result<ExitCode, Failure> {
    let data = connect(cli)
        .await?
        .call(Command::SessionsList(NoArgs {}))
        .await?;
    let list: Vec<SessionInfo> = decode(data.clone())?;
    if cli.json {
        let mut rows = match data {
            Value::Array(rows) => rows,
            _ => Vec::new(),
        };
        for (row, info) in rows.iter_mut().zip(&list) {
            if let Value::Object(map) = row {
                map.insert("mode".into(), Value::from(mode(info)));
            }
        }
        print_json(&Value::Array(rows));
    } else {
        print_sessions(&list);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ccrm status <session>`: one session and its pending approvals.
pub(super) async fn show(cli: &Cli, session: &str) -> Result<ExitCode, Failure> {
    send_and_print(cli, Command::SessionGet(session_ref(session)), |data| {
        let info: SessionInfo = decode(data.get("session").cloned().unwrap_or_default())?;
        let approvals: Vec<ApprovalInfo> =
            decode(data.get("approvals").cloned().unwrap_or_default())?;
        print_session(&info);
        print_approvals(&approvals);
        Ok(())
    })
    .await
}

/// `ccrm prompt`: sends a prompt; with `--follow`, shows its turn and fails when the turn
/// fails.
pub(super) async fn prompt(cli: &Cli, args: PromptArgs) -> Result<ExitCode, Failure> {
    let session = args.session.clone();
    let mut client = connect(cli).await?;
    if !args.follow {
        let data = client.call(Command::PromptSend(args)).await?;
        if cli.json {
            print_json(&data);
        } else {
            let q = data
                .get("queued_behind")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if q == 0 {
                println!("prompt sent");
            } else {
                println!("prompt queued behind {q} other prompt(s)");
            }
            if let Some(note) = data.get("note").and_then(Value::as_str) {
                println!("  {note}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !cli.json {
        // The stream shows nothing until the turn starts; say why it may wait.
        let data = client
            .call(Command::SessionGet(session_ref(&session)))
            .await?;
        if data["session"]["state"] == "attached" {
            eprintln!(
                "session {session} is in use at the terminal (ccrm attach); the prompt is queued and runs when the terminal gives the session back"
            );
        }
    }
    let mut printer = Printer::new(cli.json, &session);
    let end = client
        .stream(Command::PromptSend(args), |ev| printer.event(ev))
        .await?;
    printer.finish();
    let end = end.unwrap_or(Value::Null);
    if cli.json {
        println!("{end}");
    }
    let failed = end
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `ccrm stop|kill|resume`: `cmd` changes the session's run state; `verb` says how in the
/// output ("stopped", "killed", "resumed").
pub(super) async fn change_state(cli: &Cli, cmd: Command, verb: &str) -> Result<ExitCode, Failure> {
    send_and_print(cli, cmd, |data| {
        let info: SessionInfo = decode(data)?;
        println!("session {} {verb}: now {}", info.id.short(), info.state);
        if let Some(reason) = info.reason.filter(|_| info.state.as_str() == "failed") {
            println!("  reason: {reason}");
        }
        Ok(())
    })
    .await
}

/// `ccrm interrupt`: interrupts the running turn, if any.
pub(super) async fn interrupt(cli: &Cli, session: &str) -> Result<ExitCode, Failure> {
    send_and_print(
        cli,
        Command::SessionInterrupt(session_ref(session)),
        |data| {
            if data.get("interrupted").and_then(Value::as_bool) == Some(true) {
                println!("interrupted the running turn");
            } else {
                println!("no turn was running");
            }
            Ok(())
        },
    )
    .await
}
