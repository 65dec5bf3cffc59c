//! A throwaway `$HOME` for the Claude Code CLI, and the environment that points the CLI
//! at a [`FakeApi`] (or any API URL).
//!
//! The `.claude.json` written here skips the first-run screens (protocol §9): the
//! onboarding connectivity check, the custom API key question and the workspace trust
//! question. In `-p` (stream-json) mode only the key and the fake URL really matter, but
//! the same home also lets the TUI start under tmux. Where to find the CLI binary is the
//! test kit's business (`ccrm_testkit::home::claude_bin`); the demo runs whatever
//! `claude` the daemon is configured with.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::Context as _;
use serde_json::{Map, Value, json};
use tempfile::TempDir;

use crate::FakeApi;

/// The API key the CLI sends to the fake (in tests and in the demo). Its last 20
/// characters are pre-approved in [`ClaudeHome`].
pub const TEST_API_KEY: &str = "sk-ant-test-0123456789abcdefghij";

/// A temporary home directory set up for the CLI. Deleted on drop.
#[derive(Debug)]
pub struct ClaudeHome {
    dir: TempDir,
    api_key: String,
    trusted: Mutex<Vec<PathBuf>>,
}

impl ClaudeHome {
    /// Creates the home, with `$HOME/.claude/` and a `$HOME/.claude.json` that marks
    /// onboarding done, approves `api_key` (its last 20 characters, or all of it if
    /// shorter), and trusts each of `trusted_dirs` (made absolute).
    pub fn new(api_key: &str, trusted_dirs: &[&Path]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ccrm-claude-home-")
            .tempdir()
            .context("creating a temporary HOME")?;
        std::fs::create_dir_all(dir.path().join(".claude")).context("creating $HOME/.claude")?;
        let trusted = trusted_dirs
            .iter()
            .map(|d| absolute(d))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let home = Self {
            dir,
            api_key: api_key.to_owned(),
            trusted: Mutex::new(trusted),
        };
        home.write_config()?;
        Ok(home)
    }

    /// The home directory (the value for `HOME`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$HOME/.claude.json`.
    pub fn config_file(&self) -> PathBuf {
        self.path().join(".claude.json")
    }

    /// `$HOME/.claude`, where transcripts (`projects/`) and settings live.
    pub fn claude_dir(&self) -> PathBuf {
        self.path().join(".claude")
    }

    /// Trusts one more project directory and rewrites `.claude.json`, keeping whatever
    /// the CLI itself has written there meanwhile.
    pub fn trust(&self, dir: &Path) -> anyhow::Result<()> {
        let dir = absolute(dir)?;
        {
            let mut trusted = self.trusted.lock().unwrap_or_else(PoisonError::into_inner);
            if !trusted.contains(&dir) {
                trusted.push(dir);
            }
        }
        self.write_config()
    }

    /// The transcript of a session, `$HOME/.claude/projects/*/<session_id>.jsonl`, if it
    /// exists. Looked up by id, since the folder name is a mangled cwd (protocol §7.3).
    pub fn transcript(&self, session_id: &str) -> Option<PathBuf> {
        let file = format!("{session_id}.jsonl");
        std::fs::read_dir(self.claude_dir().join("projects"))
            .ok()?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join(&file))
            .find(|p| p.is_file())
    }

    /// [`claude_env`] for this home.
    pub fn env(&self, api: &FakeApi) -> Vec<(String, String)> {
        claude_env(api, self.path())
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let file = self.config_file();
        // Merge into what is there: the CLI adds its own keys while it runs.
        let mut config = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|v| match v {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default();
        config.insert("hasCompletedOnboarding".to_owned(), Value::Bool(true));
        config.insert(
            "customApiKeyResponses".to_owned(),
            json!({ "approved": [approved_key_suffix(&self.api_key)], "rejected": [] }),
        );
        let projects = config
            .entry("projects")
            .or_insert_with(|| Value::Object(Map::new()));
        if !projects.is_object() {
            *projects = Value::Object(Map::new());
        }
        if let Value::Object(projects) = projects {
            let trusted = self.trusted.lock().unwrap_or_else(PoisonError::into_inner);
            for dir in trusted.iter() {
                let key = dir.to_string_lossy().into_owned();
                let entry = projects
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(entry) = entry {
                    entry.insert("hasTrustDialogAccepted".to_owned(), Value::Bool(true));
                } else {
                    *entry = json!({ "hasTrustDialogAccepted": true });
                }
            }
        }
        let text = serde_json::to_string_pretty(&Value::Object(config))
            .context("serializing .claude.json")?;
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))
    }
}

/// What the CLI stores in `customApiKeyResponses.approved`: the last 20 characters of
/// the key, or the whole key if it is shorter.
pub fn approved_key_suffix(key: &str) -> String {
    let count = key.chars().count();
    key.chars().skip(count.saturating_sub(20)).collect()
}

/// The environment for a CLI that talks to `api` and keeps its state in `home`.
/// See [`claude_env_for_url`].
pub fn claude_env(api: &FakeApi, home: &Path) -> Vec<(String, String)> {
    claude_env_for_url(&api.base_url(), home)
}

/// The environment for a CLI that talks to the API at `base_url` and keeps its state in
/// `home`. Add these to the inherited environment (no `env_clear` needed):
///
/// - `HOME`, `ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY` = [`TEST_API_KEY`];
/// - `DISABLE_TELEMETRY`, `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`,
///   `DISABLE_AUTOUPDATER`, `DISABLE_ERROR_REPORTING`: no side traffic;
/// - `DISABLE_NON_ESSENTIAL_MODEL_CALLS`: no extra model calls beside the turn's own;
/// - `CLAUDE_CODE_MAX_RETRIES=1`: an API error test takes about a second, not three
///   minutes (protocol §8.2);
/// - `IS_SANDBOX=1`: lets `bypassPermissions` run as root (CI runs as root).
pub fn claude_env_for_url(base_url: &str, home: &Path) -> Vec<(String, String)> {
    let pairs: [(&str, &str); 9] = [
        ("ANTHROPIC_BASE_URL", base_url),
        ("ANTHROPIC_API_KEY", TEST_API_KEY),
        ("DISABLE_TELEMETRY", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
        ("DISABLE_NON_ESSENTIAL_MODEL_CALLS", "1"),
        ("CLAUDE_CODE_MAX_RETRIES", "1"),
        ("IS_SANDBOX", "1"),
    ];
    let mut env = vec![("HOME".to_owned(), home.to_string_lossy().into_owned())];
    env.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(cwd.join(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_suffix() {
        assert_eq!(approved_key_suffix(TEST_API_KEY), "0123456789abcdefghij");
        assert_eq!(approved_key_suffix("short"), "short");
    }

    #[test]
    fn config_has_trust_and_survives_cli_edits() -> anyhow::Result<()> {
        let project = tempfile::tempdir()?;
        let home = ClaudeHome::new(TEST_API_KEY, &[project.path()])?;
        assert!(home.claude_dir().is_dir());
        let read = || -> anyhow::Result<Value> {
            Ok(serde_json::from_slice(&std::fs::read(home.config_file())?)?)
        };
        let v = read()?;
        assert_eq!(v["hasCompletedOnboarding"], true);
        assert_eq!(
            v["customApiKeyResponses"]["approved"][0],
            "0123456789abcdefghij"
        );
        let key = project.path().to_string_lossy().into_owned();
        assert_eq!(v["projects"][&key]["hasTrustDialogAccepted"], true);

        // The CLI adds keys of its own; trust() keeps them.
        let mut edited = v;
        edited["numStartups"] = json!(3);
        std::fs::write(home.config_file(), edited.to_string())?;
        let other = tempfile::tempdir()?;
        home.trust(other.path())?;
        let v = read()?;
        assert_eq!(v["numStartups"], 3);
        assert_eq!(v["projects"][&key]["hasTrustDialogAccepted"], true);
        let other_key = other.path().to_string_lossy().into_owned();
        assert_eq!(v["projects"][&other_key]["hasTrustDialogAccepted"], true);
        Ok(())
    }

    #[test]
    fn env_points_at_url() {
        let env = claude_env_for_url("http://127.0.0.1:9", Path::new("/h"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/h"));
        assert_eq!(get("ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:9"));
        assert_eq!(get("ANTHROPIC_API_KEY"), Some(TEST_API_KEY));
        assert_eq!(get("CLAUDE_CODE_MAX_RETRIES"), Some("1"));
    }
}
