//! Governance for `cdp` pipelines: data classes, policies, masking, consent, erasure and a
//! tamper-evident audit log, enforced inside the pipeline rather than after it.
//!
//! A field's [`DataClass`] (from its Arrow metadata, a tracking plan, a name or path rule or
//! the policy's explicit default) decides where it may flow and in what form — for every
//! field at every depth: `traits.email` inside a struct, `contacts[].email` inside a list
//! of structs, the keys of a map (see [`path`]). A [`Policy`]
//! (TOML or JSON) names, per destination, the highest class it may receive in the clear,
//! its purposes, and the masking each class needs first. Two things plug it into a
//! pipeline:
//!
//! * [`Policy::transforms_for`] builds the per-destination [`Masking`] transforms the policy
//!   requires (hash, tokenise, partial mask, generalise, null, drop — all columnar);
//! * [`Policy::enforcer`] is a [`FlowCheck`](cdp_core::FlowCheck) that refuses, before any
//!   data moves and again on every schema change, a flow that would deliver a field in a
//!   form the policy forbids, naming the field, class, destination and rule.
//!
//! Every decision can go to an [`AuditLog`] (in memory or SQLite), hash-chained so that
//! [`AuditLog::verify`] finds edited, deleted or reordered entries.
//!
//! Around that core:
//!
//! * [`access`] — principals, roles and grants per purpose; [`Access::authorize`] returns a
//!   decision with its reason, [`Access::read`] is a governed, audited view;
//! * [`consent`] — consent per profile and purpose, captured from Segment
//!   `categoryPreferences` or a consent stream, enforced per destination by a
//!   [`ConsentFilter`];
//! * [`erasure`] — [`Eraser::erase`] removes a person from every [`ErasureTarget`] (the
//!   profile store and identity graph implement it), emits [`tombstones`] for destinations,
//!   and adds their identifiers to a [`SuppressionList`] that [`Suppress`] enforces on
//!   re-ingest;
//! * [`retention`] — periods per class and stream, and a columnar [`Sweeper`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cdp_core::arrow::array::{RecordBatch, StringArray};
//! use cdp_core::arrow::datatypes::{DataType, Field, Schema};
//! use cdp_core::memory::{MemoryDestination, MemorySource};
//! use cdp_core::Pipeline;
//! use cdp_governance::{AuditLog, Keys, MemoryAuditLog, Policy};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let audit = Arc::new(MemoryAuditLog::new());
//! let policy = Policy::from_toml(r#"
//!     default_class = "internal"
//!     [[classify]]
//!     pattern = "*email*"
//!     class = "sensitive"
//!     [destinations.ads]
//!     max_class = "internal"
//!     purposes = ["marketing"]
//!     require = { sensitive = "hash" }
//! "#)?
//! .with_keys(Keys::new().with_hash_key(b"a 32-byte secret from your vault")?)
//! .with_audit(audit.clone())?;
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("user_id", DataType::Utf8, false),
//!     Field::new("email", DataType::Utf8, true),
//! ]));
//! let data = RecordBatch::try_new(schema.clone(), vec![
//!     Arc::new(StringArray::from(vec!["u1"])),
//!     Arc::new(StringArray::from(vec!["ada@example.com"])),
//! ])?;
//! let ads = MemoryDestination::new("ads");
//! let received = ads.handle();
//!
//! Pipeline::builder("governed")
//!     .source(MemorySource::new("users", vec![data]))
//!     .destination_with(ads, policy.transforms_for("ads", &schema)?)
//!     .check(policy.enforcer())
//!     .build()?
//!     .run()
//!     .await?;
//!
//! let batch = &received.batches()[0].data;
//! let email = batch.column_by_name("email").unwrap();
//! let email = email.as_any().downcast_ref::<StringArray>().unwrap();
//! assert_eq!(email.value(0), policy.keys().hash_key().unwrap().hash_hex(b"ada@example.com"));
//! assert!(audit.verify()?.is_intact());
//! # Ok(()) }
//! ```

pub mod access;
pub mod audit;
pub mod class;
pub mod consent;
pub mod enforce;
pub mod erasure;
pub mod error;
pub mod mask;
pub mod path;
pub mod policy;
pub mod retention;
mod rewrite;

pub use access::{
    Access, AccessConfig, AccessDecision, AccessOutcome, AccessRequest, Grant, PrincipalConfig,
    RoleConfig,
};
#[cfg(feature = "sqlite")]
pub use audit::SqliteAuditLog;
pub use audit::{
    Anchor, AuditEntry, AuditEvent, AuditKind, AuditLog, Digest, MemoryAuditLog, Tampering,
    Verification, verify_entries, verify_with_anchor,
};
pub use class::{
    CLASS_METADATA_KEY, ClassRule, ClassSource, Classification, Classifier, DataClass, field_class,
    with_class,
};
pub use consent::{ConsentCapture, ConsentFilter, ConsentState, ConsentStore, Unknown};
pub use enforce::{Enforcer, Violation};
pub use erasure::{
    Eraser, ErasureReceipt, ErasureTarget, Identifier, Suppress, SuppressionList, TargetErasure,
    tombstones, tombstones_by,
};
pub use error::{Error, Result};
pub use mask::{FieldAction, HashKey, Keys, MASKING_METADATA_KEY, Masking, Method, Tokenizer};
pub use path::{JSON_EXTENSION, Leaf, NestedPath, PathPattern};
pub use policy::{
    Decision, DestinationPolicy, Policy, PolicyConfig, Rule, Treatment, decisions_for_file,
};
pub use retention::{RetentionConfig, RetentionPeriod, Sweep, Sweeper};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Policy>();
        assert_send_sync::<Enforcer>();
        assert_send_sync::<Masking>();
        assert_send_sync::<Keys>();
        assert_send_sync::<MemoryAuditLog>();
        #[cfg(feature = "sqlite")]
        assert_send_sync::<SqliteAuditLog>();
        assert_send_sync::<Access>();
        assert_send_sync::<ConsentStore>();
        assert_send_sync::<ConsentFilter>();
        assert_send_sync::<Eraser>();
        assert_send_sync::<Suppress>();
        assert_send_sync::<SuppressionList>();
        assert_send_sync::<Sweeper>();
        assert_send_sync::<Error>();
    }
}
