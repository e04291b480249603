//! Integration tests for `cdp-governance`, one binary with a module per topic.

#![allow(clippy::unwrap_used)]

mod common {
    use std::sync::Arc;

    use cdp_core::arrow::array::{ArrayRef, RecordBatch};
    use cdp_core::arrow::compute::concat;
    use cdp_core::memory::MemoryHandle;

    pub(crate) const HASH_KEY: &[u8] = b"integration-test-hmac-key-32-byt";
    pub(crate) const TOKEN_KEY: [u8; 64] = [42; 64];

    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Every committed value of `column` across the destination's batches, in order;
    /// `None` when no batch has the column.
    pub(crate) fn received(handle: &MemoryHandle, column: &str) -> Option<ArrayRef> {
        let parts: Vec<ArrayRef> = handle
            .batches()
            .iter()
            .filter_map(|b| b.data.column_by_name(column).cloned())
            .collect();
        if parts.is_empty() {
            return None;
        }
        let refs: Vec<&dyn cdp_core::arrow::array::Array> =
            parts.iter().map(|a| a.as_ref()).collect();
        Some(concat(&refs).unwrap())
    }

    pub(crate) fn batch(
        schema: &Arc<cdp_core::arrow::datatypes::Schema>,
        columns: Vec<ArrayRef>,
    ) -> RecordBatch {
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }
}

#[cfg(feature = "sqlite")]
#[path = "governance/audit_tamper.rs"]
mod audit_tamper;
#[path = "governance/consent_access.rs"]
mod consent_access;
#[path = "governance/enforcement.rs"]
mod enforcement;
#[path = "governance/erasure.rs"]
mod erasure;
#[path = "governance/nested_enforcement.rs"]
mod nested_enforcement;
#[path = "governance/suppression_formats.rs"]
mod suppression_formats;
