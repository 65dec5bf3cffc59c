//! Newtype ids so a session id is never confused with an approval id or a bare string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A session id. It **is** Claude Code's session UUID (we pass it as `--session-id`), so
/// resume, attach and transcripts line up.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(
    feature = "utoipa",
    schema(example = "4c1e2a7b-5d3f-4e8a-9b21-0f6d7c8e9a10")
)]
pub struct SessionId(pub Uuid);

impl SessionId {
    /// A fresh random (v4) id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// The first 8 hex characters, enough to name a session in human output.
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..8].to_owned()
    }

    /// The fewest characters of an id that name a session by prefix (the CLI and the REST
    /// paths share the rule; shorter keys match names only).
    pub const MIN_PREFIX: usize = 4;

    /// True when `key` (at least [`Self::MIN_PREFIX`] characters, any case, with or without
    /// the hyphens) starts this id.
    pub fn has_prefix(&self, key: &str) -> bool {
        if key.chars().count() < Self::MIN_PREFIX {
            return false;
        }
        let key = key.to_ascii_lowercase();
        let full = self.to_string();
        full.starts_with(&key) || full.replace('-', "").starts_with(&key.replace('-', ""))
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for SessionId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A pending approval (permission request or question). It is the `request_id` the CLI chose
/// for its `can_use_tool` control request, so it is unique and can be matched on the wire.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(
    feature = "utoipa",
    schema(example = "9f8e7d6c-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
)]
pub struct ApprovalId(pub String);

impl ApprovalId {
    /// The first 8 characters, enough to name an approval in human output.
    pub fn short(&self) -> &str {
        let end = self
            .0
            .char_indices()
            .nth(8)
            .map_or(self.0.len(), |(i, _)| i);
        &self.0[..end]
    }
}

impl fmt::Display for ApprovalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A daemon (one machine/user). Generated once and kept in the daemon's state dir.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "utoipa", schema(example = "d-5b7e0c2a9f"))]
pub struct DaemonId(pub String);

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_and_shortens() {
        let id = SessionId::new();
        let text = id.to_string();
        assert_eq!(text.parse::<SessionId>().ok(), Some(id));
        assert_eq!(id.short().len(), 8);
        assert!(text.replace('-', "").starts_with(&id.short()));
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{text}\""));
    }

    #[test]
    fn approval_short_handles_short_ids() {
        assert_eq!(ApprovalId("abc".into()).short(), "abc");
        assert_eq!(ApprovalId("0123456789".into()).short(), "01234567");
    }
}
