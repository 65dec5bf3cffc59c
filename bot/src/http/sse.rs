//! Plumbing for long-lived streaming responses: a stream fed by a task through a bounded
//! channel that is aborted when the client goes, and [`ClientGuard`], which counts open
//! streaming clients (SSE and dashboard sockets) for `/metrics`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;

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
