//! Erasure reaches identity: the identity graph and the profile store as
//! [`ErasureTarget`]s of the governance [`Eraser`](cdp_governance::Eraser).
//!
//! They live here, in the umbrella, because `cdp-identity` and `cdp-governance` are topic
//! crates that do not depend on each other.
//!
//! - [`IdentityGraphTarget`] erases through a [`Resolver`]: every identifier of the
//!   person's profile leaves the graph, the profile is retired (the resolver's profile store
//!   follows), and the identifiers are returned as `linked`, so the eraser suppresses every
//!   one of them — a person erased by email is also blocked by their phone and user id.
//! - [`ProfileStoreTarget`] erases from a profile store on its own (a serving store fed by
//!   another process): the profile is retired, so no identifier resolves to it any more.
//!
//! ```
//! use std::sync::Arc;
//! use cdp::governance::{Eraser, HashKey, Identifier, SuppressionList};
//! use cdp::identity::{ColumnMapping, IdentifierColumn, ResolverConfig, RulesConfig};
//! use cdp::erasure::IdentityGraphTarget;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rules: RulesConfig = serde_json::from_value(serde_json::json!({
//!     "identifiers": [{"name": "email", "priority": 1, "normaliser": "email"}]
//! }))?;
//! let resolver = Arc::new(
//!     ResolverConfig {
//!         rules,
//!         mapping: ColumnMapping::new(vec![IdentifierColumn::new("email", "email")]),
//!         events: Default::default(),
//!     }
//!     .build()?,
//! );
//! let suppression = Arc::new(
//!     SuppressionList::new(HashKey::new(b"a-32-byte-suppression-list-key!!")?)
//!         .with_vocabulary(resolver.graph().rules().vocabulary()),
//! );
//! let eraser = Eraser::new(suppression).target(Arc::new(IdentityGraphTarget::new(resolver)));
//! let receipt = eraser.erase(&Identifier::new("email", "ada@example.com"), "dpo").await?;
//! assert_eq!(receipt.targets[0].records_removed, 0); // unknown: nothing to remove
//! # Ok(()) }
//! ```

use std::sync::Arc;

use cdp_core::Vocabulary;
use cdp_governance::{ErasureTarget, Identifier, TargetErasure};
use cdp_identity::{IdentifierKey, ProfileDelta, ProfileStore, Resolver};

/// The identity graph (and the resolver's profile store) as an erasure target.
#[derive(Debug, Clone)]
pub struct IdentityGraphTarget {
    name: String,
    resolver: Arc<Resolver>,
}

impl IdentityGraphTarget {
    /// Erases through `resolver`; named `identity`.
    pub fn new(resolver: Arc<Resolver>) -> Self {
        IdentityGraphTarget {
            name: "identity".into(),
            resolver,
        }
    }

    /// Renames the target (in receipts and the audit log).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

#[cdp_core::async_trait]
impl ErasureTarget for IdentityGraphTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn erase(&self, identifier: &Identifier) -> cdp_governance::Result<TargetErasure> {
        let (erased, _) = self
            .resolver
            .erase(identifier, now_ms())
            .map_err(|e| failed(&self.name, e))?;
        self.resolver
            .flush_log()
            .map_err(|e| failed(&self.name, e))?;
        Ok(TargetErasure {
            target: self.name.clone(),
            records_removed: erased.identifiers.len() as u64,
            linked: erased.identifiers,
        })
    }
}

/// A profile store on its own as an erasure target: retires the profile an identifier
/// resolves to. The store does not know the person's other identifiers (it holds keyed
/// hashes of them), so nothing is returned as linked; pair it with an
/// [`IdentityGraphTarget`] where the graph is at hand.
#[derive(Debug, Clone)]
pub struct ProfileStoreTarget {
    name: String,
    store: Arc<dyn ProfileStore>,
    vocabulary: Vocabulary,
}

impl ProfileStoreTarget {
    /// Erases from `store`, looking identifiers up as `vocabulary` normalises them (give it
    /// the identity rules' [`vocabulary`](cdp_identity::Rules::vocabulary)); named
    /// `profiles`.
    pub fn new(store: Arc<dyn ProfileStore>, vocabulary: Vocabulary) -> Self {
        ProfileStoreTarget {
            name: "profiles".into(),
            store,
            vocabulary,
        }
    }

    /// Renames the target (in receipts and the audit log).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

#[cdp_core::async_trait]
impl ErasureTarget for ProfileStoreTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn erase(&self, identifier: &Identifier) -> cdp_governance::Result<TargetErasure> {
        let removed = match self.vocabulary.normalised(identifier) {
            None => false,
            Some(normalised) => {
                let key = IdentifierKey::of(&normalised);
                match self.store.profile_id(key) {
                    None => false,
                    Some(profile) => {
                        let delta = ProfileDelta {
                            unassign: vec![key],
                            retired: vec![profile],
                            ..ProfileDelta::default()
                        };
                        self.store
                            .apply(&delta)
                            .map_err(|e| failed(&self.name, e))?;
                        true
                    }
                }
            }
        };
        Ok(TargetErasure {
            target: self.name.clone(),
            records_removed: u64::from(removed),
            linked: Vec::new(),
        })
    }
}

fn failed(target: &str, error: cdp_identity::Error) -> cdp_governance::Error {
    let retryable = error.is_retryable();
    cdp_governance::Error::Erasure {
        target: target.to_string(),
        source: Box::new(error),
        retryable,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
