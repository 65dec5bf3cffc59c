//! The `ccrm` command line: clap definitions, the calls they make, and human or `--json`
//! output. `ccrm daemon start|stop|status|run` manages ccrmd itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use common::event::{Decision, Event, EventKind};
use common::ipc::{
    AnswerArgs, ApprovalInfo, ApprovalKind, ApprovalsArgs, AttachArgs, AttachInfo, Command,
    DaemonStatus, DecideArgs, EventsArgs, NoArgs, PromptArgs, SessionInfo, SessionRef, StartArgs,
};
use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::config::{Config, Overrides};

/// Run and steer Claude Code sessions on this machine through the ccrmd daemon.
#[derive(Parser, Debug)]
#[command(name = "ccrm", version, about, long_about = None, after_help = "Sessions can be named by id, a unique id prefix, or their name.\nStart the daemon first: `ccrm daemon start`.")]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Control socket of ccrmd [default: $XDG_RUNTIME_DIR/ccrm/ccrmd.sock].
    #[arg(long, global = true, env = "CCRM_SOCKET")]
    pub socket: Option<PathBuf>,
    /// ccrmd config file (used to find the socket and by `daemon start`).
    #[arg(long, global = true, env = "CCRM_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Start a new Claude Code session.
    Start {
        /// Working directory [default: the current directory].
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Model name or alias (e.g. sonnet).
        #[arg(long)]
        model: Option<String>,
        /// Claude Code permission mode: default, acceptEdits, plan, dontAsk, auto, bypassPermissions.
        #[arg(long)]
        permission_mode: Option<String>,
        /// A name to refer to the session by.
        #[arg(long)]
        name: Option<String>,
        /// Allow every tool without asking (dangerous; explicit opt-in).
        #[arg(long)]
        auto_allow: bool,
        /// Tool allowed without asking (repeatable); replaces the read-only default list.
        #[arg(long = "allow-tool", value_name = "TOOL")]
        allow_tools: Vec<String>,
    },
    /// List sessions.
    #[command(alias = "ls")]
    List,
    /// Show one session and its pending approvals.
    Status {
        /// Session id, prefix or name.
        session: String,
    },
    /// Send a prompt (queued if a turn is running).
    Prompt {
        /// Session id, prefix or name.
        session: String,
        /// The prompt text (words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
        /// Stream the turn: assistant text, tool activity, approval prompts; the exit status
        /// is 0 when the turn succeeds and 1 when it fails.
        #[arg(short, long)]
        follow: bool,
    },
    /// Show a session's events.
    Events {
        /// Session id, prefix or name.
        session: String,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events (without --follow).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Stop a session gracefully (it can be resumed).
    Stop {
        /// Session id, prefix or name.
        session: String,
    },
    /// Kill a session's Claude Code process at once.
    Kill {
        /// Session id, prefix or name.
        session: String,
    },
    /// Resume a stopped or failed session with its history.
    Resume {
        /// Session id, prefix or name.
        session: String,
    },
    /// Interrupt the running turn (queued prompts stay queued).
    Interrupt {
        /// Session id, prefix or name.
        session: String,
    },
    /// List pending approvals and questions.
    Approvals {
        /// Only this session.
        session: Option<String>,
    },
    /// Allow a pending tool call.
    Approve {
        /// Session id, prefix or name.
        session: String,
        /// Approval id or prefix (optional when only one is pending).
        request: Option<String>,
        /// Also allow this tool for the rest of the session.
        #[arg(long, visible_alias = "session")]
        always: bool,
    },
    /// Deny a pending tool call.
    Deny {
        /// Session id, prefix or name.
        session: String,
        /// Approval id or prefix (optional when only one is pending).
        request: Option<String>,
        /// What to tell the model.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Answer a pending AskUserQuestion: one answer per question (option number, label or text).
    Answer {
        /// Session id, prefix or name.
        session: String,
        /// The answers, in question order.
        #[arg(required = true, num_args = 1..)]
        answers: Vec<String>,
        /// Question id or prefix (optional when only one is pending).
        #[arg(long)]
        request: Option<String>,
    },
    /// Open the session in the Claude Code TUI (in tmux), with its history. It goes back to
    /// the daemon when the TUI exits or the last tmux client detaches; prompts from other
    /// surfaces wait until then.
    Attach {
        /// Session id, prefix or name.
        session: String,
        /// Interrupt a running turn instead of waiting for it to finish.
        #[arg(long)]
        now: bool,
        /// Do not attach this terminal: print the tmux socket and session to attach to.
        #[arg(long)]
        no_attach: bool,
    },
    /// Manage the ccrmd daemon.
    Daemon {
        /// What to do.
        #[command(subcommand)]
        cmd: DaemonCmd,
    },
    /// Start a bot and a daemon wired together (keys generated once) and keep them running
    /// until Ctrl-C; prints the API URL and token.
    Up(crate::up::UpArgs),
}

/// `ccrm daemon ...`.
#[derive(Subcommand, Debug)]
pub enum DaemonCmd {
    /// Start ccrmd in the background (logs go to the state dir).
    Start,
    /// Stop ccrmd: sessions are stopped gracefully first.
    Stop,
    /// Show whether ccrmd runs, its pid, version and sessions.
    Status,
}

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

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

fn socket_path(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    Ok(load_config(cli)?.socket_path())
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(&Overrides {
        config_file: cli.config.clone(),
        ..Default::default()
    })
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect(&socket_path(cli)?).await?)
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn dispatch(cli: &Cli) -> Result<ExitCode, Failure> {
    let sref = |s: &String| SessionRef { session: s.clone() };
    match &cli.cmd {
        Cmd::Daemon { cmd } => return daemon_cmd(cli, cmd).await,
        Cmd::Up(args) => return crate::up::run(args, cli.json).await.map_err(Failure::Other),
        Cmd::Start {
            cwd,
            model,
            permission_mode,
            name,
            auto_allow,
            allow_tools,
        } => {
            let cwd = match cwd {
                Some(c) => std::path::absolute(c).map_err(anyhow::Error::from)?,
                None => std::env::current_dir().map_err(anyhow::Error::from)?,
            };
            let args = StartArgs {
                cwd,
                model: model.clone(),
                permission_mode: permission_mode.clone(),
                name: name.clone(),
                auto_allow: *auto_allow,
                allowed_tools: (!allow_tools.is_empty()).then(|| allow_tools.clone()),
                origin: None,
            };
            let data = connect(cli)
                .await?
                .call(Command::SessionStart(args))
                .await?;
            if cli.json {
                print_json(&data);
            } else {
                let info: SessionInfo = from(data)?;
                println!("started session {} ({})", info.id, info.state);
                if let Some(reason) = &info.reason {
                    println!("  reason: {reason}");
                }
                println!(
                    "  send a prompt: ccrm prompt {} \"...\" --follow",
                    info.id.short()
                );
            }
        }
        Cmd::List => {
            let data = connect(cli)
                .await?
                .call(Command::SessionsList(NoArgs {}))
                .await?;
            if cli.json {
                print_json(&data);
            } else {
                let list: Vec<SessionInfo> = from(data)?;
                print_sessions(&list);
            }
        }
        Cmd::Status { session } => {
            let data = connect(cli)
                .await?
                .call(Command::SessionGet(sref(session)))
                .await?;
            if cli.json {
                print_json(&data);
            } else {
                let info: SessionInfo = from(data.get("session").cloned().unwrap_or_default())?;
                let approvals: Vec<ApprovalInfo> =
                    from(data.get("approvals").cloned().unwrap_or_default())?;
                print_session(&info);
                print_approvals(&approvals);
            }
        }
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
            };
            let mut client = connect(cli).await?;
            if !follow {
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
                let data = client.call(Command::SessionGet(sref(session))).await?;
                if data["session"]["state"] == "attached" {
                    eprintln!(
                        "session {session} is in use at the terminal (ccrm attach); the prompt is queued and runs when the terminal gives the session back"
                    );
                }
            }
            let mut printer = Printer::new(cli.json, session);
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
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
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
            let mut client = connect(cli).await?;
            let mut printer = Printer::new(cli.json, session);
            if *follow {
                client
                    .stream(Command::SessionEvents(args), |ev| printer.event(ev))
                    .await?;
            } else {
                let data = client.call(Command::SessionEvents(args)).await?;
                let events: Vec<Event> = from(data.get("events").cloned().unwrap_or_default())?;
                for ev in &events {
                    printer.event(ev);
                }
            }
            printer.finish();
        }
        Cmd::Stop { session } | Cmd::Kill { session } | Cmd::Resume { session } => {
            let (cmd, verb) = match &cli.cmd {
                Cmd::Stop { .. } => (Command::SessionStop(sref(session)), "stopped"),
                Cmd::Kill { .. } => (Command::SessionKill(sref(session)), "killed"),
                _ => (Command::SessionResume(sref(session)), "resumed"),
            };
            let data = connect(cli).await?.call(cmd).await?;
            if cli.json {
                print_json(&data);
            } else {
                let info: SessionInfo = from(data)?;
                println!("session {} {verb}: now {}", info.id.short(), info.state);
                if let Some(reason) = info.reason.filter(|_| info.state.as_str() == "failed") {
                    println!("  reason: {reason}");
                }
            }
        }
        Cmd::Interrupt { session } => {
            let data = connect(cli)
                .await?
                .call(Command::SessionInterrupt(sref(session)))
                .await?;
            if cli.json {
                print_json(&data);
            } else if data.get("interrupted").and_then(Value::as_bool) == Some(true) {
                println!("interrupted the running turn");
            } else {
                println!("no turn was running");
            }
        }
        Cmd::Approvals { session } => {
            let data = connect(cli)
                .await?
                .call(Command::ApprovalsList(ApprovalsArgs {
                    session: session.clone(),
                }))
                .await?;
            if cli.json {
                print_json(&data);
            } else {
                let list: Vec<ApprovalInfo> = from(data)?;
                if list.is_empty() {
                    println!("no pending approvals");
                }
                print_approvals(&list);
            }
        }
        Cmd::Approve {
            session, request, ..
        }
        | Cmd::Deny {
            session, request, ..
        } => {
            let (decision, message) = match &cli.cmd {
                Cmd::Approve { always: true, .. } => (Decision::AllowSession, None),
                Cmd::Approve { .. } => (Decision::Allow, None),
                Cmd::Deny { message, .. } => (Decision::Deny, message.clone()),
                _ => unreachable!("matched above"),
            };
            let args = DecideArgs {
                session: session.clone(),
                approval: request.clone(),
                decision,
                message,
                origin: None,
            };
            let data = connect(cli)
                .await?
                .call(Command::ApprovalDecide(args))
                .await?;
            if cli.json {
                print_json(&data);
            } else {
                let verb = match decision {
                    Decision::AllowSession => "allowed (and for the rest of the session)",
                    Decision::Allow => "allowed",
                    _ => "denied",
                };
                println!("{verb}");
            }
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
            let data = connect(cli)
                .await?
                .call(Command::QuestionAnswer(args))
                .await?;
            if cli.json {
                print_json(&data);
            } else {
                println!("answered");
            }
        }
        Cmd::Attach {
            session,
            now,
            no_attach,
        } => return attach(cli, session, *now, *no_attach).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `ccrm attach`: the daemon hands the session to the TUI in tmux; then this process becomes
/// `tmux attach-session` (or, with `--no-attach`, prints where to attach).
async fn attach(cli: &Cli, session: &str, now: bool, no_attach: bool) -> Result<ExitCode, Failure> {
    use std::io::IsTerminal;
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
            .call(Command::SessionGet(SessionRef {
                session: session.to_owned(),
            }))
            .await?;
        let info: SessionInfo = from(data.get("session").cloned().unwrap_or_default())?;
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
    let info: AttachInfo = from(data.clone())?;
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
    use std::os::unix::process::CommandExt;
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

fn from<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Client(ClientError::Protocol(e.to_string())))
}

fn ago(ms: u64) -> String {
    let secs = common::event::now_ms().saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

fn print_sessions(list: &[SessionInfo]) {
    if list.is_empty() {
        println!("no sessions; start one with `ccrm start`");
        return;
    }
    println!(
        "{:<9} {:<16} {:<18} {:>5} {:>7}  {:<10} CWD",
        "ID", "NAME", "STATE", "QUEUE", "PENDING", "CREATED"
    );
    for s in list {
        println!(
            "{:<9} {:<16} {:<18} {:>5} {:>7}  {:<10} {}",
            s.id.short(),
            s.name.as_deref().unwrap_or("-"),
            s.state.as_str(),
            s.queued,
            s.pending,
            ago(s.created_ms),
            s.cwd.display()
        );
    }
}

fn print_session(s: &SessionInfo) {
    println!("session {}", s.id);
    if let Some(n) = &s.name {
        println!("  name:        {n}");
    }
    println!("  state:       {}", s.state);
    if let Some(r) = &s.reason {
        println!("  reason:      {r}");
    }
    println!("  cwd:         {}", s.cwd.display());
    println!(
        "  model:       {}",
        s.model.as_deref().unwrap_or("(default)")
    );
    println!(
        "  permissions: {}{}",
        s.permission_mode,
        if s.auto_allow { ", auto-allow" } else { "" }
    );
    if !s.session_allowed_tools.is_empty() {
        println!(
            "  allowed for this session: {}",
            s.session_allowed_tools.join(", ")
        );
    }
    if let Some(pid) = s.pid {
        println!("  pid:         {pid}");
    }
    println!("  turns:       {} (queued {})", s.turns, s.queued);
    if let Some(c) = s.cost_usd {
        println!("  cost:        ${c:.4}");
    }
}

fn print_approvals(list: &[ApprovalInfo]) {
    for a in list {
        let sid = a.session_id.short();
        match a.kind {
            ApprovalKind::Permission => {
                println!(
                    "⏸  {} wants to use {}: {}",
                    sid,
                    a.tool_name,
                    preview(&a.input, 200)
                );
                println!(
                    "   ccrm approve {sid} {}   |   ccrm deny {sid} {} -m \"why\"",
                    a.approval_id.short(),
                    a.approval_id.short()
                );
            }
            ApprovalKind::Question => {
                for q in &a.questions {
                    println!("?  {sid} asks: {}", q.question);
                    for (i, o) in q.options.iter().enumerate() {
                        println!(
                            "     {}. {}{}",
                            i + 1,
                            o.label,
                            o.description
                                .as_deref()
                                .map(|d| format!(" — {d}"))
                                .unwrap_or_default()
                        );
                    }
                }
                println!(
                    "   ccrm answer {sid} <choice> --request {}",
                    a.approval_id.short()
                );
            }
        }
    }
}

/// A one-line, length-capped preview of a tool input.
pub fn preview(v: &Value, max: usize) -> String {
    let s = match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let s = s.replace('\n', "⏎");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// Prints events as a human reads a session (or as JSON lines).
struct Printer<'a> {
    json: bool,
    session: &'a str,
    mid_line: bool,
    streamed_text: bool,
}

impl<'a> Printer<'a> {
    fn new(json: bool, session: &'a str) -> Self {
        Self {
            json,
            session,
            mid_line: false,
            streamed_text: false,
        }
    }

    fn line(&mut self, text: &str) {
        if self.mid_line {
            println!();
            self.mid_line = false;
        }
        println!("{text}");
    }

    fn event(&mut self, ev: &Event) {
        if self.json {
            println!("{}", serde_json::to_string(ev).unwrap_or_default());
            return;
        }
        let s = self.session;
        match &ev.kind {
            EventKind::AssistantDelta { text } => {
                print!("{text}");
                let _ = std::io::stdout().flush();
                self.mid_line = !text.ends_with('\n');
                self.streamed_text = true;
            }
            EventKind::AssistantText { text } => {
                if self.streamed_text {
                    self.streamed_text = false;
                    if self.mid_line {
                        println!();
                        self.mid_line = false;
                    }
                } else {
                    self.line(text);
                }
            }
            EventKind::ToolUse { name, input, .. } => {
                self.line(&format!("⚙  {name} {}", preview(input, 160)))
            }
            EventKind::ToolResult {
                content, is_error, ..
            } => {
                let first = content.lines().next().unwrap_or_default();
                let mark = if *is_error { "✗" } else { "↳" };
                self.line(&format!("   {mark} {}", preview(&Value::from(first), 160)));
            }
            EventKind::PermissionRequest {
                approval_id,
                tool_name,
                input,
                ..
            } => {
                self.line(&format!(
                    "⏸  approval needed: {tool_name} {}",
                    preview(input, 200)
                ));
                self.line(&format!(
                    "   ccrm approve {s} {}  [--always]   |   ccrm deny {s} {} [-m \"why\"]",
                    approval_id.short(),
                    approval_id.short()
                ));
            }
            EventKind::PermissionDecision {
                tool_name,
                decision,
                by,
                message,
                ..
            } => {
                let verb = match decision {
                    Decision::Allow => "allowed",
                    Decision::AllowSession => "allowed for the session",
                    Decision::Deny => "denied",
                    Decision::Cancelled => "cancelled",
                    Decision::Aborted => "aborted",
                };
                let msg = message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                self.line(&format!("   {tool_name} {verb} by {by}{msg}"));
            }
            EventKind::Question {
                approval_id,
                questions,
            } => {
                for q in questions {
                    self.line(&format!("?  {}", q.question));
                    for (i, o) in q.options.iter().enumerate() {
                        self.line(&format!("   {}. {}", i + 1, o.label));
                    }
                }
                self.line(&format!(
                    "   ccrm answer {s} <choice> --request {}",
                    approval_id.short()
                ));
            }
            EventKind::Answer {
                answers,
                by,
                decision,
                ..
            } => {
                let text: Vec<String> = answers.iter().map(|(q, a)| format!("{q} → {a}")).collect();
                self.line(&format!(
                    "   answered by {by} ({decision:?}): {}",
                    text.join("; ")
                ));
            }
            EventKind::TurnResult {
                is_error,
                text,
                duration_ms,
                cost_usd,
                subtype,
                ..
            } => {
                let secs = duration_ms
                    .map(|d| format!(" in {:.1}s", d as f64 / 1000.0))
                    .unwrap_or_default();
                let cost = cost_usd
                    .map(|c| format!(", session cost ${c:.4}"))
                    .unwrap_or_default();
                if *is_error {
                    let why = text.as_deref().unwrap_or(subtype);
                    self.line(&format!("✗ turn failed{secs}: {why}"));
                } else {
                    self.line(&format!("✓ done{secs}{cost}"));
                }
            }
            EventKind::State { state, reason } => {
                let r = reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                self.line(&format!("·  state: {state}{r}"));
            }
            EventKind::Prompt { text, origin, .. } => self.line(&format!(
                "»  [{origin}] {}",
                preview(&Value::from(text.as_str()), 200)
            )),
            EventKind::TurnStarted { .. } => {}
            EventKind::ApiRetry {
                attempt, status, ..
            } => {
                self.line(&format!(
                    "·  API call failed ({}); retry {attempt}",
                    status.map_or("no response".into(), |s| s.to_string())
                ));
            }
            EventKind::Error { message } => self.line(&format!("!  {message}")),
            EventKind::Interrupted { by } => self.line(&format!("·  interrupted by {by}")),
            EventKind::Attached { target } => self.line(&format!("·  attached in tmux ({target})")),
            EventKind::Detached { reason } => self.line(&format!("·  detached ({reason})")),
        }
    }

    fn finish(&mut self) {
        if self.mid_line {
            println!();
            self.mid_line = false;
        }
    }
}

// ----- daemon management ------------------------------------------------------------------

async fn daemon_cmd(cli: &Cli, cmd: &DaemonCmd) -> Result<ExitCode, Failure> {
    let socket = socket_path(cli)?;
    match cmd {
        DaemonCmd::Status => match Client::connect(&socket).await {
            Ok(mut c) => {
                let data = c.call(Command::DaemonStatus(NoArgs {})).await?;
                if cli.json {
                    print_json(&data);
                } else {
                    let st: DaemonStatus = from(data)?;
                    println!(
                        "ccrmd {} running (pid {}, protocol {})",
                        st.version, st.pid, st.protocol
                    );
                    println!("  socket:    {}", st.socket.display());
                    println!("  state dir: {}", st.state_dir.display());
                    if let Some(b) = &st.claude_bin {
                        println!("  claude:    {}", b.display());
                    }
                    let counts: Vec<String> = st
                        .sessions
                        .iter()
                        .map(|(k, v)| format!("{v} {k}"))
                        .collect();
                    println!(
                        "  sessions:  {}",
                        if counts.is_empty() {
                            "none".to_owned()
                        } else {
                            counts.join(", ")
                        }
                    );
                    println!("  pending approvals: {}", st.pending_approvals);
                    if st.protocol != common::IPC_PROTOCOL_VERSION {
                        println!(
                            "  warning: this ccrm speaks protocol {}; restart the daemon (`ccrm daemon stop && ccrm daemon start`)",
                            common::IPC_PROTOCOL_VERSION
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(ClientError::NotRunning { .. }) => {
                if cli.json {
                    println!(
                        "{}",
                        serde_json::json!({"running": false, "socket": socket})
                    );
                } else {
                    println!(
                        "ccrmd is not running (socket {}); start it with `ccrm daemon start`",
                        socket.display()
                    );
                }
                Ok(ExitCode::from(3))
            }
            Err(e) => Err(e.into()),
        },
        DaemonCmd::Stop => {
            let mut c = match Client::connect(&socket).await {
                Ok(c) => c,
                Err(ClientError::NotRunning { .. }) => {
                    println!("ccrmd is not running");
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => return Err(e.into()),
            };
            let st: DaemonStatus = from(c.call(Command::DaemonStatus(NoArgs {})).await?)?;
            c.call(Command::DaemonStop(NoArgs {})).await?;
            // Wait for the process to go (sessions get their grace period first).
            let deadline = Instant::now() + Duration::from_secs(60);
            let pid = nix::unistd::Pid::from_raw(st.pid as i32);
            while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if nix::sys::signal::kill(pid, None).is_ok() {
                return Err(
                    anyhow::anyhow!("ccrmd (pid {}) is still running after 60 s", st.pid).into(),
                );
            }
            if cli.json {
                println!("{}", serde_json::json!({"stopped": true, "pid": st.pid}));
            } else {
                println!("ccrmd stopped (pid {})", st.pid);
            }
            Ok(ExitCode::SUCCESS)
        }
        DaemonCmd::Start => {
            if let Ok(mut c) = Client::connect(&socket).await {
                let st: DaemonStatus = from(c.call(Command::DaemonStatus(NoArgs {})).await?)?;
                println!("ccrmd is already running (pid {})", st.pid);
                return Ok(ExitCode::SUCCESS);
            }
            let cfg = load_config(cli)?;
            let pid = start_background(cli, &cfg, &socket).await?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"started": true, "pid": pid, "socket": socket, "log": cfg.log_path()})
                );
            } else {
                println!(
                    "ccrmd started (pid {pid}); log: {}",
                    cfg.log_path().display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn start_background(cli: &Cli, cfg: &Config, socket: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::OpenOptionsExt;
    crate::fsutil::private_dir(&cfg.state_dir)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(cfg.log_path())?;
    let mut cmd = std::process::Command::new(crate::up::find_bin("ccrmd")?);
    if let Some(c) = &cli.config {
        cmd.arg("--config").arg(c);
    }
    if cli.socket.is_some() {
        // The socket lives in the runtime dir; keep the daemon on the one we will poll.
        if let Some(dir) = socket.parent() {
            cmd.arg("--runtime-dir").arg(dir);
        }
    }
    // Not killed when `ccrm` exits: the daemon lives on in its own process group.
    let mut child = tokio::process::Command::from(cmd)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let pid = child.id().unwrap_or(0);
    crate::up::wait_until("ccrmd", &mut child, &cfg.log_path(), || async {
        match Client::connect(socket).await {
            Ok(mut c) => c.call(Command::DaemonStatus(NoArgs {})).await.is_ok(),
            Err(_) => false,
        }
    })
    .await?;
    Ok(pid)
}
