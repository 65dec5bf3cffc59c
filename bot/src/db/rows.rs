//! The rows an ingest group writes, shared by the two ways it is committed
//! ([`super::ingest`] on sqlx, [`super::inline`] on the writer's rusqlite connection): what
//! a daemon link asks to store ([`Write`]) and what became of it ([`Written`]), the
//! multi-row `INSERT ... RETURNING` statements of the `events` table, each event's bound
//! values, and the matching of the returned rows back to the events.

use std::collections::HashMap;
use std::sync::LazyLock;

use common::event::{Event, EventKind};
use common::ids::DaemonId;
use common::ipc::SessionInfo;
use common::link::LinkEvent;

use super::backend::Dialect;
use super::{DbError, DbResult, StoredEvent, int};

/// Single-row event insert; dedup on `(daemon_id, seq)`.
const INSERT_EVENT_ONE: &str =
    "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
     VALUES (?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (daemon_id, seq) DO NOTHING RETURNING daemon_id, seq, id";

/// Multi-row event inserts, largest first, with their row counts (64 rows bind 448
/// parameters, well under SQLite's limit).
static INSERT_EVENTS: LazyLock<[(String, usize); 3]> =
    LazyLock::new(|| [64, 16, 4].map(|n| (insert_events_sql(n), n)));

fn insert_events_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
         VALUES {values}
         ON CONFLICT (daemon_id, seq) DO NOTHING RETURNING daemon_id, seq, id"
    )
}

/// The same multi-row inserts for PostgreSQL (numbered `$N` parameters), with a single
/// row last.
static PG_INSERT_EVENTS: LazyLock<[(String, usize); 4]> =
    LazyLock::new(|| [64, 16, 4, 1].map(|n| (pg_insert_events_sql(n), n)));

fn pg_insert_events_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=7).map(|c| format!("${}", r * 7 + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
         VALUES {}
         ON CONFLICT (daemon_id, seq) DO NOTHING RETURNING daemon_id, seq, id",
        values.join(", ")
    )
}

/// The statement for the first `rest.len()` events: the largest fixed size that fits, so
/// every size stays a cached prepared statement. Returns it and its row count.
pub(super) fn chunk_sql(dialect: Dialect, rest: usize) -> (&'static str, usize) {
    if dialect == Dialect::Postgres {
        return PG_INSERT_EVENTS
            .iter()
            .find(|(_, n)| *n <= rest)
            .map_or(("", 0), |(sql, n)| (sql.as_str(), *n));
    }
    INSERT_EVENTS
        .iter()
        .find(|(_, n)| *n <= rest)
        .map_or((INSERT_EVENT_ONE, 1), |(sql, n)| (sql.as_str(), *n))
}

/// Whether storing `ev` also changes the `approvals` table (a request, or how one ended).
/// A group with such an event is committed on sqlx (`ingest.rs`); any other group, state
/// changes and session updates included, inline (`inline.rs`).
pub(super) fn touches_approvals(ev: &Event) -> bool {
    matches!(
        ev.kind,
        EventKind::PermissionRequest { .. }
            | EventKind::Question { .. }
            | EventKind::PermissionDecision { .. }
            | EventKind::Answer { .. }
    )
}

/// One thing a daemon link asks the store to do.
#[derive(Clone, Copy, Debug)]
pub enum Write<'a> {
    /// Store these link events (ascending seq).
    Events(&'a [LinkEvent]),
    /// The daemon's new picture of one session ([`Db::upsert_session`]).
    Session(&'a SessionInfo, u64),
    /// The daemon was heard from at this time ([`Db::touch_daemon`]).
    Touch(u64),
}

/// What one [`Write`] did.
#[derive(Debug)]
pub enum Written {
    /// The events that were new, in order, with their row ids.
    Events(Vec<StoredEvent>),
    /// Done.
    Done,
    /// Refused without failing the group (a session of another daemon).
    Refused(String),
}

/// One row an inline group's `RETURNING` gave back.
pub(super) struct Returned {
    pub(super) daemon: String,
    pub(super) seq: i64,
    pub(super) id: i64,
}

/// One bound value of an event row.
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// The seven values of one event row, in the order of the INSERT's columns.
pub(super) fn event_binds(daemon: &DaemonId, link: &LinkEvent) -> DbResult<[Bind; 7]> {
    let ev = &link.event;
    let data = serde_json::to_string(ev)
        .map_err(|e| DbError::other(format!("cannot encode event: {e}")))?;
    Ok([
        Bind::Text(daemon.0.clone()),
        Bind::Int(int(link.seq)?),
        Bind::Text(ev.session_id.to_string()),
        Bind::Int(int(ev.seq)?),
        Bind::Int(int(ev.ts_ms)?),
        Bind::Text(ev.kind.name().to_owned()),
        Bind::Text(data),
    ])
}

/// Matches the rows an inline group returned to the events of `writes`.
///
/// `RETURNING` lists only the rows inserted, in no promised order; row ids grow in
/// insertion order, which is the order of the writes and of their events. So, in id order,
/// the rows of a write are the next ones of its daemon whose seq is one of
/// its events' (an event that was new was inserted by the first write that carried it).
pub(super) fn match_rows(
    writes: &[(&DaemonId, Write<'_>)],
    mut rows: Vec<Returned>,
) -> DbResult<Vec<Written>> {
    rows.sort_by_key(|r| r.id);
    let mut next = 0;
    let mut out = Vec::with_capacity(writes.len());
    for (daemon, write) in writes {
        let Write::Events(events) = write else {
            out.push(Written::Done);
            continue;
        };
        let mut index: HashMap<i64, (usize, bool)> = HashMap::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            index.insert(int(e.seq)?, (i, false));
        }
        let mut found: Vec<(usize, i64)> = Vec::new();
        while let Some(row) = rows.get(next) {
            if row.daemon != daemon.0 {
                break;
            }
            match index.get_mut(&row.seq) {
                Some((i, taken)) if !*taken => {
                    *taken = true;
                    found.push((*i, row.id));
                    next += 1;
                }
                _ => break,
            }
        }
        found.sort_by_key(|(i, _)| *i);
        out.push(Written::Events(
            found
                .into_iter()
                .map(|(i, id)| StoredEvent {
                    id,
                    daemon_id: (*daemon).clone(),
                    seq: events[i].seq,
                    event: events[i].event.clone(),
                })
                .collect(),
        ));
    }
    if next != rows.len() {
        return Err(DbError::other(
            "the store returned rows that match no event",
        ));
    }
    Ok(out)
}
