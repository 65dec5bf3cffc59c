//! The real `ccrmd` for the benches that run whole turns (`rest_latency`, `replicas`,
//! `workspace`, `chat_latency`): its release binary found beside this bench's `ccrm-bot`,
//! started linked to a bot and stopped with SIGTERM when dropped, a wait until the bot has
//! it linked, a session started over REST, and a follower of a session's SSE stream that
//! reports each prompt event, each turn's first text delta and its result.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;

/// The real ccrmd, stopped with SIGTERM when dropped.
pub struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        testkit::process::stop(&mut self.0, Duration::from_secs(15));
    }
}

/// ccrmd from the same target dir as this bench's `ccrm-bot` (`target/release` under
/// `cargo bench`); it belongs to another package, so cargo does not build it for us.
pub fn ccrmd_bin() -> anyhow::Result<PathBuf> {
    let p = Path::new(env!("CARGO_BIN_EXE_ccrm-bot")).with_file_name("ccrmd");
    if !p.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p ccrm-daemon` first, then this bench again",
            p.display()
        );
    }
    Ok(p)
}

/// Starts `bin` on its own dirs under `dir`, with claude's environment `env`, linked to
/// the bot at `bot` with daemon key `key`, and waits up to `ready` for its "ccrmd ready"
/// line.
pub fn start_daemon(
    bin: &Path,
    dir: &Path,
    env: &[(String, String)],
    claude: &Path,
    bot: &str,
    key: &str,
    ready: Duration,
) -> anyhow::Result<Daemon> {
    let mut child = std::process::Command::new(bin)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("CCRM_RUNTIME_DIR", dir.join("run"))
        .env("CCRM_STATE_DIR", dir.join("state"))
        .env("CCRM_CLAUDE_BIN", claude)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("CCRM_BOT_URL", bot)
        .env("CCRM_BOT_API_KEY", key)
        .env("CCRM_LOG", "warn,ccrm_daemon::lifecycle=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting ccrmd")?;
    let stderr = child.stderr.take().context("stderr")?;
    let daemon = Daemon(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ccrmd ready")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(ready).context("ccrmd did not get ready")?;
    Ok(daemon)
}

/// Waits up to `wait` until `hub` has a daemon linked (the ccrmd just started).
pub async fn linked(hub: &ccrm_bot::hub::Hub, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    while hub.online().is_empty() {
        if Instant::now() >= deadline {
            bail!(
                "ccrmd never linked to the bot; if it predates the uplink, rebuild it with `cargo build --release -p ccrm-daemon`"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// What [`follow_sse`] reports of a turn, with the instant its chunk arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The `prompt` event: ccrmd accepted a prompt (the first SSE event of a turn).
    Prompt,
    /// The turn's first assistant text delta.
    Text,
    /// The turn's result.
    Result,
}

/// Follows a session's SSE stream; reports each prompt event, the first text delta of each
/// turn and each turn result.
pub async fn follow_sse(
    resp: reqwest::Response,
    tx: tokio::sync::mpsc::UnboundedSender<(Mark, Instant)>,
) -> anyhow::Result<()> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut in_turn = false;
    while let Some(chunk) = body.next().await {
        let at = Instant::now();
        buf.push_str(std::str::from_utf8(&chunk?)?);
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let Some(kind) = block
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(str::trim)
            else {
                continue;
            };
            let mark = match kind {
                "prompt" => Mark::Prompt,
                "turn_started" => {
                    in_turn = true;
                    continue;
                }
                "assistant_delta" if in_turn => {
                    in_turn = false;
                    Mark::Text
                }
                "turn_result" => Mark::Result,
                _ => continue,
            };
            let _ = tx.send((mark, at));
        }
    }
    Ok(())
}

/// Starts a session in `cwd` through the bot's REST API at `base` (`http://host:port`) and
/// returns its id.
pub async fn start_session(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    cwd: &Path,
) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/api/sessions"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "cwd": cwd }))
        .send()
        .await?;
    ensure!(r.status() == 201, "session start: {}", r.status());
    let v: serde_json::Value = r.json().await?;
    Ok(v["session"]["id"]
        .as_str()
        .context("session id")?
        .to_owned())
}
