//! The Telegram adapter end to end: a real `ccrm-bot` process talking to the loopback fake
//! Bot API (`testkit::telegram`), a real linked `ccrmd`, the real Claude Code CLI and the
//! fake Messages API. Pacing is judged from the fake's arrival timestamps.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use ccrm_bot::db::Db;
use common::chat::{
    TG_ALICE as ALICE, telegram_world, tg_document, tg_msg as wait_msg, tg_new_topic,
};
use common::{WAIT, World};
use testkit::FakeTelegram;
use testkit::telegram::Call;

const BOB: i64 = 222;
const MALLORY: i64 = 999;

struct Tg {
    w: World,
    tg: FakeTelegram,
}

async fn start() -> Tg {
    start_with(&[]).await
}

/// Bot with the fake Telegram configured (plus `extra` environment), and a daemon.
async fn start_with(extra: &[(&str, &str)]) -> Tg {
    let (w, tg) = telegram_world(extra).await;
    Tg { w, tg }
}

/// `/new` in the forum's general topic; returns the topic the bot created.
async fn new_topic(t: &Tg, group: i64, name: &str) -> i32 {
    tg_new_topic(&t.tg, group, &t.w.work, Some(name)).await
}

fn is_message_call(c: &Call) -> bool {
    matches!(
        c.method.as_str(),
        "sendMessage" | "editMessageText" | "sendDocument"
    )
}

fn ms_between(a: SystemTime, b: SystemTime) -> u128 {
    b.duration_since(a).unwrap_or_default().as_millis()
}

/// Checks Telegram's limits over every recorded call: ≤ 1 message/s per chat, ≤ 20 per
/// minute per group, ≤ 30/s overall.
fn assert_paced(calls: &[Call]) {
    let msgs: Vec<&Call> = calls.iter().filter(|c| is_message_call(c)).collect();
    let mut chats: Vec<i64> = msgs.iter().filter_map(|c| c.chat_id).collect();
    chats.sort_unstable();
    chats.dedup();
    for chat in chats {
        let times: Vec<SystemTime> = msgs
            .iter()
            .filter(|c| c.chat_id == Some(chat))
            .map(|c| c.at)
            .collect();
        for w in times.windows(2) {
            assert!(
                ms_between(w[0], w[1]) >= 1000,
                "two messages to {chat} within a second"
            );
        }
        if chat < 0 {
            for w in times.windows(21) {
                assert!(
                    ms_between(w[0], w[20]) >= 60_000,
                    "21 messages to group {chat} within a minute"
                );
            }
        }
    }
    let all: Vec<SystemTime> = calls.iter().map(|c| c.at).collect();
    for w in all.windows(31) {
        assert!(
            ms_between(w[0], w[30]) >= 1000,
            "31 requests within a second"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forum_new_session_gets_a_topic_and_answers_arrive_there_long_ones_as_a_document() {
    let t = start().await;
    let group = t.tg.forum_group("ccrm team");
    let topic = new_topic(&t, group, "alpha").await;
    assert_eq!(t.tg.topics(group), vec![(topic, "alpha".to_owned())]);
    assert!(
        t.tg.my_commands().iter().any(|(c, _)| c == "new"),
        "setMyCommands: {:?}",
        t.tg.my_commands()
    );

    t.tg.user_message(group, ALICE, "hello from telegram", Some(topic));
    let answer = wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: hello from telegram")
    })
    .await;
    assert!(
        answer.visible_text.contains("🔧 0 tools"),
        "{}",
        answer.visible_text
    );
    assert_eq!(answer.parse_mode.as_deref(), Some("HTML"));
    // A short turn is one message, the answer, with "typing…" while it ran.
    assert!(
        !t.tg
            .messages_in(group, Some(topic))
            .iter()
            .any(|m| m.visible_text.contains("Working")),
        "{:#?}",
        t.tg.messages_in(group, Some(topic))
    );
    assert!(
        t.tg.calls_named("sendChatAction")
            .iter()
            .any(|c| c.ok() && c.thread_id == Some(topic)),
        "typing in the topic"
    );
    // The prompt reached the session with its Telegram origin.
    let (_, v) = t.w.get("/api/sessions").await;
    let id = v["sessions"][0]["info"]["id"]
        .as_str()
        .expect("session")
        .to_owned();
    let events = t.w.all_events(&id).await;
    assert!(events.iter().any(|e| e["event"]["kind"] == "prompt"
        && e["event"]["origin"]["surface"] == "telegram"
        && e["event"]["origin"]["user"].as_str() == Some(ALICE.to_string().as_str())));

    // Two messages a moment apart are one prompt.
    t.tg.user_message(group, ALICE, "part one", Some(topic));
    t.tg.user_message(group, ALICE, "part two", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: part one\npart two")
    })
    .await;

    // A 10,000-character answer: a summary message plus the whole text as a document.
    t.tg.user_message(group, ALICE, "LONG:10000", Some(topic));
    let summary = wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("attached as a file")
    })
    .await;
    assert!(summary.visible_text.chars().count() <= 4096);
    assert!(
        summary.visible_text.contains("🔧 0 tools"),
        "{}",
        summary.visible_text
    );
    let doc = tg_document(&t.tg, topic).await;
    assert_eq!(doc.file_name, "answer.md");
    let text = String::from_utf8(doc.bytes).expect("utf8");
    assert_eq!(
        text.chars().count(),
        10_000,
        "the whole answer is in the file"
    );

    // A message in the general topic (no session there) that mentions the bot gets a
    // hint, not a prompt.
    t.tg.user_message(group, ALICE, "@ccrm_test_bot anyone?", None);
    wait_msg(&t.tg, group, None, |m| {
        m.visible_text.contains("No session here")
    })
    .await;
    assert_paced(&t.tg.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_approval_buttons_allow_and_deny_while_other_topics_keep_going() {
    let t = start().await;
    let group = t.tg.forum_group("ccrm team");
    let a = new_topic(&t, group, "writer").await;
    let b = new_topic(&t, group, "bystander").await;

    let allowed = t.w.work.join("allowed.txt");
    t.tg.user_message(
        group,
        ALICE,
        &format!("WRITE:{} <hello & bye>", allowed.display()),
        Some(a),
    );
    let ask = wait_msg(&t.tg, group, Some(a), |m| !m.button_data().is_empty()).await;
    assert!(
        ask.visible_text.contains("Write needs approval"),
        "{}",
        ask.visible_text
    );
    assert!(
        ask.visible_text.contains("<hello & bye>"),
        "escaped preview: {}",
        ask.text
    );
    let buttons = ask.button_data();
    assert_eq!(buttons.len(), 3, "{buttons:?}");

    // While the approval waits, another topic is still served.
    t.tg.user_message(group, ALICE, "ping", Some(b));
    wait_msg(&t.tg, group, Some(b), |m| {
        m.visible_text.contains("Echo: ping")
    })
    .await;
    assert!(!allowed.exists());

    let allow = buttons
        .iter()
        .find(|d| d.ends_with(":a"))
        .expect("allow button");
    t.tg.press_button(group, ALICE, ask.message_id, allow);
    // Decided by a named user: the message shows their name, not their id.
    let decided = wait_msg(&t.tg, group, Some(a), |m| {
        m.message_id == ask.message_id && m.visible_text.contains("Allowed by Tester 111")
    })
    .await;
    assert!(
        !decided.visible_text.contains("telegram:"),
        "{}",
        decided.visible_text
    );
    assert!(
        decided.button_data().is_empty(),
        "buttons stay after the decision"
    );
    wait_msg(&t.tg, group, Some(a), |m| {
        m.visible_text.contains("Done.") && m.visible_text.contains("1 file changed")
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&allowed).expect("written"),
        "<hello & bye>"
    );
    let answers = t.tg.callback_answers();
    assert!(
        answers
            .iter()
            .any(|c| c.ok() && c.str_param("text") == Some("Allowed")),
        "{answers:#?}"
    );

    let denied = t.w.work.join("denied.txt");
    t.tg.user_message(
        group,
        ALICE,
        &format!("WRITE:{} nope", denied.display()),
        Some(a),
    );
    let ask2 = wait_msg(&t.tg, group, Some(a), |m| {
        m.message_id != ask.message_id && !m.button_data().is_empty()
    })
    .await;
    let deny = ask2
        .button_data()
        .into_iter()
        .find(|d| d.ends_with(":d"))
        .expect("deny button");
    t.tg.press_button(group, ALICE, ask2.message_id, &deny);
    wait_msg(&t.tg, group, Some(a), |m| {
        m.message_id == ask2.message_id && m.visible_text.contains("Denied by Tester 111")
    })
    .await;
    let done =
        t.tg.messages_in(group, Some(a))
            .iter()
            .filter(|m| m.visible_text.contains("Done."))
            .count();
    let deadline = tokio::time::Instant::now() + WAIT;
    while t
        .tg
        .messages_in(group, Some(a))
        .iter()
        .filter(|m| m.visible_text.contains("Done."))
        .count()
        <= done
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the denied turn never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!denied.exists(), "a denied Write must not write");
    // The summary says so: nothing changed, one call denied.
    let summary =
        t.tg.messages_in(group, Some(a))
            .into_iter()
            .rev()
            .find(|m| m.visible_text.contains("Done."))
            .expect("the denied turn's answer");
    assert!(
        summary.visible_text.contains("📝 no files changed")
            && summary.visible_text.contains("🚫 1 denied"),
        "{}",
        summary.visible_text
    );
    assert_paced(&t.tg.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorised_user_is_refused_once_audited_and_reaches_no_daemon() {
    let t = start().await;
    let group = t.tg.forum_group("open group");
    t.tg.user_message(
        group,
        MALLORY,
        &format!("/new {} evil", t.w.work.display()),
        None,
    );
    t.tg.user_message(group, MALLORY, "hello?", None);
    t.tg.user_message(group, MALLORY, "/list", None);
    wait_msg(&t.tg, group, None, |m| {
        m.visible_text.contains("not allowed")
    })
    .await;

    // Every command is audited (chatter not addressed to the bot is not even looked at).
    t.w.wait_audit(&format!("telegram:{MALLORY}"), "chat.refused", 2)
        .await;
    t.tg.wait_updates_confirmed(WAIT)
        .await
        .expect("updates handled");

    // An allowed user in a private chat: the session becomes the chat's current one.
    let dm = t.tg.private_chat(ALICE);
    t.tg.user_message(
        dm,
        ALICE,
        &format!("/new {} mine", t.w.work.display()),
        None,
    );
    wait_msg(&t.tg, dm, None, |m| m.visible_text.contains("started")).await;
    t.tg.user_message(dm, ALICE, "hi there", None);
    wait_msg(&t.tg, dm, None, |m| {
        m.visible_text.contains("Echo: hi there")
    })
    .await;

    // Exactly one refusal, no session and no model call for Mallory.
    let refusals =
        t.tg.messages_in(group, None)
            .iter()
            .filter(|m| m.visible_text.contains("not allowed"))
            .count();
    assert_eq!(refusals, 1);
    let (_, v) = t.w.get("/api/sessions").await;
    let sessions = v["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{v}");
    assert_eq!(sessions[0]["info"]["name"], "mine");
    assert!(
        t.w.api
            .message_requests()
            .iter()
            .all(|r| !r.all_text().contains("hello?")),
        "Mallory's text reached the model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_stays_within_limits_and_429s_lose_nothing() {
    let t = start().await;
    let group = t.tg.forum_group("busy");
    let topic = new_topic(&t, group, "burst").await;
    // Telegram pushes back, and once rejects the HTML.
    t.tg.fail_next("sendMessage", 429, Some(1));
    t.tg.fail_next("sendMessage", 429, Some(2));
    t.tg.reject_entities_next();
    t.tg.user_message(group, ALICE, "DELTAS:200", Some(topic));
    // Not just "d199": the session's id in its first message may hold that too.
    let answer = wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("d198 d199")
    })
    .await;
    assert!(
        answer.visible_text.contains("d0 d1 d2"),
        "{}",
        answer.visible_text
    );
    let (_, v) = t.w.get("/api/sessions").await;
    let id = v["sessions"][0]["info"]["id"]
        .as_str()
        .expect("session")
        .to_owned();
    let deltas =
        t.w.all_events(&id)
            .await
            .iter()
            .filter(|e| e["event"]["kind"] == "assistant_delta")
            .count();
    assert!(deltas >= 200, "{deltas} deltas");

    // A second answer after the burst still arrives (nothing is stuck behind the 429s).
    t.tg.user_message(group, ALICE, "after the storm", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: after the storm")
    })
    .await;
    let calls = t.tg.calls();
    assert!(
        calls.iter().filter(|c| c.status == 429).count() >= 2,
        "the 429s were hit"
    );
    assert!(calls.iter().any(|c| {
        c.error_description()
            .is_some_and(|d| d.contains("can't parse entities"))
    }));
    assert_paced(&calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_bot_restart_bindings_hold_and_no_update_is_handled_twice() {
    let mut t = start().await;
    let group = t.tg.forum_group("durable");
    let topic = new_topic(&t, group, "keeper").await;
    t.tg.user_message(group, ALICE, "first", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: first")
    })
    .await;
    let (_, v) = t.w.get("/api/sessions").await;
    let id = v["sessions"][0]["info"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    t.w.wait_chat_shown("telegram", &id).await;

    World::kill9(&mut t.w.bot);
    // Written while the bot is down: delivered once it is back.
    t.tg.user_message(group, ALICE, "second", Some(topic));
    t.w.start_bot();
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: second")
    })
    .await;
    t.tg.user_message(group, ALICE, "third", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: third")
    })
    .await;

    // A graceful restart (SIGTERM) right after the bot took an update, inside the prompt's
    // debounce window: the prompt still runs, once.
    let served = t.tg.updates_served().len();
    t.tg.user_message(group, ALICE, "fourth", Some(topic));
    let deadline = tokio::time::Instant::now() + WAIT;
    while t.tg.updates_served().len() == served {
        assert!(
            tokio::time::Instant::now() < deadline,
            "update never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut bot = t.w.bot.take().expect("bot");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bot.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    // A stop must not hang: the bot exits well within its grace periods.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while bot.try_wait().expect("try_wait").is_none() {
        if tokio::time::Instant::now() >= deadline {
            let _ = bot.kill();
            let _ = bot.wait();
            panic!("ccrm-bot did not exit within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.w.start_bot();
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: fourth")
    })
    .await;

    let (_, v) = t.w.get("/api/sessions").await;
    let sessions = v["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "/new ran once: {v}");
    let id = sessions[0]["info"]["id"].as_str().expect("id").to_owned();
    let prompts = t.w.prompts(&id).await;
    assert_eq!(prompts, ["first", "second", "third", "fourth"]);
    assert_eq!(t.tg.topics(group).len(), 1);
    let answers = |s: &str| {
        t.tg.messages_in(group, Some(topic))
            .iter()
            .filter(|m| m.visible_text.contains(s))
            .count()
    };
    assert_eq!(
        (
            answers("Echo: first"),
            answers("Echo: second"),
            answers("Echo: third"),
            answers("Echo: fourth")
        ),
        (1, 1, 1, 1)
    );
    if t.w.db_url.is_none() {
        let db_path = t.w.dir.path().join("bot/ccrm.db");
        assert!(Path::new(&db_path).exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_surfaces_questions_commands_and_prompt_limits_show_in_the_topic() {
    let t = start_with(&[
        ("CCRM_BOT_CHAT_PROMPTS_PER_MINUTE", "2"),
        ("CCRM_BOT_TELEGRAM_ALLOWED_USERS", "111,222"),
    ])
    .await;
    let group = t.tg.forum_group("mixed");
    let topic = new_topic(&t, group, "mixed").await;
    let (_, v) = t.w.get("/api/sessions").await;
    let id = v["sessions"][0]["info"]["id"]
        .as_str()
        .expect("session")
        .to_owned();

    // A prompt from REST shows up with its origin, and its answer too.
    let (status, _) =
        t.w.post(
            &format!("/api/sessions/{id}/prompt"),
            serde_json::json!({"text": "from rest"}),
        )
        .await;
    assert_eq!(status, 202);
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("rest:alice: from rest")
    })
    .await;
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: from rest")
    })
    .await;

    // An approval decided over REST: the chat message says who decided.
    let path = t.w.work.join("rest.txt");
    let (status, _) =
        t.w.post(
            &format!("/api/sessions/{id}/prompt"),
            serde_json::json!({"text": format!("WRITE:{} via rest", path.display())}),
        )
        .await;
    assert_eq!(status, 202);
    let ask = wait_msg(&t.tg, group, Some(topic), |m| !m.button_data().is_empty()).await;
    let (_, v) = t.w.get("/api/approvals").await;
    let approval = v["approvals"][0]["id"]
        .as_str()
        .expect("pending")
        .to_owned();
    let (status, v) =
        t.w.post(
            &format!("/api/approvals/{approval}"),
            serde_json::json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let decided = wait_msg(&t.tg, group, Some(topic), |m| {
        m.message_id == ask.message_id && m.visible_text.contains("Allowed by")
    })
    .await;
    assert!(
        decided.visible_text.contains("alice"),
        "{}",
        decided.visible_text
    );
    assert!(decided.button_data().is_empty());

    // A question: one button per option.
    t.tg.user_message(group, ALICE, "ASK:Pick one?|Red|Blue", Some(topic));
    let q = wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Pick one?") && !m.button_data().is_empty()
    })
    .await;
    let options = q.button_data();
    assert_eq!(options.len(), 2, "{options:?}");
    t.tg.press_button(group, ALICE, q.message_id, &options[1]);
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.message_id == q.message_id && m.visible_text.contains("Blue (answered by")
    })
    .await;
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Answer was:") && m.visible_text.contains("Blue")
    })
    .await;

    // Prompts per user are limited (2 a minute here): Bob's third message in a row gets a
    // polite reply, the first two still run as one prompt.
    t.tg.user_message(group, BOB, "one", Some(topic));
    t.tg.user_message(group, BOB, "two", Some(topic));
    t.tg.user_message(group, BOB, "three", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("faster than allowed")
    })
    .await;
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: one\ntwo\n\n")
    })
    .await;

    // Commands.
    t.tg.user_message(group, ALICE, "/status", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("state: ")
    })
    .await;
    t.tg.user_message(group, ALICE, "/list@ccrm_test_bot", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("← here")
    })
    .await;
    t.tg.user_message(group, ALICE, "/stop", Some(topic));
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Stopped by Tester 111")
    })
    .await;
    assert_paced(&t.tg.calls());
}

#[tokio::test]
async fn an_update_is_claimed_once_and_the_offset_only_moves_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("ccrm.db")).await.expect("db");
    assert!(db.chat_claim_update("telegram", 7, 1).await.expect("claim"));
    assert!(!db.chat_claim_update("telegram", 7, 2).await.expect("claim"));
    assert!(db.chat_claim_update("discord", 7, 2).await.expect("claim"));
    assert_eq!(db.chat_offset("telegram").await.expect("offset"), 0);
    db.set_chat_offset("telegram", 10).await.expect("set");
    db.set_chat_offset("telegram", 5).await.expect("set");
    assert_eq!(db.chat_offset("telegram").await.expect("offset"), 10);
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_bot_had_not_posted_when_killed_is_posted_after_the_restart() {
    let mut t = start().await;
    let group = t.tg.forum_group("crashy");
    let topic = new_topic(&t, group, "held").await;
    // Let the session's first events be shown (and recorded as shown) first.
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Session")
    })
    .await;
    let (_, v) = t.w.get("/api/sessions").await;
    let id = v["sessions"][0]["info"]["id"]
        .as_str()
        .expect("session id")
        .to_owned();

    // Telegram makes the bot wait a minute before its next message; meanwhile the turn ends
    // and is committed, and the bot dies before it could post anything.
    t.tg.fail_next("sendMessage", 429, Some(60));
    t.tg.user_message(group, ALICE, "hold this", Some(topic));
    t.tg.wait_for(WAIT, |c| c.method == "sendMessage" && c.status == 429)
        .await
        .expect("the 429 was served");
    t.w.wait_stored(&id, |e| e["event"]["kind"] == "turn_result")
        .await;
    assert!(
        !t.tg
            .messages_in(group, Some(topic))
            .iter()
            .any(|m| m.visible_text.contains("Echo: hold this")),
        "posted before the kill"
    );
    World::kill9(&mut t.w.bot);
    t.w.start_bot();

    // The restarted bot shows what was committed but not shown, once.
    wait_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: hold this")
    })
    .await;
    let count =
        t.tg.messages_in(group, Some(topic))
            .iter()
            .filter(|m| m.visible_text.contains("Echo: hold this"))
            .count();
    assert_eq!(count, 1, "the answer is posted exactly once");
}
