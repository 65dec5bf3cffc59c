//! ccrmd configuration: defaults, then a TOML file, then `CCRM_*` environment variables,
//! then command-line flags (the last wins). Loaded and validated once in `main`, then passed
//! down by value; nothing here is global.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Tools that only read, allowed without asking unless the config says otherwise.
pub const DEFAULT_ALLOWED_TOOLS: &[&str] = &[
    "Read",
    "Glob",
    "Grep",
    "LS",
    "NotebookRead",
    "TodoWrite",
    "BashOutput",
];

/// Permission modes the Claude Code CLI accepts (claude-protocol.md §6.1).
pub const PERMISSION_MODES: &[&str] = &[
    "default",
    "acceptEdits",
    "plan",
    "dontAsk",
    "auto",
    "bypassPermissions",
];

/// The settings of one ccrmd.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Holds the control socket and the pidfile (0700).
    pub runtime_dir: PathBuf,
    /// Holds session records, the log of a background daemon (0700).
    pub state_dir: PathBuf,
    /// The claude binary; found on `PATH` when unset.
    pub claude_bin: Option<PathBuf>,
    /// Model for sessions that do not name one.
    pub default_model: Option<String>,
    /// Permission mode for sessions that do not name one.
    pub default_permission_mode: String,
    /// Tools allowed without asking.
    pub allowed_tools: Vec<String>,
    /// Events kept per session in memory.
    pub event_log_capacity: usize,
    /// How long a graceful stop waits before it terminates the child.
    pub stop_grace: Duration,
    /// Ask the CLI for partial messages (streamed text deltas).
    pub partial_messages: bool,
    /// Extra arguments for every claude child.
    pub extra_args: Vec<String>,
    /// Extra environment for every claude child.
    pub child_env: BTreeMap<String, String>,
    /// The bot to keep an uplink to (`ws://host:port` or `wss://...`), if any; several
    /// replicas comma-separated (a TOML list is joined so), tried in turn.
    pub bot_url: Option<String>,
    /// The daemon API key for the bot (from `CCRM_BOT_API_KEY` or a 0600 key file).
    pub bot_api_key: Option<Secret>,
    /// Name of this machine as the bot shows it.
    pub hostname: String,
    /// Most one-shot executions that run at once.
    pub workers: usize,
    /// Most executions that wait for a worker; beyond it they are refused (`WORKERS_BUSY`).
    pub workers_queue: usize,
    /// Most bytes a workspace's zip may hold (unpacked, and as uploaded).
    pub workspace_max_bytes: u64,
    /// Most entries in a workspace's zip.
    pub workspace_max_files: usize,
    /// Most an entry (or the whole archive) may expand: unpacked / packed size.
    pub workspace_max_ratio: u64,
    /// PEM file of the CA (or self-signed certificate) that signs the bot's certificate,
    /// trusted for `wss://` instead of the public web roots.
    pub bot_ca_file: Option<PathBuf>,
    /// Allow a plain `ws://` bot URL to a host that is not loopback (the key travels in
    /// clear text).
    pub allow_insecure_bot: bool,
}

/// Default `workspace_max_bytes`: 100 MiB.
pub const DEFAULT_WORKSPACE_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// The default `workers`: one per CPU.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// A secret string: never printed by `Debug` or serialised in full.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    runtime_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    claude_bin: Option<PathBuf>,
    default_model: Option<String>,
    default_permission_mode: Option<String>,
    allowed_tools: Option<Vec<String>>,
    event_log_capacity: Option<usize>,
    stop_grace_secs: Option<f64>,
    partial_messages: Option<bool>,
    extra_args: Option<Vec<String>>,
    child_env: Option<BTreeMap<String, String>>,
    bot_url: Option<BotUrls>,
    bot_api_key_file: Option<PathBuf>,
    hostname: Option<String>,
    workers: Option<usize>,
    workers_queue: Option<usize>,
    workspace_max_bytes: Option<u64>,
    workspace_max_files: Option<usize>,
    workspace_max_ratio: Option<u64>,
    bot_ca_file: Option<PathBuf>,
    allow_insecure_bot: Option<bool>,
}

/// Values given on the command line (they override everything else).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--runtime-dir`.
    pub runtime_dir: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--claude-bin`.
    pub claude_bin: Option<PathBuf>,
    /// `--workers`.
    pub workers: Option<usize>,
}

impl Config {
    /// Loads the config: defaults → file (`--config`, `CCRM_CONFIG` or
    /// `$XDG_CONFIG_HOME/ccrm/ccrmd.toml` if it exists) → `CCRM_*` env → flags.
    pub fn load(over: &Overrides) -> anyhow::Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let explicit = over
            .config_file
            .clone()
            .or_else(|| env("CCRM_CONFIG").map(PathBuf::from));
        let path = explicit.or_else(|| Some(default_config_file()).filter(|p| p.exists()));
        let source = match &path {
            Some(path) => Some((path.clone(), read_text(path)?)),
            None => None,
        };
        let file: FileConfig = match &source {
            Some((path, text)) => common::tomlfile::parse(path, text)?,
            None => FileConfig::default(),
        };

        let mut cfg = Self {
            runtime_dir: file.runtime_dir.unwrap_or_else(default_runtime_dir),
            state_dir: file.state_dir.unwrap_or_else(default_state_dir),
            claude_bin: file.claude_bin,
            default_model: file.default_model,
            default_permission_mode: file
                .default_permission_mode
                .unwrap_or_else(|| "default".to_owned()),
            allowed_tools: file.allowed_tools.unwrap_or_else(|| {
                DEFAULT_ALLOWED_TOOLS
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect()
            }),
            event_log_capacity: file.event_log_capacity.unwrap_or(10_000),
            stop_grace: Duration::from_secs_f64(file.stop_grace_secs.unwrap_or(5.0)),
            partial_messages: file.partial_messages.unwrap_or(true),
            extra_args: file.extra_args.unwrap_or_default(),
            child_env: file.child_env.unwrap_or_default(),
            bot_url: file.bot_url.map(BotUrls::joined),
            bot_api_key: None,
            hostname: file.hostname.unwrap_or_else(default_hostname),
            workers: file.workers.unwrap_or_else(default_workers),
            workers_queue: file.workers_queue.unwrap_or(32),
            workspace_max_bytes: file
                .workspace_max_bytes
                .unwrap_or(DEFAULT_WORKSPACE_MAX_BYTES),
            workspace_max_files: file.workspace_max_files.unwrap_or(10_000),
            workspace_max_ratio: file.workspace_max_ratio.unwrap_or(100),
            bot_ca_file: file.bot_ca_file,
            allow_insecure_bot: file.allow_insecure_bot.unwrap_or(false),
        };
        let mut key_file = file.bot_api_key_file;

        if let Some(v) = env("CCRM_RUNTIME_DIR") {
            cfg.runtime_dir = v.into();
        }
        if let Some(v) = env("CCRM_STATE_DIR") {
            cfg.state_dir = v.into();
        }
        if let Some(v) = env("CCRM_CLAUDE_BIN") {
            cfg.claude_bin = Some(v.into());
        }
        if let Some(v) = env("CCRM_DEFAULT_MODEL") {
            cfg.default_model = Some(v);
        }
        if let Some(v) = env("CCRM_PERMISSION_MODE") {
            cfg.default_permission_mode = v;
        }
        if let Some(v) = env("CCRM_ALLOWED_TOOLS") {
            cfg.allowed_tools = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = env("CCRM_STOP_GRACE_SECS") {
            let secs: f64 = v.parse().with_context(|| {
                format!("CCRM_STOP_GRACE_SECS must be a number of seconds, got `{v}`")
            })?;
            cfg.stop_grace = Duration::try_from_secs_f64(secs)
                .with_context(|| format!("CCRM_STOP_GRACE_SECS out of range: `{v}`"))?;
        }
        if let Some(v) = env("CCRM_BOT_URL") {
            cfg.bot_url = Some(v);
        }
        if let Some(v) = env("CCRM_BOT_API_KEY_FILE") {
            key_file = Some(v.into());
        }
        if let Some(v) = env("CCRM_BOT_API_KEY") {
            cfg.bot_api_key = Some(Secret(v));
        } else if let Some(path) = &key_file {
            cfg.bot_api_key = Some(Secret(read_key_file(path)?));
        }
        if let Some(v) = env("CCRM_HOSTNAME") {
            cfg.hostname = v;
        }
        if let Some(v) = env("CCRM_PARTIAL_MESSAGES") {
            cfg.partial_messages = parse_bool(&v).context("CCRM_PARTIAL_MESSAGES")?;
        }
        if let Some(v) = env("CCRM_WORKERS") {
            cfg.workers = parse_num("CCRM_WORKERS", &v)?;
        }
        if let Some(v) = env("CCRM_WORKERS_QUEUE") {
            cfg.workers_queue = parse_num("CCRM_WORKERS_QUEUE", &v)?;
        }
        if let Some(v) = env("CCRM_WORKSPACE_MAX_BYTES") {
            cfg.workspace_max_bytes = parse_num("CCRM_WORKSPACE_MAX_BYTES", &v)?;
        }
        if let Some(v) = env("CCRM_WORKSPACE_MAX_FILES") {
            cfg.workspace_max_files = parse_num("CCRM_WORKSPACE_MAX_FILES", &v)?;
        }
        if let Some(v) = env("CCRM_WORKSPACE_MAX_RATIO") {
            cfg.workspace_max_ratio = parse_num("CCRM_WORKSPACE_MAX_RATIO", &v)?;
        }
        if let Some(v) = env("CCRM_BOT_CA_FILE") {
            cfg.bot_ca_file = Some(v.into());
        }
        if let Some(v) = env("CCRM_ALLOW_INSECURE_BOT") {
            cfg.allow_insecure_bot = parse_bool(&v).context("CCRM_ALLOW_INSECURE_BOT")?;
        }

        if let Some(v) = &over.runtime_dir {
            cfg.runtime_dir = v.clone();
        }
        if let Some(v) = &over.state_dir {
            cfg.state_dir = v.clone();
        }
        if let Some(v) = &over.claude_bin {
            cfg.claude_bin = Some(v.clone());
        }
        if let Some(v) = over.workers {
            cfg.workers = v;
        }
        if let Err(e) = cfg.validate() {
            // Point at the file's line when the file set the key the message is about.
            let key = e.key.filter(|k| {
                source
                    .as_ref()
                    .is_some_and(|(_, text)| common::tomlfile::key_line(text, k).is_some())
            });
            return Err(match (key, &source) {
                (Some(key), Some((path, text))) => {
                    common::tomlfile::FileError::at_key(path, text, key, e.message).into()
                }
                _ => anyhow::anyhow!(e.to_string()),
            });
        }
        Ok(cfg)
    }

    /// Checks values that would only fail later and less clearly.
    /// The bot URLs of `bot_url`, in order (empty when unset).
    pub fn bot_urls(&self) -> Vec<String> {
        self.bot_url.as_deref().map(split_urls).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if !PERMISSION_MODES.contains(&self.default_permission_mode.as_str()) {
            return Err(Invalid::key(
                "default_permission_mode",
                format!(
                    "`{}` is not a permission mode; use one of {}",
                    self.default_permission_mode,
                    PERMISSION_MODES.join(", ")
                ),
            ));
        }
        if self.event_log_capacity == 0 {
            return Err(Invalid::key("event_log_capacity", "must be at least 1"));
        }
        if !(1..=1024).contains(&self.workers) {
            return Err(Invalid::key("workers", "must be between 1 and 1024"));
        }
        if self.workers_queue > 100_000 {
            return Err(Invalid::key("workers_queue", "must be at most 100000"));
        }
        if self.workspace_max_bytes == 0 {
            return Err(Invalid::key("workspace_max_bytes", "must be at least 1"));
        }
        if self.workspace_max_files == 0 {
            return Err(Invalid::key("workspace_max_files", "must be at least 1"));
        }
        if self.workspace_max_ratio == 0 {
            return Err(Invalid::key("workspace_max_ratio", "must be at least 1"));
        }
        if !self.runtime_dir.is_absolute() {
            return Err(Invalid::key("runtime_dir", "must be an absolute path"));
        }
        if !self.state_dir.is_absolute() {
            return Err(Invalid::key("state_dir", "must be an absolute path"));
        }
        for url in self.bot_urls() {
            let url = &url;
            let Some(host) = ws_host(url) else {
                return Err(Invalid::key(
                    "bot_url",
                    format!("`{url}` must be a ws:// or wss:// URL with a host"),
                ));
            };
            if url.starts_with("ws://") && !is_loopback_host(&host) && !self.allow_insecure_bot {
                return Err(Invalid::key(
                    "bot_url",
                    format!(
                        "`{url}` is plain ws:// to {host}, which is not this machine: the \
                         daemon key would cross the network in clear text. Use wss:// (the \
                         bot's tls_cert/tls_key, or a TLS reverse proxy; bot_ca_file for a \
                         private CA), or set allow_insecure_bot = true \
                         (CCRM_ALLOW_INSECURE_BOT=1) if the network is private"
                    ),
                ));
            }
            if self.bot_api_key.is_none() {
                return Err(Invalid::key(
                    "bot_url",
                    "is set but there is no API key: set CCRM_BOT_API_KEY or \
                     bot_api_key_file (create one with `ccrm-bot keys create <name> --kind daemon`)",
                ));
            }
        }
        if let Some(ca) = &self.bot_ca_file
            && !ca.is_file()
        {
            return Err(Invalid::key(
                "bot_ca_file",
                format!(
                    "{} is not a readable file (a PEM CA certificate)",
                    ca.display()
                ),
            ));
        }
        Ok(())
    }

    /// The control socket.
    pub fn socket_path(&self) -> PathBuf {
        self.runtime_dir.join("ccrmd.sock")
    }

    /// The pidfile (also the single-instance lock).
    pub fn pid_path(&self) -> PathBuf {
        self.runtime_dir.join("ccrmd.pid")
    }

    /// Where session records live.
    pub fn sessions_dir(&self) -> PathBuf {
        self.state_dir.join("sessions")
    }

    /// Where workspaces live (0700), one directory each.
    pub fn workspaces_dir(&self) -> PathBuf {
        self.state_dir.join("workspaces")
    }

    /// Where execution records live (0700).
    pub fn executions_dir(&self) -> PathBuf {
        self.state_dir.join("executions")
    }

    /// Log file of a daemon started in the background.
    pub fn log_path(&self) -> PathBuf {
        self.state_dir.join("ccrmd.log")
    }
}

/// A value that parsed but is not allowed: the key and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The config key (TOML name).
    pub key: Option<&'static str>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl Invalid {
    fn key(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key: Some(key),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key {
            Some(k) => write!(f, "{k}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Invalid {}

/// The URLs of a comma-separated `bot_url`.
fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `bot_url` in the TOML file: one URL or a list of replicas.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BotUrls {
    One(String),
    Many(Vec<String>),
}

impl BotUrls {
    /// The comma-separated form `bot_url` is kept in (as `CCRM_BOT_URL` gives it).
    fn joined(self) -> String {
        match self {
            Self::One(url) => url,
            Self::Many(urls) => urls.join(","),
        }
    }
}

/// The host of a `ws://` or `wss://` URL (brackets of an IPv6 literal removed).
pub fn ws_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']').map(|(h, _)| h)?
    } else {
        authority.split(':').next().unwrap_or("")
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Whether `host` is this machine: `localhost` or a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads a key file, refusing one that others can read.
pub fn read_key_file(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read bot API key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "bot API key file {} is readable by others; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let key = std::fs::read_to_string(path)?.trim().to_owned();
    if key.is_empty() {
        bail!("bot API key file {} is empty", path.display());
    }
    Ok(key)
}

fn default_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn parse_num<T: std::str::FromStr>(var: &str, v: &str) -> anyhow::Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{var} must be a whole number, got `{v}`"))
}

fn parse_bool(v: &str) -> anyhow::Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("expected true or false, got `{v}`"),
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if Path::new(&v).is_absolute() => PathBuf::from(v),
        _ => home().join(fallback),
    }
}

/// `$XDG_CONFIG_HOME` (`~/.config`).
pub fn config_home() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config")
}

/// `$HOME` (`/` when unset).
pub fn home_dir() -> PathBuf {
    home()
}

/// `$XDG_CONFIG_HOME/ccrm/ccrmd.toml`.
pub fn default_config_file() -> PathBuf {
    xdg("XDG_CONFIG_HOME", ".config")
        .join("ccrm")
        .join("ccrmd.toml")
}

/// `$XDG_STATE_HOME/ccrm`.
pub fn default_state_dir() -> PathBuf {
    xdg("XDG_STATE_HOME", ".local/state").join("ccrm")
}

/// `$XDG_RUNTIME_DIR/ccrm`, else `/tmp/ccrm-<uid>`.
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(v) if Path::new(&v).is_absolute() => PathBuf::from(v).join("ccrm"),
        _ => std::env::temp_dir().join(format!("ccrm-{}", nix::unistd::getuid())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_parse_and_unknown_keys_are_refused() {
        let f: FileConfig =
            toml::from_str("stop_grace_secs = 1.5\nallowed_tools = [\"Read\"]").expect("parse");
        assert_eq!(f.stop_grace_secs, Some(1.5));
        assert!(toml::from_str::<FileConfig>("no_such_key = 1").is_err());
    }

    #[test]
    fn validate_rejects_bad_mode() {
        let mut cfg = Config {
            runtime_dir: "/tmp/a".into(),
            state_dir: "/tmp/b".into(),
            claude_bin: None,
            default_model: None,
            default_permission_mode: "default".into(),
            allowed_tools: vec![],
            event_log_capacity: 10,
            stop_grace: Duration::from_secs(1),
            partial_messages: true,
            extra_args: vec![],
            child_env: BTreeMap::new(),
            bot_url: None,
            bot_api_key: None,
            hostname: "h".into(),
            workers: 2,
            workers_queue: 32,
            workspace_max_bytes: DEFAULT_WORKSPACE_MAX_BYTES,
            workspace_max_files: 10_000,
            workspace_max_ratio: 100,
            bot_ca_file: None,
            allow_insecure_bot: false,
        };
        assert!(cfg.validate().is_ok());
        cfg.workers = 0;
        assert!(cfg.validate().is_err(), "workers");
        cfg.workers = 2;
        cfg.default_permission_mode = "yolo".into();
        assert!(cfg.validate().is_err());
        cfg.default_permission_mode = "default".into();
        cfg.bot_url = Some("http://x".into());
        assert!(cfg.validate().is_err(), "scheme");
        cfg.bot_url = Some("ws://127.0.0.1:7878".into());
        assert!(cfg.validate().is_err(), "no key");
        cfg.bot_api_key = Some(Secret("k".into()));
        assert!(cfg.validate().is_ok());
        cfg.bot_url = Some("ws://bot.example.com:7878".into());
        let e = cfg.validate().expect_err("plain ws:// off this machine");
        assert_eq!(e.key, Some("bot_url"));
        assert!(e.message.contains("allow_insecure_bot"), "{e}");
        cfg.allow_insecure_bot = true;
        assert!(cfg.validate().is_ok());
        cfg.allow_insecure_bot = false;
        cfg.bot_url = Some("wss://bot.example.com".into());
        assert!(cfg.validate().is_ok());
        assert!(
            !format!("{cfg:?}").contains("\"k\""),
            "key redacted in Debug"
        );
        assert!(
            !serde_json::to_string(&cfg)
                .unwrap_or_default()
                .contains("\"k\"")
        );
    }

    #[test]
    fn ws_hosts_and_loopback() {
        assert_eq!(
            ws_host("ws://127.0.0.1:7878/x").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(ws_host("wss://[::1]:443").as_deref(), Some("::1"));
        assert_eq!(
            ws_host("ws://u@Host.example").as_deref(),
            Some("Host.example")
        );
        assert_eq!(ws_host("ws://"), None);
        assert_eq!(ws_host("http://h"), None);
        for h in ["localhost", "127.0.0.1", "127.9.9.9", "::1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "bot.example.com", "::2"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn bools() {
        assert!(parse_bool("Yes").expect("b"));
        assert!(!parse_bool("0").expect("b"));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn bot_url_takes_one_url_or_a_list_of_replicas() {
        let one: FileConfig = toml::from_str("bot_url = \"ws://127.0.0.1:1\"").expect("one");
        assert_eq!(
            one.bot_url.map(BotUrls::joined).as_deref(),
            Some("ws://127.0.0.1:1")
        );
        let many: FileConfig =
            toml::from_str("bot_url = [\"ws://127.0.0.1:1\", \"ws://127.0.0.1:2\"]").expect("list");
        let joined = many.bot_url.map(BotUrls::joined).unwrap_or_default();
        assert_eq!(
            split_urls(&joined),
            ["ws://127.0.0.1:1", "ws://127.0.0.1:2"]
        );
        // CCRM_BOT_URL's comma-separated form, spaces and empty items forgiven.
        assert_eq!(split_urls(" ws://a:1 ,, wss://b "), ["ws://a:1", "wss://b"]);
    }
}
