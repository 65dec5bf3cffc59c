//! The tool calls of one turn and how each ended, so the turn's summary tells the truth:
//! a file counts as changed only when an editing tool ran and succeeded (a denied or
//! failed Write changes nothing), and calls that were denied or failed are counted apart.
//!
//! [`Ledger`] is fed the turn's events by [`super::progress::Turn`]; nothing here does I/O.

use std::collections::{BTreeSet, HashMap};

use common::event::Decision;
use serde_json::Value;

use crate::chat::render::{self, Tally};

/// How a tool call ended (so far).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Asked for or running.
    Running,
    /// Ran and succeeded.
    Ok,
    /// Ran (or tried to) and failed.
    Failed,
    /// Refused by a person or a rule; it did not run.
    Denied,
    /// Withdrawn (the turn was interrupted, the session ended) before it ran.
    Skipped,
}

/// One tool call of the turn.
struct Call {
    id: String,
    line: String,
    file: Option<String>,
    outcome: Outcome,
}

/// The turn's tool calls (see the module docs).
#[derive(Default)]
pub struct Ledger {
    calls: Vec<Call>,
    /// Approval id → the tool call it asks about.
    approvals: HashMap<String, String>,
}

impl Ledger {
    /// The model called tool `name` (call `id`) with `input`.
    pub fn tool_use(&mut self, id: &str, name: &str, input: &Value) {
        self.calls.push(Call {
            id: id.to_owned(),
            line: render::tool_line(name, input),
            file: render::changed_file(name, input),
            outcome: Outcome::Running,
        });
    }

    /// Approval `approval` asks about call `tool_use_id`.
    pub fn permission_request(&mut self, approval: &str, tool_use_id: Option<&str>) {
        if let Some(t) = tool_use_id {
            self.approvals.insert(approval.to_owned(), t.to_owned());
        }
    }

    /// Approval `approval` ended with `decision`.
    pub fn decision(&mut self, approval: &str, decision: Decision) {
        let outcome = match decision {
            Decision::Deny => Outcome::Denied,
            Decision::Cancelled | Decision::Aborted => Outcome::Skipped,
            Decision::Allow | Decision::AllowSession => return,
        };
        let Some(id) = self.approvals.get(approval) else {
            return;
        };
        if let Some(c) = self.calls.iter_mut().find(|c| &c.id == id) {
            c.outcome = outcome;
        }
    }

    /// Call `id` finished; `is_error` when it failed or was refused.
    pub fn result(&mut self, id: &str, is_error: bool) {
        if let Some(c) = self.calls.iter_mut().find(|c| c.id == id) {
            // A denial or a withdrawal also comes back as an error result: keep what it was.
            if c.outcome == Outcome::Running {
                c.outcome = if is_error {
                    Outcome::Failed
                } else {
                    Outcome::Ok
                };
            }
        }
    }

    /// The turn ended: calls still open did not get to run.
    pub fn end(&mut self) {
        for c in &mut self.calls {
            if c.outcome == Outcome::Running {
                c.outcome = Outcome::Skipped;
            }
        }
    }

    /// What the calls came to.
    pub fn tally(&self) -> Tally {
        let count = |o: Outcome| self.calls.iter().filter(|c| c.outcome == o).count();
        let files: BTreeSet<&str> = self
            .calls
            .iter()
            .filter(|c| c.outcome == Outcome::Ok)
            .filter_map(|c| c.file.as_deref())
            .collect();
        Tally {
            tools: self.calls.len(),
            files: files.len(),
            denied: count(Outcome::Denied),
            failed: count(Outcome::Failed),
        }
    }

    /// One line per call, marked with how it ended: the last `max`, after how many were
    /// left out.
    pub fn lines(&self, max: usize) -> (usize, Vec<String>) {
        let hidden = self.calls.len().saturating_sub(max);
        let lines = self.calls[hidden..]
            .iter()
            .map(|c| {
                let mark = match c.outcome {
                    Outcome::Running => "",
                    Outcome::Ok => " ✓",
                    Outcome::Failed => " ⚠️ failed",
                    Outcome::Denied => " 🚫 denied",
                    Outcome::Skipped => " ➖ not run",
                };
                format!("{}{mark}", c.line)
            })
            .collect();
        (hidden, lines)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_writes_that_ran_count_as_changed_files() {
        let mut l = Ledger::default();
        l.tool_use("t1", "Write", &json!({"file_path": "/a"}));
        l.tool_use("t2", "Write", &json!({"file_path": "/b"}));
        l.tool_use("t3", "Edit", &json!({"file_path": "/c"}));
        l.tool_use("t4", "Bash", &json!({"command": "ls"}));
        l.permission_request("ap2", Some("t2"));
        l.decision("ap2", Decision::Deny);
        l.result("t1", false);
        l.result("t2", true);
        l.result("t3", true);
        l.end();
        assert_eq!(
            l.tally(),
            Tally {
                tools: 4,
                files: 1,
                denied: 1,
                failed: 1,
            }
        );
        let (hidden, lines) = l.lines(3);
        assert_eq!(hidden, 1);
        assert_eq!(
            lines,
            [
                "Write: /b 🚫 denied",
                "Edit: /c ⚠️ failed",
                "Bash: ls ➖ not run"
            ]
        );
    }
}
