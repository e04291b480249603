//! The pipeline runtime: one source, transforms, an optional identity resolver and one or
//! more destinations, joined by bounded channels on tokio.
//!
//! # Delivery
//!
//! The runtime places *barriers* right after source checkpoints. At a barrier every
//! destination flushes (durably), then the dead-letter destination, then the state store
//! commits the checkpoint cursors with a new epoch, then destinations are told to publish
//! that epoch. A crash anywhere leaves the previous epoch committed; on resume the source
//! replays from the committed cursors and destinations discard anything staged for a later
//! epoch (or upsert idempotently), so nothing is lost or duplicated.
//!
//! # One run at a time
//!
//! A run first takes its pipeline's [`Lease`](crate::checkpoint::Lease) from the state
//! store and holds it to the end; a second run of the same pipeline waits
//! ([`PipelineBuilder::lease_wait`]) or stops with [`Error::Leased`] before it reads or
//! writes anything. Before each state commit the run checks that it still holds the lease.
//!
//! # Backpressure
//!
//! Source → router → each destination are bounded channels of
//! [`PipelineBuilder::channel_capacity`] batches, so a slow destination slows the source and
//! the number of batches in flight stays bounded.

mod router;
mod stats;
mod worker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::catalog::SyncMode;
use crate::checkpoint::{MemoryStateStore, StateStore};
use crate::destination::Destination;
use crate::error::{Error, Result, Stage};
use crate::flow::FlowCheck;
use crate::identity::IdentityResolver;
use crate::retry::RetryPolicy;
use crate::source::Source;
use crate::transform::Transform;

use router::AtStage;
use stats::LiveStats;
pub use stats::{DestinationStats, RunReport, RunStatus, StreamStats};

/// A destination's own transforms, shared by the router (for schemas) and its worker.
type Transforms = Arc<Vec<Box<dyn Transform>>>;

/// How a pipeline paces its commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Run until the source is exhausted; commit every
    /// [`commit_every_rows`](PipelineBuilder::commit_every_rows) rows (at the next source
    /// checkpoint) and at the end.
    Batch,
    /// Gather rows into batches of up to `max_rows` per stream and flush them (with a commit)
    /// when `max_rows` are pending or `max_wait` has passed since the first pending row.
    MicroBatch {
        /// Rows that trigger a flush.
        max_rows: usize,
        /// Longest time a row waits before it is flushed.
        max_wait: Duration,
    },
    /// Pass every batch on as it arrives; commit every `commit_interval` while rows flow.
    /// Runs until the source ends or the run is cancelled.
    Streaming {
        /// Time between commits.
        commit_interval: Duration,
    },
}

/// Builds a [`Pipeline`].
#[derive(Debug)]
pub struct PipelineBuilder {
    id: String,
    source: Option<Box<dyn Source>>,
    transforms: Vec<Box<dyn Transform>>,
    identity: Option<Arc<dyn IdentityResolver>>,
    destinations: Vec<(Box<dyn Destination>, Transforms)>,
    dead_letter: Option<(Box<dyn Destination>, Transforms)>,
    state_store: Option<Arc<dyn StateStore>>,
    checks: Vec<Arc<dyn FlowCheck>>,
    mode: RunMode,
    channel_capacity: usize,
    commit_every_rows: usize,
    retry: RetryPolicy,
    streams: Vec<String>,
    sync_mode: Option<SyncMode>,
    cancel_grace: Duration,
    lease_wait: Duration,
}

impl PipelineBuilder {
    /// Sets the source.
    pub fn source(mut self, source: impl Source + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Appends a transform; transforms run in the order they were added.
    pub fn transform(mut self, transform: impl Transform + 'static) -> Self {
        self.transforms.push(Box::new(transform));
        self
    }

    /// Sets the identity resolver, run after the transforms.
    pub fn identity(mut self, resolver: Arc<dyn IdentityResolver>) -> Self {
        self.identity = Some(resolver);
        self
    }

    /// Adds a destination; every batch goes to every destination.
    pub fn destination(mut self, destination: impl Destination + 'static) -> Self {
        self.destinations
            .push((Box::new(destination), Arc::new(Vec::new())));
        self
    }

    /// Adds a destination whose batches first go through its own `transforms` (masking or
    /// dropping what only this destination may not receive). Rows those transforms reject
    /// are dead-lettered; the record hash is recomputed on what the destination receives.
    pub fn destination_with(
        mut self,
        destination: impl Destination + 'static,
        transforms: Vec<Box<dyn Transform>>,
    ) -> Self {
        self.destinations
            .push((Box::new(destination), Arc::new(transforms)));
        self
    }

    /// Adds a check every flow (stream → destination) must pass, before the run starts
    /// and whenever a schema changes. See [`FlowCheck`].
    pub fn check(mut self, check: impl FlowCheck + 'static) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Sets where dead letters go (stream [`DEAD_LETTER_STREAM`](crate::DEAD_LETTER_STREAM)).
    /// Without one they are logged, counted and sampled in the [`RunReport`].
    pub fn dead_letter(mut self, destination: impl Destination + 'static) -> Self {
        self.dead_letter = Some((Box::new(destination), Arc::new(Vec::new())));
        self
    }

    /// Like [`dead_letter`](Self::dead_letter), with transforms run on the dead-letter
    /// batches first: a dead letter's `payload` is the raw record, so a policy that must
    /// keep personal data out of the dead-letter store redacts or hashes it here.
    pub fn dead_letter_with(
        mut self,
        destination: impl Destination + 'static,
        transforms: Vec<Box<dyn Transform>>,
    ) -> Self {
        self.dead_letter = Some((Box::new(destination), Arc::new(transforms)));
        self
    }

    /// Sets the state store; defaults to a [`MemoryStateStore`] (no resume across processes).
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.state_store = Some(store);
        self
    }

    /// Sets the run mode; defaults to [`RunMode::Batch`].
    pub fn mode(mut self, mode: RunMode) -> Self {
        self.mode = mode;
        self
    }

    /// Batches in flight per channel (source → router → each destination). Default 4.
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity.max(1);
        self
    }

    /// In batch mode, rows between commits. Default 250,000.
    pub fn commit_every_rows(mut self, rows: usize) -> Self {
        self.commit_every_rows = rows.max(1);
        self
    }

    /// Retry policy for destination writes, flushes, commits and state commits.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Reads only these streams (default: all).
    pub fn streams<I, S>(mut self, streams: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.streams = streams.into_iter().map(Into::into).collect();
        self
    }

    /// Asks the source for this sync mode (say, [`SyncMode::FullRefresh`] for a backfill
    /// after a schema change); streams that do not support it use their default. Default:
    /// each stream's default mode.
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.sync_mode = Some(mode);
        self
    }

    /// On cancellation, how long to wait for the source to reach its next checkpoint so the
    /// rows already read can be committed. Default 10 s.
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// How long a run waits for another run of the same pipeline (same id, same state
    /// store) to end before giving up with [`Error::Leased`]. Default zero: refuse at once.
    /// See [`Lease`](crate::checkpoint::Lease).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Checks the composition and returns the pipeline.
    pub fn build(self) -> Result<Pipeline> {
        let source = self
            .source
            .ok_or_else(|| Error::Config(format!("pipeline `{}` has no source", self.id)))?;
        if self.destinations.is_empty() {
            return Err(Error::Config(format!(
                "pipeline `{}` has no destination",
                self.id
            )));
        }
        let mut names: Vec<&str> = self.destinations.iter().map(|(d, _)| d.name()).collect();
        if let Some((dlq, _)) = &self.dead_letter {
            names.push(dlq.name());
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Config(format!(
                "pipeline `{}` has two destinations named `{}`; names must be unique",
                self.id, pair[0]
            )));
        }
        if let RunMode::MicroBatch { max_rows: 0, .. } = self.mode {
            return Err(Error::Config("micro-batch max_rows must be > 0".into()));
        }
        let stats = Arc::new(LiveStats::new(
            &self.id,
            names.iter().map(|n| n.to_string()).collect(),
        ));
        Ok(Pipeline {
            id: self.id,
            source,
            transforms: self.transforms,
            identity: self.identity,
            destinations: self.destinations,
            dead_letter: self.dead_letter,
            checks: self.checks,
            state_store: self
                .state_store
                .unwrap_or_else(|| Arc::new(MemoryStateStore::new())),
            mode: self.mode,
            channel_capacity: self.channel_capacity,
            commit_every_rows: self.commit_every_rows,
            retry: self.retry,
            streams: self.streams,
            sync_mode: self.sync_mode,
            cancel_grace: self.cancel_grace,
            lease_wait: self.lease_wait,
            cancel: CancellationToken::new(),
            stats,
        })
    }
}

/// A composed pipeline, ready to [`run`](Pipeline::run).
#[derive(Debug)]
pub struct Pipeline {
    id: String,
    source: Box<dyn Source>,
    transforms: Vec<Box<dyn Transform>>,
    identity: Option<Arc<dyn IdentityResolver>>,
    destinations: Vec<(Box<dyn Destination>, Transforms)>,
    dead_letter: Option<(Box<dyn Destination>, Transforms)>,
    checks: Vec<Arc<dyn FlowCheck>>,
    state_store: Arc<dyn StateStore>,
    mode: RunMode,
    channel_capacity: usize,
    commit_every_rows: usize,
    retry: RetryPolicy,
    streams: Vec<String>,
    sync_mode: Option<SyncMode>,
    cancel_grace: Duration,
    lease_wait: Duration,
    cancel: CancellationToken,
    stats: Arc<LiveStats>,
}

/// Watches and steers a running pipeline from another task.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    cancel: CancellationToken,
    stats: Arc<LiveStats>,
}

impl PipelineHandle {
    /// Asks the pipeline to stop gracefully: it stops reading at the source's next
    /// checkpoint, commits what it read, and returns a report with status `Cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The statistics so far.
    pub fn report(&self) -> RunReport {
        self.stats.report()
    }
}

impl Pipeline {
    /// Starts building a pipeline with a stable id (the key of its committed state).
    pub fn builder(id: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            id: id.into(),
            source: None,
            transforms: Vec::new(),
            identity: None,
            destinations: Vec::new(),
            dead_letter: None,
            state_store: None,
            checks: Vec::new(),
            mode: RunMode::Batch,
            channel_capacity: 4,
            commit_every_rows: 250_000,
            retry: RetryPolicy::default(),
            streams: Vec::new(),
            sync_mode: None,
            cancel_grace: Duration::from_secs(10),
            lease_wait: Duration::ZERO,
        }
    }

    /// The pipeline id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A handle to cancel the run or watch its statistics.
    pub fn handle(&self) -> PipelineHandle {
        PipelineHandle {
            cancel: self.cancel.clone(),
            stats: self.stats.clone(),
        }
    }

    /// Checks the pipeline without moving data: discovers the source's streams and runs
    /// every [`FlowCheck`] on the schema each destination would receive. A policy that would
    /// refuse a flow refuses it here, naming field, class and destination — use it at
    /// deploy time or in CI (`run` does the same checks before it opens anything).
    ///
    /// Returns the discovered catalog.
    pub fn validate(&self) -> impl Future<Output = Result<crate::catalog::Catalog>> + Send + '_ {
        // Destinations need not be `Sync`: take what the checks need from them up front, so
        // the future borrows only `Sync` parts of the pipeline.
        let flows: Vec<(String, Transforms)> = self
            .destinations
            .iter()
            .map(|(d, t)| (d.name().to_string(), t.clone()))
            .collect();
        let (id, source, transforms, identity, checks) = (
            &self.id,
            &self.source,
            &self.transforms,
            &self.identity,
            &self.checks,
        );
        async move {
            let catalog = source
                .discover()
                .await
                .at(|| Stage::Source)
                .map_err(|e| e.into_error(id))?;
            let plan = router::FlowPlan {
                pipeline_id: id,
                transforms,
                identity: identity.as_deref(),
                flows: &flows,
                checks,
            };
            plan.check_catalog(&catalog).map_err(|e| e.into_error(id))?;
            Ok(catalog)
        }
    }

    /// Runs the pipeline to the end (or until cancelled) and returns its report.
    ///
    /// On a fatal error the run stops and returns [`Error::Pipeline`] naming the stage; the
    /// last committed state is intact and [`PipelineHandle::report`] still has the figures.
    pub async fn run(self) -> Result<RunReport> {
        let span = tracing::info_span!("pipeline", id = %self.id);
        let stats = self.stats.clone();
        let id = self.id.clone();
        let result = tracing::Instrument::instrument(router::run(self), span).await;
        match result {
            Ok(status) => {
                stats.set_status(status);
                let report = stats.report();
                tracing::info!(pipeline = %id, rows_out = report.rows_out(), epoch = report.committed_epoch, "run finished");
                Ok(report)
            }
            Err(error) => {
                stats.set_status(RunStatus::Failed(error.to_string()));
                tracing::error!(pipeline = %id, %error, "run failed");
                Err(error)
            }
        }
    }
}
