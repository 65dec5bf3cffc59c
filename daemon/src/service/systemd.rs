//! The systemd user unit for ccrmd, and `systemctl --user` to enable or disable it.
//!
//! `KillMode=mixed`: on stop, SIGTERM goes to ccrmd alone, which stops its sessions
//! gracefully; whatever is left after `TimeoutStopSec` gets SIGKILL. (The default would
//! SIGTERM every claude child at the same moment, before ccrmd could stop them in order.)

use super::{Spec, run};

/// The unit's file name.
pub(super) const UNIT_NAME: &str = "ccrmd.service";

/// The unit text.
pub(super) fn render(spec: &Spec) -> String {
    let mut exec = vec![quote(&spec.program.to_string_lossy())];
    exec.extend(spec.args.iter().map(|a| quote(a)));
    let mut out = String::from(
        "# Written by `ccrm daemon install`; `ccrm daemon uninstall` removes it.\n\
         [Unit]\n\
         Description=ccrmd: runs Claude Code sessions for ccrm\n\
         Documentation=man:ccrm(1)\n\
         \n\
         [Service]\n\
         Type=simple\n",
    );
    out.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    for (k, v) in &spec.env {
        out.push_str(&format!("Environment={}\n", quote(&format!("{k}={v}"))));
    }
    out.push_str(
        "Restart=on-failure\n\
         RestartSec=2\n\
         KillMode=mixed\n\
         TimeoutStopSec=30\n\
         UMask=0077\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
    );
    out
}

/// A word for `ExecStart=` / `Environment=`: double-quoted, with `\`, `"` and systemd's
/// `%` specifiers and `$` expansions escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `systemctl --user daemon-reload`.
pub(super) fn reload(done: &mut Vec<String>) -> anyhow::Result<()> {
    run("systemctl", &["--user", "daemon-reload"])?;
    done.push("systemctl --user daemon-reload".to_owned());
    Ok(())
}

/// Reloads units, then enables and starts ccrmd.
pub(super) fn enable(done: &mut Vec<String>) -> anyhow::Result<()> {
    reload(done)?;
    run("systemctl", &["--user", "enable", "--now", UNIT_NAME])?;
    done.push(format!("systemctl --user enable --now {UNIT_NAME}"));
    Ok(())
}

/// Stops and disables ccrmd.
pub(super) fn disable(done: &mut Vec<String>) -> anyhow::Result<()> {
    run("systemctl", &["--user", "disable", "--now", UNIT_NAME])?;
    done.push(format!("systemctl --user disable --now {UNIT_NAME}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_values_literal() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("50%$HOME\"\\"), "\"50%%$$HOME\\\"\\\\\"");
    }

    #[test]
    fn the_unit_runs_ccrmd_with_its_environment() {
        let spec = Spec {
            program: "/opt/my bin/ccrmd".into(),
            args: vec![],
            env: vec![("CCRM_BOT_URL".into(), "wss://bot.example.com".into())],
            log: "/tmp/log".into(),
        };
        let text = render(&spec);
        assert!(text.contains("ExecStart=\"/opt/my bin/ccrmd\"\n"), "{text}");
        assert!(
            text.contains("Environment=\"CCRM_BOT_URL=wss://bot.example.com\"\n"),
            "{text}"
        );
        assert!(text.contains("KillMode=mixed") && text.contains("WantedBy=default.target"));
    }
}
