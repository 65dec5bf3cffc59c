//! The web dashboard in real headless Chromium (`web/mod.rs`), against a real `ccrm-bot`
//! process, a linked `ccrmd`, the real Claude Code CLI and the fake Messages API
//! (`common/mod.rs`): logging in, starting a session and watching its answer stream,
//! approvals with diffs decided from the page and elsewhere, a two-question
//! `AskUserQuestion`, a `kill -9` of the bot while the page is open, hostile model output
//! and tool input, a cross-origin form post, and no token in any URL. Screenshots go to
//! `target/dashboard-screenshots/`.
//!
//! Plain HTTP checks of the same server (headers, cookies, CSRF, rate limits) are in
//! `dashboard_http.rs`.

mod common;
mod web;

use std::time::Duration;

use common::{WAIT, World, ccrm_bin};
use serde_json::{Value, json};
use testkit::Reply;
use web::{Browser, chromium_available, skip_loudly};

/// Starts a browser, or says loudly why not (only when Chromium cannot be had at all).
async fn browser(test: &str) -> Option<Browser> {
    if !chromium_available() {
        skip_loudly(test);
        return None;
    }
    Some(Browser::start().await)
}

/// Runs `ccrm <args>` against the world's daemon.
fn ccrm(w: &World, args: &[&str]) -> std::process::Output {
    std::process::Command::new(ccrm_bin())
        .args(args)
        .env("CCRM_SOCKET", w.socket())
        .env("NO_COLOR", "1")
        .output()
        .expect("run ccrm")
}

/// Waits (bounded) until the fake API has seen a request whose tool results contain
/// every one of `needles`.
async fn wait_tool_result(w: &World, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for req in w.api.message_requests() {
            for (_, text, _) in req.tool_results() {
                if needles.iter().all(|n| text.contains(n)) {
                    return text;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the model never saw {needles:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_file(path: &std::path::Path, content: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read_to_string(path).ok().as_deref() != Some(content) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never held {content:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_start_a_session_prompt_and_watch_it_stream() {
    let Some(b) = browser("login_start_a_session_prompt_and_watch_it_stream").await else {
        return;
    };
    let w = World::start().await;
    let base = w.url("");

    // Not logged in: the overview sends the browser to the login page.
    b.goto(&format!("{base}/")).await;
    b.wait_js("the login page", "return location.pathname === '/login'")
        .await;
    // A wrong token is refused, says why, and leaves no cookie.
    b.type_into("#token", "ccrm_user_not-a-real-token").await;
    b.click("form.login button[type=submit]").await;
    b.wait_text("#login-error", "not a valid user token").await;
    assert_eq!(b.js("return document.cookie", vec![]).await, json!(""));
    w.wait_audit("dashboard:127.0.0.1", "web.login_failed", 1)
        .await;

    b.login(&base, &w.user_token).await;
    let daemon_host = b.wait_text("table.daemons", "online").await;
    assert!(!daemon_host.is_empty());
    // The cookie is HttpOnly: the page's script cannot see it.
    assert_eq!(b.js("return document.cookie", vec![]).await, json!(""));

    // Start a session from the form.
    b.click("nav a[href='/sessions/new']").await;
    b.type_into("#cwd", &w.work.display().to_string()).await;
    b.type_into("#name", "web").await;
    b.click("#new-session button[type=submit]").await;
    let path = b
        .wait_js(
            "the new session's page",
            "return location.pathname.startsWith('/sessions/') && location.pathname !== '/sessions/new' \
             && document.getElementById('log') ? location.pathname : null",
        )
        .await;
    let session = path
        .as_str()
        .and_then(|p| p.strip_prefix("/sessions/"))
        .expect("session path")
        .to_owned();
    b.wait_text("#head h1", "web").await;
    w.wait_audit("dashboard:alice", "session.start", 1).await;

    // A prompt sent with Enter: queued, then streamed as it streams, then the answer.
    w.api.set_chunk_delay(Duration::from_millis(120));
    b.type_into("#prompt-text", "SLOW:16\n").await;
    b.wait_text("#prompt-status", "queued, position").await;
    b.wait_text(".ev-prompt .origin", "dashboard:alice").await;
    // Streamed text shows before the answer is finished.
    b.wait_js(
        "streamed text",
        "const s = document.getElementById('stream'); \
         return !!s && s.textContent.includes('chunk3') && !document.querySelector('.ev-assistant_text')",
    )
    .await;
    b.wait_text(".ev-assistant_text", "chunk15").await;
    b.wait_js(
        "the stream block replaced by the answer",
        "return !document.getElementById('stream') && !!document.querySelector('.ev-turn_result')",
    )
    .await;
    b.wait_text("#state", "idle").await;

    // The control buttons: stop, then resume with the conversation kept.
    b.click("form[action$='/control/stop'] button").await;
    b.wait_text("#state", "stopped").await;
    b.click("form[action$='/control/resume'] button").await;
    b.wait_text("#state", "idle").await;
    b.wait_text("#attach-cmd", &format!("ccrm attach {}", &session[..8]))
        .await;

    b.goto(&format!("{base}/sessions/{session}")).await;
    b.wait_text(".ev-assistant_text", "chunk15").await;
    b.screenshots("session").await;
    b.goto(&format!("{base}/")).await;
    b.wait_text("table.sessions", "web").await;
    b.screenshots("overview").await;

    // The audit page lists the refused login and what the dashboard did.
    b.click("nav a[href='/audit']").await;
    b.wait_text("table.audit tr.refused", "web.login_failed")
        .await;
    b.wait_text("table.audit", "session.resume").await;

    // Logging out ends the login: the overview sends the browser back to the login page.
    b.click("form.logout button").await;
    b.wait_js("the login page", "return location.pathname === '/login'")
        .await;
    b.goto(&format!("{base}/")).await;
    b.wait_js(
        "the login page again",
        "return location.pathname === '/login'",
    )
    .await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_show_diffs_and_decisions_from_anywhere() {
    let Some(b) = browser("approvals_show_diffs_and_decisions_from_anywhere").await else {
        return;
    };
    let w = World::start().await;
    let base = w.url("");
    let session = w.new_session(json!({"name": "writer"})).await;
    b.login(&base, &w.user_token).await;
    b.goto(&format!("{base}/sessions/{session}")).await;
    b.find("#prompt-text").await;

    // A Write waits for approval: it appears live with its diff; Allow writes the file.
    let a = w.work.join("a.txt");
    b.type_into(
        "#prompt-text",
        &format!("WRITE:{} hello from the dashboard\n", a.display()),
    )
    .await;
    b.wait_text(
        ".ev-permission_request .diff .dl.add",
        "+hello from the dashboard",
    )
    .await;
    b.wait_text(".ev-permission_request .diff-file", "a.txt")
        .await;
    b.wait_js(
        "the pending count in the title",
        "return document.title.startsWith('(1) ')",
    )
    .await;
    b.screenshots("session-diff").await;
    b.goto(&format!("{base}/approvals")).await;
    b.wait_text(
        "#approvals .approval .diff .dl.add",
        "+hello from the dashboard",
    )
    .await;
    b.screenshots("approvals").await;
    b.click("#approvals .approval button.allow").await;
    b.wait_text("#approvals .decided-list", "allowed by dashboard:alice")
        .await;
    wait_file(&a, "hello from the dashboard").await;

    // Deny with a message: the model is told.
    b.goto(&format!("{base}/sessions/{session}")).await;
    let bpath = w.work.join("b.txt");
    b.type_into("#prompt-text", &format!("WRITE:{} nope\n", bpath.display()))
        .await;
    let card = ".ev-permission_request .approval:not(.decided)";
    b.find(card).await;
    b.type_into(&format!("{card} .deny-message"), "use c.txt instead")
        .await;
    b.click(&format!("{card} button.deny")).await;
    b.wait_text(".approval.decided .outcome", "denied by dashboard:alice")
        .await;
    wait_tool_result(&w, &["use c.txt instead"]).await;
    assert!(!bpath.exists(), "a denied Write wrote the file");
    b.wait_text("#state", "idle").await;

    // Decided at the terminal with `ccrm approve`: the open page shows who, by itself.
    let c = w.work.join("c.txt");
    let (status, v) = w
        .post(
            &format!("/api/sessions/{session}/prompt"),
            json!({"text": format!("WRITE:{} via cli", c.display())}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    b.wait_js(
        "the third approval",
        "return document.querySelectorAll('.ev-permission_request').length === 3 && \
         !!document.querySelector('.ev-permission_request .approval:not(.decided)')",
    )
    .await;
    let out = ccrm(&w, &["approve", &session]);
    assert!(
        out.status.success(),
        "ccrm approve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_js(
        "the CLI's decision on the card",
        "const cards = [...document.querySelectorAll('.ev-permission_request .approval')]; \
         return cards.length === 3 && cards.every(c => c.classList.contains('decided')) && \
         cards[2].textContent.includes('allowed by cli')",
    )
    .await;
    wait_file(&c, "via cli").await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_question_ask_is_answered_from_the_page() {
    let Some(b) = browser("a_two_question_ask_is_answered_from_the_page").await else {
        return;
    };
    let w = World::start().await;
    let base = w.url("");
    let session = w.new_session(json!({})).await;
    b.login(&base, &w.user_token).await;
    b.goto(&format!("{base}/sessions/{session}")).await;
    b.find("#prompt-text").await;

    let input = json!({"questions": [
        {"question": "Which colour?", "header": "Colour", "multiSelect": false,
         "options": [{"label": "Red", "description": "warm"}, {"label": "Blue", "description": "cool"}]},
        {"question": "Which pets?", "header": "Pets", "multiSelect": true,
         "options": [{"label": "Cats", "description": "c"}, {"label": "Dogs", "description": "d"},
                     {"label": "Fish", "description": "f"}]}
    ]});
    let (status, v) = w
        .post(
            &format!("/api/sessions/{session}/prompt"),
            json!({"text": format!("CALL:AskUserQuestion {input}")}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    b.wait_js(
        "both questions",
        "return document.querySelectorAll('.ev-question fieldset.q').length === 2",
    )
    .await;
    b.click(".ev-question fieldset.q[data-index='0'] label.opt:nth-child(1)")
        .await;
    b.click(".ev-question fieldset.q[data-index='1'] label.opt:nth-child(1)")
        .await;
    b.click(".ev-question fieldset.q[data-index='1'] label.opt:nth-child(2)")
        .await;
    b.click(".ev-question form.answer button.primary").await;
    b.wait_text(".ev-question .outcome", "answered by dashboard:alice")
        .await;
    let seen = wait_tool_result(&w, &["Red", "Cats, Dogs"]).await;
    assert!(
        seen.contains("Which colour?") || seen.contains("Red"),
        "{seen}"
    );
    b.wait_text(".ev-answer", "Cats, Dogs").await;
    b.close().await;
}

/// Every `data-id` in the log with how many DOM nodes carry it.
async fn dom_counts(b: &Browser) -> std::collections::HashMap<i64, u64> {
    let v = b
        .js(
            "const m = {}; for (const n of document.querySelectorAll('#log [data-id]')) \
             { m[n.dataset.id] = (m[n.dataset.id] || 0) + 1; } return m;",
            vec![],
        )
        .await;
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, n)| Some((k.parse().ok()?, n.as_u64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_survives_a_bot_kill_and_shows_every_event_once() {
    let Some(b) = browser("the_page_survives_a_bot_kill_and_shows_every_event_once").await else {
        return;
    };
    let mut w = World::start().await;
    let base = w.url("");
    let session = w.new_session(json!({"name": "survivor"})).await;
    b.login(&base, &w.user_token).await;
    b.goto(&format!("{base}/sessions/{session}")).await;
    b.find("#prompt-text").await;
    b.type_into("#prompt-text", "DELTAS:30\n").await;
    b.wait_text(".ev-assistant_text", "d29").await;

    // The bot dies hard; the daemon keeps running turns and spools their events.
    World::kill9(&mut w.bot);
    b.wait_text("#conn", "reconnecting").await;
    let out = ccrm(&w, &["prompt", &session, "DELTAS:150", "--follow"]);
    assert!(
        out.status.success(),
        "ccrm prompt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ccrm(&w, &["prompt", &session, "after the restart", "--follow"]);
    assert!(out.status.success());

    // Back up on the same address: the page reconnects by itself and catches up.
    w.start_bot();
    b.wait_text("#conn", "live").await;
    b.wait_text(".ev-assistant_text", "Echo: after the restart")
        .await;
    b.wait_js(
        "the last turn's summary",
        "return document.querySelectorAll('.ev-turn_result').length === 3",
    )
    .await;

    // Every stored event is on the page exactly once (streamed pieces only until their
    // answer replaced them), and nothing else is.
    let stored = w.all_events(&session).await;
    let counts = dom_counts(&b).await;
    let mut shown = 0;
    for ev in &stored {
        let id = ev["id"].as_i64().expect("id");
        let kind = ev["event"]["kind"].as_str().unwrap_or_default();
        let n = counts.get(&id).copied().unwrap_or(0);
        if kind == "assistant_delta" {
            assert_eq!(n, 0, "delta {id} still shown after its answer");
        } else {
            assert_eq!(n, 1, "event {id} ({kind}) shown {n} times");
            shown += 1;
        }
    }
    assert_eq!(
        counts.len(),
        shown,
        "the page shows events that are not stored"
    );
    assert!(
        stored
            .iter()
            .filter(|e| e["event"]["kind"] == "prompt")
            .count()
            == 3
    );

    // Opened afresh, the page holds the newest 100 events; scrolling up pages in the rest,
    // each once.
    assert!(stored.len() > 120, "{} events", stored.len());
    // What the server renders is read apart from the live page: that page is short here
    // (150 deltas fold into one answer), so its older-events sentinel is in view at once
    // and it may page in the rest before a check on it could run.
    b.goto(&format!("{base}/sessions/{session}")).await;
    let rendered = b
        .js(
            "const x = new XMLHttpRequest(); x.open('GET', location.href, false); x.send(); \
             const d = new DOMParser().parseFromString(x.responseText, 'text/html'); \
             return [x.status, !!d.getElementById('older'), \
                     d.querySelectorAll('#log [data-id]').length]",
            vec![],
        )
        .await;
    assert_eq!(rendered[0], 200, "{rendered}");
    assert_eq!(rendered[1], true, "no older-events sentinel: {rendered}");
    let first = rendered[2].as_u64().unwrap_or(0);
    assert!(first > 0 && first <= 100, "{rendered}");
    b.wait_js(
        "the start of the session after scrolling up",
        "window.scrollTo(0, 0); return !!document.getElementById('start')",
    )
    .await;
    let counts = dom_counts(&b).await;
    for ev in &stored {
        let id = ev["id"].as_i64().expect("id");
        let kind = ev["event"]["kind"].as_str().unwrap_or_default();
        let n = counts.get(&id).copied().unwrap_or(0);
        let want = u64::from(kind != "assistant_delta");
        assert_eq!(n, want, "after paging, event {id} ({kind}) shown {n} times");
    }
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_output_is_inert_forgery_fails_and_no_url_carries_the_token() {
    let Some(b) =
        browser("hostile_output_is_inert_forgery_fails_and_no_url_carries_the_token").await
    else {
        return;
    };
    let w = World::start().await;
    let base = w.url("");
    let session = w.new_session(json!({})).await;
    b.login(&base, &w.user_token).await;
    b.goto(&format!("{base}/sessions/{session}")).await;
    b.find("#prompt-text").await;

    // A tool call with a hostile file name and content, then a hostile answer.
    w.api.push_script(Reply::ToolUse {
        name: "Write".into(),
        input: json!({
            "file_path": "<img src=x onerror=\"window.__pwned='file'\">.txt",
            "content": "<script>window.__pwned='content'</script>",
        }),
    });
    let hostile = "<script>window.__pwned='script'</script>\n\n\
        hi <img src=x onerror=\"window.__pwned='img'\">\n\n\
        [click me](javascript:window.__pwned='md-link') and \
        <a href=\"javascript:window.__pwned='a'\">raw link</a> and \
        [ok](https://example.com/)\n";
    w.api.push_script(Reply::Text(hostile.to_owned()));
    b.type_into("#prompt-text", "go\n").await;
    b.find(".ev-permission_request .approval:not(.decided)")
        .await;
    b.wait_text(".ev-permission_request .summary", "<img src=x onerror=")
        .await;
    b.wait_text(".ev-permission_request .dl.add", "+<script>window.__pwned")
        .await;
    b.click(".ev-permission_request button.deny").await;
    b.wait_text(
        ".ev-assistant_text",
        "<script>window.__pwned='script'</script>",
    )
    .await;
    b.wait_text(".ev-assistant_text", "<img src=x onerror=")
        .await;
    // Try the links too.
    for link in b
        .client
        .find_all(fantoccini::Locator::Css("#log .ev-assistant_text a"))
        .await
        .expect("links")
    {
        if link.text().await.unwrap_or_default() != "ok" {
            let _ = link.click().await;
        }
    }
    let checks = b
        .js(
            "const log = document.getElementById('log'); return { \
               pwned: window.__pwned === undefined ? null : window.__pwned, \
               imgs: log.querySelectorAll('img').length, \
               scripts: log.querySelectorAll('script').length, \
               handlers: [...log.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length, \
               badLinks: [...log.querySelectorAll('a[href]')].filter(a => !/^(https?:|mailto:|\\/)/.test(a.getAttribute('href'))).length, \
               okLink: [...log.querySelectorAll('a[href]')].some(a => a.getAttribute('href') === 'https://example.com/'), \
               path: location.pathname }",
            vec![],
        )
        .await;
    assert_eq!(checks["pwned"], Value::Null, "{checks}");
    assert_eq!(checks["imgs"], 0, "{checks}");
    assert_eq!(checks["scripts"], 0, "{checks}");
    assert_eq!(checks["handlers"], 0, "{checks}");
    assert_eq!(checks["badLinks"], 0, "{checks}");
    assert_eq!(checks["okLink"], true, "{checks}");
    assert_eq!(checks["path"], format!("/sessions/{session}"), "{checks}");

    // A page on another origin posts a prompt form at the bot: refused, nothing sent.
    let attacker = attacker_page(&w.url(&format!("/sessions/{session}/prompt"))).await;
    b.goto(&attacker.0).await;
    b.wait_text("#error-message", "did not come from a dashboard page")
        .await;
    w.wait_audit("dashboard:127.0.0.1", "web.refused", 1).await;
    let events = w.all_events(&session).await;
    assert!(
        !events
            .iter()
            .any(|e| e["event"]["text"].as_str() == Some("forged prompt")),
        "a forged prompt reached the session"
    );

    // No request the browser made carried the token in its URL.
    let urls = b.requested_urls().await;
    assert!(
        urls.iter().any(|u| u.contains("/live")),
        "the performance log saw no live stream: {urls:?}"
    );
    assert!(urls.iter().any(|u| u.ends_with("/login")), "{urls:?}");
    for u in &urls {
        assert!(!u.contains(&w.user_token), "token in a URL: {u}");
        assert!(!u.contains("ccrm_user_"), "a token in a URL: {u}");
    }
    attacker.1.abort();
    b.close().await;
}

/// Serves, on another port of 127.0.0.1 (another origin), a page that posts a prompt
/// form to `target` as soon as it loads. Returns its URL and the server task.
async fn attacker_page(target: &str) -> (String, tokio::task::JoinHandle<()>) {
    let html = format!(
        "<!doctype html><form id=f method=post action=\"{target}\">\
         <input name=text value=\"forged prompt\"><input name=csrf value=guess></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/"), task)
}
