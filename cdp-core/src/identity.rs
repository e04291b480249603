//! The [`IdentityResolver`] trait: stamps `_cdp_profile_id` on every row.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::record::Batch;

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
/// use arrow::datatypes::Field;
/// use cdp_core::{Batch, Error, IdentityResolver, ResolvedBatch, Result, PROFILE_ID_COLUMN};
///
/// #[derive(Debug)]
/// struct ByUserId;
///
/// #[async_trait::async_trait]
/// impl IdentityResolver for ByUserId {
///     async fn resolve(&self, batch: Batch) -> Result<ResolvedBatch> {
///         let ids: ArrayRef = batch.data.column_by_name("user_id").cloned().ok_or_else(|| {
///             Error::Schema { stream: batch.stream.to_string(), message: "no user_id".into() }
///         })?;
///         let mut fields = batch.data.schema().fields().to_vec();
///         fields.push(Arc::new(Field::new(PROFILE_ID_COLUMN, ids.data_type().clone(), true)));
///         let mut columns = batch.data.columns().to_vec();
///         columns.push(ids);
///         let schema = Arc::new(arrow::datatypes::Schema::new(fields));
///         let data = arrow::array::RecordBatch::try_new(schema, columns)?;
///         Ok(ResolvedBatch { batch: Batch { data, ..batch }, events: Vec::new() })
///     }
/// }
/// ```
#[async_trait]
pub trait IdentityResolver: std::fmt::Debug + Send + Sync {
    /// Resolves one batch.
    async fn resolve(&self, batch: Batch) -> Result<ResolvedBatch>;

    /// Makes the identity state durable (called at each barrier). Defaults to `Ok`.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}
