//! Where committed pipeline state lives: the [`StateStore`] trait and its embedded stores.

use async_trait::async_trait;

use crate::error::Result;
use crate::event::PipelineState;

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStateStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStateStore;

/// Durable storage for [`PipelineState`], one entry per pipeline id.
///
/// [`commit`](StateStore::commit) must be atomic: after a crash, [`load`](StateStore::load)
/// returns either the previous state or the new one, never a mix.
#[async_trait]
pub trait StateStore: std::fmt::Debug + Send + Sync {
    /// The last committed state of `pipeline_id`, or the empty state.
    async fn load(&self, pipeline_id: &str) -> Result<PipelineState>;

    /// Replaces the state of `pipeline_id` atomically.
    async fn commit(&self, pipeline_id: &str, state: &PipelineState) -> Result<()>;

    /// Forgets the state of `pipeline_id`, so the next run starts from scratch (backfill).
    async fn reset(&self, pipeline_id: &str) -> Result<()>;
}
