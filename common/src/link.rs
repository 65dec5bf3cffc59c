//! The `ccrmd` ⇄ `ccrm-bot` protocol: JSON text frames over a WebSocket that the daemon
//! dials (`/ws/daemon`, key in `X-API-Key`). Internally tagged by `type`.
//!
//! Delivery guarantee (DESIGN.md): the daemon appends every event to a local spool under a
//! per-daemon, strictly increasing `seq` before sending it; the bot commits events to SQLite
//! and answers with a cumulative [`HubMsg::Ack`]; the daemon trims its spool on ack and, after
//! a reconnect, resends everything after the `acked_seq` the bot reports in
//! [`HubMsg::Welcome`]. The bot ignores `(daemon_id, seq)` pairs it already has. Killing
//! either side at any moment therefore loses and duplicates nothing.
//!
//! Bot → daemon commands reuse [`crate::ipc::Command`] (the same commands the CLI sends),
//! each with a `req_id` answered by one [`DaemonMsg::Reply`].
//!
//! Workspaces and executions (issue 15) add, without changing anything above (so
//! [`LINK_PROTOCOL_VERSION`] stays 1; a daemon announces them in `hello.features` and the
//! bot uses them only with daemons that do):
//! - a command with a **body**: `workspace.create` is followed by [`HubMsg::BodyChunk`]s
//!   (base64, at most [`BODY_CHUNK`] bytes each) and one [`HubMsg::BodyEnd`] with the size
//!   and sha256, or a [`HubMsg::BodyAbort`]. The daemon writes each chunk to disk and
//!   answers with a cumulative [`DaemonMsg::BodyAck`]; the bot keeps at most
//!   [`BODY_WINDOW`] bytes unacknowledged, so neither side holds the whole body.
//! - a **streaming** command: `exec.follow` answers with [`DaemonMsg::StreamItem`]s before
//!   its one `Reply`; [`HubMsg::StreamCancel`] stops it early.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::ids::DaemonId;
use crate::ipc::{Command, ErrorBody, SessionInfo};

/// Version of this protocol. Both sides send it first; a mismatch is a clear error.
pub const LINK_PROTOCOL_VERSION: u32 = 1;

/// Largest WebSocket frame either side accepts (16 MiB).
pub const MAX_LINK_FRAME: usize = 16 * 1024 * 1024;

/// Most raw bytes in one [`HubMsg::BodyChunk`].
pub const BODY_CHUNK: usize = 256 * 1024;

/// Most body bytes the bot sends before the daemon has acknowledged them.
pub const BODY_WINDOW: u64 = 1024 * 1024;

/// What a daemon of this version can do beyond the base protocol, sent in `hello`.
pub const FEATURE_WORKSPACES: &str = "workspaces";

/// One spooled event with its daemon-wide sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkEvent {
    /// Per-daemon, strictly increasing, starting at 1.
    pub seq: u64,
    /// The event (its own `seq` is per session).
    pub event: Event,
}

/// Daemon → bot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DaemonMsg {
    /// First frame after connecting.
    Hello {
        /// [`LINK_PROTOCOL_VERSION`] of the daemon.
        protocol: u32,
        /// Stable id of this daemon (kept in its state dir).
        daemon_id: DaemonId,
        /// Machine name, for people.
        hostname: String,
        /// Daemon version.
        version: String,
        /// Every session the daemon knows, as now.
        #[serde(default)]
        sessions: Vec<SessionInfo>,
        /// Optional parts of the protocol this daemon speaks ([`FEATURE_WORKSPACES`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// Events in `seq` order (a batch, to keep up with bursts).
    Events {
        /// The events, ascending `seq`, no gaps within the batch.
        events: Vec<LinkEvent>,
    },
    /// The answer to a [`HubMsg::Command`].
    Reply {
        /// The command's `req_id`.
        req_id: u64,
        /// Success or failure.
        ok: bool,
        /// Result on success.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Value>,
        /// What went wrong.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ErrorBody>,
    },
    /// A session's settings or state changed (also sent for new sessions).
    Session {
        /// The session as now.
        session: SessionInfo,
    },
    /// So many bytes of a command's body are on the daemon's disk (cumulative).
    BodyAck {
        /// The command's `req_id`.
        req_id: u64,
        /// Bytes written so far.
        received: u64,
    },
    /// One item of a streaming command, before its `Reply`.
    StreamItem {
        /// The command's `req_id`.
        req_id: u64,
        /// The item.
        item: Value,
    },
}

/// Bot → daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HubMsg {
    /// Answer to [`DaemonMsg::Hello`]: the highest `seq` the bot has committed for this
    /// daemon; the daemon resends everything after it.
    Welcome {
        /// [`LINK_PROTOCOL_VERSION`] of the bot.
        protocol: u32,
        /// Highest committed `seq` (0 if none).
        acked_seq: u64,
    },
    /// Every event up to and including `seq` is committed.
    Ack {
        /// Cumulative.
        seq: u64,
    },
    /// Run a command on the daemon.
    Command {
        /// Chosen by the bot; echoed in the reply.
        req_id: u64,
        /// The command.
        cmd: Command,
    },
    /// A fatal problem (bad hello, version mismatch); the bot closes the link after it.
    Error {
        /// What went wrong.
        error: ErrorBody,
    },
    /// A piece of the body of command `req_id`, in order.
    BodyChunk {
        /// The command.
        req_id: u64,
        /// At most [`BODY_CHUNK`] bytes, base64 (standard alphabet, padded).
        data: String,
    },
    /// The whole body of command `req_id` was sent.
    BodyEnd {
        /// The command.
        req_id: u64,
        /// Its length in bytes.
        size: u64,
        /// Lowercase hex SHA-256 of it.
        sha256: String,
    },
    /// The body of command `req_id` will not be completed (the client went away, or it
    /// was refused); the daemon drops what it has.
    BodyAbort {
        /// The command.
        req_id: u64,
        /// Why, for the daemon's log.
        reason: String,
    },
    /// Stop the streaming command `req_id` (its reader went away).
    StreamCancel {
        /// The command.
        req_id: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, SessionState};
    use crate::ids::SessionId;
    use crate::ipc::{ErrorCode, NoArgs};

    #[test]
    fn messages_round_trip() {
        let ev = Event {
            seq: 3,
            ts_ms: 9,
            session_id: SessionId::new(),
            kind: EventKind::State {
                state: SessionState::Idle,
                reason: None,
            },
            raw: None,
        };
        let daemon = vec![
            DaemonMsg::Hello {
                protocol: LINK_PROTOCOL_VERSION,
                daemon_id: DaemonId("d1".into()),
                hostname: "box".into(),
                version: "0.1.0".into(),
                sessions: vec![],
                features: vec![FEATURE_WORKSPACES.into()],
            },
            DaemonMsg::BodyAck {
                req_id: 2,
                received: 10,
            },
            DaemonMsg::StreamItem {
                req_id: 2,
                item: serde_json::json!({"n": 1}),
            },
            DaemonMsg::Events {
                events: vec![LinkEvent { seq: 1, event: ev }],
            },
            DaemonMsg::Reply {
                req_id: 4,
                ok: false,
                data: None,
                error: Some(ErrorBody::new(ErrorCode::NotFound, "x")),
            },
        ];
        for m in daemon {
            let s = serde_json::to_string(&m).expect("ser");
            assert_eq!(serde_json::from_str::<DaemonMsg>(&s).expect("de"), m, "{s}");
        }
        let hub = vec![
            HubMsg::Welcome {
                protocol: 1,
                acked_seq: 7,
            },
            HubMsg::Ack { seq: 8 },
            HubMsg::Command {
                req_id: 1,
                cmd: Command::SessionsList(NoArgs {}),
            },
            HubMsg::Error {
                error: ErrorBody::new(ErrorCode::BadRequest, "version"),
            },
            HubMsg::BodyChunk {
                req_id: 5,
                data: "aGk=".into(),
            },
            HubMsg::BodyEnd {
                req_id: 5,
                size: 2,
                sha256: "ab".into(),
            },
            HubMsg::BodyAbort {
                req_id: 5,
                reason: "gone".into(),
            },
            HubMsg::StreamCancel { req_id: 6 },
        ];
        for m in hub {
            let s = serde_json::to_string(&m).expect("ser");
            assert_eq!(serde_json::from_str::<HubMsg>(&s).expect("de"), m, "{s}");
        }
    }
}

#[cfg(test)]
mod compat {
    use super::*;

    #[test]
    fn a_hello_without_features_still_parses() {
        let old =
            r#"{"type":"hello","protocol":1,"daemon_id":"d","hostname":"h","version":"0.1.0"}"#;
        match serde_json::from_str::<DaemonMsg>(old) {
            Ok(DaemonMsg::Hello { features, .. }) => assert!(features.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
