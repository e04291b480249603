//! The [`IdentityResolver`] trait: stamps `_cdp_profile_id` on every row.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::record::{Batch, PROFILE_ID_COLUMN};

/// What kind of identity change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityEventKind {
    /// An identifier joined a profile.
    Link,
    /// A link was refused by a rule (limit, blocked value, consent scope).
    RefusedLink,
    /// A link was removed.
    Unlink,
    /// Two profiles became one.
    Merge,
    /// A merge was undone.
    Unmerge,
    /// A merge was held for review instead of applied.
    HeldForReview,
}

/// A summary of one identity change, as the runtime reports and counts it. The identity
/// crate keeps the full event (rule, source, evidence) in its own log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityEvent {
    /// What happened.
    pub kind: IdentityEventKind,
    /// The profile that survived or was affected.
    pub profile_id: String,
    /// The other profile, for merges and unmerges.
    pub other_profile_id: Option<String>,
    /// The identifiers involved, as `type:value`.
    pub identifiers: Vec<String>,
    /// The rule or reason, in words.
    pub reason: String,
}

/// A batch with `_cdp_profile_id`, and the identity changes resolving it caused.
#[derive(Debug)]
pub struct ResolvedBatch {
    /// The input rows plus a `_cdp_profile_id` column.
    pub batch: Batch,
    /// Links, refusals and merges, in the order they happened.
    pub events: Vec<IdentityEvent>,
}

/// Resolves the identifiers in each row to a durable profile id.
///
/// Implemented by `cdp-identity`; the runtime calls it after the transforms and before the
/// destinations, one batch at a time and in order.
///
/// # Example
///
/// A resolver that treats the `user_id` column as the profile id:
///
/// ```
/// use std::sync::Arc;
/// use arrow::array::ArrayRef;
/// use arrow::datatypes::DataType;
/// use cdp_core::{Batch, Error, IdentityResolver, ResolvedBatch, Result};
///
/// #[derive(Debug)]
/// struct ByUserId;
///
/// #[async_trait::async_trait]
/// impl IdentityResolver for ByUserId {
///     async fn resolve(&self, batch: Batch) -> Result<ResolvedBatch> {
///         let ids = batch.data.column_by_name("user_id").ok_or_else(|| {
///             Error::Schema { stream: batch.stream.to_string(), message: "no user_id".into() }
///         })?;
///         // The profile id is text, as `output_schema` declares by default.
///         let ids: ArrayRef = arrow::compute::cast(ids, &DataType::Utf8)?;
///         let schema = self.output_schema(&batch.data.schema())?;
///         let mut columns = batch.data.columns().to_vec();
///         columns.push(ids);
///         let data = arrow::array::RecordBatch::try_new(schema, columns)?;
///         Ok(ResolvedBatch { batch: Batch { data, ..batch }, events: Vec::new() })
///     }
/// }
/// ```
#[async_trait]
pub trait IdentityResolver: std::fmt::Debug + Send + Sync {
    /// Resolves one batch. The resolved batch has the schema
    /// [`output_schema`](Self::output_schema) gives for the input's; the runtime checks it.
    async fn resolve(&self, batch: Batch) -> Result<ResolvedBatch>;

    /// The schema of a resolved batch whose input had schema `input`: what the flow checks
    /// see before any data moves. Defaults to [`with_profile_id`].
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(with_profile_id(input))
    }

    /// Makes the identity state durable (called at each barrier). Defaults to `Ok`.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// `schema` with [`PROFILE_ID_COLUMN`] (nullable text) as its last column, replacing one
/// already there; the schema's metadata is kept.
pub fn with_profile_id(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != PROFILE_ID_COLUMN)
        .cloned()
        .collect();
    fields.push(Arc::new(Field::new(
        PROFILE_ID_COLUMN,
        DataType::Utf8,
        true,
    )));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}
