//! The [`Source`] trait: where records come from.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;

use crate::catalog::{Catalog, SyncMode};
use crate::error::Result;
use crate::event::{PipelineState, SourceEvent};

/// The stream of events a source produces; `'static` so the runtime can drive it in its
/// own task.
pub type SourceEventStream = Pin<Box<dyn Stream<Item = Result<SourceEvent>> + Send + 'static>>;

/// What a connector is, for listings and generated docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorSpec {
    /// Connector type name, e.g. `jsonl`, `postgres`.
    pub name: String,
    /// One line on what it reads or writes.
    pub description: String,
    /// Sync modes it supports.
    pub sync_modes: Vec<SyncMode>,
}

/// What to read: the committed state to resume from, and which streams.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    /// Committed per-stream cursors; empty on a first run.
    pub state: PipelineState,
    /// Streams to read; empty means all of them.
    pub streams: Vec<String>,
    /// Mode to read in; `None` lets the source choose its best one.
    pub sync_mode: Option<SyncMode>,
}

impl ReadRequest {
    /// Whether `stream` was asked for.
    pub fn wants(&self, stream: &str) -> bool {
        self.streams.is_empty() || self.streams.iter().any(|s| s == stream)
    }
}

/// Reads records from somewhere and emits them as [`SourceEvent`]s.
///
/// A source must be *replayable*: given the cursors it emitted in a
/// [`Checkpoint`](crate::event::Checkpoint), [`read`](Source::read) continues right after the
/// records that checkpoint covered. Together with idempotent destinations this gives
/// exactly-once results after a crash.
///
/// Only [`name`](Source::name), [`discover`](Source::discover) and [`read`](Source::read) are
/// required.
///
/// # Example
///
/// A source of one in-memory stream that checkpoints after its single batch:
///
/// ```
/// use std::sync::Arc;
/// use arrow::array::{Int64Array, RecordBatch};
/// use arrow::datatypes::{DataType, Field, Schema};
/// use cdp_core::{Batch, Catalog, Checkpoint, ReadRequest, Result, Source, SourceEvent,
///     SourceEventStream, StreamSpec};
///
/// #[derive(Debug)]
/// struct Numbers;
///
/// #[async_trait::async_trait]
/// impl Source for Numbers {
///     fn name(&self) -> &str { "numbers" }
///
///     async fn discover(&self) -> Result<Catalog> {
///         let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
///         Ok(Catalog::new(vec![StreamSpec::new("numbers", schema)]))
///     }
///
///     fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
///         // Resume: skip what the committed cursor covers.
///         let done = request.state.cursor("numbers").and_then(|c| c.as_i64()).unwrap_or(0);
///         let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
///         let rows = Int64Array::from_iter_values(done..10);
///         let data = RecordBatch::try_new(schema, vec![Arc::new(rows)])?;
///         let events = vec![
///             Ok(SourceEvent::Batch(Batch::new("numbers", data, "numbers"))),
///             Ok(SourceEvent::Checkpoint(Checkpoint::new("numbers", 10.into()))),
///         ];
///         Ok(Box::pin(futures::stream::iter(events)))
///     }
/// }
/// ```
#[async_trait]
pub trait Source: std::fmt::Debug + Send + Sync {
    /// Instance name, used as `_cdp_source` and in metrics and errors.
    fn name(&self) -> &str;

    /// What kind of connector this is. Defaults to the instance name and full refresh.
    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: self.name().to_string(),
            description: String::new(),
            sync_modes: vec![SyncMode::FullRefresh],
        }
    }

    /// Checks that the source is reachable and the configuration is usable.
    /// Defaults to running [`discover`](Source::discover).
    async fn check(&self) -> Result<()> {
        self.discover().await.map(|_| ())
    }

    /// Lists the streams this source can read.
    async fn discover(&self) -> Result<Catalog>;

    /// Starts reading from the committed state. The stream ends when a bounded source has
    /// emitted everything; an unbounded one runs until the runtime drops it.
    fn read(&self, request: ReadRequest) -> Result<SourceEventStream>;
}

/// Lets a boxed source (what connector configs build) go wherever a source is expected.
#[async_trait]
impl<S: Source + ?Sized> Source for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn spec(&self) -> ConnectorSpec {
        (**self).spec()
    }

    async fn check(&self) -> Result<()> {
        (**self).check().await
    }

    async fn discover(&self) -> Result<Catalog> {
        (**self).discover().await
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        (**self).read(request)
    }
}
