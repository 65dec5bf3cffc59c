//! The demo's natural prompts on a chat surface, end to end: the real bot with its
//! Telegram adapter against the loopback fake Bot API, a linked ccrmd, the real Claude Code
//! CLI and the demo model. "write a hello world file" becomes an approval with buttons that
//! writes the file when allowed; "ask me something" a question with one button per option,
//! answered by pressing one;
//! "explain the project at length" an answer too long for a message, sent as `answer.md`.

mod common;

use common::chat::{TG_ALICE as ALICE, telegram_world, tg_document, tg_msg, tg_new_topic};
use demo::prompts::{HELLO_CONTENT, HELLO_FILE, LONG_ANSWER_MIN_CHARS};
use testkit::FakeTelegram;
use testkit::telegram::Message;

/// [`tg_msg`] in topic `thread`.
async fn wait_msg(
    tg: &FakeTelegram,
    chat: i64,
    thread: i32,
    pred: impl Fn(&Message) -> bool,
) -> Message {
    tg_msg(tg, chat, Some(thread), pred).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prompts_on_telegram_show_an_approval_a_question_and_a_file_answer() {
    let (w, tg) = telegram_world(&[]).await;
    let group = tg.forum_group("demo");
    let topic = tg_new_topic(&tg, group, &w.work, Some("demo")).await;

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
    let doc = tg_document(&tg, topic).await;
    assert_eq!(doc.file_name, "answer.md");
    let text = String::from_utf8(doc.bytes).expect("utf8");
    assert!(text.starts_with("# ccrm, explained at length"));
    assert!(text.chars().count() >= LONG_ANSWER_MIN_CHARS);
}
