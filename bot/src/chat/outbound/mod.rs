//! The outbound side of the chat core: committed events from the hub, shown in the places
//! bound to their sessions.
//!
//! [`Feed::run`] follows [`crate::hub::Hub::subscribe`] (catching up from SQLite when it
//! lags) and routes each event of a bound session to that session's [`worker`], starting
//! one when there is none. Workers get an unbounded channel on purpose: the broadcast feed
//! must never wait for a chat platform's pacing.
//!
//! Where the feed starts: the lowest "shown up to" mark (`chat_handled`) of the bound
//! sessions, else the newest event, so an answer committed but not yet posted when the bot
//! stopped (say, waiting out a 429) is posted after the restart, once.
//!
//! - [`worker`]: one session's worker task.
//! - [`progress`]: the running turn, "typing…", and its progress message.
//! - [`tools`]: the turn's tool calls and how each ended, for a truthful summary.
//! - [`answer`]: the final answer with its summary line, in place of the progress message
//!   when it fits, else split or sent as a file.

mod answer;
mod progress;
mod tools;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::ids::SessionId;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::error;

use self::worker::Worker;
use super::bindings::Bindings;
use super::ctx::Ctx;
use super::{ChatPlatform, lock};
use crate::db::{Db, DbError, StoredEvent};

/// Routes committed events to the session workers (see the module docs).
pub struct Feed {
    /// Where [`Feed::run`] starts reading.
    start_cursor: i64,
    /// Per session, the event row id shown up to when the feed was made; its worker skips
    /// the events at or below it (they were shown before a restart).
    handled: Mutex<HashMap<SessionId, i64>>,
    /// Per session, its worker's input.
    workers: Mutex<HashMap<SessionId, mpsc::UnboundedSender<Arc<StoredEvent>>>>,
}

impl Feed {
    /// A feed for `platform` starting where its bound sessions were last shown.
    pub async fn load(db: &Db, platform: &str, bindings: &Bindings) -> Result<Self, DbError> {
        // Resume from the lowest "shown up to" mark of the bound sessions, so what was
        // committed but not yet shown when the bot last stopped is shown now.
        let last = db.last_event_id().await?;
        // Progress messages of sessions nobody shows any more are not finished after a week.
        let week_ago = common::event::now_ms().saturating_sub(7 * 24 * 3600 * 1000);
        db.chat_progress_trim(platform, week_ago).await?;
        let handled: HashMap<SessionId, i64> = db
            .chat_handled(platform)
            .await?
            .into_iter()
            .filter(|(s, _)| bindings.is_bound(s))
            .collect();
        let start_cursor = handled
            .values()
            .copied()
            .min()
            .map_or(last, |m| m.min(last));
        Ok(Self {
            start_cursor,
            handled: Mutex::new(handled),
            workers: Mutex::default(),
        })
    }

    /// Feeds committed events to the session workers until `stop` turns true.
    pub async fn run<P: ChatPlatform>(&self, ctx: &Arc<Ctx<P>>, mut stop: watch::Receiver<bool>) {
        // Subscribe first, then read what was committed since the feed was made (while the
        // adapter was starting), so nothing falls between the two.
        let mut live = ctx.state.hub.subscribe();
        let mut last = self.start_cursor;
        self.catch_up(ctx, &mut last).await;
        loop {
            let got = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                got = live.recv() => got,
            };
            match got {
                Ok(ev) => {
                    if ev.id > last {
                        last = ev.id;
                        self.route(ctx, ev);
                    }
                }
                // Too slow for the live feed: catch up from the database.
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(ctx, &mut last).await,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Ends every worker's input: each finishes what it was given, then stops.
    pub fn close(&self) {
        lock(&self.workers).clear();
    }

    /// Routes the stored events after `last` (advancing it).
    async fn catch_up<P: ChatPlatform>(&self, ctx: &Arc<Ctx<P>>, last: &mut i64) {
        loop {
            let page = match ctx.state.db.events_since_id(*last, 500).await {
                Ok(p) => p,
                Err(e) => {
                    error!(error = %e, "chat catch-up read failed");
                    return;
                }
            };
            if page.is_empty() {
                return;
            }
            for ev in page {
                *last = ev.id;
                self.route(ctx, Arc::new(ev));
            }
        }
    }

    /// Hands `ev` to its session's worker, starting one when needed; events of unbound
    /// sessions are dropped.
    fn route<P: ChatPlatform>(&self, ctx: &Arc<Ctx<P>>, ev: Arc<StoredEvent>) {
        let session = ev.event.session_id;
        if !ctx.bindings.is_bound(&session) {
            return;
        }
        let mut workers = lock(&self.workers);
        if let Some(tx) = workers.get(&session)
            && tx.send(ev.clone()).is_ok()
        {
            return;
        }
        // Unbounded on purpose (see the module docs): a worker's backlog is bounded by
        // what one session produces, and progress edits coalesce.
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(ev);
        workers.insert(session, tx);
        drop(workers);
        let skip_through = lock(&self.handled).remove(&session).unwrap_or(0);
        let worker = Worker::new(ctx.clone(), session, skip_through);
        ctx.spawn(worker.run(rx));
    }
}
