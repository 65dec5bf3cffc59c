//! `ccrm-bot` binary: parses flags, loads the config, then either serves
//! ([`ccrm_bot::serve`]; also what a bare `ccrm-bot` does, over TLS when `tls_cert` and
//! `tls_key` are set, reloading them on SIGHUP) or runs a `keys` command
//! ([`ccrm_bot::keys`]). `completions` prints a shell completion script (clap_complete) and
//! the hidden `man` writes man pages (clap_mangen, used by `scripts/man.sh`); neither reads
//! the config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ccrm_bot::config::{BotConfig, Overrides};
use ccrm_bot::db::Db;
use ccrm_bot::keys::{self, KeysCmd};
use clap::{CommandFactory, Parser, Subcommand};

/// The ccrm server: WebSocket hub for daemons, REST API, dashboard and chat adapters.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "Chat front ends start when their token is set (environment only):\n  \
        CCRM_BOT_TELEGRAM_TOKEN  Telegram (with CCRM_BOT_TELEGRAM_ALLOWED_USERS)\n  \
        CCRM_BOT_DISCORD_TOKEN   Discord (with CCRM_BOT_DISCORD_GUILDS and \
        CCRM_BOT_DISCORD_ALLOWED_USERS or _ROLES)\n\
        Every setting, its TOML key and its CCRM_BOT_* variable: see the README."
)]
struct Args {
    /// Config file [default: $XDG_CONFIG_HOME/ccrm/bot.toml; env: CCRM_BOT_CONFIG].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory of the database [default: $XDG_DATA_HOME/ccrm; env: CCRM_BOT_DATA_DIR].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878; env: CCRM_BOT_LISTEN].
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Print the effective configuration as JSON (secrets redacted) and exit.
    #[arg(long, global = true)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server (the default).
    Serve,
    /// Manage API keys for daemons and users.
    Keys {
        /// Print JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Print a shell completion script, e.g. `ccrm-bot completions bash >
    /// ~/.local/share/bash-completion/completions/ccrm-bot`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages into a directory (used by scripts/man.sh).
    #[command(hide = true)]
    Man {
        /// Where to write `ccrm-bot.1` and the subcommand pages.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::logging::init("ccrm-bot");
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccrm-bot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match &args.command {
        Some(Cmd::Completions { shell }) => {
            let mut cmd = Args::command();
            clap_complete::generate(*shell, &mut cmd, "ccrm-bot", &mut std::io::stdout());
            return Ok(());
        }
        Some(Cmd::Man { dir }) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(Args::command(), dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            return Ok(());
        }
        _ => {}
    }
    let cfg = BotConfig::load(&Overrides {
        config_file: args.config,
        listen: args.listen,
        data_dir: args.data_dir,
    })?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg)?);
        return Ok(());
    }
    let rt = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    match args.command.unwrap_or(Cmd::Serve) {
        Cmd::Serve => rt.block_on(serve(cfg)),
        Cmd::Keys { json, cmd } => rt.block_on(async {
            let db = open_db(&cfg).await?;
            let result = keys::run(&db, &cmd, json, &mut std::io::stdout().lock()).await;
            db.close().await;
            result
        }),
        Cmd::Completions { .. } | Cmd::Man { .. } => Ok(()),
    }
}

async fn open_db(cfg: &BotConfig) -> anyhow::Result<Db> {
    let target = cfg.database()?;
    Db::connect(&target, &cfg.data_dir.join("revoked"))
        .await
        .with_context(|| format!("cannot open the database {}", target.describe()))
}

async fn serve(cfg: BotConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let db_target = cfg.database()?.describe();
    let state = ccrm_bot::AppState::open(cfg)
        .await
        .with_context(|| format!("cannot open the database {db_target}"))?;
    let tls = match (&state.cfg.tls_cert, &state.cfg.tls_key) {
        (Some(cert), Some(key)) => Some(ccrm_bot::tls::Tls::load(cert, key)?),
        _ => None,
    };
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), db = %db_target, "ccrm-bot listening");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let dashboard = state
        .cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    tracing::info!(
        url = %format!("{}/", dashboard.trim_end_matches('/')),
        "dashboard: open it in a browser and log in with a user token"
    );
    let served = match tls {
        Some(tls) => {
            let reload = tokio::spawn(ccrm_bot::tls::reload_on_sighup(tls.clone()));
            let listener = ccrm_bot::tls::Listener::tls(listener, tls);
            let served = ccrm_bot::serve(listener, state.clone(), shutdown_signal()).await;
            reload.abort();
            served
        }
        None => ccrm_bot::serve(listener, state.clone(), shutdown_signal()).await,
    };
    state.db.close().await;
    served
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
