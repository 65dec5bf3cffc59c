//! The event log in memory and with its history on disk.

use super::*;

fn text(i: usize) -> EventKind {
    EventKind::AssistantText {
        text: i.to_string(),
    }
}

fn seqs(p: &Page) -> Vec<u64> {
    p.events.iter().map(|e| e.seq).collect()
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
    assert_eq!(p.dropped_through, 2);
    assert_eq!(seqs(&p), [3, 4, 5]);
    assert_eq!(log.page(3, 1).events[0].seq, 4);
    assert!(log.page(5, 10).events.is_empty());
    assert_eq!(log.last_seq(), 5);
}

#[test]
fn memory_holds_only_the_tail_and_older_pages_come_from_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    let hist = dir.path().join("events").join("s");
    let id = SessionId::new();
    let log = EventLog::open(id, 400, &hist, None);
    for i in 0..1_000 {
        log.push(text(i), None);
    }
    assert_eq!(
        log.lock().events.len(),
        TAIL_EVENTS,
        "only the tail is in memory"
    );
    // Segments of 100, the current one plus four full ones: 501..=1000 are kept.
    let p = log.page(0, 5);
    assert_eq!(p.first_seq, 501);
    assert_eq!(p.dropped_through, 500);
    assert_eq!(p.last_seq, 1_000);
    assert_eq!(seqs(&p), [501, 502, 503, 504, 505]);
    // A page across segment boundaries and into the memory tail, from disk.
    let p = log.page(695, 10);
    assert_eq!(seqs(&p), (696..=705).collect::<Vec<_>>());
    let p = log.page(950, 100);
    assert_eq!(seqs(&p), (951..=1_000).collect::<Vec<_>>());
    assert_eq!(p.events[0].kind, text(950));
    // From memory.
    assert_eq!(seqs(&log.page(998, 10)), [999, 1_000]);
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("meta").permissions())
            & 0o777
    };
    assert_eq!(mode(&hist), 0o700);
    for f in std::fs::read_dir(&hist).expect("dir") {
        assert_eq!(mode(&f.expect("entry").path()), 0o600);
    }
    assert_eq!(std::fs::read_dir(&hist).expect("dir").count(), 5);
}

#[test]
fn a_reopened_history_continues_and_survives_a_torn_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let id = SessionId::new();
    {
        let log = EventLog::open(id, 100, dir.path(), None);
        for i in 0..60 {
            log.push(text(i), None);
        }
    }
    // A write cut short by a crash.
    let newest = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .max()
        .expect("a segment");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .expect("open");
    std::io::Write::write_all(&mut f, b"{\"seq\":61,\"ts_").expect("torn");
    drop(f);

    let log = EventLog::open(id, 100, dir.path(), None);
    assert_eq!(log.last_seq(), 60);
    let p = log.page(0, 100);
    assert_eq!(seqs(&p), (1..=60).collect::<Vec<_>>());
    assert_eq!(log.push(text(60), None).seq, 61);
    assert_eq!(seqs(&log.page(58, 10)), [59, 60, 61]);
    assert_eq!(log.page(60, 10).events[0].kind, text(60));
}

#[test]
fn an_unusable_directory_falls_back_to_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let log = EventLog::open(SessionId::new(), 5, &file.join("s"), None);
    for i in 0..8 {
        log.push(text(i), None);
    }
    let p = log.page(0, 10);
    assert_eq!(seqs(&p), [4, 5, 6, 7, 8]);
    assert_eq!(p.dropped_through, 3);
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
