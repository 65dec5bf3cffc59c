//! An `AskUserQuestion` with several questions, or with a multi-select one, asked in chat
//! one question at a time and answered as one reply. The question message of each place
//! keeps its progress in its `chat_approvals` row ([`Steps`], JSON in `steps`): the
//! questions, the step shown, the answers so far and the options ticked on a multi-select
//! step. A press picks an option (single select: the next question follows in the same
//! message), ticks or unticks one (multi-select), or says Done; after the last question
//! every answer goes to the daemon in one `question.answer`. Each step is a compare-and-set
//! on the row, so two presses at once cannot both move it, and a press on a step already
//! answered is told so. A single single-select question keeps its one-press buttons
//! ([`super::approvals`]).
//!
//! Button data: `q:<row>:<step>.<option>` and `q:<row>:<step>.d` (Done).

use common::event::Question;
use common::ids::DaemonId;
use common::ipc::{AnswerArgs, Command, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{error, warn};

use super::ctx::{Ctx, hub_msg};
use super::render::{self, Rich};
use super::{Ack, Button, ButtonStyle, ChatPlatform, Incoming, Outgoing, Place};
use crate::db::ChatApprovalRow;
use crate::hub::HubError;

/// One question as the steps keep it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Step {
    question: String,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    multi: bool,
    options: Vec<String>,
}

/// A question message's progress (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    questions: Vec<Step>,
    /// The question shown now (0-based).
    step: usize,
    /// One answer per question answered so far (several labels comma-separated).
    answers: Vec<String>,
    /// The options ticked on the current multi-select step.
    #[serde(default)]
    ticked: Vec<usize>,
}

impl Steps {
    /// The steps of `questions`, or `None` when one press answers them (a single
    /// single-select question).
    pub fn of(questions: &[Question]) -> Option<Self> {
        if questions.len() < 2 && !questions.iter().any(|q| q.multi_select) {
            return None;
        }
        Some(Self {
            questions: questions
                .iter()
                .map(|q| Step {
                    question: q.question.clone(),
                    header: q.header.clone(),
                    multi: q.multi_select,
                    options: q.options.iter().map(|o| o.label.clone()).collect(),
                })
                .collect(),
            ..Self::default()
        })
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The message of question message `row` at this step.
    pub fn view(&self, row: i64) -> Outgoing {
        let Some(q) = self.questions.get(self.step) else {
            return Outgoing::text(Rich::text("❓ Answered; sending…"));
        };
        let mut text = Rich::default().bold(format!(
            "❓ Question {} of {}{}",
            self.step + 1,
            self.questions.len(),
            q.header
                .as_deref()
                .map(|h| format!(": {}", render::one_line(h)))
                .unwrap_or_default()
        ));
        text = text.push(format!("\n{}", render::truncate(&q.question, 1500)));
        if q.multi {
            text = text.push("\n(tick every option that applies, then press Done)");
        }
        for (i, a) in self.answers.iter().enumerate() {
            let asked = self.questions.get(i).map_or("", |q| q.question.as_str());
            text = text.push(format!(
                "\n✔ {}: {}",
                render::truncate(&render::one_line(asked), 80),
                render::truncate(a, 200)
            ));
        }
        let step = self.step;
        let mut buttons: Vec<Vec<Button>> = q
            .options
            .iter()
            .enumerate()
            .map(|(i, o)| {
                let label = match (q.multi, self.ticked.contains(&i)) {
                    (false, _) => o.clone(),
                    (true, true) => format!("☑ {o}"),
                    (true, false) => format!("☐ {o}"),
                };
                vec![Button {
                    label: render::truncate(&label, 60),
                    data: format!("q:{row}:{step}.{i}"),
                    style: ButtonStyle::Secondary,
                }]
            })
            .collect();
        if q.multi {
            buttons.push(vec![Button {
                label: "✅ Done".to_owned(),
                data: format!("q:{row}:{step}.d"),
                style: ButtonStyle::Primary,
            }]);
        }
        Outgoing {
            text,
            buttons,
            // A single select reads well as one menu where the platform has menus.
            choice: !q.multi,
        }
    }

    /// What pressing `choice` (`<step>.<option>` or `<step>.d`) does; the new steps, or
    /// why nothing changed.
    fn press(&self, choice: &str) -> Result<Self, &'static str> {
        let (step, what) = choice.split_once('.').ok_or("Unknown button")?;
        let step: usize = step.parse().map_err(|_| "Unknown button")?;
        if step != self.step || self.step >= self.questions.len() {
            return Err("That question was already answered");
        }
        let q = &self.questions[step];
        let mut next = self.clone();
        if what == "d" {
            if !q.multi {
                return Err("Unknown button");
            }
            if next.ticked.is_empty() {
                return Err("Tick at least one option first");
            }
            next.ticked.sort_unstable();
            let picked: Vec<&str> = next
                .ticked
                .iter()
                .filter_map(|&i| q.options.get(i).map(String::as_str))
                .collect();
            next.answers.push(picked.join(", "));
            next.ticked.clear();
            next.step += 1;
            return Ok(next);
        }
        let i: usize = what.parse().map_err(|_| "Unknown button")?;
        let label = q.options.get(i).ok_or("Unknown option")?;
        if q.multi {
            match next.ticked.iter().position(|&t| t == i) {
                Some(at) => {
                    next.ticked.remove(at);
                }
                None => next.ticked.push(i),
            }
        } else {
            next.answers.push(label.clone());
            next.step += 1;
        }
        Ok(next)
    }

    /// True when every question has its answer.
    fn complete(&self) -> bool {
        self.step >= self.questions.len()
    }
}

/// A press `choice` on question message `row` of a session on `daemon` (see the module
/// docs).
pub async fn press<P: ChatPlatform>(
    ctx: &Ctx<P>,
    inc: &Incoming,
    row: &ChatApprovalRow,
    daemon: &DaemonId,
    choice: &str,
) -> Ack {
    let no = |text: &str| Ack {
        text: text.to_owned(),
        ok: false,
    };
    let Ok(steps) = serde_json::from_str::<Steps>(&row.steps) else {
        return no("Unknown button");
    };
    let next = match steps.press(choice) {
        Ok(n) => n,
        Err(why) => return no(why),
    };
    let new = next.to_json();
    match ctx
        .state
        .db
        .chat_approval_step(row.id, &row.steps, &new)
        .await
    {
        Ok(true) => {}
        Ok(false) => return no("That question was already answered"),
        Err(e) => {
            error!(error = %e, "storing a question's progress failed");
            return no("Internal error");
        }
    }
    let place = Place {
        chat: row.chat_id.clone(),
        thread: row.thread_id.clone(),
    };
    if !next.complete() {
        edit(ctx, &place, row, &next).await;
        let toast = if next.step > steps.step {
            "Next question"
        } else {
            "Noted"
        };
        return Ack {
            text: toast.to_owned(),
            ok: true,
        };
    }
    let cmd = Command::QuestionAnswer(AnswerArgs {
        session: row.session_id.to_string(),
        approval: Some(row.approval_id.clone()),
        answers: next.answers.clone(),
        origin: Some(ctx.origin(&inc.from)),
    });
    let result = ctx.command(daemon, cmd).await;
    let detail = json!({"answers": next.answers, "ok": result.is_ok()});
    ctx.gate
        .audit(&inc.from, "question.answer", &row.approval_id, detail)
        .await;
    match result {
        // The daemon's `answer` event edits every message of the question.
        Ok(_) => Ack {
            text: "Answered".to_owned(),
            ok: true,
        },
        Err(HubError::Daemon(e)) if e.code == ErrorCode::AlreadyDecided => no("Already decided"),
        Err(e) => {
            // Not answered: back to the last question, so it can be tried again.
            if let Err(e) = ctx
                .state
                .db
                .chat_approval_step(row.id, &new, &row.steps)
                .await
            {
                error!(error = %e, "restoring a question's progress failed");
            }
            no(&hub_msg(e))
        }
    }
}

/// Shows `steps` in question message `row`.
async fn edit<P: ChatPlatform>(ctx: &Ctx<P>, place: &Place, row: &ChatApprovalRow, steps: &Steps) {
    if row.message_id.is_empty() {
        return;
    }
    if let Err(e) = ctx
        .platform
        .edit(place, &row.message_id, &steps.view(row.id))
        .await
    {
        warn!(
            error = format!("{e:#}"),
            "editing a question message failed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::event::QuestionOption;

    fn q(text: &str, multi: bool, options: &[&str]) -> Question {
        Question {
            question: text.into(),
            header: None,
            options: options
                .iter()
                .map(|l| QuestionOption {
                    label: (*l).into(),
                    description: None,
                })
                .collect(),
            multi_select: multi,
        }
    }

    #[test]
    fn one_single_select_question_needs_no_steps() {
        assert!(Steps::of(&[q("Pick?", false, &["a", "b"])]).is_none());
        assert!(Steps::of(&[q("Pick?", true, &["a", "b"])]).is_some());
    }

    #[test]
    fn questions_are_answered_one_at_a_time_with_ticks_and_done() {
        let s = Steps::of(&[
            q("Colour?", false, &["Red", "Blue"]),
            q("Sizes?", true, &["S", "M", "L"]),
        ])
        .expect("steps");
        let v = s.view(7);
        assert!(v.text.plain().contains("Question 1 of 2"));
        assert_eq!(v.buttons[1][0].data, "q:7:0.1");
        assert!(v.choice);
        let s = s.press("0.1").expect("pick");
        assert_eq!(s.answers, ["Blue"]);
        assert_eq!(s.press("0.0"), Err("That question was already answered"));
        assert_eq!(s.press("1.d"), Err("Tick at least one option first"));
        let s = s.press("1.2").and_then(|s| s.press("1.0")).expect("ticks");
        let s = s.press("1.1").and_then(|s| s.press("1.1")).expect("untick");
        let v = s.view(7);
        assert!(!v.choice);
        assert_eq!(v.buttons[0][0].label, "☑ S");
        assert_eq!(v.buttons[1][0].label, "☐ M");
        assert_eq!(v.buttons[3][0].data, "q:7:1.d");
        assert!(v.text.plain().contains("✔ Colour?: Blue"));
        let s = s.press("1.d").expect("done");
        assert!(s.complete());
        assert_eq!(s.answers, ["Blue", "S, L"]);
        assert_eq!(s.press("1.d"), Err("That question was already answered"));
        assert_eq!(
            Steps::of(&[q("x", true, &["a"])]).expect("s").press("0.9"),
            Err("Unknown option")
        );
    }
}
