//! Configuration of the Parquet source.

use cdp_core::Result;
use serde::{Deserialize, Serialize};

use super::ParquetSource;
use crate::config::ConfigErrors;
use crate::sources::file_config::{FileSourceConfig, FileSourceFormat, FileSourceOptions, sealed};

/// Reads Parquet files: the keys of every file source ([`FileSourceOptions`]); the Parquet
/// source has none of its own ([`ParquetSourceOptions`]).
///
/// ```toml
/// [sources.orders]
/// type = "parquet"
/// path = "lake/orders/"          # a file, or a directory of .parquet files
/// schema = [                     # optional: read only these columns, cast to these types
///   { name = "order_id", type = "int64", nullable = false },
///   { name = "total", type = "float64" },
/// ]
/// ```
pub type ParquetSourceConfig = FileSourceConfig<ParquetSourceOptions>;

/// The Parquet source's own keys: none so far (the schema comes from the files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceOptions {}

impl sealed::Sealed for ParquetSourceOptions {}

impl FileSourceFormat for ParquetSourceOptions {
    type Source = ParquetSource;

    fn check(&self, _files: &FileSourceOptions, _errors: &mut ConfigErrors) {}

    fn build(&self, files: &FileSourceOptions) -> Result<ParquetSource> {
        let mut source = ParquetSource::new(&files.path);
        files.apply(&mut source.options)?;
        Ok(source)
    }
}
