//! Configuration of the Parquet destination.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ParquetCompression, ParquetDestination};
use crate::config::ConfigErrors;
use crate::destinations::file::Parquet;
use crate::destinations::file_config::{
    LandingDestinationConfig, LandingDestinationFormat, sealed,
};

/// Writes a Parquet landing zone: the keys of every landing zone
/// ([`LandingOptions`](crate::destinations::LandingOptions)) and the Parquet destination's
/// own ([`ParquetDestinationOptions`]).
///
/// ```toml
/// [destinations.lake]
/// type = "parquet"
/// root = "lake/"
/// compression = "zstd"             # or "snappy"
/// partition_column = "timestamp"   # default: the day each batch was synced
/// ```
pub type ParquetDestinationConfig = LandingDestinationConfig<ParquetDestinationOptions>;

/// The Parquet destination's own keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetDestinationOptions {
    /// Page compression: `zstd` (default) or `snappy`.
    #[serde(default)]
    pub compression: ParquetCompression,
}

impl sealed::Sealed for ParquetDestinationOptions {}

impl LandingDestinationFormat for ParquetDestinationOptions {
    type Format = Parquet;

    fn check(&self, _errors: &mut ConfigErrors) {}

    fn destination(&self, root: &Path) -> ParquetDestination {
        ParquetDestination::new(root).with_compression(self.compression)
    }
}
