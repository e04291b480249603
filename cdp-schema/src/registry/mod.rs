//! Versioned schemas per subject (stream), each with its contract, looked up by
//! subject and version or by fingerprint.
//!
//! [`SchemaRegistry`] holds the rules (compatibility per subject, deduplication by
//! fingerprint, version numbering); a [`RegistryStore`] holds the data: in memory
//! ([`MemoryStore`]) or in a SQLite file ([`SqliteStore`], feature `sqlite`).

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};

use crate::compat::{self, CompatibilityReport};
use crate::contract::Contract;
use crate::error::{Error, Result};
use crate::severity::{ClassifiedDiff, SchemaPolicy};
use crate::types::fingerprint;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// One registered version of a subject's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredSchema {
    /// The subject (usually the stream name).
    pub subject: String,
    /// Its version, from 1.
    pub version: u32,
    /// [`fingerprint`](crate::types::fingerprint) of the schema.
    pub fingerprint: String,
    /// The schema.
    pub schema: SchemaRef,
    /// The contract registered with it, if any.
    pub contract: Option<Contract>,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
}

/// Where a registry keeps its versions and policies.
///
/// Implementations only store; the [`SchemaRegistry`] decides what may be stored.
pub trait RegistryStore: std::fmt::Debug + Send + Sync {
    /// Every subject with at least one version, sorted.
    fn subjects(&self) -> Result<Vec<String>>;

    /// The versions of `subject`, oldest first.
    fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>>;

    /// Stores a new version; fails with [`Error::Conflict`] if the version is taken.
    fn append(&self, entry: &RegisteredSchema) -> Result<()>;

    /// Every version (of any subject) with this fingerprint.
    fn find_fingerprint(&self, fingerprint: &str) -> Result<Vec<RegisteredSchema>>;

    /// The policy set for `subject`, if any.
    fn policy(&self, subject: &str) -> Result<Option<SchemaPolicy>>;

    /// Sets the policy of `subject`.
    fn set_policy(&self, subject: &str, policy: &SchemaPolicy) -> Result<()>;
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The version the schema has.
    pub version: u32,
    /// Its fingerprint.
    pub fingerprint: String,
    /// `false` when the same schema (and contract) was already registered.
    pub created: bool,
}

/// The schema registry: versions per subject, compatibility enforced on registration.
///
/// Cheap to clone; clones share the store.
///
/// ```
/// use std::sync::Arc;
/// use arrow::datatypes::{DataType, Field, Schema};
/// use cdp_schema::{CompatibilityMode, SchemaPolicy, SchemaRegistry};
///
/// # fn main() -> cdp_schema::Result<()> {
/// let registry = SchemaRegistry::in_memory();
/// registry.set_policy("users", SchemaPolicy::default().with_compatibility(CompatibilityMode::Backward))?;
/// let v1 = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// assert_eq!(registry.register("users", &v1)?.version, 1);
/// // A required field without a default cannot read old data: refused under BACKWARD.
/// let v2 = Arc::new(Schema::new(vec![
///     Field::new("id", DataType::Int64, false),
///     Field::new("email", DataType::Utf8, false),
/// ]));
/// assert!(registry.register("users", &v2).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SchemaRegistry {
    store: Arc<dyn RegistryStore>,
    default_policy: SchemaPolicy,
}

impl SchemaRegistry {
    /// A registry over `store`.
    pub fn new(store: Arc<dyn RegistryStore>) -> Self {
        SchemaRegistry {
            store,
            default_policy: SchemaPolicy::default(),
        }
    }

    /// A registry kept in memory.
    pub fn in_memory() -> Self {
        SchemaRegistry::new(Arc::new(MemoryStore::new()))
    }

    /// A registry kept in the SQLite file at `path` (created if missing).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Ok(SchemaRegistry::new(Arc::new(SqliteStore::open(path)?)))
    }

    /// Sets the policy of subjects that have none of their own.
    pub fn with_default_policy(mut self, policy: SchemaPolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn RegistryStore> {
        &self.store
    }

    /// The policy of `subject` (its own, or the default).
    pub fn policy(&self, subject: &str) -> Result<SchemaPolicy> {
        Ok(self
            .store
            .policy(subject)?
            .unwrap_or_else(|| self.default_policy.clone()))
    }

    /// Sets the policy of `subject`.
    pub fn set_policy(&self, subject: &str, policy: SchemaPolicy) -> Result<()> {
        self.store.set_policy(subject, &policy)
    }

    /// Every subject, sorted.
    pub fn subjects(&self) -> Result<Vec<String>> {
        self.store.subjects()
    }

    /// Every version of `subject`, oldest first.
    pub fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>> {
        self.store.versions(subject)
    }

    /// The latest version of `subject`, if any.
    pub fn latest(&self, subject: &str) -> Result<Option<RegisteredSchema>> {
        Ok(self.store.versions(subject)?.pop())
    }

    /// Version `version` of `subject`.
    pub fn get(&self, subject: &str, version: u32) -> Result<RegisteredSchema> {
        self.store
            .versions(subject)?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| Error::NotFound(format!("subject `{subject}` version {version}")))
    }

    /// Every registered version with `fingerprint`, across subjects.
    pub fn by_fingerprint(&self, fingerprint: &str) -> Result<Vec<RegisteredSchema>> {
        self.store.find_fingerprint(fingerprint)
    }

    /// Checks `schema` against `subject`'s history in the subject's compatibility mode,
    /// without registering it.
    pub fn check(&self, subject: &str, schema: &SchemaRef) -> Result<CompatibilityReport> {
        let policy = self.policy(subject)?;
        let history = self.store.versions(subject)?;
        let earlier: Vec<(u32, &arrow::datatypes::Schema)> = history
            .iter()
            .map(|v| (v.version, v.schema.as_ref()))
            .collect();
        Ok(compat::check(
            policy.compatibility,
            schema,
            &earlier,
            policy.promotions,
        ))
    }

    /// Registers `schema` as the next version of `subject` if it passes the subject's
    /// compatibility mode; returns the existing version when it is already registered.
    pub fn register(&self, subject: &str, schema: &SchemaRef) -> Result<Registration> {
        self.register_with_contract(subject, schema, None)
    }

    /// Like [`register`](Self::register), with a contract attached to the version.
    pub fn register_with_contract(
        &self,
        subject: &str,
        schema: &SchemaRef,
        contract: Option<Contract>,
    ) -> Result<Registration> {
        let fingerprint = fingerprint(schema);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let history = self.store.versions(subject)?;
            if let Some(existing) = history
                .iter()
                .rev()
                .find(|v| v.fingerprint == fingerprint && v.contract == contract)
            {
                return Ok(Registration {
                    version: existing.version,
                    fingerprint,
                    created: false,
                });
            }
            let report = self.check(subject, schema)?;
            if !report.is_compatible() {
                return Err(Error::Incompatible {
                    subject: subject.to_string(),
                    mode: report.mode.to_string(),
                    reasons: report.violations.iter().map(|v| v.to_string()).collect(),
                });
            }
            let version = history.last().map_or(1, |v| v.version + 1);
            let entry = RegisteredSchema {
                subject: subject.to_string(),
                version,
                fingerprint: fingerprint.clone(),
                schema: schema.clone(),
                contract: contract.clone(),
                registered_at: Utc::now(),
            };
            match self.store.append(&entry) {
                Ok(()) => {
                    tracing::info!(subject, version, fingerprint = %fingerprint, "schema registered");
                    return Ok(Registration {
                        version,
                        fingerprint,
                        created: true,
                    });
                }
                // Another writer took the version: re-read the history and try again.
                Err(Error::Conflict { .. }) if attempts < 5 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The classified changes from version `from` to version `to` of `subject`.
    pub fn diff(&self, subject: &str, from: u32, to: u32) -> Result<ClassifiedDiff> {
        let policy = self.policy(subject)?;
        let (a, b) = (self.get(subject, from)?, self.get(subject, to)?);
        Ok(policy.assess(&a.schema, &b.schema))
    }
}
