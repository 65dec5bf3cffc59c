//! End to end with the real Claude Code CLI (`claude -p`, stream-json on stdio) talking
//! to the fake Messages API.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use ccrm_testkit::{ClaudeHome, FakeApi, TEST_API_KEY, claude_bin};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

/// Upper bound for one turn (CLI start-up included).
const TURN: Duration = Duration::from_secs(60);

/// A running `claude -p` in stream-json mode.
struct Claude {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_task: JoinHandle<()>,
    /// Every stdout line seen so far.
    seen: Vec<Value>,
}

/// What the host answers to one `control_request` (the `response` object).
type Answer<'a> = dyn FnMut(&Value) -> Value + 'a;

impl Claude {
    fn spawn(
        api: &FakeApi,
        home: &ClaudeHome,
        cwd: &Path,
        session_id: &str,
    ) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(claude_bin()?)
            .args([
                "-p",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
            ])
            .args(["--verbose", "--permission-prompt-tool", "stdio"])
            .arg(format!("--session-id={session_id}"))
            .envs(home.env(api))
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning claude")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let stderr_pipe = child.stderr.take().context("no stderr")?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut v) = sink.lock() {
                    v.push(line);
                }
            }
        });
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            stderr_task,
            seen: Vec::new(),
        })
    }

    async fn send(&mut self, msg: &Value) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    async fn send_user(&mut self, text: &str) -> anyhow::Result<()> {
        self.send(&json!({ "type": "user", "message": { "role": "user", "content": text } }))
            .await
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    /// Reads stdout until the turn's `result`, answering control requests with `answer`.
    async fn run_turn(&mut self, answer: &mut Answer<'_>) -> anyhow::Result<Value> {
        self.run_turn_with(answer, None).await
    }

    /// Like [`Self::run_turn`], and sends `then_say` as a user message right after the
    /// first control request is answered.
    async fn run_turn_with(
        &mut self,
        answer: &mut Answer<'_>,
        mut then_say: Option<&str>,
    ) -> anyhow::Result<Value> {
        let read = async {
            loop {
                let line = self.stdout.next_line().await?.with_context(|| {
                    format!("claude exited early; stderr: {}", self.stderr_text())
                })?;
                if !line.starts_with('{') {
                    continue;
                }
                let msg: Value = serde_json::from_str(&line)?;
                self.seen.push(msg.clone());
                match msg["type"].as_str() {
                    Some("result") => return anyhow::Ok(msg),
                    Some("control_request") => {
                        let response = answer(&msg["request"]);
                        let reply = json!({
                            "type": "control_response",
                            "response": {
                                "subtype": "success",
                                "request_id": msg["request_id"],
                                "response": response,
                            },
                        });
                        self.send(&reply).await?;
                        if let Some(text) = then_say.take() {
                            self.send_user(text).await?;
                        }
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(TURN, read)
            .await
            .with_context(|| format!("turn timed out; stderr: {}", self.stderr_text()))?
    }

    /// Closes stdin and waits for the exit code.
    async fn finish(mut self) -> anyhow::Result<Option<i32>> {
        drop(self.stdin.take());
        let status = tokio::time::timeout(TURN, self.child.wait()).await??;
        let _ = tokio::time::timeout(TURN, self.stderr_task).await;
        Ok(status.code())
    }
}

fn no_prompts() -> impl FnMut(&Value) -> Value {
    |req: &Value| json!({ "behavior": "deny", "message": format!("unexpected prompt: {req}") })
}

/// Allows every tool as asked; for AskUserQuestion adds `answers` (question → label).
fn allow_all(answers: Value) -> impl FnMut(&Value) -> Value {
    move |req: &Value| {
        let mut input = req["input"].clone();
        if req["tool_name"] == "AskUserQuestion" {
            input["answers"] = answers.clone();
        }
        json!({ "behavior": "allow", "updatedInput": input })
    }
}

struct Setup {
    api: FakeApi,
    home: ClaudeHome,
    project: tempfile::TempDir,
    session_id: String,
}

async fn setup() -> anyhow::Result<Setup> {
    let api = FakeApi::start().await?;
    let project = tempfile::tempdir()?;
    let home = ClaudeHome::new(TEST_API_KEY, &[project.path()])?;
    Ok(Setup {
        api,
        home,
        project,
        session_id: uuid::Uuid::new_v4().to_string(),
    })
}

#[tokio::test]
async fn echo_turn_and_history() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    claude.send_user("hello").await?;
    let result = claude.run_turn(&mut no_prompts()).await?;
    assert_eq!(result["subtype"], "success", "{result}");
    assert_eq!(result["result"], "Echo: hello", "{result}");
    assert_eq!(result["session_id"], s.session_id.as_str());

    let reqs = s.api.wait_for_requests(1, TURN).await?;
    assert_eq!(reqs.len(), 1, "one model call per simple turn");
    let req = &reqs[0];
    assert!(req.is_streaming());
    assert_eq!(req.query.as_deref(), Some("beta=true"));
    assert_eq!(req.last_human_text().as_deref(), Some("hello"));
    assert_eq!(req.session_id.as_deref(), Some(s.session_id.as_str()));
    assert_eq!(req.header("x-api-key"), Some(TEST_API_KEY));

    // The second turn carries the first one in its history.
    claude.send_user("again").await?;
    let result = claude.run_turn(&mut no_prompts()).await?;
    assert_eq!(result["result"], "Echo: again", "{result}");
    let req = s.api.message_requests().pop().context("no request")?;
    assert!(req.all_text().contains("Echo: hello"), "history lost");

    assert_eq!(claude.finish().await?, Some(0));
    assert!(s.home.transcript(&s.session_id).is_some());
    Ok(())
}

#[tokio::test]
async fn write_with_approval() -> anyhow::Result<()> {
    let s = setup().await?;
    let target = s.project.path().join("out.txt");
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    claude
        .send_user(&format!("WRITE:{} hi", target.display()))
        .await?;
    let mut prompts = Vec::new();
    let result = {
        let mut allow = allow_all(json!({}));
        let mut answer = |req: &Value| {
            prompts.push(req.clone());
            allow(req)
        };
        claude.run_turn(&mut answer).await?
    };
    assert_eq!(result["result"], "Done.", "{result}");
    assert_eq!(std::fs::read_to_string(&target)?, "hi");
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0]["subtype"], "can_use_tool");
    assert_eq!(prompts[0]["tool_name"], "Write");
    assert_eq!(
        prompts[0]["input"]["file_path"],
        target.to_string_lossy().as_ref()
    );

    let reqs = s.api.message_requests();
    assert_eq!(reqs.len(), 2);
    let results = reqs[1].tool_results();
    assert_eq!(results.len(), 1);
    let (_, text, is_error) = &results[0];
    assert!(!is_error);
    assert!(text.starts_with("File created successfully"), "{text}");

    // A relative path works too: the CLI resolves it against its cwd.
    claude.send_user("WRITE:rel.txt rel").await?;
    let result = claude.run_turn(&mut allow_all(json!({}))).await?;
    assert_eq!(result["result"], "Done.", "{result}");
    assert_eq!(
        std::fs::read_to_string(s.project.path().join("rel.txt"))?,
        "rel"
    );
    assert_eq!(claude.finish().await?, Some(0));
    Ok(())
}

/// How an AskUserQuestion is answered over stdio (CLI 2.1.328): the CLI sends
/// `can_use_tool` with `tool_name:"AskUserQuestion"`, `requires_user_interaction:true` and
/// the model's input `{"questions":[{"question","header","options":[{"label",
/// "description"}],"multiSelect"}]}`. The host answers `{"behavior":"allow",
/// "updatedInput":{...input, "answers":{"<question text>":"<chosen label>"}}}`, and the
/// tool_result the model gets is `Your questions have been answered: "<question>"="<label>".
/// You can now continue with these answers in mind.`
#[tokio::test]
async fn ask_user_question() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    claude.send_user("ASK:Which color?|Red|Blue").await?;
    let mut prompts = Vec::new();
    let result = {
        let mut allow = allow_all(json!({ "Which color?": "Blue" }));
        let mut answer = |req: &Value| {
            prompts.push(req.clone());
            allow(req)
        };
        claude.run_turn(&mut answer).await?
    };
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0]["tool_name"], "AskUserQuestion");
    assert_eq!(prompts[0]["requires_user_interaction"], true);
    assert_eq!(
        prompts[0]["input"]["questions"][0]["options"][1]["label"],
        "Blue"
    );

    let last = s.api.message_requests().pop().context("no request")?;
    let results = last.tool_results();
    assert_eq!(results.len(), 1);
    let expected = r#"Your questions have been answered: "Which color?"="Blue"."#;
    assert!(results[0].1.starts_with(expected), "{results:?}");
    let text = result["result"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(&format!("Answer was: {expected}")),
        "{result}"
    );
    assert_eq!(claude.finish().await?, Some(0));
    Ok(())
}

#[tokio::test]
async fn message_sent_during_a_tool_is_folded_in() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    claude.send_user("SLOWTOOL:2").await?;
    // The second message goes out right after the tool is allowed, while it runs.
    let result = claude
        .run_turn_with(&mut allow_all(json!({})), Some("hello mid-turn"))
        .await?;
    assert_eq!(result["result"], "Echo: hello mid-turn", "{result}");
    let last = s.api.message_requests().pop().context("no request")?;
    assert_eq!(last.last_human_text().as_deref(), Some("hello mid-turn"));
    assert_eq!(last.tool_results().len(), 1, "the tool_result comes along");
    assert_eq!(claude.finish().await?, Some(0));
    Ok(())
}

#[tokio::test]
async fn deny_with_interrupt_then_new_prompt() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    claude.send_user("TOOL:curl --version").await?;
    let mut deny = |_: &Value| json!({ "behavior": "deny", "message": "no", "interrupt": true });
    let result = claude.run_turn(&mut deny).await?;
    assert_eq!(result["is_error"], true, "{result}");
    assert_eq!(result["terminal_reason"], "aborted_tools", "{result}");

    claude.send_user("after the denial").await?;
    let result = claude.run_turn(&mut no_prompts()).await?;
    assert_eq!(result["result"], "Echo: after the denial", "{result}");
    let last = s.api.message_requests().pop().context("no request")?;
    assert_eq!(last.last_human_text().as_deref(), Some("after the denial"));
    // The refused tool_result travels in the same user message as the new text.
    assert_eq!(last.tool_results().len(), 1);
    assert!(last.tool_results()[0].2);
    Ok(())
}

#[tokio::test]
async fn broken_streams_and_api_errors() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    for keyword in ["TRUNC", "SSEERR"] {
        claude.send_user(keyword).await?;
        let result = claude.run_turn(&mut no_prompts()).await?;
        assert_eq!(result["result"], "Recovered.", "{keyword}: {result}");
        let last = s.api.message_requests().pop().context("no request")?;
        assert!(
            !last.is_streaming(),
            "{keyword}: the retry is non-streaming"
        );
    }
    claude.send_user("ERR500").await?;
    let result = claude.run_turn(&mut no_prompts()).await?;
    assert_eq!(result["is_error"], true, "{result}");
    assert_eq!(result["api_error_status"], 500, "{result}");

    claude.send_user("still alive").await?;
    let result = claude.run_turn(&mut no_prompts()).await?;
    assert_eq!(result["result"], "Echo: still alive", "{result}");
    assert_eq!(claude.finish().await?, Some(0));
    Ok(())
}

#[tokio::test]
async fn interrupt_drops_the_slow_stream() -> anyhow::Result<()> {
    let s = setup().await?;
    s.api.set_chunk_delay(Duration::from_millis(200));
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    claude.send_user("SLOW").await?;
    s.api.wait_for_requests(1, TURN).await?;
    claude
        .send(&json!({
            "type": "control_request",
            "request_id": "int_1",
            "request": { "subtype": "interrupt" },
        }))
        .await?;
    let result = claude.run_turn(&mut no_prompts()).await?;
    assert_eq!(result["subtype"], "error_during_execution", "{result}");
    s.api.wait_until_idle(Duration::from_secs(10)).await?;
    let req = &s.api.message_requests()[0];
    assert!(req.client_disconnected, "the CLI should drop the stream");
    assert!(req.finished_at.is_some());
    Ok(())
}

#[tokio::test]
async fn multi_step_tool_loops() -> anyhow::Result<()> {
    let s = setup().await?;
    let mut claude = Claude::spawn(&s.api, &s.home, s.project.path(), &s.session_id)?;
    // `echo` is read-only, so the CLI runs these without asking.
    claude.send_user("STEPS:3").await?;
    let result = claude.run_turn(&mut no_prompts()).await?;
    assert_eq!(result["result"], "Done.", "{result}");
    let reqs = s.api.message_requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[3].tool_results()[0].1, "step 3");

    // Two writes in one turn: two prompts.
    let one = s.project.path().join("one.txt");
    let two = s.project.path().join("two.txt");
    claude
        .send_user(&format!("WRITE2:{} {}", one.display(), two.display()))
        .await?;
    let mut tools = Vec::new();
    let result = {
        let mut allow = allow_all(json!({}));
        let mut answer = |req: &Value| {
            tools.push(req["input"]["file_path"].clone());
            allow(req)
        };
        claude.run_turn(&mut answer).await?
    };
    assert_eq!(result["result"], "Done.", "{result}");
    assert_eq!(tools.len(), 2);
    assert_eq!(std::fs::read_to_string(&one)?, "one");
    assert_eq!(std::fs::read_to_string(&two)?, "two");
    assert_eq!(claude.finish().await?, Some(0));
    Ok(())
}
