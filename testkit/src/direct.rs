//! [`DirectClaude`]: the Claude Code CLI driven straight over stream-json, with no ccrm in
//! between. Benchmarks use it as the baseline that ccrmd and the bot are compared against,
//! with exactly the flags ccrmd passes.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Bound for every wait.
const WAIT: Duration = Duration::from_secs(60);

/// A claude child driven directly over stream-json (killed when dropped).
pub struct DirectClaude {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl DirectClaude {
    /// Starts claude in `cwd` with `env` and waits for its `initialize` answer.
    pub async fn start(bin: &Path, env: &[(String, String)], cwd: &Path) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(bin)
            .args(common::child::STREAM_JSON_ARGS)
            .args(["--include-partial-messages", "--permission-mode=default"])
            .arg(format!("--session-id={}", uuid::Uuid::new_v4()))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut d = Self {
            _child: child,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
        };
        d.write(r#"{"type":"control_request","request_id":"init","request":{"subtype":"initialize","hooks":null}}"#).await?;
        d.until(|l| l.contains("\"control_response\"")).await?;
        Ok(d)
    }

    /// Writes one stdin line.
    pub async fn write(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Reads stdout until a line matches `pred` (bounded).
    pub async fn until(&mut self, pred: impl Fn(&str) -> bool) -> anyhow::Result<()> {
        tokio::time::timeout(WAIT, async {
            loop {
                let Some(line) = self.lines.next_line().await? else {
                    bail!("claude exited")
                };
                if pred(&line) {
                    return Ok(());
                }
            }
        })
        .await
        .context("claude went silent")?
    }

    /// One turn; returns the time to the first text delta and when the prompt was written.
    pub async fn turn(&mut self, text: &str) -> anyhow::Result<(Duration, SystemTime)> {
        let line = json!({"type":"user","message":{"role":"user","content":text}}).to_string();
        let sent = SystemTime::now();
        let t0 = Instant::now();
        self.write(&line).await?;
        self.until(|l| l.contains("\"text_delta\"")).await?;
        let first = t0.elapsed();
        self.until(|l| l.contains("\"type\":\"result\"")).await?;
        Ok((first, sent))
    }
}
