//! Who may use the chat core and what they did: the [`Gate`] holds the allowlist
//! ([`Access`]), the per-user prompt limit ([`Inbound`]), the memory of whom it already
//! refused, the names of the people it has seen (so a decision an older daemon reports as
//! `<platform>:<user id>` still shows a name, [`Gate::who`]), and writes the audit rows of
//! every action (actor `<platform>:<user id>`).
//!
//! [`super::core::ChatCore`] asks the gate before handling any input and says what
//! [`Gate::refuse`] decides; the other parts write their audit rows through it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use common::event::{Surface, now_ms};
use common::ids::SessionId;
use serde_json::{Value, json};
use tracing::error;

use super::ratelimit::Inbound;
use super::render;
use super::{Access, Incoming, Input, Sender, lock};
use crate::db::Db;

/// People whose names the gate keeps (enough for any team; beyond it only known ones are
/// updated).
const NAMES_KEPT: usize = 10_000;

/// What a refused sender is told.
pub const REFUSAL: &str = "Sorry, you are not allowed to use this bot.";

/// How to tell a refused sender (see [`Gate::refuse`]).
pub enum Refusal {
    /// Answer the input in place through this reply handle.
    InPlace(String),
    /// Send one message to the place.
    Message,
    /// Say nothing (told before, or a button press the adapter acknowledges itself).
    Silent,
}

/// The allowlist, limits and audit log of one platform (see the module docs).
pub struct Gate {
    db: Db,
    platform: &'static str,
    access: Access,
    inbound: Inbound,
    refused: Mutex<HashSet<String>>,
    names: Mutex<HashMap<String, String>>,
}

impl Gate {
    /// A gate for `platform` letting in `access`, with `prompts_per_minute` per user.
    pub fn new(db: Db, platform: &'static str, access: Access, prompts_per_minute: u32) -> Self {
        Self {
            db,
            platform,
            access,
            inbound: Inbound::new(prompts_per_minute),
            refused: Mutex::default(),
            names: Mutex::default(),
        }
    }

    /// True when `who` is on the allowlist (and remembers their name).
    pub fn allows(&self, who: &Sender) -> bool {
        if !who.name.is_empty() {
            let mut names = lock(&self.names);
            if names.len() < NAMES_KEPT || names.contains_key(&who.id) {
                names.insert(who.id.clone(), who.name.clone());
            }
        }
        self.access.allows(who)
    }

    /// Who did something, as a decision's `by` names them, for people on `own`: without
    /// the surface when it is `own` ("Alice", not "Alice (discord)"), and by name when an
    /// older daemon gave only `<platform>:<user id>` of someone the gate has seen.
    pub fn who(&self, by: &str, own: Surface) -> String {
        if let Some(id) = by.strip_prefix(&format!("{}:", self.platform))
            && let Some(name) = lock(&self.names).get(id)
        {
            return name.clone();
        }
        render::person(by, own)
    }

    /// How `from` appears in audit rows and as the creator of a binding.
    pub fn actor(&self, from: &Sender) -> String {
        format!("{}:{}", self.platform, from.id)
    }

    /// Writes an audit row (a failed write is logged, never passed on).
    pub async fn audit(&self, from: &Sender, action: &str, target: &str, detail: Value) {
        if let Err(e) = self
            .db
            .audit(&self.actor(from), action, target, detail, now_ms())
            .await
        {
            error!(error = %e, "audit write failed");
        }
    }

    /// True when `from` may send another prompt to `session` now; else the refusal is
    /// audited.
    pub async fn within_rate(&self, from: &Sender, session: &SessionId) -> bool {
        if self.inbound.check(&from.id) {
            return true;
        }
        self.audit(from, "prompt.rate_limited", &session.to_string(), json!({}))
            .await;
        false
    }

    /// Audits a refused input and decides how to say so: every time when the input awaits
    /// an answer in place (a Discord command), else once per user.
    pub async fn refuse(&self, inc: &Incoming) -> Refusal {
        let what = match &inc.input {
            Input::Text(_) => "text",
            Input::Command(_) => "command",
            Input::Button(_) => "button",
            Input::Files { .. } => "files",
        };
        self.audit(
            &inc.from,
            "chat.refused",
            &inc.place.chat,
            json!({"input": what, "name": inc.from.name}),
        )
        .await;
        if let Some(reply) = &inc.reply {
            return Refusal::InPlace(reply.clone());
        }
        let first = lock(&self.refused).insert(inc.from.id.clone());
        if first && !matches!(inc.input, Input::Button(_)) {
            Refusal::Message
        } else {
            Refusal::Silent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn decisions_name_people_the_gate_has_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("t.db")).await.expect("db");
        let g = Gate::new(db.clone(), "discord", Access::users(["7".to_owned()]), 5);
        let ally = Sender {
            id: "7".into(),
            name: "Ally".into(),
            roles: Vec::new(),
        };
        assert!(g.allows(&ally));
        // An older daemon names the decider by id; a newer one by name and surface.
        assert_eq!(g.who("discord:7", Surface::Discord), "Ally");
        assert_eq!(g.who("Ally (discord)", Surface::Discord), "Ally");
        assert_eq!(g.who("Bo (telegram)", Surface::Discord), "Bo (telegram)");
        assert_eq!(g.who("rest:alice", Surface::Discord), "rest:alice");
        assert_eq!(g.who("discord:8", Surface::Discord), "discord:8");
        db.close().await;
    }
}
