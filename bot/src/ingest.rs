//! The ingest task: group commit for every daemon link.
//!
//! Links do not write to SQLite themselves. They hand each `events` frame, session update
//! and "last heard" mark to this one task as a [`Job`] and go on reading their socket. The
//! task takes every job that is waiting (up to [`MAX_GROUP_EVENTS`] events), commits them
//! in one transaction through [`EventWriter`], publishes the events that were new to the
//! hub's live feed in commit order, and only then answers each job, after which its link
//! acks. So:
//!
//! - a frame that arrives while a group commits waits for that commit, then goes in the
//!   next group with everything else that arrived meanwhile (pipelining: the link keeps
//!   reading while its earlier frames commit);
//! - one writer means no two links ever wait on SQLite's write lock for each other;
//! - subscribers see events in row-id order across all daemons, and only once they are
//!   committed: a `kill -9` of the bot never takes back something a surface showed.
//!
//! If a group fails, each of its jobs is committed alone, so only a job SQLite refuses
//! (say, a seq out of its range) fails: that link closes and the others go on. A daemon
//! whose frame failed resends it after reconnecting. A connection that stopped answering
//! is replaced.

use std::sync::Arc;
use std::time::Duration;

use common::ids::DaemonId;
use common::ipc::SessionInfo;
use common::link::LinkEvent;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{error, warn};

use crate::db::{Db, DbResult, EventWriter, StoredEvent, Write, Written};

/// Most events in one group (a bigger backlog is committed in several groups).
pub const MAX_GROUP_EVENTS: usize = 4096;

/// Jobs waiting for the writer before links have to wait to hand in more.
const QUEUE: usize = 1024;

/// What a link asks to have stored.
#[derive(Debug)]
pub enum Op {
    /// A frame of link events.
    Events(Vec<LinkEvent>),
    /// The daemon's new picture of a session, at this time.
    Session(Box<SessionInfo>, u64),
    /// The daemon was heard from at this time.
    Touch(u64),
}

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Events committed: how many were new and how many were already stored.
    Events {
        /// New rows.
        stored: usize,
        /// Resends that were already stored.
        duplicate: usize,
    },
    /// Done.
    Done,
    /// Refused without harm to the others (e.g. a session of another daemon).
    Refused(String),
}

/// One job and where its answer goes.
#[derive(Debug)]
pub struct Job {
    daemon: DaemonId,
    op: Op,
    done: oneshot::Sender<Result<Outcome, String>>,
}

/// The answer to one job: the outcome, or why the group failed.
pub type Pending = oneshot::Receiver<Result<Outcome, String>>;

/// The way into the ingest task (cheap to clone).
#[derive(Clone, Debug)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

impl Ingest {
    /// Opens the writer's connection on `db` and starts the task; committed events go to
    /// `live`. The task ends when every [`Ingest`] handle is gone.
    pub async fn start(db: &Db, live: broadcast::Sender<Arc<StoredEvent>>) -> DbResult<Self> {
        let writer = db.event_writer().await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db.clone(), writer, rx, live));
        Ok(Self { tx })
    }

    /// Hands in a job; await the returned receiver for its outcome. Waits only while the
    /// queue is full. `None` if the task is gone (the server is shutting down).
    pub async fn submit(&self, daemon: &DaemonId, op: Op) -> Option<Pending> {
        let (done, rx) = oneshot::channel();
        let job = Job {
            daemon: daemon.clone(),
            op,
            done,
        };
        self.tx.send(job).await.ok()?;
        Some(rx)
    }
}

fn weight(job: &Job) -> usize {
    match &job.op {
        Op::Events(e) => e.len().max(1),
        Op::Session(..) | Op::Touch(_) => 1,
    }
}

async fn run(
    db: Db,
    mut writer: EventWriter,
    mut rx: mpsc::Receiver<Job>,
    live: broadcast::Sender<Arc<StoredEvent>>,
) {
    while let Some(first) = rx.recv().await {
        let mut size = weight(&first);
        let mut jobs = vec![first];
        while size < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    size += weight(&job);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let writes: Vec<(&DaemonId, Write<'_>)> = jobs.iter().map(write_of).collect();
        let result = writer.commit(&writes).await;
        drop(writes);
        match result {
            Ok(written) => {
                for (job, w) in jobs.into_iter().zip(written) {
                    finish(job, Ok(w), &live);
                }
                // The connection just answered: no check before the next group, which
                // would put one more round trip to SQLite's thread in front of it.
                continue;
            }
            // One job can spoil a group (a value SQLite refuses): commit each job alone,
            // so only that link hears of it and every other goes on.
            Err(_) if jobs.len() > 1 => {
                for job in jobs {
                    let alone = writer.commit(&[write_of(&job)]).await;
                    let result = alone.and_then(|mut w| {
                        w.pop()
                            .ok_or_else(|| crate::db::DbError::Other("no result".into()))
                    });
                    if let Err(e) = &result {
                        warn!(daemon = %job.daemon, error = %e, "storing one daemon's frame failed");
                    }
                    finish(job, result, &live);
                }
            }
            Err(e) => {
                error!(error = %e, "ingest commit failed; the link will resend");
                for job in jobs {
                    let _ = job.done.send(Err(e.to_string()));
                }
            }
        }
        // A commit failed, and the connection may be what broke: start over on a fresh one.
        while !writer.ping().await {
            match db.event_writer().await {
                Ok(w) => writer = w,
                Err(e) if rx.is_closed() => {
                    warn!(error = %e, "ingest stops");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "cannot reopen the ingest connection; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

fn write_of(job: &Job) -> (&DaemonId, Write<'_>) {
    let w = match &job.op {
        Op::Events(e) => Write::Events(e),
        Op::Session(info, now) => Write::Session(info.as_ref(), *now),
        Op::Touch(now) => Write::Touch(*now),
    };
    (&job.daemon, w)
}

/// Publishes a committed job's new events, then answers it.
fn finish(job: Job, result: DbResult<Written>, live: &broadcast::Sender<Arc<StoredEvent>>) {
    let outcome = result.map_err(|e| e.to_string()).map(|w| match w {
        Written::Events(stored) => {
            let total = match &job.op {
                Op::Events(e) => e.len(),
                _ => 0,
            };
            let n = stored.len();
            for ev in stored {
                let _ = live.send(Arc::new(ev));
            }
            Outcome::Events {
                stored: n,
                duplicate: total.saturating_sub(n),
            }
        }
        Written::Done => Outcome::Done,
        Written::Refused(why) => Outcome::Refused(why),
    });
    let _ = job.done.send(outcome);
}
