//! The Discord adapter end to end: a real `ccrm-bot` process running serenity against the
//! loopback fake Discord (`testkit::discord`: gateway WebSocket + REST), a real linked
//! `ccrmd`, the real Claude Code CLI and the fake Messages API. Pacing and the 3 s
//! interaction deadline are judged from the fake's arrival timestamps.

mod common;

use std::time::SystemTime;

use ccrm_bot::db::Db;
use common::chat::{
    DC_ALICE as ALICE, dc_answer as answer_of, dc_bot_messages as bot_messages, dc_msg as wait_msg,
    dc_new_thread, dc_select, discord_world, wait_until,
};
use common::{WAIT, World};
use testkit::discord::{Call, FakeDiscord, GUILD_ID, Message};

const BOB: u64 = 310_000_000_000_000_002;
const MALLORY: u64 = 310_000_000_000_000_666;
const OPS_ROLE: u64 = 320_000_000_000_000_007;

struct Dc {
    w: World,
    dc: FakeDiscord,
}

async fn start() -> Dc {
    start_with(&[]).await
}

/// The bot with the fake Discord configured (plus `extra` environment) and a daemon; waits
/// until the gateway is ready and the slash commands are registered.
async fn start_with(extra: &[(&str, &str)]) -> Dc {
    let (w, dc) = discord_world(extra).await;
    Dc { w, dc }
}

fn count(dc: &FakeDiscord, channel: u64, text: &str) -> usize {
    dc.messages_in(channel)
        .iter()
        .filter(|m| m.content.contains(text))
        .count()
}

fn ms_between(a: SystemTime, b: SystemTime) -> u128 {
    b.duration_since(a).unwrap_or_default().as_millis()
}

/// `/new` in `channel` from Alice; returns the thread the bot created, once the session's
/// first message is in it.
async fn new_thread(t: &Dc, channel: u64, name: &str) -> u64 {
    let (i, thread) = dc_new_thread(&t.dc, channel, &t.w.work, name).await;
    // The command itself is answered in place, pointing at the thread.
    let link = format!("<#{thread}>");
    wait_until("the command is answered", || {
        answer_of(&t.dc, i.id).is_some_and(|m| m.content.contains(&link))
    })
    .await;
    thread
}

/// A message create or edit in a channel (not an interaction response).
fn is_message_call(c: &Call) -> bool {
    (c.method == "POST" || c.method == "PATCH")
        && c.path.starts_with("/channels/")
        && c.path.contains("/messages")
}

/// Checks Discord's limits over every recorded call: ≤ 5 messages in any 5 s per channel,
/// ≤ 50 requests in any second overall (interaction responses aside), and every request
/// after a 429 waited its `retry_after`.
fn assert_paced(calls: &[Call]) {
    let msgs: Vec<&Call> = calls.iter().filter(|c| is_message_call(c)).collect();
    let mut channels: Vec<u64> = msgs.iter().filter_map(|c| c.channel).collect();
    channels.sort_unstable();
    channels.dedup();
    for ch in channels {
        let times: Vec<SystemTime> = msgs
            .iter()
            .filter(|c| c.channel == Some(ch))
            .map(|c| c.at)
            .collect();
        for w in times.windows(6) {
            assert!(
                ms_between(w[0], w[5]) > 5000,
                "six messages to channel {ch} within 5 s"
            );
        }
    }
    let bot: Vec<SystemTime> = calls
        .iter()
        .filter(|c| !c.path.starts_with("/interactions/") && !c.path.starts_with("/webhooks/"))
        .map(|c| c.at)
        .collect();
    for w in bot.windows(51) {
        assert!(
            ms_between(w[0], w[50]) >= 1000,
            "51 requests within a second"
        );
    }
    for (i, c) in calls.iter().enumerate() {
        let Some(wait) = c.retry_after else { continue };
        if c.status != 429 {
            continue;
        }
        if let Some(next) = calls[i + 1..]
            .iter()
            .find(|n| n.method == c.method && n.path == c.path)
        {
            assert!(
                ms_between(c.at, next.at) as f64 >= wait * 1000.0 - 5.0,
                "{} {} retried {} ms after a 429 asking for {wait} s",
                c.method,
                c.path,
                ms_between(c.at, next.at)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_is_deferred_in_time_opens_a_thread_and_the_answer_arrives_there() {
    let t = start().await;
    let intents = t.dc.identified_intents().expect("identified");
    for (bit, name) in [
        (0, "GUILDS"),
        (9, "GUILD_MESSAGES"),
        (12, "DIRECT_MESSAGES"),
        (15, "MESSAGE_CONTENT"),
    ] {
        assert!(
            intents & (1 << bit) != 0,
            "intent {name} missing: {intents:#b}"
        );
    }
    let names: Vec<String> =
        t.dc.commands(Some(GUILD_ID))
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
    for n in [
        "new",
        "sessions",
        "status",
        "stop",
        "interrupt",
        "bind",
        "prompt",
    ] {
        assert!(
            names.iter().any(|c| c == n),
            "/{n} not registered: {names:?}"
        );
    }

    let general = t.dc.text_channel("general");
    let work = t.w.work.display().to_string();
    let i = t.dc.slash_command(
        general,
        ALICE,
        "new",
        &[("directory", work.as_str()), ("name", "alpha")],
    );
    wait_until("acknowledged", || {
        t.dc.interaction(i.id).is_some_and(|s| s.acked_at.is_some())
    })
    .await;
    let state = t.dc.interaction(i.id).expect("interaction");
    assert_eq!(
        state.ack_type,
        Some(5),
        "deferred (DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE)"
    );
    let took = ms_between(state.dispatched_at, state.acked_at.expect("acked"));
    assert!(took < 3000, "deferred after {took} ms");

    wait_until("thread", || !t.dc.threads(general).is_empty()).await;
    let (thread, name) = t.dc.threads(general)[0].clone();
    assert_eq!(name, "alpha");
    let started = wait_msg(&t.dc, thread, |m| m.content.contains("started")).await;
    assert!(started.content.contains(&work), "{}", started.content);
    wait_until("the deferred answer is edited", || {
        answer_of(&t.dc, i.id).is_some_and(|m| m.content.contains(&format!("<#{thread}>")))
    })
    .await;

    // A message in the thread is a prompt; the answer arrives there, with a summary line,
    // after one progress message that ends as done.
    t.dc.user_message(thread, ALICE, "hello from discord");
    let answer = wait_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: hello from discord")
    })
    .await;
    assert!(answer.content.contains("🔧 0 tools"), "{}", answer.content);
    // A short turn is one bot message, the answer, with "typing…" while it ran.
    assert!(
        !bot_messages(&t.dc, thread)
            .iter()
            .any(|m| m.content.contains("Working")),
        "{:#?}",
        t.dc.messages_in(thread)
    );
    assert!(
        t.dc.calls_to("POST /channels/{id}/typing")
            .iter()
            .any(|c| c.ok() && c.channel == Some(thread)),
        "typing in the thread"
    );
    let id = t.w.first_session().await;
    let events = t.w.all_events(&id).await;
    assert!(events.iter().any(|e| e["event"]["kind"] == "prompt"
        && e["event"]["origin"]["surface"] == "discord"
        && e["event"]["origin"]["user"].as_str() == Some(ALICE.to_string().as_str())));

    // Two messages a moment apart are one prompt, in the order they were written.
    t.dc.user_message(thread, ALICE, "part one");
    t.dc.user_message(thread, ALICE, "part two");
    wait_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: part one\npart two")
    })
    .await;

    // No message pings anyone.
    let sends: Vec<Call> =
        t.dc.calls()
            .into_iter()
            .filter(|c| c.method == "POST" && is_message_call(c) && c.ok())
            .collect();
    assert!(!sends.is_empty());
    for c in &sends {
        assert_eq!(
            c.body["allowed_mentions"]["parse"],
            serde_json::json!([]),
            "{}",
            c.body
        );
    }

    // Commands in the thread are answered in place.
    let s = t.dc.slash_command(thread, ALICE, "status", &[]);
    wait_until("/status answered", || {
        answer_of(&t.dc, s.id).is_some_and(|m| m.content.contains("state: "))
    })
    .await;
    let l = t.dc.slash_command(thread, ALICE, "sessions", &[]);
    wait_until("/sessions answered", || {
        answer_of(&t.dc, l.id).is_some_and(|m| m.content.contains("← here"))
    })
    .await;
    let p =
        t.dc.slash_command(thread, ALICE, "prompt", &[("text", "via slash")]);
    wait_until("/prompt answered", || {
        answer_of(&t.dc, p.id).is_some_and(|m| m.content.contains("Prompt sent"))
    })
    .await;
    wait_msg(&t.dc, thread, |m| m.content.contains("Echo: via slash")).await;

    // Chatter in a channel with no session is ignored; a mention gets a hint.
    t.dc.user_message(general, BOB, "lunch anyone?");
    t.dc.user_message(
        general,
        ALICE,
        &format!("<@{}> hello?", testkit::discord::BOT_USER_ID),
    );
    wait_msg(&t.dc, general, |m| m.content.contains("No session here")).await;
    assert_eq!(count(&t.dc, general, "No session here"), 1);
    assert_eq!(count(&t.dc, general, "not allowed"), 0);
    assert_paced(&t.dc.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_approval_buttons_allow_and_deny_and_decisions_elsewhere_edit_the_message() {
    let t = start().await;
    let general = t.dc.text_channel("general");
    let a = new_thread(&t, general, "writer").await;
    let b = new_thread(&t, general, "bystander").await;

    let allowed = t.w.work.join("allowed.txt");
    t.dc.user_message(
        a,
        ALICE,
        &format!("WRITE:{} **not bold** <@everyone>", allowed.display()),
    );
    let ask = wait_msg(&t.dc, a, |m| !m.custom_ids().is_empty()).await;
    assert!(
        ask.content.contains("Write needs approval"),
        "{}",
        ask.content
    );
    assert!(
        ask.content.contains("**not bold** <@everyone>"),
        "preview in a code block, as written: {}",
        ask.content
    );
    let ids = ask.custom_ids();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let styles: Vec<u64> = ask
        .components
        .iter()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["style"].as_u64())
        .collect();
    assert_eq!(
        styles,
        [3, 4, 1],
        "green Allow, red Deny, blurple for the session"
    );

    // While the approval waits, another thread is still served.
    t.dc.user_message(b, ALICE, "ping");
    wait_msg(&t.dc, b, |m| m.content.contains("Echo: ping")).await;
    assert!(!allowed.exists());

    // Someone not allowed presses Allow: nothing happens, and only they are told.
    let allow = ids
        .iter()
        .find(|d| d.ends_with(":a"))
        .expect("allow")
        .clone();
    let m = t.dc.click_button(ask.id, MALLORY, &allow);
    wait_until("Mallory is told privately", || {
        t.dc.interaction(m.id)
            .and_then(|s| s.followups.first().copied())
            .and_then(|f| t.dc.message(f))
            .is_some_and(|f| f.ephemeral && f.content.contains("Not allowed"))
    })
    .await;
    assert!(!allowed.exists());

    let i = t.dc.click_button(ask.id, ALICE, &allow);
    let decided = wait_msg(&t.dc, a, |m| {
        m.id == ask.id && m.content.contains("Allowed by")
    })
    .await;
    assert!(
        decided.custom_ids().is_empty(),
        "buttons removed after the decision"
    );
    let state = t.dc.interaction(i.id).expect("interaction");
    assert_eq!(state.ack_type, Some(6), "deferred update");
    assert!(ms_between(state.dispatched_at, state.acked_at.expect("acked")) < 3000);
    wait_msg(&t.dc, a, |m| {
        m.content.contains("Done.") && m.content.contains("1 file changed")
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&allowed).expect("written"),
        "**not bold** <@everyone>"
    );
    assert!(
        state.followups.is_empty(),
        "a press that worked needs no follow-up"
    );

    // Deny: nothing is written.
    let denied = t.w.work.join("denied.txt");
    t.dc.user_message(a, ALICE, &format!("WRITE:{} nope", denied.display()));
    let ask2 = wait_msg(&t.dc, a, |m| m.id != ask.id && !m.custom_ids().is_empty()).await;
    let deny = ask2
        .custom_ids()
        .into_iter()
        .find(|d| d.ends_with(":d"))
        .expect("deny");
    let done_before = count(&t.dc, a, "Done.");
    t.dc.click_button(ask2.id, ALICE, &deny);
    wait_msg(&t.dc, a, |m| {
        m.id == ask2.id && m.content.contains("Denied by")
    })
    .await;
    wait_until("the denied turn ends", || {
        count(&t.dc, a, "Done.") > done_before
    })
    .await;
    assert!(!denied.exists(), "a denied Write must not write");

    // An approval answered over REST edits the Discord message, naming who decided.
    let id = t.w.first_session().await;
    let rest = t.w.work.join("rest.txt");
    let (status, _) =
        t.w.post(
            &format!("/api/sessions/{id}/prompt"),
            serde_json::json!({"text": format!("WRITE:{} via rest", rest.display())}),
        )
        .await;
    assert_eq!(status, 202);
    let ask3 = wait_msg(&t.dc, a, |m| {
        m.id != ask.id && m.id != ask2.id && !m.custom_ids().is_empty()
    })
    .await;
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
    let decided = wait_msg(&t.dc, a, |m| {
        m.id == ask3.id && m.content.contains("Allowed by")
    })
    .await;
    assert!(
        decided.content.contains("rest:alice"),
        "{}",
        decided.content
    );
    assert!(decided.custom_ids().is_empty());
    // The prompt from REST is shown too.
    wait_msg(&t.dc, a, |m| m.content.contains("rest:alice")).await;

    // A question: its options as one select menu.
    t.dc.user_message(a, ALICE, "ASK:Pick one?|Red|Blue");
    let q = wait_msg(&t.dc, a, |m| {
        m.content.contains("Pick one?") && !m.custom_ids().is_empty()
    })
    .await;
    let (custom, values) = dc_select(&q);
    assert_eq!(values.len(), 2);
    t.dc.select_menu(q.id, ALICE, &custom, &[values[1].as_str()]);
    wait_msg(&t.dc, a, |m| {
        m.id == q.id && m.content.contains("Blue (answered by")
    })
    .await;
    wait_msg(&t.dc, a, |m| {
        m.content.contains("Answer was:") && m.content.contains("Blue")
    })
    .await;
    assert_paced(&t.dc.calls());
}

/// The code lines of `CODE:<n>` in order, from any text.
fn code_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("let value_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_split_without_breaking_code_or_attached_and_pacing_holds_under_429s() {
    let t = start().await;
    let general = t.dc.text_channel("general");
    let thread = new_thread(&t, general, "long").await;

    // 5,000 characters with a code block across the middle: several messages of at most
    // 2,000, every fence closed in its own message and reopened in the next.
    t.dc.user_message(thread, ALICE, "CODE:5000");
    let last = wait_msg(&t.dc, thread, |m| {
        m.content.contains("🔧 0 tools") && m.content.contains("The quick")
    })
    .await;
    let answer = testkit::script::code_text(5000);
    let parts: Vec<Message> = bot_messages(&t.dc, thread)
        .into_iter()
        .filter(|m| m.id <= last.id)
        .skip_while(|m| !m.content.starts_with("The quick"))
        .collect();
    assert!(parts.len() >= 3, "{parts:#?}");
    let mut joined = String::new();
    for (i, p) in parts.iter().enumerate() {
        assert!(
            p.content.encode_utf16().count() <= 2000,
            "part {i} too long"
        );
        assert_eq!(
            p.content.matches("```").count() % 2,
            0,
            "part {i}:\n{}",
            p.content
        );
        joined.push_str(&p.content);
        joined.push('\n');
    }
    assert!(
        parts[1..]
            .iter()
            .any(|p| p.content.starts_with("```rust\n")),
        "the cut block is reopened with its language"
    );
    assert_eq!(
        code_lines(&joined),
        code_lines(&answer),
        "every code line, once, in order"
    );
    assert!(parts.iter().all(|p| p.attachments.is_empty()));

    // Longer than four messages: the start and a summary in an embed, the whole as a file.
    t.dc.user_message(thread, ALICE, "LONG:20000");
    let file = wait_msg(&t.dc, thread, |m| !m.attachments.is_empty()).await;
    assert_eq!(file.attachments[0].filename, "answer.md");
    let text = String::from_utf8(file.attachments[0].bytes.clone()).expect("utf8");
    assert_eq!(
        text,
        testkit::script::long_text(20000),
        "the whole answer is in the file"
    );
    let embed = &file.embeds[0];
    let desc = embed["description"].as_str().expect("description");
    assert!(
        desc.contains("attached as a file") && desc.contains("🔧 0 tools"),
        "{desc}"
    );

    // A burst under 429s: every request waits its retry_after, nothing is lost.
    t.dc.fail_next("POST /channels/{id}/messages", 429, Some(1.0));
    t.dc.fail_next("POST /channels/{id}/messages", 429, Some(0.5));
    t.dc.fail_next("POST /channels/{id}/messages", 429, Some(1.5));
    t.dc.user_message(thread, ALICE, "DELTAS:200");
    // Not just "d199": the session's id in its first message may hold that too.
    let burst = wait_msg(&t.dc, thread, |m| m.content.contains("d198 d199")).await;
    assert!(burst.content.contains("d0 d1 d2"), "{}", burst.content);
    // A burst for one thread: five prompts from REST at once, each shown (who sent it),
    // with its answer: the thread gets about ten messages at once, and they go out at
    // most five in any five seconds.
    let id = t.w.first_session().await;
    for i in 0..5 {
        let (status, _) =
            t.w.post(
                &format!("/api/sessions/{id}/prompt"),
                serde_json::json!({"text": format!("burst {i}")}),
            )
            .await;
        assert_eq!(status, 202);
    }
    wait_msg(&t.dc, thread, |m| m.content.contains("Echo: burst 4")).await;
    for i in 0..5 {
        assert_eq!(
            count(&t.dc, thread, &format!("Echo: burst {i}")),
            1,
            "burst {i}"
        );
    }
    t.dc.user_message(thread, ALICE, "after the storm");
    wait_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: after the storm")
    })
    .await;
    let calls = t.dc.calls();
    assert!(
        calls.iter().filter(|c| c.status == 429).count() >= 3,
        "the 429s were hit"
    );
    assert_paced(&calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_gateway_is_resumed_or_reidentified_and_no_output_is_lost() {
    let t = start().await;
    let general = t.dc.text_channel("general");
    let thread = new_thread(&t, general, "flaky").await;

    // The gateway closes (resumable) in the middle of a streaming turn: the answer still
    // arrives whole, and a message written while the bot was away is handled once.
    t.dc.user_message(thread, ALICE, "SLOW:50:100");
    wait_msg(&t.dc, thread, |m| m.content.contains("Working")).await;
    t.dc.close_gateway(4000);
    t.dc.user_message(thread, ALICE, "sent during the outage");
    wait_msg(&t.dc, thread, |m| m.content.contains("chunk49")).await;
    wait_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: sent during the outage")
    })
    .await;
    wait_until("resumed", || t.dc.resumes() >= 1).await;
    assert_eq!(
        t.dc.identifies(),
        1,
        "a resumable close is resumed, not re-identified"
    );

    // The connection dies without a close frame: the bot comes back by itself.
    t.dc.drop_gateway();
    t.dc.wait_ready(WAIT).await.expect("back after a drop");
    t.dc.user_message(thread, ALICE, "after the drop");
    wait_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: after the drop")
    })
    .await;

    // Discord forgets the session: the bot identifies again and keeps working.
    let before = t.dc.identifies();
    t.dc.invalidate_session(false);
    wait_until("identified again", || t.dc.identifies() > before).await;
    t.dc.wait_ready(WAIT).await.expect("ready again");
    t.dc.user_message(thread, ALICE, "after the new session");
    wait_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: after the new session")
    })
    .await;

    // Each answer exactly once.
    for text in [
        "Echo: sent during the outage",
        "Echo: after the drop",
        "Echo: after the new session",
    ] {
        assert_eq!(count(&t.dc, thread, text), 1, "{text}");
    }
    let id = t.w.first_session().await;
    let prompts = t.w.prompts(&id).await;
    assert_eq!(
        prompts,
        [
            "SLOW:50:100",
            "sent during the outage",
            "after the drop",
            "after the new session"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_privately_and_audited_roles_grant_access() {
    let ops = OPS_ROLE.to_string();
    let t = start_with(&[("CCRM_BOT_DISCORD_ALLOWED_ROLES", ops.as_str())]).await;
    t.dc.member(BOB, "bob", &[OPS_ROLE]);
    t.dc.member(MALLORY, "mallory", &[]);
    let general = t.dc.text_channel("general");
    let work = t.w.work.display().to_string();

    let m =
        t.dc.slash_command(general, MALLORY, "new", &[("directory", work.as_str())]);
    wait_until("Mallory is refused", || {
        answer_of(&t.dc, m.id).is_some_and(|a| a.content.contains("not allowed"))
    })
    .await;
    let state = t.dc.interaction(m.id).expect("interaction");
    assert_eq!(state.ack_type, Some(5));
    assert!(
        answer_of(&t.dc, m.id).expect("answer").ephemeral,
        "only Mallory sees it"
    );
    assert!(t.dc.threads(general).is_empty(), "no thread for Mallory");

    // Bob has the allowed role.
    let thread = {
        let i = t.dc.slash_command(
            general,
            BOB,
            "new",
            &[("directory", work.as_str()), ("name", "ops")],
        );
        wait_until("Bob's thread", || !t.dc.threads(general).is_empty()).await;
        let (thread, _) = t.dc.threads(general)[0].clone();
        wait_until("Bob's command answered", || {
            answer_of(&t.dc, i.id).is_some_and(|a| !a.ephemeral && a.content.contains("ops"))
        })
        .await;
        thread
    };
    t.dc.user_message(thread, BOB, "hi from ops");
    wait_msg(&t.dc, thread, |m| m.content.contains("Echo: hi from ops")).await;

    // Mallory writing in the session's thread: one refusal, nothing reaches the model.
    t.dc.user_message(thread, MALLORY, "rm -rf everything");
    t.dc.user_message(thread, MALLORY, "please?");
    wait_msg(&t.dc, thread, |m| m.content.contains("not allowed")).await;
    t.w.wait_audit(&format!("discord:{MALLORY}"), "chat.refused", 3)
        .await;
    assert_eq!(count(&t.dc, thread, "not allowed"), 1);
    let (_, v) = t.w.get("/api/sessions").await;
    assert_eq!(v["sessions"].as_array().expect("sessions").len(), 1, "{v}");
    assert!(
        t.w.api
            .message_requests()
            .iter()
            .all(|r| !r.all_text().contains("rm -rf everything")),
        "Mallory's text reached the model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_bot_restart_bindings_hold_and_messages_sent_meanwhile_are_answered_once() {
    let ops = OPS_ROLE.to_string();
    let mut t = start_with(&[("CCRM_BOT_DISCORD_ALLOWED_ROLES", ops.as_str())]).await;
    t.dc.member(BOB, "bob", &[OPS_ROLE]);
    let general = t.dc.text_channel("general");
    let thread = new_thread(&t, general, "keeper").await;
    t.dc.user_message(thread, ALICE, "first");
    wait_msg(&t.dc, thread, |m| m.content.contains("Echo: first")).await;
    let id = t.w.first_session().await;
    t.w.wait_chat_shown("discord", &id).await;

    World::kill9(&mut t.w.bot);
    // Written while the bot is down: Discord will not replay it to a new session, so the
    // bot reads the bound threads' recent messages when it is back.
    // Bob is allowed by his role only, which a message read back over REST does not carry:
    // the bot looks him up. Both are handled after the restart, as one prompt.
    t.dc.user_message(thread, ALICE, "second");
    t.dc.user_message(thread, BOB, "and bob");
    t.w.start_bot();
    t.dc.wait_ready(WAIT).await.expect("ready after restart");
    wait_msg(&t.dc, thread, |m| {
        m.content.contains("Echo: second\nand bob")
    })
    .await;
    assert!(
        t.w.bot_log_text()
            .contains("handling a message sent while the bot was away"),
        "the message came from the catch-up, not a replay"
    );
    t.dc.user_message(thread, ALICE, "third");
    wait_msg(&t.dc, thread, |m| m.content.contains("Echo: third")).await;

    let id = t.w.first_session().await;
    let prompts = t.w.prompts(&id).await;
    assert_eq!(prompts, ["first", "second\nand bob", "third"]);
    assert_eq!(
        count(&t.dc, thread, "not allowed"),
        0,
        "Bob's role was found"
    );
    for text in ["Echo: first", "Echo: second", "Echo: third"] {
        assert_eq!(count(&t.dc, thread, text), 1, "{text}");
    }
    assert_eq!(t.dc.threads(general).len(), 1);
}

#[tokio::test]
async fn a_message_is_claimed_once_and_old_claims_are_trimmed_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("ccrm.db")).await.expect("db");
    let day = 24 * 3600 * 1000;
    let old_id = 1_000_000_000_000_000_001;
    assert!(
        db.chat_claim_message("discord", old_id, 1_000, day)
            .await
            .expect("claim")
    );
    assert!(
        !db.chat_claim_message("discord", old_id, 2_000, day)
            .await
            .expect("again")
    );
    // Snowflakes are not sequential; a claim of an id that is a multiple of 256 trims
    // the claims seen more than `keep_ms` ago, whatever their ids.
    let trimmer = 1_000_000_000_000_000_256;
    assert!(
        db.chat_claim_message("discord", trimmer, 3 * day, day)
            .await
            .expect("claim")
    );
    assert!(
        db.chat_claim_message("discord", old_id, 3 * day, day)
            .await
            .expect("trimmed, so new again")
    );
    assert!(
        !db.chat_claim_message("discord", trimmer, 3 * day, day)
            .await
            .expect("kept")
    );
    // Telegram's update ids are a separate namespace.
    assert!(
        db.chat_claim_update("telegram", 256, 1)
            .await
            .expect("claim")
    );
    db.close().await;
}
