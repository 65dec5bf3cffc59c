//! Loopback fakes for tests and the offline demo: a scripted Anthropic Messages API
//! that the real Claude Code CLI talks to, and a throwaway `$HOME` for that CLI.
//!
//! # Layout
//!
//! - [`anthropic`]: [`FakeApi`], the axum server, and [`RecordedRequest`].
//! - [`script`]: the pure keyword rules that pick a [`Reply`] from a request body.
//! - `state`: the lock and change-waiting the fakes share.
//! - `wire`: SSE frames, JSON Messages and error bodies for a [`Reply`].
//! - [`home`]: [`ClaudeHome`], [`claude_env`] and [`claude_bin`].
//! - [`telegram`]: [`FakeTelegram`], a fake Telegram Bot API for teloxide.
//! - [`discord`]: [`FakeDiscord`], a fake Discord (REST and gateway) for serenity.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use ccrm_testkit::{ClaudeHome, FakeApi, TEST_API_KEY, claude_bin, claude_env};
//!
//! let api = FakeApi::start().await?;
//! let project = tempfile::tempdir()?;
//! let home = ClaudeHome::new(TEST_API_KEY, &[project.path()])?;
//! let mut cmd = tokio::process::Command::new(claude_bin()?);
//! cmd.args(["-p", "--input-format", "stream-json", "--output-format", "stream-json"])
//!     .args(["--verbose", "--permission-prompt-tool", "stdio"])
//!     .envs(claude_env(&api, home.path()))
//!     .current_dir(project.path());
//! // write {"type":"user","message":{"role":"user","content":"hello"}} to stdin;
//! // the turn's result is "Echo: hello".
//! # Ok(())
//! # }
//! ```

pub mod anthropic;
pub mod direct;
pub mod discord;
pub mod home;
pub mod process;
pub mod script;
mod state;
pub mod telegram;
mod wire;

pub use anthropic::{DEFAULT_CHUNK_DELAY, FakeApi, RecordedRequest};
pub use direct::DirectClaude;
pub use discord::FakeDiscord;
pub use home::{
    ClaudeHome, TEST_API_KEY, approved_key_suffix, claude_bin, claude_env, claude_env_for_url,
    workspace_root,
};
pub use script::{Block, Reply};
pub use telegram::FakeTelegram;
