//! The child's stdin ([`Stdin`]): a line goes into the pipe at once, from the actor, when
//! nothing is waiting before it; otherwise (the pipe is full, or earlier lines are still
//! queued) it waits in a bounded queue for the writer task, which writes the lines in order
//! as the pipe takes them. Dropping the [`Stdin`] closes the pipe once the queue is written:
//! EOF tells the CLI to finish and exit.
//!
//! Why not always the writer task: the actor logs a prompt's events (which go to the bot
//! link) before it yields, and the queued write ran only after the link's send. Traced with
//! `perf sched` on the 2-core machine in `rest_latency`, the frame to the bot woke the bot,
//! which took the CPU from ccrmd before the queued write ran: the prompt reached claude
//! 0.3–0.55 ms later than it could have. Now claude has it before anyone hears of it.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Lines that may wait for the pipe before the child counts as not reading its input.
const QUEUE: usize = 64;

/// The write end of a child's stdin.
pub(super) struct Stdin {
    pipe: Arc<pipe::Sender>,
    tx: mpsc::Sender<String>,
    /// Lines handed to the writer task and not yet fully written.
    queued: Arc<AtomicUsize>,
}

impl Stdin {
    /// Takes over the child's stdin and starts its writer task.
    pub(super) fn start(stdin: tokio::process::ChildStdin) -> io::Result<Self> {
        let pipe = Arc::new(pipe::Sender::from_owned_fd(stdin.into_owned_fd()?)?);
        let (tx, rx) = mpsc::channel::<String>(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_lines(pipe.clone(), rx, queued.clone()).in_current_span());
        Ok(Self { pipe, tx, queued })
    }

    /// Writes `line` and a newline: at once if nothing waits before it and the pipe takes
    /// it, else (what is left of it) after the lines before it. An error says why the line
    /// was dropped (the child does not read its input, or it is gone).
    pub(super) fn send(&self, line: String) -> Result<(), String> {
        let mut line = line;
        line.push('\n');
        if self.queued.load(Ordering::Acquire) == 0 {
            match self.pipe.try_write(line.as_bytes()) {
                Ok(n) if n == line.len() => return Ok(()),
                // The rest goes first in the queue: nothing else is in it.
                Ok(n) => drop(line.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("claude's stdin is closed: {e}")),
            }
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.tx.try_send(line).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            e.to_string()
        })
    }
}

/// Writes the queued lines in order; stops at the first failure (the child is gone), which
/// leaves the queue closed and so every later line refused.
async fn write_lines(
    pipe: Arc<pipe::Sender>,
    mut rx: mpsc::Receiver<String>,
    queued: Arc<AtomicUsize>,
) {
    while let Some(line) = rx.recv().await {
        let mut rest = line.as_bytes();
        while !rest.is_empty() {
            if pipe.writable().await.is_err() {
                return;
            }
            match pipe.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        queued.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    /// `cat` with a full pipe: lines written at once and lines queued behind a full pipe
    /// come out whole and in order, and closing the input ends it.
    #[tokio::test]
    async fn lines_arrive_whole_and_in_order_when_the_pipe_fills() {
        let mut child = tokio::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cat");
        let stdin = Stdin::start(child.stdin.take().expect("stdin")).expect("pipe");
        let stdout = child.stdout.take().expect("stdout");
        // Bigger than a pipe's 64 KiB: the first line fills it, the rest must queue.
        let long = "x".repeat(200 * 1024);
        let mut sent = Vec::new();
        for i in 0..40 {
            let line = if i % 10 == 0 {
                format!("{i} {long}")
            } else {
                i.to_string()
            };
            stdin.send(line.clone()).expect("queued");
            sent.push(line);
        }
        assert!(
            stdin.queued.load(Ordering::Acquire) > 0,
            "with nobody reading, lines queue behind the full pipe"
        );
        drop(stdin);
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut got = Vec::new();
        let read = async {
            while let Some(l) = lines.next_line().await.expect("read") {
                got.push(l);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), read)
            .await
            .expect("cat ends once its input is closed");
        assert_eq!(got, sent);
    }

    /// A child that is gone: the line is refused with a reason instead of vanishing.
    #[tokio::test]
    async fn a_closed_pipe_refuses_the_line() {
        let mut child = tokio::process::Command::new("true")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("true");
        let stdin = Stdin::start(child.stdin.take().expect("stdin")).expect("pipe");
        let _ = child.wait().await;
        let err = stdin.send("hello".into()).expect_err("nobody reads");
        assert!(err.contains("closed"), "{err}");
    }
}
