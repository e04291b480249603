//! Record model, connector traits and pipeline runtime for `cdp`, the embeddable
//! customer-data pipeline library.
//!
//! Every stage exchanges Arrow [`RecordBatch`](arrow::array::RecordBatch)es wrapped in a
//! [`Batch`] envelope. A [`Source`] emits [`SourceEvent`]s (batches, schema changes,
//! checkpoints, watermarks, dead letters); [`Transform`]s reshape batches; an optional
//! [`IdentityResolver`] stamps profile ids; [`Destination`]s write. The [`Pipeline`] runtime
//! joins them with bounded channels and commits source checkpoints to a [`StateStore`] only
//! after every destination has durably flushed everything before them, so a crash and a
//! resume lose nothing and duplicate nothing.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use cdp_core::{Batch, MemoryStateStore, Pipeline, RunMode};
//! use cdp_core::memory::{MemoryDestination, MemorySource};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cdp_core::Result<()> {
//! let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
//! let data = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?;
//! let source = MemorySource::new("numbers", vec![data]);
//! let destination = MemoryDestination::new("sink");
//! let rows = destination.handle();
//!
//! let report = Pipeline::builder("example")
//!     .source(source)
//!     .destination(destination)
//!     .state_store(Arc::new(MemoryStateStore::new()))
//!     .mode(RunMode::Batch)
//!     .build()?
//!     .run()
//!     .await?;
//!
//! assert_eq!(report.rows_out(), 3);
//! assert_eq!(rows.row_count(), 3);
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod checkpoint;
pub mod destination;
pub mod error;
pub mod event;
pub mod flow;
pub mod hash;
pub mod identifier;
pub mod identity;
pub mod memory;
pub mod merged;
pub mod path;
pub mod record;
pub mod retry;
pub mod runtime;
pub mod source;
pub mod transform;
pub mod transforms;

pub use catalog::{Catalog, StreamSpec, SyncMode};
#[cfg(feature = "sqlite")]
pub use checkpoint::SqliteStateStore;
pub use checkpoint::{Lease, LeaseGuard, MemoryStateStore, StateStore};
pub use destination::{Destination, OpenContext, RefusedRow, RejectedRow, WriteOutcome};
pub use error::{BoxError, Error, Result, Stage};
pub use event::{
    Checkpoint, DEAD_LETTER_STREAM, DeadLetter, DriftAction, DriftKind, PipelineState, SchemaDrift,
    SourceEvent, SourceNotice,
};
pub use flow::{Flow, FlowCheck};
pub use identifier::{Identifier, Normaliser, Vocabulary};
pub use identity::{IdentityEvent, IdentityEventKind, IdentityResolver, ResolvedBatch};
pub use merged::MergedSource;
pub use record::{
    Batch, BatchMeta, LINEAGE_ID_COLUMN, OP_COLUMN, Op, PROFILE_ID_COLUMN, RECORD_HASH_COLUMN,
    SOURCE_COLUMN, SYNCED_AT_COLUMN,
};
pub use retry::{RateLimit, RateLimiter, RetryPolicy};
pub use runtime::{
    DestinationStats, Pipeline, PipelineBuilder, PipelineHandle, RunMode, RunReport, RunStatus,
    StreamStats,
};
pub use source::{ConnectorSpec, ReadRequest, Source, SourceEventStream};
pub use transform::{Transform, TransformOutput};

/// Re-export, so connector authors use the same Arrow as the runtime.
pub use arrow;
/// Re-export, so connector authors implement the traits with the same macro.
pub use async_trait::async_trait;
/// Re-export, so connector authors build event streams with the same `futures`.
pub use futures;
