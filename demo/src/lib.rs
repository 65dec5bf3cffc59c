//! The offline demo model that `ccrm up --demo` serves: a scripted Anthropic Messages
//! API on loopback that the real Claude Code CLI talks to, and a throwaway `$HOME` that
//! points the CLI at it, so the whole product runs without an Anthropic account.
//!
//! This crate is what the shipped `ccrm` binary links for the demo, and nothing more.
//! The test kit (`ccrm-testkit`) builds on it: it re-exports these modules at the same
//! paths and adds the test-only fakes (Telegram, Discord) and helpers around them.
//!
//! # Layout
//!
//! - [`anthropic`]: [`FakeApi`], the axum server, and [`RecordedRequest`].
//! - [`script`]: the pure keyword rules that pick a [`Reply`] from a request body.
//! - [`prompts`]: the natural prompts on top of them (`write a hello world file`, ...),
//!   listed by `ccrm up --demo`.
//! - `wire`: SSE frames, JSON Messages and error bodies for a [`Reply`].
//! - [`home`]: [`ClaudeHome`] and [`claude_env`], the environment that points the CLI
//!   at a [`FakeApi`].
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(project: &std::path::Path) -> anyhow::Result<()> {
//! use ccrm_demo::{ClaudeHome, FakeApi, TEST_API_KEY, claude_env};
//!
//! let api = FakeApi::start().await?;
//! let home = ClaudeHome::new(TEST_API_KEY, &[project])?;
//! let mut cmd = tokio::process::Command::new("claude");
//! cmd.envs(claude_env(&api, home.path())).current_dir(project);
//! // Keep `api` and `home` alive for as long as the CLI runs.
//! # Ok(())
//! # }
//! ```

pub mod anthropic;
pub mod home;
pub mod prompts;
pub mod script;
mod wire;

pub use anthropic::{DEFAULT_CHUNK_DELAY, FakeApi, RecordedRequest};
pub use home::{ClaudeHome, TEST_API_KEY, approved_key_suffix, claude_env, claude_env_for_url};
pub use script::{Block, Reply};
