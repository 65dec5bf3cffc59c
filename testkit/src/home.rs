//! Where tests find the pinned Claude Code CLI ([`claude_bin`], [`workspace_root`]).
//!
//! The throwaway `$HOME` ([`ClaudeHome`]) and the environment that points the CLI at a
//! fake model ([`claude_env`]) belong to the demo crate (`ccrm_demo::home`), because
//! `ccrm up --demo` needs them too; they are re-exported here at their old paths. Only
//! the lookup of the CLI binary is test-only.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use demo::home::{
    ClaudeHome, TEST_API_KEY, approved_key_suffix, claude_env, claude_env_for_url,
};

/// Environment variable that overrides where [`claude_bin`] looks.
pub const CLAUDE_BIN_ENV: &str = "CCRM_CLAUDE_BIN";

/// The Claude Code CLI to run: `$CCRM_CLAUDE_BIN` if set, else
/// `<tools>/claude-code-<CLAUDE_VERSION>/node_modules/.bin/claude`, where `<tools>` is
/// `$CCRM_TOOLS_DIR` or `<workspace root>/.tools` (the layout `scripts/install-claude.sh`
/// makes).
pub fn claude_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(CLAUDE_BIN_ENV).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        anyhow::ensure!(
            bin.is_file(),
            "{CLAUDE_BIN_ENV}={} does not name a file",
            bin.display()
        );
        return Ok(bin);
    }
    let root = workspace_root();
    let version_file = root.join("CLAUDE_VERSION");
    let version = std::fs::read_to_string(&version_file)
        .with_context(|| format!("reading {}", version_file.display()))?;
    let version = version.trim();
    let tools = std::env::var_os("CCRM_TOOLS_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| root.join(".tools"), PathBuf::from);
    let bin = tools
        .join(format!("claude-code-{version}"))
        .join("node_modules/.bin/claude");
    anyhow::ensure!(
        bin.exists(),
        "Claude Code CLI {version} not found at {}; run `scripts/install-claude.sh` \
         (or set {CLAUDE_BIN_ENV})",
        bin.display()
    );
    Ok(bin)
}

/// The workspace root: the parent of this crate's folder.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}
