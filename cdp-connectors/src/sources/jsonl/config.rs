//! Configuration of the JSONL source.

use cdp_core::Result;
use serde::{Deserialize, Serialize};

use super::JsonlSource;
use crate::config::ConfigErrors;
use crate::sources::common::DEFAULT_INFER_RECORDS;
use crate::sources::file_config::{FileSourceConfig, FileSourceFormat, FileSourceOptions, sealed};
use crate::sources::schemaless::{DEFAULT_OVERFLOW_COLUMN, DriftPolicy, NewFields, TypeConflicts};

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
/// new_fields = "evolve"          # or "overflow", "dead_letter"
/// type_conflicts = "widen"       # or "dead_letter"
/// overflow_column = "_overflow"  # with new_fields = "overflow"
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
    /// What happens to a key (at any depth) the schema has no field for: `evolve` adds the
    /// field, a schema change the destinations follow; `overflow` keeps the unknown keys of
    /// each record, as a JSON object, in the `overflow_column`; `dead_letter` sends the
    /// record to the dead letters. Default `evolve`. Nothing is ever dropped.
    #[serde(default)]
    pub new_fields: NewFields,
    /// What happens to a value whose type does not fit its field: `widen` widens the field
    /// (an integer to a float, a scalar to text; objects and lists are never widened, and
    /// columns of an explicit `schema` keep their types) or, where no rule applies, sends
    /// the record to the dead letters; `dead_letter` always sends it there. Default `widen`.
    #[serde(default)]
    pub type_conflicts: TypeConflicts,
    /// The text column unknown keys go to with `new_fields = "overflow"`. Default
    /// `_overflow`.
    #[serde(default = "default_overflow_column")]
    pub overflow_column: String,
}

fn default_infer_records() -> usize {
    DEFAULT_INFER_RECORDS
}

fn default_overflow_column() -> String {
    DEFAULT_OVERFLOW_COLUMN.to_string()
}

impl Default for JsonlSourceOptions {
    fn default() -> Self {
        JsonlSourceOptions {
            infer_records: DEFAULT_INFER_RECORDS,
            new_fields: NewFields::default(),
            type_conflicts: TypeConflicts::default(),
            overflow_column: default_overflow_column(),
        }
    }
}

impl JsonlSourceOptions {
    fn policy(&self) -> DriftPolicy {
        DriftPolicy {
            new_fields: self.new_fields,
            type_conflicts: self.type_conflicts,
            overflow_column: self.overflow_column.clone(),
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
        if let Some(problem) = self.policy().overflow_problem() {
            errors.push("overflow_column", problem);
        }
    }

    fn build(&self, files: &FileSourceOptions) -> Result<JsonlSource> {
        let mut source = JsonlSource::new(&files.path).with_infer_records(self.infer_records);
        source.drift = self.policy();
        files.apply(&mut source.options)?;
        Ok(source)
    }
}
