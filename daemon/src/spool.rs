//! [`Spool`]: the daemon's append-only, on-disk queue of events for the bot (DESIGN.md
//! "Delivery guarantee").
//!
//! Every event gets a daemon-wide `seq` and is written to the spool *before* anyone can see
//! it (the session's event log calls [`Spool::append`] before it wakes followers), so an
//! event that any surface saw is on disk. Writes are plain `write`s, which survive a
//! `kill -9` of ccrmd; `fsync` runs in batches ([`Spool::sync`], called on a timer) to also
//! survive a machine crash. The bot's cumulative ack trims it: segments whose events are
//! all acknowledged are deleted. After a restart the spool reopens where it was, dropping a
//! torn last line if the process died mid-write.
//!
//! Layout: `<dir>/<first seq, 20 digits>.jsonl` segments of [`SEGMENT_EVENTS`] events, one
//! [`LinkEvent`] per line, and `<dir>/acked` holding the highest acknowledged seq.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::event::Event;
use common::link::LinkEvent;
use tokio::sync::watch;

/// Events per segment file.
pub const SEGMENT_EVENTS: u64 = 10_000;
/// Unacknowledged events kept in memory for fast sending; older ones are read from disk.
pub const MEMORY_EVENTS: usize = 50_000;

struct Inner {
    /// The current segment, shared with a [`Spool::sync`] in progress.
    file: Arc<File>,
    /// Full segments written since the last sync, to flush on the next one.
    to_sync: Vec<Arc<File>>,
    seg_first: u64,
    next_seq: u64,
    acked: u64,
    mem: VecDeque<LinkEvent>,
    unsynced: bool,
    /// First seqs of the segments on disk, oldest first (the last is the current one).
    segs: VecDeque<u64>,
    /// `acked` changed since it was last written to disk.
    acked_dirty: bool,
}

/// See the module docs.
pub struct Spool {
    dir: PathBuf,
    inner: Mutex<Inner>,
    last: watch::Sender<u64>,
}

fn seg_name(first: u64) -> String {
    format!("{first:020}.jsonl")
}

fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

/// Reads a segment's complete lines; returns them and the byte length of the good prefix.
fn read_segment(path: &Path) -> std::io::Result<(Vec<LinkEvent>, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut events = Vec::new();
    let mut good = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str::<LinkEvent>(line.trim_end()) {
            Ok(ev) => {
                events.push(ev);
                good += n as u64;
            }
            Err(_) => break,
        }
    }
    Ok((events, good))
}

impl Spool {
    /// Opens (or creates, 0700) the spool in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        crate::fsutil::private_dir(dir).map_err(std::io::Error::other)?;
        let acked = std::fs::read_to_string(dir.join("acked"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let segs = segments(dir)?;
        let mut mem = VecDeque::new();
        let mut next_seq = acked + 1;
        let (file, seg_first) = match segs.last() {
            Some((first, path)) => {
                let (events, good) = read_segment(path)?;
                let f = open_append(path)?;
                // Drop a torn or corrupt tail so the next append starts on a clean line.
                if f.metadata()?.len() != good {
                    f.set_len(good)?;
                }
                if let Some(last) = events.last() {
                    next_seq = next_seq.max(last.seq + 1);
                } else {
                    next_seq = next_seq.max(*first);
                }
                (f, *first)
            }
            None => (open_append(&dir.join(seg_name(next_seq)))?, next_seq),
        };
        let spool = Self {
            dir: dir.to_owned(),
            inner: Mutex::new(Inner {
                file: Arc::new(file),
                to_sync: Vec::new(),
                seg_first,
                next_seq,
                acked,
                mem: VecDeque::new(),
                unsynced: false,
                segs: {
                    let mut firsts: VecDeque<u64> = segs.iter().map(|(f, _)| *f).collect();
                    if firsts.back() != Some(&seg_first) {
                        firsts.push_back(seg_first);
                    }
                    firsts
                },
                acked_dirty: false,
            }),
            last: watch::channel(next_seq - 1).0,
        };
        // Warm the memory with what is still unacknowledged.
        for ev in spool.read_disk_after(acked, MEMORY_EVENTS)? {
            mem.push_back(ev);
        }
        spool.lock().mem = mem;
        Ok(spool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `event` the next seq and writes it. Returns the seq.
    pub fn append(&self, event: Event) -> std::io::Result<u64> {
        self.append_with(|_| event).map(|(seq, _)| seq)
    }

    /// Builds the event for the next seq with `make` and writes it; returns the event as
    /// written. The event log uses this so an event's own `seq` *is* its spool seq, which
    /// keeps it unique and increasing across daemon restarts. Returns the spool seq too.
    pub fn append_with(&self, make: impl FnOnce(u64) -> Event) -> std::io::Result<(u64, Event)> {
        let (seq, event) = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            let event = make(seq);
            if seq >= inner.seg_first + SEGMENT_EVENTS {
                let next = Arc::new(open_append(&self.dir.join(seg_name(seq)))?);
                let full = std::mem::replace(&mut inner.file, next);
                if inner.unsynced {
                    inner.to_sync.push(full);
                }
                inner.seg_first = seq;
                inner.segs.push_back(seq);
            }
            let le = LinkEvent { seq, event };
            let mut line = serde_json::to_vec(&le).map_err(std::io::Error::other)?;
            line.push(b'\n');
            (&*inner.file).write_all(&line)?;
            inner.next_seq += 1;
            inner.unsynced = true;
            if inner.mem.len() == MEMORY_EVENTS {
                inner.mem.pop_front();
            }
            let event = le.event.clone();
            inner.mem.push_back(le);
            (seq, event)
        };
        self.last.send_replace(seq);
        Ok((seq, event))
    }

    /// `fsync`s what was written since the last sync (the current segment and any that
    /// filled up meanwhile) and writes the ack mark if it moved. Called on a timer, so both
    /// happen in batches; it blocks on the disk, so call it off the runtime's thread
    /// (`spawn_blocking`). Appends go on meanwhile: the lock is held only to take what
    /// needs flushing.
    pub fn sync(&self) -> std::io::Result<()> {
        let (current, full, acked) = {
            let mut inner = self.lock();
            let current = std::mem::take(&mut inner.unsynced).then(|| inner.file.clone());
            let full = std::mem::take(&mut inner.to_sync);
            let acked = std::mem::take(&mut inner.acked_dirty).then_some(inner.acked);
            (current, full, acked)
        };
        let flushed = full
            .iter()
            .chain(current.as_ref())
            .try_for_each(|f| f.sync_data());
        if let Err(e) = flushed {
            // Try again next time.
            let mut inner = self.lock();
            inner.unsynced |= current.is_some();
            inner.to_sync.extend(full);
            inner.acked_dirty |= acked.is_some();
            return Err(e);
        }
        if let Some(seq) = acked
            && let Err(e) = self.write_acked(seq)
        {
            self.lock().acked_dirty = true;
            return Err(e);
        }
        Ok(())
    }

    fn write_acked(&self, seq: u64) -> std::io::Result<()> {
        let tmp = self.dir.join(".acked.tmp");
        std::fs::write(&tmp, seq.to_string())?;
        std::fs::rename(&tmp, self.dir.join("acked"))
    }

    /// Highest acknowledged seq.
    pub fn acked(&self) -> u64 {
        self.lock().acked
    }

    /// Highest seq written (0 if none).
    pub fn last_seq(&self) -> u64 {
        *self.last.borrow()
    }

    /// Changes whenever an event is appended.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    /// Up to `max` events with `seq > after`, in order.
    pub fn read_after(&self, after: u64, max: usize) -> std::io::Result<Vec<LinkEvent>> {
        {
            let inner = self.lock();
            let covered = inner.mem.front().is_some_and(|f| f.seq <= after + 1)
                || (inner.mem.is_empty() && after + 1 >= inner.next_seq);
            if covered {
                let start = inner.mem.front().map_or(0, |f| {
                    usize::try_from(after + 1 - f.seq).unwrap_or(usize::MAX)
                });
                return Ok(inner
                    .mem
                    .range(start.min(inner.mem.len())..)
                    .take(max)
                    .cloned()
                    .collect());
            }
        }
        self.read_disk_after(after, max)
    }

    fn read_disk_after(&self, after: u64, max: usize) -> std::io::Result<Vec<LinkEvent>> {
        let segs = segments(&self.dir)?;
        let mut out = Vec::new();
        for (i, (_, path)) in segs.iter().enumerate() {
            let next_first = segs.get(i + 1).map(|(f, _)| *f);
            if next_first.is_some_and(|n| n <= after + 1) || out.len() >= max {
                continue;
            }
            let (events, _) = read_segment(path)?;
            out.extend(
                events
                    .into_iter()
                    .filter(|e| e.seq > after)
                    .take(max - out.len()),
            );
        }
        Ok(out)
    }

    /// Records that the bot committed everything up to `seq`: trims memory and deletes
    /// segments whose events are all acknowledged. The mark itself reaches disk on the next
    /// [`Spool::sync`] or segment deletion; a stale mark after a crash only means a few
    /// events are sent again, which the bot ignores.
    pub fn ack(&self, seq: u64) -> std::io::Result<()> {
        let mut inner = self.lock();
        let seq = seq.min(inner.next_seq - 1);
        if seq <= inner.acked {
            return Ok(());
        }
        inner.acked = seq;
        inner.acked_dirty = true;
        while inner.mem.front().is_some_and(|e| e.seq <= seq) {
            inner.mem.pop_front();
        }
        // A segment is done when the next one starts at or below seq + 1; never the current.
        let mut done = Vec::new();
        while inner.segs.len() > 1 && inner.segs.get(1).is_some_and(|next| *next <= seq + 1) {
            if let Some(first) = inner.segs.pop_front() {
                done.push(first);
            }
        }
        if !done.is_empty() {
            self.write_acked(seq)?;
            inner.acked_dirty = false;
            for first in done {
                match std::fs::remove_file(self.dir.join(seg_name(first))) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Makes sure the next seq is above `seq` (the bot has events up to `seq` that this
    /// spool does not know, e.g. after the state dir was wiped).
    pub fn skip_to(&self, seq: u64) -> std::io::Result<()> {
        let mut inner = self.lock();
        if inner.next_seq > seq {
            return Ok(());
        }
        inner.next_seq = seq + 1;
        inner.mem.clear();
        let next = Arc::new(open_append(&self.dir.join(seg_name(seq + 1)))?);
        let old = std::mem::replace(&mut inner.file, next);
        if inner.unsynced {
            inner.to_sync.push(old);
        }
        inner.seg_first = seq + 1;
        inner.segs.push_back(seq + 1);
        drop(inner);
        self.last.send_replace(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::event::EventKind;
    use common::ids::SessionId;

    fn ev(i: u64) -> Event {
        Event {
            seq: i,
            ts_ms: i,
            session_id: SessionId::new(),
            kind: EventKind::AssistantDelta {
                text: format!("d{i}"),
            },
            raw: None,
        }
    }

    #[test]
    fn appends_reads_acks_and_reopens() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("spool");
        let spool = Spool::open(&path).expect("open");
        for i in 0..25_000 {
            assert_eq!(spool.append(ev(i)).expect("append"), i + 1);
        }
        spool.sync().expect("sync");
        assert_eq!(segments(&path).expect("segs").len(), 3);
        let page = spool.read_after(9_998, 3).expect("read");
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [9_999, 10_000, 10_001]
        );
        spool.ack(20_000).expect("ack");
        assert_eq!(
            segments(&path).expect("segs").len(),
            1,
            "two full segments trimmed"
        );
        drop(spool);

        // Simulate a torn write, then reopen.
        let last = segments(&path)
            .expect("segs")
            .last()
            .cloned()
            .expect("seg")
            .1;
        let mut f = OpenOptions::new().append(true).open(&last).expect("open");
        f.write_all(b"{\"seq\":25001,\"ev").expect("torn");
        drop(f);
        let spool = Spool::open(&path).expect("reopen");
        assert_eq!(spool.acked(), 20_000);
        assert_eq!(spool.last_seq(), 25_000);
        let rest = spool.read_after(spool.acked(), usize::MAX).expect("rest");
        assert_eq!(rest.len(), 5_000);
        assert_eq!(rest.first().map(|e| e.seq), Some(20_001));
        assert_eq!(spool.append(ev(0)).expect("append"), 25_001);
        let tail = spool.read_after(25_000, 10).expect("tail");
        assert_eq!(tail.len(), 1);
    }

    #[test]
    fn sync_runs_beside_appends_and_flushes_full_segments_too() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = Arc::new(Spool::open(dir.path()).expect("open"));
        let syncer = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    spool.sync().expect("sync");
                }
            })
        };
        for i in 0..(SEGMENT_EVENTS + 5) {
            spool.append(ev(i)).expect("append");
        }
        syncer.join().expect("syncer");
        spool.ack(3).expect("ack");
        spool.sync().expect("final sync");
        let inner = spool.lock();
        assert!(!inner.unsynced && inner.to_sync.is_empty() && !inner.acked_dirty);
        drop(inner);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("acked")).expect("mark"),
            "3"
        );
        assert_eq!(segments(dir.path()).expect("segs").len(), 2);
        let reopened = Spool::open(dir.path()).expect("reopen");
        assert_eq!(reopened.last_seq(), SEGMENT_EVENTS + 5);
    }

    #[test]
    fn disk_is_read_when_memory_does_not_cover() {
        let dir = tempfile::tempdir().expect("tmp");
        let spool = Spool::open(dir.path()).expect("open");
        for i in 0..(MEMORY_EVENTS as u64 + 10) {
            spool.append(ev(i)).expect("append");
        }
        let page = spool.read_after(0, 5).expect("read");
        assert_eq!(
            page.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }
}
