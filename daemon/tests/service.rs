//! Running ccrmd and ccrm-bot as services: `ccrm daemon install` (dry run, install,
//! uninstall) with the generated unit checked by `systemd-analyze verify`, the launchd
//! plist parsed by Python's plistlib, the shipped hardened `dist/ccrm-bot.service` checked
//! the same way, refusals of unsafe or incomplete flags, and config file errors that name
//! file, line and key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

struct Home {
    dir: TempDir,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["home", "config", "state", "run"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("dir");
        }
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn ccrm(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ccrm"))
            .args(args)
            .env_remove("CCRM_CONFIG")
            .env_remove("CCRM_SOCKET")
            .env_remove("CCRM_BOT_URL")
            .env_remove("CCRM_BOT_API_KEY")
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("CCRM_STATE_DIR", self.path("state"))
            .env("CCRM_RUNTIME_DIR", self.path("run"))
            .stdin(Stdio::null())
            .output()
            .expect("run ccrm")
    }

    /// A daemon key file with this mode.
    fn key_file(&self, mode: u32) -> PathBuf {
        let p = self.path(&format!("daemon-{mode:o}.key"));
        std::fs::write(&p, "ccrm_daemon_secretvalue\n").expect("key");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    /// A CA certificate (PEM).
    fn ca_file(&self) -> PathBuf {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed");
        let p = self.path("ca.pem");
        std::fs::write(&p, cert.pem()).expect("ca");
        p
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `systemd-analyze verify` (user or system manager) on `unit`: it must exit 0 and say
/// nothing about the unit (unknown keys and bad values are only warnings there).
fn verify(unit: &Path, user: bool) {
    let runtime = tempfile::tempdir().expect("runtime dir");
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    let mut cmd = Command::new("systemd-analyze");
    if user {
        cmd.arg("--user");
    }
    let out = cmd
        .args(["verify", "--man=no"])
        .arg(unit)
        .env("XDG_RUNTIME_DIR", runtime.path())
        .stdin(Stdio::null())
        .output()
        .expect("systemd-analyze is missing: apt-get install systemd (scripts/test.sh does)");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify refused {}:\n{stdout}{stderr}\n--- unit ---\n{}",
        unit.display(),
        std::fs::read_to_string(unit).unwrap_or_default()
    );
}

#[test]
fn dry_run_prints_a_unit_that_systemd_accepts() {
    let h = Home::new();
    let key = h.key_file(0o600);
    let ca = h.ca_file();
    let out = h.ccrm(&[
        "daemon",
        "install",
        "--dry-run",
        "--bot-url",
        "wss://bot.example.com",
        "--api-key-file",
        key.to_str().expect("utf8"),
        "--bot-ca-file",
        ca.to_str().expect("utf8"),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let unit_path = h.path("config/systemd/user/ccrmd.service");
    assert!(
        stdout.starts_with(&format!(
            "# {} (not written: --dry-run)\n",
            unit_path.display()
        )),
        "{stdout}"
    );
    assert!(!unit_path.exists(), "a dry run writes nothing");
    let ccrmd = Path::new(env!("CARGO_BIN_EXE_ccrm")).with_file_name("ccrmd");
    for line in [
        format!("ExecStart=\"{}\"", ccrmd.display()),
        "Environment=\"CCRM_BOT_URL=wss://bot.example.com\"".to_owned(),
        format!("Environment=\"CCRM_BOT_API_KEY_FILE={}\"", key.display()),
        format!("Environment=\"CCRM_BOT_CA_FILE={}\"", ca.display()),
        "KillMode=mixed".to_owned(),
        "WantedBy=default.target".to_owned(),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing `{line}`:\n{stdout}"
        );
    }
    assert!(stdout.contains("Environment=\"PATH="), "{stdout}");
    assert!(
        !stdout.contains("secretvalue"),
        "the key itself stays in its file"
    );

    // What was printed is a unit systemd accepts.
    let file = h.path("ccrmd.service");
    let unit: String = stdout.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, unit).expect("write");
    verify(&file, true);

    // --json carries the same.
    let out = h.ccrm(&["--json", "daemon", "install", "--dry-run"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["manager"], "systemd");
    assert!(v["unit"].as_str().is_some_and(|u| u.contains("ExecStart=")));
}

#[test]
fn install_writes_the_unit_and_uninstall_removes_it() {
    let h = Home::new();
    let out = h.ccrm(&["--json", "daemon", "install", "--no-enable"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let path = h.path("config/systemd/user/ccrmd.service");
    assert_eq!(v["path"], path.display().to_string());
    assert_eq!(v["enabled"], false);
    assert!(path.is_file());
    verify(&path, true);

    let out = h.ccrm(&["daemon", "uninstall", "--no-disable"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("removed"), "{:?}", text(&out));
    assert!(!path.exists());
    let out = h.ccrm(&["daemon", "uninstall", "--no-disable"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("no ccrmd service is installed"),
        "{:?}",
        text(&out)
    );
}

#[test]
fn install_refuses_clear_text_keys_and_incomplete_flags() {
    let h = Home::new();
    let key = h.key_file(0o600);
    let key = key.to_str().expect("utf8");
    let refused = |args: &[&str], needle: &str| {
        let out = h.ccrm(args);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?} was accepted: {stdout}");
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` not in {stderr}"
        );
    };
    let ws = [
        "daemon",
        "install",
        "--dry-run",
        "--bot-url",
        "ws://bot.example.com:7878",
    ];
    refused(
        &[&ws[..], &["--api-key-file", key]].concat(),
        "allow_insecure_bot",
    );
    refused(&ws, "--api-key-file");
    let wide = h.key_file(0o644);
    refused(
        &[&ws[..], &["--api-key-file", wide.to_str().expect("utf8")]].concat(),
        "chmod 600",
    );
    // A CA file that holds no certificate (ccrmd checks it for ccrm, as its uplink would
    // load it).
    let not_ca = h.path("not-a-ca.pem");
    std::fs::write(&not_ca, "not a certificate\n").expect("write");
    refused(
        &[
            "daemon",
            "install",
            "--dry-run",
            "--bot-url",
            "wss://bot.example.com",
            "--api-key-file",
            key,
            "--bot-ca-file",
            not_ca.to_str().expect("utf8"),
        ],
        "holds no PEM certificate",
    );
    // Allowed when asked for explicitly, and loopback is always fine.
    let out = h.ccrm(&[&ws[..], &["--api-key-file", key, "--allow-insecure-bot"]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("CCRM_ALLOW_INSECURE_BOT=true"));
    let out = h.ccrm(&[
        "daemon",
        "install",
        "--dry-run",
        "--bot-url",
        "ws://127.0.0.1:7878",
        "--api-key-file",
        key,
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn the_launchd_agent_is_a_valid_plist() {
    let h = Home::new();
    let out = h.ccrm(&["daemon", "install", "--dry-run", "--manager", "launchd"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "# {}",
            h.path("home/Library/LaunchAgents/dev.ccrm.ccrmd.plist")
                .display()
        )),
        "{stdout}"
    );
    let plist = h.path("agent.plist");
    let body: String = stdout.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&plist, body).expect("write");
    let out = Command::new("python3")
        .args([
            "-c",
            "import plistlib, sys; p = plistlib.load(open(sys.argv[1], 'rb')); \
             print(p['Label'], p['ProgramArguments'][0], p['KeepAlive']['SuccessfulExit'], 'PATH' in p['EnvironmentVariables'])",
        ])
        .arg(&plist)
        .output()
        .expect("python3");
    let ccrmd = Path::new(env!("CARGO_BIN_EXE_ccrm")).with_file_name("ccrmd");
    assert_eq!(
        text(&out).0.trim(),
        format!("dev.ccrm.ccrmd {} False True", ccrmd.display()),
        "{:?}",
        text(&out)
    );
}

#[test]
fn the_shipped_bot_unit_is_hardened_and_systemd_accepts_it() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/ccrm-bot.service");
    let text = std::fs::read_to_string(&shipped).expect("dist/ccrm-bot.service");
    for key in [
        "User=ccrm-bot",
        "StateDirectory=ccrm-bot",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(text.lines().any(|l| l == key), "missing {key}");
    }
    // verify checks that ExecStart exists: point it at the binary this build made.
    let bot = Path::new(env!("CARGO_BIN_EXE_ccrm")).with_file_name("ccrm-bot");
    assert!(bot.exists(), "build the workspace first: {}", bot.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("ccrm-bot.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/ccrm-bot", &bot.display().to_string()),
    )
    .expect("write");
    verify(&unit, false);
    // The example config it points at is one the bot accepts.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/bot.toml");
    let out = Command::new(&bot)
        .arg("--config")
        .arg(&example)
        .args(["--data-dir", "/var/lib/ccrm-bot", "--print-config"])
        .env_remove("CCRM_BOT_LISTEN")
        .output()
        .expect("ccrm-bot");
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"listen\": \"0.0.0.0:7878\""));
}

#[test]
fn config_errors_name_file_line_and_key() {
    let h = Home::new();
    let file = h.path("ccrmd.toml");
    std::fs::write(
        &file,
        "# my daemon\nhostname = \"box\"\nstop_grace_secs = \"soon\"\n",
    )
    .expect("write");
    let ccrmd = Path::new(env!("CARGO_BIN_EXE_ccrmd"));
    let run = |f: &Path| {
        Command::new(ccrmd)
            .arg("--config")
            .arg(f)
            .arg("--print-config")
            .env_remove("CCRM_CONFIG")
            .output()
            .expect("ccrmd")
    };
    let out = run(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:3: key `stop_grace_secs`", file.display())),
        "{stderr}"
    );
    assert!(stderr.contains("expected a number"), "{stderr}");

    std::fs::write(&file, "hostname = \"box\"\nclaude_binary = \"/x\"\n").expect("write");
    let out = run(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":2: key `claude_binary`: unknown field"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`claude_bin`"),
        "lists what is allowed: {stderr}"
    );

    std::fs::write(&file, "\n\ndefault_permission_mode = \"yolo\"\n").expect("write");
    let out = run(&file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":3: key `default_permission_mode`: `yolo` is not a permission mode"),
        "{stderr}"
    );
    assert!(stderr.contains("acceptEdits"), "{stderr}");
}
