//! One execution's run: a fresh claude in stream-json mode, started like a session's child
//! ([`crate::spawn`]: no shell, sanitised environment, own process group, the exec shim's
//! parent-death signal, a `CCRM_OWNER` marker of its own) and read with
//! [`common::child`]'s classifier.
//!
//! The prompt goes in as one user line; stdin stays open until the `result` (a pending
//! permission request would fail on EOF), then closes so claude exits. Tools: the daemon's
//! read-only `allowed_tools` plus the execution's `allowedTools` go to the CLI as
//! `--allowedTools`, so it runs them without asking; any other `can_use_tool` is denied at
//! once with a message the model sees (OCC's restricted tool access), and questions are
//! refused the same way, so nothing waits for a human. The timeout counts from here; at
//! the timeout or a cancel, the child's process group is killed and every process still
//! carrying its marker (the tools claude started in groups of their own) is swept.

use std::collections::VecDeque;
use std::time::Duration;

use common::child::{self, Block, ChildMsg};
use common::codec::{LineError, LineReader};
use common::workspace::{ExecResult, ExecUpdate, exec_code};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{Exec, ExecCtx};
use crate::spawn::{self, ChildSpec};

/// Longest stdout line accepted from claude.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Stderr lines kept to explain a failure.
const STDERR_TAIL: usize = 10;

/// How a run ended, before it becomes the last item.
enum End {
    Timeout,
    Cancelled,
    Exited(Option<std::process::ExitStatus>),
}

/// The claude arguments of an execution.
pub(super) fn claude_args(ctx: &ExecCtx, exec: &Exec) -> Vec<String> {
    let mut args: Vec<String> = child::STREAM_JSON_ARGS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push("--include-partial-messages".into());
    args.push(format!("--session-id={}", uuid::Uuid::new_v4()));
    args.push("--permission-mode=default".into());
    if let Some(model) = exec.args.model.as_ref().or(ctx.cfg.default_model.as_ref()) {
        args.push(format!("--model={model}"));
    }
    for tool in exec.allowed() {
        args.push(format!("--allowedTools={tool}"));
    }
    args.extend(ctx.cfg.extra_args.iter().cloned());
    args
}

/// Runs `exec` to its end and records the last item.
pub(super) async fn run(ctx: &ExecCtx, exec: &Exec, mut cancel: watch::Receiver<bool>) {
    let owner = exec.owner(&ctx.tag);
    let spec = ChildSpec {
        program: ctx.claude_bin.clone(),
        args: claude_args(ctx, exec),
        cwd: exec.cwd.clone(),
        env: ctx
            .cfg
            .child_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        owner: owner.clone(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(exec.args.timeout_secs);
    let mut child = match spawn::spawn(&spec, ctx.shim.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            exec.log.push(ExecUpdate::Error {
                code: exec_code::EXECUTION_FAILED.to_owned(),
                message: format!("cannot start claude ({}): {e}", ctx.claude_bin.display()),
            });
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    info!(execution = %exec.args.execution_id, pid, "execution started");
    let (Some(stdout), Some(stdin), Some(stderr)) =
        (child.stdout.take(), child.stdin.take(), child.stderr.take())
    else {
        spawn::signal_group(pid, Signal::SIGKILL);
        exec.log.push(ExecUpdate::Error {
            code: exec_code::EXECUTION_FAILED.to_owned(),
            message: "claude's stdio was not piped".into(),
        });
        return;
    };
    let (tail_tx, mut tail_rx) = mpsc::channel::<String>(STDERR_TAIL);
    let stderr_task = tokio::spawn(read_stderr(stderr, tail_tx));
    let mut lines = LineReader::new(stdout, MAX_LINE);
    let mut reader = Reader::new(exec);
    let prompt = child::user_line(&exec.args.prompt).to_string() + "\n";
    // Dropping stdin closes it; EOF is what ends claude once the run has its result.
    let mut stdin = Some(stdin);
    if let Some(w) = stdin.as_mut()
        && w.write_all(prompt.as_bytes()).await.is_err()
    {
        stdin = None;
    }

    let end = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Some(Ok(line)) => {
                    for reply in reader.line(&line) {
                        let text = reply.to_string() + "\n";
                        if let Some(w) = stdin.as_mut()
                            && w.write_all(text.as_bytes()).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    if reader.result.is_some() {
                        // The run is over: EOF lets claude exit.
                        stdin = None;
                    }
                }
                Some(Err(LineError::TooLong { .. } | LineError::NotUtf8)) => {}
                Some(Err(LineError::Io(_))) | None => break End::Exited(child.wait().await.ok()),
            },
            status = child.wait() => {
                // Drain what is buffered (a tool may still hold stdout open), briefly.
                let drain = async {
                    while let Some(Ok(line)) = lines.next_line().await {
                        let _ = reader.line(&line);
                    }
                };
                let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
                break End::Exited(status.ok());
            }
            () = tokio::time::sleep_until(deadline) => break End::Timeout,
            changed = cancel.changed() => {
                if changed.is_err() || *cancel.borrow() {
                    break End::Cancelled;
                }
            }
        }
    };
    drop(stdin);
    if matches!(end, End::Timeout | End::Cancelled) {
        spawn::signal_group(pid, Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    // Tools claude started run in process groups of their own; end any that outlive it.
    let swept = spawn::sweep_orphans(&owner);
    if !swept.is_empty() {
        info!(execution = %exec.args.execution_id, pids = ?swept, "killed processes left by the execution");
    }
    stderr_task.abort();
    let mut tail = VecDeque::new();
    while let Ok(line) = tail_rx.try_recv() {
        tail.push_back(line);
    }
    let last = match end {
        End::Timeout => ExecUpdate::Error {
            code: exec_code::EXECUTION_TIMEOUT.to_owned(),
            message: format!(
                "the execution ran longer than {}s (timeoutSecs); claude and its tools were killed",
                exec.args.timeout_secs
            ),
        },
        End::Cancelled => ExecUpdate::Error {
            code: exec_code::EXECUTION_CANCELLED.to_owned(),
            message: "the execution was cancelled; claude and its tools were killed".to_owned(),
        },
        End::Exited(status) => match reader.result.take() {
            Some(result) => ExecUpdate::Complete {
                exit_code: status
                    .and_then(|s| s.code())
                    .unwrap_or(i32::from(result.is_error)),
                result,
            },
            None => ExecUpdate::Error {
                code: exec_code::EXECUTION_FAILED.to_owned(),
                message: failure(status, &tail),
            },
        },
    };
    exec.log.push(last);
}

fn failure(status: Option<std::process::ExitStatus>, tail: &VecDeque<String>) -> String {
    let code = status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
    let mut msg = format!("claude ended without a result ({code})");
    if !tail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&tail.iter().cloned().collect::<Vec<_>>().join(" | "));
    }
    msg
}

async fn read_stderr(stderr: tokio::process::ChildStderr, tail: mpsc::Sender<String>) {
    let mut lines = LineReader::new(stderr, 64 * 1024);
    while let Some(line) = lines.next_line().await {
        let Ok(line) = line else { continue };
        if line.trim().is_empty() {
            continue;
        }
        warn!(stderr = %line, "execution's claude stderr");
        // The first lines say why claude failed; later ones are only logged.
        let _ = tail.try_send(line);
    }
}

/// Turns claude's stdout into output chunks and answers its control requests.
struct Reader<'a> {
    exec: &'a Exec,
    /// Text of the current block already went out as deltas.
    streamed: bool,
    /// Text went out since the last separator.
    wrote: bool,
    /// The next text starts a new block.
    new_block: bool,
    result: Option<ExecResult>,
}

impl<'a> Reader<'a> {
    fn new(exec: &'a Exec) -> Self {
        Self {
            exec,
            streamed: false,
            wrote: false,
            new_block: false,
            result: None,
        }
    }

    fn emit(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let mut chunk = String::new();
        if self.new_block && self.wrote {
            chunk.push_str("\n\n");
        }
        self.new_block = false;
        chunk.push_str(text);
        self.wrote = true;
        self.exec.log.push(ExecUpdate::Output { chunk });
    }

    /// Reads one stdout line; returns the lines to write back to claude.
    fn line(&mut self, line: &str) -> Vec<Value> {
        let Ok((_, msg)) = child::parse_line(line) else {
            return Vec::new();
        };
        match msg {
            ChildMsg::StreamEvent { event } => {
                let delta = event
                    .get("delta")
                    .filter(|d| d.get("type").and_then(Value::as_str) == Some("text_delta"))
                    .and_then(|d| d.get("text"))
                    .and_then(Value::as_str);
                if event.get("type").and_then(Value::as_str) == Some("content_block_delta")
                    && let Some(text) = delta
                {
                    self.streamed = true;
                    self.emit(text);
                }
            }
            ChildMsg::Assistant(a) => {
                for block in a.message.blocks() {
                    if let Block::Text { text } = block {
                        // Without deltas (a non-streamed retry), the block comes whole.
                        if !self.streamed {
                            self.emit(&text);
                        }
                        self.streamed = false;
                        self.new_block = true;
                    }
                }
            }
            ChildMsg::Result(r) => {
                self.result = Some(ExecResult {
                    cost_usd: r.total_cost_usd,
                    duration_ms: r.duration_ms,
                    turns: r.num_turns,
                    is_error: r.is_error,
                });
            }
            ChildMsg::ControlRequest {
                request_id,
                request,
            } => return vec![self.answer(&request_id, &request)],
            _ => {}
        }
        Vec::new()
    }

    /// Allows a tool the execution may use, denies anything else with a reason.
    fn answer(&self, request_id: &str, request: &Value) -> Value {
        if request.get("subtype").and_then(Value::as_str) != Some("can_use_tool") {
            return child::control_error(request_id, "not supported in a one-shot execution");
        }
        let tool = request
            .get("tool_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let input = request.get("input").cloned().unwrap_or_else(|| json!({}));
        if tool != "AskUserQuestion" && self.exec.allowed().any(|t| t == tool) {
            return child::control_success(
                request_id,
                json!({"behavior": "allow", "updatedInput": input}),
            );
        }
        let message = if tool == "AskUserQuestion" {
            "This is a one-shot execution: nobody can answer questions. Decide on your own and go on.".to_owned()
        } else {
            format!(
                "Tool `{tool}` is not allowed in this execution (restricted tools: {}). Do the task without it, or say what you would need.",
                self.exec.allowed().collect::<Vec<_>>().join(", ")
            )
        };
        info!(execution = %self.exec.args.execution_id, tool, "denied a tool");
        child::control_success(request_id, json!({"behavior": "deny", "message": message}))
    }
}
