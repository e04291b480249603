//! Configuration of the JSONL source.

use cdp_core::Result;
use serde::{Deserialize, Serialize};

use super::JsonlSource;
use crate::config::ConfigErrors;
use crate::sources::common::DEFAULT_INFER_RECORDS;
use crate::sources::file_config::{FileSourceConfig, FileSourceFormat, FileSourceOptions, sealed};

/// Reads newline-delimited JSON files: the keys of every file source
/// ([`FileSourceOptions`]) and the JSONL source's own ([`JsonlSourceOptions`]).
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
pub type JsonlSourceConfig = FileSourceConfig<JsonlSourceOptions>;

/// The JSONL source's own keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSourceOptions {
    /// Lines sampled to infer the schema (across files, in order) when no `schema` is given.
    /// Default 1000.
    #[serde(default = "default_infer_records")]
    pub infer_records: usize,
}

fn default_infer_records() -> usize {
    DEFAULT_INFER_RECORDS
}

impl Default for JsonlSourceOptions {
    fn default() -> Self {
        JsonlSourceOptions {
            infer_records: DEFAULT_INFER_RECORDS,
        }
    }
}

impl sealed::Sealed for JsonlSourceOptions {}

impl FileSourceFormat for JsonlSourceOptions {
    type Source = JsonlSource;

    fn check(&self, files: &FileSourceOptions, errors: &mut ConfigErrors) {
        if self.infer_records == 0 && files.schema.is_none() {
            errors.push(
                "infer_records",
                "must be at least 1 when no schema is given",
            );
        }
    }

    fn build(&self, files: &FileSourceOptions) -> Result<JsonlSource> {
        let mut source = JsonlSource::new(&files.path).with_infer_records(self.infer_records);
        files.apply(&mut source.options)?;
        Ok(source)
    }
}
