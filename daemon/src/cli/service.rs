//! `ccrm daemon install|uninstall`: ccrmd as a per-user service (a systemd user unit, or a
//! launchd agent on macOS). The flags become the service's environment, checked the way
//! ccrmd will check them (a plain `ws://` bot off this machine is refused here already, and
//! the key file must be private); `--dry-run` prints the unit instead of writing it. The
//! unit itself is rendered by [`crate::service`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::args::{Cli, InstallArgs, UninstallArgs};
use super::call::{Failure, load_config, socket_path};
use crate::config::{self, Secret};
use crate::service::{self, Manager, Spec};

/// `ccrm daemon install`.
pub(super) async fn install(cli: &Cli, args: &InstallArgs) -> Result<ExitCode, Failure> {
    let spec = spec(cli, args)?;
    let manager = args.manager.unwrap_or_else(Manager::native);
    let unit = service::unit(manager, &spec, &config::home_dir(), &config::config_home());
    if args.dry_run {
        if cli.json {
            println!(
                "{}",
                serde_json::json!({"dry_run": true, "manager": manager, "path": unit.path, "unit": unit.text})
            );
        } else {
            println!("# {} (not written: --dry-run)", unit.path.display());
            print!("{}", unit.text);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A ccrmd started by hand holds the pidfile lock; the service's would fail to start.
    let running = crate::client::Client::connect(&socket_path(cli)?)
        .await
        .is_ok();
    let enable = !args.no_enable;
    let done = service::install(&unit, enable).map_err(|e| {
        let how = match manager {
            Manager::Systemd => "systemctl --user enable --now ccrmd",
            Manager::Launchd => "launchctl bootstrap gui/$(id -u) <the plist>",
        };
        anyhow::anyhow!(
            "{e:#}\nThe unit is written to {}; enable it yourself with `{how}`",
            unit.path.display()
        )
    })?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"installed": true, "manager": manager, "path": unit.path, "enabled": enable, "done": done, "already_running": running})
        );
        return Ok(ExitCode::SUCCESS);
    }
    for line in &done {
        println!("{line}");
    }
    if running {
        println!(
            "note: a ccrmd started by hand is running; stop it (`ccrm daemon stop`) and start the service, or the service's ccrmd cannot take over"
        );
    }
    match (manager, enable) {
        (Manager::Systemd, true) => {
            println!("ccrmd now starts at login and restarts if it fails.");
            println!("  logs:   journalctl --user -u ccrmd -f");
            println!(
                "  keep it running after you log out: loginctl enable-linger {}",
                user_name()
            );
        }
        (Manager::Systemd, false) => {
            println!(
                "enable it with: systemctl --user daemon-reload && systemctl --user enable --now ccrmd"
            );
        }
        (Manager::Launchd, true) => println!(
            "ccrmd now starts at login and restarts if it fails; log: {}",
            spec.log.display()
        ),
        (Manager::Launchd, false) => println!(
            "load it with: launchctl bootstrap gui/$(id -u) {}",
            unit.path.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `ccrm daemon uninstall`.
pub(super) async fn uninstall(cli: &Cli, args: &UninstallArgs) -> Result<ExitCode, Failure> {
    let manager = args.manager.unwrap_or_else(Manager::native);
    let probe = Spec {
        program: PathBuf::new(),
        args: Vec::new(),
        env: Vec::new(),
        log: PathBuf::new(),
    };
    let path = service::unit(manager, &probe, &config::home_dir(), &config::config_home()).path;
    let done = service::uninstall(manager, &path, !args.no_disable)?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({"uninstalled": true, "manager": manager, "path": path, "done": done})
        );
    } else {
        for line in &done {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the service runs, from the flags, checked like ccrmd checks its config.
fn spec(cli: &Cli, args: &InstallArgs) -> anyhow::Result<Spec> {
    let program = std::path::absolute(crate::up::find_bin("ccrmd")?)?;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut cfg = load_config(cli)?;
    if let Some(file) = &cli.config {
        env.push(("CCRM_CONFIG".into(), absolute(file)?));
    }
    if let Some(url) = &args.bot_url {
        let Some(key_file) = &args.api_key_file else {
            bail!(
                "--bot-url needs --api-key-file FILE: the service reads the daemon key from a 0600 file (create a key with `ccrm-bot keys create <name> --kind daemon`)"
            );
        };
        cfg.bot_url = Some(url.clone());
        cfg.bot_api_key = Some(Secret(config::read_key_file(key_file)?));
        env.push(("CCRM_BOT_URL".into(), url.clone()));
        env.push(("CCRM_BOT_API_KEY_FILE".into(), absolute(key_file)?));
    } else if args.api_key_file.is_some() {
        bail!("--api-key-file goes with --bot-url URL (the bot to link to)");
    }
    if let Some(ca) = &args.bot_ca_file {
        cfg.bot_ca_file = Some(ca.clone());
        env.push(("CCRM_BOT_CA_FILE".into(), absolute(ca)?));
        crate::probe::check_ca(&program, ca)?;
    }
    if args.allow_insecure_bot {
        cfg.allow_insecure_bot = true;
        env.push(("CCRM_ALLOW_INSECURE_BOT".into(), "true".into()));
    }
    cfg.validate()?;
    // The service manager starts ccrmd with a bare PATH; keep the one `claude` and `tmux`
    // are found on now.
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH".into(), path.to_string_lossy().into_owned()));
    }
    Ok(Spec {
        program,
        args: Vec::new(),
        env,
        log: cfg.log_path(),
    })
}

fn absolute(p: &Path) -> anyhow::Result<String> {
    Ok(std::path::absolute(p)
        .with_context(|| format!("cannot resolve {}", p.display()))?
        .to_string_lossy()
        .into_owned())
}

fn user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "$USER".to_owned(), |u| u.name)
}
