//! Configuration of the CSV source.

use cdp_core::Result;
use serde::{Deserialize, Serialize};

use super::CsvSource;
use crate::config::ConfigErrors;
use crate::sources::common::DEFAULT_INFER_RECORDS;
use crate::sources::file_config::{FileSourceConfig, FileSourceFormat, FileSourceOptions, sealed};
use crate::sources::schemaless::{DEFAULT_OVERFLOW_COLUMN, DriftPolicy, NewFields, TypeConflicts};

/// Reads CSV files: the keys of every file source ([`FileSourceOptions`]) and the CSV
/// source's own ([`CsvSourceOptions`]).
///
/// ```toml
/// [sources.users]
/// type = "csv"
/// path = "exports/users.csv"     # a file, or a directory of .csv files
/// delimiter = ";"
/// schema = [                     # matched to the header by name; omit to infer
///   { name = "id", type = "int64", nullable = false },
///   { name = "email", type = "utf8" },
/// ]
/// new_fields = "evolve"          # a column the schema lacks: or "overflow", "dead_letter"
/// type_conflicts = "widen"       # a value its column cannot hold: or "dead_letter"
/// duplicate_headers = "error"    # or "suffix": `email`, `email_2`
/// wait_for_newline = true        # false: read a last row that has no line break
/// ```
pub type CsvSourceConfig = FileSourceConfig<CsvSourceOptions>;

/// The CSV source's own keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceOptions {
    /// Rows sampled to infer the schema (across files, in order) when no `schema` is given.
    /// Default 1000.
    #[serde(default = "default_infer_records")]
    pub infer_records: usize,
    /// Field delimiter, one ASCII character. Default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Quote character, one ASCII character. Default `"`.
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Whether each file starts with a header line. Default `true`. Columns are matched
    /// to the schema by header name; without a header, by position.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// What happens to a column (a header name) the schema has no field for: `evolve`
    /// adds it, typed from the file's first rows, a schema change the destinations follow;
    /// `overflow` keeps its values, as a JSON object per row (fields past the header's
    /// keyed by position), in the `overflow_column`; `dead_letter` sends the rows that have
    /// a value in it to the dead letters. Default `evolve`.
    #[serde(default)]
    pub new_fields: NewFields,
    /// What happens to a value its column cannot hold: `widen` makes an integer column a
    /// float for a decimal and any column text for anything else (columns of an explicit
    /// `schema` keep their types); `dead_letter` sends the row to the dead letters.
    /// Default `widen`.
    #[serde(default)]
    pub type_conflicts: TypeConflicts,
    /// The text column of `new_fields = "overflow"`. Default `_overflow`.
    #[serde(default = "default_overflow_column")]
    pub overflow_column: String,
    /// What a header naming a column twice does: `error` stops the read with the file and
    /// both positions; `suffix` reads the repeats as `email_2`, `email_3`, ….
    /// Default `error`.
    #[serde(default)]
    pub duplicate_headers: DuplicateHeaders,
    /// Whether a last row without its line break waits until the break is written (the
    /// file may still be written to), or is read as complete. Default `true`.
    #[serde(default = "default_true")]
    pub wait_for_newline: bool,
}

/// What a CSV header naming a column twice does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateHeaders {
    /// Stop the read with an error naming the file, the column and both positions.
    #[default]
    Error,
    /// Read the second `email` as `email_2`, the third as `email_3` (skipping names the
    /// header already has), deterministically.
    Suffix,
}

fn default_overflow_column() -> String {
    DEFAULT_OVERFLOW_COLUMN.to_string()
}

fn default_infer_records() -> usize {
    DEFAULT_INFER_RECORDS
}

fn default_delimiter() -> char {
    ','
}

fn default_quote() -> char {
    '"'
}

fn default_true() -> bool {
    true
}

impl Default for CsvSourceOptions {
    fn default() -> Self {
        CsvSourceOptions {
            infer_records: DEFAULT_INFER_RECORDS,
            delimiter: default_delimiter(),
            quote: default_quote(),
            has_header: true,
            new_fields: NewFields::default(),
            type_conflicts: TypeConflicts::default(),
            overflow_column: default_overflow_column(),
            duplicate_headers: DuplicateHeaders::default(),
            wait_for_newline: true,
        }
    }
}

impl CsvSourceOptions {
    fn policy(&self) -> DriftPolicy {
        DriftPolicy {
            new_fields: self.new_fields,
            type_conflicts: self.type_conflicts,
            overflow_column: self.overflow_column.clone(),
        }
    }
}

/// `c` as the byte the reader takes, if it is one ASCII character other than a line break.
fn ascii(c: char) -> Option<u8> {
    u8::try_from(c)
        .ok()
        .filter(|b| b.is_ascii() && *b != b'\n' && *b != b'\r')
}

impl sealed::Sealed for CsvSourceOptions {}

impl FileSourceFormat for CsvSourceOptions {
    type Source = CsvSource;

    fn check(&self, files: &FileSourceOptions, errors: &mut ConfigErrors) {
        if self.infer_records == 0 && files.schema.is_none() {
            errors.push(
                "infer_records",
                "must be at least 1 when no schema is given",
            );
        }
        for (key, c) in [("delimiter", self.delimiter), ("quote", self.quote)] {
            if ascii(c).is_none() {
                errors.push(
                    key,
                    format!("must be one ASCII character other than a line break, got {c:?}"),
                );
            }
        }
        if self.delimiter == self.quote {
            errors.push(
                "quote",
                format!("must differ from `delimiter` (both {:?})", self.quote),
            );
        }
        if let Some(problem) = self.policy().overflow_problem() {
            errors.push("overflow_column", problem);
        }
    }

    fn build(&self, files: &FileSourceOptions) -> Result<CsvSource> {
        let byte = |key: &str, c: char| {
            ascii(c).ok_or_else(|| ConfigErrors::at(key, "must be one ASCII character"))
        };
        let mut source = CsvSource::new(&files.path)
            .with_infer_records(self.infer_records)
            .with_delimiter(byte("delimiter", self.delimiter)?)
            .with_quote(byte("quote", self.quote)?)
            .with_header(self.has_header)
            .with_duplicate_headers(self.duplicate_headers)
            .with_wait_for_newline(self.wait_for_newline);
        source.settings.drift = self.policy();
        files.apply(&mut source.options)?;
        Ok(source)
    }
}
