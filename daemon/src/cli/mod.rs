//! The `ccrm` command line. [`run`] parses nothing itself: the binary hands it a [`Cli`]
//! parsed by clap, and `dispatch` turns each subcommand's flags into a control-socket request
//! and calls the module that sends it and prints the reply.
//!
//! Layout, one file per command group:
//! - `args`: the clap definitions ([`Cli`], [`Cmd`], [`DaemonCmd`]); their docs are `--help`.
//! - `call`: reaching ccrmd (socket path, connect, decoding replies) and the `Failure` type.
//! - `sessions`: `start`, `list`, `status`, `prompt`, `stop`, `kill`, `resume`, `interrupt`.
//! - `approvals`: `approvals`, `approve`, `deny`, `answer`.
//! - `events`: `events` and the `Printer` that renders events for humans.
//! - `attach`: `attach`, which ends as `tmux attach-session`.
//! - `daemon`: `daemon start|stop|status`; `service`: `daemon install|uninstall`.
//! - `doctor`: `doctor`; `completions`: `completions` and the hidden `man`.
//! - `workspace`: `workspace push|list|rm` (a directory is zipped on the fly).
//! - `exec`: `exec`, one prompt in a fresh claude with the answer streamed.
//! - `output`: human output shared by the groups (tables, approvals, [`preview`]).
//!
//! `ccrm up` lives in [`crate::up`].

mod approvals;
mod args;
mod attach;
mod call;
mod completions;
mod daemon;
mod doctor;
mod events;
mod exec;
mod output;
mod service;
mod sessions;
mod workspace;

use std::process::ExitCode;

use common::event::Decision;
use common::ipc::{
    AnswerArgs, ApprovalsArgs, Command, DecideArgs, EventsArgs, PromptArgs, StartArgs,
};
use serde_json::Value;

pub use args::{Cli, Cmd, DaemonCmd, InstallArgs, UninstallArgs, WorkspaceCmd};
pub use output::preview;

use crate::client::ClientError;
use call::{Failure, session_ref};

/// Runs the CLI and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(&cli).await {
        Ok(code) => code,
        Err(e) => {
            if cli.json {
                let (code, message) = match &e {
                    Failure::Client(ClientError::Daemon(body)) => (
                        serde_json::to_value(body.code).unwrap_or(Value::Null),
                        body.message.clone(),
                    ),
                    Failure::Client(ClientError::NotRunning { .. }) => {
                        (Value::from("daemon_not_running"), e.to_string())
                    }
                    _ => (Value::from("error"), e.to_string()),
                };
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": {"code": code, "message": message}})
                );
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Turns the parsed command line into the request arguments of one command and runs it.
async fn dispatch(cli: &Cli) -> Result<ExitCode, Failure> {
    match &cli.cmd {
        Cmd::Daemon { cmd } => daemon::run(cli, cmd).await,
        Cmd::Doctor => doctor::run(cli).await,
        Cmd::Completions { shell } => completions::completions(*shell),
        Cmd::Man { dir } => completions::man(dir),
        Cmd::Up(args) => crate::up::run(args, cli.json).await.map_err(Failure::Other),
        Cmd::Start {
            cwd,
            model,
            permission_mode,
            name,
            auto_allow,
            allow_tools,
            workspace,
            claude_args,
        } => {
            let claude_args = sessions::split_claude_args(claude_args.as_deref())?;
            let cwd = match (cwd, workspace) {
                (_, Some(_)) => std::path::PathBuf::new(),
                (Some(c), None) => std::path::absolute(c).map_err(anyhow::Error::from)?,
                (None, None) => std::env::current_dir().map_err(anyhow::Error::from)?,
            };
            let args = StartArgs {
                cwd,
                model: model.clone(),
                permission_mode: permission_mode.clone(),
                name: name.clone(),
                auto_allow: *auto_allow,
                allowed_tools: (!allow_tools.is_empty()).then(|| allow_tools.clone()),
                origin: None,
                workspace: workspace.clone(),
                claude_args,
            };
            sessions::start(cli, args).await
        }
        Cmd::List => sessions::list(cli).await,
        Cmd::Workspace { cmd } => workspace::run(cli, cmd).await,
        Cmd::Exec {
            prompt,
            workspace,
            cwd,
            timeout,
            model,
            allow_tools,
            id,
        } => {
            let cwd = match cwd {
                Some(c) => Some(std::path::absolute(c).map_err(anyhow::Error::from)?),
                None => None,
            };
            let args = common::workspace::ExecArgs {
                execution_id: id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                workspace_id: workspace.clone(),
                cwd,
                prompt: prompt.join(" "),
                timeout_secs: *timeout,
                model: model.clone(),
                allowed_tools: allow_tools.clone(),
                origin: None,
            };
            exec::run(cli, args).await
        }
        Cmd::Status { session } => sessions::show(cli, session).await,
        Cmd::Prompt {
            session,
            text,
            follow,
        } => {
            let args = PromptArgs {
                session: session.clone(),
                text: text.join(" "),
                follow: *follow,
                origin: None,
                images: Vec::new(),
            };
            sessions::prompt(cli, args).await
        }
        Cmd::Events {
            session,
            follow,
            after,
            limit,
        } => {
            let args = EventsArgs {
                session: session.clone(),
                after: *after,
                limit: *limit,
                follow: *follow,
            };
            events::show(cli, args).await
        }
        Cmd::Stop { session } => {
            let cmd = Command::SessionStop(session_ref(session));
            sessions::change_state(cli, cmd, "stopped").await
        }
        Cmd::Kill { session } => {
            let cmd = Command::SessionKill(session_ref(session));
            sessions::change_state(cli, cmd, "killed").await
        }
        Cmd::Resume { session } => {
            let cmd = Command::SessionResume(session_ref(session));
            sessions::change_state(cli, cmd, "resumed").await
        }
        Cmd::Interrupt { session } => sessions::interrupt(cli, session).await,
        Cmd::Approvals { session } => {
            let args = ApprovalsArgs {
                session: session.clone(),
            };
            approvals::list(cli, args).await
        }
        Cmd::Approve {
            session,
            request,
            always,
        } => {
            let decision = if *always {
                Decision::AllowSession
            } else {
                Decision::Allow
            };
            let args = DecideArgs {
                session: session.clone(),
                approval: request.clone(),
                decision,
                message: None,
                origin: None,
            };
            approvals::decide(cli, args).await
        }
        Cmd::Deny {
            session,
            request,
            message,
        } => {
            let args = DecideArgs {
                session: session.clone(),
                approval: request.clone(),
                decision: Decision::Deny,
                message: message.clone(),
                origin: None,
            };
            approvals::decide(cli, args).await
        }
        Cmd::Answer {
            session,
            answers,
            request,
        } => {
            let args = AnswerArgs {
                session: session.clone(),
                approval: request.clone(),
                answers: answers.clone(),
                origin: None,
            };
            approvals::answer(cli, args).await
        }
        Cmd::Attach {
            session,
            now,
            no_attach,
        } => attach::run(cli, session, *now, *no_attach).await,
    }
}
