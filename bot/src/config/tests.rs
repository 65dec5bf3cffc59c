//! Tests of the bot's configuration: layering, validation and file errors.

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
    let err =
        load(&over("# hi\nlisten = \"127.0.0.1:1\"\nlisen = 1\n"), &[]).expect_err("unknown key");
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
            workspace_max_upload_bytes: 10,
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
fn dashboard_settings_from_file_and_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "web_session_hours = 2\nweb_secure_cookie = \"always\"\npublic_url = \"https://c.example\"\n",
    );
    let over = Overrides {
        config_file: Some(file),
        data_dir: Some("/tmp/x".into()),
        ..Overrides::default()
    };
    let cfg = load(&over, &[]).expect("file");
    assert_eq!(cfg.web_session_hours, 2);
    assert_eq!(cfg.web_secure_cookie, SecureCookie::Always);
    assert_eq!(cfg.web_login_attempts_per_minute, 10);
    assert_eq!(cfg.public_url.as_deref(), Some("https://c.example"));
    let cfg = load(
        &over,
        &[
            ("CCRM_BOT_WEB_SECURE_COOKIE", "never"),
            ("CCRM_BOT_WEB_LOGIN_ATTEMPTS_PER_MINUTE", "3"),
            ("CCRM_BOT_PUBLIC_URL", "http://10.0.0.2:7878"),
        ],
    )
    .expect("env");
    assert_eq!(cfg.web_secure_cookie, SecureCookie::Never);
    assert_eq!(cfg.web_login_attempts_per_minute, 3);
    assert_eq!(cfg.public_url.as_deref(), Some("http://10.0.0.2:7878"));
    for bad in [
        ("CCRM_BOT_WEB_SECURE_COOKIE", "sometimes"),
        ("CCRM_BOT_WEB_SESSION_HOURS", "0"),
        ("CCRM_BOT_PUBLIC_URL", "https://c.example/dash"),
    ] {
        assert!(load(&over, &[bad]).is_err(), "{bad:?}");
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
