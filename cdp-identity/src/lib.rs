//! Identity stitching for `cdp`: turns identifier fragments (anonymous ids, user ids,
//! emails, phones, device ids, CRM ids) into durable profiles.
//!
//! - [`IdentityGraph`]: identifiers are nodes (interned, normalised), links are edges that
//!   remember rule, source, confidence, first and last seen and count, and a profile is a
//!   connected component with a stable UUID v7 id.
//! - [`Rules`]: identifier types with priority, per-profile limit, TTL and normaliser;
//!   blocked values; consent scopes; the merge policy. A link that would put more
//!   identifiers of a type in one profile than its limit allows is refused for the
//!   lower-priority identifier, and the refusal is logged with its reason — that is what
//!   keeps a shared device or a support agent's email from fusing thousands of people.
//! - Merges are first-class: every link, refusal, merge, unlink, unmerge, hold and expiry is
//!   a [`LogEvent`] in the graph's log; merged ids keep resolving; [`IdentityGraph::unmerge`]
//!   restores the ids the parts had; [`IdentityGraph::replay`] rebuilds an identical graph
//!   from the log; freeze mode holds merges in a review queue.
//! - [`Resolver`]: the [`cdp_core::IdentityResolver`] of a pipeline. It maps columns (or
//!   nested paths such as `context.device.id`) to identifier types and appends
//!   `_cdp_profile_id` to every batch.
//! - [`ProfileStore`]: profiles with traits merged by survivorship rules and computed
//!   traits, served by identifier or profile id while the resolver writes
//!   ([`MemoryProfileStore`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use cdp_core::{Batch, IdentityResolver, PROFILE_ID_COLUMN};
//! use cdp_identity::{ResolverConfig, Resolver};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config: ResolverConfig = serde_json::from_str(r#"{
//!     "rules": {
//!         "identifiers": [
//!             {"name": "user_id", "priority": 1, "limit": 1},
//!             {"name": "email", "priority": 2, "limit": 1, "normaliser": "email"},
//!             {"name": "device_id", "priority": 3, "limit": 5}
//!         ],
//!         "blocked_values": ["unknown"]
//!     },
//!     "mapping": {
//!         "identifiers": [
//!             {"path": "email", "type": "email"},
//!             {"path": "device", "type": "device_id"}
//!         ]
//!     }
//! }"#)?;
//! let resolver: Resolver = config.build()?;
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("email", DataType::Utf8, true),
//!     Field::new("device", DataType::Utf8, true),
//! ]));
//! let data = RecordBatch::try_new(schema, vec![
//!     Arc::new(StringArray::from(vec![Some("Ada@Example.com"), None, Some("bob@example.com")])),
//!     Arc::new(StringArray::from(vec![Some("ipad-1"), Some("ipad-1"), Some("ipad-1")])),
//! ])?;
//! let resolved = resolver.resolve(Batch::new("events", data, "web")).await?;
//!
//! let ids = resolved.batch.data.column_by_name(PROFILE_ID_COLUMN).unwrap();
//! let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
//! // Rows 0 and 1 share the device and become one profile; Bob's email may not join it
//! // (one email per profile), so the link is refused and Bob gets his own profile.
//! assert_eq!(ids.value(0), ids.value(1));
//! assert_ne!(ids.value(0), ids.value(2));
//! assert_eq!(resolver.graph().profile_count(), 2);
//! # Ok(()) }
//! ```

pub mod error;
pub mod explain;
pub mod graph;
pub mod health;
pub mod identifier;
pub mod log;
pub mod probabilistic;
pub mod profile;
pub mod resolver;
pub mod rules;

pub use error::{Error, Result};
pub use explain::{Explanation, Hop, ProfileExplanation, RefusalNote};
pub use graph::{
    DigestLink, Erased, Evidence, GraphDigest, IdentityGraph, MergeInfo, Proposal, ReviewItem,
    ReviewStatus,
};
pub use health::HealthReport;
pub use identifier::{Identifier, IdentifierKey, Normaliser, ProfileId};
#[cfg(feature = "sqlite")]
pub use log::SqliteLog;
pub use log::{IdentityLog, LinkEffect, LogEvent, LogRecord, MemoryLog, RefusalReason};
pub use profile::{
    MemoryProfileStore, Observation, Profile, ProfileDelta, ProfileStore, StoreConfig,
    Survivorship, TraitRule, TraitValue,
};
pub use resolver::{
    ColumnMapping, EventDetail, IdentifierColumn, Resolver, ResolverConfig, TraitColumn,
};
pub use rules::{IdentifierTypeConfig, MergePolicy, Rules, RulesConfig, ScopeConfig, Ttl};

/// The rule name recorded on links between identifiers seen in the same row.
pub const DEFAULT_RULE: &str = "same_event";
