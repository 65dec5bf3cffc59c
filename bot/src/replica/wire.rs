//! What the replica modules share, below all of them: the messages passed between
//! replicas ([`Msg`], the body of a `replica_calls` row, and [`Outcome`]), the liveness
//! condition on a `daemon_links` row (`fresh!`: its replica's heartbeat is younger than
//! 15 s), writing a heartbeat ([`beat`]), and small helpers.

use common::ipc::{Command, ErrorBody};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;

/// A message between replicas (the body of a `replica_calls` row).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Msg {
    /// Run `cmd` on `daemon`'s link and answer `from` with `req`.
    Call {
        from: String,
        req: u64,
        daemon: String,
        cmd: Box<Command>,
        timeout_ms: u64,
    },
    /// The answer to call `req`.
    Reply { req: u64, result: Outcome },
    /// Start streaming command `cmd` on `daemon`'s link for `from`'s stream `req`.
    Stream {
        from: String,
        req: u64,
        daemon: String,
        cmd: Box<Command>,
    },
    /// The next items of stream `req`, in order.
    Items { req: u64, items: Vec<Value> },
    /// The end of stream `req`: the command's reply.
    End { req: u64, result: Outcome },
    /// `from`'s stream `req` has no reader any more: stop running it.
    StreamStop { from: String, req: u64 },
    /// Start command `cmd`, whose body follows, on `daemon`'s link for `from`'s body `req`.
    BodyStart {
        from: String,
        req: u64,
        daemon: String,
        cmd: Box<Command>,
    },
    /// The next frame (chunk, end or abort) of `from`'s body `req`.
    BodyFrame {
        from: String,
        req: u64,
        frame: Box<common::link::HubMsg>,
    },
    /// The daemon acknowledged `received` bytes of body `req`.
    BodyAck { req: u64, received: u64 },
    /// The daemon's reply to body `req`'s command.
    BodyDone { req: u64, result: Outcome },
}

impl Msg {
    /// Whether this message may travel over a direct link between replicas (see
    /// `peers.rs`): a call and its reply are single messages, so which way each goes does
    /// not matter. A stream's items and an upload's frames keep one way (PostgreSQL) from
    /// first to last, so a link coming up or breaking in the middle reorders or loses none.
    pub fn direct(&self) -> bool {
        matches!(self, Self::Call { .. } | Self::Reply { .. })
    }
}

/// A command's outcome as it crosses replicas.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Ok {
        data: Value,
    },
    Daemon {
        error: ErrorBody,
    },
    Offline,
    Timeout {
        ms: u64,
    },
    /// The replica asked does not hold the daemon's link (any more): ask the database who
    /// does. Nothing was run.
    Moved,
}

/// SQL condition, on a `daemon_links` row aliased `l`: its replica beat within the last 15 s
/// (a macro, so statements stay `&'static str` through `concat!`).
macro_rules! fresh {
    () => {
        "EXISTS (SELECT 1 FROM replica_heartbeats h
         WHERE h.replica = l.replica AND h.seen > now() - interval '15 seconds')"
    };
}
pub(super) use fresh;

/// Writes replica `id`'s heartbeat now, with where other replicas reach it directly
/// (`url`, if it has one) and the token they must show there.
pub async fn beat(
    pool: &PgPool,
    id: &str,
    url: Option<&str>,
    token: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO replica_heartbeats (replica, seen, url, token) VALUES ($1, now(), $2, $3)
         ON CONFLICT (replica) DO UPDATE SET seen = now(), url = excluded.url,
             token = excluded.token",
    )
    .bind(id)
    .bind(url)
    .bind(token)
    .execute(pool)
    .await?;
    Ok(())
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Locks `m`, taking it back from a panicked holder.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
