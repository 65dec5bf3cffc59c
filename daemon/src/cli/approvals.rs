//! The approval commands of `ccrm`: `approvals` lists pending tool calls and questions,
//! `approve` and `deny` decide a tool call, `answer` answers an AskUserQuestion. Requests go
//! through [`super::call`]; the listing is printed by [`super::output`].

use std::process::ExitCode;

use common::event::Decision;
use common::ipc::{AnswerArgs, ApprovalInfo, ApprovalsArgs, Command, DecideArgs};

use super::args::Cli;
use super::call::{Failure, decode, send_and_print};
use super::output::print_approvals;

/// `ccrm approvals`: what waits for a decision, in one session or all.
pub(super) async fn list(cli: &Cli, args: ApprovalsArgs) -> Result<ExitCode, Failure> {
    send_and_print(cli, Command::ApprovalsList(args), |data| {
        let list: Vec<ApprovalInfo> = decode(data)?;
        if list.is_empty() {
            println!("no pending approvals");
        }
        print_approvals(&list);
        Ok(())
    })
    .await
}

/// `ccrm approve|deny`: decides a pending tool call.
pub(super) async fn decide(cli: &Cli, args: DecideArgs) -> Result<ExitCode, Failure> {
    let verb = match args.decision {
        Decision::AllowSession => "allowed (and for the rest of the session)",
        Decision::Allow => "allowed",
        _ => "denied",
    };
    send_and_print(cli, Command::ApprovalDecide(args), |_| {
        println!("{verb}");
        Ok(())
    })
    .await
}

/// `ccrm answer`: answers a pending question.
pub(super) async fn answer(cli: &Cli, args: AnswerArgs) -> Result<ExitCode, Failure> {
    send_and_print(cli, Command::QuestionAnswer(args), |_| {
        println!("answered");
        Ok(())
    })
    .await
}
