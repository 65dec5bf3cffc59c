//! Shell completions and man pages from the clap definitions: `ccrm completions bash` is a
//! script bash accepts (`bash -n`) that offers every subcommand, zsh and fish scripts name
//! them too, `ccrm-bot completions` likewise, and the hidden `man` commands write a page
//! per command (what `scripts/man.sh` runs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::CommandFactory;

fn run(bin: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ccrm() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ccrm"))
}

fn bot() -> PathBuf {
    let p = ccrm().with_file_name("ccrm-bot");
    assert!(p.exists(), "build the workspace first: {}", p.display());
    p
}

/// Visible subcommand names of `cmd`, recursively (`daemon install` as `install`).
fn subcommands(cmd: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(sub.get_name().to_owned());
        out.extend(subcommands(sub));
    }
    out
}

fn check_bash(script: &str, names: &[String]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("completion.bash");
    std::fs::write(&file, script).expect("write");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in names {
        assert!(
            script.contains(name),
            "`{name}` missing from the bash completion"
        );
    }
}

#[test]
fn ccrm_completions_parse_and_offer_every_subcommand() {
    let names = subcommands(&ccrm_daemon::cli::Cli::command());
    for expected in [
        "start",
        "prompt",
        "approve",
        "daemon",
        "install",
        "doctor",
        "completions",
        "up",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n == "man"),
        "the man helper stays hidden"
    );
    let bash = String::from_utf8(run(&ccrm(), &["completions", "bash"]).stdout).expect("utf8");
    check_bash(&bash, &names);
    assert!(
        bash.contains("complete -F"),
        "registers a completion function"
    );
    for shell in ["zsh", "fish"] {
        let script = String::from_utf8(run(&ccrm(), &["completions", shell]).stdout).expect("utf8");
        for name in &names {
            assert!(
                script.contains(name.as_str()),
                "`{name}` missing from the {shell} completion"
            );
        }
    }
    let out = Command::new(ccrm())
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "an unknown shell is refused");
}

#[test]
fn ccrm_bot_completions_parse_and_offer_every_subcommand() {
    let bash = String::from_utf8(run(&bot(), &["completions", "bash"]).stdout).expect("utf8");
    let names: Vec<String> = ["serve", "keys", "create", "list", "revoke", "completions"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    check_bash(&bash, &names);
    let zsh = String::from_utf8(run(&bot(), &["completions", "zsh"]).stdout).expect("utf8");
    assert!(zsh.contains("#compdef ccrm-bot"), "{zsh}");
}

#[test]
fn man_pages_are_written_for_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(&ccrm(), &["man", dir.path().to_str().expect("utf8")]);
    run(&bot(), &["man", dir.path().to_str().expect("utf8")]);
    for page in [
        "ccrm.1",
        "ccrm-start.1",
        "ccrm-doctor.1",
        "ccrm-daemon-install.1",
        "ccrm-bot.1",
        "ccrm-bot-keys.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|_| panic!("{page} not written"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is roff: {text}"
        );
    }
}
