//! Plumbing for long-lived streaming responses: a stream fed by a task through a bounded
//! channel that is aborted when the client goes, and [`ClientGuard`], which counts open
//! streaming clients (SSE and dashboard sockets) for `/metrics`; and the `Last-Event-ID` a
//! client resumes from ([`last_event_id`]).

use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use axum::response::sse::Event as SseEvent;
use futures::Stream;

use crate::AppState;

/// Counts open streaming clients for `/metrics`.
pub struct ClientGuard<'a>(&'a AppState);

impl<'a> ClientGuard<'a> {
    /// Counts one more client until dropped.
    pub fn new(state: &'a AppState) -> Self {
        state.hub.metrics.ws_clients.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0
            .hub
            .metrics
            .ws_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The `Last-Event-ID` header: `None` without one, else the whole number it holds (0 to
/// 2^63 - 1, as documented); `Err` with what to send instead when it holds anything else,
/// which would otherwise replay from the start or wait past the end.
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .and_then(|n| u64::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            "`Last-Event-ID` must be the `id` of the last event received: a whole number \
             from 0 to 9223372036854775807"
                .to_owned()
        })
}

/// A stream fed by a task through a bounded channel; the task ends when the client goes.
pub fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let task = tokio::spawn(f(tx));
    let stream = tokio_stream_from(rx);
    AbortOnDrop { stream, task }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<SseEvent>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}

/// Aborts the feeding task when the response stream is dropped (client gone).
struct AbortOnDrop<S> {
    stream: S,
    task: tokio::task::JoinHandle<()>,
}

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S: Stream + Unpin> Stream for AbortOnDrop<S> {
    type Item = S::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.stream).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_takes_whole_numbers_in_range_only() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("last-event-id", v.parse().expect("header value"));
            last_event_id(&h)
        };
        assert_eq!(last_event_id(&HeaderMap::new()), Ok(None));
        assert_eq!(with("0"), Ok(Some(0)));
        assert_eq!(with(" 42 "), Ok(Some(42)));
        assert_eq!(with("9223372036854775807"), Ok(Some(i64::MAX as u64)));
        for bad in ["9223372036854775808", "-1", "", "4x", "1.5"] {
            assert!(with(bad).is_err(), "{bad:?} was taken");
        }
    }
}
