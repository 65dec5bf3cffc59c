//! Event storage benchmark: fills a fresh database with `BENCH_ROWS` events (default
//! 1,000,000, across 100 sessions) through [`Db::insert_events`] in batches of 1000, then
//! times 2,000 random keyset pages (`events_after(session, random id, 100)`) and prints
//! p50/p99/max against the 5 ms p99 target.
//!
//! Baselines in the same run, so the `Db` layer's own cost is visible:
//! - the same rows inserted with plain `INSERT`s, one transaction per 1000 rows, into fresh
//!   databases with the same schema: one row per statement (the simplest code; what the
//!   hub ingest bench compares against) and 64 rows per statement (the floor for
//!   `insert_events`, which also batches 64 rows per statement but adds the dedup check,
//!   `RETURNING` and the derived tables);
//! - the same pages read with a plain `SELECT` on a raw pool (rows fetched, JSON not parsed),
//!   each query run through both paths back to back in alternating order, after the WAL
//!   checkpoint the server's background task would have done; the ratio is printed too.
//!
//! Run with `cargo bench -p ccrm-bot --bench events_page`; `BENCH_ROWS=100000` for a quicker
//! run, `BENCH_DIR` to put the files somewhere other than the temp dir.

use std::path::Path;
use std::time::{Duration, Instant};

use ccrm_bot::db::Db;
use common::event::{Event, EventKind, SessionState};
use common::ids::{DaemonId, SessionId};
use common::link::LinkEvent;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

const SESSIONS: usize = 100;
const BATCH: u64 = 1000;
const QUERIES: usize = 2000;
const WARMUP: usize = 200;
const PAGE: u32 = 100;
const TARGET_P99: Duration = Duration::from_millis(5);

/// splitmix64: a small deterministic generator, so both runs see the same queries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The event with daemon-wide `seq`: mostly assistant text, some tool calls and results,
/// now and then a state change, in 100 interleaved sessions.
fn make_event(seq: u64, sessions: &[SessionId]) -> LinkEvent {
    let idx = usize::try_from(seq).unwrap_or(0) % sessions.len();
    let session_seq = seq / sessions.len() as u64 + 1;
    let kind = match seq % 50 {
        0 => EventKind::State {
            state: if seq.is_multiple_of(100) {
                SessionState::Active
            } else {
                SessionState::Idle
            },
            reason: None,
        },
        1 | 11 | 21 | 31 | 41 => EventKind::ToolUse {
            tool_use_id: format!("toolu_{seq:016x}"),
            name: "Bash".into(),
            input: serde_json::json!({"command": format!("ls -la /home/user/project/src/{seq}")}),
        },
        2 | 12 | 22 | 32 | 42 => EventKind::ToolResult {
            tool_use_id: format!("toolu_{:016x}", seq - 1),
            content: "total 48\ndrwxr-xr-x 2 user user 4096 main.rs\n".repeat(4),
            is_error: false,
        },
        _ => EventKind::AssistantText {
            text: format!(
                "Step {seq}: I read the module and the tests; next I will change the parser \
                 so the error names the line, then run the suite again."
            ),
        },
    };
    LinkEvent {
        seq,
        event: Event {
            seq: session_seq,
            ts_ms: 1_700_000_000_000 + seq,
            session_id: sessions[idx],
            kind,
            raw: None,
        },
    }
}

fn batch(from: u64, to: u64, sessions: &[SessionId]) -> Vec<LinkEvent> {
    (from..=to).map(|s| make_event(s, sessions)).collect()
}

async fn raw_pool(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        // The same cache and memory map as `Db::open`, so only the query code differs.
        .pragma("cache_size", "-16384")
        .pragma("mmap_size", "268435456");
    Ok(SqlitePool::connect_with(options).await?)
}

/// Plain INSERTs, one transaction per batch: what SQLite costs without the dedup check,
/// the derived tables and the result rows.
async fn raw_insert(pool: &SqlitePool, daemon: &str, events: &[LinkEvent]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for link in events {
        let ev = &link.event;
        sqlx::query(
            "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(daemon)
        .bind(i64::try_from(link.seq)?)
        .bind(ev.session_id.to_string())
        .bind(i64::try_from(ev.seq)?)
        .bind(i64::try_from(ev.ts_ms)?)
        .bind(ev.kind.name())
        .bind(serde_json::to_string(ev)?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Plain multi-row INSERTs (64 rows per statement), one transaction per batch: the floor
/// for what `insert_events` does (it also uses 64-row statements, plus dedup and RETURNING).
async fn raw_insert_multi(
    pool: &SqlitePool,
    daemon: &str,
    events: &[LinkEvent],
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for chunk in events.chunks(64) {
        let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO events (daemon_id, seq, session_id, session_seq, ts_ms, kind, data) VALUES {values}"
        );
        // Only placeholders are formatted in; the data goes through binds.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for link in chunk {
            let ev = &link.event;
            query = query
                .bind(daemon)
                .bind(i64::try_from(link.seq)?)
                .bind(ev.session_id.to_string())
                .bind(i64::try_from(ev.seq)?)
                .bind(i64::try_from(ev.ts_ms)?)
                .bind(ev.kind.name())
                .bind(serde_json::to_string(ev)?);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    rows: usize,
}

fn stats(mut samples: Vec<Duration>, rows: usize) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).saturating_sub(1);
        samples.get(i).copied().unwrap_or_default()
    };
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or_default(),
        rows,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_rate(label: &str, rows: u64, took: Duration) {
    println!(
        "{label:<26} {rows} rows in {:.1} s = {:.0} rows/s",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64().max(1e-9)
    );
}

fn print_pages(label: &str, s: &Stats) {
    println!(
        "{label:<26} p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  ({} rows returned)",
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        s.rows
    );
}

/// Fills a fresh database under `dir/name` with plain INSERTs (per row or 64 rows per
/// statement, one transaction per batch) and returns the time spent inserting.
async fn raw_fill(
    dir: &Path,
    name: &str,
    daemon: &DaemonId,
    rows: u64,
    sessions: &[SessionId],
    multi: bool,
) -> anyhow::Result<Duration> {
    let path = dir.join(name).join("ccrm.db");
    Db::open(&path).await?.close().await;
    let raw = raw_pool(&path).await?;
    sqlx::query(
        "INSERT INTO daemons (id, hostname, version, first_seen_ms, last_seen_ms)
         VALUES (?1, 'b', '0', 1, 1)",
    )
    .bind(daemon.0.as_str())
    .execute(&raw)
    .await?;
    let mut took = Duration::ZERO;
    let mut from = 1;
    while from <= rows {
        let to = (from + BATCH - 1).min(rows);
        let events = batch(from, to, sessions);
        let t = Instant::now();
        if multi {
            raw_insert_multi(&raw, &daemon.0, &events).await?;
        } else {
            raw_insert(&raw, &daemon.0, &events).await?;
        }
        took += t.elapsed();
        from = to + 1;
    }
    raw.close().await;
    // The file is not needed any more; keep the disk use of a 1M run down.
    std::fs::remove_dir_all(dir.join(name))?;
    Ok(took)
}

async fn run() -> anyhow::Result<()> {
    let rows: u64 = match std::env::var("BENCH_ROWS") {
        Ok(v) => v.trim().replace('_', "").parse()?,
        Err(_) => 1_000_000,
    };
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let sessions: Vec<SessionId> = (0..SESSIONS).map(|_| SessionId::new()).collect();
    let daemon = DaemonId("bench-daemon".into());
    println!(
        "events_page: {rows} events, {SESSIONS} sessions, batches of {BATCH}, pages of {PAGE}"
    );

    // Fill through the Db layer.
    let db = Db::open(&dir.path().join("db").join("ccrm.db")).await?;
    db.upsert_daemon(&daemon, "bench", "0", None, 1).await?;
    let mut took = Duration::ZERO;
    let mut from = 1;
    while from <= rows {
        let to = (from + BATCH - 1).min(rows);
        let events = batch(from, to, &sessions);
        let t = Instant::now();
        let stored = db.insert_events(&daemon, &events).await?;
        took += t.elapsed();
        anyhow::ensure!(stored.len() == events.len(), "every event is new");
        from = to + 1;
    }
    print_rate("insert_events", rows, took);

    // The same rows with plain INSERTs into fresh databases with the same schema.
    let per_row = raw_fill(dir.path(), "raw1", &daemon, rows, &sessions, false).await?;
    print_rate("raw INSERT, 1 row/stmt", rows, per_row);
    let multi = raw_fill(dir.path(), "raw64", &daemon, rows, &sessions, true).await?;
    print_rate("raw INSERT, 64 rows/stmt", rows, multi);

    // Random pages: a random session, a cursor anywhere in the table.
    let max_id = db.last_event_id().await?;
    let mut rng = Rng(0x5EED);
    let queries: Vec<(SessionId, i64)> = (0..WARMUP + QUERIES)
        .map(|_| {
            let s = sessions[usize::try_from(rng.below(SESSIONS as u64)).unwrap_or(0)];
            let after = i64::try_from(rng.below(u64::try_from(max_id).unwrap_or(0))).unwrap_or(0);
            (s, after)
        })
        .collect();

    // The server checkpoints the WAL every second (`Db::checkpoint_loop`), so its readers
    // find the pages in the database file; do the same here before reading.
    let (wal, moved) = db.checkpoint().await?;
    println!("checkpoint before reading: {moved} of {wal} WAL pages moved");

    // Each query through both paths back to back, the order alternating, so both see the
    // same machine (a loaded box drifts; measuring one path after the other would charge
    // the drift to whichever ran first).
    let raw = raw_pool(&dir.path().join("db").join("ccrm.db")).await?;
    let (mut ours, mut base) = (Vec::with_capacity(QUERIES), Vec::with_capacity(QUERIES));
    let (mut ours_rows, mut base_rows) = (0, 0);
    for (i, (s, after)) in queries.iter().enumerate() {
        let (o, b) = if i % 2 == 0 {
            let o = page_ours(&db, s, *after).await?;
            (o, page_raw(&raw, s, *after).await?)
        } else {
            let b = page_raw(&raw, s, *after).await?;
            (page_ours(&db, s, *after).await?, b)
        };
        if i >= WARMUP {
            ours.push(o.0);
            ours_rows += o.1;
            base.push(b.0);
            base_rows += b.1;
        }
    }
    let ours = stats(ours, ours_rows);
    let baseline = stats(base, base_rows);
    raw.close().await;

    println!("{QUERIES} random pages (after {WARMUP} warm-up):");
    print_pages("events_after", &ours);
    print_pages("raw SELECT (no JSON)", &baseline);
    println!(
        "events_after / raw SELECT: p50 {:.2}x  p99 {:.2}x",
        ms(ours.p50) / ms(baseline.p50).max(1e-9),
        ms(ours.p99) / ms(baseline.p99).max(1e-9)
    );
    println!(
        "target p99 <= {} ms: {}",
        TARGET_P99.as_millis(),
        if ours.p99 <= TARGET_P99 {
            "met"
        } else {
            "MISSED"
        }
    );

    let t = Instant::now();
    let counts = db.counts().await?;
    println!(
        "counts() for /metrics: {:.1} ms ({} events)",
        ms(t.elapsed()),
        counts.events
    );
    db.close().await;
    let size = std::fs::metadata(dir.path().join("db").join("ccrm.db"))?.len();
    println!("db file: {:.0} MiB", size as f64 / (1024.0 * 1024.0));
    Ok(())
}

/// One page through the `Db` layer (rows parsed into events): its time and row count.
async fn page_ours(db: &Db, session: &SessionId, after: i64) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let page = db.events_after(session, after, PAGE).await?;
    Ok((t.elapsed(), page.len()))
}

/// The same page with a plain `SELECT` on a raw pool (rows fetched, JSON not parsed).
async fn page_raw(
    raw: &SqlitePool,
    session: &SessionId,
    after: i64,
) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let page = sqlx::query(
        "SELECT id, daemon_id, seq, data FROM events
         WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )
    .bind(session.to_string())
    .bind(after)
    .bind(i64::from(PAGE))
    .fetch_all(raw)
    .await?;
    let mut bytes = 0;
    for row in &page {
        let data: &str = row.try_get("data")?;
        bytes += data.len();
    }
    let elapsed = t.elapsed();
    std::hint::black_box(bytes);
    Ok((elapsed, page.len()))
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants a
    // quick check, not a million rows.
    if !std::env::args().any(|a| a == "--bench") && std::env::var_os("BENCH_ROWS").is_none() {
        println!("events_page: run with `cargo bench -p ccrm-bot --bench events_page`");
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(run())
}
