//! Configuration of the Parquet source.

use std::path::PathBuf;

use cdp_core::{Result, Source};
use serde::{Deserialize, Serialize};

use super::ParquetSource;
use crate::sources::ColumnConfig;
use crate::sources::common::DEFAULT_BATCH_SIZE;

/// Reads Parquet files.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceConfig {
    /// A `.parquet` file, or a directory whose files (sorted by name, filtered by
    /// `extensions`) form one stream.
    pub path: PathBuf,
    /// Instance name, stamped into `_cdp_source`. Default `parquet`.
    #[serde(default)]
    pub name: Option<String>,
    /// Stream name. Default: the file stem of a file, the name of a directory.
    #[serde(default)]
    pub stream: Option<String>,
    /// Columns to read, cast to the given types. Omit to use the first file's schema.
    #[serde(default)]
    pub schema: Option<Vec<ColumnConfig>>,
    /// Maximum rows per batch; a checkpoint follows every batch. Default 8192.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Extensions read from a directory. Default `["parquet"]`.
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl ParquetSourceConfig {
    /// A configuration reading `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ParquetSourceConfig {
            path: path.into(),
            name: None,
            stream: None,
            schema: None,
            batch_size: DEFAULT_BATCH_SIZE,
            extensions: None,
        }
    }

    /// Validates the configuration and builds the source.
    pub fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.build_source()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_source(&self) -> Result<ParquetSource> {
        let mut source = ParquetSource::new(&self.path).with_batch_size(self.batch_size);
        if let Some(name) = &self.name {
            source = source.with_name(name);
        }
        if let Some(stream) = &self.stream {
            source = source.with_stream(stream);
        }
        if let Some(columns) = &self.schema {
            source = source.with_schema(ColumnConfig::to_schema(columns)?);
        }
        if let Some(extensions) = &self.extensions {
            source = source.with_extensions(extensions.iter().cloned());
        }
        source.options.validate()?;
        Ok(source)
    }
}
