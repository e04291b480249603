//! Scripted sources and destinations for runtime tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::{
    Batch, Catalog, Checkpoint, Destination, Error, ReadRequest, Result, Source, SourceEvent,
    SourceEventStream, StreamSpec, WriteOutcome, async_trait,
};
use futures::StreamExt;

pub(crate) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
    ]))
}

/// Rows `start..start+n` with emails `user{i}@example.io`.
pub(crate) fn rows(start: i64, n: i64) -> RecordBatch {
    let ids = Int64Array::from_iter_values(start..start + n);
    let emails = StringArray::from_iter_values((start..start + n).map(|i| format!("user{i}@x.io")));
    RecordBatch::try_new(schema(), vec![Arc::new(ids), Arc::new(emails)]).unwrap()
}

/// A source of `batches` batches of `rows_per_batch` rows, generated lazily, checkpointing
/// after each one; counts how many batches it has produced. With `then_pend`, it never ends.
#[derive(Debug, Clone)]
pub(crate) struct CountingSource {
    pub(crate) batches: usize,
    pub(crate) rows_per_batch: i64,
    pub(crate) produced: Arc<AtomicUsize>,
    pub(crate) then_pend: bool,
}

impl CountingSource {
    pub(crate) fn new(batches: usize, rows_per_batch: i64) -> Self {
        CountingSource {
            batches,
            rows_per_batch,
            produced: Arc::new(AtomicUsize::new(0)),
            then_pend: false,
        }
    }
}

#[async_trait]
impl Source for CountingSource {
    fn name(&self) -> &str {
        "counting"
    }

    async fn discover(&self) -> Result<Catalog> {
        Ok(Catalog::new(vec![
            StreamSpec::new("users", schema()).with_primary_key(["id"]),
        ]))
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        let start = request
            .state
            .cursor("users")
            .and_then(|c| c.as_u64())
            .unwrap_or(0) as usize;
        let per = self.rows_per_batch;
        let produced = self.produced.clone();
        let events = futures::stream::iter(start..self.batches).flat_map(move |i| {
            produced.fetch_add(1, Ordering::SeqCst);
            let batch = Batch::new("users", rows(i as i64 * per, per), "counting");
            futures::stream::iter([
                Ok(SourceEvent::Batch(batch)),
                Ok(SourceEvent::Checkpoint(Checkpoint::new(
                    "users",
                    (i as u64 + 1).into(),
                ))),
            ])
        });
        if self.then_pend {
            Ok(Box::pin(events.chain(futures::stream::pending())))
        } else {
            Ok(Box::pin(events))
        }
    }
}

/// What a scripted destination should do on its n-th call.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Fail the n-th write (0-based) with this error.
    Write(usize, fn() -> Error),
    /// Fail the flush of this epoch with this error.
    Flush(u64, fn() -> Error),
}

/// A destination that records every call and can stall or fail on cue. Committed rows are
/// readable through `committed`.
#[derive(Debug, Clone)]
pub(crate) struct ProbeDestination {
    pub(crate) name: String,
    pub(crate) writes: Arc<AtomicUsize>,
    pub(crate) pending: Arc<Mutex<Vec<i64>>>,
    pub(crate) staged: Arc<Mutex<Vec<(u64, Vec<i64>)>>>,
    pub(crate) committed: Arc<Mutex<Vec<i64>>>,
    pub(crate) faults: Arc<Mutex<Vec<Fault>>>,
    /// While set, writes wait (a stalled destination).
    pub(crate) stall: Arc<tokio::sync::Semaphore>,
    pub(crate) write_delay: Option<Duration>,
}

impl ProbeDestination {
    pub(crate) fn new(name: &str) -> Self {
        ProbeDestination {
            name: name.into(),
            writes: Arc::default(),
            pending: Arc::default(),
            staged: Arc::default(),
            committed: Arc::default(),
            faults: Arc::default(),
            stall: Arc::new(tokio::sync::Semaphore::new(
                tokio::sync::Semaphore::MAX_PERMITS,
            )),
            write_delay: None,
        }
    }

    pub(crate) fn stalled(name: &str) -> Self {
        ProbeDestination {
            stall: Arc::new(tokio::sync::Semaphore::new(0)),
            ..Self::new(name)
        }
    }

    pub(crate) fn with_fault(self, fault: Fault) -> Self {
        self.faults.lock().unwrap().push(fault);
        self
    }

    pub(crate) fn committed_ids(&self) -> Vec<i64> {
        self.committed.lock().unwrap().clone()
    }
}

#[async_trait]
impl Destination for ProbeDestination {
    fn name(&self) -> &str {
        &self.name
    }

    async fn open(&mut self, ctx: &cdp_core::OpenContext) -> Result<()> {
        self.pending.lock().unwrap().clear();
        let staged = std::mem::take(&mut *self.staged.lock().unwrap());
        for (epoch, ids) in staged {
            if epoch <= ctx.committed_epoch {
                self.committed.lock().unwrap().extend(ids);
            }
        }
        Ok(())
    }

    async fn prepare(&mut self, _stream: &StreamSpec) -> Result<()> {
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        let _permit = self.stall.acquire().await.unwrap();
        if let Some(delay) = self.write_delay {
            tokio::time::sleep(delay).await;
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        let fault = {
            let mut faults = self.faults.lock().unwrap();
            let at = faults
                .iter()
                .position(|f| matches!(f, Fault::Write(k, _) if *k == n));
            at.map(|i| faults.remove(i))
        };
        if let Some(Fault::Write(_, make)) = fault {
            return Err(make());
        }
        let ids = batch.data.column_by_name("id").unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        self.pending
            .lock()
            .unwrap()
            .extend(ids.values().iter().copied());
        Ok(WriteOutcome::default())
    }

    async fn flush(&mut self, epoch: u64) -> Result<()> {
        let fault = {
            let mut faults = self.faults.lock().unwrap();
            let at = faults
                .iter()
                .position(|f| matches!(f, Fault::Flush(e, _) if *e == epoch));
            at.map(|i| faults.remove(i))
        };
        if let Some(Fault::Flush(_, make)) = fault {
            return Err(make());
        }
        let ids = std::mem::take(&mut *self.pending.lock().unwrap());
        self.staged.lock().unwrap().push((epoch, ids));
        Ok(())
    }

    async fn commit(&mut self, epoch: u64) -> Result<()> {
        let mut staged = self.staged.lock().unwrap();
        let mut committed = self.committed.lock().unwrap();
        staged.retain(|(e, ids)| {
            if *e <= epoch {
                committed.extend(ids);
                false
            } else {
                true
            }
        });
        Ok(())
    }
}

pub(crate) fn fast_retry() -> cdp_core::RetryPolicy {
    cdp_core::RetryPolicy {
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(10),
        jitter: false,
        ..Default::default()
    }
}
