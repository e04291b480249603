//! In-process source and destination: feed a pipeline from batches you already hold, and
//! collect what it delivers. Useful in services that push data in, and in tests.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use async_trait::async_trait;

use crate::catalog::{Catalog, StreamSpec, SyncMode};
use crate::destination::{Destination, OpenContext, WriteOutcome};
use crate::error::{Error, Result};
use crate::event::{Checkpoint, SourceEvent};
use crate::record::Batch;
use crate::source::{ReadRequest, Source, SourceEventStream};

/// A source of one stream made of record batches held in memory.
///
/// It checkpoints after every batch with the number of batches emitted, so a resumed run
/// continues with the next batch. Batches may change schema along the way (a field added or
/// renamed upstream): each change is announced with a
/// [`SourceEvent::SchemaChange`] before the first batch that carries it.
#[derive(Debug, Clone)]
pub struct MemorySource {
    stream: String,
    batches: Arc<Vec<RecordBatch>>,
}

impl MemorySource {
    /// A source emitting `batches` as stream `stream`; `discover` reports the first batch's
    /// schema.
    pub fn new(stream: impl Into<String>, batches: Vec<RecordBatch>) -> Self {
        MemorySource {
            stream: stream.into(),
            batches: Arc::new(batches),
        }
    }
}

#[async_trait]
impl Source for MemorySource {
    fn name(&self) -> &str {
        &self.stream
    }

    async fn discover(&self) -> Result<Catalog> {
        let schema = self
            .batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(arrow::datatypes::Schema::empty()));
        let spec = StreamSpec::new(self.stream.clone(), schema)
            .with_sync_modes([SyncMode::FullRefresh, SyncMode::IncrementalAppend]);
        Ok(Catalog::new(vec![spec]))
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        let start = match request.state.cursor(&self.stream) {
            None => 0,
            Some(cursor) => cursor.as_u64().ok_or_else(|| Error::Cursor {
                stream: self.stream.clone(),
                message: format!("a memory source cursor is a batch number, got {cursor}"),
            })? as usize,
        };
        let stream = self.stream.clone();
        let batches = self.batches.clone();
        let events = (start..batches.len()).flat_map(move |i| {
            let data = batches[i].clone();
            let changed = i > 0 && batches[i - 1].schema() != data.schema();
            let change = changed.then(|| {
                Ok(SourceEvent::SchemaChange {
                    stream: stream.as_str().into(),
                    schema: data.schema(),
                })
            });
            let batch = Batch::new(stream.as_str(), data, stream.as_str());
            let cursor = serde_json::Value::from(i as u64 + 1);
            change.into_iter().chain([
                Ok(SourceEvent::Batch(batch)),
                Ok(SourceEvent::Checkpoint(Checkpoint::new(
                    stream.clone(),
                    cursor,
                ))),
            ])
        });
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

/// What a [`MemoryDestination`] has received and committed; cloneable, shared.
#[derive(Debug, Clone, Default)]
pub struct MemoryHandle {
    inner: Arc<Mutex<MemoryState>>,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// Written since the last flush.
    pending: Vec<Batch>,
    /// Flushed, per epoch, waiting for commit.
    staged: Vec<(u64, Vec<Batch>)>,
    /// Committed (published).
    committed: Vec<Batch>,
    prepared: Vec<StreamSpec>,
}

impl MemoryHandle {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>> {
        self.inner
            .lock()
            .map_err(|_| Error::State("memory destination lock poisoned".into()))
    }

    /// The committed batches, in order.
    pub fn batches(&self) -> Vec<Batch> {
        self.lock().map(|s| s.committed.clone()).unwrap_or_default()
    }

    /// Number of committed rows.
    pub fn row_count(&self) -> usize {
        self.lock()
            .map(|s| s.committed.iter().map(Batch::num_rows).sum())
            .unwrap_or_default()
    }

    /// The stream specs the destination was prepared with, in order.
    pub fn prepared(&self) -> Vec<StreamSpec> {
        self.lock().map(|s| s.prepared.clone()).unwrap_or_default()
    }
}

/// A destination that keeps committed batches in memory, with the same staging protocol
/// as a file landing zone: nothing is visible before the pipeline commits its epoch.
#[derive(Debug, Clone)]
pub struct MemoryDestination {
    name: String,
    handle: MemoryHandle,
}

impl MemoryDestination {
    /// An empty destination.
    pub fn new(name: impl Into<String>) -> Self {
        MemoryDestination {
            name: name.into(),
            handle: MemoryHandle::default(),
        }
    }

    /// A handle to read what was committed, usable after the pipeline consumed `self`.
    pub fn handle(&self) -> MemoryHandle {
        self.handle.clone()
    }
}

#[async_trait]
impl Destination for MemoryDestination {
    fn name(&self) -> &str {
        &self.name
    }

    async fn open(&mut self, ctx: &OpenContext) -> Result<()> {
        let mut state = self.handle.lock()?;
        state.pending.clear();
        let staged = std::mem::take(&mut state.staged);
        for (epoch, batches) in staged {
            if epoch <= ctx.committed_epoch {
                state.committed.extend(batches);
            }
        }
        Ok(())
    }

    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        self.handle.lock()?.prepared.push(stream.clone());
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        self.handle.lock()?.pending.push(batch.clone());
        Ok(WriteOutcome::default())
    }

    async fn flush(&mut self, epoch: u64) -> Result<()> {
        let mut state = self.handle.lock()?;
        let pending = std::mem::take(&mut state.pending);
        state.staged.push((epoch, pending));
        Ok(())
    }

    async fn commit(&mut self, epoch: u64) -> Result<()> {
        let mut state = self.handle.lock()?;
        let staged = std::mem::take(&mut state.staged);
        for (staged_epoch, batches) in staged {
            if staged_epoch <= epoch {
                state.committed.extend(batches);
            } else {
                state.staged.push((staged_epoch, batches));
            }
        }
        Ok(())
    }
}
