//! `ccrmd`: the per-machine daemon that owns Claude Code sessions. Thin: flags, tracing,
//! config, then [`ccrm_daemon::lifecycle::run`]. Also the exec shim for children
//! ([`ccrm_daemon::spawn::SHIM_ARG`]) and the TLS checks `ccrm` has it run
//! ([`ccrm_daemon::probe`]).

use std::path::PathBuf;

use ccrm_daemon::config::{Config, Overrides};
use ccrm_daemon::lifecycle::{self, RunOptions};
use ccrm_daemon::spawn;
use clap::Parser;

/// ccrmd: runs Claude Code sessions for the `ccrm` CLI (and, later, the bot).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Config file [default: $XDG_CONFIG_HOME/ccrm/ccrmd.toml].
    #[arg(long, env = "CCRM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the socket and pidfile [default: $XDG_RUNTIME_DIR/ccrm].
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// Directory for session records and logs [default: $XDG_STATE_HOME/ccrm].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The Claude Code binary [default: `claude` on PATH].
    #[arg(long)]
    claude_bin: Option<PathBuf>,
    /// Most one-shot executions that run at once [default: number of CPUs; env CCRM_WORKERS].
    #[arg(long)]
    workers: Option<usize>,
    /// Print the effective configuration as JSON and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> std::process::ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == spawn::SHIM_ARG) {
        spawn::run_shim(&argv[2..]);
    }
    if let Some(code) = ccrm_daemon::probe::serve(&argv) {
        return code;
    }
    let args = Args::parse();
    common::logging::init("ccrmd");
    let cfg = match Config::load(&Overrides {
        config_file: args.config,
        runtime_dir: args.runtime_dir,
        state_dir: args.state_dir,
        claude_bin: args.claude_bin,
        workers: args.workers,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ccrmd: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
        return std::process::ExitCode::SUCCESS;
    }
    // One thread: children are forked from it, and it lives as long as the process, which
    // is what the parent-death signal of the exec shim needs.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccrmd: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let shim = std::env::current_exe().ok();
    match rt.block_on(lifecycle::run(cfg, RunOptions { shim })) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccrmd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
