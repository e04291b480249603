use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::StateStore;
use super::lease::{Lease, LocalLeases};
use crate::error::{Error, Result};
use crate::event::PipelineState;

/// Keeps state in memory: for tests and for pipelines that always start from scratch.
///
/// Its [lease](StateStore::lease) keeps two runs of one pipeline on this store apart within
/// the process (the only place the store is seen).
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    states: Mutex<HashMap<String, PipelineState>>,
    leases: LocalLeases,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, PipelineState>>> {
        self.states
            .lock()
            .map_err(|_| Error::State("memory state store lock poisoned".into()))
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn load(&self, pipeline_id: &str) -> Result<PipelineState> {
        Ok(self.lock()?.get(pipeline_id).cloned().unwrap_or_default())
    }

    async fn commit(&self, pipeline_id: &str, state: &PipelineState) -> Result<()> {
        self.lock()?.insert(pipeline_id.to_string(), state.clone());
        Ok(())
    }

    async fn reset(&self, pipeline_id: &str) -> Result<()> {
        self.lock()?.remove(pipeline_id);
        Ok(())
    }

    async fn lease(&self, pipeline_id: &str, wait: Duration) -> Result<Lease> {
        self.leases.acquire(pipeline_id, wait).await
    }
}
