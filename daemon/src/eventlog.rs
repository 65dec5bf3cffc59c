//! [`EventLog`]: the bounded, per-session, in-memory log of normalised events. The session
//! actor appends; any number of readers page through it or follow it without ever blocking
//! the actor (a std `Mutex` held only for copies, plus a `watch` of the newest seq).

use std::collections::VecDeque;
use std::sync::Mutex;

use common::event::{Event, EventKind, now_ms};
use common::ids::SessionId;
use serde_json::Value;
use std::sync::Arc;

use tokio::sync::watch;

use crate::spool::Spool;

/// A page of events.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// Oldest seq still held.
    pub first_seq: u64,
    /// Seq of the newest event dropped to respect the capacity (0 if none).
    pub dropped_through: u64,
    /// Newest seq.
    pub last_seq: u64,
}

struct Inner {
    events: VecDeque<Event>,
    next_seq: u64,
    dropped_through: u64,
}

/// See the module docs.
pub struct EventLog {
    session_id: SessionId,
    cap: usize,
    inner: Mutex<Inner>,
    last: watch::Sender<u64>,
    spool: Option<Arc<Spool>>,
}

impl EventLog {
    /// An empty log holding at most `cap` events. With a `spool` (the daemon has a bot),
    /// every event is written there before any follower is woken, so whatever a surface
    /// saw is on disk for the bot.
    pub fn new(session_id: SessionId, cap: usize, spool: Option<Arc<Spool>>) -> Self {
        Self {
            session_id,
            cap: cap.max(1),
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                next_seq: 1,
                dropped_through: 0,
            }),
            last: watch::channel(0).0,
            spool,
        }
    }

    /// Appends an event and wakes followers. With a spool, the event's `seq` is its
    /// daemon-wide spool seq (increasing, unique across restarts, not contiguous per
    /// session); without one it counts this session's events from 1.
    pub fn push(&self, kind: EventKind, raw: Option<Value>) -> Event {
        let event = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let local = inner.next_seq;
            let make = |seq| Event {
                seq,
                ts_ms: now_ms(),
                session_id: self.session_id,
                kind,
                raw,
            };
            let event = match &self.spool {
                Some(spool) => {
                    let mut make = Some(make);
                    match spool
                        .append_with(|seq| (make.take().expect("called once"))(seq.max(local)))
                    {
                        Ok((_, ev)) => ev,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot write an event to the spool; the bot will miss it");
                            let seq = local.max(spool.last_seq() + 1);
                            (make.take().expect("not called on error"))(seq)
                        }
                    }
                }
                None => make(local),
            };
            inner.next_seq = event.seq + 1;
            if inner.events.len() == self.cap
                && let Some(old) = inner.events.pop_front()
            {
                inner.dropped_through = old.seq;
            }
            inner.events.push_back(event.clone());
            event
        };
        self.last.send_replace(event.seq);
        event
    }

    /// Events with `seq > after`, at most `limit`.
    pub fn page(&self, after: u64, limit: usize) -> Page {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let first_seq = inner.events.front().map_or(inner.next_seq, |e| e.seq);
        let last_seq = inner.next_seq - 1;
        // Seqs increase (with gaps when shared with the spool): binary search.
        let start = inner.events.partition_point(|e| e.seq <= after);
        let events = inner.events.range(start..).take(limit).cloned().collect();
        Page {
            events,
            first_seq,
            dropped_through: inner.dropped_through,
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
    async fn followers_are_woken_after_the_spool_has_the_event() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = Arc::new(Spool::open(dir.path()).expect("spool"));
        let log = EventLog::new(SessionId::new(), 10, Some(spool.clone()));
        let mut sub = log.subscribe();
        log.push(text(1), None);
        sub.changed().await.expect("changed");
        assert_eq!(*sub.borrow(), 1);
        let spooled = spool.read_after(0, 10).expect("read");
        assert_eq!(spooled.len(), 1);
        assert_eq!(spooled[0].event.seq, 1);
    }
}
