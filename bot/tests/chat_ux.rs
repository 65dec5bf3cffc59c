//! Chat that reads like a colleague, end to end on both front ends: a real `ccrm-bot`
//! process against the loopback fakes (`testkit::telegram`, `testkit::discord`), a real
//! linked `ccrmd`, the real Claude Code CLI and the fake Messages API.
//!
//! - Telegram: a group's General topic stays quiet (chatter from a member or a stranger
//!   gets nothing, mentions and replies get a hint), `/new` there is acknowledged with a
//!   link to its topic (named after the directory), `/help` and the command menu list
//!   Telegram's commands once each, and five prompts in five topics of one group are
//!   answered as fast as the group's 20-a-minute budget allows with one message each.
//! - Telegram: `/status` names the machine, `/interrupt` with nothing running says so,
//!   Edit approvals show a diff (a `.diff` file when long), `/stop` says "stopped" once, a
//!   prompt to a stopped session offers Resume and runs after it with the earlier history,
//!   `/resume` too; a bot killed mid-turn finishes its progress message after the restart.
//! - Discord: people by their server nickname, private `/help` and `/status` in Discord's
//!   syntax (shared on request), one message per short turn, Resume, `/sessions` with Bind
//!   buttons, `/new` without a directory offering recent ones, `/bind` reusing a thread.
//!
//! Latency figures printed here come from the fakes' timestamps; they are reported, not
//! asserted (`benches/chat_latency.rs` measures them properly).

mod common;

use std::time::{Duration, SystemTime};

use common::chat::{
    DC_ALICE, TG_ALICE as ALICE, dc_answered as answer_of, dc_bot_messages as bot_messages, dc_msg,
    discord_world, telegram_world, tg_msg, wait_until,
};
use common::{WAIT, World};
use serde_json::json;
use testkit::FakeTelegram;
use testkit::discord::FakeDiscord;

const MALLORY: i64 = 999;

fn ms_between(a: SystemTime, b: SystemTime) -> i128 {
    match b.duration_since(a) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

/// When the fake model finished answering the request whose newest human text is `text`.
fn replied_at(w: &World, text: &str) -> Option<SystemTime> {
    w.api
        .message_requests()
        .into_iter()
        .filter(|r| r.last_human_text().as_deref() == Some(text))
        .filter_map(|r| r.finished_at)
        .max()
}

/// The hostname the daemon reported.
async fn hostname(w: &World) -> String {
    let (_, v) = w.get("/api/daemons").await;
    v["daemons"][0]["hostname"]
        .as_str()
        .expect("hostname")
        .to_owned()
}

// ---- Telegram ----------------------------------------------------------------------

struct Tg {
    w: World,
    tg: FakeTelegram,
}

async fn tg_start() -> Tg {
    let (w, tg) = telegram_world(&[]).await;
    Tg { w, tg }
}

fn is_message_call(c: &testkit::telegram::Call) -> bool {
    matches!(
        c.method.as_str(),
        "sendMessage" | "editMessageText" | "sendDocument"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_general_is_quiet_new_links_its_topic_and_five_topics_answer_cheaply() {
    let t = tg_start().await;
    let group = t.tg.forum_group("team");

    // The command menu: each command once, with one short line.
    wait_until("setMyCommands", || !t.tg.my_commands().is_empty()).await;
    let menu = t.tg.my_commands();
    for (cmd, about) in &menu {
        assert!(
            !about.contains('\n') && about.chars().count() <= 64,
            "/{cmd}: {about:?}"
        );
    }
    let names: Vec<&str> = menu.iter().map(|(c, _)| c.as_str()).collect();
    for c in [
        "new",
        "list",
        "status",
        "bind",
        "prompt",
        "interrupt",
        "stop",
        "resume",
        "help",
    ] {
        assert!(names.contains(&c), "/{c} missing from {names:?}");
    }

    // Chatter in General from a member and from a stranger: no reply at all.
    t.tg.user_message(group, ALICE, "morning all, coffee?", None);
    t.tg.user_message(group, MALLORY, "what does this bot do", None);
    // /help: Telegram's commands in Telegram's syntax, and nothing of Discord's.
    t.tg.user_message(group, ALICE, "/help", None);
    let help = tg_msg(&t.tg, group, None, |m| {
        m.visible_text.contains("ccrm drives")
    })
    .await;
    for c in [
        "/new <dir>",
        "/list",
        "/status",
        "/resume",
        "/bind <session>",
        "/prompt <text>",
    ] {
        assert!(help.visible_text.contains(c), "{c}: {}", help.visible_text);
    }
    for c in ["/sessions", "directory:", "text:<"] {
        assert!(!help.visible_text.contains(c), "{c}: {}", help.visible_text);
    }
    t.tg.wait_updates_confirmed(WAIT).await.expect("handled");
    // A reply to the bot and a mention are addressed to it: a hint each.
    t.tg.user_reply(group, ALICE, "and how do I start?", help.message_id);
    t.tg.user_message(group, ALICE, "hey @ccrm_test_bot", None);
    wait_until("two hints", || {
        t.tg.messages_in(group, None)
            .iter()
            .filter(|m| m.visible_text.contains("No session here"))
            .count()
            == 2
    })
    .await;
    assert_eq!(
        t.tg.messages_in(group, None).len(),
        3,
        "only the help and the two hints: {:#?}",
        t.tg.messages_in(group, None)
    );

    // /new in General: a topic named after the directory, and an acknowledgement where
    // it was typed, linking to the topic.
    t.tg.user_message(group, ALICE, &format!("/new {}", t.w.work.display()), None);
    let created =
        t.tg.wait_for(WAIT, |c| c.method == "createForumTopic" && c.ok())
            .await
            .expect("topic");
    assert_eq!(
        created.str_param("name"),
        Some("work"),
        "named after the directory"
    );
    let first = created.result["message_thread_id"]
        .as_i64()
        .expect("thread") as i32;
    let ack = tg_msg(&t.tg, group, None, |m| m.visible_text.contains("is in")).await;
    let link = format!("https://t.me/c/{}/{first}", (-group - 1_000_000_000_000));
    assert!(
        ack.text.contains(&format!("href=\"{link}\"")),
        "{}",
        ack.text
    );
    tg_msg(&t.tg, group, Some(first), |m| {
        m.visible_text.contains("started by Tester 111")
    })
    .await;

    // Four more sessions, each shown in a topic of its own (made by a member).
    let mut topics = vec![first];
    for i in 1..5 {
        t.w.new_session(json!({"name": format!("s{i}")})).await;
        let topic = t.tg.user_topic(group, ALICE, &format!("topic {i}"));
        t.tg.user_message(group, ALICE, &format!("/bind s{i}"), Some(topic));
        tg_msg(&t.tg, group, Some(topic), |m| {
            m.visible_text.contains("is shown here")
        })
        .await;
        topics.push(topic);
    }

    // Five prompts in five topics at once: every answer goes out as soon as the group's
    // budget allows, ahead of any progress, one message per turn.
    let asked = SystemTime::now();
    for (i, topic) in topics.iter().enumerate() {
        t.tg.user_message(group, ALICE, &format!("hello {i}"), Some(*topic));
    }
    for (i, topic) in topics.iter().enumerate() {
        tg_msg(&t.tg, group, Some(*topic), |m| {
            m.visible_text.contains(&format!("Echo: hello {i}"))
        })
        .await;
    }
    let calls = t.tg.calls();
    let mut figures = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let sends: Vec<_> = calls
            .iter()
            .filter(|c| is_message_call(c) && c.thread_id == Some(*topic) && c.at >= asked)
            .collect();
        assert!(
            sends.len() <= 2,
            "turn {i} took {} sends: {sends:#?}",
            sends.len()
        );
        let answer = sends
            .iter()
            .find(|c| {
                c.text()
                    .is_some_and(|x| x.contains(&format!("Echo: hello {i}")))
            })
            .expect("the answer call");
        let replied = replied_at(&t.w, &format!("hello {i}")).expect("model replied");
        figures.push((i, ms_between(replied, answer.at)));
    }
    // Nothing but answers went to the group while answers were due.
    let window: Vec<_> = calls
        .iter()
        .filter(|c| is_message_call(c) && c.chat_id == Some(group) && c.at >= asked)
        .collect();
    for c in &window {
        assert!(
            c.text().is_some_and(|x| x.contains("Echo: hello")),
            "a non-answer went out while answers were due: {c:#?}"
        );
    }
    // How long each answer waited beyond what the budget required: its earliest allowed
    // time is the later of the model's reply and the group's previous message + 3 s.
    let mut answers: Vec<(SystemTime, SystemTime)> = (0..topics.len())
        .filter_map(|i| {
            let at = calls
                .iter()
                .find(|c| {
                    c.text()
                        .is_some_and(|x| x.contains(&format!("Echo: hello {i}")))
                })?
                .at;
            Some((at, replied_at(&t.w, &format!("hello {i}"))?))
        })
        .collect();
    answers.sort();
    let mut slack = Vec::new();
    for (at, replied) in &answers {
        let prev = calls
            .iter()
            .filter(|c| is_message_call(c) && c.chat_id == Some(group) && c.at < *at)
            .map(|c| c.at)
            .max();
        let earliest = prev
            .map(|p| p + Duration::from_millis(3050))
            .map_or(*replied, |p| p.max(*replied));
        slack.push(ms_between(earliest, *at));
    }
    eprintln!(
        "five topics, model reply → answer posted (ms, group budget 20/min): {figures:?}; \
         beyond the budget: {slack:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_names_diffs_resume_and_a_progress_message_finished_after_a_kill() {
    let mut t = tg_start().await;
    let group = t.tg.forum_group("work");
    t.tg.user_message(
        group,
        ALICE,
        &format!("/new {} keeper", t.w.work.display()),
        None,
    );
    let created =
        t.tg.wait_for(WAIT, |c| c.method == "createForumTopic" && c.ok())
            .await
            .expect("topic");
    assert_eq!(created.str_param("name"), Some("keeper"));
    let topic = created.result["message_thread_id"]
        .as_i64()
        .expect("thread") as i32;
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("started")
    })
    .await;
    let id = t.w.first_session().await;
    let in_topic = |s: &str| {
        t.tg.messages_in(group, Some(topic))
            .iter()
            .filter(|m| m.visible_text.contains(s))
            .count()
    };

    // /status names the machine; /interrupt with nothing running says so.
    let host = hostname(&t.w).await;
    t.tg.user_message(group, ALICE, "/status", Some(topic));
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text
            .contains(&format!("machine: {host} (online)"))
    })
    .await;
    t.tg.user_message(group, ALICE, "/interrupt", Some(topic));
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Nothing is running")
    })
    .await;

    t.tg.user_message(group, ALICE, "remember the word kumquat", Some(topic));
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: remember the word kumquat")
    })
    .await;

    // An Edit approval shows the change as a diff block; a long one comes as a file.
    let file = t.w.work.join("notes.txt");
    let body: String = (1..=5).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&file, &body).expect("file");
    t.tg.user_message(
        group,
        ALICE,
        &format!("READ:{}", file.display()),
        Some(topic),
    );
    wait_until("read", || in_topic("Done.") >= 1).await;
    let edit = json!({"file_path": file, "old_string": "line 2\n", "new_string": "line two\n"});
    t.tg.user_message(group, ALICE, &format!("CALL:Edit {edit}"), Some(topic));
    let ask = tg_msg(&t.tg, group, Some(topic), |m| !m.button_data().is_empty()).await;
    assert!(
        ask.text.contains("<pre><code class=\"language-diff\">"),
        "{}",
        ask.text
    );
    assert!(
        ask.visible_text.contains("-line 2\n+line two"),
        "{}",
        ask.visible_text
    );
    let deny = ask
        .button_data()
        .into_iter()
        .find(|d| d.ends_with(":d"))
        .expect("deny");
    t.tg.press_button(group, ALICE, ask.message_id, &deny);
    wait_until("denied", || in_topic("Denied by Tester 111") == 1).await;
    wait_until("the denied edit's turn", || in_topic("Done.") >= 2).await;
    let long: String = (0..400).map(|i| format!("new line {i}\n")).collect();
    let edit = json!({"file_path": file, "old_string": "line 3\n", "new_string": long});
    t.tg.user_message(group, ALICE, &format!("CALL:Edit {edit}"), Some(topic));
    let ask = tg_msg(&t.tg, group, Some(topic), |m| {
        !m.button_data().is_empty() && m.visible_text.contains("notes.txt.diff")
    })
    .await;
    assert!(ask.visible_text.chars().count() <= 4096);
    let doc =
        t.tg.documents()
            .into_iter()
            .find(|d| d.file_name == "notes.txt.diff")
            .expect("the diff as a file");
    let diff = String::from_utf8(doc.bytes).expect("utf8");
    assert!(
        diff.contains("-line 3\n") && diff.contains("+new line 399\n"),
        "{diff}"
    );
    let deny = ask
        .button_data()
        .into_iter()
        .find(|d| d.ends_with(":d"))
        .expect("deny");
    t.tg.press_button(group, ALICE, ask.message_id, &deny);
    wait_until("the long edit's turn", || in_topic("Done.") >= 3).await;
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        body,
        "nothing edited"
    );

    // /stop says "stopped" once.
    t.tg.user_message(group, ALICE, "/stop", Some(topic));
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Stopped by Tester 111")
    })
    .await;
    t.w.wait_stored(&id, |e| e["event"]["state"] == "stopped")
        .await;

    // A prompt to the stopped session offers Resume; resuming runs it, with the history.
    t.tg.user_message(group, ALICE, "what was the word?", Some(topic));
    let offer = tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("is stopped") && m.button_data().iter().any(|d| d.starts_with("r:"))
    })
    .await;
    assert!(
        !offer.visible_text.contains("ccrm resume"),
        "{}",
        offer.visible_text
    );
    let resume = offer.button_data()[0].clone();
    t.tg.press_button(group, ALICE, offer.message_id, &resume);
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("is back")
    })
    .await;
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: what was the word?")
    })
    .await;
    let asked =
        t.w.api
            .message_requests()
            .into_iter()
            .find(|r| r.last_human_text().as_deref() == Some("what was the word?"))
            .expect("asked");
    assert!(
        asked.all_text().contains("kumquat"),
        "the earlier history went with it"
    );
    assert_eq!(
        in_topic("Session stopped"),
        0,
        "the stop was told once: {:#?}",
        t.tg.messages_in(group, Some(topic))
    );
    assert_eq!(in_topic("Stopped by"), 1);

    // /resume does the same.
    t.tg.user_message(group, ALICE, "/stop", Some(topic));
    wait_until("stopped again", || in_topic("Stopped by") == 2).await;
    t.w.wait_stored(&id, |e| e["event"]["state"] == "stopped")
        .await;
    t.tg.user_message(group, ALICE, "/resume", Some(topic));
    wait_until("resumed again", || in_topic("is back") == 2).await;
    t.tg.user_message(group, ALICE, "and again?", Some(topic));
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Echo: and again?")
    })
    .await;
    let asked =
        t.w.api
            .message_requests()
            .into_iter()
            .find(|r| r.last_human_text().as_deref() == Some("and again?"))
            .expect("asked");
    assert!(asked.all_text().contains("kumquat"));

    // kill -9 of the bot mid-turn: the progress message it left is finished after the
    // restart (here it becomes the answer), not left at "Working…".
    t.tg.user_message(group, ALICE, "SLOW:80:100", Some(topic));
    let progress = tg_msg(&t.tg, group, Some(topic), |m| {
        m.visible_text.contains("Working")
    })
    .await;
    let db = t.w.db().await;
    let sid = id.parse().expect("id");
    let deadline = tokio::time::Instant::now() + WAIT;
    while db
        .chat_progress("telegram", &sid)
        .await
        .expect("rows")
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "progress never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.close().await;
    World::kill9(&mut t.w.bot);
    wait_until("the turn ends while the bot is down", || {
        replied_at(&t.w, "SLOW:80:100").is_some()
    })
    .await;
    t.w.start_bot();
    tg_msg(&t.tg, group, Some(topic), |m| {
        m.message_id == progress.message_id && m.visible_text.contains("chunk79")
    })
    .await;
    assert_eq!(in_topic("chunk79"), 1, "the answer is that message, once");
    assert_eq!(in_topic("Working"), 0);
}

// ---- Discord -----------------------------------------------------------------------

struct Dc {
    w: World,
    dc: FakeDiscord,
}

async fn dc_start() -> Dc {
    let (w, dc) = discord_world(&[]).await;
    Dc { w, dc }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_names_private_answers_one_message_per_turn_resume_and_thread_reuse() {
    let t = dc_start().await;
    t.dc.set_nick(DC_ALICE, Some("Ally"));
    let general = t.dc.text_channel("general");
    let work = t.w.work.display().to_string();
    let i = t.dc.slash_command(
        general,
        DC_ALICE,
        "new",
        &[("directory", &work), ("name", "alpha")],
    );
    let pointer = answer_of(&t.dc, i.id).await;
    wait_until("thread", || !t.dc.threads(general).is_empty()).await;
    let (thread, name) = t.dc.threads(general)[0].clone();
    assert_eq!(name, "alpha");
    assert!(
        pointer.content.contains(&format!("<#{thread}>")),
        "{}",
        pointer.content
    );
    dc_msg(&t.dc, thread, |m| m.content.contains("started by Ally")).await;

    // A short turn: one bot message, the answer.
    let before = bot_messages(&t.dc, thread).len();
    t.dc.user_message(thread, DC_ALICE, "hello there");
    dc_msg(&t.dc, thread, |m| m.content.contains("Echo: hello there")).await;
    let id = t.w.first_session().await;
    t.w.wait_chat_shown("discord", &id).await;
    assert_eq!(
        bot_messages(&t.dc, thread).len(),
        before + 1,
        "{:#?}",
        bot_messages(&t.dc, thread)
    );

    // /help and /status answer privately, in Discord's syntax; share:true shows everyone.
    let h = t.dc.slash_command(thread, DC_ALICE, "help", &[]);
    let help = answer_of(&t.dc, h.id).await;
    assert!(help.ephemeral);
    for c in [
        "/sessions",
        "/new directory:<dir>",
        "/resume",
        "/bind session:<session>",
    ] {
        assert!(help.content.contains(c), "{c}: {}", help.content);
    }
    for c in ["/list", "/new <dir>"] {
        assert!(!help.content.contains(c), "{c}: {}", help.content);
    }
    let host = hostname(&t.w).await;
    let s = t.dc.slash_command(thread, DC_ALICE, "status", &[]);
    let status = answer_of(&t.dc, s.id).await;
    assert!(
        status.ephemeral && status.content.contains(&format!("machine: {host}")),
        "{}",
        status.content
    );
    let s =
        t.dc.slash_command(thread, DC_ALICE, "status", &[("share", "true")]);
    assert!(!answer_of(&t.dc, s.id).await.ephemeral);
    let n = t.dc.slash_command(thread, DC_ALICE, "interrupt", &[]);
    assert!(
        answer_of(&t.dc, n.id)
            .await
            .content
            .contains("Nothing is running")
    );

    // An approval decided by Alice names her as the server shows her; a Write shows its
    // content as a diff.
    let path = t.w.work.join("named.txt");
    t.dc.user_message(thread, DC_ALICE, &format!("WRITE:{} hello", path.display()));
    let ask = dc_msg(&t.dc, thread, |m| !m.custom_ids().is_empty()).await;
    assert!(
        ask.content.contains("```diff\n") && ask.content.contains("+hello"),
        "{}",
        ask.content
    );
    let allow = ask
        .custom_ids()
        .into_iter()
        .find(|d| d.ends_with(":a"))
        .expect("allow");
    t.dc.click_button(ask.id, DC_ALICE, &allow);
    let decided = dc_msg(&t.dc, thread, |m| {
        m.id == ask.id && m.content.contains("Allowed by")
    })
    .await;
    assert!(
        decided.content.contains("Allowed by Ally"),
        "{}",
        decided.content
    );
    assert!(!decided.content.contains("discord:"), "{}", decided.content);
    dc_msg(&t.dc, thread, |m| m.content.contains("1 file changed")).await;

    // /stop says "stopped" once; a prompt then offers Resume, which runs it with history.
    let s = t.dc.slash_command(thread, DC_ALICE, "stop", &[]);
    assert!(
        answer_of(&t.dc, s.id)
            .await
            .content
            .contains("Stopped by Ally")
    );
    t.w.wait_stored(&id, |e| e["event"]["state"] == "stopped")
        .await;
    t.dc.user_message(thread, DC_ALICE, "what did I write?");
    let offer = dc_msg(&t.dc, thread, |m| {
        m.content.contains("is stopped") && m.custom_ids().iter().any(|c| c.starts_with("r:"))
    })
    .await;
    let resume = offer.custom_ids()[0].clone();
    t.dc.click_button(offer.id, DC_ALICE, &resume);
    dc_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: what did I write?")
    })
    .await;
    let asked =
        t.w.api
            .message_requests()
            .into_iter()
            .find(|r| r.last_human_text().as_deref() == Some("what did I write?"))
            .expect("asked");
    assert!(
        asked.all_text().contains("hello there"),
        "the earlier history went with it"
    );
    let count = |s: &str| {
        t.dc.messages_in(thread)
            .iter()
            .filter(|m| m.content.contains(s))
            .count()
    };
    assert_eq!(
        count("Session stopped"),
        0,
        "stopped was said once, by the command"
    );

    // /sessions offers Bind buttons; /new without a directory offers the recent ones.
    let l = t.dc.slash_command(general, DC_ALICE, "sessions", &[]);
    let list = answer_of(&t.dc, l.id).await;
    assert!(
        list.ephemeral && list.content.contains("alpha"),
        "{}",
        list.content
    );
    assert!(list.custom_ids().iter().all(|c| c.starts_with("b:")) && !list.custom_ids().is_empty());
    let n = t.dc.slash_command(general, DC_ALICE, "new", &[]);
    let menu = answer_of(&t.dc, n.id).await;
    let select = &menu.components[0]["components"][0];
    assert_eq!(select["type"], 3, "{select}");
    let value = select["options"][0]["value"]
        .as_str()
        .expect("value")
        .to_owned();
    assert_eq!(select["options"][0]["label"].as_str(), Some(work.as_str()));
    let custom = select["custom_id"].as_str().expect("custom id").to_owned();
    t.dc.select_menu(menu.id, DC_ALICE, &custom, &[value.as_str()]);
    wait_until("a second thread", || t.dc.threads(general).len() == 2).await;
    assert_eq!(
        t.dc.threads(general)[1].1,
        "work",
        "named after the directory"
    );

    // /bind in the channel reuses the session's thread.
    let b =
        t.dc.slash_command(general, DC_ALICE, "bind", &[("session", "alpha")]);
    let bound = answer_of(&t.dc, b.id).await;
    assert!(
        bound.content.contains(&format!("<#{thread}>")),
        "{}",
        bound.content
    );
    assert_eq!(t.dc.threads(general).len(), 2, "no second thread for alpha");
}
