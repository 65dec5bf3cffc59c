//! The demo model's natural prompts, end to end through the real Claude Code CLI and a real
//! ccrmd: the prompts `ccrm up --demo` lists produce a Write approval (and the file once
//! approved), a question answered from the CLI, a long answer, a failing tool and streamed
//! text.

mod common;

use ::common::event::{EventKind, SessionState};
use ::common::ipc::{Command, PromptArgs};
use common::{Env, result_of};
use demo::prompts::{HELLO_CONTENT, HELLO_FILE, LONG_ANSWER_MIN_CHARS};

async fn send(env: &Env, session: &str, text: &str) -> u64 {
    let data = env
        .call(Command::PromptSend(PromptArgs {
            session: session.to_owned(),
            text: text.to_owned(),
            follow: false,
            origin: None,
            images: Vec::new(),
        }))
        .await
        .expect("prompt.send");
    data["prompt_id"].as_u64().expect("prompt id")
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natural_prompts_show_approvals_questions_long_answers_and_failures() {
    let env = Env::start().await;
    let s = env.new_session().await;
    let id = s.id.to_string();
    let short = s.id.short();

    // "write a hello world file": a Write that waits for approval, then the file.
    let p = send(&env, &id, "write a hello world file").await;
    let evs = env
        .wait_for(&id, 0, |e| {
            matches!(e.kind, EventKind::PermissionRequest { .. })
        })
        .await;
    let Some(EventKind::PermissionRequest {
        tool_name, input, ..
    }) = evs.last().map(|e| e.kind.clone())
    else {
        panic!("no permission request: {evs:?}");
    };
    assert_eq!(tool_name, "Write");
    assert_eq!(
        input["content"], HELLO_CONTENT,
        "the approval shows the content"
    );
    assert_eq!(env.info(&id).await.state, SessionState::WaitingPermission);
    assert!(
        !env.work.join(HELLO_FILE).exists(),
        "nothing before approval"
    );
    ok(&env.ccrm(&["approve", &short]));
    let evs = env.wait_result(&id, p).await;
    let (failed, text, _) = result_of(&evs);
    assert!(!failed, "{evs:?}");
    assert!(text.unwrap_or_default().contains("I wrote `hello.py`"));
    assert_eq!(
        std::fs::read_to_string(env.work.join(HELLO_FILE)).expect("hello.py written"),
        HELLO_CONTENT
    );

    // "ask me something": a question with options, answered by number from the CLI.
    let p = send(&env, &id, "ask me something").await;
    let evs = env
        .wait_for(&id, 0, |e| matches!(e.kind, EventKind::Question { .. }))
        .await;
    let Some(EventKind::Question { questions, .. }) = evs.last().map(|e| e.kind.clone()) else {
        panic!("no question");
    };
    let labels: Vec<&str> = questions[0]
        .options
        .iter()
        .map(|o| o.label.as_str())
        .collect();
    assert_eq!(labels, ["Python", "Rust", "Go"]);
    ok(&env.ccrm(&["answer", &short, "2"]));
    let (failed, text, _) = result_of(&env.wait_result(&id, p).await);
    assert!(!failed);
    assert!(text.unwrap_or_default().starts_with("You chose Rust."));

    // "explain the project at length": longer than a chat message can hold.
    let p = send(&env, &id, "Explain the project at length.").await;
    let (failed, text, _) = result_of(&env.wait_result(&id, p).await);
    assert!(!failed);
    let text = text.unwrap_or_default();
    assert!(
        text.chars().count() >= LONG_ANSWER_MIN_CHARS,
        "{} chars",
        text.len()
    );
    assert!(text.starts_with("# ccrm, explained at length"));

    // "run a failing command": Bash asks first, then fails, and the session goes on.
    let p = send(&env, &id, "run a failing command").await;
    let evs = env
        .wait_for(&id, 0, |e| {
            matches!(&e.kind, EventKind::PermissionRequest { tool_name, .. } if tool_name == "Bash")
        })
        .await;
    assert!(!evs.is_empty());
    ok(&env.ccrm(&["approve", &short]));
    let evs = env.wait_result(&id, p).await;
    assert!(
        evs.iter()
            .any(|e| matches!(&e.kind, EventKind::ToolResult { is_error: true, .. })),
        "the tool failed: {evs:?}"
    );
    let (failed, text, _) = result_of(&evs);
    assert!(!failed, "the turn itself succeeds");
    assert!(
        text.unwrap_or_default()
            .contains("The command failed, as planned")
    );

    // "tell me a story": streamed as many text deltas.
    let p = send(&env, &id, "tell me a story").await;
    let evs = env.wait_result(&id, p).await;
    let start = evs
        .iter()
        .rposition(|e| matches!(e.kind, EventKind::Prompt { prompt_id, .. } if prompt_id == p))
        .unwrap_or(0);
    let deltas = evs[start..]
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AssistantDelta { .. }))
        .count();
    assert!(deltas > 10, "streamed in pieces: {deltas} deltas");
    let (_, text, _) = result_of(&evs);
    assert!(text.unwrap_or_default().starts_with("Once upon a time"));

    // The keywords still work beside the natural prompts.
    let p = send(&env, &id, "hello").await;
    let (_, text, _) = result_of(&env.wait_result(&id, p).await);
    assert_eq!(text.as_deref(), Some("Echo: hello"));
}
