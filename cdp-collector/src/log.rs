//! The durable event log: what the collector has acknowledged, on disk before the answer.
//!
//! One directory per call type, each a sequence of JSONL segments
//! (`track/000000000001.jsonl`, …), so the log is read back by the JSONL source like any
//! landing folder, with its cursors and checkpoints. A single writer thread takes every
//! append waiting in the queue, writes them with one write per segment and one `fsync` per
//! segment — group commit, so a thousand concurrent requests cost one disk flush — and only
//! then answers them. A crash before the flush loses only unacknowledged events; on open,
//! a torn last line (a write the crash cut short, never acknowledged) is cut off.
//!
//! `messageId`s seen within the deduplication window are dropped, and the window is
//! rebuilt from the log on open, so a client retrying after a crash does not log twice.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::error::Rejection;
use crate::event::{CallType, Event};

/// Where and how the log is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The log's directory (created if missing).
    pub dir: PathBuf,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Bytes of requests waiting to be made durable; past it requests get a 429.
    pub queue_bytes: usize,
    /// How long a `messageId` is remembered to drop duplicates.
    pub dedupe_window: Duration,
    /// Most `messageId`s remembered (the oldest are forgotten first).
    pub dedupe_capacity: usize,
    /// `fsync` before acknowledging. Only tests and benchmarks turn it off.
    pub fsync: bool,
}

impl LogConfig {
    /// Defaults for a log in `dir`: 64 MiB segments, a 64 MiB queue, a 24 h, 10 M id
    /// deduplication window, fsync on.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            queue_bytes: 64 << 20,
            dedupe_window: Duration::from_secs(24 * 3600),
            dedupe_capacity: 10_000_000,
            fsync: true,
        }
    }
}

/// Where acknowledged events are kept: the collector answers 200 only once
/// [`append`](DurableLog::append) has returned.
#[cdp_core::async_trait]
pub trait DurableLog: Send + Sync {
    /// Makes `events` durable (dropping those already logged under their `messageId`);
    /// returns once they are.
    async fn append(&self, events: Vec<Event>) -> Result<Appended, Rejection>;

    /// What and where it is, for logs and `Debug` (no credentials).
    fn describe(&self) -> String;
}

#[cdp_core::async_trait]
impl DurableLog for EventLog {
    async fn append(&self, events: Vec<Event>) -> Result<Appended, Rejection> {
        EventLog::append(self, events).await
    }

    fn describe(&self) -> String {
        format!("event log at {}", self.dir.display())
    }
}

/// What one append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Events written.
    pub written: usize,
    /// Events dropped as duplicates of a `messageId` already in the window.
    pub duplicates: usize,
}

struct Append {
    events: Vec<Event>,
    _permit: OwnedSemaphorePermit,
    done: oneshot::Sender<io::Result<Appended>>,
}

/// The log; cheap to clone, every clone appends to the same writer.
#[derive(Debug, Clone)]
pub struct EventLog {
    tx: mpsc::UnboundedSender<Append>,
    queue: Arc<Semaphore>,
    queue_bytes: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("events", &self.events.len())
            .finish()
    }
}

impl EventLog {
    /// Opens (or creates) the log, repairs a torn last line, rebuilds the deduplication
    /// window, and starts the writer thread.
    pub fn open(config: LogConfig) -> io::Result<EventLog> {
        fs::create_dir_all(&config.dir)?;
        let mut dedupe = Dedupe::new(config.dedupe_window, config.dedupe_capacity);
        let mut segments = BTreeMap::new();
        for call in CallType::ALL {
            let dir = stream_dir(&config.dir, call);
            fs::create_dir_all(&dir)?;
            let files = segment_files(&dir)?;
            if let Some(last) = files.last() {
                repair_tail(last)?;
            }
            for file in &files {
                dedupe.load(file)?;
            }
            segments.insert(call, Segment::open(&dir, files.last().cloned(), &config)?);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            segments,
            dedupe,
            config: config.clone(),
        };
        std::thread::Builder::new()
            .name("cdp-collector-log".into())
            .spawn(move || writer.run(rx))?;
        Ok(EventLog {
            tx,
            queue: Arc::new(Semaphore::new(config.queue_bytes)),
            queue_bytes: config.queue_bytes,
            dir: config.dir,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `events` and returns once they are durable (or were duplicates); a full
    /// queue answers [`Rejection::Busy`] at once instead of waiting.
    pub async fn append(&self, events: Vec<Event>) -> Result<Appended, Rejection> {
        if events.is_empty() {
            return Ok(Appended::default());
        }
        let bytes: usize = events.iter().map(|e| e.line.len() + 1).sum();
        let permits = bytes.clamp(1, self.queue_bytes) as u32;
        let permit = self
            .queue
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| Rejection::Busy(Duration::from_secs(1)))?;
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Append {
                events,
                _permit: permit,
                done,
            })
            .map_err(|_| Rejection::Unavailable("the log writer has stopped".into()))?;
        match answer.await {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(e)) => Err(Rejection::Unavailable(e.to_string())),
            Err(_) => Err(Rejection::Unavailable("the log writer has stopped".into())),
        }
    }
}

/// The directory of `call`'s segments under the log's `dir`: what a JSONL source reads.
pub fn stream_dir(dir: &Path, call: CallType) -> PathBuf {
    dir.join(call.as_str())
}

fn segment_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

/// Cuts a last line without its newline: a write a crash interrupted, never acknowledged.
fn repair_tail(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Scan back for the last newline, a block at a time.
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(block.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block[..n])?;
        if let Some(i) = block[..n].iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                file.set_len(keep)?;
                file.sync_all()?;
            }
            return Ok(());
        }
        if start == 0 {
            file.set_len(0)?;
            file.sync_all()?;
            return Ok(());
        }
        end = start;
    }
}

struct Segment {
    dir: PathBuf,
    sequence: u64,
    file: File,
    len: u64,
}

impl Segment {
    fn open(dir: &Path, last: Option<PathBuf>, config: &LogConfig) -> io::Result<Segment> {
        let sequence = last
            .as_deref()
            .and_then(|p| p.file_stem())
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        match last {
            Some(path) if fs::metadata(&path)?.len() < config.segment_bytes => {
                let file = OpenOptions::new().append(true).open(&path)?;
                let len = file.metadata()?.len();
                Ok(Segment {
                    dir: dir.to_path_buf(),
                    sequence,
                    file,
                    len,
                })
            }
            _ => Segment::create(dir, sequence + 1),
        }
    }

    fn create(dir: &Path, sequence: u64) -> io::Result<Segment> {
        let path = dir.join(format!("{sequence:012}.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // The new name must survive a crash too.
        File::open(dir)?.sync_all()?;
        Ok(Segment {
            dir: dir.to_path_buf(),
            sequence,
            file,
            len: 0,
        })
    }
}

struct Writer {
    segments: BTreeMap<CallType, Segment>,
    dedupe: Dedupe,
    config: LogConfig,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Append>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while let Ok(next) = rx.try_recv() {
                group.push(next);
                if group.len() >= 4096 {
                    break;
                }
            }
            let outcome = self.commit(&group);
            for (append, result) in group.into_iter().zip(outcome) {
                let _ = append.done.send(result);
            }
        }
    }

    /// Writes a group of appends with one write and one flush per segment.
    fn commit(&mut self, group: &[Append]) -> Vec<io::Result<Appended>> {
        let now = Utc::now();
        let mut buffers: BTreeMap<CallType, Vec<u8>> = BTreeMap::new();
        let mut fresh: HashSet<&str> = HashSet::new();
        let mut counts = Vec::with_capacity(group.len());
        for append in group {
            let mut appended = Appended::default();
            for event in &append.events {
                if self.dedupe.contains(&event.message_id, now) || !fresh.insert(&event.message_id)
                {
                    appended.duplicates += 1;
                    continue;
                }
                let buffer = buffers.entry(event.call).or_default();
                buffer.extend_from_slice(&event.line);
                buffer.push(b'\n');
                appended.written += 1;
            }
            counts.push(appended);
        }
        match self.write(&buffers) {
            Ok(()) => {
                for id in fresh {
                    self.dedupe.insert(id.to_string(), now);
                }
                counts.into_iter().map(Ok).collect()
            }
            Err(e) => {
                tracing::error!(error = %e, "the event log could not be written");
                counts
                    .iter()
                    .map(|_| Err(io::Error::new(e.kind(), e.to_string())))
                    .collect()
            }
        }
    }

    fn write(&mut self, buffers: &BTreeMap<CallType, Vec<u8>>) -> io::Result<()> {
        for (call, buffer) in buffers {
            let Some(segment) = self.segments.get_mut(call) else {
                continue;
            };
            if segment.len >= self.config.segment_bytes {
                *segment = Segment::create(&segment.dir, segment.sequence + 1)?;
            }
            let before = segment.len;
            let written = segment.file.write_all(buffer).and_then(|()| {
                if self.config.fsync {
                    segment.file.sync_data()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = written {
                // Leave no half-written group behind for the reader: those events were
                // never acknowledged.
                let _ = segment.file.set_len(before);
                return Err(e);
            }
            segment.len += buffer.len() as u64;
        }
        Ok(())
    }
}

/// The `messageId`s of the window, oldest first.
struct Dedupe {
    window: chrono::Duration,
    capacity: usize,
    seen: HashMap<String, DateTime<Utc>>,
    order: VecDeque<(DateTime<Utc>, String)>,
}

#[derive(Deserialize)]
struct Stamped<'a> {
    #[serde(rename = "messageId", borrow)]
    message_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "receivedAt")]
    received_at: Option<DateTime<Utc>>,
}

impl Dedupe {
    fn new(window: Duration, capacity: usize) -> Self {
        Dedupe {
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers the ids of a segment's events received within the window.
    fn load(&mut self, path: &Path) -> io::Result<()> {
        let cutoff = Utc::now() - self.window;
        for line in BufReader::new(File::open(path)?).split(b'\n') {
            let line = line?;
            let Ok(stamped) = serde_json::from_slice::<Stamped<'_>>(&line) else {
                continue;
            };
            if let (Some(id), Some(at)) = (stamped.message_id, stamped.received_at)
                && at >= cutoff
            {
                self.insert(id.into_owned(), at);
            }
        }
        Ok(())
    }

    fn contains(&mut self, id: &str, now: DateTime<Utc>) -> bool {
        let cutoff = now - self.window;
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff && self.order.len() <= self.capacity {
                break;
            }
            if let Some((at, old)) = self.order.pop_front()
                && self.seen.get(&old) == Some(&at)
            {
                self.seen.remove(&old);
            }
        }
        self.seen.contains_key(id)
    }

    fn insert(&mut self, id: String, at: DateTime<Utc>) {
        self.order.push_back((at, id.clone()));
        self.seen.insert(id, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("000000000001.jsonl");
        fs::write(&path, b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap_or_else(|e| panic!("{e}"));
        repair_tail(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            fs::read(&path).unwrap_or_default(),
            b"{\"a\":1}\n{\"a\":2}\n"
        );
        fs::write(&path, b"{\"a\":").unwrap_or_else(|e| panic!("{e}"));
        repair_tail(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(fs::read(&path).unwrap_or_default().is_empty());
    }
}
