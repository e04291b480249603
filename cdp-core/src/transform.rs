//! The [`Transform`] trait: batch in, batch out.

use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::event::DeadLetter;
use crate::record::Batch;

/// What a transform made of one batch.
#[derive(Debug)]
pub struct TransformOutput {
    /// The transformed rows; `None` when every row was filtered or rejected.
    pub batch: Option<Batch>,
    /// Rows the transform refused, with reasons; they go to the dead-letter path.
    pub dead_letters: Vec<DeadLetter>,
}

impl TransformOutput {
    /// All rows passed on as `batch`.
    pub fn pass(batch: Batch) -> Self {
        TransformOutput {
            batch: Some(batch),
            dead_letters: Vec::new(),
        }
    }
}

/// A pure, synchronous, columnar step between source and destinations.
///
/// Transforms see user columns only (the runtime stamps `_cdp_` columns afterwards) and must
/// not do I/O: anything that waits belongs in a source or destination.
///
/// # Example
///
/// A transform that keeps only the columns it was given:
///
/// ```
/// use std::sync::Arc;
/// use arrow::datatypes::{Schema, SchemaRef};
/// use cdp_core::{Batch, Error, Result, Transform, TransformOutput};
///
/// #[derive(Debug)]
/// struct Select(Vec<String>);
///
/// impl Transform for Select {
///     fn name(&self) -> &str { "select" }
///
///     fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
///         let indices = self.0.iter().map(|c| input.index_of(c)).collect::<Result<Vec<_>, _>>()?;
///         Ok(Arc::new(input.project(&indices)?))
///     }
///
///     fn apply(&self, batch: Batch) -> Result<TransformOutput> {
///         let schema = batch.data.schema();
///         let indices = self.0.iter().map(|c| schema.index_of(c)).collect::<Result<Vec<_>, _>>()?;
///         let data = batch.data.project(&indices)?;
///         Ok(TransformOutput::pass(Batch { data, ..batch }))
///     }
/// }
/// ```
pub trait Transform: std::fmt::Debug + Send + Sync {
    /// Name, used in dead letters, metrics and errors.
    fn name(&self) -> &str;

    /// The schema [`apply`](Transform::apply) produces for batches of `input`; used at
    /// build time and on schema changes to tell destinations what to expect.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef>;

    /// Transforms one batch.
    fn apply(&self, batch: Batch) -> Result<TransformOutput>;
}

/// Lets a boxed transform go wherever a transform is expected.
impl<T: Transform + ?Sized> Transform for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        (**self).output_schema(input)
    }

    fn apply(&self, batch: Batch) -> Result<TransformOutput> {
        (**self).apply(batch)
    }
}
