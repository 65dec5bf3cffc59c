//! What `ccrm up` prints once both are running: the dashboard and API URLs, the token, the
//! logs, and commands that work exactly as printed — `ccrm` by its full path when this
//! binary is not the `ccrm` on `PATH` (as after `scripts/run.sh`, which runs it from
//! `target/release/`), with how to install it. In demo mode, the demo prompts to try.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What the banner shows.
pub(super) struct Banner<'a> {
    pub listen: SocketAddr,
    pub token: &'a str,
    pub bot_log: &'a Path,
    pub daemon_log: &'a Path,
    pub demo: bool,
    /// The socket, when it is not the default one (demo mode).
    pub socket: Option<&'a Path>,
    pub demo_work: &'a Path,
}

/// How to call this `ccrm` in a shell: `ccrm` if that is what `PATH` finds, else the full
/// path; and whether it is on `PATH`.
pub(super) fn ccrm_command() -> (String, bool) {
    let Ok(me) = std::env::current_exe() else {
        return ("ccrm".to_owned(), true);
    };
    let me = me.canonicalize().unwrap_or(me);
    let on_path = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p)
            .any(|d| d.join("ccrm").canonicalize().is_ok_and(|found| found == me))
    });
    if on_path {
        ("ccrm".to_owned(), true)
    } else {
        (shell_word(&me), false)
    }
}

/// `p` quoted for a POSIX shell when it needs it.
fn shell_word(p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Banner<'_> {
    /// Prints it.
    pub fn print(&self) {
        let url = format!("http://{}", self.listen);
        let (ccrm, on_path) = ccrm_command();
        if self.demo {
            println!("==================================================================");
            println!("  DEMO MODE: sessions talk to a scripted demo model, not to Claude.");
            println!("  No Anthropic account is used; the replies below are canned.");
            println!("==================================================================");
        }
        println!("ccrm is up");
        println!("  dashboard: {url}/");
        println!("  API:       {url}/api   (OpenAPI: {url}/api/openapi.json)");
        println!("  token:     {}", self.token);
        println!(
            "  logs:      {} and {}",
            self.bot_log.display(),
            self.daemon_log.display()
        );
        println!("  stop:      Ctrl-C (a crashed bot or daemon is restarted)");
        println!();
        println!("Try, in another terminal:");
        if let Some(socket) = self.socket {
            println!("  export CCRM_SOCKET={}", shell_word(socket));
        }
        let cwd = if self.demo {
            format!(" --cwd {}", shell_word(self.demo_work))
        } else {
            String::new()
        };
        println!("  {ccrm} start --name demo{cwd}");
        if self.demo {
            println!("  {ccrm} prompt demo \"write a hello world file\"");
            println!("  {ccrm} approvals                # the Write waits for you");
            println!("  {ccrm} approve demo && {ccrm} events demo");
        } else {
            println!("  {ccrm} prompt demo \"what is in this directory?\" --follow");
        }
        println!("  {ccrm} list");
        println!(
            "  curl -H \"Authorization: Bearer {}\" {url}/api/sessions",
            self.token
        );
        if self.demo {
            println!();
            println!("Demo prompts (from any surface):");
            for (prompt, shows) in demo::prompts::PROMPTS {
                println!("  {:<32} {shows}", format!("\"{prompt}\""));
            }
        }
        if !on_path {
            println!();
            println!(
                "(`ccrm` is not on your PATH, so the commands above use its full path. To \
                 install the binaries: `cargo install --locked --path daemon` and `cargo install \
                 --locked --path bot`, or link them: `ln -s {} ~/.local/bin/`.)",
                release_dir().display()
            );
        }
    }
}

/// The directory of this binary, with a `*` for its siblings (`target/release/*`).
fn release_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("{ccrm,ccrmd,ccrm-bot}")))
        .unwrap_or_else(|| PathBuf::from("target/release/{ccrm,ccrmd,ccrm-bot}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(shell_word(Path::new("/a/b-c/ccrm")), "/a/b-c/ccrm");
        assert_eq!(shell_word(Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
