//! The CSV source.

mod config;

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_csv::reader::{Decoder, Format, ReaderBuilder};
use cdp_core::{
    Catalog, ConnectorSpec, Error, ReadRequest, Result, Source, SourceEventStream, SyncMode,
    async_trait,
};

pub use config::{CsvSourceConfig, CsvSourceOptions};

use super::common::{Emitter, FileOptions, SchemaCell, open_file, read_stream};
use super::engine::{RecordFormat, read_file, trim_terminator};

const CONNECTOR: &str = "csv";

/// Reads CSV files into Arrow batches, one stream per file or directory.
///
/// Decoding runs on large chunks through arrow-csv's push decoder on a blocking thread; the
/// cursor is the byte offset reached in each file. A row that has the wrong number of fields
/// or a value that does not parse as its column's type becomes a dead letter with its file
/// and line number; the other rows still come through. Each file of a directory has its own
/// header line (when `has_header`); with an explicit schema the header must name its
/// columns in order.
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
    schema: SchemaCell,
}

#[derive(Debug, Clone, Copy)]
struct Dialect {
    delimiter: u8,
    quote: u8,
    has_header: bool,
}

impl CsvSource {
    /// A source reading `path`: one `.csv` file, or every `.csv` file of a directory (sorted
    /// by name, including sub-folders except `_`/`.`-prefixed ones) as one stream. Comma-delimited with a header line unless configured
    /// otherwise; the schema is inferred unless given.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvSource {
            options: FileOptions::new(CONNECTOR, path.into(), &["csv"]),
            dialect: Dialect {
                delimiter: b',',
                quote: b'"',
                has_header: true,
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

    /// Decodes with `schema` (columns in file order) instead of inferring one.
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
        self
    }

    /// Sets the quote character. Default `"`.
    pub fn with_quote(mut self, quote: u8) -> Self {
        self.dialect.quote = quote;
        self
    }

    /// Sets whether each file starts with a header line. Default `true`.
    pub fn with_header(mut self, has_header: bool) -> Self {
        self.dialect.has_header = has_header;
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

    /// The schema rows are decoded with: the given one, or one inferred from the first rows
    /// (blocking file I/O; kept for the life of this source).
    pub fn schema(&self) -> Result<SchemaRef> {
        self.options.validate()?;
        resolve_schema(&self.options, self.dialect, &self.schema)
    }
}

fn resolve_schema(options: &FileOptions, dialect: Dialect, cell: &SchemaCell) -> Result<SchemaRef> {
    cell.get_or_try_init(|| match &options.schema {
        Some(schema) => Ok(schema.clone()),
        None => infer_schema(options, dialect),
    })
}

fn format(dialect: Dialect) -> Format {
    Format::default()
        .with_header(dialect.has_header)
        .with_delimiter(dialect.delimiter)
        .with_quote(dialect.quote)
}

/// Infers a schema from the first `infer_records` rows of the files, in order, merging the
/// per-file results.
fn infer_schema(options: &FileOptions, dialect: Dialect) -> Result<SchemaRef> {
    let mut remaining = options.infer_records;
    let mut schemas = Vec::new();
    for (_, path) in options.list_files()? {
        let file = open_file(&path)?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            continue;
        }
        let (schema, read) = format(dialect)
            .infer_schema(std::io::BufReader::new(file), Some(remaining))
            .map_err(|e| {
                Error::Config(format!(
                    "csv: cannot infer a schema from `{}`: {e}",
                    path.display()
                ))
            })?;
        schemas.push(schema);
        remaining = remaining.saturating_sub(read);
        if remaining == 0 {
            break;
        }
    }
    if schemas.is_empty() {
        return Err(Error::Config(format!(
            "csv: found no rows to infer a schema from in `{}`; add data or give an explicit \
             `schema`",
            options.path.display()
        )));
    }
    let schema = Schema::try_merge(schemas)
        .map_err(|e| Error::Config(format!("csv: files disagree on column types: {e}")))?;
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
        self.options.validate()?;
        let (options, dialect, cell) = (self.options.clone(), self.dialect, self.schema.clone());
        let schema = tokio::task::spawn_blocking(move || resolve_schema(&options, dialect, &cell))
            .await
            .map_err(|e| Error::external(CONNECTOR, e))??;
        self.options.catalog(schema)
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        let (options, dialect, cell) = (self.options.clone(), self.dialect, self.schema.clone());
        read_stream(options, request, move |options| {
            let schema = resolve_schema(options, dialect, &cell)?;
            let format = CsvFormat {
                schema,
                dialect,
                explicit: options.schema.is_some(),
            };
            let batch_size = options.batch_size;
            Ok(move |out: &mut Emitter, key: &str, path: &Path| {
                read_file(&format, out, key, path, batch_size)
            })
        })
    }
}

/// CSV framing and decoding for the byte-offset engine.
#[derive(Debug)]
struct CsvFormat {
    schema: SchemaRef,
    dialect: Dialect,
    /// Whether the schema was given, so the header must match it.
    explicit: bool,
}

/// arrow-csv's decoder does not say how many rows it holds, only how many more it takes.
#[derive(Debug)]
struct CsvDecoder {
    inner: Decoder,
    batch_size: usize,
}

impl CsvFormat {
    /// Where the first record of `bytes` (starting at a record boundary) ends, if it does.
    fn first_record_end(&self, bytes: &[u8]) -> Option<usize> {
        let mut quoted = false;
        for (i, b) in bytes.iter().enumerate() {
            if *b == self.dialect.quote {
                quoted = !quoted;
            } else if *b == b'\n' && !quoted {
                return Some(i + 1);
            }
        }
        None
    }

    fn check_header(&self, header: &[u8], path: &Path) -> Result<()> {
        if !self.explicit {
            return Ok(());
        }
        let (names, _) = format(self.dialect)
            .infer_schema(header, Some(0))
            .map_err(|e| {
                Error::Config(format!(
                    "csv: cannot read the header of `{}`: {e}",
                    path.display()
                ))
            })?;
        let found: Vec<&str> = names.fields().iter().map(|f| f.name().as_str()).collect();
        let expected: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        if found != expected {
            return Err(Error::Config(format!(
                "csv: the header of `{}` names columns {found:?} but the schema expects \
                 {expected:?} (in that order)",
                path.display()
            )));
        }
        Ok(())
    }
}

impl RecordFormat for CsvFormat {
    type Decoder = CsvDecoder;

    fn decoder(&self, batch_size: usize) -> Result<CsvDecoder> {
        let inner = ReaderBuilder::new(self.schema.clone())
            .with_header(false)
            .with_delimiter(self.dialect.delimiter)
            .with_quote(self.dialect.quote)
            .with_batch_size(batch_size)
            .build_decoder();
        Ok(CsvDecoder { inner, batch_size })
    }

    fn decode(&self, decoder: &mut CsvDecoder, buf: &[u8]) -> Result<usize, ArrowError> {
        decoder.inner.decode(buf)
    }

    fn buffered(&self, decoder: &CsvDecoder) -> usize {
        decoder.batch_size - decoder.inner.capacity()
    }

    fn flush(&self, decoder: &mut CsvDecoder) -> Result<Option<RecordBatch>, ArrowError> {
        decoder.inner.flush()
    }

    fn finish(&self, decoder: &mut CsvDecoder) -> Result<(), ArrowError> {
        // An empty slice is how csv-core learns the input ended.
        decoder.inner.decode(&[]).map(|_| ())
    }

    fn feed_limit(&self, buf: &[u8], _fed: usize, _eof: bool) -> usize {
        // The decoder keeps a record cut by the chunk boundary and completes it later.
        buf.len()
    }

    fn records(&self, region: &[u8], eof: bool) -> (Vec<Range<usize>>, usize) {
        let mut records = Vec::new();
        let mut start = 0;
        while let Some(len) = self.first_record_end(&region[start..]) {
            records.push(start..start + len);
            start += len;
        }
        if eof && start < region.len() {
            records.push(start..region.len());
            start = region.len();
        }
        (records, start)
    }

    fn check(&self, record: &[u8], _batch_size: usize) -> std::result::Result<usize, String> {
        let mut probe = self.decoder(1).map_err(|e| e.to_string())?;
        let record = trim_terminator(record);
        probe.inner.decode(record).map_err(|e| e.to_string())?;
        self.finish(&mut probe).map_err(|e| e.to_string())?;
        let batch = probe.inner.flush().map_err(|e| e.to_string())?;
        Ok(batch.map_or(0, |b| b.num_rows()))
    }

    fn start(&self, file: &mut std::fs::File, path: &Path, offset: u64) -> Result<u64> {
        if offset > 0 || !self.dialect.has_header {
            return Ok(offset);
        }
        let context = || path.display().to_string();
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(context(), e))?;
        let mut header = Vec::new();
        loop {
            let read = (&mut *file)
                .take(64 * 1024)
                .read_to_end(&mut header)
                .map_err(|e| Error::io(context(), e))?;
            if let Some(end) = self.first_record_end(&header) {
                self.check_header(&header[..end], path)?;
                return Ok(end as u64);
            }
            if read == 0 {
                self.check_header(&header, path)?;
                return Ok(header.len() as u64);
            }
        }
    }
}
