//! Loopback fakes for tests: a scripted Anthropic Messages API that the real Claude Code
//! CLI talks to, a throwaway `$HOME` for that CLI, and fake Telegram and Discord servers
//! for the bot's chat adapters.
//!
//! The scripted model and the home are the demo crate's (`ccrm_demo`, which the shipped
//! `ccrm up --demo` links); this crate re-exports them at their old paths and adds what
//! only tests need. Nothing here ships in a product binary: it is a dev-dependency only.
//!
//! # Layout
//!
//! - [`anthropic`]: [`FakeApi`], the axum server, and [`RecordedRequest`] (from
//!   `ccrm_demo`).
//! - [`script`]: the pure keyword rules that pick a [`Reply`] from a request body (from
//!   `ccrm_demo`).
//! - [`home`]: [`ClaudeHome`] and [`claude_env`] (from `ccrm_demo`), and [`claude_bin`].
//! - `state`: the lock and change-waiting the chat fakes share.
//! - [`process`] and [`direct`]: child-process helpers and [`DirectClaude`], the CLI
//!   driven with no ccrm in between.
//! - [`telegram`]: [`FakeTelegram`], a fake Telegram Bot API for teloxide.
//! - [`discord`]: [`FakeDiscord`], a fake Discord (REST and gateway) for serenity.
//! - [`postgres`]: [`PgCluster`], a throwaway PostgreSQL cluster (initdb in a temporary
//!   directory, socket only), for the bot's tests on its second backend.
//! - [`zips`]: zip archives written in test code, good and hostile (no binary fixtures).
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

pub use demo::{anthropic, script};

pub mod direct;
pub mod discord;
pub mod home;
pub mod postgres;
pub mod process;
mod state;
pub mod telegram;
pub mod zips;

pub use anthropic::{DEFAULT_CHUNK_DELAY, FakeApi, RecordedRequest};
pub use direct::DirectClaude;
pub use discord::FakeDiscord;
pub use home::{
    ClaudeHome, TEST_API_KEY, approved_key_suffix, claude_bin, claude_env, claude_env_for_url,
    workspace_root,
};
pub use postgres::PgCluster;
pub use script::{Block, Reply};
pub use telegram::FakeTelegram;
