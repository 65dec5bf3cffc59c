//! `ccrm doctor`: runs [`crate::doctor`]'s checks and prints each finding with its fix (or
//! the report as JSON with `--json`); exits 1 when any check failed.

use std::process::ExitCode;

use super::args::Cli;
use super::call::Failure;
use crate::doctor::{self, Options, Status};

/// `ccrm doctor`.
pub(super) async fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    let report = doctor::run(&Options {
        config_file: cli.config.clone(),
        socket: cli.socket.clone(),
    })
    .await;
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(anyhow::Error::from)?
        );
    } else {
        for f in &report.findings {
            let mark = match f.status {
                Status::Ok => "ok  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            println!("[{mark}] {:<11} {}", f.check, f.detail);
            if let Some(fix) = &f.fix {
                println!("       {:<11} fix: {fix}", "");
            }
        }
        let (fails, warns) = report
            .findings
            .iter()
            .fold((0, 0), |(f, w), x| match x.status {
                Status::Fail => (f + 1, w),
                Status::Warn => (f, w + 1),
                _ => (f, w),
            });
        println!();
        if fails == 0 && warns == 0 {
            println!("everything looks fine");
        } else {
            println!("{fails} problem(s), {warns} warning(s)");
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
