//! [`EventLog`]: the bounded, per-session, in-memory log of normalised events. The session
//! actor appends; any number of readers page through it or follow it without ever blocking
//! the actor (a std `Mutex` held only for copies, plus a `watch` of the newest seq).

use std::collections::VecDeque;
use std::sync::Mutex;

use common::event::{Event, EventKind, now_ms};
use common::ids::SessionId;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// A page of events.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// Oldest seq still held (older ones were dropped to respect the capacity).
    pub first_seq: u64,
    /// Newest seq.
    pub last_seq: u64,
}

struct Inner {
    events: VecDeque<Event>,
    next_seq: u64,
}

/// See the module docs.
pub struct EventLog {
    session_id: SessionId,
    cap: usize,
    inner: Mutex<Inner>,
    last: watch::Sender<u64>,
    sink: Option<mpsc::UnboundedSender<Event>>,
}

impl EventLog {
    /// An empty log holding at most `cap` events. Every event is also sent to `sink`
    /// (the daemon-wide stream that an uplink can forward), when given.
    pub fn new(
        session_id: SessionId,
        cap: usize,
        sink: Option<mpsc::UnboundedSender<Event>>,
    ) -> Self {
        Self {
            session_id,
            cap: cap.max(1),
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                next_seq: 1,
            }),
            last: watch::channel(0).0,
            sink,
        }
    }

    /// Appends an event and wakes followers.
    pub fn push(&self, kind: EventKind, raw: Option<Value>) -> Event {
        let event = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let event = Event {
                seq: inner.next_seq,
                ts_ms: now_ms(),
                session_id: self.session_id,
                kind,
                raw,
            };
            inner.next_seq += 1;
            if inner.events.len() == self.cap {
                inner.events.pop_front();
            }
            inner.events.push_back(event.clone());
            event
        };
        self.last.send_replace(event.seq);
        if let Some(sink) = &self.sink {
            let _ = sink.send(event.clone());
        }
        event
    }

    /// Events with `seq > after`, at most `limit`.
    pub fn page(&self, after: u64, limit: usize) -> Page {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let first_seq = inner.events.front().map_or(inner.next_seq, |e| e.seq);
        let last_seq = inner.next_seq - 1;
        // Seqs are contiguous, so the start index is arithmetic.
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(first_seq))
            .unwrap_or(usize::MAX);
        let start = skip.min(inner.events.len());
        let events = inner.events.range(start..).take(limit).cloned().collect();
        Page {
            events,
            first_seq,
            last_seq,
        }
    }

    /// The newest seq (0 when empty).
    pub fn last_seq(&self) -> u64 {
        *self.last.borrow()
    }

    /// A receiver that changes whenever an event is appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(i: usize) -> EventKind {
        EventKind::AssistantText {
            text: i.to_string(),
        }
    }

    #[test]
    fn pages_and_drops_oldest() {
        let log = EventLog::new(SessionId::new(), 3, None);
        for i in 0..5 {
            log.push(text(i), None);
        }
        let p = log.page(0, 10);
        assert_eq!(p.first_seq, 3);
        assert_eq!(p.last_seq, 5);
        assert_eq!(
            p.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(log.page(3, 1).events[0].seq, 4);
        assert!(log.page(5, 10).events.is_empty());
        assert_eq!(log.last_seq(), 5);
    }

    #[tokio::test]
    async fn followers_are_woken_and_sink_sees_all() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = EventLog::new(SessionId::new(), 10, Some(tx));
        let mut sub = log.subscribe();
        log.push(text(1), None);
        sub.changed().await.expect("changed");
        assert_eq!(*sub.borrow(), 1);
        assert_eq!(rx.recv().await.map(|e| e.seq), Some(1));
    }
}
