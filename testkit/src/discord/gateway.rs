//! The gateway (API v10, JSON text frames, no transport compression): the protocol and
//! the session state every connection shares ([`Gateway`]), as a state machine with no
//! I/O of its own. Each connection's task (`connection`) feeds it the client's frames
//! and writes what it queues.
//!
//! # Protocol, as Discord speaks it
//!
//! - On connect the server sends op 10 HELLO `{heartbeat_interval}`.
//! - op 1 HEARTBEAT (`d`: the last sequence number or null) is answered at once with
//!   op 11 HEARTBEAT ACK, unless acks are switched off (a zombied connection).
//! - op 2 IDENTIFY starts a new session: READY (s = 1). op 6 RESUME of the current
//!   session replays every dispatch after the client's `seq`, then RESUMED; an unknown or
//!   forgotten session gets op 9 INVALID SESSION `d: false`.
//! - Close codes: 4001 unknown opcode, 4002 decode error (invalid JSON, binary frames),
//!   4003 not authenticated (ops other than 1/2/6 before IDENTIFY/RESUME), 4004
//!   authentication failed (wrong token), 4005 already authenticated (a second IDENTIFY
//!   or RESUME on a connection), 4007 invalid seq (RESUME with a seq ahead of the
//!   session), 4010 invalid shard, 4012 invalid API version (query `v` other than 10),
//!   4013 invalid intents.
//!
//! # Sessions and dispatches
//!
//! There is one current session (the last IDENTIFY's). Every dispatch takes its next
//! `s` and is kept for replay; while no connection is attached (between a drop and the
//! RESUME) dispatches queue in the session. A new IDENTIFY replaces the session, so what
//! the old one had queued is lost, as on Discord; with no session at all (before the
//! first IDENTIFY, or after op 9 `d: false`) dispatches are dropped. Only the connection
//! holding the session is live: a RESUME or IDENTIFY on a newer connection closes the
//! older one with 4000.
//!
//! Not modelled: transport compression (`compress=zlib-stream`), ETF encoding,
//! server-side heartbeat timeouts, GUILD_CREATE (the READY guild stays unavailable),
//! presence, voice and member-chunk requests (accepted and ignored), gateway rate limits.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use super::{APPLICATION_ID, Frame, GUILD_ID, GatewayStatus};

/// [`Frame::op`] of a close frame (close frames have no opcode).
pub const CLOSE_FRAME_OP: u8 = u8::MAX;

/// What a connection task is told to do.
pub(super) enum ConnCmd {
    Send(Outgoing),
    /// Send a close frame with this code and reason, then drop the connection.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
}

/// A payload for the client.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    op: u8,
    t: Option<String>,
    s: Option<u64>,
    d: Value,
    /// The interaction an INTERACTION_CREATE carries.
    pub(super) interaction: Option<u64>,
}

impl Outgoing {
    fn op(op: u8, d: Value) -> Self {
        Self {
            op,
            t: None,
            s: None,
            d,
            interaction: None,
        }
    }

    pub(super) fn json(&self) -> Value {
        json!({ "op": self.op, "d": self.d, "s": self.s, "t": self.t })
    }
}

/// An open connection.
struct Conn {
    tx: UnboundedSender<ConnCmd>,
    /// IDENTIFY or RESUME succeeded on it.
    authenticated: bool,
    /// READY or RESUMED was written to it.
    ready: bool,
    /// A close was decided: nothing more is sent.
    closing: bool,
}

struct Session {
    id: String,
    intents: u64,
    seq: u64,
    events: Vec<Outgoing>,
    /// The connection it is attached to.
    conn: Option<u64>,
    /// Highest `d` of a heartbeat on the attached connection.
    heartbeat_seq: Option<u64>,
}

/// Gateway state: connections, the current session, frames and counters. Lives in the
/// [`World`](super::world::World) so dispatches are ordered with the changes that cause them.
pub(super) struct Gateway {
    /// The bot token without `Bot `.
    token: String,
    gateway_url: String,
    pub heartbeat_interval: u64,
    pub stop_acks: bool,
    pub frames: Vec<Frame>,
    pub identifies: usize,
    pub resumes: usize,
    pub connections: u64,
    conns: BTreeMap<u64, Conn>,
    session: Option<Session>,
}

impl Gateway {
    pub fn new(token: &str, gateway_url: String, heartbeat_interval: u64) -> Self {
        Self {
            token: token.to_owned(),
            gateway_url,
            heartbeat_interval,
            stop_acks: false,
            frames: Vec::new(),
            identifies: 0,
            resumes: 0,
            connections: 0,
            conns: BTreeMap::new(),
            session: None,
        }
    }

    /// Registers a new connection and queues its HELLO.
    pub(super) fn open(&mut self, tx: UnboundedSender<ConnCmd>) -> u64 {
        self.connections += 1;
        let id = self.connections;
        let hello = Outgoing::op(
            10,
            json!({
                "heartbeat_interval": self.heartbeat_interval,
                "_trace": ["[\"fake-discord-gateway\",{\"micros\":0}]"],
            }),
        );
        let _ = tx.send(ConnCmd::Send(hello));
        self.conns.insert(
            id,
            Conn {
                tx,
                authenticated: false,
                ready: false,
                closing: false,
            },
        );
        id
    }

    /// Forgets a connection that ended.
    pub(super) fn gone(&mut self, conn: u64) {
        self.conns.remove(&conn);
        if let Some(s) = &mut self.session
            && s.conn == Some(conn)
        {
            s.conn = None;
        }
    }

    fn send(&self, conn: u64, out: Outgoing) {
        if let Some(c) = self.conns.get(&conn)
            && !c.closing
        {
            let _ = c.tx.send(ConnCmd::Send(out));
        }
    }

    /// Detaches a connection and tells its task to close it (`None`: drop the TCP
    /// connection without a close frame).
    pub(super) fn close(&mut self, conn: u64, close: Option<(u16, &str)>) {
        if let Some(s) = &mut self.session
            && s.conn == Some(conn)
        {
            s.conn = None;
        }
        if let Some(c) = self.conns.get_mut(&conn)
            && !c.closing
        {
            c.closing = true;
            let cmd = match close {
                Some((code, reason)) => ConnCmd::Close(code, reason.to_owned()),
                None => ConnCmd::Drop,
            };
            let _ = c.tx.send(cmd);
        }
    }

    /// Drops every connection (the fake is going away).
    pub fn close_all(&mut self) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id, None);
        }
    }

    /// The intents of the current session.
    pub fn intents(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.intents)
    }

    /// Sends a dispatch in the current session (queued if no connection is attached).
    /// Returns its sequence number; `None` if there is no session (dropped).
    pub fn dispatch(&mut self, t: &str, d: Value, interaction: Option<u64>) -> Option<u64> {
        let session = self.session.as_mut()?;
        session.seq += 1;
        let out = Outgoing {
            op: 0,
            t: Some(t.to_owned()),
            s: Some(session.seq),
            d,
            interaction,
        };
        session.events.push(out.clone());
        let (seq, conn) = (session.seq, session.conn);
        if let Some(conn) = conn {
            self.send(conn, out);
        }
        Some(seq)
    }

    /// The live connection: the one holding the current session.
    fn live(&self) -> Option<u64> {
        self.session.as_ref().and_then(|s| s.conn)
    }

    pub fn status(&self) -> GatewayStatus {
        let live = self.live();
        GatewayStatus {
            connections: self.connections,
            open: self.conns.values().filter(|c| !c.closing).count(),
            live: live.is_some(),
            ready: live.is_some_and(|c| self.conns.get(&c).is_some_and(|c| c.ready)),
            session_id: self.session.as_ref().map(|s| s.id.clone()),
            intents: self.intents(),
            last_seq: self.session.as_ref().map(|s| s.seq),
            heartbeat_seq: self.session.as_ref().and_then(|s| s.heartbeat_seq),
            identifies: self.identifies,
            resumes: self.resumes,
        }
    }

    // ---- faults ----------------------------------------------------------------------

    pub fn drop_live(&mut self) -> bool {
        let Some(conn) = self.live() else {
            return false;
        };
        self.close(conn, None);
        true
    }

    /// Closes the live connection with `code`; a code Discord documents as not
    /// resumable (4004, 4007, 4009–4014) also forgets the session.
    pub fn close_live(&mut self, code: u16) -> bool {
        let Some(conn) = self.live() else {
            return false;
        };
        self.close(conn, Some((code, close_reason(code))));
        if matches!(code, 4004 | 4007 | 4009..=4014) {
            self.session = None;
        }
        true
    }

    pub fn reconnect_live(&mut self) -> bool {
        let Some(conn) = self.live() else {
            return false;
        };
        self.send(conn, Outgoing::op(7, Value::Null));
        true
    }

    /// op 9 on the live connection; `false` forgets the session (the connection stays
    /// open, unauthenticated, as the client is expected to IDENTIFY again).
    pub fn invalidate(&mut self, resumable: bool) -> bool {
        let Some(conn) = self.live() else {
            return false;
        };
        self.send(conn, Outgoing::op(9, json!(resumable)));
        if !resumable {
            self.session = None;
            if let Some(c) = self.conns.get_mut(&conn) {
                c.authenticated = false;
                c.ready = false;
            }
        }
        true
    }

    // ---- frames ----------------------------------------------------------------------

    fn record(&mut self, conn: u64, from_client: bool, at: SystemTime, payload: &Value) {
        let op = payload
            .get("op")
            .and_then(Value::as_u64)
            .and_then(|o| u8::try_from(o).ok())
            .unwrap_or(CLOSE_FRAME_OP);
        self.frames.push(Frame {
            at,
            from_client,
            op,
            t: payload.get("t").and_then(Value::as_str).map(str::to_owned),
            s: payload.get("s").and_then(Value::as_u64),
            d: payload.get("d").cloned().unwrap_or(Value::Null),
            conn,
            close: None,
        });
    }

    pub(super) fn record_close(
        &mut self,
        conn: u64,
        from_client: bool,
        at: SystemTime,
        code: Option<u16>,
    ) {
        self.frames.push(Frame {
            at,
            from_client,
            op: CLOSE_FRAME_OP,
            t: None,
            s: None,
            d: Value::Null,
            conn,
            close: Some(code.unwrap_or(1005)),
        });
    }

    /// A payload was written to the socket.
    pub(super) fn written(&mut self, conn: u64, out: &Outgoing, at: SystemTime) {
        self.record(conn, false, at, &out.json());
        if matches!(out.t.as_deref(), Some("READY" | "RESUMED"))
            && let Some(c) = self.conns.get_mut(&conn)
        {
            c.ready = true;
        }
    }

    // ---- client payloads ---------------------------------------------------------------

    /// Handles a text frame from the client.
    pub(super) fn client_text(&mut self, conn: u64, text: &str, at: SystemTime) {
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            self.frames.push(Frame {
                at,
                from_client: true,
                op: CLOSE_FRAME_OP,
                t: None,
                s: None,
                d: Value::String(text.to_owned()),
                conn,
                close: None,
            });
            self.close(conn, Some((4002, "Error while decoding payload.")));
            return;
        };
        self.record(conn, true, at, &payload);
        let op = payload.get("op").and_then(Value::as_u64);
        let d = payload.get("d").cloned().unwrap_or(Value::Null);
        let authenticated = self.conns.get(&conn).is_some_and(|c| c.authenticated);
        match op {
            None => self.close(conn, Some((4002, "Error while decoding payload."))),
            Some(1) => self.heartbeat(conn, &d),
            Some(2) => self.identify(conn, &d),
            Some(6) => self.resume(conn, &d),
            Some(3 | 4 | 8 | 31) if !authenticated => {
                self.close(conn, Some((4003, "Not authenticated.")));
            }
            // Presence, voice state and member or soundboard requests: accepted, ignored.
            Some(3 | 4 | 8 | 31) => {}
            Some(_) => self.close(conn, Some((4001, "Unknown opcode."))),
        }
    }

    fn heartbeat(&mut self, conn: u64, d: &Value) {
        if !(d.is_null() || d.is_u64()) {
            self.close(conn, Some((4002, "Error while decoding payload.")));
            return;
        }
        if let Some(seq) = d.as_u64()
            && let Some(s) = &mut self.session
            && s.conn == Some(conn)
        {
            s.heartbeat_seq = Some(s.heartbeat_seq.map_or(seq, |h| h.max(seq)));
        }
        if !self.stop_acks {
            self.send(conn, Outgoing::op(11, Value::Null));
        }
    }

    fn token_ok(&self, d: &Value) -> bool {
        d.get("token")
            .and_then(Value::as_str)
            .map(|t| t.strip_prefix("Bot ").unwrap_or(t))
            .is_some_and(|t| t == self.token)
    }

    /// The checks IDENTIFY and RESUME share: not yet authenticated on this connection
    /// (else 4005), and the right token (else 4004). False when the connection was closed.
    fn admit(&mut self, conn: u64, d: &Value) -> bool {
        if self.conns.get(&conn).is_some_and(|c| c.authenticated) {
            self.close(conn, Some((4005, "Already authenticated.")));
            return false;
        }
        if !self.token_ok(d) {
            self.close(conn, Some((4004, "Authentication failed.")));
            return false;
        }
        true
    }

    fn identify(&mut self, conn: u64, d: &Value) {
        self.identifies += 1;
        if !self.admit(conn, d) {
            return;
        }
        let Some(intents) = d.get("intents").and_then(Value::as_u64) else {
            self.close(conn, Some((4013, "Invalid intent(s).")));
            return;
        };
        if intents >= 1 << 26 {
            self.close(conn, Some((4013, "Invalid intent(s).")));
            return;
        }
        let shard = match d.get("shard") {
            None | Some(Value::Null) => json!([0, 1]),
            Some(Value::Array(pair))
                if pair.len() == 2
                    && matches!(
                        (pair[0].as_u64(), pair[1].as_u64()),
                        (Some(id), Some(total)) if total >= 1 && id < total
                    ) =>
            {
                Value::Array(pair.clone())
            }
            Some(_) => {
                self.close(conn, Some((4010, "Invalid shard.")));
                return;
            }
        };
        // The new session replaces the old one and takes over from its connection.
        if let Some(old) = self.session.take()
            && let Some(old_conn) = old.conn
            && old_conn != conn
        {
            self.close(old_conn, Some((4000, "Superseded by a newer connection.")));
        }
        let session_id = uuid::Uuid::new_v4().simple().to_string();
        self.session = Some(Session {
            id: session_id.clone(),
            intents,
            seq: 0,
            events: Vec::new(),
            conn: Some(conn),
            heartbeat_seq: None,
        });
        if let Some(c) = self.conns.get_mut(&conn) {
            c.authenticated = true;
        }
        let ready = json!({
            "v": 10,
            "user": bot_user(),
            "guilds": [{ "id": GUILD_ID.to_string(), "unavailable": true }],
            "session_id": session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "shard": shard,
            "application": { "id": APPLICATION_ID.to_string(), "flags": 0 },
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "user_settings": {},
            "_trace": ["[\"fake-discord-gateway\",{\"micros\":0}]"],
        });
        self.dispatch("READY", ready, None);
    }

    fn resume(&mut self, conn: u64, d: &Value) {
        if !self.admit(conn, d) {
            return;
        }
        let (Some(session_id), Some(seq)) = (
            d.get("session_id").and_then(Value::as_str),
            d.get("seq").and_then(Value::as_u64),
        ) else {
            self.close(conn, Some((4002, "Error while decoding payload.")));
            return;
        };
        let known = self.session.as_ref().is_some_and(|s| s.id == session_id);
        if !known {
            self.send(conn, Outgoing::op(9, json!(false)));
            return;
        }
        let (old_conn, last) = match &self.session {
            Some(s) => (s.conn, s.seq),
            None => return,
        };
        if seq > last {
            self.close(conn, Some((4007, "Invalid seq.")));
            return;
        }
        if let Some(old) = old_conn
            && old != conn
        {
            self.close(old, Some((4000, "Superseded by a newer connection.")));
        }
        let replay: Vec<Outgoing> = match &mut self.session {
            Some(s) => {
                s.conn = Some(conn);
                s.heartbeat_seq = None;
                s.events
                    .iter()
                    .filter(|e| e.s.is_some_and(|s| s > seq))
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.authenticated = true;
        }
        for out in replay {
            self.send(conn, out);
        }
        self.resumes += 1;
        self.dispatch(
            "RESUMED",
            json!({ "_trace": ["[\"fake-discord-gateway\",{\"micros\":0}]"] }),
            None,
        );
    }
}

fn bot_user() -> Value {
    json!({
        "id": super::BOT_USER_ID.to_string(),
        "username": super::BOT_USERNAME,
        "discriminator": "0001",
        "global_name": null,
        "avatar": null,
        "bot": true,
        "verified": true,
        "mfa_enabled": false,
        "email": null,
        "flags": 0,
        "public_flags": 0,
        "premium_type": 0,
        "locale": "en-US",
    })
}

/// Discord's description of a close code.
fn close_reason(code: u16) -> &'static str {
    match code {
        4000 => "Unknown error.",
        4001 => "Unknown opcode.",
        4002 => "Error while decoding payload.",
        4003 => "Not authenticated.",
        4004 => "Authentication failed.",
        4005 => "Already authenticated.",
        4007 => "Invalid seq.",
        4008 => "Rate limited.",
        4009 => "Session timed out.",
        4010 => "Invalid shard.",
        4011 => "Sharding required.",
        4012 => "Invalid API version.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        _ => "",
    }
}

/// Why the upgrade request's query cannot be served: `v` must be 10, `encoding` json
/// (or absent), and no transport compression.
pub(super) fn check_query(query: &[(String, String)]) -> Result<(), (u16, &'static str)> {
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if get("v") != Some("10") {
        return Err((4012, "Invalid API version."));
    }
    if get("encoding").is_some_and(|e| e != "json") {
        return Err((4002, "FakeDiscord speaks JSON only."));
    }
    if get("compress").is_some() {
        return Err((4002, "FakeDiscord does not compress the transport."));
    }
    Ok(())
}
