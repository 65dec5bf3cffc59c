//! The REST API, the daemon link and the dashboard socket under hostile or racing clients,
//! against a real `ccrm-bot` process with a real linked `ccrmd` and the real Claude Code CLI:
//!
//! - the auth matrix: every route × every wrong credential → 401, `/healthz` open, and no
//!   token ever in the bot's log;
//! - bad input: malformed and oversized bodies, unknown and malformed ids, unknown routes;
//! - bad frames from a (fake) daemon and a wrong protocol version, while the real daemon
//!   keeps working;
//! - an approval answered at the same moment over REST and over ccrmd's socket;
//! - the dashboard WebSocket: auth by first message, subscriptions, live events, bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ::common::event::{Decision, Event, EventKind, SessionState};
use ::common::ids::{DaemonId, SessionId};
use ::common::ipc::{Command, DecideArgs, ErrorCode};
use ::common::link::{DaemonMsg, LINK_PROTOCOL_VERSION, LinkEvent};
use common::{WAIT, World};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a test waits to be sure something does *not* arrive.
const QUIET: Duration = Duration::from_millis(300);

fn kind(v: &Value) -> &str {
    v["event"]["kind"].as_str().unwrap_or_default()
}

/// Opens a WebSocket to `path` on the bot with `headers`; `Err(status)` if the upgrade is
/// refused with an HTTP status.
async fn ws_connect(w: &World, path: &str, headers: &[(&'static str, String)]) -> Result<Ws, u16> {
    let mut req = format!("ws://{}{path}", w.addr)
        .into_client_request()
        .expect("ws request");
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, v.parse().expect("header value"));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("ws connect timed out")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("ws connect to {path} failed: {e}"),
    }
}

/// The next text frame as JSON; `None` once the socket is closed (close frame, EOF or a
/// reset). Pings and pongs are skipped.
async fn ws_next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a ws frame");
        match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(t))) => {
                return Some(serde_json::from_str(t.as_str()).expect("ws frame is JSON"));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Like [`ws_next`] but fails the test on a closed socket.
async fn ws_expect(ws: &mut Ws, what: &str) -> Value {
    ws_next(ws)
        .await
        .unwrap_or_else(|| panic!("socket closed while waiting for {what}"))
}

async fn ws_send(ws: &mut Ws, msg: Message) {
    tokio::time::timeout(WAIT, ws.send(msg))
        .await
        .expect("ws send timed out")
        .expect("ws send");
}

/// Waits (bounded) until the socket is closed by the other side, failing on any text frame.
async fn ws_expect_closed(ws: &mut Ws, why: &str) {
    if let Some(v) = ws_next(ws).await {
        panic!("{why}: expected the socket to close, got {v}");
    }
}

/// Asserts an error body `{"error": {"code": code, "message": <non-empty>}}`.
fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, ctx: &str) {
    assert_eq!(status, want_status, "{ctx}: {body}");
    assert_eq!(body["error"]["code"], code, "{ctx}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{ctx}: {body}"
    );
}

/// A request with the body sent as raw bytes (so it can be malformed).
async fn raw(
    w: &World,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = w
        .http
        .request(method, w.url(path))
        .bearer_auth(&w.user_token)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits (bounded) until the stored events of `session` satisfy `done`; returns them.
async fn wait_events(w: &World, session: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let all = w.all_events(session).await;
        if done(&all) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; {} events stored",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until `GET /api/approvals` lists one for `session`; returns it.
async fn wait_approval(w: &World, session: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, v) = w.get(&format!("/api/approvals?session={session}")).await;
        assert_eq!(status, 200, "{v}");
        if let Some(a) = v["approvals"].as_array().and_then(|a| a.first()) {
            return a.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no approval showed up for {session}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn link_event(seq: u64, session: SessionId, kind: EventKind) -> LinkEvent {
    LinkEvent {
        seq,
        event: Event {
            seq,
            ts_ms: ::common::event::now_ms(),
            session_id: session,
            kind,
            raw: None,
        },
    }
}

fn hello(protocol: u32, daemon: &str) -> Message {
    let msg = DaemonMsg::Hello {
        protocol,
        daemon_id: DaemonId(daemon.into()),
        hostname: "fake-host".into(),
        version: "0.0.0-fake".into(),
        sessions: vec![],
        features: vec![],
    };
    Message::text(serde_json::to_string(&msg).expect("hello json"))
}

// ---- 1. auth matrix ------------------------------------------------------------------

/// One request of the matrix.
struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn route(method: Method, path: impl Into<String>, body: Option<Value>) -> Route {
    Route {
        method,
        path: path.into(),
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_refuses_every_route_without_a_valid_credential_and_never_logs_tokens() {
    // Debug logging, so the "no token in the log" check covers more than the usual lines.
    // The per-address limit of failed checks is off: this matrix is about the 401s (the
    // limit has its own test in ccrm_compat.rs).
    let w = World::start_with(&[
        ("CCRM_LOG", "debug"),
        ("CCRM_BOT_AUTH_FAILURES_PER_MINUTE", "0"),
    ])
    .await;
    let sid = w.new_session(json!({"name": "auth"})).await;
    // A real pending approval, so the approval route is tried with an id that exists.
    let target = w.work.join("auth.txt");
    let (status, v) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": format!("WRITE:{} secret", target.display())}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let approval = wait_approval(&w, &sid).await;
    let aid = approval["id"].as_str().expect("approval id").to_owned();

    let wrong_user = format!("ccrm_user_{}", "A".repeat(43));
    let wrong_daemon = format!("ccrm_daemon_{}", "B".repeat(43));
    let garbage = "hunter2-not-a-token".to_owned();
    let routes = vec![
        route(Method::GET, "/metrics", None),
        route(Method::GET, "/api/openapi.json", None),
        route(Method::GET, "/api/daemons", None),
        route(Method::GET, "/api/sessions", None),
        route(Method::POST, "/api/sessions", Some(json!({"cwd": w.work}))),
        route(Method::GET, format!("/api/sessions/{sid}"), None),
        route(Method::GET, format!("/api/sessions/{sid}/events"), None),
        route(Method::GET, format!("/api/sessions/{sid}/stream"), None),
        route(
            Method::POST,
            format!("/api/sessions/{sid}/prompt"),
            Some(json!({"text": "unauthorised prompt"})),
        ),
        route(Method::POST, format!("/api/sessions/{sid}/interrupt"), None),
        route(Method::POST, format!("/api/sessions/{sid}/stop"), None),
        route(Method::POST, format!("/api/sessions/{sid}/kill"), None),
        route(Method::POST, format!("/api/sessions/{sid}/resume"), None),
        route(Method::GET, "/api/approvals", None),
        route(
            Method::POST,
            format!("/api/approvals/{aid}"),
            Some(json!({"decision": "allow"})),
        ),
    ];
    // Every wrong way to present a credential to the user-token routes.
    let creds: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("no token", vec![]),
        (
            "wrong user token",
            vec![("authorization", format!("Bearer {wrong_user}"))],
        ),
        (
            "garbage token",
            vec![("authorization", format!("Bearer {garbage}"))],
        ),
        (
            "daemon key as bearer",
            vec![("authorization", format!("Bearer {}", w.daemon_key))],
        ),
        (
            "daemon key as X-API-Key",
            vec![("x-api-key", w.daemon_key.clone())],
        ),
        (
            "user token as X-API-Key",
            vec![("x-api-key", w.user_token.clone())],
        ),
        (
            "user token with Basic",
            vec![("authorization", format!("Basic {}", w.user_token))],
        ),
        (
            "user token plus a char",
            vec![("authorization", format!("Bearer {}x", w.user_token))],
        ),
    ];
    let mut tried = 0;
    for r in &routes {
        for (name, headers) in &creds {
            let mut req = w.http.request(r.method.clone(), w.url(&r.path));
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = &r.body {
                req = req.json(b);
            }
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_error(
                status,
                &body,
                401,
                "unauthorized",
                &format!("{} {} with {name}", r.method, r.path),
            );
            tried += 1;
        }
    }

    // The daemon link: only a daemon key in X-API-Key opens it.
    for (name, headers) in [
        ("no key", vec![]),
        (
            "wrong daemon key",
            vec![("x-api-key", wrong_daemon.clone())],
        ),
        ("garbage key", vec![("x-api-key", garbage.clone())]),
        (
            "user token as X-API-Key",
            vec![("x-api-key", w.user_token.clone())],
        ),
        (
            "daemon key as bearer",
            vec![("authorization", format!("Bearer {}", w.daemon_key))],
        ),
    ] {
        assert_eq!(
            ws_connect(&w, "/ws/daemon", &headers).await.err(),
            Some(401),
            "/ws/daemon with {name}"
        );
        tried += 1;
    }
    // The dashboard: a bad Authorization header is refused at the upgrade...
    for (name, headers) in [
        (
            "wrong user token",
            vec![("authorization", format!("Bearer {wrong_user}"))],
        ),
        (
            "garbage token",
            vec![("authorization", format!("Bearer {garbage}"))],
        ),
        (
            "daemon key as bearer",
            vec![("authorization", format!("Bearer {}", w.daemon_key))],
        ),
    ] {
        assert_eq!(
            ws_connect(&w, "/ws/dashboard", &headers).await.err(),
            Some(401),
            "/ws/dashboard with {name}"
        );
        tried += 1;
    }
    // ...and without one, the socket refuses after a first message that is not a valid auth.
    for (name, first) in [
        (
            "no auth message",
            json!({"type": "subscribe", "all": true}).to_string(),
        ),
        (
            "wrong token",
            json!({"type": "auth", "token": wrong_user}).to_string(),
        ),
        (
            "daemon key",
            json!({"type": "auth", "token": w.daemon_key}).to_string(),
        ),
        ("not JSON", "hello?".to_owned()),
    ] {
        let mut ws = ws_connect(&w, "/ws/dashboard", &[])
            .await
            .expect("upgrade without a header is allowed");
        ws_send(&mut ws, Message::text(first)).await;
        let v = ws_next(&mut ws)
            .await
            .unwrap_or_else(|| panic!("{name}: closed without an error message"));
        assert_eq!(v["type"], "error", "{name}: {v}");
        assert_eq!(v["code"], "unauthorized", "{name}: {v}");
        ws_expect_closed(&mut ws, name).await;
        tried += 1;
    }

    // /healthz is open.
    let r = w.http.get(w.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);

    // Nothing refused had an effect: the approval is still pending, the session still there
    // and waiting on it, no prompt from the refused requests was queued.
    let (status, v) = w.get(&format!("/api/sessions/{sid}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["session"]["info"]["state"], "waiting_permission", "{v}");
    assert_eq!(v["approvals"][0]["id"], aid.as_str(), "{v}");
    assert!(
        !w.all_events(&sid)
            .await
            .iter()
            .any(|e| e["event"]["text"] == "unauthorised prompt")
    );
    let (status, v) = w.get("/api/sessions").await;
    assert_eq!(
        v["sessions"].as_array().map(Vec::len),
        Some(1),
        "no session was created: {v}"
    );
    assert_eq!(status, 200);
    // The valid token opens each read-only route, and answers the approval.
    for r in routes
        .iter()
        .filter(|r| r.method == Method::GET && !r.path.ends_with("/stream"))
    {
        let resp = w
            .http
            .get(w.url(&r.path))
            .bearer_auth(&w.user_token)
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), 200, "{} with the user token", r.path);
    }
    let (status, v) = w
        .post(
            &format!("/api/approvals/{aid}"),
            json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    w.wait_stored(&sid, |e| kind(e) == "turn_result").await;
    assert_eq!(
        std::fs::read_to_string(&target).expect("written after the real answer"),
        "secret"
    );

    // The refusals were counted, and no secret reached the bot's log.
    let m = w
        .http
        .get(w.url("/metrics"))
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let rejected: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ccrm_rejected_requests_total "))
        .and_then(|n| n.trim().parse().ok())
        .expect("rejected counter");
    assert!(
        rejected >= tried,
        "{rejected} rejections counted for {tried} refused attempts"
    );
    let log = w.bot_log_text();
    assert!(
        log.contains("daemon connected"),
        "the bot's log was captured: {log}"
    );
    for (name, secret) in [
        ("user token", &w.user_token),
        ("daemon key", &w.daemon_key),
        ("wrong user token", &wrong_user),
        ("wrong daemon key", &wrong_daemon),
        ("garbage token", &garbage),
    ] {
        assert!(
            !log.contains(secret.as_str()),
            "the {name} appears in the bot's log"
        );
        // Not even the random part alone.
        let tail = &secret[secret.len().saturating_sub(20)..];
        assert!(
            !log.contains(tail),
            "part of the {name} appears in the bot's log"
        );
    }
}

// ---- 2. bad input ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_with_stable_codes() {
    let w = World::start_with(&[("CCRM_BOT_MAX_BODY_BYTES", "4096")]).await;
    let sid = w.new_session(json!({})).await;
    let json_ct = Some("application/json");

    // Malformed JSON and wrong field types → 400 bad_request.
    for (path, body) in [
        ("/api/sessions".to_owned(), "{not json"),
        ("/api/sessions".to_owned(), r#"{"cwd": 5}"#),
        (
            "/api/sessions".to_owned(),
            r#"{"cwd": "/tmp", "auto_allow": "yes"}"#,
        ),
        (
            "/api/sessions".to_owned(),
            r#"{"cwd": "/tmp", "no_such_field": 1}"#,
        ),
        ("/api/sessions".to_owned(), "[]"),
        (format!("/api/sessions/{sid}/prompt"), r#"{"text": "#),
        (format!("/api/sessions/{sid}/prompt"), r#"{"text": 5}"#),
        (format!("/api/sessions/{sid}/prompt"), r#"{"text": ["a"]}"#),
        (format!("/api/sessions/{sid}/prompt"), r#"{}"#),
        (format!("/api/sessions/{sid}/prompt"), ""),
        (
            "/api/approvals/whatever".to_owned(),
            r#"{"decision": "maybe"}"#,
        ),
        (
            "/api/approvals/whatever".to_owned(),
            r#"{"decision": "allow", "remember": "yes"}"#,
        ),
    ] {
        let (status, v) = raw(&w, Method::POST, &path, json_ct, body).await;
        assert_error(
            status,
            &v,
            400,
            "bad_request",
            &format!("POST {path} {body}"),
        );
    }
    // A body that is not declared JSON.
    let (status, v) = raw(
        &w,
        Method::POST,
        &format!("/api/sessions/{sid}/prompt"),
        Some("text/plain"),
        r#"{"text":"hi"}"#,
    )
    .await;
    assert_error(status, &v, 400, "bad_request", "text/plain body");
    // Query parameters of the wrong type get the same error shape.
    for path in [
        format!("/api/sessions/{sid}/events?after=abc"),
        format!("/api/sessions/{sid}/events?limit=-1"),
        format!("/api/sessions/{sid}/stream?after=x"),
        format!("/api/sessions/{sid}/events?offset=9223372036854775808"),
        format!("/api/sessions/{sid}/events?limit=9223372036854775808"),
        "/api/sessions?state=sleeping".to_owned(),
        "/api/approvals?all=maybe".to_owned(),
    ] {
        let (status, v) = w.get(&path).await;
        assert_error(status, &v, 400, "bad_request", &format!("GET {path}"));
    }
    // What the document admits but cannot be served: 422, 404 or 409, never 400.
    for (method, path, body, want, code) in [
        (
            Method::GET,
            format!("/api/sessions/{sid}/events?after=1&offset=2"),
            "",
            422,
            "unprocessable",
        ),
        (
            Method::POST,
            "/api/sessions".to_owned(),
            r#"{"cwd": "/no/such/dir"}"#,
            422,
            "unprocessable",
        ),
        (
            Method::POST,
            "/api/sessions".to_owned(),
            r#"{"cwd": "/tmp", "workspace": "w"}"#,
            422,
            "unprocessable",
        ),
        (
            Method::POST,
            "/api/sessions".to_owned(),
            r#"{}"#,
            422,
            "unprocessable",
        ),
        (
            Method::POST,
            "/api/sessions".to_owned(),
            r#"{"cwd": "/tmp", "daemon": "no-such-daemon"}"#,
            404,
            "not_found",
        ),
        (
            Method::POST,
            format!("/api/sessions/{sid}/prompt"),
            r#"{"text": " "}"#,
            422,
            "unprocessable",
        ),
        (
            Method::GET,
            "/api/executions/no-such-execution".to_owned(),
            "",
            404,
            "not_found",
        ),
        (
            Method::POST,
            "/api/executions/no-such-execution/cancel".to_owned(),
            "",
            404,
            "not_found",
        ),
    ] {
        let (status, v) = raw(&w, method.clone(), &path, json_ct, body).await;
        assert_error(status, &v, want, code, &format!("{method} {path} {body}"));
    }

    // Larger than max_body_bytes → 413 too_large.
    let big = json!({"text": "x".repeat(8192)}).to_string();
    let (status, v) = raw(
        &w,
        Method::POST,
        &format!("/api/sessions/{sid}/prompt"),
        json_ct,
        big.clone(),
    )
    .await;
    assert_error(status, &v, 413, "too_large", "8 KiB prompt");
    let big_session = json!({"cwd": w.work, "name": "n".repeat(8192)}).to_string();
    let (status, v) = raw(&w, Method::POST, "/api/sessions", json_ct, big_session).await;
    assert_error(status, &v, 413, "too_large", "8 KiB session");
    // Also when the size is not announced up front (chunked body).
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (status, v) = raw(
        &w,
        Method::POST,
        &format!("/api/sessions/{sid}/prompt"),
        json_ct,
        body,
    )
    .await;
    assert_error(status, &v, 413, "too_large", "chunked 8 KiB prompt");

    // Unknown ids → 404; a session key that is no id, prefix or name is just as unknown.
    let unknown = SessionId::new().to_string();
    for (method, path) in [
        (Method::GET, format!("/api/sessions/{unknown}")),
        (Method::GET, format!("/api/sessions/{unknown}/events")),
        (
            Method::GET,
            format!("/api/sessions/{unknown}/events?offset=0"),
        ),
        (Method::GET, format!("/api/sessions/{unknown}/stream")),
        (Method::POST, format!("/api/sessions/{unknown}/prompt")),
        (Method::POST, format!("/api/sessions/{unknown}/stop")),
        (Method::POST, format!("/api/sessions/{unknown}/kill")),
        (Method::POST, "/api/approvals/no-such-approval".to_owned()),
        (Method::POST, format!("/api/sessions/{sid}/explode")),
    ] {
        let body = if path.ends_with("/prompt") {
            r#"{"text":"x"}"#
        } else {
            r#"{"decision":"allow"}"#
        };
        let (status, v) = raw(&w, method.clone(), &path, json_ct, body).await;
        assert_error(status, &v, 404, "not_found", &format!("{method} {path}"));
    }
    for (method, path) in [
        (Method::GET, "/api/sessions/not-a-uuid".to_owned()),
        (Method::GET, "/api/sessions/1234/events".to_owned()),
        (Method::GET, "/api/sessions/..%2F..%2Fetc/stream".to_owned()),
        (Method::POST, "/api/sessions/xyz/prompt".to_owned()),
        (Method::POST, "/api/sessions/xyz/stop".to_owned()),
        (Method::GET, "/api/approvals?session=not-a-uuid".to_owned()),
    ] {
        let (status, v) = raw(&w, method.clone(), &path, json_ct, r#"{"text":"x"}"#).await;
        assert_error(status, &v, 404, "not_found", &format!("{method} {path}"));
    }
    // Unknown routes → 404 JSON, with or without a token.
    for path in ["/api/nope", "/nope", "/api/sessions/a/b/c/d"] {
        let (status, v) = w.get(path).await;
        assert_error(status, &v, 404, "not_found", path);
        let r = w.http.get(w.url(path)).send().await.expect("GET");
        assert_eq!(r.status(), 404, "{path} without a token");
        let v: Value = r.json().await.expect("404 is JSON");
        assert_eq!(v["error"]["code"], "not_found");
    }

    // After all that the session still works.
    let (status, v) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "still fine"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    w.wait_stored(&sid, |e| {
        kind(e) == "assistant_text" && e["event"]["text"] == "Echo: still fine"
    })
    .await;
}

// ---- 2b. bad frames from a daemon --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_from_a_daemon_get_error_frames_while_the_real_daemon_keeps_working() {
    let w = World::start().await;
    let sid = w.new_session(json!({})).await;

    let mut fake = ws_connect(&w, "/ws/daemon", &[("x-api-key", w.daemon_key.clone())])
        .await
        .expect("fake daemon connects");
    ws_send(&mut fake, hello(LINK_PROTOCOL_VERSION, "fake-daemon")).await;
    let welcome = ws_expect(&mut fake, "welcome").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["acked_seq"], 0, "{welcome}");

    // A real turn runs while the fake sends garbage.
    let (status, v) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "during the garbage"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let bad: Vec<(&str, Message)> = vec![
        ("garbage text", Message::text("this is not json {")),
        ("binary frame", Message::binary(vec![0u8, 159, 146, 150])),
        ("second hello", hello(LINK_PROTOCOL_VERSION, "fake-daemon")),
        (
            "truncated events",
            Message::text(r#"{"type":"events","events":[{"seq":1,"#),
        ),
        (
            "events of the wrong shape",
            Message::text(r#"{"type":"events","events":[{"seq":"one","event":{"kind":"bogus"}}]}"#),
        ),
        (
            "unknown type",
            Message::text(r#"{"type":"launch_missiles"}"#),
        ),
        ("JSON but not an object", Message::text("[1,2,3]")),
    ];
    for (name, msg) in bad {
        ws_send(&mut fake, msg).await;
        let v = ws_expect(&mut fake, name).await;
        assert_eq!(v["type"], "error", "{name}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{name}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {v}"
        );
    }
    // The fake's link is still up: a valid batch is committed and acknowledged.
    let fake_session = SessionId::new();
    let events = vec![
        link_event(
            1,
            fake_session,
            EventKind::State {
                state: SessionState::Idle,
                reason: None,
            },
        ),
        link_event(
            2,
            fake_session,
            EventKind::AssistantText {
                text: "from the fake".into(),
            },
        ),
    ];
    ws_send(
        &mut fake,
        Message::text(serde_json::to_string(&DaemonMsg::Events { events }).expect("json")),
    )
    .await;
    let ack = ws_expect(&mut fake, "ack").await;
    assert_eq!(ack, json!({"type": "ack", "seq": 2}));
    let stored = w.all_events(&fake_session.to_string()).await;
    assert_eq!(stored.len(), 2, "{stored:?}");

    // The real daemon's turn finished, and another one round-trips afterwards.
    w.wait_stored(&sid, |e| {
        kind(e) == "assistant_text" && e["event"]["text"] == "Echo: during the garbage"
    })
    .await;
    let (status, v) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "after the garbage"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    w.wait_stored(&sid, |e| {
        kind(e) == "assistant_text" && e["event"]["text"] == "Echo: after the garbage"
    })
    .await;
    let (_, v) = w.get("/api/daemons").await;
    let online = v["daemons"]
        .as_array()
        .map(|a| a.iter().filter(|d| d["online"] == true).count());
    assert_eq!(online, Some(2), "both links are up: {v}");
    let _ = fake.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_version_or_a_missing_hello_closes_that_link_only() {
    let w = World::start().await;
    let sid = w.new_session(json!({})).await;

    let mut ws = ws_connect(&w, "/ws/daemon", &[("x-api-key", w.daemon_key.clone())])
        .await
        .expect("connects");
    ws_send(&mut ws, hello(LINK_PROTOCOL_VERSION + 98, "future-daemon")).await;
    let v = ws_expect(&mut ws, "error").await;
    assert_eq!(v["type"], "error", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("bot speaks {LINK_PROTOCOL_VERSION}")),
        "names the bot's version: {msg}"
    );
    assert!(
        msg.contains(&(LINK_PROTOCOL_VERSION + 98).to_string()),
        "names the daemon's version: {msg}"
    );
    ws_expect_closed(&mut ws, "after a protocol mismatch").await;

    // A first frame that is not a hello is refused the same way.
    for first in [
        Message::text("garbage"),
        Message::text(r#"{"type":"events","events":[]}"#),
        Message::binary(vec![1u8, 2, 3]),
    ] {
        let mut ws = ws_connect(&w, "/ws/daemon", &[("x-api-key", w.daemon_key.clone())])
            .await
            .expect("connects");
        ws_send(&mut ws, first).await;
        let v = ws_expect(&mut ws, "error").await;
        assert_eq!(v["type"], "error", "{v}");
        ws_expect_closed(&mut ws, "after a bad first frame").await;
    }

    // Those daemons were never registered, and the bot and the real daemon keep serving.
    let (_, v) = w.get("/api/daemons").await;
    let ids: Vec<&str> = v["daemons"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 1, "{v}");
    assert!(!ids.contains(&"future-daemon"), "{v}");
    assert_eq!(
        w.http
            .get(w.url("/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    let (status, v) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "still linked"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    w.wait_stored(&sid, |e| {
        kind(e) == "assistant_text" && e["event"]["text"] == "Echo: still linked"
    })
    .await;
}

// ---- 3. approval race -------------------------------------------------------------------

/// tool_result blocks answering `tool_use_id` anywhere in a Messages request body.
fn tool_results_for(body: &Value, tool_use_id: &str) -> usize {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result" && b["tool_use_id"] == tool_use_id)
        .count()
}

/// Who answered one round, and the loser's complaint.
#[derive(Debug)]
enum Winner {
    Rest,
    Cli,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_answered_over_rest_and_the_cli_at_once_has_exactly_one_winner() {
    let w = World::start().await;
    let sid = w.new_session(json!({"name": "race"})).await;
    // The dashboard watches the session (header auth this time).
    let mut dash = ws_connect(
        &w,
        "/ws/dashboard",
        &[("authorization", format!("Bearer {}", w.user_token))],
    )
    .await
    .expect("dashboard");
    assert_eq!(ws_expect(&mut dash, "ready").await["type"], "ready");
    ws_send(
        &mut dash,
        Message::text(json!({"type": "subscribe", "sessions": [sid]}).to_string()),
    )
    .await;
    assert_eq!(
        ws_expect(&mut dash, "subscribed").await["type"],
        "subscribed"
    );
    let (dash_tx, mut dash_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let dash_task = tokio::spawn(async move {
        while let Some(v) = ws_next(&mut dash).await {
            if dash_tx.send(v).is_err() {
                return;
            }
        }
    });

    let mut winners = Vec::new();
    let mut approvals = Vec::new();
    for round in 0..4u32 {
        let target = w.work.join(format!("race-{round}.txt"));
        let content = format!("round-{round}");
        let (status, v) = w
            .post(
                &format!("/api/sessions/{sid}/prompt"),
                json!({"text": format!("WRITE:{} {content}", target.display())}),
            )
            .await;
        assert_eq!(status, 202, "{v}");
        let approval = wait_approval(&w, &sid).await;
        let aid = approval["id"].as_str().expect("approval id").to_owned();
        assert_eq!(approval["tool_name"], "Write", "{approval}");

        // Both answers leave together. In later rounds the CLI side starts a little later,
        // so the REST side (one hop longer) gets its chances to win too.
        let cli_delay = if round < 2 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::random_range(5..40))
        };
        let mut cli = common::ccrm_daemon_client(&w.socket()).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let rest = {
            let (b, http, url, token) = (
                barrier.clone(),
                w.http.clone(),
                w.url(&format!("/api/approvals/{aid}")),
                w.user_token.clone(),
            );
            tokio::spawn(async move {
                b.wait().await;
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"decision": "allow"}))
                    .send()
                    .await
                    .expect("REST decide");
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap_or(Value::Null))
            })
        };
        let cli = {
            let (b, cmd) = (
                barrier.clone(),
                Command::ApprovalDecide(DecideArgs {
                    session: sid.clone(),
                    approval: Some(aid.clone()),
                    decision: Decision::Allow,
                    message: None,
                    origin: None,
                }),
            );
            tokio::spawn(async move {
                b.wait().await;
                tokio::time::sleep(cli_delay).await;
                cli.call(cmd).await
            })
        };
        let (rest, cli) = tokio::time::timeout(WAIT, async {
            (rest.await.expect("rest task"), cli.await.expect("cli task"))
        })
        .await
        .expect("both answers return");

        let winner = match (&rest, &cli) {
            ((200, _), Err(daemon::client::ClientError::Daemon(e))) => {
                assert_eq!(e.code, ErrorCode::AlreadyDecided, "round {round}: {e:?}");
                assert!(
                    e.message.contains("rest:alice"),
                    "the CLI is told the REST user answered: {}",
                    e.message
                );
                Winner::Rest
            }
            ((status, body), Ok(_)) => {
                assert_error(
                    *status,
                    body,
                    409,
                    "already_decided",
                    &format!("round {round}"),
                );
                let msg = body["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    msg.contains("by cli"),
                    "REST is told the CLI answered: {msg}"
                );
                Winner::Cli
            }
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        winners.push(winner);

        // The turn goes on once, with one tool result.
        let events = wait_events(&w, &sid, |all| {
            all.iter().filter(|e| kind(e) == "turn_result").count() > round as usize
        })
        .await;
        let decisions: Vec<&Value> = events
            .iter()
            .filter(|e| {
                kind(e) == "permission_decision" && e["event"]["approval_id"] == aid.as_str()
            })
            .collect();
        assert_eq!(
            decisions.len(),
            1,
            "round {round}: one decision stored: {decisions:#?}"
        );
        let request = events
            .iter()
            .find(|e| kind(e) == "permission_request" && e["event"]["approval_id"] == aid.as_str())
            .expect("request stored");
        let tool_use_id = request["event"]["tool_use_id"]
            .as_str()
            .expect("tool_use_id")
            .to_owned();
        let results: Vec<&Value> = events
            .iter()
            .filter(|e| {
                kind(e) == "tool_result" && e["event"]["tool_use_id"] == tool_use_id.as_str()
            })
            .collect();
        assert_eq!(results.len(), 1, "round {round}: {results:#?}");
        assert_eq!(results[0]["event"]["is_error"], false, "{results:#?}");
        assert_eq!(
            std::fs::read_to_string(&target).expect("file written"),
            content
        );
        // The child answered the API once: every later request carries one tool_result for
        // the call (exactly one control_response reached it).
        let requests: Vec<_> = w
            .api
            .message_requests()
            .into_iter()
            .filter(|r| {
                r.all_text().contains(&tool_use_id) || tool_results_for(&r.body, &tool_use_id) > 0
            })
            .collect();
        assert!(
            !requests.is_empty(),
            "round {round}: no API request carried the tool result"
        );
        for r in &requests {
            assert_eq!(
                tool_results_for(&r.body, &tool_use_id),
                1,
                "round {round}: {}",
                r.body
            );
        }
        // No longer pending.
        let (_, v) = w.get("/api/approvals").await;
        assert!(
            !v["approvals"]
                .as_array()
                .expect("list")
                .iter()
                .any(|a| a["id"] == aid.as_str()),
            "{v}"
        );
        let (_, v) = w.get("/api/approvals?all=true").await;
        let row = v["approvals"]
            .as_array()
            .expect("list")
            .iter()
            .find(|a| a["id"] == aid.as_str())
            .cloned()
            .expect("row kept");
        assert_eq!(row["status"], "decided", "{row}");
        approvals.push(aid);
    }
    eprintln!("race winners: {winners:?}");

    // The dashboard saw each request and its single decision.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let last = approvals.last().cloned().unwrap_or_default();
    while !seen.iter().any(|v: &Value| {
        v["event"]["event"]["kind"] == "permission_decision"
            && v["event"]["event"]["approval_id"] == last.as_str()
    }) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = tokio::time::timeout(left, dash_rx.recv())
            .await
            .expect("dashboard events")
            .expect("dashboard open");
        seen.push(v);
    }
    for aid in &approvals {
        let of = |k: &str| {
            seen.iter()
                .filter(|v| {
                    v["type"] == "event"
                        && v["event"]["event"]["kind"] == k
                        && v["event"]["event"]["approval_id"] == aid.as_str()
                })
                .count()
        };
        assert_eq!(
            of("permission_request"),
            1,
            "dashboard saw the request of {aid}"
        );
        assert_eq!(
            of("permission_decision"),
            1,
            "dashboard saw one decision of {aid}"
        );
    }
    assert!(
        seen.iter()
            .all(|v| v["type"] != "event" || v["event"]["event"]["session_id"] == sid.as_str())
    );
    dash_task.abort();
}

// ---- 4. dashboard socket -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_socket_authenticates_by_first_message_streams_subscribed_events_and_survives_bad_messages()
 {
    let w = World::start().await;
    let sid = w.new_session(json!({})).await;
    let other = w.new_session(json!({"name": "other"})).await;

    let mut ws = ws_connect(&w, "/ws/dashboard", &[]).await.expect("upgrade");
    ws_send(
        &mut ws,
        Message::text(json!({"type": "auth", "token": w.user_token}).to_string()),
    )
    .await;
    let ready = ws_expect(&mut ws, "ready").await;
    assert_eq!(ready, json!({"type": "ready", "user": "alice"}));

    // Malformed messages: an error each, and the socket stays open.
    for bad in [
        "not json".to_owned(),
        json!({"type": "frobnicate"}).to_string(),
        json!({"type": "subscribe", "sessions": ["not-a-uuid"]}).to_string(),
        json!({"type": "subscribe", "sessions": "all"}).to_string(),
        json!({"no_type": true}).to_string(),
    ] {
        ws_send(&mut ws, Message::text(bad.clone())).await;
        let v = ws_expect(&mut ws, &bad).await;
        assert_eq!(v["type"], "error", "{bad}: {v}");
        assert_eq!(v["code"], "bad_request", "{bad}: {v}");
    }
    ws_send(&mut ws, Message::binary(vec![0u8, 1, 2])).await;

    // Subscribe to one session; its live events arrive, the other session's do not.
    ws_send(
        &mut ws,
        Message::text(json!({"type": "subscribe", "sessions": [sid]}).to_string()),
    )
    .await;
    let v = ws_expect(&mut ws, "subscribed").await;
    assert_eq!(v["type"], "subscribed", "{v}");
    assert_eq!(v["sessions"], json!([sid]), "{v}");
    let (status, _) = w
        .post(
            &format!("/api/sessions/{other}/prompt"),
            json!({"text": "not for you"}),
        )
        .await;
    assert_eq!(status, 202);
    w.wait_stored(&other, |e| kind(e) == "turn_result").await;
    let (status, _) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "live please"}),
        )
        .await;
    assert_eq!(status, 202);
    let mut kinds = Vec::new();
    let mut bad_sent = false;
    loop {
        let v = ws_expect(&mut ws, "live events").await;
        if v["type"] == "error" {
            assert!(bad_sent, "unexpected error {v}");
            continue;
        }
        assert_eq!(v["type"], "event", "{v}");
        let ev = &v["event"];
        assert_eq!(
            ev["event"]["session_id"],
            sid.as_str(),
            "only the subscribed session: {v}"
        );
        assert!(
            ev["id"].as_i64().is_some(),
            "stored events carry their row id: {v}"
        );
        let k = ev["event"]["kind"].as_str().unwrap_or_default().to_owned();
        if !bad_sent {
            // A bad message in the middle of the stream changes nothing.
            ws_send(&mut ws, Message::text("{{{")).await;
            bad_sent = true;
        }
        // The turn ends with its result, then the session goes back to idle.
        let done = k == "state"
            && ev["event"]["state"] == "idle"
            && kinds.iter().any(|x| x == "turn_result");
        kinds.push(k);
        if done {
            break;
        }
    }
    eprintln!("dashboard saw {kinds:?}");
    for k in ["prompt", "turn_started", "assistant_text", "turn_result"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let texts: Vec<Value> = w
        .all_events(&sid)
        .await
        .into_iter()
        .filter(|e| kind(e) == "assistant_text")
        .map(|e| e["event"]["text"].clone())
        .collect();
    assert_eq!(texts, vec![json!("Echo: live please")]);

    // Unsubscribe: nothing more arrives; the socket still answers.
    ws_send(
        &mut ws,
        Message::text(json!({"type": "unsubscribe", "sessions": [sid]}).to_string()),
    )
    .await;
    let (status, _) = w
        .post(
            &format!("/api/sessions/{sid}/prompt"),
            json!({"text": "after unsubscribe"}),
        )
        .await;
    assert_eq!(status, 202);
    w.wait_stored(&sid, |e| {
        kind(e) == "turn_result" && e["event"]["text"] == "Echo: after unsubscribe"
    })
    .await;
    ws_send(
        &mut ws,
        Message::text(json!({"type": "subscribe", "sessions": [other]}).to_string()),
    )
    .await;
    let v = ws_expect(&mut ws, "subscribed (other)").await;
    assert_eq!(
        v["type"], "subscribed",
        "no events of the unsubscribed session in between: {v}"
    );
    assert_eq!(v["sessions"], json!([other]), "{v}");
    assert!(
        tokio::time::timeout(QUIET, ws.next()).await.is_err(),
        "nothing else pending"
    );
    let _ = ws.close(None).await;
}
