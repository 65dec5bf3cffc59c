//! [`JsonLines`]: newline-delimited JSON over any async stream, with a hard cap on line
//! length. The same type serves the daemon's Unix socket (both ends) and the Claude Code
//! child's stdio, so framing and limits live in one place.

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LinesCodec, LinesCodecError};

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line was longer than the cap; the rest of it is skipped and reading can go on.
    #[error("line longer than {max} bytes")]
    TooLong {
        /// The cap.
        max: usize,
    },
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

fn map_err(e: LinesCodecError, max: usize) -> LineError {
    match e {
        LinesCodecError::MaxLineLengthExceeded => LineError::TooLong { max },
        LinesCodecError::Io(e) => LineError::Io(e),
    }
}

/// A bidirectional JSON-lines connection.
pub struct JsonLines<S> {
    inner: Framed<S, LinesCodec>,
    max: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> JsonLines<S> {
    /// Wraps `stream`; lines longer than `max` bytes are refused.
    pub fn new(stream: S, max: usize) -> Self {
        Self {
            inner: Framed::new(stream, LinesCodec::new_with_max_length(max)),
            max,
        }
    }

    /// The next line, `None` at end of stream. After [`LineError::TooLong`] the stream
    /// stays usable: the codec discards up to the next newline.
    pub async fn next_line(&mut self) -> Option<Result<String, LineError>> {
        let max = self.max;
        self.inner.next().await.map(|r| r.map_err(|e| map_err(e, max)))
    }

    /// Serialises `value` as one line and flushes it.
    pub async fn send<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let line = serde_json::to_string(value).map_err(std::io::Error::other)?;
        self.inner.send(line).await.map_err(|e| match e {
            LinesCodecError::Io(e) => e,
            LinesCodecError::MaxLineLengthExceeded => std::io::Error::other("line too long"),
        })
    }

    /// Splits into independent read and write halves.
    pub fn split(self) -> (LineReader<tokio::io::ReadHalf<S>>, LineWriter<tokio::io::WriteHalf<S>>) {
        let max = self.max;
        let (r, w) = tokio::io::split(self.inner.into_inner());
        (LineReader::new(r, max), LineWriter::new(w))
    }
}

/// The read half of a JSON-lines stream.
pub struct LineReader<R> {
    inner: FramedRead<R, LinesCodec>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps `reader`; lines longer than `max` bytes are refused.
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            inner: FramedRead::new(reader, LinesCodec::new_with_max_length(max)),
            max,
        }
    }

    /// The next line, `None` at end of stream.
    pub async fn next_line(&mut self) -> Option<Result<String, LineError>> {
        let max = self.max;
        self.inner.next().await.map(|r| r.map_err(|e| map_err(e, max)))
    }
}

/// The write half of a JSON-lines stream.
pub struct LineWriter<W> {
    inner: FramedWrite<W, LinesCodec>,
}

impl<W: AsyncWrite + Unpin> LineWriter<W> {
    /// Wraps `writer`.
    pub fn new(writer: W) -> Self {
        Self {
            inner: FramedWrite::new(writer, LinesCodec::new()),
        }
    }

    /// Serialises `value` as one line and flushes it.
    pub async fn send<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let line = serde_json::to_string(value).map_err(std::io::Error::other)?;
        self.send_line(line).await
    }

    /// Writes one pre-serialised line (without its newline) and flushes it.
    pub async fn send_line(&mut self, line: String) -> std::io::Result<()> {
        self.inner.send(line).await.map_err(|e| match e {
            LinesCodecError::Io(e) => e,
            LinesCodecError::MaxLineLengthExceeded => std::io::Error::other("line too long"),
        })
    }

    /// Shuts the writer down (EOF for the peer).
    pub async fn close(&mut self) -> std::io::Result<()> {
        SinkExt::<String>::close(&mut self.inner).await.map_err(|e| match e {
            LinesCodecError::Io(e) => e,
            LinesCodecError::MaxLineLengthExceeded => std::io::Error::other("line too long"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn too_long_lines_are_skipped_and_reading_goes_on() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut lines = JsonLines::new(a, 16);
        b.write_all(b"{\"a\":1}\n").await.expect("write");
        b.write_all(&[b'x'; 100]).await.expect("write");
        b.write_all(b"\n{\"b\":2}\n").await.expect("write");
        drop(b);
        assert_eq!(lines.next_line().await.and_then(Result::ok).as_deref(), Some("{\"a\":1}"));
        assert!(matches!(lines.next_line().await, Some(Err(LineError::TooLong { max: 16 }))));
        assert_eq!(lines.next_line().await.and_then(Result::ok).as_deref(), Some("{\"b\":2}"));
        assert!(lines.next_line().await.is_none());
    }

    #[tokio::test]
    async fn send_writes_one_line() {
        let (a, b) = tokio::io::duplex(1024);
        let mut w = JsonLines::new(a, 1024);
        let mut r = JsonLines::new(b, 1024);
        w.send(&serde_json::json!({"x": [1, 2]})).await.expect("send");
        assert_eq!(r.next_line().await.and_then(Result::ok).as_deref(), Some(r#"{"x":[1,2]}"#));
    }
}
