//! ccrm-bot configuration: defaults, then a TOML file, then `CCRM_BOT_*` environment
//! variables, then command-line flags (the last wins), like ccrmd's. Loaded and validated
//! once in `main` and passed down by value; nothing here is global.
//!
//! Secrets (chat platform tokens) are read from the environment only, never from the file,
//! and [`BotConfig`]'s `Debug` and `Serialize` output redacts them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize, Serializer};

/// Default listen address: loopback only, so nothing is exposed until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// The Telegram Bot API.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// Discord's API host (serenity appends `/api/v10/...`).
pub const DEFAULT_DISCORD_API_URL: &str = "https://discord.com";

/// The database file's name inside `data_dir`.
pub const DB_FILE: &str = "ccrm.db";

/// The settings of one ccrm-bot.
#[derive(Clone, PartialEq, Serialize)]
pub struct BotConfig {
    /// Address the HTTP/WebSocket server binds.
    pub listen: SocketAddr,
    /// Holds the database (0700).
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most events one page request may return.
    pub events_page_max: u32,
    /// A daemon not heard from for this long is considered dead and its link closed.
    pub daemon_timeout_secs: u64,
    /// How often the bot pings a daemon link.
    pub ping_interval_secs: u64,
    /// Telegram bot token (`CCRM_BOT_TELEGRAM_TOKEN`; environment only).
    #[serde(serialize_with = "redacted")]
    pub telegram_token: Option<String>,
    /// Discord bot token (`CCRM_BOT_DISCORD_TOKEN`; environment only).
    #[serde(serialize_with = "redacted")]
    pub discord_token: Option<String>,
    /// Telegram user ids allowed to drive sessions (everyone else is refused).
    pub telegram_allowed_users: Vec<i64>,
    /// The Telegram Bot API base URL (tests point it at a loopback fake).
    pub telegram_api_url: String,
    /// Discord user ids allowed to drive sessions.
    pub discord_allowed_users: Vec<u64>,
    /// Discord role ids whose members may drive sessions.
    pub discord_allowed_roles: Vec<u64>,
    /// Discord servers (guild ids) to register the slash commands in.
    pub discord_guilds: Vec<u64>,
    /// Register the slash commands globally too (always, when no guild is configured).
    pub discord_global_commands: bool,
    /// Discord's API host (tests point it at a loopback fake).
    pub discord_api_url: String,
    /// Prompts one chat user may send per minute.
    pub chat_prompts_per_minute: u32,
    /// The directory `/new` uses when given none (on the session's daemon).
    pub chat_default_dir: Option<PathBuf>,
    /// PEM certificate chain to serve HTTPS/WSS with (with `tls_key`); reread on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` is believed for the audit log's addresses.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl fmt::Debug for BotConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("events_page_max", &self.events_page_max)
            .field("daemon_timeout_secs", &self.daemon_timeout_secs)
            .field("ping_interval_secs", &self.ping_interval_secs)
            .field("telegram_token", &redact(self.telegram_token.as_ref()))
            .field("discord_token", &redact(self.discord_token.as_ref()))
            .field("telegram_allowed_users", &self.telegram_allowed_users)
            .field("telegram_api_url", &self.telegram_api_url)
            .field("discord_allowed_users", &self.discord_allowed_users)
            .field("discord_allowed_roles", &self.discord_allowed_roles)
            .field("discord_guilds", &self.discord_guilds)
            .field("discord_global_commands", &self.discord_global_commands)
            .field("discord_api_url", &self.discord_api_url)
            .field("chat_prompts_per_minute", &self.chat_prompts_per_minute)
            .field("chat_default_dir", &self.chat_default_dir)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

fn redact(secret: Option<&String>) -> Option<&'static str> {
    secret.map(|_| "<redacted>")
}

fn redacted<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    redact(secret.as_ref()).serialize(s)
}

/// The TOML file: every key optional, unknown keys refused. No secrets here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    events_page_max: Option<u32>,
    daemon_timeout_secs: Option<u64>,
    ping_interval_secs: Option<u64>,
    telegram_allowed_users: Option<Vec<i64>>,
    telegram_api_url: Option<String>,
    discord_allowed_users: Option<Vec<u64>>,
    discord_allowed_roles: Option<Vec<u64>>,
    discord_guilds: Option<Vec<u64>>,
    discord_global_commands: Option<bool>,
    discord_api_url: Option<String>,
    chat_prompts_per_minute: Option<u32>,
    chat_default_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trusted_proxies: Option<Vec<std::net::IpAddr>>,
}

/// Values given on the command line (they override everything else).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`.
    pub config_file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Default for BotConfig {
    /// The built-in defaults (before any file, environment or flag).
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: default_data_dir(),
            max_body_bytes: 1024 * 1024,
            events_page_max: 1000,
            daemon_timeout_secs: 45,
            ping_interval_secs: 15,
            telegram_token: None,
            discord_token: None,
            telegram_allowed_users: Vec::new(),
            telegram_api_url: DEFAULT_TELEGRAM_API_URL.to_owned(),
            discord_allowed_users: Vec::new(),
            discord_allowed_roles: Vec::new(),
            discord_guilds: Vec::new(),
            discord_global_commands: false,
            discord_api_url: DEFAULT_DISCORD_API_URL.to_owned(),
            chat_prompts_per_minute: 20,
            chat_default_dir: None,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl BotConfig {
    /// Loads the config from the process environment: defaults → file (`--config`,
    /// `CCRM_BOT_CONFIG`, or `$XDG_CONFIG_HOME/ccrm/bot.toml` if it exists) → `CCRM_BOT_*`
    /// env → flags, then validates it.
    pub fn load(over: &Overrides) -> anyhow::Result<Self> {
        Self::load_with(over, process_env)
    }

    /// [`BotConfig::load`] with the environment (including `HOME` and the `XDG_*` variables)
    /// given as a lookup function: tests pass a map, since setting real variables is
    /// `unsafe` in Rust 2024 and racy across tests.
    pub fn load_with(
        over: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let config_home = xdg(&env, "XDG_CONFIG_HOME", ".config");
        let explicit = over
            .config_file
            .clone()
            .or_else(|| env("CCRM_BOT_CONFIG").map(PathBuf::from));
        let path = explicit
            .or_else(|| Some(config_home.join("ccrm").join("bot.toml")).filter(|p| p.exists()));
        let source = match &path {
            Some(path) => Some((
                path.clone(),
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?,
            )),
            None => None,
        };
        let file: FileConfig = match &source {
            Some((path, text)) => common::tomlfile::parse(path, text)?,
            None => FileConfig::default(),
        };

        let defaults = Self {
            data_dir: xdg(&env, "XDG_DATA_HOME", ".local/share").join("ccrm"),
            ..Self::default()
        };
        let mut cfg = Self {
            listen: file.listen.unwrap_or(defaults.listen),
            data_dir: file.data_dir.unwrap_or(defaults.data_dir),
            max_body_bytes: file.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            events_page_max: file.events_page_max.unwrap_or(defaults.events_page_max),
            daemon_timeout_secs: file
                .daemon_timeout_secs
                .unwrap_or(defaults.daemon_timeout_secs),
            ping_interval_secs: file
                .ping_interval_secs
                .unwrap_or(defaults.ping_interval_secs),
            telegram_token: None,
            discord_token: None,
            telegram_allowed_users: file.telegram_allowed_users.unwrap_or_default(),
            telegram_api_url: file.telegram_api_url.unwrap_or(defaults.telegram_api_url),
            discord_allowed_users: file.discord_allowed_users.unwrap_or_default(),
            discord_allowed_roles: file.discord_allowed_roles.unwrap_or_default(),
            discord_guilds: file.discord_guilds.unwrap_or_default(),
            discord_global_commands: file.discord_global_commands.unwrap_or_default(),
            discord_api_url: file.discord_api_url.unwrap_or(defaults.discord_api_url),
            chat_prompts_per_minute: file
                .chat_prompts_per_minute
                .unwrap_or(defaults.chat_prompts_per_minute),
            chat_default_dir: file.chat_default_dir,
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
            trusted_proxies: file.trusted_proxies.unwrap_or_default(),
        };

        if let Some(v) = env("CCRM_BOT_LISTEN") {
            cfg.listen = parse_env("CCRM_BOT_LISTEN", &v, "an address like 127.0.0.1:7878")?;
        }
        if let Some(v) = env("CCRM_BOT_DATA_DIR") {
            cfg.data_dir = v.into();
        }
        if let Some(v) = env("CCRM_BOT_MAX_BODY_BYTES") {
            cfg.max_body_bytes = parse_env("CCRM_BOT_MAX_BODY_BYTES", &v, "a number of bytes")?;
        }
        if let Some(v) = env("CCRM_BOT_EVENTS_PAGE_MAX") {
            cfg.events_page_max = parse_env("CCRM_BOT_EVENTS_PAGE_MAX", &v, "a number")?;
        }
        if let Some(v) = env("CCRM_BOT_DAEMON_TIMEOUT_SECS") {
            cfg.daemon_timeout_secs =
                parse_env("CCRM_BOT_DAEMON_TIMEOUT_SECS", &v, "a number of seconds")?;
        }
        if let Some(v) = env("CCRM_BOT_PING_INTERVAL_SECS") {
            cfg.ping_interval_secs =
                parse_env("CCRM_BOT_PING_INTERVAL_SECS", &v, "a number of seconds")?;
        }
        if let Some(v) = env("CCRM_BOT_TELEGRAM_ALLOWED_USERS") {
            cfg.telegram_allowed_users = parse_list(
                "CCRM_BOT_TELEGRAM_ALLOWED_USERS",
                &v,
                "comma-separated Telegram user ids",
            )?;
        }
        if let Some(v) = env("CCRM_BOT_TELEGRAM_API_URL") {
            cfg.telegram_api_url = v;
        }
        if let Some(v) = env("CCRM_BOT_DISCORD_ALLOWED_USERS") {
            cfg.discord_allowed_users = parse_list(
                "CCRM_BOT_DISCORD_ALLOWED_USERS",
                &v,
                "comma-separated Discord user ids",
            )?;
        }
        if let Some(v) = env("CCRM_BOT_DISCORD_ALLOWED_ROLES") {
            cfg.discord_allowed_roles = parse_list(
                "CCRM_BOT_DISCORD_ALLOWED_ROLES",
                &v,
                "comma-separated Discord role ids",
            )?;
        }
        if let Some(v) = env("CCRM_BOT_DISCORD_GUILDS") {
            cfg.discord_guilds = parse_list(
                "CCRM_BOT_DISCORD_GUILDS",
                &v,
                "comma-separated Discord server (guild) ids",
            )?;
        }
        if let Some(v) = env("CCRM_BOT_DISCORD_GLOBAL_COMMANDS") {
            cfg.discord_global_commands =
                parse_env("CCRM_BOT_DISCORD_GLOBAL_COMMANDS", &v, "true or false")?;
        }
        if let Some(v) = env("CCRM_BOT_DISCORD_API_URL") {
            cfg.discord_api_url = v;
        }
        if let Some(v) = env("CCRM_BOT_CHAT_DEFAULT_DIR") {
            cfg.chat_default_dir = Some(v.into());
        }
        if let Some(v) = env("CCRM_BOT_CHAT_PROMPTS_PER_MINUTE") {
            cfg.chat_prompts_per_minute =
                parse_env("CCRM_BOT_CHAT_PROMPTS_PER_MINUTE", &v, "a number")?;
        }
        if let Some(v) = env("CCRM_BOT_TLS_CERT") {
            cfg.tls_cert = Some(v.into());
        }
        if let Some(v) = env("CCRM_BOT_TLS_KEY") {
            cfg.tls_key = Some(v.into());
        }
        if let Some(v) = env("CCRM_BOT_TRUSTED_PROXIES") {
            cfg.trusted_proxies = parse_list(
                "CCRM_BOT_TRUSTED_PROXIES",
                &v,
                "comma-separated IP addresses of reverse proxies",
            )?;
        }
        cfg.telegram_token = env("CCRM_BOT_TELEGRAM_TOKEN");
        cfg.discord_token = env("CCRM_BOT_DISCORD_TOKEN");

        if let Some(v) = over.listen {
            cfg.listen = v;
        }
        if let Some(v) = &over.data_dir {
            cfg.data_dir = v.clone();
        }
        if let Err((key, message)) = cfg.check() {
            // Point at the file's line when the file sets the key at fault.
            return Err(match &source {
                Some((path, text)) if common::tomlfile::key_line(text, key).is_some() => {
                    common::tomlfile::FileError::at_key(path, text, key, message).into()
                }
                _ => anyhow::anyhow!("{key} {message}"),
            });
        }
        Ok(cfg)
    }

    /// Checks values that would only fail later and less clearly.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.check()
            .map_err(|(key, message)| anyhow::anyhow!("{key} {message}"))
    }

    /// [`BotConfig::validate`], naming the key at fault and what is wrong with it.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.data_dir.is_absolute() {
            return Err((
                "data_dir",
                format!(
                    "must be an absolute path, got `{}`",
                    self.data_dir.display()
                ),
            ));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(("max_body_bytes", "must be between 1 KiB and 1 GiB".into()));
        }
        if !(1..=100_000).contains(&self.events_page_max) {
            return Err(("events_page_max", "must be between 1 and 100000".into()));
        }
        if self.chat_prompts_per_minute == 0 {
            return Err(("chat_prompts_per_minute", "must be at least 1".into()));
        }
        for (key, url) in [
            ("telegram_api_url", &self.telegram_api_url),
            ("discord_api_url", &self.discord_api_url),
        ] {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err((key, format!("must be an http(s) URL, got `{url}`")));
            }
        }
        if let Some(d) = &self.chat_default_dir
            && !d.is_absolute()
        {
            return Err((
                "chat_default_dir",
                format!("must be an absolute path, got `{}`", d.display()),
            ));
        }
        if self.ping_interval_secs == 0 {
            return Err(("ping_interval_secs", "must be at least 1".into()));
        }
        if self.daemon_timeout_secs <= self.ping_interval_secs {
            return Err((
                "daemon_timeout_secs",
                format!(
                    "({}) must be longer than ping_interval_secs ({}), \
                     or every quiet daemon would be dropped",
                    self.daemon_timeout_secs, self.ping_interval_secs
                ),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err((
                    "tls_cert",
                    "is set without tls_key; set both or neither".into(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    "tls_key",
                    "is set without tls_cert; set both or neither".into(),
                ));
            }
            _ => {}
        }
        for (key, file) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err((key, format!("{} is not a readable file (PEM)", f.display())));
            }
        }
        Ok(())
    }

    /// Whether the bot serves HTTPS/WSS itself.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }

    /// [`BotConfig::daemon_timeout_secs`] as a [`Duration`].
    pub fn daemon_timeout(&self) -> Duration {
        Duration::from_secs(self.daemon_timeout_secs)
    }

    /// [`BotConfig::ping_interval_secs`] as a [`Duration`].
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }
}

fn parse_env<T: std::str::FromStr>(var: &str, value: &str, what: &str) -> anyhow::Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{var} must be {what}, got `{value}`"))
}

fn parse_list<T: std::str::FromStr>(var: &str, value: &str, what: &str) -> anyhow::Result<Vec<T>> {
    value
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_env(var, s, what))
        .collect()
}

#[cfg(test)]
fn parse_file(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

/// `$<var>` if it is an absolute path, else `$HOME/<fallback>` (XDG base directories).
fn xdg(env: &impl Fn(&str) -> Option<String>, var: &str, fallback: &str) -> PathBuf {
    match env(var) {
        Some(v) if Path::new(&v).is_absolute() => PathBuf::from(v),
        _ => env("HOME")
            .map_or_else(|| PathBuf::from("/"), PathBuf::from)
            .join(fallback),
    }
}

fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// `$XDG_CONFIG_HOME/ccrm/bot.toml`.
pub fn default_config_file() -> PathBuf {
    xdg(&process_env, "XDG_CONFIG_HOME", ".config")
        .join("ccrm")
        .join("bot.toml")
}

/// `$XDG_DATA_HOME/ccrm`.
pub fn default_data_dir() -> PathBuf {
    xdg(&process_env, "XDG_DATA_HOME", ".local/share").join("ccrm")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(over: &Overrides, vars: &[(&str, &str)]) -> anyhow::Result<BotConfig> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        BotConfig::load_with(over, |k| map.get(k).cloned())
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("bot.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    fn defaults_are_as_documented() {
        let cfg = BotConfig::default();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.max_body_bytes, 1 << 20);
        assert_eq!(cfg.events_page_max, 1000);
        assert_eq!(cfg.daemon_timeout(), Duration::from_secs(45));
        assert_eq!(cfg.ping_interval(), Duration::from_secs(15));
        assert!(cfg.db_path().ends_with("ccrm/ccrm.db"));
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/a\"\nevents_page_max = 50\nping_interval_secs = 5\n",
        );
        let over = Overrides {
            config_file: Some(file.clone()),
            ..Overrides::default()
        };
        let cfg = load(&over, &[]).expect("file only");
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/a"));
        assert_eq!(cfg.events_page_max, 50);
        assert_eq!(cfg.ping_interval_secs, 5);
        assert_eq!(cfg.daemon_timeout_secs, 45);

        let env = [
            ("CCRM_BOT_LISTEN", "127.0.0.1:9001"),
            ("CCRM_BOT_DATA_DIR", "/srv/b"),
            ("CCRM_BOT_DAEMON_TIMEOUT_SECS", "30"),
        ];
        let cfg = load(&over, &env).expect("env");
        assert_eq!(cfg.listen.port(), 9001);
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(cfg.daemon_timeout_secs, 30);
        assert_eq!(cfg.events_page_max, 50, "file value kept");

        let over = Overrides {
            config_file: Some(file),
            listen: Some("127.0.0.1:9002".parse().expect("addr")),
            data_dir: Some("/srv/c".into()),
        };
        let cfg = load(&over, &env).expect("flags");
        assert_eq!(cfg.listen.port(), 9002);
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/c"));
    }

    #[test]
    fn config_file_from_env_and_missing_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(dir.path(), "max_body_bytes = 4096\n");
        let path = file.to_string_lossy().into_owned();
        let cfg = load(&Overrides::default(), &[("CCRM_BOT_CONFIG", &path)]).expect("load");
        assert_eq!(cfg.max_body_bytes, 4096);
        let missing = dir.path().join("nope.toml");
        let over = Overrides {
            config_file: Some(missing),
            ..Overrides::default()
        };
        assert!(load(&over, &[]).is_err());
    }

    #[test]
    fn xdg_dirs_decide_the_default_file_and_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_home = dir.path().join("cfg");
        std::fs::create_dir_all(cfg_home.join("ccrm")).expect("mkdir");
        std::fs::write(
            cfg_home.join("ccrm").join("bot.toml"),
            "events_page_max = 7\n",
        )
        .expect("write");
        let cfg_home = cfg_home.to_string_lossy().into_owned();
        let cfg = load(
            &Overrides::default(),
            &[
                ("XDG_CONFIG_HOME", &cfg_home),
                ("XDG_DATA_HOME", "/var/lib/u"),
            ],
        )
        .expect("load");
        assert_eq!(cfg.events_page_max, 7);
        assert_eq!(cfg.db_path(), PathBuf::from("/var/lib/u/ccrm/ccrm.db"));
        let cfg = load(&Overrides::default(), &[("HOME", "/home/u")]).expect("load");
        assert_eq!(cfg.data_dir, PathBuf::from("/home/u/.local/share/ccrm"));
        assert_eq!(cfg.events_page_max, 1000);
    }

    #[test]
    fn unknown_keys_and_secrets_in_the_file_are_refused() {
        assert!(parse_file("no_such_key = 1").is_err());
        assert!(parse_file("telegram_token = \"x\"").is_err());
        assert!(parse_file("listen = \"not an address\"").is_err());
        assert!(parse_file("").is_ok());
    }

    #[test]
    fn file_errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let over = |text: &str| Overrides {
            config_file: Some(write(dir.path(), text)),
            ..Overrides::default()
        };
        let err = load(
            &over("listen = \"127.0.0.1:1\"\nevents_page_max = \"lots\"\n"),
            &[],
        )
        .expect_err("a string for a number");
        let text = format!("{err:#}");
        assert!(text.contains("bot.toml:2: key `events_page_max`"), "{text}");
        assert!(text.contains("whole number"), "{text}");
        let err = load(&over("# hi\nlisten = \"127.0.0.1:1\"\nlisen = 1\n"), &[])
            .expect_err("unknown key");
        let text = format!("{err:#}");
        assert!(text.contains("bot.toml:3: key `lisen`"), "{text}");
        assert!(text.contains("`listen`"), "lists the allowed keys: {text}");
        let err = load(&over("data_dir = \"/tmp/x\"\n\nevents_page_max = 0\n"), &[])
            .expect_err("out of range");
        let text = format!("{err:#}");
        assert!(
            text.contains("bot.toml:3: key `events_page_max`: must be between"),
            "{text}"
        );
        let err = load(
            &over("data_dir = \"/tmp/x\"\ntls_cert = \"/nonexistent.pem\"\n"),
            &[],
        )
        .expect_err("cert without key");
        assert!(
            format!("{err:#}").contains("bot.toml:2: key `tls_cert`"),
            "{err:#}"
        );
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let err = load(
            &Overrides::default(),
            &[("CCRM_BOT_EVENTS_PAGE_MAX", "lots")],
        )
        .expect_err("bad number");
        assert!(
            err.to_string().contains("CCRM_BOT_EVENTS_PAGE_MAX"),
            "{err}"
        );
        assert!(load(&Overrides::default(), &[("CCRM_BOT_LISTEN", "nowhere")]).is_err());
    }

    #[test]
    fn validation() {
        let ok = BotConfig {
            data_dir: "/tmp/x".into(),
            ..BotConfig::default()
        };
        assert!(ok.validate().is_ok());
        let bad = [
            BotConfig {
                data_dir: "relative".into(),
                ..ok.clone()
            },
            BotConfig {
                max_body_bytes: 10,
                ..ok.clone()
            },
            BotConfig {
                events_page_max: 0,
                ..ok.clone()
            },
            BotConfig {
                ping_interval_secs: 0,
                ..ok.clone()
            },
            BotConfig {
                daemon_timeout_secs: 15,
                ping_interval_secs: 15,
                ..ok
            },
        ];
        for cfg in bad {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
    }

    #[test]
    fn telegram_settings_come_from_env() {
        let over = Overrides {
            data_dir: Some("/tmp/x".into()),
            ..Overrides::default()
        };
        let cfg = load(&over, &[]).expect("defaults");
        assert!(cfg.telegram_allowed_users.is_empty());
        assert_eq!(cfg.telegram_api_url, DEFAULT_TELEGRAM_API_URL);
        let cfg = load(
            &over,
            &[
                ("CCRM_BOT_TELEGRAM_ALLOWED_USERS", "11, 22,"),
                ("CCRM_BOT_TELEGRAM_API_URL", "http://127.0.0.1:9"),
                ("CCRM_BOT_CHAT_PROMPTS_PER_MINUTE", "5"),
            ],
        )
        .expect("env");
        assert_eq!(cfg.telegram_allowed_users, vec![11, 22]);
        assert_eq!(cfg.telegram_api_url, "http://127.0.0.1:9");
        assert_eq!(cfg.chat_prompts_per_minute, 5);
        assert!(load(&over, &[("CCRM_BOT_TELEGRAM_ALLOWED_USERS", "bob")]).is_err());
        assert!(load(&over, &[("CCRM_BOT_TELEGRAM_API_URL", "ftp://x")]).is_err());
        assert!(load(&over, &[("CCRM_BOT_CHAT_PROMPTS_PER_MINUTE", "0")]).is_err());
    }

    #[test]
    fn discord_settings_from_file_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write(
            dir.path(),
            "discord_guilds = [5]\ndiscord_allowed_roles = [9]\nchat_default_dir = \"/srv\"\n",
        );
        let over = Overrides {
            config_file: Some(file),
            data_dir: Some("/tmp/x".into()),
            ..Overrides::default()
        };
        let cfg = load(&over, &[]).expect("file");
        assert_eq!(cfg.discord_guilds, vec![5]);
        assert_eq!(cfg.discord_allowed_roles, vec![9]);
        assert!(cfg.discord_allowed_users.is_empty() && !cfg.discord_global_commands);
        assert_eq!(cfg.discord_api_url, DEFAULT_DISCORD_API_URL);
        assert_eq!(cfg.chat_default_dir, Some(PathBuf::from("/srv")));
        let cfg = load(
            &over,
            &[
                ("CCRM_BOT_DISCORD_ALLOWED_USERS", "123456789012345678,2"),
                ("CCRM_BOT_DISCORD_GUILDS", "7"),
                ("CCRM_BOT_DISCORD_GLOBAL_COMMANDS", "true"),
                ("CCRM_BOT_DISCORD_API_URL", "http://127.0.0.1:9"),
            ],
        )
        .expect("env");
        assert_eq!(cfg.discord_allowed_users, vec![123_456_789_012_345_678, 2]);
        assert_eq!(cfg.discord_guilds, vec![7]);
        assert!(cfg.discord_global_commands);
        assert_eq!(cfg.discord_api_url, "http://127.0.0.1:9");
        for bad in [
            ("CCRM_BOT_DISCORD_ALLOWED_ROLES", "admins"),
            ("CCRM_BOT_DISCORD_GLOBAL_COMMANDS", "maybe"),
            ("CCRM_BOT_DISCORD_API_URL", "discord.com"),
            ("CCRM_BOT_CHAT_DEFAULT_DIR", "relative/dir"),
        ] {
            let err = load(&over, &[bad]).expect_err(bad.0);
            assert!(
                err.to_string()
                    .to_lowercase()
                    .contains(&bad.0[9..].to_lowercase())
                    || err.to_string().contains(bad.0),
                "{err}"
            );
        }
    }

    #[test]
    fn secrets_come_from_env_and_are_redacted() {
        let cfg = load(
            &Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            },
            &[
                ("CCRM_BOT_TELEGRAM_TOKEN", "123:SECRET-TG"),
                ("CCRM_BOT_DISCORD_TOKEN", "SECRET-DC"),
            ],
        )
        .expect("load");
        assert_eq!(cfg.telegram_token.as_deref(), Some("123:SECRET-TG"));
        let debug = format!("{cfg:?}");
        let json = serde_json::to_string(&cfg).expect("json");
        for text in [&debug, &json] {
            assert!(!text.contains("SECRET"), "{text}");
            assert!(text.contains("redacted"), "{text}");
        }
    }
}
