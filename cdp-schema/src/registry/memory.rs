//! The in-memory registry store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{RegisteredSchema, RegistryStore};
use crate::error::{Error, Result, lock};
use crate::severity::SchemaPolicy;

/// Keeps versions and policies in memory; for tests and short-lived pipelines.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    versions: BTreeMap<String, Vec<RegisteredSchema>>,
    policies: BTreeMap<String, SchemaPolicy>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

impl RegistryStore for MemoryStore {
    fn subjects(&self) -> Result<Vec<String>> {
        Ok(lock(&self.inner, "memory registry")?
            .versions
            .keys()
            .cloned()
            .collect())
    }

    fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>> {
        Ok(lock(&self.inner, "memory registry")?
            .versions
            .get(subject)
            .cloned()
            .unwrap_or_default())
    }

    fn append(&self, entry: &RegisteredSchema) -> Result<()> {
        let mut inner = lock(&self.inner, "memory registry")?;
        let list = inner.versions.entry(entry.subject.clone()).or_default();
        if list.iter().any(|v| v.version == entry.version) {
            return Err(Error::Conflict {
                subject: entry.subject.clone(),
                version: entry.version,
            });
        }
        list.push(entry.clone());
        list.sort_by_key(|v| v.version);
        Ok(())
    }

    fn find_fingerprint(&self, fingerprint: &str) -> Result<Vec<RegisteredSchema>> {
        Ok(lock(&self.inner, "memory registry")?
            .versions
            .values()
            .flatten()
            .filter(|v| v.fingerprint == fingerprint)
            .cloned()
            .collect())
    }

    fn policy(&self, subject: &str) -> Result<Option<SchemaPolicy>> {
        Ok(lock(&self.inner, "memory registry")?
            .policies
            .get(subject)
            .cloned())
    }

    fn set_policy(&self, subject: &str, policy: &SchemaPolicy) -> Result<()> {
        lock(&self.inner, "memory registry")?
            .policies
            .insert(subject.to_string(), policy.clone());
        Ok(())
    }
}
