//! The fast paths of a real `ccrm-bot` process: group commit across many daemon links (every
//! event stored once, acked only once committed, published in row-id order across
//! daemons) and the in-memory key cache (a key revoked by `ccrm-bot keys revoke` in another
//! process stops working at once, for users and for daemons).

mod common;

use std::collections::HashMap;

use ::common::event::{Event, EventKind};
use ::common::ids::SessionId;
use ::common::link::{DaemonMsg, HubMsg, LINK_PROTOCOL_VERSION, LinkEvent};
use common::{WAIT, World};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(w: &World, path: &str, header: (&'static str, String)) -> Result<Ws, u16> {
    let mut req = format!("ws://{}{path}", w.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert(header.0, header.1.parse().expect("header"));
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connecting to {path}: {e}"),
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket closed")
            .expect("socket error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("json frame");
        }
    }
}

fn session_info(id: SessionId) -> Value {
    json!({"id": id, "cwd": "/work", "permission_mode": "default", "state": "idle",
           "created_ms": 1, "last_event_ms": 1})
}

/// A fake daemon: hello with one session, then the welcome.
async fn fake_daemon(w: &World, name: &str, session: SessionId) -> Ws {
    let mut ws = connect(w, "/ws/daemon", ("x-api-key", w.daemon_key.clone()))
        .await
        .expect("daemon key accepted");
    let hello = json!({"type": "hello", "protocol": LINK_PROTOCOL_VERSION, "daemon_id": name,
                       "hostname": "h", "version": "0", "sessions": [session_info(session)]});
    ws.send(Message::text(hello.to_string()))
        .await
        .expect("hello");
    let welcome: HubMsg = serde_json::from_value(next_json(&mut ws).await).expect("welcome");
    assert!(
        matches!(welcome, HubMsg::Welcome { acked_seq: 0, .. }),
        "{welcome:?}"
    );
    ws
}

#[tokio::test]
async fn many_links_at_once_store_every_event_once_and_subscribers_see_row_id_order() {
    const LINKS: usize = 8;
    const EVENTS: u64 = 300;
    let w = World::bot_only().await;
    // A dashboard client following everything: with several daemons committing at once, it
    // must still see row ids strictly increasing (one skipped id would be a lost event).
    let mut dash = connect(
        &w,
        "/ws/dashboard",
        ("authorization", format!("Bearer {}", w.user_token)),
    )
    .await
    .expect("dashboard");
    assert_eq!(next_json(&mut dash).await["type"], "ready");
    dash.send(Message::text(
        json!({"type": "subscribe", "all": true}).to_string(),
    ))
    .await
    .expect("subscribe");
    assert_eq!(next_json(&mut dash).await["type"], "subscribed");

    let mut links = Vec::new();
    for i in 0..LINKS {
        let session = SessionId::new();
        let mut ws = fake_daemon(&w, &format!("daemon-{i}"), session).await;
        links.push(tokio::spawn(async move {
            // Frames of 1 to 4 events, sent without waiting for acks, the last one twice (a
            // resend the bot must ignore).
            let mut seq = 0;
            let mut frames = Vec::new();
            while seq < EVENTS {
                let n = (seq % 4 + 1).min(EVENTS - seq);
                let events: Vec<LinkEvent> = (seq + 1..=seq + n)
                    .map(|s| LinkEvent {
                        seq: s,
                        event: Event {
                            seq: s,
                            ts_ms: s,
                            session_id: session,
                            kind: EventKind::AssistantDelta {
                                text: format!("d{i}-{s}"),
                            },
                            raw: None,
                        },
                    })
                    .collect();
                seq += n;
                frames.push(DaemonMsg::Events { events });
            }
            if let Some(last) = frames.last().cloned() {
                frames.push(last);
            }
            for f in &frames {
                let text = serde_json::to_string(f).expect("frame");
                ws.send(Message::text(text)).await.expect("send");
            }
            // Acks are cumulative and never run ahead of what was sent.
            let mut acked = 0;
            while acked < EVENTS {
                match serde_json::from_value::<HubMsg>(next_json(&mut ws).await).expect("hub msg") {
                    HubMsg::Ack { seq } => {
                        assert!(seq >= acked && seq <= EVENTS, "ack {seq} after {acked}");
                        acked = seq;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            ws
        }));
    }
    let mut open = Vec::new();
    for l in links {
        open.push(l.await.expect("link task"));
    }

    let total = LINKS as u64 * EVENTS;
    let mut last_id = 0;
    let mut per_daemon: HashMap<String, u64> = HashMap::new();
    for _ in 0..total {
        let v = next_json(&mut dash).await;
        assert_eq!(v["type"], "event", "{v}");
        let id = v["event"]["id"].as_i64().expect("id");
        assert!(id > last_id, "row id {id} after {last_id}: out of order");
        last_id = id;
        let d = v["event"]["daemon_id"].as_str().expect("daemon").to_owned();
        let seq = v["event"]["seq"].as_u64().expect("seq");
        let prev = per_daemon.insert(d.clone(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "{d}: seq {seq} after {prev}");
    }
    assert!(per_daemon.values().all(|s| *s == EVENTS), "{per_daemon:?}");
    let text = w
        .http
        .get(w.url("/metrics"))
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        text.contains(&format!("ccrm_events_ingested_total {total}")),
        "every event counted once: {text}"
    );
    drop(open);
}

#[tokio::test]
async fn a_frame_the_store_refuses_closes_that_link_only() {
    let w = World::bot_only().await;
    let (good_s, bad_s) = (SessionId::new(), SessionId::new());
    let mut good = fake_daemon(&w, "good", good_s).await;
    let mut bad = fake_daemon(&w, "bad", bad_s).await;
    let frame = |seq: u64, session: SessionId| {
        let events = vec![LinkEvent {
            seq,
            event: Event {
                seq: 1,
                ts_ms: 1,
                session_id: session,
                kind: EventKind::AssistantText { text: "x".into() },
                raw: None,
            },
        }];
        Message::text(serde_json::to_string(&DaemonMsg::Events { events }).expect("frame"))
    };
    // Both at once, so they may well share a group: a seq SQLite cannot store, and a fine one.
    let (a, b) = tokio::join!(
        bad.send(frame(u64::MAX, bad_s)),
        good.send(frame(1, good_s))
    );
    a.expect("send bad");
    b.expect("send good");
    match serde_json::from_value::<HubMsg>(next_json(&mut good).await).expect("hub msg") {
        HubMsg::Ack { seq: 1 } => {}
        other => panic!("the good link got {other:?}"),
    }
    // The bad link is closed by the bot.
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match bad.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the link with the refused frame stayed open"
    );
    // The good link goes on.
    good.send(frame(2, good_s)).await.expect("send");
    match serde_json::from_value::<HubMsg>(next_json(&mut good).await).expect("hub msg") {
        HubMsg::Ack { seq: 2 } => {}
        other => panic!("the good link got {other:?}"),
    }
}

#[tokio::test]
async fn a_key_revoked_by_the_cli_while_the_server_runs_stops_working_at_once() {
    let w = World::bot_only().await;
    // The token verifies (and is now cached), twice.
    for _ in 0..2 {
        assert_eq!(w.get("/api/sessions").await.0, 200);
    }
    let session = SessionId::new();
    let ws = fake_daemon(&w, "machine-1", session).await;
    drop(ws);

    let revoke = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm-bot"))
            .args(["keys", "revoke", name, "--json"])
            .env("CCRM_BOT_DATA_DIR", w.dir.path().join("bot"))
            .env("XDG_CONFIG_HOME", w.dir.path().join("config"))
            .output()
            .expect("ccrm-bot keys revoke");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    revoke("alice");
    let (status, body) = w.get("/api/sessions").await;
    assert_eq!(status, 401, "the revoked token still worked: {body}");
    assert_eq!(
        connect(
            &w,
            "/ws/dashboard",
            ("authorization", format!("Bearer {}", w.user_token))
        )
        .await
        .err(),
        Some(401)
    );

    revoke("machine-1");
    assert_eq!(
        connect(&w, "/ws/daemon", ("x-api-key", w.daemon_key.clone()))
            .await
            .err(),
        Some(401),
        "a revoked daemon key cannot link again"
    );
    let marker = w.dir.path().join("bot/ccrm.db-revoked");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&marker).expect("marker").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}
