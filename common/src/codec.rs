//! [`JsonLines`]: newline-delimited JSON over any async stream, with a hard cap on line
//! length. The same types serve the daemon's Unix socket (both ends) and the Claude Code
//! child's stdio, so framing and limits live in one place.
//!
//! The decoder ([`BoundedLines`]) reports an over-long or non-UTF-8 line as an item rather
//! than a decoder error: tokio-util's `Framed` ends the stream after a decoder error, and we
//! want one bad line to cost one error reply, not the connection.

use bytes::{Buf, BufMut, BytesMut};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, Framed, FramedRead, FramedWrite};

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line was longer than the cap; the rest of it is skipped and reading can go on.
    #[error("line longer than {max} bytes")]
    TooLong {
        /// The cap.
        max: usize,
    },
    /// The line was not UTF-8; it is skipped and reading can go on.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// One decoded line, or why there is none.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A line without its terminator.
    Line(String),
    /// A line longer than the cap (it is being skipped).
    TooLong,
    /// A line that is not UTF-8 (skipped).
    NotUtf8,
}

/// A newline codec with a length cap that never fails on content. See the module docs.
#[derive(Debug, Clone)]
pub struct BoundedLines {
    max: usize,
    next_index: usize,
    discarding: bool,
}

impl BoundedLines {
    /// Lines longer than `max` bytes are reported as [`Frame::TooLong`] and skipped.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            next_index: 0,
            discarding: false,
        }
    }

    fn line(bytes: &[u8]) -> Frame {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        match std::str::from_utf8(bytes) {
            Ok(s) => Frame::Line(s.to_owned()),
            Err(_) => Frame::NotUtf8,
        }
    }
}

impl Decoder for BoundedLines {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            let read_to = buf.len().min(self.max.saturating_add(1));
            let newline = buf[self.next_index..read_to]
                .iter()
                .position(|b| *b == b'\n');
            match (self.discarding, newline) {
                (true, Some(off)) => {
                    buf.advance(self.next_index + off + 1);
                    self.discarding = false;
                    self.next_index = 0;
                }
                (true, None) => {
                    buf.advance(read_to);
                    self.next_index = 0;
                    if buf.is_empty() {
                        return Ok(None);
                    }
                }
                (false, Some(off)) => {
                    let end = self.next_index + off;
                    self.next_index = 0;
                    let line = buf.split_to(end + 1);
                    return Ok(Some(Self::line(&line[..end])));
                }
                (false, None) if buf.len() > self.max => {
                    self.discarding = true;
                    self.next_index = 0;
                    return Ok(Some(Frame::TooLong));
                }
                (false, None) => {
                    self.next_index = read_to;
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() || self.discarding {
            buf.clear();
            return Ok(None);
        }
        self.next_index = 0;
        let rest = buf.split_to(buf.len());
        Ok(Some(Self::line(&rest)))
    }
}

impl<T: AsRef<str>> Encoder<T> for BoundedLines {
    type Error = std::io::Error;

    fn encode(&mut self, line: T, buf: &mut BytesMut) -> Result<(), std::io::Error> {
        let line = line.as_ref();
        buf.reserve(line.len() + 1);
        buf.put(line.as_bytes());
        buf.put_u8(b'\n');
        Ok(())
    }
}

fn frame_to_result(frame: Result<Frame, std::io::Error>, max: usize) -> Result<String, LineError> {
    match frame? {
        Frame::Line(s) => Ok(s),
        Frame::TooLong => Err(LineError::TooLong { max }),
        Frame::NotUtf8 => Err(LineError::NotUtf8),
    }
}

/// A bidirectional JSON-lines connection.
pub struct JsonLines<S> {
    inner: Framed<S, BoundedLines>,
    max: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> JsonLines<S> {
    /// Wraps `stream`; lines longer than `max` bytes are refused.
    pub fn new(stream: S, max: usize) -> Self {
        Self {
            inner: Framed::new(stream, BoundedLines::new(max)),
            max,
        }
    }

    /// The next line, `None` at end of stream. After a [`LineError::TooLong`] or
    /// [`LineError::NotUtf8`] the stream stays usable.
    pub async fn next_line(&mut self) -> Option<Result<String, LineError>> {
        let max = self.max;
        self.inner.next().await.map(|r| frame_to_result(r, max))
    }

    /// Serialises `value` as one line and flushes it.
    pub async fn send<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let line = serde_json::to_string(value).map_err(std::io::Error::other)?;
        self.inner.send(line).await
    }

    /// Splits into independent read and write halves.
    pub fn split(
        self,
    ) -> (
        LineReader<tokio::io::ReadHalf<S>>,
        LineWriter<tokio::io::WriteHalf<S>>,
    ) {
        let max = self.max;
        let (r, w) = tokio::io::split(self.inner.into_inner());
        (LineReader::new(r, max), LineWriter::new(w))
    }
}

/// The read half of a JSON-lines stream.
pub struct LineReader<R> {
    inner: FramedRead<R, BoundedLines>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps `reader`; lines longer than `max` bytes are refused.
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            inner: FramedRead::new(reader, BoundedLines::new(max)),
            max,
        }
    }

    /// The next line, `None` at end of stream.
    pub async fn next_line(&mut self) -> Option<Result<String, LineError>> {
        let max = self.max;
        self.inner.next().await.map(|r| frame_to_result(r, max))
    }
}

/// The write half of a JSON-lines stream.
pub struct LineWriter<W> {
    inner: FramedWrite<W, BoundedLines>,
}

impl<W: AsyncWrite + Unpin> LineWriter<W> {
    /// Wraps `writer`.
    pub fn new(writer: W) -> Self {
        Self {
            inner: FramedWrite::new(writer, BoundedLines::new(usize::MAX)),
        }
    }

    /// Serialises `value` as one line and flushes it.
    pub async fn send<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let line = serde_json::to_string(value).map_err(std::io::Error::other)?;
        self.send_line(line).await
    }

    /// Writes one pre-serialised line (without its newline) and flushes it.
    pub async fn send_line(&mut self, line: String) -> std::io::Result<()> {
        self.inner.send(line).await
    }

    /// Shuts the writer down (EOF for the peer).
    pub async fn close(&mut self) -> std::io::Result<()> {
        SinkExt::<String>::close(&mut self.inner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn bad_lines_are_skipped_and_reading_goes_on() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut lines = JsonLines::new(a, 16);
        b.write_all(b"{\"a\":1}\r\n").await.expect("write");
        b.write_all(&[b'x'; 100]).await.expect("write");
        b.write_all(b"\n\xff\xfe\n{\"b\":2}\n")
            .await
            .expect("write");
        b.write_all(&[b'y'; 40]).await.expect("write");
        b.write_all(b"\nlast").await.expect("write");
        drop(b);
        let next = |r: Option<Result<String, LineError>>| r.map(|r| r.map_err(|e| e.to_string()));
        assert_eq!(next(lines.next_line().await), Some(Ok("{\"a\":1}".into())));
        assert!(matches!(
            lines.next_line().await,
            Some(Err(LineError::TooLong { max: 16 }))
        ));
        assert!(matches!(
            lines.next_line().await,
            Some(Err(LineError::NotUtf8))
        ));
        assert_eq!(next(lines.next_line().await), Some(Ok("{\"b\":2}".into())));
        assert!(matches!(
            lines.next_line().await,
            Some(Err(LineError::TooLong { .. }))
        ));
        assert_eq!(next(lines.next_line().await), Some(Ok("last".into())));
        assert!(lines.next_line().await.is_none());
    }

    #[tokio::test]
    async fn a_line_split_across_reads_is_joined() {
        let (a, mut b) = tokio::io::duplex(4);
        let mut lines = JsonLines::new(a, 1024);
        let writer = tokio::spawn(async move {
            b.write_all(b"{\"long\":\"abcdefghij\"}\n")
                .await
                .expect("write");
        });
        assert_eq!(
            lines.next_line().await.and_then(Result::ok).as_deref(),
            Some("{\"long\":\"abcdefghij\"}")
        );
        writer.await.expect("writer");
    }

    #[tokio::test]
    async fn send_writes_one_line() {
        let (a, b) = tokio::io::duplex(1024);
        let mut w = JsonLines::new(a, 1024);
        let mut r = JsonLines::new(b, 1024);
        w.send(&serde_json::json!({"x": [1, 2]}))
            .await
            .expect("send");
        assert_eq!(
            r.next_line().await.and_then(Result::ok).as_deref(),
            Some(r#"{"x":[1,2]}"#)
        );
    }
}
