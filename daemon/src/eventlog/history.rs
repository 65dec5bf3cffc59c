//! [`History`]: one session's events on disk, so the event log holds only its newest few in
//! memory and pages older ones from here.
//!
//! Layout: `<state_dir>/events/<session id>/<first seq, 20 digits>.jsonl` (dir 0700, files
//! 0600), one [`Event`] per line, segments of `capacity / 4` events; when a new segment
//! starts and more than five exist, the oldest is deleted, so between `capacity` and
//! `1.25 × capacity` events are kept. Lines are plain `write`s (they survive a `kill -9`;
//! the spool, not this, is what the bot's delivery guarantee rests on). Each segment keeps
//! a sparse index in memory (the offset of every [`INDEX_STRIDE`]th event), so reading a
//! page seeks close to it instead of scanning the segment. Reopening after a restart finds
//! the segments, drops a torn last line and continues the sequence.
//!
//! Readers take a [`Plan`] (which files, from where, up to which byte) under the log's
//! lock and read it after releasing the lock, so the session's actor never waits for a
//! reader's disk I/O or JSON parsing.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use common::event::Event;

/// Every this many events a segment records the offset of one, for seeking.
pub const INDEX_STRIDE: u64 = 64;

/// Segments kept: the current one plus four full ones.
const KEEP_SEGMENTS: usize = 5;

struct Segment {
    first: u64,
    /// Events written to it (known for segments written or scanned by this process).
    events: u64,
    /// Bytes of complete lines.
    bytes: u64,
    /// `(seq, offset)` of every [`INDEX_STRIDE`]th event, ascending.
    index: Vec<(u64, u64)>,
}

/// See the module docs.
pub struct History {
    dir: PathBuf,
    per_segment: u64,
    /// Oldest first; the last is the one being written.
    segments: VecDeque<Segment>,
    /// The last segment, open for appending once something is written.
    file: Option<File>,
}

/// What a reader reads: `(file, from offset, up to byte)` per segment, oldest first.
pub struct Plan(Vec<(PathBuf, u64, u64)>);

fn seg_name(first: u64) -> String {
    format!("{first:020}.jsonl")
}

/// The `seq` of a stored line without parsing the rest: lines start `{"seq":<n>,`.
fn line_seq(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"seq\":")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

impl History {
    /// Opens (creating) `dir` for a log that keeps about `capacity` events. Returns the
    /// history, the seq after the last stored event (1 if none) and the newest `tail`
    /// stored events.
    pub fn open(
        dir: &Path,
        capacity: usize,
        tail: usize,
    ) -> anyhow::Result<(Self, u64, Vec<Event>)> {
        crate::fsutil::private_dir(dir)?;
        let mut found: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".jsonl"))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .collect();
        found.sort_unstable();
        let per_segment = u64::try_from(capacity / 4).unwrap_or(u64::MAX).max(1);
        let mut history = Self {
            dir: dir.to_owned(),
            per_segment,
            segments: VecDeque::new(),
            file: None,
        };
        let mut next_seq = 1;
        let mut newest = Vec::new();
        // The newest segment that still has a complete line says where the log is.
        while let Some(first) = found.pop() {
            let (seg, last, lines) = history.scan(first, tail)?;
            if seg.events == 0 {
                let _ = std::fs::remove_file(dir.join(seg_name(first)));
                continue;
            }
            next_seq = last + 1;
            newest = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Event>(l).ok())
                .collect();
            history.segments.push_back(seg);
            break;
        }
        for first in found.into_iter().rev() {
            let bytes = std::fs::metadata(dir.join(seg_name(first)))?.len();
            history.segments.push_front(Segment {
                first,
                events: 0,
                bytes,
                index: Vec::new(),
            });
        }
        Ok((history, next_seq, newest))
    }

    /// Reads segment `first` to count it, index it and cut a torn last line; returns it,
    /// its last seq and its last `tail` lines.
    fn scan(&self, first: u64, tail: usize) -> anyhow::Result<(Segment, u64, VecDeque<String>)> {
        let path = self.dir.join(seg_name(first));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut reader = BufReader::new(&file);
        let mut seg = Segment {
            first,
            events: 0,
            bytes: 0,
            index: Vec::new(),
        };
        let mut last = 0;
        let mut lines = VecDeque::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            let Some(seq) = line.strip_suffix('\n').and_then(line_seq) else {
                break;
            };
            if seg.events.is_multiple_of(INDEX_STRIDE) {
                seg.index.push((seq, seg.bytes));
            }
            seg.events += 1;
            seg.bytes += n as u64;
            last = seq;
            if tail > 0 {
                if lines.len() == tail {
                    lines.pop_front();
                }
                lines.push_back(line.trim_end().to_owned());
            }
        }
        if file.metadata()?.len() != seg.bytes {
            file.set_len(seg.bytes)?;
        }
        Ok((seg, last, lines))
    }

    /// Appends one event. Returns the seq through which events were dropped to respect
    /// the capacity (0 if none were).
    pub fn append(&mut self, event: &Event) -> std::io::Result<u64> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut dropped = 0;
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.events >= self.per_segment);
        if full {
            self.file = None;
            self.segments.push_back(Segment {
                first: event.seq,
                events: 0,
                bytes: 0,
                index: Vec::new(),
            });
            while self.segments.len() > KEEP_SEGMENTS {
                if let Some(old) = self.segments.pop_front() {
                    match std::fs::remove_file(self.dir.join(seg_name(old.first))) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                dropped = self
                    .segments
                    .front()
                    .map_or(0, |s| s.first.saturating_sub(1));
            }
        }
        let Some(seg) = self.segments.back_mut() else {
            return Err(std::io::Error::other("no segment to write to"));
        };
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(self.dir.join(seg_name(seg.first)))?,
            );
        }
        if let Some(f) = &mut self.file {
            f.write_all(&line)?;
        }
        if seg.events.is_multiple_of(INDEX_STRIDE) {
            seg.index.push((event.seq, seg.bytes));
        }
        seg.events += 1;
        seg.bytes += line.len() as u64;
        Ok(dropped)
    }

    /// The oldest seq kept on disk, if any.
    pub fn first_seq(&self) -> Option<u64> {
        self.segments.front().map(|s| s.first)
    }

    /// Where to read the events with `seq > after`.
    pub fn plan(&self, after: u64) -> Plan {
        // The segment holding `after + 1` is the last one starting at or before it.
        let start = self
            .segments
            .iter()
            .rposition(|s| s.first <= after + 1)
            .unwrap_or(0);
        let mut out = Vec::new();
        for (i, seg) in self.segments.iter().enumerate().skip(start) {
            let from = if i == start {
                let at = seg.index.partition_point(|(seq, _)| *seq <= after + 1);
                at.checked_sub(1).map_or(0, |k| seg.index[k].1)
            } else {
                0
            };
            out.push((self.dir.join(seg_name(seg.first)), from, seg.bytes));
        }
        Plan(out)
    }
}

impl Plan {
    /// Reads up to `limit` events with `seq > after`, oldest first. A segment deleted
    /// since the plan was made is skipped (its events were dropped meanwhile).
    pub fn read(&self, after: u64, limit: usize) -> std::io::Result<Vec<Event>> {
        let mut out = Vec::new();
        for (path, from, to) in &self.0 {
            if out.len() >= limit {
                break;
            }
            let mut file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            file.seek(SeekFrom::Start(*from))?;
            let mut reader = BufReader::new(file).take(to.saturating_sub(*from));
            let mut line = String::new();
            while out.len() < limit {
                line.clear();
                if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
                    break;
                }
                if line_seq(&line).is_none_or(|seq| seq <= after) {
                    continue;
                }
                match serde_json::from_str::<Event>(line.trim_end()) {
                    Ok(ev) => out.push(ev),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable stored event")
                    }
                }
            }
        }
        Ok(out)
    }
}
