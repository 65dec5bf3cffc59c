//! Session behaviour through a real ccrmd, the real Claude Code CLI and the fake Messages
//! API: turns, the FIFO queue, permissions, interrupt, stop/kill/resume.

mod common;

use std::time::Duration;

use ::common::event::{Decision, EventKind, SessionState};
use ::common::ipc::{Command, DecideArgs, PromptArgs, SessionRef};
use common::{Env, WAIT, result_of};

fn prompt(session: &str, text: &str) -> Command {
    Command::PromptSend(PromptArgs {
        session: session.to_owned(),
        text: text.to_owned(),
        follow: false,
        origin: None,
        images: Vec::new(),
    })
}

async fn send(env: &Env, session: &str, text: &str) -> u64 {
    let data = env.call(prompt(session, text)).await.expect("prompt.send");
    data["prompt_id"].as_u64().expect("prompt id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_produces_text_and_result_and_the_api_saw_it() {
    let env = Env::start().await;
    let s = env.new_session().await;
    let id = s.id.to_string();

    // Follow the prompt over the socket, like `ccrm prompt --follow`.
    let mut client = env.client().await;
    let mut events = Vec::new();
    let end = tokio::time::timeout(
        WAIT,
        client.stream(
            Command::PromptSend(PromptArgs {
                session: s.id.short(),
                text: "hello there".into(),
                follow: true,
                origin: None,
                images: Vec::new(),
            }),
            |ev| events.push(ev.clone()),
        ),
    )
    .await
    .expect("follow timed out")
    .expect("follow failed")
    .expect("end data");
    assert_eq!(end["is_error"], false, "{end}");
    assert_eq!(end["text"], "Echo: hello there");
    assert!(
        events.iter().any(
            |e| matches!(&e.kind, EventKind::AssistantText { text } if text == "Echo: hello there")
        ),
        "no assistant text in {events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::AssistantDelta { .. })),
        "no streamed deltas"
    );
    let (is_error, text, _) = result_of(&events);
    assert!(!is_error);
    assert_eq!(text.as_deref(), Some("Echo: hello there"));

    let reqs = env.api.message_requests();
    let last = reqs.last().expect("a request reached the fake API");
    assert_eq!(last.last_human_text().as_deref(), Some("hello there"));
    assert_eq!(
        last.session_id.as_deref(),
        Some(id.as_str()),
        "session id is ours (--session-id)"
    );
    assert_eq!(env.info(&id).await.state, SessionState::Idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_prompts_sent_at_once_run_one_after_another_in_order() {
    let env = Env::start().await;
    env.api.set_chunk_delay(Duration::from_millis(30));
    let s = env.new_session().await;
    let id = s.id.to_string();
    let texts = ["SLOW:4 first", "SLOW:4 second", "SLOW:4 third"];
    let sends = texts.iter().map(|t| send(&env, &id, t));
    let mut ids = futures::future::join_all(sends).await;
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    let events = env.wait_result(&id, 3).await;

    // Our log: each turn starts only after the previous one's result.
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TurnStarted { prompt_id } => Some(format!("start{prompt_id}")),
            EventKind::TurnResult {
                prompt_id: Some(p),
                is_error: false,
                ..
            } => Some(format!("end{p}")),
            EventKind::TurnResult { .. } => panic!("a turn failed: {:?}", e.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["start1", "end1", "start2", "end2", "start3", "end3"]
    );

    // The API side: requests in prompt order, none starting before the previous finished.
    let reqs = env.api.message_requests();
    let humans: Vec<String> = reqs.iter().filter_map(|r| r.last_human_text()).collect();
    let prompts_seen: Vec<&str> = texts
        .iter()
        .copied()
        .filter(|t| humans.iter().any(|h| h == t))
        .collect();
    assert_eq!(prompts_seen, texts, "every prompt reached the API");
    let first_idx = |t: &str| humans.iter().position(|h| h == t).expect("seen");
    assert!(
        first_idx(texts[0]) < first_idx(texts[1]) && first_idx(texts[1]) < first_idx(texts[2]),
        "{humans:?}"
    );
    for pair in reqs.windows(2) {
        let done = pair[0].finished_at.expect("first request finished");
        assert!(
            pair[1].received_at >= done,
            "a request started before the previous one finished"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_approval_allow_deny_and_allow_for_session() {
    let env = Env::start().await;
    let s = env.new_session().await;
    let id = s.id.to_string();

    // Approve: the file is written.
    let allowed = env.work.join("allowed.txt");
    let p1 = send(&env, &id, &format!("WRITE:{} yes", allowed.display())).await;
    let evs = env
        .wait_for(&id, 0, |e| {
            matches!(e.kind, EventKind::PermissionRequest { .. })
        })
        .await;
    let Some(EventKind::PermissionRequest {
        tool_name,
        approval_id,
        ..
    }) = evs.last().map(|e| e.kind.clone())
    else {
        unreachable!()
    };
    assert_eq!(tool_name, "Write");
    assert_eq!(env.info(&id).await.state, SessionState::WaitingPermission);
    assert!(!allowed.exists(), "nothing is written before approval");
    let listed = env
        .call(Command::ApprovalsList(Default::default()))
        .await
        .expect("list");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let out = env.ccrm(&["approve", &s.id.short(), approval_id.short()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = env.wait_result(&id, p1).await;
    assert!(!result_of(&evs).0, "turn failed");
    assert_eq!(
        std::fs::read_to_string(&allowed).expect("file written"),
        "yes"
    );

    // Deny with a message: no file, and the model sees the denial.
    let denied = env.work.join("denied.txt");
    let p2 = send(&env, &id, &format!("WRITE:{} no", denied.display())).await;
    env.wait_for(&id, 0, |e| matches!(&e.kind, EventKind::PermissionRequest { input, .. } if input.to_string().contains("denied.txt"))).await;
    env.call(Command::ApprovalDecide(DecideArgs {
        session: id.clone(),
        approval: None,
        decision: Decision::Deny,
        message: Some("not in this folder, please".into()),
        origin: None,
    }))
    .await
    .expect("deny");
    env.wait_result(&id, p2).await;
    assert!(!denied.exists(), "a denied write must not happen");
    let last = env.api.message_requests().last().cloned().expect("request");
    let results = last.tool_results();
    assert!(
        results
            .iter()
            .any(|(_, text, is_error)| *is_error && text.contains("not in this folder, please")),
        "the denial reached the model: {results:?}"
    );

    // A second answer to a decided approval is refused and says who won.
    let err = env
        .call(Command::ApprovalDecide(DecideArgs {
            session: id.clone(),
            approval: Some(approval_id.0.clone()),
            decision: Decision::Allow,
            message: None,
            origin: None,
        }))
        .await
        .expect_err("already decided");
    assert!(err.to_string().contains("already answered"), "{err}");

    // Allow for the session: the second Write of the turn is not asked.
    let (a, b) = (env.work.join("a.txt"), env.work.join("b.txt"));
    let p3 = send(
        &env,
        &id,
        &format!("WRITE2:{} {}", a.display(), b.display()),
    )
    .await;
    let before = env.wait_for(&id, 0, |e| matches!(&e.kind, EventKind::PermissionRequest { input, .. } if input.to_string().contains("a.txt"))).await;
    let start = before.last().map(|e| e.seq).unwrap_or(0);
    let out = env.ccrm(&["approve", &id[..6], "--always"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = env.wait_result(&id, p3).await;
    let after: Vec<_> = evs.iter().filter(|e| e.seq > start).collect();
    assert!(
        !after
            .iter()
            .any(|e| matches!(e.kind, EventKind::PermissionRequest { .. })),
        "the second Write was asked again: {after:#?}"
    );
    assert!(
        after.iter().any(|e| matches!(&e.kind, EventKind::PermissionDecision { by, decision: Decision::Allow, .. } if by == "session rule")),
        "the session rule allowed it"
    );
    assert!(a.exists() && b.exists());
    assert_eq!(env.info(&id).await.session_allowed_tools, ["Write"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_ends_a_slow_turn_and_the_queue_goes_on() {
    let env = Env::start().await;
    env.api.set_chunk_delay(Duration::from_millis(500));
    let s = env.new_session().await;
    let id = s.id.to_string();
    let slow = send(&env, &id, "SLOW:60").await;
    let next = send(&env, &id, "after the interrupt").await;
    env.wait_for(&id, 0, |e| {
        matches!(e.kind, EventKind::AssistantDelta { .. })
    })
    .await;
    let data = env
        .call(Command::SessionInterrupt(SessionRef {
            session: id.clone(),
        }))
        .await
        .expect("interrupt");
    assert_eq!(data["interrupted"], true);
    // Promptly: well before the 30 s the stream would take. (Bounded, not timed.)
    let evs = tokio::time::timeout(Duration::from_secs(15), env.wait_result(&id, slow))
        .await
        .expect("interrupt was not prompt");
    let (is_error, _, subtype) = result_of(&evs);
    assert!(is_error);
    assert_eq!(subtype, "error_during_execution");
    let evs = env.wait_result(&id, next).await;
    let (is_error, text, _) = result_of(&evs);
    assert!(!is_error);
    assert_eq!(text.as_deref(), Some("Echo: after the interrupt"));
}

async fn remember_then_end_then_resume(env: &Env, end: Command) {
    let s = env.new_session().await;
    let id = s.id.to_string();
    let p = send(env, &id, "remember the word pineapple").await;
    env.wait_result(&id, p).await;
    let pid = env.info(&id).await.pid.expect("pid");
    let end = match end {
        Command::SessionStop(_) => Command::SessionStop(SessionRef {
            session: id.clone(),
        }),
        _ => Command::SessionKill(SessionRef {
            session: id.clone(),
        }),
    };
    let info: ::common::ipc::SessionInfo =
        serde_json::from_value(env.call(end).await.expect("end")).expect("info");
    assert_eq!(info.state, SessionState::Stopped);
    assert!(common::wait_gone(pid).await, "claude {pid} still alive");
    let err = env
        .call(prompt(&id, "too early"))
        .await
        .expect_err("stopped session refuses prompts");
    assert!(err.to_string().contains("resume"), "{err}");

    let info: ::common::ipc::SessionInfo = serde_json::from_value(
        env.call(Command::SessionResume(SessionRef {
            session: id.clone(),
        }))
        .await
        .expect("resume"),
    )
    .expect("info");
    assert_eq!(info.state, SessionState::Idle, "{info:?}");
    assert_eq!(info.id, s.id);
    let p = send(env, &id, "what was the word?").await;
    let evs = env.wait_result(&id, p).await;
    assert!(!result_of(&evs).0);
    let last = env.api.message_requests().last().cloned().expect("request");
    assert_eq!(last.session_id.as_deref(), Some(id.as_str()));
    let history = last.all_text();
    assert!(
        history.contains("remember the word pineapple"),
        "history lost: {history}"
    );
    assert!(
        history.contains("Echo: remember the word pineapple"),
        "assistant turn lost: {history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_resume_keeps_the_conversation() {
    let env = Env::start().await;
    remember_then_end_then_resume(
        &env,
        Command::SessionStop(SessionRef {
            session: String::new(),
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_then_resume_keeps_the_conversation() {
    let env = Env::start().await;
    remember_then_end_then_resume(
        &env,
        Command::SessionKill(SessionRef {
            session: String::new(),
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_directory_is_gone_cannot_resume_or_attach_and_says_so() {
    let env = Env::start().await;
    let dir = env.work.join("doomed");
    std::fs::create_dir(&dir).expect("mkdir");
    let s = env
        .start_session(::common::ipc::StartArgs {
            cwd: dir.clone(),
            ..Default::default()
        })
        .await;
    let id = s.id.to_string();
    let r = SessionRef {
        session: id.clone(),
    };
    env.call(Command::SessionStop(r.clone()))
        .await
        .expect("stop");
    std::fs::remove_dir_all(&dir).expect("rm");

    // Over the socket: the session's state, not a spawn failure (ENOENT reads like a
    // missing claude), and not a TUI started by tmux in some other directory.
    match env.call(Command::SessionResume(r)).await {
        Err(ccrm_daemon::client::ClientError::Daemon(e)) => {
            assert_eq!(e.code, ::common::ipc::ErrorCode::BadState, "{e:?}");
            assert!(e.message.contains("is gone"), "{e:?}");
        }
        other => panic!("resume of a session without its directory: {other:?}"),
    }
    let short = s.id.short();
    for args in [
        vec!["resume", short.as_str()],
        vec!["attach", short.as_str(), "--no-attach"],
    ] {
        let out = env.ccrm(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ccrm {args:?} succeeded");
        assert!(
            err.contains("is gone") && err.contains("doomed"),
            "ccrm {args:?}: {err}"
        );
    }
    assert_eq!(env.info(&id).await.state, SessionState::Stopped);
}
