//! Starting one of our binaries in a test and waiting, bounded, for the log line that says
//! it is ready — instead of sleeping. Its stderr is echoed to the test's stderr with a tag
//! and can also be collected for assertions (for example that no secret was logged). And
//! stopping one as a user would ([`stop`]).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines of a child's stderr, ANSI colours removed, shared with the reader thread.
pub type LogLines = Arc<Mutex<Vec<String>>>;

/// Spawns `cmd` (stdin and stdout null, stderr piped) and waits up to `timeout` for a
/// stderr line containing `ready`. Returns the child and that line; on failure, the lines
/// seen before the child exited (or a timeout message). Every line is echoed as
/// `[tag] line` and, with `log`, collected.
pub fn spawn_ready(
    mut cmd: Command,
    ready: &'static str,
    tag: &'static str,
    timeout: Duration,
    log: Option<LogLines>,
) -> Result<(Child, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut early = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
            if let Some(log) = &log {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(strip_ansi(&line));
            }
            if let Some(t) = &tx {
                if line.contains(ready) {
                    let _ = t.send(Ok(line));
                    tx = None;
                } else {
                    early.push(line);
                }
            }
        }
        if let Some(t) = tx {
            let _ = t.send(Err(early.join("\n")));
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(line)) => Ok((child, line)),
        Ok(Err(log)) => {
            let _ = child.wait();
            Err(log)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("timed out waiting for {tag}"))
        }
    }
}

/// Stops `child` as a user would: SIGTERM, up to `grace` for it to exit (ccrmd stops its
/// claude children, chromedriver its Chromium), then -9; reaped either way.
pub fn stop(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = std::time::Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Removes ANSI escape sequences (colours) from a log line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        assert_eq!(strip_ansi("\u{1b}[32m INFO\u{1b}[0m x=1"), " INFO x=1");
    }

    #[test]
    fn waits_for_the_ready_line_or_reports_what_it_saw() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo starting >&2; echo 'all ready now' >&2; sleep 5"]);
        let (mut child, line) =
            spawn_ready(ok, "ready", "t", Duration::from_secs(10), None).expect("ready");
        assert_eq!(line, "all ready now");
        let _ = child.kill();
        let _ = child.wait();
        let mut bad = Command::new("sh");
        bad.args(["-c", "echo broken config >&2; exit 1"]);
        let err = spawn_ready(bad, "ready", "t", Duration::from_secs(10), None).expect_err("exits");
        assert!(err.contains("broken config"), "{err}");
    }
}
