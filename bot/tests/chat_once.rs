//! Issue 13 in chat, end to end with a real `ccrm-bot` process (killed with -9), a real
//! linked `ccrmd`, the real Claude Code CLI on the fake Messages API, and the loopback
//! Telegram and Discord fakes: a prompt inside its debounce window survives a kill -9, an
//! answer is posted once even when the bot dies between posting it and recording that,
//! and an `AskUserQuestion` with several questions is answered from chat one question at
//! a time.

mod common;

use std::time::Duration;

use ccrm_bot::db::Db;
use common::chat::{
    DC_ALICE, TG_ALICE, dc_new_thread, dc_select, discord_world, kill9_while_pending,
    pending_texts, telegram_world, tg_new_topic, wait_until,
};
use common::{WAIT, World};
use serde_json::{Value, json};
use testkit::FakeTelegram;
use testkit::Reply;
use testkit::discord::FakeDiscord;

/// The bot with the fake Discord and a daemon, once the gateway is ready.
async fn discord() -> (World, FakeDiscord) {
    discord_world(&[]).await
}

/// `/new` in a Telegram forum; returns the topic, once the session said it started.
async fn tg_topic(w: &World, tg: &FakeTelegram, group: i64, name: &str) -> i32 {
    tg_new_topic(tg, group, &w.work, Some(name)).await
}

/// `/new` in a Discord channel; returns the thread, once the session said it started.
async fn dc_thread(w: &World, dc: &FakeDiscord, channel: u64, name: &str) -> u64 {
    dc_new_thread(dc, channel, &w.work, name).await.1
}

/// The only session's id.
/// How many requests the fake model got whose newest user text is `text`.
fn model_turns_for(w: &World, text: &str) -> usize {
    w.api
        .message_requests()
        .iter()
        .filter(|r| newest_user_text(&r.body).as_deref() == Some(text))
        .count()
}

/// The newest plain user text of a Messages API request body.
fn newest_user_text(body: &Value) -> Option<String> {
    let msgs = body["messages"].as_array()?;
    msgs.iter().rev().find_map(|m| {
        if m["role"] != "user" {
            return None;
        }
        match &m["content"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => parts
                .iter()
                .rev()
                .find(|p| p["type"] == "text")
                .and_then(|p| p["text"].as_str().map(str::to_owned)),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_prompt_survives_a_kill_9_inside_its_debounce_window() {
    let (mut w, tg) = telegram_world(&[]).await;
    let group = tg.forum_group("durable");
    let topic = tg_topic(&w, &tg, group, "keeper").await;
    let id = w.first_session().await;

    let served = tg.updates_served().len();
    tg.user_message(group, TG_ALICE, "survive this", Some(topic));
    wait_until("the update was served", || {
        tg.updates_served().len() > served
    })
    .await;
    kill9_while_pending(&mut w, "telegram", &["survive this"]).await;
    wait_until("the answer after the restart", || {
        tg.messages_in(group, Some(topic))
            .iter()
            .any(|m| m.visible_text.contains("Echo: survive this"))
    })
    .await;
    w.wait_chat_shown("telegram", &id).await;
    assert!(w.bot_log_text().contains("left by the previous run"));
    assert!(pending_texts(&w, "telegram").await.is_empty());
    assert_eq!(w.prompts(&id).await, ["survive this"]);
    assert_eq!(model_turns_for(&w, "survive this"), 1);
    let answers = tg
        .messages_in(group, Some(topic))
        .iter()
        .filter(|m| m.visible_text.contains("Echo: survive this"))
        .count();
    assert_eq!(answers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discord_prompt_survives_a_kill_9_inside_its_debounce_window() {
    let (mut w, dc) = discord().await;
    let general = dc.text_channel("general");
    let thread = dc_thread(&w, &dc, general, "keeper").await;
    let id = w.first_session().await;

    dc.user_message(thread, DC_ALICE, "survive this");
    // The gateway delivered it (the frame is recorded when it is sent to the bot).
    dc.wait_for_frame(WAIT, |f| {
        !f.from_client
            && f.t.as_deref() == Some("MESSAGE_CREATE")
            && f.d["content"] == "survive this"
    })
    .await
    .expect("dispatched to the bot");
    kill9_while_pending(&mut w, "discord", &["survive this"]).await;
    dc.wait_ready(WAIT).await.expect("ready after restart");
    wait_until("the answer after the restart", || {
        dc.messages_in(thread)
            .iter()
            .any(|m| m.content.contains("Echo: survive this"))
    })
    .await;
    w.wait_chat_shown("discord", &id).await;
    assert!(w.bot_log_text().contains("left by the previous run"));
    assert!(pending_texts(&w, "discord").await.is_empty());
    assert_eq!(w.prompts(&id).await, ["survive this"]);
    assert_eq!(model_turns_for(&w, "survive this"), 1);
    let answers = dc
        .messages_in(thread)
        .iter()
        .filter(|m| m.content.contains("Echo: survive this"))
        .count();
    assert_eq!(answers, 1);
}

/// Scripts the model to ask two questions (a single select, then a multi-select), then to
/// say `Thanks` once answered.
fn script_two_questions(w: &World) {
    w.api.push_script(Reply::ToolUse {
        name: "AskUserQuestion".into(),
        input: json!({"questions": [
            {"question": "Which colour?", "header": "Colour", "multiSelect": false,
             "options": [{"label": "Red", "description": "warm"},
                         {"label": "Blue", "description": "cool"}]},
            {"question": "Which sizes?", "header": "Sizes", "multiSelect": true,
             "options": [{"label": "S", "description": "small"},
                         {"label": "M", "description": "medium"},
                         {"label": "L", "description": "large"}]}
        ]}),
    });
    w.api
        .push_script(Reply::Text("Thanks for answering".into()));
}

/// The tool_result the model got for the question, once it arrived.
async fn answer_the_model_got(w: &World) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = w.api.message_requests().iter().find_map(|r| {
            r.tool_results()
                .into_iter()
                .find(|(_, text, _)| text.contains("Which colour?"))
                .map(|(_, text, _)| text)
        });
        if let Some(text) = got {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the model never got the answers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_question_ask_is_answered_from_telegram_one_question_at_a_time() {
    let (w, tg) = telegram_world(&[]).await;
    let group = tg.forum_group("asks");
    let topic = tg_topic(&w, &tg, group, "asker").await;
    script_two_questions(&w);
    tg.user_message(group, TG_ALICE, "ask me two things", Some(topic));
    let find = |pred: &dyn Fn(&testkit::telegram::Message) -> bool| {
        tg.messages_in(group, Some(topic))
            .into_iter()
            .find(|m| pred(m))
    };
    wait_until("the first question", || {
        find(&|m| m.visible_text.contains("Question 1 of 2")).is_some()
    })
    .await;
    let q = find(&|m| m.visible_text.contains("Question 1 of 2")).expect("question");
    assert!(
        q.visible_text.contains("Which colour?"),
        "{}",
        q.visible_text
    );
    assert!(!q.visible_text.contains("Which sizes?"), "one at a time");
    let data = q.button_data();
    assert_eq!(data.len(), 2, "{data:?}");
    let mut presses = 0;
    let mut press = |data: &str| {
        tg.press_button(group, TG_ALICE, q.message_id, data);
        presses += 1;
        presses
    };
    let answered = |n: usize| tg.wait_for_count(WAIT, n, |c| c.method == "answerCallbackQuery");
    let n = press(&data[1]);
    answered(n).await.expect("press answered");
    let now = find(&|m| m.message_id == q.message_id).expect("message");
    assert!(
        now.visible_text.contains("Question 2 of 2"),
        "{}",
        now.visible_text
    );
    assert!(now.visible_text.contains("Which colour?: Blue"));
    let data = now.button_data();
    assert_eq!(data.len(), 4, "three options and Done: {data:?}");
    // Done with nothing ticked is refused; then S and L are ticked, M ticked and unticked.
    let n = press(&data[3]);
    answered(n).await.expect("press answered");
    for i in [0, 1, 2, 1] {
        let n = press(&data[i]);
        answered(n).await.expect("press answered");
    }
    let now = find(&|m| m.message_id == q.message_id).expect("message");
    let labels = now
        .reply_markup
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        labels.contains("☑ S") && labels.contains("☐ M") && labels.contains("☑ L"),
        "{labels}"
    );
    let n = press(&data[3]);
    answered(n).await.expect("press answered");
    let toasts: Vec<String> = tg
        .calls_named("answerCallbackQuery")
        .iter()
        .filter_map(|c| c.str_param("text").map(str::to_owned))
        .collect();
    assert_eq!(toasts[1], "Tick at least one option first", "{toasts:?}");
    assert_eq!(
        toasts.last().map(String::as_str),
        Some("Answered"),
        "{toasts:?}"
    );

    let got = answer_the_model_got(&w).await;
    assert!(got.contains("Blue") && got.contains("S, L"), "{got}");
    assert!(!got.contains("M,") && !got.contains(", M"), "{got}");
    wait_until("the thanks", || {
        find(&|m| m.visible_text.contains("Thanks for answering")).is_some()
    })
    .await;
    wait_until("the question closed", || {
        find(&|m| m.message_id == q.message_id)
            .is_some_and(|m| m.visible_text.contains("answered by") && m.button_data().is_empty())
    })
    .await;
    // A press on the closed question changes nothing.
    let before = model_requests_with_answers(&w);
    let n = press(&data[0]);
    answered(n).await.expect("press answered");
    assert_eq!(model_requests_with_answers(&w), before);
}

/// How many requests carried the question's answers.
fn model_requests_with_answers(w: &World) -> usize {
    w.api
        .message_requests()
        .iter()
        .filter(|r| {
            r.tool_results()
                .iter()
                .any(|(_, t, _)| t.contains("Which colour?"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_question_ask_is_answered_from_discord_one_question_at_a_time() {
    let (w, dc) = discord().await;
    let general = dc.text_channel("general");
    let thread = dc_thread(&w, &dc, general, "asker").await;
    script_two_questions(&w);
    dc.user_message(thread, DC_ALICE, "ask me two things");
    let find = |pred: &dyn Fn(&testkit::discord::Message) -> bool| {
        dc.messages_in(thread).into_iter().find(|m| pred(m))
    };
    wait_until("the first question", || {
        find(&|m| m.content.contains("Question 1 of 2")).is_some()
    })
    .await;
    let q = find(&|m| m.content.contains("Question 1 of 2")).expect("question");
    assert!(!q.content.contains("Which sizes?"), "one at a time");
    // The first question is a single select: one menu.
    let (custom, values) = dc_select(&q);
    dc.select_menu(q.id, DC_ALICE, &custom, &[values[1].as_str()]);
    wait_until("the second question", || {
        dc.message(q.id)
            .is_some_and(|m| m.content.contains("Question 2 of 2"))
    })
    .await;
    // The second is a multi-select: a button per option and Done.
    let ids = dc.message(q.id).expect("message").custom_ids();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for (i, ticked) in [(0, "☑ S"), (2, "☑ L")] {
        dc.click_button(q.id, DC_ALICE, &ids[i]);
        wait_until("the tick shows", || {
            dc.message(q.id)
                .is_some_and(|m| m.components.iter().any(|c| c.to_string().contains(ticked)))
        })
        .await;
    }
    dc.click_button(q.id, DC_ALICE, &ids[3]);
    let got = answer_the_model_got(&w).await;
    assert!(got.contains("Blue") && got.contains("S, L"), "{got}");
    wait_until("the thanks", || {
        find(&|m| m.content.contains("Thanks for answering")).is_some()
    })
    .await;
    wait_until("the question closed", || {
        dc.message(q.id)
            .is_some_and(|m| m.content.contains("answered by") && m.custom_ids().is_empty())
    })
    .await;
}

/// Waits (bounded) until the bot process ended by itself (a failpoint aborted it), then
/// drops it and takes the failpoint out of its environment for the restart.
async fn wait_crashed(w: &mut World) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let bot = w.bot.as_mut().expect("bot running");
    while bot.try_wait().expect("try_wait").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failpoint never fired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    World::kill9(&mut w.bot);
    w.bot_env.retain(|(k, _)| k != "CCRM_BOT_FAILPOINT");
    assert!(w.bot_log_text().contains("failpoint chat.answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_discord_send_and_its_record_posts_the_answer_once() {
    let (mut w, dc) = discord_world(&[("CCRM_BOT_FAILPOINT", "chat.answer.sent")]).await;
    let general = dc.text_channel("general");
    let thread = dc_thread(&w, &dc, general, "once").await;
    dc.user_message(thread, DC_ALICE, "answer me once");
    // The answer is posted, and the bot dies before it records that.
    wait_crashed(&mut w).await;
    let count = || {
        dc.messages_in(thread)
            .iter()
            .filter(|m| m.content.contains("Echo: answer me once"))
            .count()
    };
    assert_eq!(count(), 1, "posted before the crash");
    w.start_bot();
    dc.wait_ready(WAIT).await.expect("ready after restart");
    let id = w.first_session().await;
    w.wait_chat_shown("discord", &id).await;
    // The restarted bot sent it again, with the same nonce: Discord returned the message.
    let sends: Vec<_> = dc
        .calls()
        .into_iter()
        .filter(|c| {
            c.method == "POST"
                && c.channel == Some(thread)
                && c.body["content"]
                    .as_str()
                    .is_some_and(|t| t.contains("Echo: answer me once"))
        })
        .collect();
    assert_eq!(sends.len(), 2, "sent before the crash and after");
    assert_eq!(sends[0].body["nonce"], sends[1].body["nonce"]);
    assert_eq!(sends[1].body["enforce_nonce"], true);
    assert_eq!(sends[0].response["id"], sends[1].response["id"]);
    assert_eq!(count(), 1, "the answer appears once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_a_telegram_answer_was_recorded_edits_it_instead_of_resending() {
    let (mut w, tg) = telegram_world(&[("CCRM_BOT_FAILPOINT", "chat.answer.recorded")]).await;
    let group = tg.forum_group("once");
    let topic = tg_topic(&w, &tg, group, "once").await;
    tg.user_message(group, TG_ALICE, "answer me once", Some(topic));
    wait_crashed(&mut w).await;
    let answers = || {
        tg.messages_in(group, Some(topic))
            .into_iter()
            .filter(|m| m.visible_text.contains("Echo: answer me once"))
            .collect::<Vec<_>>()
    };
    let posted = answers();
    assert_eq!(posted.len(), 1, "posted before the crash");
    let calls_before = tg.calls().len();
    w.start_bot();
    let id = w.first_session().await;
    w.wait_chat_shown("telegram", &id).await;
    let after = answers();
    assert_eq!(after.len(), 1, "the answer appears once");
    assert_eq!(after[0].message_id, posted[0].message_id);
    // The restarted bot edited the message it had posted (to the same text, which
    // Telegram answers "not modified") instead of sending it again.
    let later = &tg.calls()[calls_before..];
    let edited = later.iter().any(|c| {
        c.method == "editMessageText"
            && c.params.get("message_id").is_some_and(|m| {
                m.as_i64() == Some(i64::from(posted[0].message_id))
                    || m.as_str() == Some(posted[0].message_id.to_string().as_str())
            })
    });
    assert!(edited, "the restarted bot edited the answer it had posted");
}

#[tokio::test]
async fn pending_pieces_the_outbox_and_question_steps_in_sqlite() {
    use ccrm_bot::db::{ChatPendingRow, Outboxed};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("ccrm.db")).await.expect("db");
    let row = ChatPendingRow {
        id: 0,
        chat_id: "-100".into(),
        thread_id: Some("7".into()),
        msg_id: Some(42),
        sender: r#"{"id":"1","name":"A"}"#.into(),
        payload: r#"{"text":"hi"}"#.into(),
    };
    let first = db
        .chat_claim_pending("telegram", 5, 1, 1000, &row)
        .await
        .expect("claim")
        .expect("first claim keeps the row");
    assert_eq!(
        db.chat_claim_pending("telegram", 5, 2, 1000, &row)
            .await
            .expect("claim"),
        None,
        "a second claim stores nothing"
    );
    // The claim is the ordinary update claim.
    assert!(!db.chat_claim_update("telegram", 5, 3).await.expect("claim"));
    let rows = db.chat_pending("telegram").await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].id, rows[0].thread_id.as_deref(), rows[0].msg_id),
        (first, Some("7"), Some(42))
    );
    assert!(db.chat_pending("discord").await.expect("rows").is_empty());
    db.chat_pending_done(&[first]).await.expect("done");
    assert!(db.chat_pending("telegram").await.expect("rows").is_empty());

    let get = |key: &'static str| {
        let db = db.clone();
        async move {
            db.chat_outbox("discord", "9", None, key)
                .await
                .expect("outbox")
        }
    };
    assert_eq!(get("a1.0").await, Outboxed::New);
    db.set_chat_outbox("discord", "9", None, "a1.0", None, 1)
        .await
        .expect("intent");
    assert_eq!(get("a1.0").await, Outboxed::Unconfirmed);
    db.set_chat_outbox("discord", "9", None, "a1.0", Some("77"), 2)
        .await
        .expect("sent");
    // A later intent for the same key keeps the id.
    db.set_chat_outbox("discord", "9", None, "a1.0", None, 3)
        .await
        .expect("intent again");
    assert_eq!(get("a1.0").await, Outboxed::Sent("77".into()));
    assert_eq!(db.chat_outbox_trim("discord", 2).await.expect("trim"), 1);
    assert_eq!(get("a1.0").await, Outboxed::New);

    // A question's steps move by compare-and-set, and not once it is decided.
    let q = ccrm_bot::db::ChatApprovalRow {
        id: 0,
        platform: "telegram".into(),
        approval_id: "toolu_1".into(),
        session_id: "0b9c6f3e-8a39-4c51-9f0e-1d2c3b4a5f60".parse().expect("id"),
        chat_id: "-100".into(),
        thread_id: None,
        message_id: "5".into(),
        title: "t".into(),
        options: Vec::new(),
        decided: false,
        steps: "s0".into(),
    };
    let id = db.chat_approval_add(&q, 1).await.expect("add");
    assert!(db.chat_approval_step(id, "s0", "s1").await.expect("step"));
    assert!(!db.chat_approval_step(id, "s0", "s1b").await.expect("stale"));
    assert_eq!(db.chat_approval(id).await.expect("row").steps, "s1");
    db.chat_approvals_decide("telegram", "toolu_1")
        .await
        .expect("decide");
    assert!(
        !db.chat_approval_step(id, "s1", "s2")
            .await
            .expect("decided")
    );
    db.close().await;
}
