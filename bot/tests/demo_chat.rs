//! The demo's natural prompts on a chat surface, end to end: the real bot with its
//! Telegram adapter against the loopback fake Bot API, a linked ccrmd, the real Claude Code
//! CLI and the demo model. "write a hello world file" becomes an approval with buttons that
//! writes the file when allowed; "ask me something" a question with one button per option,
//! answered by pressing one;
//! "explain the project at length" an answer too long for a message, sent as `answer.md`.

mod common;

use std::time::Duration;

use common::{WAIT, World};
use demo::prompts::{HELLO_CONTENT, HELLO_FILE, LONG_ANSWER_MIN_CHARS};
use testkit::FakeTelegram;
use testkit::telegram::Message;

const TOKEN: &str = "123456:TEST-SECRET";
const ALICE: i64 = 111;

async fn wait_msg(
    tg: &FakeTelegram,
    chat: i64,
    thread: i32,
    pred: impl Fn(&Message) -> bool,
) -> Message {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = tg
            .messages_in(chat, Some(thread))
            .into_iter()
            .find(|m| pred(m))
        {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no matching message: {:#?}",
            tg.messages_in(chat, Some(thread))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prompts_on_telegram_show_an_approval_a_question_and_a_file_answer() {
    let tg = FakeTelegram::start(TOKEN).await.expect("fake telegram");
    let url = tg.api_url();
    let alice = ALICE.to_string();
    let w = World::start_with(&[
        ("CCRM_BOT_TELEGRAM_TOKEN", TOKEN),
        ("CCRM_BOT_TELEGRAM_API_URL", url.as_str()),
        ("CCRM_BOT_TELEGRAM_ALLOWED_USERS", alice.as_str()),
    ])
    .await;
    let group = tg.forum_group("demo");
    tg.user_message(
        group,
        ALICE,
        &format!("/new {} demo", w.work.display()),
        None,
    );
    let call = tg
        .wait_for(WAIT, |c| c.method == "createForumTopic" && c.ok())
        .await
        .expect("topic created");
    let topic = call.result["message_thread_id"]
        .as_i64()
        .expect("thread id") as i32;
    wait_msg(&tg, group, topic, |m| m.visible_text.contains("started")).await;

    // An approval with buttons; Allow writes the file.
    tg.user_message(group, ALICE, "write a hello world file", Some(topic));
    let ask = wait_msg(&tg, group, topic, |m| {
        m.visible_text.contains("Write needs approval")
    })
    .await;
    assert!(
        ask.visible_text.contains("hello.py"),
        "{}",
        ask.visible_text
    );
    let allow = ask
        .button_data()
        .into_iter()
        .find(|d| d.ends_with(":a"))
        .expect("an Allow button");
    tg.press_button(group, ALICE, ask.message_id, &allow);
    wait_msg(&tg, group, topic, |m| m.visible_text.contains("I wrote")).await;
    assert_eq!(
        std::fs::read_to_string(w.work.join(HELLO_FILE)).expect("hello.py"),
        HELLO_CONTENT
    );

    // A question: one button per option.
    tg.user_message(group, ALICE, "ask me something", Some(topic));
    let q = wait_msg(&tg, group, topic, |m| {
        m.visible_text.contains("Which language") && !m.button_data().is_empty()
    })
    .await;
    assert_eq!(q.button_data().len(), 3, "{:?}", q.button_data());
    let buttons = q.button_data();
    tg.press_button(group, ALICE, q.message_id, &buttons[1]);
    wait_msg(&tg, group, topic, |m| {
        m.visible_text.contains("You chose Rust")
    })
    .await;

    // A long answer arrives as a file.
    tg.user_message(group, ALICE, "explain the project at length", Some(topic));
    let deadline = tokio::time::Instant::now() + WAIT;
    let doc = loop {
        if let Some(d) = tg
            .documents()
            .into_iter()
            .find(|d| d.thread_id == Some(topic))
        {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "no document");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(doc.file_name, "answer.md");
    let text = String::from_utf8(doc.bytes).expect("utf8");
    assert!(text.starts_with("# ccrm, explained at length"));
    assert!(text.chars().count() >= LONG_ANSWER_MIN_CHARS);
}
