//! The launchd agent for ccrmd on macOS (`~/Library/LaunchAgents/dev.ccrm.ccrmd.plist`),
//! and `launchctl bootstrap` / `bootout` to load or unload it in the user's GUI domain.
//! `KeepAlive` with `SuccessfulExit = false` restarts ccrmd when it fails, not after a
//! clean `ccrm daemon stop`.

use std::path::Path;

use super::{Spec, run};

/// The agent's label.
pub(super) const LABEL: &str = "dev.ccrm.ccrmd";

/// The property list.
pub(super) fn render(spec: &Spec) -> String {
    let mut args = vec![spec.program.to_string_lossy().into_owned()];
    args.extend(spec.args.iter().cloned());
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `ccrm daemon install`; `ccrm daemon uninstall` removes it. -->\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    out.push_str(&format!("  <key>Label</key>\n  <string>{LABEL}</string>\n"));
    out.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    for a in &args {
        out.push_str(&format!("    <string>{}</string>\n", xml(a)));
    }
    out.push_str("  </array>\n  <key>EnvironmentVariables</key>\n  <dict>\n");
    for (k, v) in &spec.env {
        out.push_str(&format!(
            "    <key>{}</key>\n    <string>{}</string>\n",
            xml(k),
            xml(v)
        ));
    }
    out.push_str("  </dict>\n");
    out.push_str("  <key>RunAtLoad</key>\n  <true/>\n");
    out.push_str(
        "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n",
    );
    out.push_str("  <key>ThrottleInterval</key>\n  <integer>2</integer>\n");
    out.push_str("  <key>Umask</key>\n  <integer>63</integer>\n");
    let log = xml(&spec.log.to_string_lossy());
    out.push_str(&format!(
        "  <key>StandardOutPath</key>\n  <string>{log}</string>\n  <key>StandardErrorPath</key>\n  <string>{log}</string>\n"
    ));
    out.push_str("</dict>\n</plist>\n");
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn domain() -> String {
    format!("gui/{}", nix::unistd::getuid())
}

/// Loads and starts the agent.
pub(super) fn enable(path: &Path, done: &mut Vec<String>) -> anyhow::Result<()> {
    let path = path.to_string_lossy();
    run("launchctl", &["bootstrap", &domain(), &path])?;
    done.push(format!("launchctl bootstrap {} {path}", domain()));
    Ok(())
}

/// Stops and unloads the agent.
pub(super) fn disable(done: &mut Vec<String>) -> anyhow::Result<()> {
    let target = format!("{}/{LABEL}", domain());
    run("launchctl", &["bootout", &target])?;
    done.push(format!("launchctl bootout {target}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plist_escapes_and_keeps_alive_on_failure() {
        let spec = Spec {
            program: "/Users/a&b/bin/ccrmd".into(),
            args: vec![],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            log: "/Users/a/ccrmd.log".into(),
        };
        let text = render(&spec);
        assert!(
            text.contains("<string>/Users/a&amp;b/bin/ccrmd</string>"),
            "{text}"
        );
        assert!(text.contains("<key>PATH</key>\n    <string>/usr/bin:/bin</string>"));
        assert!(text.contains("<key>SuccessfulExit</key>\n    <false/>"));
        assert_eq!(
            text.matches("<dict>").count(),
            text.matches("</dict>").count()
        );
    }
}
