//! Live per-stream and per-destination statistics, and the [`RunReport`] built from them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::{DeadLetter, SchemaDrift, SourceNotice};
use crate::identity::IdentityEventKind;

const NONE: i64 = i64::MIN;

/// Counters for one stream, updated by the runtime as batches pass.
#[derive(Debug)]
pub(crate) struct StreamCounters {
    pub(crate) rows_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) rows_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) schema_changes: AtomicU64,
    pub(crate) drift_events: AtomicU64,
    /// Last watermark, UTC micros, or `NONE`.
    watermark: AtomicI64,
    /// When rows of this stream were last committed, UTC micros, or `NONE`.
    committed_at: AtomicI64,
    /// Rows routed since the last commit (become "committed" at the next barrier).
    uncommitted: AtomicU64,
}

impl Default for StreamCounters {
    fn default() -> Self {
        StreamCounters {
            rows_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            schema_changes: AtomicU64::new(0),
            drift_events: AtomicU64::new(0),
            watermark: AtomicI64::new(NONE),
            committed_at: AtomicI64::new(NONE),
            uncommitted: AtomicU64::new(0),
        }
    }
}

/// Counters for one destination.
#[derive(Debug, Default)]
pub(crate) struct DestinationCounters {
    pub(crate) rows_written: AtomicU64,
    pub(crate) rows_rejected: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// Statistics shared between the running pipeline and anyone watching it.
#[derive(Debug)]
pub(crate) struct LiveStats {
    pub(crate) pipeline_id: String,
    started: Instant,
    started_at: DateTime<Utc>,
    streams: RwLock<BTreeMap<String, Arc<StreamCounters>>>,
    pub(crate) destinations: Vec<(String, Arc<DestinationCounters>)>,
    pub(crate) epoch: AtomicU64,
    pub(crate) identity: Mutex<BTreeMap<IdentityEventKind, u64>>,
    pub(crate) dead_letter_samples: Mutex<Vec<DeadLetter>>,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) drift_samples: Mutex<Vec<SchemaDrift>>,
    pub(crate) notices: Mutex<Vec<SourceNotice>>,
    pub(crate) status: Mutex<RunStatus>,
}

/// How many dead letters a report keeps when no dead-letter destination is configured.
pub(crate) const DEAD_LETTER_SAMPLES: usize = 100;
/// How many drift events a report keeps (all are counted).
pub(crate) const DRIFT_SAMPLES: usize = 100;
/// How many source notices a report keeps (the rest are logged only).
pub(crate) const NOTICES: usize = 100;

impl LiveStats {
    pub(crate) fn new(pipeline_id: &str, destinations: Vec<String>) -> Self {
        LiveStats {
            pipeline_id: pipeline_id.to_string(),
            started: Instant::now(),
            started_at: Utc::now(),
            streams: RwLock::new(BTreeMap::new()),
            destinations: destinations
                .into_iter()
                .map(|name| (name, Arc::new(DestinationCounters::default())))
                .collect(),
            epoch: AtomicU64::new(0),
            identity: Mutex::new(BTreeMap::new()),
            dead_letter_samples: Mutex::new(Vec::new()),
            dead_letters: AtomicU64::new(0),
            drift_samples: Mutex::new(Vec::new()),
            notices: Mutex::new(Vec::new()),
            status: Mutex::new(RunStatus::Running),
        }
    }

    pub(crate) fn stream(&self, name: &str) -> Arc<StreamCounters> {
        if let Ok(streams) = self.streams.read()
            && let Some(counters) = streams.get(name)
        {
            return counters.clone();
        }
        match self.streams.write() {
            Ok(mut streams) => streams.entry(name.to_string()).or_default().clone(),
            // A poisoned lock only means a reader panicked; counting goes on in a detached
            // counter rather than failing the pipeline.
            Err(_) => Arc::new(StreamCounters::default()),
        }
    }

    pub(crate) fn watermark(&self, stream: &str, at: DateTime<Utc>) {
        let counters = self.stream(stream);
        counters
            .watermark
            .fetch_max(at.timestamp_micros(), Ordering::Relaxed);
    }

    pub(crate) fn routed(&self, stream: &str, rows: u64, bytes: u64) {
        let counters = self.stream(stream);
        counters.rows_out.fetch_add(rows, Ordering::Relaxed);
        counters.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        counters.uncommitted.fetch_add(rows, Ordering::Relaxed);
        metrics::counter!("cdp_rows_out_total", "pipeline" => self.pipeline_id.clone(), "stream" => stream.to_string())
            .increment(rows);
        metrics::counter!("cdp_bytes_out_total", "pipeline" => self.pipeline_id.clone(), "stream" => stream.to_string())
            .increment(bytes);
    }

    pub(crate) fn received(&self, stream: &str, rows: u64, bytes: u64) {
        let counters = self.stream(stream);
        counters.rows_in.fetch_add(rows, Ordering::Relaxed);
        counters.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        metrics::counter!("cdp_rows_in_total", "pipeline" => self.pipeline_id.clone(), "stream" => stream.to_string())
            .increment(rows);
        metrics::counter!("cdp_bytes_in_total", "pipeline" => self.pipeline_id.clone(), "stream" => stream.to_string())
            .increment(bytes);
    }

    pub(crate) fn dead_lettered(&self, letter: &DeadLetter, keep_sample: bool) {
        self.stream(&letter.stream)
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("cdp_dead_letters_total", "pipeline" => self.pipeline_id.clone(), "stream" => letter.stream.clone())
            .increment(1);
        if keep_sample
            && let Ok(mut samples) = self.dead_letter_samples.lock()
            && samples.len() < DEAD_LETTER_SAMPLES
        {
            samples.push(letter.clone());
        }
    }

    pub(crate) fn drift(&self, drift: SchemaDrift) {
        self.stream(&drift.stream)
            .drift_events
            .fetch_add(1, Ordering::Relaxed);
        metrics::counter!("cdp_schema_drift_total", "pipeline" => self.pipeline_id.clone(), "stream" => drift.stream.clone())
            .increment(1);
        if let Ok(mut samples) = self.drift_samples.lock()
            && samples.len() < DRIFT_SAMPLES
        {
            samples.push(drift);
        }
    }

    pub(crate) fn notice(&self, notice: SourceNotice) {
        metrics::counter!("cdp_source_notices_total", "pipeline" => self.pipeline_id.clone(), "stream" => notice.stream.clone())
            .increment(1);
        if let Ok(mut notices) = self.notices.lock()
            && notices.len() < NOTICES
        {
            notices.push(notice);
        }
    }

    pub(crate) fn identity_event(&self, kind: IdentityEventKind) {
        if let Ok(mut counts) = self.identity.lock() {
            *counts.entry(kind).or_default() += 1;
        }
        metrics::counter!("cdp_identity_events_total", "pipeline" => self.pipeline_id.clone(), "kind" => format!("{kind:?}"))
            .increment(1);
    }

    /// Marks everything routed so far as committed at `epoch`.
    pub(crate) fn committed(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
        let now = Utc::now().timestamp_micros();
        if let Ok(streams) = self.streams.read() {
            for counters in streams.values() {
                if counters.uncommitted.swap(0, Ordering::Relaxed) > 0 {
                    counters.committed_at.store(now, Ordering::Relaxed);
                }
            }
        }
        metrics::gauge!("cdp_committed_epoch", "pipeline" => self.pipeline_id.clone())
            .set(epoch as f64);
        for stream in self.snapshot_streams() {
            if let Some(lag) = stream.lag {
                metrics::gauge!("cdp_lag_seconds", "pipeline" => self.pipeline_id.clone(), "stream" => stream.stream.clone())
                    .set(lag.as_secs_f64());
            }
        }
    }

    pub(crate) fn set_status(&self, status: RunStatus) {
        if let Ok(mut current) = self.status.lock() {
            *current = status;
        }
    }

    fn snapshot_streams(&self) -> Vec<StreamStats> {
        let now = Utc::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let age = |micros: i64| {
            (micros != NONE).then(|| {
                let then = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(now);
                (now - then).to_std().unwrap_or_default()
            })
        };
        let Ok(streams) = self.streams.read() else {
            return Vec::new();
        };
        streams
            .iter()
            .map(|(name, c)| {
                let rows_out = c.rows_out.load(Ordering::Relaxed);
                StreamStats {
                    stream: name.clone(),
                    rows_in: c.rows_in.load(Ordering::Relaxed),
                    bytes_in: c.bytes_in.load(Ordering::Relaxed),
                    rows_out,
                    bytes_out: c.bytes_out.load(Ordering::Relaxed),
                    dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
                    schema_changes: c.schema_changes.load(Ordering::Relaxed),
                    drift_events: c.drift_events.load(Ordering::Relaxed),
                    lag: age(c.watermark.load(Ordering::Relaxed)),
                    freshness: age(c.committed_at.load(Ordering::Relaxed)),
                    rows_per_second: rows_out as f64 / elapsed,
                }
            })
            .collect()
    }

    pub(crate) fn report(&self) -> RunReport {
        RunReport {
            pipeline_id: self.pipeline_id.clone(),
            status: self
                .status
                .lock()
                .map(|s| s.clone())
                .unwrap_or(RunStatus::Running),
            started_at: self.started_at,
            elapsed: self.started.elapsed(),
            committed_epoch: self.epoch.load(Ordering::Relaxed),
            streams: self.snapshot_streams(),
            destinations: self
                .destinations
                .iter()
                .map(|(name, c)| DestinationStats {
                    destination: name.clone(),
                    rows_written: c.rows_written.load(Ordering::Relaxed),
                    rows_rejected: c.rows_rejected.load(Ordering::Relaxed),
                    batches: c.batches.load(Ordering::Relaxed),
                    flushes: c.flushes.load(Ordering::Relaxed),
                    retries: c.retries.load(Ordering::Relaxed),
                })
                .collect(),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            dead_letter_samples: self
                .dead_letter_samples
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            identity_events: self.identity.lock().map(|m| m.clone()).unwrap_or_default(),
            drift: self
                .drift_samples
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            notices: self.notices.lock().map(|n| n.clone()).unwrap_or_default(),
        }
    }
}

/// How a run ended (or that it is still going).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum RunStatus {
    /// Still running.
    Running,
    /// The source was exhausted and everything was committed.
    Completed,
    /// Stopped on request; everything up to the last checkpoint was committed.
    Cancelled,
    /// Stopped by a fatal error; the last committed state is intact.
    Failed(String),
}

/// Statistics of one stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStats {
    /// Stream name.
    pub stream: String,
    /// Rows received from the source.
    pub rows_in: u64,
    /// Arrow bytes received from the source.
    pub bytes_in: u64,
    /// Rows sent on to destinations (after transforms and dead-lettering).
    pub rows_out: u64,
    /// Arrow bytes sent on to destinations (stamped).
    pub bytes_out: u64,
    /// Rows sent to the dead-letter path.
    pub dead_lettered: u64,
    /// Schema changes seen.
    pub schema_changes: u64,
    /// Schema drift events: each kind of difference between the data and the schema a
    /// schemaless source found (a new key, a type conflict), with what it did about it.
    pub drift_events: u64,
    /// Time since the latest watermark (event-time lag), if the source emits watermarks.
    pub lag: Option<Duration>,
    /// Time since rows of this stream were last committed to the destinations.
    pub freshness: Option<Duration>,
    /// Rows out per second of run time.
    pub rows_per_second: f64,
}

/// Statistics of one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationStats {
    /// Destination name.
    pub destination: String,
    /// Rows accepted.
    pub rows_written: u64,
    /// Rows refused (and dead-lettered).
    pub rows_rejected: u64,
    /// Batches written.
    pub batches: u64,
    /// Barriers flushed.
    pub flushes: u64,
    /// Write or flush attempts that were retried.
    pub retries: u64,
}

/// What a run did: the final (or current) statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// The pipeline.
    pub pipeline_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it ran.
    pub elapsed: Duration,
    /// The last committed barrier.
    pub committed_epoch: u64,
    /// Per-stream statistics.
    pub streams: Vec<StreamStats>,
    /// Per-destination statistics (the dead-letter destination last, if any).
    pub destinations: Vec<DestinationStats>,
    /// Records dead-lettered in all.
    pub dead_letters: u64,
    /// Dead letters kept in the report (only when no dead-letter destination is set).
    pub dead_letter_samples: Vec<DeadLetter>,
    /// Identity events by kind.
    pub identity_events: BTreeMap<IdentityEventKind, u64>,
    /// The schema drift events (the first 100; all are counted in each stream's
    /// `drift_events`).
    pub drift: Vec<SchemaDrift>,
    /// What the source noticed about its input and did about it (a file replaced,
    /// truncated or rotated), the first 100.
    pub notices: Vec<SourceNotice>,
}

impl RunReport {
    /// Rows received from the source, all streams.
    pub fn rows_in(&self) -> u64 {
        self.streams.iter().map(|s| s.rows_in).sum()
    }

    /// Rows sent on to destinations, all streams.
    pub fn rows_out(&self) -> u64 {
        self.streams.iter().map(|s| s.rows_out).sum()
    }

    /// The statistics of `stream`.
    pub fn stream(&self, stream: &str) -> Option<&StreamStats> {
        self.streams.iter().find(|s| s.stream == stream)
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match &self.status {
            RunStatus::Failed(why) => format!("failed: {why}"),
            other => format!("{other:?}").to_lowercase(),
        };
        writeln!(
            f,
            "pipeline {}: {status} in {:.2?}, committed epoch {}",
            self.pipeline_id, self.elapsed, self.committed_epoch
        )?;
        writeln!(
            f,
            "  {:<24} {:>10} {:>10} {:>8} {:>12} {:>10}",
            "stream", "rows in", "rows out", "dead", "rows/s", "freshness"
        )?;
        for s in &self.streams {
            let freshness = s
                .freshness
                .map(|d| format!("{:.1}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "  {:<24} {:>10} {:>10} {:>8} {:>12.0} {:>10}",
                s.stream, s.rows_in, s.rows_out, s.dead_lettered, s.rows_per_second, freshness
            )?;
        }
        for d in &self.destinations {
            writeln!(
                f,
                "  -> {:<21} {:>10} rows written, {} rejected, {} batches, {} flushes, {} retries",
                d.destination, d.rows_written, d.rows_rejected, d.batches, d.flushes, d.retries
            )?;
        }
        if self.dead_letters > 0 {
            writeln!(f, "  dead letters: {}", self.dead_letters)?;
            for letter in self.dead_letter_samples.iter().take(5) {
                writeln!(f, "    {}: {}", letter.stream, letter.reason)?;
            }
        }
        let drift: u64 = self.streams.iter().map(|s| s.drift_events).sum();
        if drift > 0 {
            writeln!(f, "  schema drift: {drift}")?;
            for event in self.drift.iter().take(5) {
                writeln!(
                    f,
                    "    {}: {} ({}): {:?}",
                    event.stream, event.path, event.detail, event.action
                )?;
            }
        }
        if !self.notices.is_empty() {
            writeln!(f, "  source notices: {}", self.notices.len())?;
            for notice in &self.notices {
                writeln!(
                    f,
                    "    {}: {}: {}",
                    notice.stream, notice.subject, notice.message
                )?;
            }
        }
        if !self.identity_events.is_empty() {
            let events: Vec<String> = self
                .identity_events
                .iter()
                .map(|(k, n)| format!("{k:?}={n}"))
                .collect();
            writeln!(f, "  identity events: {}", events.join(", "))?;
        }
        Ok(())
    }
}
