//! `ccrm completions <shell>` (a completion script from clap_complete, on stdout) and the
//! hidden `ccrm man <dir>` (man pages from clap_mangen, written by `scripts/man.sh`). Both
//! work from the clap definitions alone: no config, no daemon.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use super::args::Cli;
use super::call::Failure;

/// Prints the completion script for `shell`.
pub(super) fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Failure> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "ccrm", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Writes `ccrm.1` and one page per subcommand (`ccrm-start.1`, ...) into `dir`.
pub(super) fn man(dir: &Path) -> Result<ExitCode, Failure> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
