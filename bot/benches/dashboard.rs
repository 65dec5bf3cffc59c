//! Dashboard benchmark, against the real `ccrm-bot` binary fed by a fake daemon over the
//! WebSocket link (a real daemon key; events committed and acked like ccrmd's), measured
//! in real headless Chromium (Debian's `chromium` + `chromedriver`, see
//! `tests/web/mod.rs`) and with plain HTTP clients:
//!
//! 1. Page weight: the first load of the overview in a fresh browser profile, every byte
//!    transferred (compressed bodies, Resource Timing `encodedBodySize` of the document
//!    and every resource it loaded). Baseline: the same bytes uncompressed
//!    (`decodedBodySize`). Target ≤ 100 KB.
//! 2. Opening a session with 10,000 stored events: navigation start → the newest events
//!    painted (the page script's mark, taken in the frame after it scrolled to the end),
//!    median of [`RUNS`] loads, with First Contentful Paint beside it. Baseline: the same
//!    for a session with 10 events. Target ≤ 1 s.
//! 3. Live event → DOM: the fake daemon sends [`LIVE_EVENTS`] assistant texts one at a
//!    time; a MutationObserver on the open session page notes when each event's node is
//!    added. Baseline: a plain SSE client of `/api/sessions/{id}/stream` receiving the same
//!    events in the same run. Target p50 ≤ 50 ms.
//! 4. Bot RSS with [`CLIENTS`] dashboard clients (`/live` streams of one session, with a
//!    login cookie) while the daemon streams 200 events/s for [`STREAM_SECS`] s; every
//!    client must receive every event. Baseline: the bot's RSS idle before they connect.
//!    Target ≤ 30 MB.
//!
//! Run with `cargo bench -p ccrm-bot --bench dashboard`. Needs Chromium and chromedriver
//! (`scripts/test.sh` installs them).

#[path = "support/mod.rs"]
mod support;
#[path = "../tests/web/mod.rs"]
mod web;

use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use ccrm_bot::auth::KeyKind;
use ccrm_bot::db::Db;
use common::event::{Decision, Event, EventKind, Origin, SessionState, Surface};
use common::ids::{ApprovalId, DaemonId, SessionId};
use common::link::{DaemonMsg, HubMsg, LINK_PROTOCOL_VERSION, LinkEvent};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIG: u64 = 10_000;
const SMALL: u64 = 10;
const RUNS: usize = 5;
const LIVE_EVENTS: u64 = 200;
const CLIENTS: usize = 20;
const STREAM_SECS: u64 = 10;
const WAIT: Duration = Duration::from_secs(120);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The fake daemon's link.
struct Daemon {
    ws: Ws,
    seq: u64,
    session_seq: std::collections::HashMap<SessionId, u64>,
}

impl Daemon {
    async fn connect(
        addr: &str,
        key: &str,
        sessions: &[(SessionId, &str)],
    ) -> anyhow::Result<Self> {
        let mut req = format!("ws://{addr}/ws/daemon").into_client_request()?;
        req.headers_mut().insert("x-api-key", key.parse()?);
        let (mut ws, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await??;
        let infos: Vec<common::ipc::SessionInfo> = sessions
            .iter()
            .map(|(id, name)| {
                serde_json::from_value(json!({
                    "id": id, "name": name, "cwd": "/home/dev/project", "permission_mode": "default",
                    "state": "idle", "created_ms": 1, "last_event_ms": 1,
                }))
            })
            .collect::<Result<_, _>>()?;
        let hello = DaemonMsg::Hello {
            protocol: LINK_PROTOCOL_VERSION,
            daemon_id: DaemonId("bench-daemon".into()),
            hostname: "bench".into(),
            version: "0".into(),
            sessions: infos,
            features: Vec::new(),
        };
        ws.send(Message::text(serde_json::to_string(&hello)?))
            .await?;
        match next_msg(&mut ws).await? {
            HubMsg::Welcome { .. } => {}
            other => bail!("expected welcome, got {other:?}"),
        }
        Ok(Self {
            ws,
            seq: 0,
            session_seq: Default::default(),
        })
    }

    /// Sends events of `session` in one frame and waits for their ack.
    async fn send(&mut self, session: SessionId, kinds: Vec<EventKind>) -> anyhow::Result<()> {
        let now = now_ms_f() as u64;
        let mut events = Vec::with_capacity(kinds.len());
        for kind in kinds {
            self.seq += 1;
            let s = self.session_seq.entry(session).or_default();
            *s += 1;
            events.push(LinkEvent {
                seq: self.seq,
                event: Event {
                    seq: *s,
                    ts_ms: now,
                    session_id: session,
                    kind,
                    raw: None,
                },
            });
        }
        let last = self.seq;
        self.ws
            .send(Message::text(serde_json::to_string(&DaemonMsg::Events {
                events,
            })?))
            .await?;
        loop {
            match next_msg(&mut self.ws).await? {
                HubMsg::Ack { seq } if seq >= last => return Ok(()),
                HubMsg::Ack { .. } => {}
                HubMsg::Error { error } => bail!("bot refused events: {}", error.message),
                _ => {}
            }
        }
    }
}

async fn next_msg(ws: &mut Ws) -> anyhow::Result<HubMsg> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("no frame from the bot")?
            .context("link closed")??;
        if let Message::Text(t) = msg {
            return Ok(serde_json::from_str(&t)?);
        }
    }
}

fn now_ms_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// One realistic turn: prompt, start, text, a tool call with its result, an edit that
/// needed approval, the answer, the result.
fn turn(n: u64) -> Vec<EventKind> {
    let tool = format!("toolu_{n:08}");
    vec![
        EventKind::Prompt {
            prompt_id: n,
            text: format!("Step {n}: fix the parser so the error names the line"),
            origin: Origin::user(Surface::Dashboard, "bench"),
            queued_behind: 0,
        },
        EventKind::TurnStarted { prompt_id: n },
        EventKind::AssistantText {
            text: format!("I will look at `src/parse.rs` first (step {n})."),
        },
        EventKind::ToolUse {
            tool_use_id: tool.clone(),
            name: "Bash".into(),
            input: json!({"command": "cargo test -p parser", "description": "run tests"}),
        },
        EventKind::ToolResult {
            tool_use_id: tool,
            content: "running 12 tests\ntest ok\n".repeat(3),
            is_error: false,
        },
        EventKind::PermissionRequest {
            approval_id: ApprovalId(format!("req-{n}")),
            tool_name: "Edit".into(),
            input: json!({"file_path": "/home/dev/project/src/parse.rs",
                "old_string": "Err(e)\n", "new_string": "Err(e.at(line))\n"}),
            tool_use_id: None,
            description: None,
        },
        EventKind::PermissionDecision {
            approval_id: ApprovalId(format!("req-{n}")),
            tool_name: "Edit".into(),
            decision: Decision::Allow,
            by: "cli".into(),
            message: None,
        },
        EventKind::AssistantText {
            text: format!(
                "Done. The error now says **which line** failed:\n\n```rust\nErr(e.at(line))\n```\n\nStep {n} complete."
            ),
        },
        EventKind::TurnResult {
            prompt_id: Some(n),
            text: Some("Done.".into()),
            is_error: false,
            subtype: "success".into(),
            cost_usd: Some(0.001 * n as f64),
            duration_ms: Some(2100),
            num_turns: Some(2),
        },
        EventKind::State {
            state: SessionState::Idle,
            reason: None,
        },
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Bot {
    child: Child,
    addr: String,
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if !web::chromium_available() {
        web::skip_loudly("the dashboard bench");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("bot");
    let db = Db::open(&data.join("ccrm.db")).await?;
    let (_, key) = db.create_key("bench-daemon", KeyKind::Daemon, 1).await?;
    let (_, token) = db.create_key("bench", KeyKind::User, 1).await?;
    db.close().await;

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm-bot"));
    cmd.env("CCRM_BOT_LISTEN", "127.0.0.1:0")
        .env("CCRM_BOT_DATA_DIR", &data)
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("CCRM_LOG", "warn,ccrm_bot=info")
        .env("NO_COLOR", "1");
    let (child, line) = testkit::process::spawn_ready(cmd, "ccrm-bot listening", "bot", WAIT, None)
        .map_err(|e| anyhow::anyhow!("bot did not start: {e}"))?;
    let addr = testkit::process::strip_ansi(&line)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr=").map(str::to_owned))
        .context("no addr")?;
    let bot = Bot { child, addr };
    let base = format!("http://{}", bot.addr);
    let pid = bot.child.id();

    let big = SessionId::new();
    let small = SessionId::new();
    let live = SessionId::new();
    let mut daemon = Daemon::connect(
        &bot.addr,
        &key,
        &[(big, "big"), (small, "small"), (live, "live")],
    )
    .await?;
    let t = Instant::now();
    let mut n = 0;
    while daemon.session_seq.get(&big).copied().unwrap_or(0) < BIG {
        let mut kinds = Vec::new();
        for _ in 0..50 {
            n += 1;
            kinds.extend(turn(n));
        }
        daemon.send(big, kinds).await?;
    }
    daemon
        .send(small, turn(1).into_iter().take(SMALL as usize).collect())
        .await?;
    daemon.send(live, turn(1)).await?;
    println!(
        "setup: {} events stored in the big session in {:.1} s",
        daemon.session_seq[&big],
        t.elapsed().as_secs_f64()
    );

    let browser = web::Browser::start().await;
    browser.login(&base, &token).await;

    // 1. Page weight (a fresh profile: the login page loaded only the stylesheet).
    let fresh = web::Browser::start().await;
    fresh.login(&base, &token).await;
    fresh.goto(&format!("{base}/")).await;
    fresh.find("#overview").await;
    let w = fresh
        .js(
            "const nav = performance.getEntriesByType('navigation')[0]; \
             const res = performance.getEntriesByType('resource'); \
             const all = [nav, ...res]; \
             return { encoded: all.reduce((s, e) => s + e.encodedBodySize, 0), \
                      decoded: all.reduce((s, e) => s + e.decodedBodySize, 0), \
                      transfer: all.reduce((s, e) => s + e.transferSize, 0), \
                      n: all.length, names: all.map(e => e.name) }",
            vec![],
        )
        .await;
    fresh.close().await;
    // The stylesheet was cached by the login page; count it as transferred too.
    let mut encoded = w["encoded"].as_f64().unwrap_or(0.0);
    let mut decoded = w["decoded"].as_f64().unwrap_or(0.0);
    let loaded: Vec<String> = w["names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    for asset in ["app.css", "app.js", "icon.svg"] {
        if loaded.iter().any(|u| u.ends_with(asset)) {
            continue;
        }
        let url = asset_url(&http, &base, &token, asset).await?;
        let res = http
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await?;
        let gz = res.headers().contains_key("content-encoding");
        let bytes = res.bytes().await?;
        encoded += bytes.len() as f64;
        decoded += if gz {
            gunzip_len(&bytes) as f64
        } else {
            bytes.len() as f64
        };
    }
    println!(
        "page weight (overview, first load, compressed): {:.1} KB   baseline uncompressed: {:.1} KB   target ≤ 100 KB: {}",
        encoded / 1024.0,
        decoded / 1024.0,
        if encoded <= 100.0 * 1024.0 {
            "met"
        } else {
            "MISSED"
        }
    );

    // 2. Opening the 10,000-event session vs a 10-event one.
    let (big_ready, big_fcp) = open_session(&browser, &base, big).await;
    let (small_ready, small_fcp) = open_session(&browser, &base, small).await;
    println!(
        "open a 10,000-event session → newest events painted: median {big_ready:.0} ms (FCP {big_fcp:.0} ms)   \
         baseline 10-event session: {small_ready:.0} ms (FCP {small_fcp:.0} ms)   target ≤ 1000 ms: {}",
        if big_ready <= 1000.0 { "met" } else { "MISSED" }
    );

    // 3. Live event → DOM latency, with a plain SSE client as the baseline.
    browser.goto(&format!("{base}/sessions/{live}")).await;
    browser.find("#prompt-text").await;
    browser
        .js(
            "window.__added = {}; new MutationObserver(ms => { const t = performance.timeOrigin + performance.now(); \
               for (const m of ms) for (const n of m.addedNodes) \
                 if (n.dataset && n.dataset.id) window.__added[n.dataset.id] = t; \
             }).observe(document.getElementById('log'), {childList: true, subtree: true}); return true;",
            vec![],
        )
        .await;
    let sse = http
        .get(format!(
            "{base}/api/sessions/{live}/stream?after={}",
            last_id(&http, &base, &token, live).await?
        ))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(sse.status() == 200, "SSE refused");
    let sse_task = tokio::spawn(sse_arrivals(sse, LIVE_EVENTS as usize));
    let mut sent = Vec::new();
    for i in 0..LIVE_EVENTS {
        let kind = EventKind::AssistantText {
            text: format!("Live **event** {i}: `ok`"),
        };
        sent.push(now_ms_f());
        daemon.send(live, vec![kind]).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arrivals = tokio::time::timeout(WAIT, sse_task).await???;
    let added = browser
        .wait_js(
            "every live event in the DOM",
            &format!(
                "const ids = Object.keys(window.__added).map(Number).sort((a, b) => a - b); \
                 return ids.length >= {LIVE_EVENTS} ? ids.slice(-{LIVE_EVENTS}).map(i => window.__added[i]) : null;"
            ),
        )
        .await;
    let dom: Vec<f64> = added
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    ensure!(
        dom.len() == sent.len() && arrivals.len() == sent.len(),
        "missing live events"
    );
    let mut dom_lat: Vec<f64> = dom.iter().zip(&sent).map(|(d, s)| d - s).collect();
    let mut sse_lat: Vec<f64> = arrivals.iter().zip(&sent).map(|(a, s)| a - s).collect();
    dom_lat.sort_by(f64::total_cmp);
    sse_lat.sort_by(f64::total_cmp);
    let p50 = percentile(&dom_lat, 0.5);
    println!(
        "live event → DOM over {LIVE_EVENTS} events: p50 {p50:.1} ms, p95 {:.1} ms   \
         baseline raw SSE client: p50 {:.1} ms, p95 {:.1} ms   target p50 ≤ 50 ms: {}",
        percentile(&dom_lat, 0.95),
        percentile(&sse_lat, 0.5),
        percentile(&sse_lat, 0.95),
        if p50 <= 50.0 { "met" } else { "MISSED" }
    );
    browser.close().await;

    // 4. RSS with 20 dashboard clients and 200 events/s.
    let idle = rss_kb(pid);
    let cookie = login_cookie(&base, &token).await?;
    let total = 200 * STREAM_SECS;
    let after = last_id(&http, &base, &token, small).await?;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let res = http
            .get(format!("{base}/live?session={small}&after={after}"))
            .header("cookie", &cookie)
            .send()
            .await?;
        ensure!(res.status() == 200, "live refused: {}", res.status());
        clients.push(tokio::spawn(count_events(res, total)));
    }
    let mut peak = rss_kb(pid);
    let start = Instant::now();
    for tick in 0..(STREAM_SECS * 20) {
        let kinds = (0..10)
            .map(|i| EventKind::AssistantText {
                text: format!("Streaming line {tick}.{i}: the **parser** now names the line."),
            })
            .collect();
        daemon.send(small, kinds).await?;
        peak = peak.max(rss_kb(pid));
        let next = Duration::from_millis(50 * (tick + 1));
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let mut got = Vec::new();
    for c in clients {
        got.push(tokio::time::timeout(WAIT, c).await???);
        peak = peak.max(rss_kb(pid));
    }
    ensure!(
        got.iter().all(|g| *g == total),
        "a client missed events: {got:?}"
    );
    println!(
        "bot RSS with {CLIENTS} dashboard clients, 200 events/s for {STREAM_SECS} s ({:.0} events/s reached): peak {:.1} MB   \
         baseline before they connected: {:.1} MB   target ≤ 30 MB: {}",
        total as f64 / start.elapsed().as_secs_f64(),
        peak as f64 / 1024.0,
        idle as f64 / 1024.0,
        if peak <= 30 * 1024 { "met" } else { "MISSED" }
    );
    println!("({}; figures vary with load)", support::load_note());
    Ok(())
}

/// Median "newest events painted" and First Contentful Paint (ms after navigation start)
/// of [`RUNS`] loads of a session page.
async fn open_session(browser: &web::Browser, base: &str, id: SessionId) -> (f64, f64) {
    let mut ready = Vec::new();
    let mut fcp = Vec::new();
    for _ in 0..RUNS {
        browser.goto(&format!("{base}/sessions/{id}")).await;
        let v = browser
            .wait_js(
                "the page's ready mark",
                "const p = performance.getEntriesByName('first-contentful-paint')[0]; \
                 if (!window.ccrmReady || !p) return null; \
                 return { ready: window.ccrmReady, fcp: p.startTime };",
            )
            .await;
        ready.push(v["ready"].as_f64().unwrap_or(f64::NAN));
        fcp.push(v["fcp"].as_f64().unwrap_or(f64::NAN));
    }
    ready.sort_by(f64::total_cmp);
    fcp.sort_by(f64::total_cmp);
    (percentile(&ready, 0.5), percentile(&fcp, 0.5))
}

/// The newest stored event row id of `session` (where a live stream starts).
async fn last_id(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    session: SessionId,
) -> anyhow::Result<i64> {
    let v: serde_json::Value = http
        .get(format!(
            "{base}/api/sessions/{session}/events?after=0&limit=1000"
        ))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(v["events"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|e| e["id"].as_i64())
        .unwrap_or(0))
}

async fn login_cookie(base: &str, token: &str) -> anyhow::Result<String> {
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let res = no_redirect
        .post(format!("{base}/login"))
        .header("origin", base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await?;
    let set = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .context("no cookie")?;
    Ok(set.split(';').next().unwrap_or_default().to_owned())
}

async fn asset_url(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<String> {
    let cookie = login_cookie(base, token).await?;
    let html = http
        .get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .await?
        .text()
        .await?;
    let end = html.find(&format!("/{name}")).context("asset link")? + name.len() + 1;
    let start = html[..end].rfind("\"/assets/").context("asset start")? + 1;
    Ok(format!("{base}{}", &html[start..end]))
}

fn gunzip_len(bytes: &[u8]) -> usize {
    // gzip keeps the uncompressed length (mod 2^32) in its last four bytes.
    bytes.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
    })
}

/// Wall-clock arrival times (ms) of the next `n` events on an SSE response.
async fn sse_arrivals(res: reqwest::Response, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut body = res.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let chunk = body.next().await.context("SSE ended early")??;
        let at = now_ms_f();
        buf.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = buf.find("\n\n") {
            if buf[..end].lines().any(|l| l.starts_with("id:")) {
                out.push(at);
            }
            buf.drain(..end + 2);
        }
    }
    Ok(out)
}

/// Counts `ev` events on a `/live` response until `n` arrived.
async fn count_events(res: reqwest::Response, n: u64) -> anyhow::Result<u64> {
    let mut body = res.bytes_stream();
    let mut buf = String::new();
    let mut count = 0;
    while count < n {
        let chunk = body.next().await.context("live stream ended early")??;
        buf.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = buf.find("\n\n") {
            if buf[..end].lines().any(|l| l == "event: ev") {
                count += 1;
            }
            buf.drain(..end + 2);
        }
    }
    Ok(count)
}
