//! Telegram webhook mode (issue 17), end to end: a real `ccrm-bot` process with
//! `telegram_webhook_url`, the loopback fake Bot API posting updates to it (through a
//! loopback TCP proxy standing in for the public address, which must be known before the
//! bot binds its port 0), a real linked `ccrmd`, the real Claude Code CLI and the fake
//! Messages API.
//!
//! - The bot registers the webhook with a generated secret kept 0600 in its data dir, and
//!   answers a message delivered through it; the same update posted again is taken (200)
//!   and not handled twice.
//! - A delivery with a missing or wrong secret is 401 and handled not at all; a malformed
//!   or non-update body with the right secret is 400; the bot keeps serving.
//! - Restarted without the webhook URL, the bot deletes the webhook and long-polls again.
//! - Three replicas on a throwaway PostgreSQL, Telegram delivering to one that is not the
//!   chat leader: each update is answered once (by the leader), the 401/400/413 refusals
//!   come from that replica too, and updates it receives after a kill -9 of the leader
//!   are each answered once by the next leader.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use common::chat::{TG_ALICE as ALICE, TG_TOKEN, telegram_world, tg_msg};
use common::cluster::{daemon_to, one_leader, replica};
use common::{WAIT, World};
use serde_json::{Value, json};
use testkit::FakeTelegram;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const HOOK_PATH: &str = "/telegram/webhook";

/// A loopback TCP proxy on port 0 that forwards each connection to the address sent on
/// the returned channel (waiting, bounded, until there is one).
async fn proxy() -> (SocketAddr, watch::Sender<Option<SocketAddr>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let (tx, rx) = watch::channel::<Option<SocketAddr>>(None);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let Ok(Ok(target)) = tokio::time::timeout(WAIT, rx.wait_for(Option::is_some))
                    .await
                    .map(|r| r.map(|t| *t))
                else {
                    return;
                };
                let Some(target) = target else { return };
                if let Ok(mut out) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (addr, tx)
}

/// Model requests whose newest human text is `text`.
fn asked(w: &World, text: &str) -> usize {
    w.api
        .message_requests()
        .iter()
        .filter(|r| r.last_human_text().as_deref() == Some(text))
        .count()
}

/// The bot's messages in the topic that contain `text`.
fn said(tg: &FakeTelegram, chat: i64, topic: i32, text: &str) -> usize {
    tg.messages_in(chat, Some(topic))
        .iter()
        .filter(|m| m.visible_text.contains(text))
        .count()
}

/// Posts `body` to the bot's webhook route with `secret` (none: no header).
async fn post_hook(w: &World, secret: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    post_hook_at(w, w.addr, secret, body).await
}

/// Posts `body` to replica `addr`'s webhook route with `secret` (none: no header).
async fn post_hook_at(
    w: &World,
    addr: SocketAddr,
    secret: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = w
        .http
        .post(format!("http://{addr}{HOOK_PATH}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = secret {
        req = req.header(testkit::telegram::SECRET_HEADER, s);
    }
    let r = req.send().await.expect("post webhook");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_updates_are_answered_once_and_forged_ones_refused() {
    let (front, target) = proxy().await;
    let hook_url = format!("http://{front}{HOOK_PATH}");
    let (mut w, tg) = telegram_world(&[("CCRM_BOT_TELEGRAM_WEBHOOK_URL", hook_url.as_str())]).await;
    target.send_replace(Some(w.addr));

    // The webhook is registered with a generated secret, kept 0600 in the data dir.
    let hook = tg.wait_webhook(WAIT).await.expect("setWebhook");
    assert_eq!(hook.url, hook_url);
    let secret_file = w.dir.path().join("bot/telegram-webhook-secret");
    let secret = std::fs::read_to_string(&secret_file).expect("secret file");
    assert_eq!(hook.secret.as_deref(), Some(secret.trim()));
    assert_eq!(
        std::fs::metadata(&secret_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(hook.allowed, ["message", "callback_query"]);
    let secret = secret.trim().to_owned();

    // A session over the webhook, and a prompt answered in its topic.
    let group = tg.forum_group("team");
    tg.user_message(group, ALICE, &format!("/new {}", w.work.display()), None);
    let created = tg
        .wait_for(WAIT, |c| c.method == "createForumTopic" && c.ok())
        .await
        .expect("topic");
    let topic = created.result["message_thread_id"]
        .as_i64()
        .expect("thread") as i32;
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("started by")
    })
    .await;
    let mid = tg.user_message(group, ALICE, "hello over the webhook", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: hello over the webhook")
    })
    .await;
    let delivered = tg
        .webhook_deliveries()
        .into_iter()
        .find(|d| d.update["message"]["message_id"] == json!(mid) && d.status == 200)
        .expect("the prompt's delivery");
    assert!(tg.updates_served().contains(&delivered.update_id));

    // Telegram delivers it again (the bot's 200 was lost on the way): taken, not handled.
    let body = serde_json::to_vec(&delivered.update).expect("json");
    let (status, v) = post_hook(&w, Some(&secret), body.clone()).await;
    assert_eq!((status, &v), (200, &json!({"ok": true})));

    // Forged and broken deliveries: refused, and handled not at all.
    let mut forged = delivered.update.clone();
    forged["update_id"] = json!(delivered.update_id + 1000);
    forged["message"]["message_id"] = json!(mid + 1000);
    forged["message"]["text"] = json!("forged prompt");
    let forged = serde_json::to_vec(&forged).expect("json");
    let (status, v) = post_hook(&w, None, forged.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = post_hook(&w, Some("wrong-secret"), forged.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post_hook(&w, Some(&format!("{secret}x")), forged).await;
    assert_eq!(status, 401);
    let (status, v) = post_hook(&w, Some(&secret), b"{not json".to_vec()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, _) = post_hook(&w, Some(&secret), br#"{"hello": 1}"#.to_vec()).await;
    assert_eq!(status, 400);
    let (status, _) = post_hook(&w, Some(&secret), vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!(status, 413);

    // The bot keeps serving: the next message is answered, and by then the redelivered
    // one would have been sent too (messages are handled in order).
    tg.user_message(group, ALICE, "and one more", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: and one more")
    })
    .await;
    assert_eq!(
        asked(&w, "hello over the webhook"),
        1,
        "the prompt reached the model once"
    );
    assert_eq!(said(&tg, group, topic, "Echo: hello over the webhook"), 1);
    assert_eq!(asked(&w, "forged prompt"), 0);
    assert!(
        !w.bot_log_text().contains(&secret),
        "the webhook secret is in the bot's log"
    );

    // Back to long polling: the webhook is deleted and messages arrive by getUpdates.
    World::kill9(&mut w.bot);
    w.bot_env
        .retain(|(k, _)| k != "CCRM_BOT_TELEGRAM_WEBHOOK_URL");
    w.start_bot();
    tg.wait_for(WAIT, |c| c.method == "deleteWebhook" && c.ok())
        .await
        .expect("deleteWebhook");
    assert!(tg.webhook().is_none());
    w.wait_daemon_online().await;
    tg.user_message(group, ALICE, "polling again", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: polling again")
    })
    .await;
}

/// The accepted delivery of the user message `mid` (bounded wait).
async fn delivered_ok(tg: &FakeTelegram, mid: i32) -> testkit::telegram::Delivery {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(d) = tg
            .webhook_deliveries()
            .into_iter()
            .find(|d| d.update["message"]["message_id"] == json!(mid) && d.status == 200)
        {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message {mid} was never delivered with 200: {:#?}",
            tg.webhook_deliveries()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_does_not_lead_serves_the_webhook_and_loses_nothing_when_the_leader_dies() {
    const SECRET: &str = "shared_webhook-secret_0123456789";
    let (front, target) = proxy().await;
    let hook_url = format!("http://{front}{HOOK_PATH}");
    let tg = FakeTelegram::start(TG_TOKEN).await.expect("fake telegram");
    let api = tg.api_url();
    let alice = ALICE.to_string();
    // C (the World's bot) starts first and leads; A and B share its database and secret.
    let mut w = World::bot_only_on_postgres(&[
        ("CCRM_BOT_TELEGRAM_TOKEN", TG_TOKEN),
        ("CCRM_BOT_TELEGRAM_API_URL", api.as_str()),
        ("CCRM_BOT_TELEGRAM_ALLOWED_USERS", alice.as_str()),
        ("CCRM_BOT_TELEGRAM_WEBHOOK_URL", hook_url.as_str()),
        ("CCRM_BOT_TELEGRAM_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let c = w.addr;
    assert_eq!(one_leader(&w, &[c], WAIT).await, c, "a lone replica leads");
    let a = replica(&w, "bot-a");
    let b = replica(&w, "bot-b");
    let mut daemon = daemon_to(&w, &format!("ws://{},ws://{}", a.addr, b.addr));
    w.wait_daemon_online().await;
    assert_eq!(one_leader(&w, &[c, a.addr, b.addr], WAIT).await, c);
    // Telegram reaches the bots through A only, which does not lead.
    target.send_replace(Some(a.addr));
    let hook = tg
        .wait_webhook(WAIT)
        .await
        .expect("setWebhook by the leader");
    assert_eq!(hook.secret.as_deref(), Some(SECRET));
    assert_eq!(
        tg.calls_named("setWebhook").len(),
        1,
        "only the leader registers the webhook"
    );

    // A session and a prompt, every update posted to A and answered by the leader.
    let group = tg.forum_group("team");
    tg.user_message(group, ALICE, &format!("/new {}", w.work.display()), None);
    let created = tg
        .wait_for(WAIT, |c| c.method == "createForumTopic" && c.ok())
        .await
        .expect("topic");
    let topic = created.result["message_thread_id"]
        .as_i64()
        .and_then(|t| i32::try_from(t).ok())
        .expect("thread");
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("started by")
    })
    .await;
    let mid = tg.user_message(group, ALICE, "hello through a follower", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: hello through a follower")
    })
    .await;
    let delivered = delivered_ok(&tg, mid).await;

    // Redelivered to A and to B: taken, not handled again.
    let body = serde_json::to_vec(&delivered.update).expect("json");
    for addr in [a.addr, b.addr] {
        let (status, v) = post_hook_at(&w, addr, Some(SECRET), body.clone()).await;
        assert_eq!((status, &v), (200, &json!({"ok": true})));
    }
    // Refusals on the replica that does not lead.
    let mut forged = delivered.update.clone();
    forged["update_id"] = json!(delivered.update_id + 1000);
    forged["message"]["text"] = json!("forged prompt");
    let forged = serde_json::to_vec(&forged).expect("json");
    let (status, v) = post_hook_at(&w, a.addr, None, forged.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = post_hook_at(&w, a.addr, Some("wrong-secret"), forged.clone()).await;
    assert_eq!(status, 401);
    let (status, v) = post_hook_at(&w, a.addr, Some(SECRET), b"{not json".to_vec()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, _) = post_hook_at(&w, a.addr, Some(SECRET), br#"{"hello": 1}"#.to_vec()).await;
    assert_eq!(status, 400);
    let (status, _) = post_hook_at(&w, a.addr, Some(SECRET), vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!(status, 413);

    // kill -9 of the leader; A keeps taking deliveries while no replica leads.
    World::kill9(&mut w.bot);
    w.addr = a.addr;
    let m1 = tg.user_message(group, ALICE, "while the leader is dead one", Some(topic));
    let m2 = tg.user_message(group, ALICE, "while the leader is dead two", Some(topic));
    delivered_ok(&tg, m1).await;
    delivered_ok(&tg, m2).await;
    one_leader(&w, &[a.addr, b.addr], WAIT).await;
    // (Written together, the two may be answered as one prompt of two pieces.)
    for text in [
        "while the leader is dead one",
        "while the leader is dead two",
    ] {
        tg_msg(&tg, group, Some(topic), |m| {
            m.visible_text.starts_with("Echo: ") && m.visible_text.contains(text)
        })
        .await;
    }
    // The new leader registered the webhook again (same URL and secret).
    assert_eq!(
        tg.webhook().map(|h| (h.url, h.secret)),
        Some((hook_url.clone(), Some(SECRET.to_owned())))
    );
    // One more after the takeover, so anything handled twice would show by then.
    tg.user_message(group, ALICE, "after the takeover", Some(topic));
    tg_msg(&tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: after the takeover")
    })
    .await;
    for text in [
        "hello through a follower",
        "while the leader is dead one",
        "while the leader is dead two",
        "after the takeover",
    ] {
        let asked = w
            .api
            .message_requests()
            .iter()
            .filter(|r| r.last_human_text().is_some_and(|t| t.contains(text)))
            .count();
        assert_eq!(asked, 1, "`{text}` reached the model once");
        let answers = tg
            .messages_in(group, Some(topic))
            .iter()
            .filter(|m| m.visible_text.starts_with("Echo: ") && m.visible_text.contains(text))
            .count();
        assert_eq!(answers, 1, "`{text}` is answered once");
    }
    assert_eq!(asked(&w, "forged prompt"), 0);
    // Nothing left waiting in the inbox.
    let db = w.db().await;
    assert!(
        db.chat_inbox_waiting("telegram", 10)
            .await
            .expect("inbox")
            .is_empty(),
        "every kept delivery was handled"
    );
    db.close().await;
    assert!(
        !w.bot_log_text().contains(SECRET),
        "the webhook secret is in a replica's log"
    );
    World::kill9(&mut daemon.0);
}
