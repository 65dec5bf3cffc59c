//! `ccrm`: the command line for ccrmd. All logic is in [`ccrm_daemon::cli`].

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = ccrm_daemon::cli::Cli::parse();
    ccrm_daemon::cli::run(cli).await
}
