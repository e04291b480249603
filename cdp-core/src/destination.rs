//! The [`Destination`] trait: where records go.

use async_trait::async_trait;

use crate::catalog::StreamSpec;
use crate::error::Result;
use crate::record::Batch;

/// A row a destination refused; the runtime dead-letters it and keeps the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// Index of the row in the batch passed to [`Destination::write`].
    pub row: usize,
    /// Why it was refused.
    pub reason: String,
}

/// A row a destination refused while flushing (a constraint, a value its column cannot
/// hold): the batch it came in is gone by then, so the destination hands over the row itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRow {
    /// The stream the row belongs to.
    pub stream: String,
    /// The row, rendered as one JSON object (see [`row_to_json`](crate::event::row_to_json)).
    pub row: String,
    /// Why it was refused, in the destination's words (a database's message and error code).
    pub reason: String,
    /// Where it was refused (the table, the flush), when the destination can say.
    pub position: Option<String>,
}

/// What a [`Destination::write`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows refused individually; every other row was accepted.
    pub rejected: Vec<RejectedRow>,
}

/// What the runtime tells a destination when it opens.
#[derive(Debug, Clone)]
pub struct OpenContext {
    /// The pipeline's id.
    pub pipeline_id: String,
    /// The epoch of the last committed barrier (`0` if none). Work staged for a later epoch
    /// was never committed and will be replayed: discard it. The epochs of this run's
    /// [`Destination::flush`] calls are consecutive, starting at `committed_epoch + 1`.
    pub committed_epoch: u64,
}

/// Writes batches somewhere durable.
///
/// The runtime calls, in order: [`open`](Destination::open) once; then
/// [`prepare`](Destination::prepare) for each stream before its first batch (and again with a
/// wider schema when the stream evolves); [`write`](Destination::write) any number of times;
/// at each barrier [`flush`](Destination::flush) and — only after the pipeline state is
/// committed — [`commit`](Destination::commit); finally [`close`](Destination::close).
///
/// Writes must be *idempotent* across a crash: after a resume the runtime replays every batch
/// after the last committed epoch. A destination either upserts by key /
/// `_cdp_record_hash`, or stages work per epoch in `flush` and publishes it in `commit`
/// (discarding, in `open`, anything staged after the committed epoch).
///
/// # Example
///
/// A destination that counts rows and keeps the count it last flushed:
///
/// ```
/// use cdp_core::{Batch, Destination, Result, StreamSpec, WriteOutcome};
///
/// #[derive(Debug, Default)]
/// struct Counter { pending: usize, durable: usize }
///
/// #[async_trait::async_trait]
/// impl Destination for Counter {
///     fn name(&self) -> &str { "counter" }
///
///     async fn prepare(&mut self, _stream: &StreamSpec) -> Result<()> { Ok(()) }
///
///     async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
///         self.pending += batch.num_rows();
///         Ok(WriteOutcome::default())
///     }
///
///     async fn flush(&mut self, _epoch: u64) -> Result<()> {
///         self.durable += std::mem::take(&mut self.pending);
///         Ok(())
///     }
/// }
/// ```
///
/// # Refused rows
///
/// A destination refuses rows, never the batch around them, when the rows are what is
/// wrong (a value its column cannot hold, a constraint they break): the runtime
/// dead-letters them and everything else lands in the same epoch. Rows found wrong in
/// [`write`](Destination::write) go in its [`WriteOutcome`]; rows the store itself refuses
/// at [`flush`](Destination::flush) are handed over by
/// [`take_refused`](Destination::take_refused) after the flush succeeds. Only errors that
/// are not about particular rows (a lost connection, a missing permission) fail a flush.
///
/// A destination need only be `Send`, not `Sync`: the runtime drives each one from a single
/// task, and every async method takes `&mut self`.
#[async_trait]
pub trait Destination: std::fmt::Debug + Send {
    /// Instance name, used in metrics, errors and governance decisions.
    fn name(&self) -> &str;

    /// Checks that the destination is reachable and writable. Defaults to `Ok`.
    async fn check(&mut self) -> Result<()> {
        Ok(())
    }

    /// Recovers after a crash: publishes work staged up to `ctx.committed_epoch` and
    /// discards the rest. Defaults to `Ok` (for destinations that write idempotently).
    async fn open(&mut self, ctx: &OpenContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Creates or evolves whatever holds `stream` (a table, a folder) for its schema.
    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()>;

    /// Writes a stamped batch (user columns plus `_cdp_` columns). Rows it cannot take go in
    /// the outcome; an `Err` fails the whole batch (retried if retryable).
    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome>;

    /// Makes everything written so far durable, as part of barrier `epoch`.
    async fn flush(&mut self, epoch: u64) -> Result<()>;

    /// The rows the last successful [`flush`](Destination::flush) refused instead of
    /// failing (see [Refused rows](Destination#refused-rows)). The runtime calls it right
    /// after each flush that returned `Ok` and dead-letters what it returns, in the same
    /// epoch. Defaults to none.
    fn take_refused(&mut self) -> Vec<RefusedRow> {
        Vec::new()
    }

    /// The pipeline committed `epoch`: publish what was staged for it. Defaults to `Ok`.
    async fn commit(&mut self, epoch: u64) -> Result<()> {
        let _ = epoch;
        Ok(())
    }

    /// Releases resources at the end of a run. Defaults to `Ok`.
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Lets a boxed destination (what connector configs build) go wherever one is expected.
#[async_trait]
impl<D: Destination + ?Sized> Destination for Box<D> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn check(&mut self) -> Result<()> {
        (**self).check().await
    }

    async fn open(&mut self, ctx: &OpenContext) -> Result<()> {
        (**self).open(ctx).await
    }

    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        (**self).prepare(stream).await
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        (**self).write(batch).await
    }

    async fn flush(&mut self, epoch: u64) -> Result<()> {
        (**self).flush(epoch).await
    }

    fn take_refused(&mut self) -> Vec<RefusedRow> {
        (**self).take_refused()
    }

    async fn commit(&mut self, epoch: u64) -> Result<()> {
        (**self).commit(epoch).await
    }

    async fn close(&mut self) -> Result<()> {
        (**self).close().await
    }
}
