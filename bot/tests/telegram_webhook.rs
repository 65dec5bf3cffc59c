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

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;

use common::chat::{TG_ALICE as ALICE, telegram_world, tg_msg};
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
    let mut req = w
        .http
        .post(w.url(HOOK_PATH))
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
