//! Destinations: PostgreSQL tables (feature `postgres`), and landing zones of JSONL and
//! Parquet files partitioned by stream and day (features `jsonl` and `parquet`, both in
//! `files`).
//!
//! Landing-zone layout: `{root}/{stream}/dt=YYYY-MM-DD/part-{pipeline}-{epoch:010}-{seq:05}.{jsonl|parquet}`.
//! The day is the batch's sync day (UTC), or the day of a timestamp/date column
//! (`partition_column`). Files are staged per pipeline and epoch under
//! `{root}/_staging/{pipeline}/` and published by atomic renames once the pipeline has
//! committed the epoch, so several pipelines can share one root; see
//! [`Destination`](cdp_core::Destination) for the contract. The dead-letter stream
//! `_cdp_dead_letters` is written like any other, so a JSONL destination can serve as the
//! dead-letter path.

#[cfg(any(feature = "jsonl", feature = "parquet"))]
pub mod file;
#[cfg(any(feature = "jsonl", feature = "parquet"))]
mod file_config;
#[cfg(feature = "jsonl")]
pub mod jsonl;
#[cfg(any(feature = "jsonl", feature = "parquet"))]
mod landing;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "singer")]
pub mod singer;
#[cfg(feature = "http")]
pub mod webhook;

#[cfg(feature = "jsonl")]
pub use file::Jsonl;
#[cfg(feature = "parquet")]
pub use file::Parquet;
#[cfg(any(feature = "jsonl", feature = "parquet"))]
pub use file::{LandingDestination, LandingFormat};
#[cfg(any(feature = "jsonl", feature = "parquet"))]
pub use file_config::{LandingDestinationConfig, LandingDestinationFormat, LandingOptions};
#[cfg(feature = "jsonl")]
pub use jsonl::{JsonlDestination, JsonlDestinationConfig, JsonlDestinationOptions};
#[cfg(feature = "parquet")]
pub use parquet::{
    ParquetCompression, ParquetDestination, ParquetDestinationConfig, ParquetDestinationOptions,
};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresDestination, PostgresDestinationConfig};
#[cfg(feature = "singer")]
pub use singer::{SingerDestination, SingerDestinationConfig};
#[cfg(feature = "http")]
pub use webhook::{WebhookDestination, WebhookDestinationConfig};

#[cfg(any(feature = "jsonl", feature = "parquet"))]
use std::path::{Path, PathBuf};
#[cfg(any(feature = "jsonl", feature = "parquet"))]
use std::sync::Mutex;

#[cfg(any(feature = "jsonl", feature = "parquet"))]
use cdp_core::{Error, Result};
#[cfg(any(feature = "jsonl", feature = "parquet"))]
use landing::Landing;

#[cfg(any(feature = "jsonl", feature = "parquet"))]
/// Default cap on one file's size before a new one is started: 256 MiB.
pub(crate) const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Holds the landing-zone state and runs its blocking file work on tokio's blocking pool.
///
/// The state sits in a mutex only because `Destination` must be `Sync` and Parquet writers
/// are not; it is never locked concurrently (every method takes `&mut self`).
#[cfg(any(feature = "jsonl", feature = "parquet"))]
#[derive(Debug)]
pub(crate) struct Blocking {
    connector: &'static str,
    root: PathBuf,
    landing: Option<Mutex<Landing>>,
}

#[cfg(any(feature = "jsonl", feature = "parquet"))]
impl Blocking {
    pub(crate) fn new(connector: &'static str, landing: Landing) -> Self {
        Blocking {
            connector,
            root: landing.root().to_path_buf(),
            landing: Some(Mutex::new(landing)),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn landing_mut(&mut self) -> Result<&mut Landing> {
        let connector = self.connector;
        self.landing
            .as_mut()
            .and_then(|m| m.get_mut().ok())
            .ok_or_else(|| lost(connector))
    }

    /// Runs `work` off the executor: file writes, compression and fsyncs block.
    pub(crate) async fn run<T, F>(&mut self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Landing) -> Result<T> + Send + 'static,
    {
        let connector = self.connector;
        let mut landing = self
            .landing
            .take()
            .and_then(|m| m.into_inner().ok())
            .ok_or_else(|| lost(connector))?;
        let (landing, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut landing);
            (landing, result)
        })
        .await
        .map_err(|e| Error::external(connector, e))?;
        self.landing = Some(Mutex::new(landing));
        result
    }
}

#[cfg(any(feature = "jsonl", feature = "parquet"))]
fn lost(connector: &str) -> Error {
    Error::external(
        connector,
        "the destination failed while writing and cannot be used any more; open a new one",
    )
}
