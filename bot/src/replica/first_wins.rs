//! The first answer to an approval wins in the database, whichever replica (or surface:
//! REST, dashboard, chat) it came through. Before an answer is sent to the daemon, the
//! approval is claimed with one conditional `UPDATE ... WHERE status = 'pending' ...
//! RETURNING` ([`Db::claim_approval`]); a later answer finds the claim or the stored
//! decision and gets `already_decided` (409 over REST) naming who answered, without
//! reaching the daemon. An answer that never reached the daemon (offline, timeout, a
//! refused answer) gives its claim back. The daemon still refuses a second answer of its
//! own (the CLI or terminal answering beside the bot), so both layers agree.
//!
//! Works the same on SQLite (one bot: the race is between its surfaces) and PostgreSQL.

use std::time::Duration;

use common::event::{Decision, now_ms};
use common::ids::DaemonId;
use common::ipc::{Command, ErrorBody, ErrorCode};
use serde_json::Value;
use tracing::warn;

use crate::AppState;
use crate::db::Claim;
use crate::hub::HubError;

/// How old a claim must be before another answer may take it over: its replica died
/// between claiming and the daemon's answer (a command's own timeout, and some).
const STALE_CLAIM: Duration = Duration::from_secs(120);

/// Sends `cmd` to `daemon` like [`crate::hub::Hub::command`]; an approval decision or a
/// question's answer (naming its approval) is sent only if it claims the approval first.
pub async fn command(
    state: &AppState,
    daemon: &DaemonId,
    cmd: Command,
    timeout: Duration,
) -> Result<Value, HubError> {
    let Some((approval, by)) = answer_of(&cmd) else {
        return state.hub.command(daemon, cmd, timeout).await;
    };
    let stale_ms = u64::try_from(STALE_CLAIM.as_millis()).unwrap_or(u64::MAX);
    let claim = match state
        .db
        .claim_approval(&approval, &by, now_ms(), stale_ms)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            // The daemon still takes only the first answer; say why this one skipped the
            // database's check.
            warn!(error = %e, "claiming an approval failed; the daemon decides alone");
            Claim::Unknown
        }
    };
    match claim {
        Claim::Unknown => state.hub.command(daemon, cmd, timeout).await,
        Claim::Taken { by, decision } => Err(HubError::Daemon(taken(&approval, &by, decision))),
        Claim::Won(at) => {
            let result = state.hub.command(daemon, cmd, timeout).await;
            let reached = match &result {
                Ok(_) => true,
                // The daemon had its answer already (the CLI or terminal): its decision
                // event settles the row.
                Err(HubError::Daemon(e)) => e.code == ErrorCode::AlreadyDecided,
                Err(HubError::Offline(_) | HubError::Timeout(..)) => false,
            };
            if !reached && let Err(e) = state.db.release_approval(&approval, &by, at).await {
                warn!(error = %e, "giving back an approval claim failed");
            }
            result
        }
    }
}

/// The approval an answering command names (in full) and who answers.
fn answer_of(cmd: &Command) -> Option<(String, String)> {
    let (approval, origin) = match cmd {
        Command::ApprovalDecide(a) => (a.approval.as_ref()?, a.origin.as_ref()),
        Command::QuestionAnswer(a) => (a.approval.as_ref()?, a.origin.as_ref()),
        _ => return None,
    };
    let by = origin.map_or_else(|| "someone".to_owned(), ToString::to_string);
    Some((approval.clone(), by))
}

/// The refusal of an answer that came second.
fn taken(approval: &str, by: &str, decision: Option<Decision>) -> ErrorBody {
    let short: String = approval.chars().take(8).collect();
    let how = decision
        .and_then(|d| serde_json::to_value(d).ok())
        .and_then(|v| v.as_str().map(str::to_owned));
    let message = match how {
        Some(how) => format!("approval {short} was already answered first: {how} by {by}"),
        None => format!("approval {short} was already answered first by {by} (being delivered)"),
    };
    ErrorBody::new(ErrorCode::AlreadyDecided, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::event::{Origin, Surface};
    use common::ipc::{AnswerArgs, DecideArgs, SessionRef};

    #[test]
    fn only_answers_naming_an_approval_are_claimed() {
        let decide = Command::ApprovalDecide(DecideArgs {
            session: "s".into(),
            approval: Some("toolu_1".into()),
            decision: Decision::Allow,
            message: None,
            origin: Some(Origin::user(Surface::Rest, "alice")),
        });
        let (id, by) = answer_of(&decide).expect("a decision is claimed");
        assert_eq!(id, "toolu_1");
        assert!(by.contains("alice"), "{by}");
        let answer = Command::QuestionAnswer(AnswerArgs {
            session: "s".into(),
            approval: None,
            answers: vec!["Blue".into()],
            origin: None,
        });
        assert_eq!(
            answer_of(&answer),
            None,
            "no approval named: the daemon picks"
        );
        let stop = Command::SessionStop(SessionRef {
            session: "s".into(),
        });
        assert_eq!(answer_of(&stop), None);
    }

    #[test]
    fn the_refusal_names_who_answered_and_how() {
        let e = taken("toolu_0123456789", "rest:alice", Some(Decision::Deny));
        assert_eq!(e.code, ErrorCode::AlreadyDecided);
        assert!(e.message.contains("deny by rest:alice"), "{}", e.message);
        let e = taken("toolu_0123456789", "telegram:bob", None);
        assert!(e.message.contains("by telegram:bob"), "{}", e.message);
    }
}
