//! One task per destination: writes in order, flushes and commits at barriers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::stats::DestinationCounters;
use crate::catalog::StreamSpec;
use crate::destination::{Destination, OpenContext};
use crate::error::{Error, Result};
use crate::event::{DeadLetter, row_to_json};
use crate::record::Batch;
use crate::retry::RetryPolicy;

/// What the router asks of a destination worker.
#[derive(Debug)]
pub(crate) enum WorkerMsg {
    Prepare(StreamSpec),
    Write(Arc<Batch>),
    /// Flush for `epoch`; the reply carries the rows the destination refused since the last
    /// flush, as dead letters.
    Flush(u64, oneshot::Sender<Result<Vec<DeadLetter>>>),
    Commit(u64, oneshot::Sender<Result<()>>),
}

/// The schema a destination receives after its own transforms (user columns in, stamped
/// columns out).
pub(crate) fn output_schema(
    transforms: &[Box<dyn crate::transform::Transform>],
    schema: arrow::datatypes::SchemaRef,
) -> Result<arrow::datatypes::SchemaRef> {
    if transforms.is_empty() {
        return Ok(schema);
    }
    let mut schema = Arc::new(schema.project(&transform_input(&schema))?);
    for transform in transforms {
        schema = transform.output_schema(&schema)?;
    }
    crate::record::stamped_schema(&schema)
}

/// The columns a destination's own transforms see: user columns, plus the row operation
/// and profile id, which must survive the re-stamp (the other system columns are recomputed).
fn transform_input(schema: &arrow::datatypes::Schema) -> Vec<usize> {
    (0..schema.fields().len())
        .filter(|&i| {
            let name = schema.field(i).name();
            !crate::record::is_system_column(name)
                || name == crate::record::OP_COLUMN
                || name == crate::record::PROFILE_ID_COLUMN
        })
        .collect()
}

/// Runs a destination's own transforms; `None` means "send the shared batch as it is"
/// when there are none, or "nothing left" when they filtered every row.
fn apply(
    transforms: &[Box<dyn crate::transform::Transform>],
    batch: &Batch,
    rejected: &mut Vec<DeadLetter>,
) -> Result<Option<Batch>> {
    if transforms.is_empty() {
        return Ok(None);
    }
    let mut own = Batch {
        data: batch.data.project(&transform_input(&batch.data.schema()))?,
        ..batch.clone()
    };
    for transform in transforms {
        let output = transform.apply(own)?;
        rejected.extend(output.dead_letters);
        match output.batch {
            Some(next) if next.num_rows() > 0 => own = next,
            _ => return Ok(None),
        }
    }
    own.stamp().map(Some)
}

/// The router's end of a worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) name: String,
    tx: mpsc::Sender<WorkerMsg>,
    task: Option<JoinHandle<Result<()>>>,
}

impl Worker {
    pub(crate) fn spawn(
        mut destination: Box<dyn Destination>,
        transforms: super::Transforms,
        ctx: OpenContext,
        capacity: usize,
        retry: RetryPolicy,
        counters: Arc<DestinationCounters>,
    ) -> Worker {
        let name = destination.name().to_string();
        let (tx, mut rx) = mpsc::channel::<WorkerMsg>(capacity);
        let task_name = name.clone();
        let task = tokio::spawn(async move {
            let name = task_name;
            let what = |op: &str| format!("{op} {name}");
            let open = what("open");
            let mut attempts = retry.start(&open);
            while let Err(e) = destination.open(&ctx).await {
                attempts.backoff(e).await?;
            }
            let mut rejected: Vec<DeadLetter> = Vec::new();
            let prepare = what("prepare");
            let write = what("write");
            let flush = what("flush");
            let commit = what("commit");
            let stage = format!("destination {name}");
            while let Some(msg) = rx.recv().await {
                match msg {
                    WorkerMsg::Prepare(mut spec) => {
                        spec.schema = output_schema(&transforms, spec.schema)?;
                        // DDL (create table, add column) fails transiently like any write.
                        let mut attempts = retry.start(&prepare);
                        while let Err(e) = destination.prepare(&spec).await {
                            attempts.backoff(e).await?;
                        }
                        counters
                            .retries
                            .fetch_add(attempts.retries(), Ordering::Relaxed);
                    }
                    WorkerMsg::Write(batch) => {
                        let batch = match apply(&transforms, &batch, &mut rejected)? {
                            Some(own) => Arc::new(own),
                            None if transforms.is_empty() => batch,
                            None => continue,
                        };
                        let mut attempts = retry.start(&write);
                        let outcome = loop {
                            match destination.write(&batch).await {
                                Ok(outcome) => break outcome,
                                Err(e) => attempts.backoff(e).await?,
                            }
                        };
                        counters
                            .retries
                            .fetch_add(attempts.retries(), Ordering::Relaxed);
                        let refused = outcome.rejected.len() as u64;
                        counters.batches.fetch_add(1, Ordering::Relaxed);
                        counters
                            .rows_written
                            .fetch_add(batch.num_rows() as u64 - refused, Ordering::Relaxed);
                        counters.rows_rejected.fetch_add(refused, Ordering::Relaxed);
                        rejected.extend(outcome.rejected.into_iter().map(|r| {
                            DeadLetter::new(
                                batch.stream.to_string(),
                                stage.clone(),
                                r.reason,
                                row_to_json(&batch.data, r.row),
                            )
                            .at(format!("batch {} row {}", batch.meta.lineage_id, r.row))
                        }));
                    }
                    WorkerMsg::Flush(epoch, reply) => {
                        let mut attempts = retry.start(&flush);
                        let result = loop {
                            match destination.flush(epoch).await {
                                Ok(()) => break Ok(()),
                                Err(e) => {
                                    if let Err(e) = attempts.backoff(e).await {
                                        break Err(e);
                                    }
                                }
                            }
                        };
                        counters
                            .retries
                            .fetch_add(attempts.retries(), Ordering::Relaxed);
                        counters.flushes.fetch_add(1, Ordering::Relaxed);
                        let failed = result.is_err();
                        let _ = reply.send(result.map(|()| std::mem::take(&mut rejected)));
                        if failed {
                            return Ok(());
                        }
                    }
                    WorkerMsg::Commit(epoch, reply) => {
                        let mut attempts = retry.start(&commit);
                        let result = loop {
                            match destination.commit(epoch).await {
                                Ok(()) => break Ok(()),
                                Err(e) => {
                                    if let Err(e) = attempts.backoff(e).await {
                                        break Err(e);
                                    }
                                }
                            }
                        };
                        let failed = result.is_err();
                        let _ = reply.send(result);
                        if failed {
                            return Ok(());
                        }
                    }
                }
            }
            destination.close().await
        });
        Worker {
            name,
            tx,
            task: Some(task),
        }
    }

    /// Sends `msg`; if the worker has died, returns the error it died of.
    pub(crate) async fn send(&mut self, msg: WorkerMsg) -> Result<()> {
        if self.tx.send(msg).await.is_ok() {
            return Ok(());
        }
        Err(self.failure().await)
    }

    pub(crate) async fn flush(&mut self, epoch: u64) -> Result<Vec<DeadLetter>> {
        let (reply, rx) = oneshot::channel();
        self.send(WorkerMsg::Flush(epoch, reply)).await?;
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.failure().await),
        }
    }

    pub(crate) async fn commit(&mut self, epoch: u64) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(WorkerMsg::Commit(epoch, reply)).await?;
        match rx.await {
            Ok(result) => result,
            Err(_) => Err(self.failure().await),
        }
    }

    /// Closes the worker (the destination's `close` runs) and waits for it.
    pub(crate) async fn close(mut self) -> Result<()> {
        drop(self.tx);
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| Error::State(format!("destination {} panicked: {e}", self.name)))?,
            None => Ok(()),
        }
    }

    /// Stops the worker without closing the destination gracefully.
    pub(crate) fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn failure(&mut self) -> Error {
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => e,
                Ok(Ok(())) => Error::State(format!("destination {} stopped", self.name)),
                Err(e) => Error::State(format!("destination {} panicked: {e}", self.name)),
            },
            None => Error::State(format!("destination {} stopped", self.name)),
        }
    }
}
