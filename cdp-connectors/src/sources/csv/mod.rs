//! The CSV source.

mod config;
mod format;
mod infer;
mod records;
mod typing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use cdp_core::{
    Catalog, ConnectorSpec, Error, ReadRequest, Result, Source, SourceEventStream, SyncMode,
    async_trait,
};

pub use config::{CsvSourceConfig, CsvSourceOptions, DuplicateHeaders};

use super::common::{Emitter, FileOptions, SchemaCell, read_stream};
use super::engine::read_file;
use super::schemaless::{DriftPolicy, NewFields, TypeConflicts};
use format::CsvFormat;
use infer::{Sampling, sample};
use records::Splitter;

const CONNECTOR: &str = "csv";

/// Reads CSV files into Arrow batches, one stream per file or directory.
///
/// Decoding runs on large chunks through arrow-csv's push decoder on a blocking thread; the
/// cursor is the byte offset reached in each file. A row that has the wrong number of fields,
/// a stray quote, invalid UTF-8 or a value its column cannot hold becomes a dead letter with
/// its file and line number; the other rows still come through. A last row without its line
/// break waits for it (unless [`with_wait_for_newline(false)`](Self::with_wait_for_newline)),
/// so a file still being written is never read half a row at a time.
///
/// Each file of a directory has its own header line (when `has_header`), and columns are
/// matched by name, so files may order them differently; a column a file lacks is null in
/// its rows, and a column the schema lacks is handled by
/// [`with_new_fields`](Self::with_new_fields) (added, kept in the overflow column, or its
/// rows dead-lettered). A duplicate column name in a header is an error unless
/// [`DuplicateHeaders::Suffix`] renames it.
///
/// Inference keeps what the text says: a column is numeric only when every sampled value
/// is a canonical number (`02134`, `1E5` and `0044123456` stay text); a timestamp with `Z`
/// or an offset is a zoned instant (UTC), one without is naive. A value that no longer fits
/// its column widens it (a decimal makes an integer column a float, anything else makes it
/// text) or is dead-lettered, as [`with_type_conflicts`](Self::with_type_conflicts) says.
///
/// ```no_run
/// use cdp_connectors::sources::CsvSource;
///
/// let source = CsvSource::new("exports/users.csv").with_delimiter(b';');
/// ```
#[derive(Debug, Clone)]
pub struct CsvSource {
    options: FileOptions,
    dialect: Dialect,
    settings: Settings,
    schema: SchemaCell,
}

/// How the file's bytes are split into fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    pub(crate) delimiter: u8,
    pub(crate) quote: u8,
    pub(crate) has_header: bool,
}

/// The CSV source's settings beyond the dialect.
#[derive(Debug, Clone)]
struct Settings {
    drift: DriftPolicy,
    duplicates: DuplicateHeaders,
    wait_for_newline: bool,
}

impl CsvSource {
    /// A source reading `path`: one `.csv` file, or every `.csv` file of a directory (sorted
    /// by name, including sub-folders except `_`/`.`-prefixed ones) as one stream.
    /// Comma-delimited with a header line unless configured otherwise; the schema is
    /// inferred unless given.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvSource {
            options: FileOptions::new(CONNECTOR, path.into(), &["csv"]),
            dialect: Dialect {
                delimiter: b',',
                quote: b'"',
                has_header: true,
            },
            settings: Settings {
                drift: DriftPolicy::default(),
                duplicates: DuplicateHeaders::default(),
                wait_for_newline: true,
            },
            schema: SchemaCell::default(),
        }
    }

    /// Sets the instance name (used as `_cdp_source`). Default `csv`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.options.name = name.into();
        self
    }

    /// Sets the stream name. Default: the file stem, or the directory name.
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.options.stream = Some(stream.into());
        self
    }

    /// Decodes with `schema` instead of inferring one. With a header, columns are matched
    /// by name; without one, by position. Its columns keep their types.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.options.schema = Some(schema);
        self.schema = SchemaCell::default();
        self
    }

    /// Sets how many rows schema inference samples (across files, in order). Default 1000.
    pub fn with_infer_records(mut self, records: usize) -> Self {
        self.options.infer_records = records;
        self
    }

    /// Sets the maximum rows per batch. Default 8192.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.options.batch_size = rows;
        self
    }

    /// Sets the field delimiter. Default `,`.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.dialect.delimiter = delimiter;
        self.schema = SchemaCell::default();
        self
    }

    /// Sets the quote character. Default `"`.
    pub fn with_quote(mut self, quote: u8) -> Self {
        self.dialect.quote = quote;
        self.schema = SchemaCell::default();
        self
    }

    /// Sets whether each file starts with a header line. Default `true`.
    pub fn with_header(mut self, has_header: bool) -> Self {
        self.dialect.has_header = has_header;
        self.schema = SchemaCell::default();
        self
    }

    /// Sets the file extensions read from a directory (without the dot).
    pub fn with_extensions<I, S>(mut self, extensions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.extensions = extensions.into_iter().map(Into::into).collect();
        self
    }

    /// Sets what happens to a column the schema has no field for. Default
    /// [`NewFields::Evolve`].
    pub fn with_new_fields(mut self, new_fields: NewFields) -> Self {
        self.settings.drift.new_fields = new_fields;
        self.schema = SchemaCell::default();
        self
    }

    /// Sets what happens to a value its column cannot hold. Default
    /// [`TypeConflicts::Widen`].
    pub fn with_type_conflicts(mut self, type_conflicts: TypeConflicts) -> Self {
        self.settings.drift.type_conflicts = type_conflicts;
        self
    }

    /// Sets the name of the overflow column (with [`NewFields::Overflow`]). Default
    /// `_overflow`.
    pub fn with_overflow_column(mut self, name: impl Into<String>) -> Self {
        self.settings.drift.overflow_column = name.into();
        self.schema = SchemaCell::default();
        self
    }

    /// Sets what a header naming a column twice does. Default [`DuplicateHeaders::Error`].
    pub fn with_duplicate_headers(mut self, duplicates: DuplicateHeaders) -> Self {
        self.settings.duplicates = duplicates;
        self.schema = SchemaCell::default();
        self
    }

    /// Sets whether a last row without its line break waits for it (`true`, the default:
    /// the file may still be written) or is read as complete (for exports that end without
    /// one).
    pub fn with_wait_for_newline(mut self, wait: bool) -> Self {
        self.settings.wait_for_newline = wait;
        self
    }

    /// The schema rows start out with: the given one, or one inferred from the first rows
    /// (blocking file I/O; kept for the life of this source), plus the overflow column if
    /// the source has one. A read may add columns as it meets new ones.
    pub fn schema(&self) -> Result<SchemaRef> {
        self.validate()?;
        resolve_schema(&self.options, self.dialect, &self.settings, &self.schema)
    }

    fn validate(&self) -> Result<()> {
        self.options.validate()?;
        self.settings.drift.validate(CONNECTOR)
    }
}

impl Settings {
    fn sampling(&self, dialect: Dialect) -> Sampling {
        Sampling {
            dialect,
            duplicates: self.duplicates,
            read_unterminated: !self.wait_for_newline,
        }
    }
}

fn resolve_schema(
    options: &FileOptions,
    dialect: Dialect,
    settings: &Settings,
    cell: &SchemaCell,
) -> Result<SchemaRef> {
    cell.get_or_try_init(|| {
        let schema = match &options.schema {
            Some(schema) => schema.clone(),
            None => infer_schema(options, dialect, settings)?,
        };
        settings.drift.with_overflow(CONNECTOR, schema)
    })
}

/// Infers a schema from the header and first `infer_records` rows of the files, in order:
/// every column any sampled file names, in first-seen order, typed by [`typing`]'s rules.
fn infer_schema(options: &FileOptions, dialect: Dialect, settings: &Settings) -> Result<SchemaRef> {
    let files = options.list_files()?;
    let splitter = Splitter::new(dialect);
    let sample = sample(
        &files,
        settings.sampling(dialect),
        options.infer_records,
        &splitter,
    )?;
    let schema = sample.schema();
    if schema.fields().is_empty() {
        return Err(Error::Config(format!(
            "csv: found no rows to infer a schema from in `{}`; add data or give an explicit \
             `schema`",
            options.path.display()
        )));
    }
    Ok(Arc::new(schema))
}

#[async_trait]
impl Source for CsvSource {
    fn name(&self) -> &str {
        &self.options.name
    }

    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: CONNECTOR.into(),
            description: "CSV files, read incrementally by byte offset".into(),
            sync_modes: vec![SyncMode::FullRefresh, SyncMode::IncrementalAppend],
        }
    }

    async fn discover(&self) -> Result<Catalog> {
        self.validate()?;
        let (options, dialect, settings, cell) = (
            self.options.clone(),
            self.dialect,
            self.settings.clone(),
            self.schema.clone(),
        );
        let schema = tokio::task::spawn_blocking(move || {
            resolve_schema(&options, dialect, &settings, &cell)
        })
        .await
        .map_err(|e| Error::external(CONNECTOR, e))??;
        self.options.catalog(schema)
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        self.settings.drift.validate(CONNECTOR)?;
        let (options, dialect, settings, cell) = (
            self.options.clone(),
            self.dialect,
            self.settings.clone(),
            self.schema.clone(),
        );
        read_stream(options, request, move |options| {
            let schema = resolve_schema(options, dialect, &settings, &cell)?;
            let mut format = CsvFormat::new(
                schema,
                options.schema.is_some(),
                settings.drift.clone(),
                settings.sampling(dialect),
                options.infer_records,
            );
            let batch_size = options.batch_size;
            let mut restored = false;
            Ok(move |out: &mut Emitter, key: &str, path: &Path| {
                if !restored {
                    if let Some(state) = out.schema_state() {
                        format.restore(state);
                    }
                    restored = true;
                }
                read_file(&mut format, out, key, path, batch_size)
            })
        })
    }
}
