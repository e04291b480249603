//! Configuration of the CSV source.

use cdp_core::Result;
use serde::{Deserialize, Serialize};

use super::CsvSource;
use crate::config::ConfigErrors;
use crate::sources::common::DEFAULT_INFER_RECORDS;
use crate::sources::file_config::{FileSourceConfig, FileSourceFormat, FileSourceOptions, sealed};

/// Reads CSV files: the keys of every file source ([`FileSourceOptions`]) and the CSV
/// source's own ([`CsvSourceOptions`]).
///
/// ```toml
/// [sources.users]
/// type = "csv"
/// path = "exports/users.csv"     # a file, or a directory of .csv files
/// delimiter = ";"
/// schema = [                     # columns in file order; omit to infer
///   { name = "id", type = "int64", nullable = false },
///   { name = "email", type = "utf8" },
/// ]
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
    /// Whether each file starts with a header line. Default `true`.
    #[serde(default = "default_true")]
    pub has_header: bool,
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
    }

    fn build(&self, files: &FileSourceOptions) -> Result<CsvSource> {
        let byte = |key: &str, c: char| {
            ascii(c).ok_or_else(|| ConfigErrors::at(key, "must be one ASCII character"))
        };
        let mut source = CsvSource::new(&files.path)
            .with_infer_records(self.infer_records)
            .with_delimiter(byte("delimiter", self.delimiter)?)
            .with_quote(byte("quote", self.quote)?)
            .with_header(self.has_header);
        files.apply(&mut source.options)?;
        Ok(source)
    }
}
