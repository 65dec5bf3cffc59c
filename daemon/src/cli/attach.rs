//! `ccrm attach`: asks ccrmd to hand the session to the Claude Code TUI in tmux (the daemon
//! side is [`crate::attach`]), then turns this process into `tmux attach-session`, or with
//! `--no-attach` prints where to attach.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use common::ipc::{AttachArgs, AttachInfo, Command, SessionInfo};

use super::args::Cli;
use super::call::{Failure, connect, decode, session_ref};
use super::output::print_json;

/// `ccrm attach`: the daemon hands the session to the TUI in tmux; then this process becomes
/// `tmux attach-session` (or, with `--no-attach`, prints where to attach).
pub(super) async fn run(
    cli: &Cli,
    session: &str,
    now: bool,
    no_attach: bool,
) -> Result<ExitCode, Failure> {
    let tmux = if no_attach {
        None
    } else {
        let Some(tmux) = crate::attach::find_tmux() else {
            return Err(anyhow::anyhow!(crate::attach::tmux_missing().message).into());
        };
        // Check before the daemon hands the session over, not after.
        if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
            return Err(anyhow::anyhow!(
                "`ccrm attach` needs a terminal; use `--no-attach` to print the tmux session instead"
            )
            .into());
        }
        Some(tmux)
    };
    let mut client = connect(cli).await?;
    if !now && !cli.json {
        let data = client
            .call(Command::SessionGet(session_ref(session)))
            .await?;
        let info: SessionInfo = decode(data.get("session").cloned().unwrap_or_default())?;
        if matches!(info.state.as_str(), "active" | "waiting_permission") {
            eprintln!(
                "waiting for the running turn of session {} to finish (`--now` interrupts it)...",
                info.id.short()
            );
        }
    }
    let data = client
        .call(Command::SessionAttach(AttachArgs {
            session: session.to_owned(),
            now,
        }))
        .await?;
    let info: AttachInfo = decode(data.clone())?;
    let Some(tmux) = tmux else {
        if cli.json {
            print_json(&data);
        } else {
            let verb = if info.joined { "is already" } else { "is now" };
            println!(
                "session {} {verb} in the Claude Code TUI in tmux",
                info.session_id.short()
            );
            println!("  tmux session: {}", info.tmux_session);
            println!("  tmux socket:  {}", info.socket.display());
            println!("  attach with:  tmux {}", info.attach_args().join(" "));
        }
        return Ok(ExitCode::SUCCESS);
    };
    // Become the tmux client; `TMUX` unset so this works inside the user's own tmux too.
    let err = std::process::Command::new(&tmux)
        .args(info.attach_args())
        .env_remove("TMUX")
        .env_remove("TMUX_PANE")
        .exec();
    Err(anyhow::anyhow!(
        "cannot run {}: {err}; attach by hand with `tmux {}`",
        tmux.display(),
        info.attach_args().join(" ")
    )
    .into())
}
