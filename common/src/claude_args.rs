//! Extra arguments for one session's claude (`ccrm start --claude-args "..."`, `claude_args`
//! over REST): what may be passed through and what ccrm itself manages. The daemon checks
//! them before it starts the session ([`check`]); the CLI checks them too, so a mistake is
//! reported before the request leaves.

/// Flags ccrm sets itself (or replaces with its own option), with what to use instead.
/// `--flag value` and `--flag=value` are both caught.
pub const MANAGED: &[(&str, &str)] = &[
    ("-p", "ccrm runs claude in print mode itself"),
    ("--print", "ccrm runs claude in print mode itself"),
    ("--input-format", "ccrm speaks stream-json to claude"),
    ("--output-format", "ccrm speaks stream-json to claude"),
    ("--verbose", "ccrm sets it for stream-json"),
    (
        "--include-partial-messages",
        "set `partial_messages` in ccrmd.toml",
    ),
    (
        "--permission-prompt-tool",
        "ccrm answers permission prompts itself",
    ),
    ("--session-id", "ccrm gives every session its id"),
    ("-r", "use `ccrm resume`"),
    ("--resume", "use `ccrm resume`"),
    ("-c", "use `ccrm resume`"),
    ("--continue", "use `ccrm resume`"),
    ("--fork-session", "start a new session instead"),
    ("--model", "use `ccrm start --model`"),
    ("--permission-mode", "use `ccrm start --permission-mode`"),
    (
        "--dangerously-skip-permissions",
        "use `ccrm start --auto-allow`",
    ),
    (
        "--allow-dangerously-skip-permissions",
        "use `ccrm start --auto-allow`",
    ),
    ("--allowedTools", "use `ccrm start --allow-tool`"),
    ("--allowed-tools", "use `ccrm start --allow-tool`"),
    (
        "--replay-user-messages",
        "ccrm reads claude's output itself",
    ),
];

/// Most extra arguments one session may have.
pub const MAX_ARGS: usize = 64;
/// Most bytes of one extra argument.
pub const MAX_ARG_LEN: usize = 8192;

/// `Ok` when `args` may be passed to a session's claude; otherwise what is wrong and what
/// to do instead.
pub fn check(args: &[String]) -> Result<(), String> {
    if args.len() > MAX_ARGS {
        return Err(format!(
            "at most {MAX_ARGS} extra claude arguments are allowed, got {}",
            args.len()
        ));
    }
    for a in args {
        if a.len() > MAX_ARG_LEN {
            return Err(format!(
                "a claude argument may be at most {MAX_ARG_LEN} bytes"
            ));
        }
        if a.contains('\0') {
            return Err("a claude argument may not contain a NUL byte".into());
        }
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        if let Some((_, instead)) = MANAGED.iter().find(|(m, _)| *m == flag) {
            return Err(format!(
                "`{flag}` is managed by ccrm and cannot be passed in claude_args: {instead}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn managed_flags_are_refused_in_both_spellings() {
        assert!(
            check(&v(&[
                "--append-system-prompt",
                "be brief",
                "--add-dir",
                "/tmp"
            ]))
            .is_ok()
        );
        assert!(check(&[]).is_ok());
        let e = check(&v(&["--model", "opus"])).expect_err("managed");
        assert!(
            e.contains("--model") && e.contains("ccrm start --model"),
            "{e}"
        );
        let e = check(&v(&["--permission-mode=plan"])).expect_err("managed");
        assert!(e.contains("--permission-mode"), "{e}");
        assert!(check(&v(&["-p"])).is_err());
        assert!(check(&v(&["--dangerously-skip-permissions"])).is_err());
        // A value that merely looks like a flag after `=` is fine.
        assert!(check(&v(&["--append-system-prompt=--model"])).is_ok());
        assert!(check(&vec!["x".to_owned(); MAX_ARGS + 1]).is_err());
        assert!(check(&v(&["a\0b"])).is_err());
    }
}
