//! The approval commands of `ccrm`: `approvals` lists pending tool calls and questions,
//! `approve` and `deny` decide a tool call, `answer` answers an AskUserQuestion. Requests go
//! through [`super::call`]; the listing is printed by [`super::output`].

use std::process::ExitCode;

use common::event::Decision;
use common::ipc::{AnswerArgs, ApprovalInfo, ApprovalsArgs, Command, DecideArgs};

use super::args::Cli;
use super::call::{Failure, connect, decode};
use super::output::{print_approvals, print_json};

/// `ccrm approvals`: what waits for a decision, in one session or all.
pub(super) async fn list(cli: &Cli, args: ApprovalsArgs) -> Result<ExitCode, Failure> {
    let data = connect(cli)
        .await?
        .call(Command::ApprovalsList(args))
        .await?;
    if cli.json {
        print_json(&data);
    } else {
        let list: Vec<ApprovalInfo> = decode(data)?;
        if list.is_empty() {
            println!("no pending approvals");
        }
        print_approvals(&list);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ccrm approve|deny`: decides a pending tool call.
pub(super) async fn decide(cli: &Cli, args: DecideArgs) -> Result<ExitCode, Failure> {
    let decision = args.decision;
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
    Ok(ExitCode::SUCCESS)
}

/// `ccrm answer`: answers a pending question.
pub(super) async fn answer(cli: &Cli, args: AnswerArgs) -> Result<ExitCode, Failure> {
    let data = connect(cli)
        .await?
        .call(Command::QuestionAnswer(args))
        .await?;
    if cli.json {
        print_json(&data);
    } else {
        println!("answered");
    }
    Ok(ExitCode::SUCCESS)
}
