//! Session records on disk (`<state_dir>/sessions/<id>.json`, 0600), so a restarted ccrmd
//! still lists its sessions and can resume them. Written atomically (temp file + rename)
//! whenever a session's settings or end state change.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use common::event::SessionState;
use common::ids::SessionId;
use serde::{Deserialize, Serialize};

/// What is kept of a session across daemon restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id.
    pub id: SessionId,
    /// Human name.
    #[serde(default)]
    pub name: Option<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Permission mode.
    pub permission_mode: String,
    /// Auto-allow opt-in.
    #[serde(default)]
    pub auto_allow: bool,
    /// Tools allowed without asking.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// Tools allowed for the rest of the session.
    #[serde(default)]
    pub session_allowed_tools: Vec<String>,
    /// Creation time.
    pub created_ms: u64,
    /// Last known state.
    pub state: SessionState,
    /// Why it stopped or failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether the CLI has a transcript for it (a first turn ran or it was resumed).
    #[serde(default)]
    pub has_transcript: bool,
    /// Extra arguments for this session's claude (`ccrm start --claude-args`), kept so a
    /// resume or an attach runs claude the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claude_args: Vec<String>,
}

/// Writes `rec` atomically.
pub fn save(dir: &Path, rec: &SessionRecord) -> anyhow::Result<()> {
    let path = dir.join(format!("{}.json", rec.id));
    let tmp = dir.join(format!(".{}.json.tmp", rec.id));
    let data = serde_json::to_vec_pretty(rec)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&data)?;
    f.sync_data()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads every record in `dir`; unreadable files are reported and skipped.
pub fn load_all(dir: &Path) -> Vec<SessionRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|b| serde_json::from_slice::<SessionRecord>(&b).map_err(Into::into))
        {
            Ok(rec) => out.push(rec),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "skipping unreadable session record")
            }
        }
    }
    out.sort_by_key(|r| r.created_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().expect("tmp");
        let rec = SessionRecord {
            id: SessionId::new(),
            name: Some("x".into()),
            cwd: "/tmp".into(),
            model: None,
            permission_mode: "default".into(),
            auto_allow: false,
            allowed_tools: vec!["Read".into()],
            session_allowed_tools: vec![],
            created_ms: 5,
            state: SessionState::Idle,
            reason: None,
            has_transcript: true,
            claude_args: vec!["--append-system-prompt".into(), "be brief".into()],
        };
        save(dir.path(), &rec).expect("save");
        std::fs::write(dir.path().join("junk.json"), "{").expect("junk");
        assert_eq!(load_all(dir.path()), vec![rec]);
    }
}
