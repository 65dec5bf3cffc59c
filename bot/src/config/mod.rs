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
    /// Largest workspace zip accepted by `POST /api/daemons/{daemon}/workspaces`, checked
    /// while it streams (that route is exempt from `max_body_bytes`).
    pub workspace_max_upload_bytes: u64,
    /// Largest file sent in chat or with a REST prompt (saved into the session's
    /// `.ccrm/inbox/`; images are scaled instead).
    pub chat_max_file_bytes: u64,
    /// How long a dashboard login lasts, in hours.
    pub web_session_hours: u64,
    /// When the dashboard's session cookie is marked `Secure`.
    pub web_secure_cookie: SecureCookie,
    /// Dashboard login attempts one client address may make per minute.
    pub web_login_attempts_per_minute: u32,
    /// The address people reach the bot at when it is behind a proxy
    /// (`https://ccrm.example.com`): printed at start and accepted as the dashboard's origin.
    pub public_url: Option<String>,
    /// PEM certificate chain to serve HTTPS/WSS with (with `tls_key`); reread on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies whose `X-Forwarded-For` is believed for the audit log's addresses.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `sqlite://<path>` or `postgres://...` (`CCRM_BOT_DATABASE_URL`); unset means the
    /// SQLite file `<data_dir>/ccrm.db`. Shown with any password hidden.
    #[serde(serialize_with = "redacted_url")]
    pub database_url: Option<String>,
    /// Where the other replicas of a shared PostgreSQL database reach this one directly
    /// (`ws://host:port` or `wss://host:port`, this replica itself, not a load balancer);
    /// unset: the listening address when it is a specific one. Calls to a daemon linked
    /// to another replica travel over such links when they can, else through PostgreSQL.
    pub replica_url: Option<String>,
    /// PEM CA certificate(s) trusted for `wss://` links to other replicas (a private CA or
    /// self-signed certificate); unset: the public web roots.
    pub replica_ca_file: Option<PathBuf>,
    /// Failed token checks a client address may make per minute before it gets 429 (REST,
    /// dashboard socket, daemon link); 0 turns the limit off.
    pub auth_failures_per_minute: u32,
    /// Telegram webhook mode: the public https URL Telegram posts updates to (its path is
    /// served by the bot); `None`: long polling.
    pub telegram_webhook_url: Option<String>,
    /// The webhook's `secret_token` (`CCRM_BOT_TELEGRAM_WEBHOOK_SECRET`; environment only);
    /// generated and kept in `data_dir` when unset.
    #[serde(serialize_with = "redacted")]
    pub telegram_webhook_secret: Option<String>,
}

/// When the dashboard's session cookie carries the `Secure` attribute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecureCookie {
    /// When the login came over https (a proxy's `X-Forwarded-Proto: https`, or a
    /// `public_url` starting with `https://`).
    #[default]
    Auto,
    /// Always (the dashboard is only reached over https).
    Always,
    /// Never (plain http on a trusted network).
    Never,
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
            .field("web_session_hours", &self.web_session_hours)
            .field("web_secure_cookie", &self.web_secure_cookie)
            .field(
                "web_login_attempts_per_minute",
                &self.web_login_attempts_per_minute,
            )
            .field("public_url", &self.public_url)
            .field(
                "workspace_max_upload_bytes",
                &self.workspace_max_upload_bytes,
            )
            .field("chat_max_file_bytes", &self.chat_max_file_bytes)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "database_url",
                &self.database_url.as_deref().map(crate::db::redact_url),
            )
            .field("replica_url", &self.replica_url)
            .field("replica_ca_file", &self.replica_ca_file)
            .field("auth_failures_per_minute", &self.auth_failures_per_minute)
            .field("telegram_webhook_url", &self.telegram_webhook_url)
            .field(
                "telegram_webhook_secret",
                &redact(self.telegram_webhook_secret.as_ref()),
            )
            .finish()
    }
}

fn redact(secret: Option<&String>) -> Option<&'static str> {
    secret.map(|_| "<redacted>")
}

fn redacted<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    redact(secret.as_ref()).serialize(s)
}

fn redacted_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    url.as_deref().map(crate::db::redact_url).serialize(s)
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
    web_session_hours: Option<u64>,
    web_secure_cookie: Option<SecureCookie>,
    web_login_attempts_per_minute: Option<u32>,
    public_url: Option<String>,
    workspace_max_upload_bytes: Option<u64>,
    chat_max_file_bytes: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trusted_proxies: Option<Vec<std::net::IpAddr>>,
    database_url: Option<String>,
    replica_url: Option<String>,
    replica_ca_file: Option<PathBuf>,
    auth_failures_per_minute: Option<u32>,
    telegram_webhook_url: Option<String>,
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
            web_session_hours: 168,
            web_secure_cookie: SecureCookie::Auto,
            web_login_attempts_per_minute: 10,
            public_url: None,
            workspace_max_upload_bytes: 100 * 1024 * 1024,
            chat_max_file_bytes: 20 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            database_url: None,
            replica_url: None,
            replica_ca_file: None,
            auth_failures_per_minute: 10,
            telegram_webhook_url: None,
            telegram_webhook_secret: None,
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
            web_session_hours: file.web_session_hours.unwrap_or(defaults.web_session_hours),
            web_secure_cookie: file.web_secure_cookie.unwrap_or(defaults.web_secure_cookie),
            web_login_attempts_per_minute: file
                .web_login_attempts_per_minute
                .unwrap_or(defaults.web_login_attempts_per_minute),
            public_url: file.public_url,
            workspace_max_upload_bytes: file
                .workspace_max_upload_bytes
                .unwrap_or(defaults.workspace_max_upload_bytes),
            chat_max_file_bytes: file
                .chat_max_file_bytes
                .unwrap_or(defaults.chat_max_file_bytes),
            tls_cert: file.tls_cert,
            tls_key: file.tls_key,
            trusted_proxies: file.trusted_proxies.unwrap_or_default(),
            database_url: file.database_url,
            replica_url: file.replica_url,
            replica_ca_file: file.replica_ca_file,
            auth_failures_per_minute: file
                .auth_failures_per_minute
                .unwrap_or(defaults.auth_failures_per_minute),
            telegram_webhook_url: file.telegram_webhook_url,
            telegram_webhook_secret: None,
        };
        if cfg
            .database_url
            .as_deref()
            .is_some_and(|u| crate::db::redact_url(u) != u)
        {
            anyhow::bail!(
                "database_url in the config file carries a password: put the whole URL in \
                 CCRM_BOT_DATABASE_URL (or the password in PGPASSWORD) instead"
            );
        }

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
        if let Some(v) = env("CCRM_BOT_WORKSPACE_MAX_UPLOAD_BYTES") {
            cfg.workspace_max_upload_bytes = parse_env(
                "CCRM_BOT_WORKSPACE_MAX_UPLOAD_BYTES",
                &v,
                "a number of bytes",
            )?;
        }
        if let Some(v) = env("CCRM_BOT_CHAT_MAX_FILE_BYTES") {
            cfg.chat_max_file_bytes =
                parse_env("CCRM_BOT_CHAT_MAX_FILE_BYTES", &v, "a number of bytes")?;
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
        if let Some(v) = env("CCRM_BOT_WEB_SESSION_HOURS") {
            cfg.web_session_hours =
                parse_env("CCRM_BOT_WEB_SESSION_HOURS", &v, "a number of hours")?;
        }
        if let Some(v) = env("CCRM_BOT_WEB_SECURE_COOKIE") {
            cfg.web_secure_cookie = serde_json::from_value(serde_json::Value::String(v.clone()))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "CCRM_BOT_WEB_SECURE_COOKIE must be auto, always or never, got `{v}`"
                    )
                })?;
        }
        if let Some(v) = env("CCRM_BOT_WEB_LOGIN_ATTEMPTS_PER_MINUTE") {
            cfg.web_login_attempts_per_minute =
                parse_env("CCRM_BOT_WEB_LOGIN_ATTEMPTS_PER_MINUTE", &v, "a number")?;
        }
        if let Some(v) = env("CCRM_BOT_PUBLIC_URL") {
            cfg.public_url = Some(v);
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
        if let Some(v) = env("CCRM_BOT_DATABASE_URL") {
            cfg.database_url = Some(v);
        }
        if let Some(v) = env("CCRM_BOT_REPLICA_URL") {
            cfg.replica_url = Some(v);
        }
        if let Some(v) = env("CCRM_BOT_REPLICA_CA_FILE") {
            cfg.replica_ca_file = Some(v.into());
        }
        if let Some(v) = env("CCRM_BOT_AUTH_FAILURES_PER_MINUTE") {
            cfg.auth_failures_per_minute = parse_env(
                "CCRM_BOT_AUTH_FAILURES_PER_MINUTE",
                &v,
                "a number of failed token checks (0 = no limit)",
            )?;
        }
        if let Some(v) = env("CCRM_BOT_TELEGRAM_WEBHOOK_URL") {
            cfg.telegram_webhook_url = Some(v).filter(|v| !v.trim().is_empty());
        }
        cfg.telegram_token = env("CCRM_BOT_TELEGRAM_TOKEN");
        cfg.telegram_webhook_secret = env("CCRM_BOT_TELEGRAM_WEBHOOK_SECRET");
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
        if let Some(url) = &self.database_url {
            crate::db::Target::parse(url).map_err(|e| ("database_url", e))?;
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(("max_body_bytes", "must be between 1 KiB and 1 GiB".into()));
        }
        if !(1..=100_000).contains(&self.events_page_max) {
            return Err(("events_page_max", "must be between 1 and 100000".into()));
        }
        if !(1024..=64 * 1024 * 1024 * 1024).contains(&self.workspace_max_upload_bytes) {
            return Err((
                "workspace_max_upload_bytes",
                "must be between 1 KiB and 64 GiB".into(),
            ));
        }
        if !(1..=1024 * 1024 * 1024).contains(&self.chat_max_file_bytes) {
            return Err((
                "chat_max_file_bytes",
                "must be between 1 byte and 1 GiB".into(),
            ));
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
        if !(1..=24 * 365).contains(&self.web_session_hours) {
            return Err(("web_session_hours", "must be between 1 and 8760".into()));
        }
        if self.web_login_attempts_per_minute == 0 {
            return Err(("web_login_attempts_per_minute", "must be at least 1".into()));
        }
        if let Some(url) = &self.public_url
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || url.trim_end_matches('/').matches('/').count() != 2)
        {
            return Err((
                "public_url",
                format!("must be an http(s) origin like https://ccrm.example.com, got `{url}`"),
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
        if let Some(url) = &self.telegram_webhook_url {
            crate::telegram::webhook::check_url(url).map_err(|e| ("telegram_webhook_url", e))?;
        }
        if let Some(secret) = &self.telegram_webhook_secret
            && !crate::telegram::webhook::valid_secret(secret)
        {
            return Err((
                "telegram_webhook_secret",
                "(CCRM_BOT_TELEGRAM_WEBHOOK_SECRET) must be 1 to 256 letters, digits, `_` or `-`"
                    .into(),
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
        if let Some(url) = &self.replica_url
            && !(url.starts_with("ws://") || url.starts_with("wss://"))
        {
            return Err((
                "replica_url",
                format!("must be a ws:// or wss:// address of this replica, got `{url}`"),
            ));
        }
        for (key, file) in [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("replica_ca_file", &self.replica_ca_file),
        ] {
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

    /// The SQLite database file (when `database_url` is unset).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }

    /// The database to use: `database_url`, else the SQLite file in `data_dir`.
    pub fn database(&self) -> anyhow::Result<crate::db::Target> {
        match &self.database_url {
            Some(url) => {
                crate::db::Target::parse(url).map_err(|e| anyhow::anyhow!("database_url {e}"))
            }
            None => Ok(crate::db::Target::Sqlite(self.db_path())),
        }
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
mod tests;
