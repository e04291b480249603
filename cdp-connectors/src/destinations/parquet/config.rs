//! Configuration of the Parquet destination.

use std::path::PathBuf;

use cdp_core::{Destination, Error, Result};
use serde::{Deserialize, Serialize};

use super::{ParquetCompression, ParquetDestination};
use crate::destinations::DEFAULT_MAX_FILE_BYTES;

/// Writes a Parquet landing zone.
///
/// ```toml
/// [destinations.lake]
/// type = "parquet"
/// root = "lake/"
/// compression = "zstd"             # or "snappy"
/// partition_column = "timestamp"   # default: the day each batch was synced
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetDestinationConfig {
    /// Root directory of the landing zone; created if missing.
    pub root: PathBuf,
    /// Instance name. Default `parquet`.
    #[serde(default)]
    pub name: Option<String>,
    /// Page compression: `zstd` (default) or `snappy`.
    #[serde(default)]
    pub compression: ParquetCompression,
    /// A timestamp or date column whose day (UTC) partitions the rows (`dt=YYYY-MM-DD`).
    /// Default: the day each batch was synced. Rows where it is null go to the sync day.
    #[serde(default)]
    pub partition_column: Option<String>,
    /// Size at which a file is closed and a new one started. Default 256 MiB.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_max_file_bytes() -> u64 {
    DEFAULT_MAX_FILE_BYTES
}

impl ParquetDestinationConfig {
    /// A configuration writing under `root` with every default.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ParquetDestinationConfig {
            root: root.into(),
            name: None,
            compression: ParquetCompression::default(),
            partition_column: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// Validates the configuration and builds the destination.
    pub fn build(&self) -> Result<Box<dyn Destination>> {
        Ok(Box::new(self.build_destination()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_destination(&self) -> Result<ParquetDestination> {
        if self.max_file_bytes == 0 {
            return Err(Error::Config(
                "parquet: `max_file_bytes` must be at least 1".into(),
            ));
        }
        let mut destination = ParquetDestination::new(&self.root)
            .with_compression(self.compression)
            .with_max_file_bytes(self.max_file_bytes);
        if let Some(name) = &self.name {
            destination = destination.with_name(name);
        }
        if let Some(column) = &self.partition_column {
            destination = destination.with_partition_column(column);
        }
        Ok(destination)
    }
}
