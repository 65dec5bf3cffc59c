//! The clap definitions of `ccrm`: the global flags ([`Cli`]), the subcommands ([`Cmd`]) and
//! `ccrm daemon ...` ([`DaemonCmd`], with [`InstallArgs`] and [`UninstallArgs`]). Their doc comments are the `--help` text. Plain data:
//! the dispatch in [`crate::cli`] turns a parsed [`Cli`] into calls of the command modules.

use std::path::PathBuf;

use clap::{ArgGroup, Parser, Subcommand};

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
        /// Start in this workspace (see `ccrm workspace push`) instead of --cwd.
        #[arg(long, conflicts_with = "cwd")]
        workspace: Option<String>,
        /// Extra arguments for this session's claude, as one string split like a shell
        /// would (e.g. --claude-args "--append-system-prompt 'Be brief'"). Flags ccrm
        /// manages itself (--model, --permission-mode, --resume, -p, ...) are refused.
        #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
        claude_args: Option<String>,
    },
    /// Workspaces: directories filled from a zip, for sessions and executions to run in.
    Workspace {
        /// What to do.
        #[command(subcommand)]
        cmd: WorkspaceCmd,
    },
    /// Run one prompt in a fresh claude (in a workspace or directory) with restricted tools,
    /// print the answer as it streams, and exit with the execution's exit code.
    #[command(
        group(ArgGroup::new("place").required(true).args(["workspace", "cwd"])),
        after_help = "Tools: the daemon's read-only ones (allowed_tools) plus --allow-tool; \
any other tool use is denied and the model is told why.\n\
Exit status: claude's exit code (0, or 1 when the run ended in an error); 1 when the \
execution failed, timed out or was cancelled; Ctrl-C cancels it.\n\
Example: ccrm workspace push ./site --id site && ccrm exec -w site \"list the pages\""
    )]
    Exec {
        /// The prompt (words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        prompt: Vec<String>,
        /// Run in this workspace (see `ccrm workspace push`).
        #[arg(long, short = 'w')]
        workspace: Option<String>,
        /// Run in this directory instead of a workspace.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Seconds the run may take (from its start, not counting time queued), 1 to 86400.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Model name or alias.
        #[arg(long)]
        model: Option<String>,
        /// Another tool the run may use (repeatable): a name such as Write, or a rule such
        /// as "Bash(git status:*)".
        #[arg(long = "allow-tool", value_name = "TOOL")]
        allow_tools: Vec<String>,
        /// The execution's id: letters, digits, `-`, `_` (at most 64) [default: a new UUID].
        #[arg(long)]
        id: Option<String>,
    },
    /// List sessions.
    #[command(alias = "ls")]
    List,
    /// Show one session and its pending approvals.
    Status {
        /// Session id, prefix or name.
        session: String,
    },
    /// Send a prompt (queued if a turn is running). `ccrm send` is the same command.
    #[command(visible_alias = "send")]
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
    /// until Ctrl-C, restarting either if it crashes; prints the API URL and token.
    Up(crate::up::UpArgs),
    /// Check this machine's setup (claude, credentials, tmux, daemon, bot link, TLS, disk,
    /// clock) and say how to fix what is wrong; exits 1 when a check fails.
    Doctor,
    /// Print a shell completion script, e.g. `ccrm completions bash >
    /// ~/.local/share/bash-completion/completions/ccrm`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages into a directory (used by scripts/man.sh).
    #[command(hide = true)]
    Man {
        /// Where to write `ccrm.1` and the subcommand pages.
        dir: PathBuf,
    },
}

/// `ccrm workspace ...`.
#[derive(Subcommand, Debug)]
pub enum WorkspaceCmd {
    /// Create a workspace from a directory (zipped on the fly, honouring .gitignore, never
    /// .git/) or a .zip file.
    Push {
        /// A directory or a .zip file.
        path: PathBuf,
        /// The workspace id: letters, digits, `-`, `_` (at most 64).
        #[arg(long)]
        id: String,
        /// A human name [default: the id].
        #[arg(long)]
        name: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// `overwrite` replaces an existing workspace; `reuse` keeps it as it is.
        #[arg(long, default_value = "overwrite", value_parser = ["overwrite", "reuse"])]
        policy: String,
    },
    /// List workspaces with their size and users.
    #[command(alias = "ls")]
    List,
    /// Delete a workspace (refused while a session or execution uses it).
    #[command(visible_alias = "delete")]
    Rm {
        /// The workspace id.
        id: String,
    },
}

/// `ccrm daemon ...`.
#[derive(Subcommand, Debug)]
pub enum DaemonCmd {
    /// Start ccrmd in the background (logs go to the state dir).
    Start {
        /// Most one-shot executions that run at once [default: number of CPUs].
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Stop ccrmd: sessions are stopped gracefully first.
    Stop,
    /// Show whether ccrmd runs, its pid, version and sessions.
    Status,
    /// Install ccrmd as a service of this user (systemd user unit; launchd agent on macOS)
    /// that starts at login and restarts on failure, and start it.
    Install(InstallArgs),
    /// Stop and remove the service that `ccrm daemon install` set up.
    Uninstall(UninstallArgs),
}

/// Flags of `ccrm daemon install`.
#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// The bot to link to (`wss://host` or, on this machine, `ws://127.0.0.1:7878`).
    #[arg(long, value_name = "URL")]
    pub bot_url: Option<String>,
    /// File holding the daemon key for the bot (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// PEM CA certificate that signed the bot's certificate (private CA or self-signed).
    #[arg(long, value_name = "FILE")]
    pub bot_ca_file: Option<PathBuf>,
    /// Allow a plain ws:// bot URL to another machine (the key travels in clear text).
    #[arg(long)]
    pub allow_insecure_bot: bool,
    /// Print the unit and where it would go; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the unit but do not enable or start it.
    #[arg(long)]
    pub no_enable: bool,
    /// Service manager [default: systemd on Linux, launchd on macOS].
    #[arg(long, value_enum)]
    pub manager: Option<crate::service::Manager>,
}

/// Flags of `ccrm daemon uninstall`.
#[derive(clap::Args, Debug)]
pub struct UninstallArgs {
    /// Only remove the file; do not ask the service manager to stop the service.
    #[arg(long)]
    pub no_disable: bool,
    /// Service manager [default: systemd on Linux, launchd on macOS].
    #[arg(long, value_enum)]
    pub manager: Option<crate::service::Manager>,
}
