//! The configuration every file source shares: [`FileSourceOptions`], composed with each
//! format's own keys into a [`FileSourceConfig`].

use std::fmt;
use std::path::PathBuf;

use cdp_core::{Result, Source};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::ColumnConfig;
use super::common::{DEFAULT_BATCH_SIZE, FileOptions};
use super::schema::check_columns;
use crate::config::{BuildSource, ConfigErrors, from_table_parts};

/// The keys every file source (JSONL, CSV, Parquet) has, written once here and composed
/// into each one's config. They sit in the source's table beside the format's own keys:
///
/// ```toml
/// [sources.events]
/// type = "jsonl"
/// path = "data/events/"     # a file, or a directory whose files form one stream
/// name = "web-events"       # stamped into `_cdp_source`; default: the type
/// stream = "events"         # default: the file stem, or the directory's name
/// batch_size = 8192
/// extensions = ["jsonl"]    # read from a directory; default: the format's
/// schema = [                # omit to infer (JSONL, CSV) or use the file's (Parquet)
///   { name = "user_id", type = "utf8", nullable = false },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceOptions {
    /// A file, or a directory whose files (sorted by name, filtered by `extensions`, in
    /// sub-folders too except `_`/`.`-prefixed ones) form one stream.
    pub path: PathBuf,
    /// Instance name, stamped into `_cdp_source`. Default: the connector type (`jsonl`,
    /// `csv`, `parquet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Stream name. Default: the file stem of a file, the name of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Explicit columns. JSONL and CSV: the columns keep these types (a value that does not
    /// fit sends its record to the dead letters), keys or columns not listed are handled by
    /// `new_fields` (added, kept in the overflow column, or dead-lettered; never dropped);
    /// CSV columns are matched to the header by name, or by position without one. Parquet:
    /// the columns read, cast to these types. Omit to infer the schema (JSONL, CSV) or take
    /// the first file's (Parquet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<ColumnConfig>>,
    /// Maximum rows per batch; a checkpoint follows every batch. Default 8192.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Extensions (without the dot) read from a directory. Default: the format's (`jsonl`,
    /// `ndjson`, `json`; `csv`; `parquet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Vec<String>>,
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl FileSourceOptions {
    /// Options reading `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSourceOptions {
            path: path.into(),
            name: None,
            stream: None,
            schema: None,
            batch_size: DEFAULT_BATCH_SIZE,
            extensions: None,
        }
    }

    /// Records what is wrong with the values, with their key paths.
    fn check(&self, errors: &mut ConfigErrors) {
        if self.path.as_os_str().is_empty() {
            errors.push("path", "must name a file or a directory");
        }
        for (key, value) in [("name", &self.name), ("stream", &self.stream)] {
            if value.as_deref() == Some("") {
                errors.push(key, "must not be empty; omit it for the default");
            }
        }
        if self.batch_size == 0 {
            errors.push("batch_size", "must be at least 1");
        }
        if let Some(columns) = &self.schema {
            check_columns(columns, errors);
        }
        if let Some(extensions) = &self.extensions {
            if extensions.is_empty() {
                errors.push(
                    "extensions",
                    "lists no extension, so no file would be read; omit it for the default",
                );
            }
            for (i, extension) in extensions.iter().enumerate() {
                if extension.is_empty() {
                    errors.push(format!("extensions[{i}]"), "must not be empty");
                } else if let Some(bare) = extension.strip_prefix('.') {
                    errors.push(
                        format!("extensions[{i}]"),
                        format!("write `{bare}`, without the dot"),
                    );
                }
            }
        }
    }

    /// Applies the options (but `path`, which the source was made with) to a source's
    /// runtime options.
    pub(crate) fn apply(&self, options: &mut FileOptions) -> Result<()> {
        if let Some(name) = &self.name {
            options.name = name.clone();
        }
        options.stream = self.stream.clone();
        options.batch_size = self.batch_size;
        if let Some(columns) = &self.schema {
            options.schema = Some(ColumnConfig::to_schema(columns)?);
        }
        if let Some(extensions) = &self.extensions {
            options.extensions = extensions.clone();
        }
        options.validate()
    }
}

/// The keys of one file format, beside the [`FileSourceOptions`] every file source has;
/// implemented by [`JsonlSourceOptions`](super::JsonlSourceOptions),
/// [`CsvSourceOptions`](super::CsvSourceOptions) and
/// [`ParquetSourceOptions`](super::ParquetSourceOptions).
pub trait FileSourceFormat:
    fmt::Debug
    + Clone
    + PartialEq
    + Default
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// The source built.
    type Source: Source + 'static;

    /// Records what is wrong with the format's values (given the shared ones), with their
    /// key paths.
    fn check(&self, files: &FileSourceOptions, errors: &mut ConfigErrors);

    /// Builds the source from checked values.
    fn build(&self, files: &FileSourceOptions) -> Result<Self::Source>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A file source's configuration: the keys every file source has ([`FileSourceOptions`],
/// in `files`) and the format's own (in `format`), read from one flat table. Used as
/// [`JsonlSourceConfig`](super::JsonlSourceConfig),
/// [`CsvSourceConfig`](super::CsvSourceConfig) and
/// [`ParquetSourceConfig`](super::ParquetSourceConfig).
///
/// Deserializing refuses unknown keys, and the error names the key path of each problem
/// (one per line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileSourceConfig<F> {
    /// The keys every file source has.
    #[serde(flatten)]
    pub files: FileSourceOptions,
    /// The format's own keys.
    #[serde(flatten)]
    pub format: F,
}

impl<F: FileSourceFormat> FileSourceConfig<F> {
    /// A configuration reading `path` with every default.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSourceConfig {
            files: FileSourceOptions::new(path),
            format: F::default(),
        }
    }

    /// Reads one table (without `type`): every unknown key and the first bad value of each
    /// part, with their key paths.
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        let (files, format) = from_table_parts::<FileSourceOptions, F>(table)?;
        Ok(FileSourceConfig { files, format })
    }

    /// Sets the instance name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.files.name = Some(name.into());
        self
    }

    /// Sets the stream name.
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.files.stream = Some(stream.into());
        self
    }

    /// Sets the maximum rows per batch.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.files.batch_size = rows;
        self
    }

    /// Sets explicit columns.
    pub fn with_schema(mut self, columns: Vec<ColumnConfig>) -> Self {
        self.files.schema = Some(columns);
        self
    }

    /// Checks the values without touching the file system; every problem with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        self.files.check(&mut errors);
        self.format.check(&self.files, &mut errors);
        errors.into_result()
    }

    /// Validates the configuration and builds the source (opening no file).
    pub fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.build_source()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_source(&self) -> Result<F::Source> {
        self.validate()?;
        self.format.build(&self.files)
    }
}

impl<F: FileSourceFormat> BuildSource for FileSourceConfig<F> {
    fn validate(&self) -> Result<(), ConfigErrors> {
        FileSourceConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        FileSourceConfig::build(self)
    }
}

impl<'de, F: FileSourceFormat> Deserialize<'de> for FileSourceConfig<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Value::deserialize(deserializer)?;
        FileSourceConfig::from_table(&table).map_err(serde::de::Error::custom)
    }
}
