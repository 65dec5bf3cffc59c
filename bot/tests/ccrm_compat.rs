//! A client written for the original CCRM, against a real bot, a linked ccrmd, the real
//! Claude Code CLI and the fake Messages API: `{"prompt"}` bodies, `?active=`, `?limit&offset`
//! event pages, id prefixes and names in REST paths (ambiguous → 409 naming the candidates,
//! replies with full ids), and the CLI's `ccrm send`, `ccrm start --claude-args` (seen in the
//! request the fake API got) and the mode column of `ccrm list`.

mod common;

use std::process::Output;

use ::common::ids as common_ids;
use ccrm_bot::db::Db;
use common::{WAIT, World, ccrm_bin};
use serde_json::{Value, json};

/// Runs `ccrm args...` against the world's daemon (bounded).
async fn ccrm(w: &World, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(ccrm_bin());
    cmd.args(args)
        .env("CCRM_SOCKET", w.socket())
        .env("NO_COLOR", "1")
        .current_dir(&w.work)
        .kill_on_drop(true);
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("ccrm finished in time")
        .expect("ccrm ran")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ccrm_client_session_works_end_to_end() {
    let w = World::start().await;

    // `ccrm start --claude-args` takes one string split like a shell would.
    let out = ccrm(
        &w,
        &[
            "--json",
            "start",
            "--name",
            "alpha",
            "--claude-args",
            "--append-system-prompt 'MARKER-7f3 be brief'",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let info: Value = serde_json::from_slice(&out.stdout).expect("start json");
    let alpha = info["id"].as_str().expect("id").to_owned();

    // Flags ccrm manages are refused with a message that says what to use.
    let out = ccrm(&w, &["start", "--claude-args", "--model opus"]).await;
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("managed by ccrm") && t.contains("--model"),
        "{t}"
    );
    let out = ccrm(
        &w,
        &["start", "--claude-args", "--append-system-prompt 'unclosed"],
    )
    .await;
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot be split"), "{}", text(&out));
    // The same check guards REST.
    let (status, v) = w
        .post(
            "/api/sessions",
            json!({"cwd": w.work, "claude_args": ["--resume", "x"]}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("ccrm resume"),
        "{v}"
    );

    // `ccrm send` is `ccrm prompt`, flags included; the extra args reached claude.
    let out = ccrm(&w, &["send", "alpha", "hello", "there", "--follow"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Echo: hello there"), "{}", text(&out));
    let seen = w.api.requests().iter().any(|r| {
        r.path.starts_with("/v1/messages") && r.body["system"].to_string().contains("MARKER-7f3")
    });
    assert!(seen, "the fake API never saw --append-system-prompt");

    // `ccrm list` shows the mode, as CCRM did; `--json` carries it too.
    let out = ccrm(&w, &["list"]).await;
    let t = text(&out);
    assert!(t.contains("MODE") && t.contains("subprocess"), "{t}");
    let out = ccrm(&w, &["--json", "list"]).await;
    let list: Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(list[0]["mode"], "subprocess", "{list}");

    // REST paths take a name or a unique prefix; replies carry the full id.
    let (status, v) = w.get("/api/sessions/alpha").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["session"]["info"]["id"], alpha.as_str());
    let prefix = &alpha[..6];
    let (status, v) = w
        .post(
            &format!("/api/sessions/{prefix}/prompt"),
            json!({"prompt": "from a ccrm client"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["session_id"], alpha.as_str(), "full id in the reply: {v}");
    let (status, v) = w
        .post(
            &format!("/api/sessions/{prefix}/prompt"),
            json!({"text": "the other spelling"}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let (status, _) = w.get(&format!("/api/sessions/{}", &alpha[..3])).await;
    assert_eq!(status, 404, "shorter than the CLI's minimum prefix");
    let (status, v) = w.get("/api/sessions/nobody-by-that-name").await;
    assert_eq!(status, 404, "{v}");

    // `?limit&offset` pages keep working, by name too.
    let all = w.all_events(&alpha).await;
    assert!(all.len() >= 4, "{}", all.len());
    let (status, v) = w.get("/api/sessions/alpha/events?offset=1&limit=2").await;
    assert_eq!(status, 200, "{v}");
    let page = v["events"].as_array().expect("events");
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["id"], all[1]["id"]);
    assert_eq!(page[1]["id"], all[2]["id"]);

    // `?active=`: a stopped session is inactive; `starting`/`idle` ones are active.
    let beta = w.new_session(json!({"name": "beta"})).await;
    let (status, v) = w.post("/api/sessions/beta/stop", json!({})).await;
    assert_eq!(status, 200, "{v}");
    let ids = |v: &Value| -> Vec<String> {
        v["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .map(|s| s["info"]["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, act) = w.get("/api/sessions?active=true").await;
        let (_, inact) = w.get("/api/sessions?active=false").await;
        if ids(&act) == [alpha.clone()] && ids(&inact) == [beta.clone()] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{act} / {inact}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, every) = w.get("/api/sessions").await;
    assert_eq!(ids(&every).len(), 2);

    // Two sessions sharing a prefix: 409 naming both, by name.
    let twin: common_ids::SessionId = {
        let mut s = alpha.clone();
        s.replace_range(
            30..,
            if &alpha[30..] == "000000" {
                "111111"
            } else {
                "000000"
            },
        );
        s.parse().expect("twin id")
    };
    let db = Db::open(&w.dir.path().join("bot/ccrm.db"))
        .await
        .expect("db");
    let row = db
        .get_session(&alpha.parse().expect("id"))
        .await
        .expect("alpha row");
    let mut info = row.info.clone();
    info.id = twin;
    info.name = Some("alpha-twin".into());
    db.upsert_session(&row.daemon_id, &info, 1)
        .await
        .expect("twin");
    db.close().await;
    let (status, v) = w.get(&format!("/api/sessions/{}", &alpha[..8])).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "ambiguous");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("alpha (") && msg.contains("alpha-twin ("),
        "{msg}"
    );
    // A name still wins, and the full id always works.
    let (status, _) = w.get("/api/sessions/alpha-twin").await;
    assert_eq!(status, 200);
    let (status, _) = w.get(&format!("/api/sessions/{alpha}")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_token_checks_are_limited_per_address_and_audited() {
    let w = World::bot_only().await;
    let bad = "ccrm_user_not-the-right-one";
    let call = |token: &str| {
        w.http
            .get(w.url("/api/sessions"))
            .bearer_auth(token.to_owned())
            .send()
    };
    for i in 0..10 {
        let r = call(bad).await.expect("GET");
        assert_eq!(r.status().as_u16(), 401, "failure {i} is a plain 401");
    }
    let r = call(bad).await.expect("GET");
    assert_eq!(r.status().as_u16(), 429, "the 11th failure in a minute");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_many_failures");
    // While blocked, not even a valid token is checked from that address.
    let r = call(&w.user_token).await.expect("GET");
    assert_eq!(r.status().as_u16(), 429);
    // Every failure is audited, with the address and never the token.
    let db = Db::open(&w.dir.path().join("bot/ccrm.db"))
        .await
        .expect("db");
    let audit = db.list_audit(100).await.expect("audit");
    db.close().await;
    let failed = audit.iter().filter(|a| a.action == "auth.failed").count();
    let blocked = audit.iter().filter(|a| a.action == "auth.blocked").count();
    assert_eq!((failed, blocked), (11, 1), "{audit:?}");
    let row = audit
        .iter()
        .find(|a| a.action == "auth.failed")
        .expect("row");
    assert_eq!(row.detail["addr"], "127.0.0.1", "{row:?}");
    assert_eq!(row.detail["surface"], "rest");
    assert!(
        !format!("{audit:?}").contains(bad),
        "the token is not audited"
    );
}
