//! Where committed pipeline state lives: the [`StateStore`] trait and its embedded stores.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::event::PipelineState;

mod lease;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use lease::{Lease, LeaseGuard};
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

    /// Takes the [`Lease`] of `pipeline_id` for one run, waiting up to `wait` for a run
    /// holding it to end; [`Error::Leased`](crate::Error::Leased) if it does not. The runtime
    /// takes it before it loads the state and holds it to the end of the run.
    ///
    /// The lock must die with the process (or connection) holding it, so that a run killed
    /// mid-way can be resumed at once. Defaults to an [unguarded](Lease::unguarded) lease:
    /// a store that can be shared by several processes should override it.
    async fn lease(&self, pipeline_id: &str, wait: Duration) -> Result<Lease> {
        let _ = wait;
        tracing::debug!(
            pipeline = pipeline_id,
            "this state store keeps no lease: overlapping runs of the pipeline are not kept apart"
        );
        Ok(Lease::unguarded(pipeline_id))
    }
}
