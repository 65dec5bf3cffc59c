//! `ccrm exec`: one prompt in a fresh claude run by ccrmd's worker pool. It accepts the
//! execution (`exec.start`), then follows it (`exec.follow`): the answer is printed to
//! stdout as it streams, the queue position and the end to stderr, and the exit status is
//! claude's exit code (1 when the execution failed, timed out or was cancelled). Ctrl-C
//! cancels the execution. With `--json`, every item is printed as one JSON line.

use std::io::Write;
use std::process::ExitCode;

use common::ipc::{Command, ErrorBody, ErrorCode};
use common::workspace::{
    ExecArgs, ExecFollowArgs, ExecItem, ExecRef, ExecUpdate, MAX_ID_LEN, valid_id,
};
use serde_json::Value;

use super::args::Cli;
use super::call::{Failure, connect, decode};
use crate::client::ClientError;
use crate::exec::MAX_TIMEOUT_SECS;

/// What ccrmd would refuse in the flags, said with the flags' names (`--id`, `--timeout`,
/// `--workspace`) and the codes ccrmd gives, before it is asked.
fn check_flags(args: &ExecArgs) -> Result<(), Failure> {
    let refuse = |code, msg: String| Err(ClientError::Daemon(ErrorBody::new(code, msg)).into());
    if !valid_id(&args.execution_id) {
        return refuse(
            ErrorCode::BadRequest,
            format!(
                "--id `{}` must be 1 to {MAX_ID_LEN} letters, digits, `-` or `_`",
                args.execution_id.escape_debug()
            ),
        );
    }
    if let Some(w) = args.workspace_id.as_deref().filter(|w| !valid_id(w)) {
        return refuse(
            ErrorCode::BadWorkspaceId,
            format!(
                "--workspace `{}` is not a workspace id (1 to {MAX_ID_LEN} letters, digits, `-` or `_`); see `ccrm workspace list`",
                w.escape_debug()
            ),
        );
    }
    if args.timeout_secs == 0 || args.timeout_secs > MAX_TIMEOUT_SECS {
        return refuse(
            ErrorCode::BadRequest,
            format!("--timeout must be between 1 and {MAX_TIMEOUT_SECS} seconds"),
        );
    }
    Ok(())
}

/// `ccrm exec`.
pub(super) async fn run(cli: &Cli, args: ExecArgs) -> Result<ExitCode, Failure> {
    check_flags(&args)?;
    let id = args.execution_id.clone();
    let mut client = connect(cli).await?;
    client.call(Command::ExecStart(args)).await?;
    let follow = Command::ExecFollow(ExecFollowArgs {
        execution_id: id.clone(),
        after: 0,
    });
    let mut last: Option<ExecUpdate> = None;
    let json = cli.json;
    let streamed = client.stream_items(follow, |v: &Value| {
        if json {
            println!("{v}");
        }
        let Ok(item) = decode::<ExecItem>(v.clone()) else {
            return;
        };
        if !json {
            show(&item.update);
        }
        if item.update.is_final() {
            last = Some(item.update);
        }
    });
    tokio::select! {
        r = streamed => { r?; }
        _ = tokio::signal::ctrl_c() => {
            let mut c = connect(cli).await?;
            c.call(Command::ExecCancel(ExecRef { execution_id: id.clone() })).await?;
            eprintln!("\nexecution {id} cancelled");
            return Ok(ExitCode::from(130));
        }
    }
    Ok(match last {
        Some(ExecUpdate::Complete { exit_code, .. }) => {
            ExitCode::from(u8::try_from(exit_code).unwrap_or(1))
        }
        _ => ExitCode::FAILURE,
    })
}

/// Prints one item for people.
fn show(update: &ExecUpdate) {
    match update {
        ExecUpdate::Queued { position } => {
            eprintln!("queued, position {position} (all workers busy)");
        }
        ExecUpdate::Started => {}
        ExecUpdate::Output { chunk } => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(chunk.as_bytes());
            let _ = out.flush();
        }
        ExecUpdate::Complete { exit_code, result } => {
            println!();
            let mut line = format!("exit code {exit_code}");
            if let Some(ms) = result.duration_ms {
                line.push_str(&format!(", {:.1}s", ms as f64 / 1000.0));
            }
            if let Some(t) = result.turns {
                line.push_str(&format!(", {t} turn{}", if t == 1 { "" } else { "s" }));
            }
            if let Some(c) = result.cost_usd {
                line.push_str(&format!(", ${c:.4}"));
            }
            eprintln!("{line}");
        }
        ExecUpdate::Error { code, message } => {
            println!();
            eprintln!("error {code}: {message}");
        }
    }
}
