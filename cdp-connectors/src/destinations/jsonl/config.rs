//! Configuration of the JSONL destination.

use std::path::PathBuf;

use cdp_core::{Destination, Error, Result};
use serde::{Deserialize, Serialize};

use super::JsonlDestination;
use crate::destinations::DEFAULT_MAX_FILE_BYTES;

/// Writes a JSONL landing zone.
///
/// ```toml
/// [destinations.lake]
/// type = "jsonl"
/// root = "landing/"
/// partition_column = "timestamp"   # default: the day each batch was synced
/// max_file_bytes = 268435456
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlDestinationConfig {
    /// Root directory of the landing zone; created if missing.
    pub root: PathBuf,
    /// Instance name. Default `jsonl`.
    #[serde(default)]
    pub name: Option<String>,
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

impl JsonlDestinationConfig {
    /// A configuration writing under `root` with every default.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        JsonlDestinationConfig {
            root: root.into(),
            name: None,
            partition_column: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// Validates the configuration and builds the destination.
    pub fn build(&self) -> Result<Box<dyn Destination>> {
        Ok(Box::new(self.build_destination()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_destination(&self) -> Result<JsonlDestination> {
        if self.max_file_bytes == 0 {
            return Err(Error::Config(
                "jsonl: `max_file_bytes` must be at least 1".into(),
            ));
        }
        let mut destination =
            JsonlDestination::new(&self.root).with_max_file_bytes(self.max_file_bytes);
        if let Some(name) = &self.name {
            destination = destination.with_name(name);
        }
        if let Some(column) = &self.partition_column {
            destination = destination.with_partition_column(column);
        }
        Ok(destination)
    }
}
