//! Configuration of the JSONL source.

use std::path::PathBuf;

use cdp_core::{Result, Source};
use serde::{Deserialize, Serialize};

use super::JsonlSource;
use crate::sources::ColumnConfig;
use crate::sources::common::{DEFAULT_BATCH_SIZE, DEFAULT_INFER_RECORDS};

/// Reads newline-delimited JSON files.
///
/// ```toml
/// [sources.events]
/// type = "jsonl"
/// path = "data/events/"          # a file, or a directory of .jsonl files
/// stream = "events"              # default: file stem or directory name
/// batch_size = 8192
/// schema = [                     # omit to infer from the first `infer_records` lines
///   { name = "user_id", type = "utf8", nullable = false },
///   { name = "amount", type = "float64" },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSourceConfig {
    /// A `.jsonl` file, or a directory whose files (sorted by name, filtered by
    /// `extensions`) form one stream.
    pub path: PathBuf,
    /// Instance name, stamped into `_cdp_source`. Default `jsonl`.
    #[serde(default)]
    pub name: Option<String>,
    /// Stream name. Default: the file stem of a file, the name of a directory.
    #[serde(default)]
    pub stream: Option<String>,
    /// Explicit columns. Keys not listed are ignored; a value that does not fit its column
    /// sends the line to the dead letters. Omit to infer the schema.
    #[serde(default)]
    pub schema: Option<Vec<ColumnConfig>>,
    /// Lines sampled to infer the schema (across files, in order). Default 1000.
    #[serde(default = "default_infer_records")]
    pub infer_records: usize,
    /// Maximum rows per batch; a checkpoint follows every batch. Default 8192.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Extensions read from a directory. Default `["jsonl", "ndjson", "json"]`.
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
}

fn default_infer_records() -> usize {
    DEFAULT_INFER_RECORDS
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl JsonlSourceConfig {
    /// A configuration reading `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonlSourceConfig {
            path: path.into(),
            name: None,
            stream: None,
            schema: None,
            infer_records: DEFAULT_INFER_RECORDS,
            batch_size: DEFAULT_BATCH_SIZE,
            extensions: None,
        }
    }

    /// Validates the configuration and builds the source.
    pub fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.build_source()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_source(&self) -> Result<JsonlSource> {
        let mut source = JsonlSource::new(&self.path)
            .with_infer_records(self.infer_records)
            .with_batch_size(self.batch_size);
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
