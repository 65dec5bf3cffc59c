//! The fake Messages API over real sockets, with a small raw HTTP/1.1 client (no CLI).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ccrm_testkit::{FakeApi, Reply};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A response read to the end of the connection.
struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// For chunked bodies: whether the final zero-length chunk arrived.
    complete: bool,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }

    /// The SSE events as `(event name, data)`.
    fn events(&self) -> anyhow::Result<Vec<(String, Value)>> {
        let text = std::str::from_utf8(&self.body)?;
        text.split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').context("event without data")?;
                let name = name.strip_prefix("event: ").context("no event line")?;
                let data = data.strip_prefix("data: ").context("no data line")?;
                Ok((name.to_owned(), serde_json::from_str(data)?))
            })
            .collect()
    }
}

fn request_bytes(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         X-Claude-Code-Session-Id: test-session\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&request_bytes(method, path, body)).await?;
    let mut raw = Vec::new();
    // A deliberately cut stream may end in a reset instead of a clean EOF.
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse_response(&raw)
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(WAIT, send(addr, "POST", path, body.to_string().as_bytes()))
        .await
        .context("request timed out")?
}

fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .context("no status code")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let (body, complete) = if chunked {
        dechunk(rest)?
    } else {
        (rest.to_vec(), true)
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
        complete,
    })
}

/// Decodes a chunked body; `complete` is false when the final chunk never came.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok((body, false));
        };
        let size_text = std::str::from_utf8(&rest[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok((body, true));
        }
        let start = eol + 2;
        if rest.len() < start + size {
            body.extend_from_slice(&rest[start..]);
            return Ok((body, false));
        }
        body.extend_from_slice(&rest[start..start + size]);
        rest = rest.get(start + size + 2..).unwrap_or_default();
    }
}

fn messages_body(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-test-model",
        "max_tokens": 1000,
        "stream": stream,
        "messages": [
            { "role": "user", "content": [
                { "type": "text", "text": "<system-reminder>\nignore me\n</system-reminder>" },
                { "type": "text", "text": text },
            ]},
            { "role": "system", "content": [{ "type": "text", "text": "# Environment" }] },
        ],
    })
}

const MESSAGES: &str = "/v1/messages?beta=true";

#[tokio::test]
async fn tool_keyword_streams_tool_use() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    let resp = post_json(api.addr(), MESSAGES, &messages_body("TOOL:ls -la", true)).await?;
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    assert!(
        resp.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let events = resp.events()?;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert_eq!(events[0].1["message"]["model"], "claude-test-model");
    let start = &events[1].1["content_block"];
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "Bash");
    assert!(
        start["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("toolu_"))
    );
    let pieces: Vec<&str> = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert!(pieces.len() >= 2, "input JSON should come in pieces");
    let input: Value = serde_json::from_str(&pieces.concat())?;
    assert_eq!(
        input,
        json!({ "command": "ls -la", "description": "run command" })
    );
    let delta = events
        .iter()
        .find(|(n, _)| n == "message_delta")
        .context("no message_delta")?;
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    let recorded = api.wait_for_requests(1, WAIT).await?;
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.query.as_deref(), Some("beta=true"));
    assert_eq!(r.session_id.as_deref(), Some("test-session"));
    assert_eq!(r.last_human_text().as_deref(), Some("TOOL:ls -la"));
    assert_eq!(r.status, 200);
    assert!(r.finished_at.is_some());
    assert!(!r.client_disconnected);
    Ok(())
}

#[tokio::test]
async fn echo_text_stream_and_non_streaming() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    let resp = post_json(api.addr(), MESSAGES, &messages_body("hello there", true)).await?;
    let text: String = resp
        .events()?
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Echo: hello there");

    let resp = post_json(api.addr(), MESSAGES, &messages_body("hello there", false)).await?;
    assert_eq!(resp.status, 200);
    let msg = resp.json()?;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["model"], "claude-test-model");
    assert_eq!(msg["content"][0]["text"], "Echo: hello there");
    assert_eq!(msg["stop_reason"], "end_turn");

    // A body without `stream` is non-streaming too.
    let mut body = messages_body("TOOL:pwd", false);
    body.as_object_mut().map(|o| o.remove("stream"));
    let msg = post_json(api.addr(), MESSAGES, &body).await?.json()?;
    assert_eq!(msg["content"][0]["type"], "tool_use");
    assert_eq!(msg["content"][0]["input"]["command"], "pwd");
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(api.message_requests().len(), 3);
    Ok(())
}

#[tokio::test]
async fn count_tokens_and_unknown_routes() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    let resp = post_json(
        api.addr(),
        "/v1/messages/count_tokens?beta=true",
        &messages_body("x", false),
    )
    .await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()?, json!({ "input_tokens": 10 }));

    let resp = post_json(api.addr(), "/v1/models", &json!({})).await?;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()?["type"], "error");
    let resp = tokio::time::timeout(WAIT, send(api.addr(), "GET", MESSAGES, b"")).await??;
    assert_eq!(resp.status, 404);

    let all = api.requests();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].path, "/v1/messages/count_tokens");
    assert!(api.message_requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn err_keyword_gives_status_and_error_body() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    for stream in [true, false] {
        let resp = post_json(api.addr(), MESSAGES, &messages_body("ERR529", stream)).await?;
        assert_eq!(resp.status, 529);
        let body = resp.json()?;
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "overloaded_error");
    }
    for (code, kind) in [
        (500, "api_error"),
        (401, "authentication_error"),
        (429, "rate_limit_error"),
    ] {
        let resp = post_json(
            api.addr(),
            MESSAGES,
            &messages_body(&format!("ERR{code}"), true),
        )
        .await?;
        assert_eq!(resp.status, code);
        assert_eq!(resp.json()?["error"]["type"], kind);
    }
    Ok(())
}

#[tokio::test]
async fn malformed_body_is_400_and_server_keeps_serving() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    for bad in [
        &b"{not json"[..],
        b"[1,2]",
        br#"{"model":"m","messages":"no"}"#,
        b"",
    ] {
        let resp = tokio::time::timeout(WAIT, send(api.addr(), "POST", MESSAGES, bad)).await??;
        assert_eq!(resp.status, 400);
        let body = resp.json()?;
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let resp = tokio::time::timeout(
        WAIT,
        send(api.addr(), "POST", "/v1/messages/count_tokens", b"{oops"),
    )
    .await??;
    assert_eq!(resp.status, 400);

    let resp = post_json(api.addr(), MESSAGES, &messages_body("still here?", false)).await?;
    assert_eq!(resp.json()?["content"][0]["text"], "Echo: still here?");
    let recorded = api.requests();
    assert_eq!(recorded.len(), 6);
    assert_eq!(recorded[0].body, Value::String("{not json".to_owned()));
    assert_eq!(recorded[0].status, 400);
    Ok(())
}

#[tokio::test]
async fn scripted_replies_come_first_in_order() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    api.push_script(Reply::text("first"));
    api.push_script(Reply::Error { status: 503 });
    let msg = post_json(api.addr(), MESSAGES, &messages_body("ignored", false))
        .await?
        .json()?;
    assert_eq!(msg["content"][0]["text"], "first");
    let resp = post_json(api.addr(), MESSAGES, &messages_body("ignored", true)).await?;
    assert_eq!(resp.status, 503);
    let msg = post_json(api.addr(), MESSAGES, &messages_body("back to rules", false))
        .await?
        .json()?;
    assert_eq!(msg["content"][0]["text"], "Echo: back to rules");
    Ok(())
}

#[tokio::test]
async fn trunc_and_sseerr_break_the_stream_then_recover() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    let resp = post_json(api.addr(), MESSAGES, &messages_body("TRUNC", true)).await?;
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "a truncated stream must not end cleanly");
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    assert!(body.contains("content_block_delta"));
    assert!(!body.contains("message_stop"));

    let resp = post_json(api.addr(), MESSAGES, &messages_body("SSEERR", true)).await?;
    let events = resp.events()?;
    let (name, data) = events.last().context("no events")?;
    assert_eq!(name, "error");
    assert_eq!(data["type"], "error");

    for keyword in ["TRUNC", "SSEERR"] {
        let msg = post_json(api.addr(), MESSAGES, &messages_body(keyword, false))
            .await?
            .json()?;
        assert_eq!(msg["content"][0]["text"], "Recovered.");
    }
    Ok(())
}

#[tokio::test]
async fn slow_deltas_arrive_spaced_out() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    api.set_chunk_delay(Duration::from_millis(150));
    let mut stream = TcpStream::connect(api.addr()).await?;
    let body = messages_body("SLOW:4", true).to_string();
    stream
        .write_all(&request_bytes("POST", MESSAGES, body.as_bytes()))
        .await?;
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 8192];
    let started = Instant::now();
    let read_all = async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            for _ in 0..text.matches("text_delta").count() {
                arrivals.push(started.elapsed());
            }
        }
    };
    tokio::time::timeout(WAIT, read_all).await??;
    assert_eq!(arrivals.len(), 4);
    // Buffered output would bring all four at once; a busy machine may bunch two.
    let spread = arrivals[3].saturating_sub(arrivals[0]);
    assert!(
        spread >= Duration::from_millis(300),
        "deltas not spaced: {arrivals:?}"
    );
    Ok(())
}

#[tokio::test]
async fn client_disconnect_stops_the_stream() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    let mut stream = TcpStream::connect(api.addr()).await?;
    let body = messages_body("SLOW:100:50", true).to_string();
    stream
        .write_all(&request_bytes("POST", MESSAGES, body.as_bytes()))
        .await?;
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    let first_delta = async {
        while !seen.contains("text_delta") {
            let n = stream.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "stream ended early");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(WAIT, first_delta).await??;
    assert_eq!(api.in_flight(), 1);
    drop(stream);
    // 100 deltas 50 ms apart would take 5 s; a dropped client ends it much sooner.
    let dropped_at = Instant::now();
    api.wait_until_idle(WAIT).await?;
    assert!(dropped_at.elapsed() < Duration::from_secs(3));
    let r = &api.message_requests()[0];
    assert!(r.client_disconnected);
    assert!(r.finished_at.is_some());
    Ok(())
}

#[tokio::test]
async fn deltas_keyword_sends_many_events() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    let resp = post_json(api.addr(), MESSAGES, &messages_body("DELTAS:5000", true)).await?;
    let events = resp.events()?;
    let deltas = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .count();
    assert_eq!(deltas, 5000);
    let resp = post_json(api.addr(), MESSAGES, &messages_body("LONG:1234", false)).await?;
    let text = resp.json()?["content"][0]["text"]
        .as_str()
        .map(str::to_owned)
        .context("no text")?;
    assert_eq!(text.chars().count(), 1234);
    Ok(())
}

#[tokio::test]
async fn forgotten_bodies_are_still_answered_and_counted() -> anyhow::Result<()> {
    let api = FakeApi::start().await?;
    post_json(api.addr(), MESSAGES, &messages_body("kept", false)).await?;
    api.forget_bodies();
    let msg = post_json(api.addr(), MESSAGES, &messages_body("dropped", false))
        .await?
        .json()?;
    assert_eq!(msg["content"][0]["text"], "Echo: dropped");
    let seen = api.wait_for_requests(2, Duration::from_secs(10)).await?;
    assert_eq!(seen[0].last_human_text().as_deref(), Some("kept"));
    assert_eq!(seen[1].body, Value::Null);
    assert_eq!(seen[1].status, 200);
    Ok(())
}
