//! The router: pulls source events, transforms, resolves and stamps batches, fans them out
//! to the destination workers, and runs the barrier protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::stats::LiveStats;
use super::worker::{Worker, WorkerMsg};
use super::{Pipeline, RunMode, RunStatus};
use crate::catalog::{Catalog, StreamSpec};
use crate::destination::OpenContext;
use crate::error::{Error, Result, Stage};
use crate::event::{DeadLetter, PipelineState, SourceEvent};
use crate::record::Batch;
use crate::source::ReadRequest;

/// What the source task hands the router.
enum Feed {
    Event(SourceEvent),
    Failed(Error),
    /// The source stopped early because the run was cancelled.
    Cancelled {
        /// Whether the last event sent was a checkpoint (nothing uncovered in flight).
        aligned: bool,
    },
}

pub(super) async fn run(pipeline: Pipeline) -> Result<RunStatus> {
    let Pipeline {
        id,
        source,
        transforms,
        identity,
        destinations,
        dead_letter,
        checks,
        state_store,
        mode,
        channel_capacity,
        commit_every_rows,
        retry,
        streams,
        cancel_grace,
        lease_wait,
        cancel,
        stats,
        sync_mode,
    } = pipeline;
    let fail = |e: StageError| e.into_error(&id);

    // One run at a time: held until this function returns, whatever the outcome.
    let lease = state_store
        .lease(&id, lease_wait)
        .await
        .at(|| Stage::StateStore)
        .map_err(fail)?;
    let committed = retry
        .retry("load state", async || state_store.load(&id).await)
        .await
        .at(|| Stage::StateStore)
        .map_err(fail)?;
    let catalog = source.discover().await.at(|| Stage::Source).map_err(fail)?;
    tracing::info!(
        epoch = committed.epoch,
        streams = catalog.streams.len(),
        "starting"
    );

    let ctx = OpenContext {
        pipeline_id: id.clone(),
        committed_epoch: committed.epoch,
    };
    let counters: Vec<_> = stats.destinations.iter().map(|(_, c)| c.clone()).collect();
    let flows: Vec<(String, super::Transforms)> = destinations
        .iter()
        .map(|(d, t)| (d.name().to_string(), t.clone()))
        .collect();
    let mut router = Router {
        stats: stats.clone(),
        transforms,
        identity,
        checks,
        flows,
        pipeline_id: id.clone(),
        catalog,
        prepared: HashMap::new(),
        resolved_schemas: HashMap::new(),
        pending_dead: Vec::new(),
        buffers: Vec::new(),
        committed: committed.clone(),
        cursors: None,
        pending_rows: 0,
        first_pending: None,
        aligned: true,
        want_barrier: false,
        mode,
        commit_every_rows,
        has_dlq: dead_letter.is_some(),
        source_name: source.name().to_string(),
        lease,
    };
    // Policy first: nothing is opened, read or written if a declared flow is refused.
    router.check_declared_flows().map_err(fail)?;

    let workers: Vec<Worker> = destinations
        .into_iter()
        .zip(&counters)
        .map(|((d, t), c)| {
            Worker::spawn(
                d,
                t,
                ctx.clone(),
                channel_capacity,
                retry.clone(),
                c.clone(),
            )
        })
        .collect();
    let dlq = dead_letter.map(|(d, t)| {
        let c = counters.last().cloned().unwrap_or_default();
        Worker::spawn(d, t, ctx.clone(), channel_capacity, retry.clone(), c)
    });

    let request = ReadRequest {
        state: committed,
        streams,
        sync_mode,
    };
    let events = source.read(request).at(|| Stage::Source).map_err(fail)?;
    let (tx, rx) = mpsc::channel::<Feed>(channel_capacity);
    let source_task = tokio::spawn(pump(events, tx, cancel.clone(), cancel_grace));

    let mut all = Workers { data: workers, dlq };

    let outcome = router.route(rx, &mut all, &*state_store, &id, &retry).await;
    source_task.abort();
    match outcome {
        Ok(status) => {
            all.close()
                .await
                .at(|| Stage::DestinationClose)
                .map_err(fail)?;
            Ok(status)
        }
        Err(e) => {
            all.abort();
            Err(fail(e))
        }
    }
}

/// Drives the source stream in its own task so decoding overlaps routing.
async fn pump(
    mut events: crate::source::SourceEventStream,
    tx: mpsc::Sender<Feed>,
    cancel: tokio_util::sync::CancellationToken,
    grace: std::time::Duration,
) {
    let mut aligned = true;
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            None => tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    if aligned {
                        let _ = tx.send(Feed::Cancelled { aligned }).await;
                        return;
                    }
                    // Let the source reach its next checkpoint so what was read can commit.
                    deadline = Some(Instant::now() + grace);
                    continue;
                }
                next = events.next() => next,
            },
            Some(at) => match tokio::time::timeout_at(at, events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let _ = tx.send(Feed::Cancelled { aligned: false }).await;
                    return;
                }
            },
        };
        let event = match next {
            None => return,
            Some(Err(e)) => {
                let _ = tx.send(Feed::Failed(e)).await;
                return;
            }
            Some(Ok(event)) => event,
        };
        match &event {
            SourceEvent::Checkpoint(_) => aligned = true,
            SourceEvent::Batch(_) | SourceEvent::DeadLetter(_) => aligned = false,
            _ => {}
        }
        let is_checkpoint = matches!(event, SourceEvent::Checkpoint(_));
        if tx.send(Feed::Event(event)).await.is_err() {
            return;
        }
        if deadline.is_some() && is_checkpoint {
            let _ = tx.send(Feed::Cancelled { aligned: true }).await;
            return;
        }
    }
}

struct Workers {
    data: Vec<Worker>,
    dlq: Option<Worker>,
}

impl Workers {
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Worker> {
        self.data.iter_mut().chain(self.dlq.as_mut())
    }

    async fn close(self) -> Result<()> {
        for worker in self.data.into_iter().chain(self.dlq) {
            worker.close().await?;
        }
        Ok(())
    }

    fn abort(self) {
        for worker in self.data.into_iter().chain(self.dlq) {
            worker.abort();
        }
    }
}

/// An error and the stage of the run it happened in; becomes an [`Error::Pipeline`].
#[derive(Debug)]
pub(super) struct StageError {
    stage: Stage,
    error: Error,
}

impl StageError {
    pub(super) fn into_error(self, pipeline: &str) -> Error {
        Error::Pipeline {
            pipeline: pipeline.to_string(),
            stage: self.stage,
            source: Box::new(self.error),
        }
    }
}

/// Names the stage of a failed step: `step.await.at(|| Stage::Identity)?`.
pub(super) trait AtStage<T> {
    fn at(self, stage: impl FnOnce() -> Stage) -> Result<T, StageError>;
}

impl<T> AtStage<T> for Result<T> {
    fn at(self, stage: impl FnOnce() -> Stage) -> Result<T, StageError> {
        self.map_err(|error| StageError {
            stage: stage(),
            error,
        })
    }
}

struct Router {
    stats: Arc<LiveStats>,
    transforms: Vec<Box<dyn crate::transform::Transform>>,
    identity: Option<Arc<dyn crate::identity::IdentityResolver>>,
    checks: Vec<Arc<dyn crate::flow::FlowCheck>>,
    /// Each data destination's name and own transforms, in worker order.
    flows: Vec<(String, super::Transforms)>,
    pipeline_id: String,
    catalog: Catalog,
    /// The stamped schema each destination was last prepared with, per stream.
    prepared: HashMap<Arc<str>, SchemaRef>,
    /// Per stream, the last schema given to the identity resolver and the one it declared.
    resolved_schemas: HashMap<Arc<str>, (SchemaRef, SchemaRef)>,
    pending_dead: Vec<DeadLetter>,
    /// Micro-batch mode: stamped batches waiting to be coalesced, in arrival order.
    buffers: Vec<Batch>,
    committed: PipelineState,
    /// Cursors received since the last barrier (merged over the committed ones).
    cursors: Option<PipelineState>,
    pending_rows: usize,
    first_pending: Option<Instant>,
    /// The last event routed was a checkpoint (or nothing was routed since the last barrier).
    aligned: bool,
    want_barrier: bool,
    mode: RunMode,
    commit_every_rows: usize,
    has_dlq: bool,
    source_name: String,
    /// This run's hold on the pipeline, checked before every state commit.
    lease: crate::checkpoint::Lease,
}

impl Router {
    async fn route(
        &mut self,
        mut rx: mpsc::Receiver<Feed>,
        workers: &mut Workers,
        store: &dyn crate::checkpoint::StateStore,
        id: &str,
        retry: &crate::retry::RetryPolicy,
    ) -> Result<RunStatus, StageError> {
        loop {
            let deadline = self.deadline();
            let feed = tokio::select! {
                biased;
                feed = rx.recv() => feed,
                () = sleep_until(deadline), if deadline.is_some() => {
                    self.want_barrier = true;
                    if self.aligned {
                        self.barrier(workers, store, id, retry).await?;
                    }
                    continue;
                }
            };
            match feed {
                None => {
                    if !self.aligned {
                        tracing::warn!(
                            "source `{}` ended without a final checkpoint; its last rows are \
                             committed but a re-run will read them again",
                            self.source_name
                        );
                    }
                    self.barrier(workers, store, id, retry).await?;
                    return Ok(RunStatus::Completed);
                }
                Some(Feed::Failed(e)) => return Err(e).at(|| Stage::Source),
                Some(Feed::Cancelled { aligned }) => {
                    if aligned {
                        self.barrier(workers, store, id, retry).await?;
                    } else {
                        tracing::warn!(
                            rows = self.pending_rows,
                            "cancelled between checkpoints; rows after the last checkpoint are \
                             not committed and will be read again on resume"
                        );
                    }
                    return Ok(RunStatus::Cancelled);
                }
                Some(Feed::Event(event)) => self.event(event, workers).await?,
            }
            if self.should_barrier() {
                self.want_barrier = true;
            }
            if self.want_barrier && self.aligned {
                self.barrier(workers, store, id, retry).await?;
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        if self.want_barrier {
            return None;
        }
        let wait = match self.mode {
            RunMode::Batch => return None,
            RunMode::MicroBatch { max_wait, .. } => max_wait,
            RunMode::Streaming { commit_interval } => commit_interval,
        };
        self.first_pending.map(|first| first + wait)
    }

    fn should_barrier(&self) -> bool {
        match self.mode {
            RunMode::Batch => self.pending_rows >= self.commit_every_rows,
            RunMode::MicroBatch { max_rows, .. } => self.pending_rows >= max_rows,
            RunMode::Streaming { .. } => false,
        }
    }

    fn mark_pending(&mut self, rows: usize) {
        self.pending_rows += rows;
        if self.first_pending.is_none() {
            self.first_pending = Some(Instant::now());
        }
    }

    async fn event(&mut self, event: SourceEvent, workers: &mut Workers) -> Result<(), StageError> {
        match event {
            SourceEvent::Batch(batch) => {
                self.aligned = false;
                self.batch(batch, workers).await?;
            }
            SourceEvent::DeadLetter(letter) => {
                self.aligned = false;
                self.mark_pending(0);
                self.dead_letter(letter);
            }
            SourceEvent::Checkpoint(checkpoint) => {
                self.aligned = true;
                let cursors = self.cursors.get_or_insert_with(|| self.committed.clone());
                cursors.streams.insert(checkpoint.stream, checkpoint.cursor);
                if self.first_pending.is_none() {
                    self.first_pending = Some(Instant::now());
                }
            }
            SourceEvent::Watermark { stream, event_time } => {
                self.stats.watermark(&stream, event_time);
            }
            SourceEvent::Drift(drift) => {
                tracing::info!(stream = %drift.stream, path = %drift.path, kind = ?drift.kind,
                    action = ?drift.action, detail = %drift.detail, "schema drift");
                self.stats.drift(drift);
            }
            SourceEvent::Notice(notice) => {
                tracing::warn!(stream = %notice.stream, subject = %notice.subject,
                    "{}", notice.message);
                self.stats.notice(notice);
            }
            SourceEvent::SchemaChange { stream, schema } => {
                self.stats
                    .stream(&stream)
                    .schema_changes
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(stream = %stream, fields = schema.fields().len(), "schema change");
                // Destinations are re-prepared when the first batch with the new schema
                // arrives, from the schema the transforms actually produce.
            }
        }
        Ok(())
    }

    fn dead_letter(&mut self, letter: DeadLetter) {
        self.stats.dead_lettered(&letter, !self.has_dlq);
        if !self.has_dlq {
            tracing::warn!(stream = %letter.stream, stage = %letter.stage, reason = %letter.reason,
                position = ?letter.position, "dead letter (no dead-letter destination set)");
        }
        self.pending_dead.push(letter);
    }

    async fn batch(&mut self, batch: Batch, workers: &mut Workers) -> Result<(), StageError> {
        self.stats.received(
            &batch.stream,
            batch.num_rows() as u64,
            batch.byte_size() as u64,
        );
        let mut batch = batch;
        for index in 0..self.transforms.len() {
            let transform = &self.transforms[index];
            let output = transform
                .apply(batch)
                .at(|| Stage::Transform(transform.name().to_string()))?;
            for letter in output.dead_letters {
                self.dead_letter(letter);
            }
            match output.batch {
                Some(next) if next.num_rows() > 0 => batch = next,
                _ => {
                    self.mark_pending(0);
                    return Ok(());
                }
            }
        }
        if let Some(resolver) = &self.identity {
            let input = batch.data.schema();
            let stream = batch.stream.clone();
            let resolved = resolver.resolve(batch).await.at(|| Stage::Identity)?;
            for event in &resolved.events {
                self.stats.identity_event(event.kind);
            }
            // The flow checks ran on the schema the resolver declares: hold it to that.
            let declared = match self.resolved_schemas.get(&stream) {
                Some((seen, declared)) if *seen == input => declared.clone(),
                _ => {
                    let declared = resolver.output_schema(&input).at(|| Stage::Identity)?;
                    self.resolved_schemas
                        .insert(stream.clone(), (input, declared.clone()));
                    declared
                }
            };
            if resolved.batch.data.schema().fields() != declared.fields() {
                return Err(Error::Schema {
                    stream: stream.to_string(),
                    message: format!(
                        "the identity resolver returned {:?} but its output_schema declares {:?}",
                        resolved.batch.data.schema().fields(),
                        declared.fields()
                    ),
                })
                .at(|| Stage::Identity);
            }
            batch = resolved.batch;
        }
        let batch = batch.stamp().at(|| Stage::Stamp)?;
        self.mark_pending(batch.num_rows());
        match self.mode {
            RunMode::MicroBatch { max_rows, .. } => {
                let buffered: usize = self.buffers.iter().map(Batch::num_rows).sum();
                self.buffers.push(batch);
                if buffered + self.buffers.last().map_or(0, Batch::num_rows) >= max_rows {
                    self.drain_buffers(workers).await?;
                }
                Ok(())
            }
            _ => self.send(batch, workers).await,
        }
    }

    /// Micro-batch mode: coalesces buffered batches (per stream and schema) and sends them.
    async fn drain_buffers(&mut self, workers: &mut Workers) -> Result<(), StageError> {
        let buffered = std::mem::take(&mut self.buffers);
        let mut groups: Vec<Vec<Batch>> = Vec::new();
        for batch in buffered {
            match groups.last_mut() {
                Some(group)
                    if group[0].stream == batch.stream
                        && group[0].data.schema() == batch.data.schema() =>
                {
                    group.push(batch)
                }
                _ => groups.push(vec![batch]),
            }
        }
        for group in groups {
            let first = group[0].clone();
            let data = if group.len() == 1 {
                first.data.clone()
            } else {
                let parts: Vec<_> = group.iter().map(|b| b.data.clone()).collect();
                arrow::compute::concat_batches(&first.data.schema(), &parts)
                    .map_err(Error::from)
                    .at(|| Stage::MicroBatch)?
            };
            self.send(Batch { data, ..first }, workers).await?;
        }
        Ok(())
    }

    async fn send(&mut self, batch: Batch, workers: &mut Workers) -> Result<(), StageError> {
        self.stats.routed(
            &batch.stream,
            batch.num_rows() as u64,
            batch.byte_size() as u64,
        );
        let schema = batch.data.schema();
        if self.prepared.get(&batch.stream) != Some(&schema) {
            self.check_flows(&batch.stream, &schema)?;
            let spec = self.spec_for(&batch.stream, schema.clone());
            for worker in workers.data.iter_mut() {
                worker
                    .send(WorkerMsg::Prepare(spec.clone()))
                    .await
                    .at(|| Stage::Destination(worker.name.clone()))?;
            }
            self.prepared.insert(batch.stream.clone(), schema);
        }
        let batch = Arc::new(batch);
        for worker in workers.data.iter_mut() {
            worker
                .send(WorkerMsg::Write(batch.clone()))
                .await
                .at(|| Stage::Destination(worker.name.clone()))?;
        }
        Ok(())
    }

    fn plan(&self) -> FlowPlan<'_> {
        FlowPlan {
            pipeline_id: &self.pipeline_id,
            transforms: &self.transforms,
            identity: self.identity.as_deref(),
            flows: &self.flows,
            checks: &self.checks,
        }
    }

    fn check_declared_flows(&self) -> Result<(), StageError> {
        self.plan().check_catalog(&self.catalog)
    }

    fn check_flows(&self, stream: &str, stamped: &SchemaRef) -> Result<(), StageError> {
        self.plan().check_stream(stream, stamped)
    }

    fn spec_for(&self, stream: &str, schema: SchemaRef) -> StreamSpec {
        match self.catalog.stream(stream) {
            Some(declared) => StreamSpec {
                schema,
                ..declared.clone()
            },
            None => StreamSpec::new(stream, schema),
        }
    }

    /// Flush everything, commit the state, publish: see the module docs.
    async fn barrier(
        &mut self,
        workers: &mut Workers,
        store: &dyn crate::checkpoint::StateStore,
        id: &str,
        retry: &crate::retry::RetryPolicy,
    ) -> Result<(), StageError> {
        self.want_barrier = false;
        let nothing_new = self.first_pending.is_none() && self.pending_dead.is_empty();
        if nothing_new && self.cursors.is_none() {
            return Ok(());
        }
        self.drain_buffers(workers).await?;
        let epoch = self.committed.epoch + 1;
        for worker in workers.data.iter_mut() {
            let refused = worker
                .flush(epoch)
                .await
                .at(|| Stage::Destination(worker.name.clone()))?;
            for letter in refused {
                self.dead_letter(letter);
            }
        }
        if let Some(resolver) = &self.identity {
            resolver.flush().await.at(|| Stage::Identity)?;
        }
        let dead = std::mem::take(&mut self.pending_dead);
        if let Some(dlq) = workers.dlq.as_mut() {
            let name = dlq.name.clone();
            let stage = || Stage::DeadLetterDestination(name.clone());
            if !dead.is_empty() {
                let batch = DeadLetter::to_batch(&dead, &self.source_name)
                    .and_then(Batch::stamp)
                    .at(|| Stage::DeadLetters)?;
                if self.prepared.get(&batch.stream) != Some(&batch.data.schema()) {
                    let spec = StreamSpec::new(batch.stream.to_string(), batch.data.schema());
                    dlq.send(WorkerMsg::Prepare(spec)).await.at(stage)?;
                    self.prepared
                        .insert(batch.stream.clone(), batch.data.schema());
                }
                dlq.send(WorkerMsg::Write(Arc::new(batch)))
                    .await
                    .at(stage)?;
            }
            let refused = dlq.flush(epoch).await.at(stage)?;
            if !refused.is_empty() {
                return Err(Error::DeadLettersRefused {
                    destination: name.clone(),
                    count: refused.len(),
                })
                .at(stage);
            }
        }
        let mut state = self
            .cursors
            .take()
            .unwrap_or_else(|| self.committed.clone());
        state.epoch = epoch;
        self.lease.check().at(|| Stage::StateStore)?;
        retry
            .retry("commit state", async || store.commit(id, &state).await)
            .await
            .at(|| Stage::StateStore)?;
        self.committed = state;
        self.stats.committed(epoch);
        tracing::debug!(epoch, rows = self.pending_rows, "committed");
        self.pending_rows = 0;
        self.first_pending = None;
        for worker in workers.all_mut() {
            let name = worker.name.clone();
            worker
                .commit(epoch)
                .await
                .at(|| Stage::DestinationCommit(name))?;
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the flow checks need to know of a pipeline: shared by the router (at start and on
/// schema changes) and [`Pipeline::validate`](super::Pipeline::validate).
pub(super) struct FlowPlan<'a> {
    pub(super) pipeline_id: &'a str,
    pub(super) transforms: &'a [Box<dyn crate::transform::Transform>],
    pub(super) identity: Option<&'a dyn crate::identity::IdentityResolver>,
    pub(super) flows: &'a [(String, super::Transforms)],
    pub(super) checks: &'a [Arc<dyn crate::flow::FlowCheck>],
}

impl FlowPlan<'_> {
    /// Runs the flow checks for every stream the source declared, on the schema each
    /// destination will receive.
    pub(super) fn check_catalog(&self, catalog: &Catalog) -> Result<(), StageError> {
        if self.checks.is_empty() {
            return Ok(());
        }
        for stream in &catalog.streams {
            let mut schema = stream.schema.clone();
            for transform in self.transforms {
                schema = transform
                    .output_schema(&schema)
                    .at(|| Stage::Transform(transform.name().to_string()))?;
            }
            if let Some(resolver) = self.identity {
                schema = resolver.output_schema(&schema).at(|| Stage::Identity)?;
            }
            let stamped = crate::record::stamped_schema(&schema).at(|| Stage::Stamp)?;
            self.check_stream(&stream.name, &stamped)?;
        }
        Ok(())
    }

    /// Runs the flow checks for one stream whose batches have the stamped schema `stamped`.
    pub(super) fn check_stream(&self, stream: &str, stamped: &SchemaRef) -> Result<(), StageError> {
        for (destination, transforms) in self.flows {
            let schema = super::worker::output_schema(transforms, stamped.clone())
                .at(|| Stage::DestinationTransforms(destination.clone()))?;
            let flow = crate::flow::Flow {
                pipeline_id: self.pipeline_id,
                stream,
                destination,
                schema: &schema,
            };
            for check in self.checks {
                check.check(&flow).at(|| Stage::FlowCheck)?;
            }
        }
        Ok(())
    }
}
