//! One task per destination: writes in order, flushes and commits at barriers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
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
            let destination = destination.as_mut();
            let call = Retrying {
                retry: &retry,
                counters: &counters,
                name: &task_name,
            };
            call.run("open", destination, &ctx, |d, ctx| d.open(ctx))
                .await?;
            let mut rejected: Vec<DeadLetter> = Vec::new();
            let stage = format!("destination {task_name}");
            while let Some(msg) = rx.recv().await {
                match msg {
                    WorkerMsg::Prepare(mut spec) => {
                        spec.schema = output_schema(&transforms, spec.schema)?;
                        // DDL (create table, add column) fails transiently like any write.
                        call.run("prepare", destination, &spec, |d, spec| d.prepare(spec))
                            .await?;
                    }
                    WorkerMsg::Write(batch) => {
                        let batch = match apply(&transforms, &batch, &mut rejected)? {
                            Some(own) => Arc::new(own),
                            None if transforms.is_empty() => batch,
                            None => continue,
                        };
                        let outcome = call
                            .run("write", destination, &*batch, |d, batch| d.write(batch))
                            .await?;
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
                        let result = call
                            .run("flush", destination, &epoch, |d, epoch| d.flush(*epoch))
                            .await;
                        counters.flushes.fetch_add(1, Ordering::Relaxed);
                        if result.is_ok() {
                            let refused = destination.take_refused();
                            let count = refused.len() as u64;
                            // They were counted as written when the batch was.
                            let _ = counters.rows_written.fetch_update(
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                                |written| Some(written.saturating_sub(count)),
                            );
                            counters.rows_rejected.fetch_add(count, Ordering::Relaxed);
                            rejected.extend(refused.into_iter().map(|r| {
                                let letter =
                                    DeadLetter::new(r.stream, stage.clone(), r.reason, r.row);
                                match r.position {
                                    Some(position) => letter.at(position),
                                    None => letter,
                                }
                            }));
                        }
                        let failed = result.is_err();
                        let _ = reply.send(result.map(|()| std::mem::take(&mut rejected)));
                        if failed {
                            return Ok(());
                        }
                    }
                    WorkerMsg::Commit(epoch, reply) => {
                        let result = call
                            .run("commit", destination, &epoch, |d, epoch| d.commit(*epoch))
                            .await;
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
        let task = self.task.take();
        let Worker { name, tx, .. } = self;
        drop(tx);
        match task {
            Some(task) => task.await.map_err(|e| crashed(&name, Some(e)))?,
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
                Ok(Ok(())) => crashed(&self.name, None),
                Err(e) => crashed(&self.name, Some(e)),
            },
            None => crashed(&self.name, None),
        }
    }
}

/// The error of a worker task that ended without one of its own (a panic, or a stop).
fn crashed(destination: &str, join: Option<tokio::task::JoinError>) -> Error {
    Error::Crashed {
        component: format!("destination {destination}"),
        panic: join.map(|e| e.to_string()),
    }
}

/// Runs one destination operation under the worker's retry policy and counts its retries:
/// the one retry loop for open, prepare, write, flush and commit.
struct Retrying<'a> {
    retry: &'a RetryPolicy,
    counters: &'a DestinationCounters,
    name: &'a str,
}

impl Retrying<'_> {
    /// Calls `op(destination, arg)` until it succeeds, fails for good, or runs out of
    /// attempts. `arg` is passed in (not captured) so each attempt can borrow it anew.
    async fn run<A: ?Sized, T>(
        &self,
        op_name: &str,
        destination: &mut dyn Destination,
        arg: &A,
        mut op: impl for<'d> FnMut(&'d mut dyn Destination, &'d A) -> BoxFuture<'d, Result<T>>,
    ) -> Result<T> {
        let what = format!("{op_name} {}", self.name);
        let mut attempts = self.retry.start(&what);
        let result = loop {
            match op(destination, arg).await {
                Ok(value) => break Ok(value),
                Err(e) => {
                    if let Err(e) = attempts.backoff(e).await {
                        break Err(e);
                    }
                }
            }
        };
        self.counters
            .retries
            .fetch_add(attempts.retries(), Ordering::Relaxed);
        result
    }
}
