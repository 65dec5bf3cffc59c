//! [`EventLog`]: one session's log of normalised events. The session actor appends; any
//! number of readers page through it or follow it without ever blocking the actor (a std
//! `Mutex` held only for copies and bookkeeping, plus a `watch` of the newest seq).
//!
//! Memory stays flat however long a session runs: only the newest [`TAIL_EVENTS`] events
//! are held, parsed, for followers; every event also goes to the session's [`History`] on
//! disk (`history.rs`), which keeps about `event_log_capacity` of them and serves pages of
//! older ones, read outside the lock. A restarted daemon reopens the history, so a stored
//! session still shows what it did. If the disk fails, the log says so once and falls back
//! to holding up to `event_log_capacity` events in memory.

mod history;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::event::{Event, EventKind, now_ms};
use common::ids::SessionId;
use serde_json::Value;
use tokio::sync::watch;

use self::history::History;
use crate::spool::Spool;

/// Newest events held in memory per session when the history is on disk.
pub const TAIL_EVENTS: usize = 32;

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
    /// The newest events (all of them, up to the capacity, without a history).
    events: VecDeque<Event>,
    /// How many `events` may hold.
    mem_cap: usize,
    next_seq: u64,
    dropped_through: u64,
    history: Option<History>,
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
    /// A log holding at most `cap` events, all in memory (no history on disk). With a
    /// `spool` (the daemon has a bot), every event is written there before any follower is
    /// woken, so whatever a surface saw is on disk for the bot.
    pub fn new(session_id: SessionId, cap: usize, spool: Option<Arc<Spool>>) -> Self {
        Self::build(session_id, cap, None, 1, Vec::new(), spool)
    }

    /// A log whose history lives in `dir` (created 0700; reopened if it exists, so the
    /// log continues where it was), keeping about `cap` events there and the newest
    /// [`TAIL_EVENTS`] in memory. If `dir` cannot be used, the error is logged and the log
    /// keeps `cap` events in memory instead.
    pub fn open(session_id: SessionId, cap: usize, dir: &Path, spool: Option<Arc<Spool>>) -> Self {
        match History::open(dir, cap, TAIL_EVENTS) {
            Ok((history, next_seq, tail)) => {
                Self::build(session_id, cap, Some(history), next_seq, tail, spool)
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %format!("{e:#}"), "cannot keep this session's events on disk; keeping them in memory");
                Self::new(session_id, cap, spool)
            }
        }
    }

    fn build(
        session_id: SessionId,
        cap: usize,
        history: Option<History>,
        next_seq: u64,
        tail: Vec<Event>,
        spool: Option<Arc<Spool>>,
    ) -> Self {
        let cap = cap.max(1);
        let mem_cap = if history.is_some() {
            TAIL_EVENTS.min(cap)
        } else {
            cap
        };
        Self {
            session_id,
            cap,
            inner: Mutex::new(Inner {
                events: tail.into(),
                mem_cap,
                next_seq,
                dropped_through: history
                    .as_ref()
                    .and_then(History::first_seq)
                    .map_or(0, |f| f.saturating_sub(1)),
                history,
            }),
            last: watch::channel(next_seq - 1).0,
            spool,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event and wakes followers. With a spool, the event's `seq` is its
    /// daemon-wide spool seq (increasing, unique across restarts, not contiguous per
    /// session); without one it counts this session's events from 1.
    pub fn push(&self, kind: EventKind, raw: Option<Value>) -> Event {
        let event = {
            let mut inner = self.lock();
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
            self.keep(&mut inner, &event);
            event
        };
        self.last.send_replace(event.seq);
        event
    }

    /// Stores `event` in the history and the memory tail, dropping what no longer fits.
    fn keep(&self, inner: &mut Inner, event: &Event) {
        if let Some(history) = &mut inner.history {
            match history.append(event) {
                Ok(dropped) => inner.dropped_through = inner.dropped_through.max(dropped),
                Err(e) => {
                    tracing::error!(error = %e, "cannot write this session's history; keeping its events in memory from now on");
                    inner.history = None;
                    inner.mem_cap = self.cap;
                    if let Some(front) = inner.events.front() {
                        inner.dropped_through = inner.dropped_through.max(front.seq - 1);
                    }
                }
            }
        }
        while inner.events.len() >= inner.mem_cap {
            match inner.events.pop_front() {
                Some(old) if inner.history.is_none() => inner.dropped_through = old.seq,
                _ => {}
            }
        }
        inner.events.push_back(event.clone());
    }

    /// Events with `seq > after`, at most `limit`: from memory when it holds them, else
    /// from the history on disk (read after the lock is released).
    pub fn page(&self, after: u64, limit: usize) -> Page {
        let (plan, page) = {
            let inner = self.lock();
            let first_in_memory = inner.events.front().map_or(inner.next_seq, |e| e.seq);
            let first_seq = inner
                .history
                .as_ref()
                .and_then(History::first_seq)
                .unwrap_or(first_in_memory);
            let mut page = Page {
                events: Vec::new(),
                first_seq,
                dropped_through: inner.dropped_through,
                last_seq: inner.next_seq - 1,
            };
            match &inner.history {
                Some(history) if after + 1 < first_in_memory && limit > 0 => {
                    (Some(history.plan(after)), page)
                }
                _ => {
                    // Seqs increase (with gaps when shared with the spool): binary search.
                    let start = inner.events.partition_point(|e| e.seq <= after);
                    page.events = inner.events.range(start..).take(limit).cloned().collect();
                    (None, page)
                }
            }
        };
        let Some(plan) = plan else { return page };
        match plan.read(after, limit) {
            Ok(events) => Page { events, ..page },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read this session's history");
                page
            }
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
mod tests;
