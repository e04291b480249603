//! Configuration of the CSV source.

use std::path::PathBuf;

use cdp_core::{Error, Result, Source};
use serde::{Deserialize, Serialize};

use super::CsvSource;
use crate::sources::ColumnConfig;
use crate::sources::common::{DEFAULT_BATCH_SIZE, DEFAULT_INFER_RECORDS};

/// Reads CSV files.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// A `.csv` file, or a directory whose files (sorted by name, filtered by `extensions`)
    /// form one stream.
    pub path: PathBuf,
    /// Instance name, stamped into `_cdp_source`. Default `csv`.
    #[serde(default)]
    pub name: Option<String>,
    /// Stream name. Default: the file stem of a file, the name of a directory.
    #[serde(default)]
    pub stream: Option<String>,
    /// Explicit columns, in file order; with a header line, the header must name them.
    /// A row whose value does not parse as its column's type goes to the dead letters.
    /// Omit to infer the schema.
    #[serde(default)]
    pub schema: Option<Vec<ColumnConfig>>,
    /// Rows sampled to infer the schema (across files, in order). Default 1000.
    #[serde(default = "default_infer_records")]
    pub infer_records: usize,
    /// Maximum rows per batch; a checkpoint follows every batch. Default 8192.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Field delimiter, one ASCII character. Default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Quote character, one ASCII character. Default `"`.
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Whether each file starts with a header line. Default `true`.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Extensions read from a directory. Default `["csv"]`.
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
}

fn default_infer_records() -> usize {
    DEFAULT_INFER_RECORDS
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
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

fn ascii(name: &str, c: char) -> Result<u8> {
    u8::try_from(c)
        .ok()
        .filter(|b| b.is_ascii() && *b != b'\n' && *b != b'\r')
        .ok_or_else(|| {
            Error::Config(format!(
                "csv: `{name}` must be one ASCII character other than a line break, got {c:?}"
            ))
        })
}

impl CsvSourceConfig {
    /// A configuration reading `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvSourceConfig {
            path: path.into(),
            name: None,
            stream: None,
            schema: None,
            infer_records: DEFAULT_INFER_RECORDS,
            batch_size: DEFAULT_BATCH_SIZE,
            delimiter: default_delimiter(),
            quote: default_quote(),
            has_header: true,
            extensions: None,
        }
    }

    /// Validates the configuration and builds the source.
    pub fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.build_source()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_source(&self) -> Result<CsvSource> {
        let mut source = CsvSource::new(&self.path)
            .with_infer_records(self.infer_records)
            .with_batch_size(self.batch_size)
            .with_delimiter(ascii("delimiter", self.delimiter)?)
            .with_quote(ascii("quote", self.quote)?)
            .with_header(self.has_header);
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
