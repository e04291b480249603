//! The JSONL (newline-delimited JSON) source.

mod config;

use std::io::BufRead;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_json::reader::{Decoder, ReaderBuilder, infer_json_schema_from_iterator};
use cdp_core::{
    Catalog, ConnectorSpec, Error, ReadRequest, Result, Source, SourceEventStream, SyncMode,
    async_trait,
};

pub use config::{JsonlSourceConfig, JsonlSourceOptions};

use super::common::{Emitter, FileOptions, SchemaCell, open_file, read_stream};
use super::engine::{RecordFormat, read_file};

const CONNECTOR: &str = "jsonl";
/// Values one line may hold when it is decoded on its own (one is the norm for JSONL).
const MAX_VALUES_PER_LINE: usize = 64;

/// Reads newline-delimited JSON files into Arrow batches, one stream per file or directory.
///
/// Decoding runs on large chunks through arrow-json's push decoder on a blocking thread;
/// the cursor is the byte offset reached in each file, so a resume continues exactly where
/// the last checkpoint left off, including in files that grew since. A line that is not
/// valid JSON, or whose values do not fit the schema, becomes a dead letter with its file and
/// line number; the other lines still come through.
///
/// One JSON value per line: a value spread over several lines is dead-lettered line by line.
/// A last line without its newline is read only once it is a complete value, so a file still
/// being written is never read half a record at a time.
///
/// ```no_run
/// use cdp_connectors::sources::JsonlSource;
///
/// let source = JsonlSource::new("data/events/")
///     .with_stream("events")
///     .with_batch_size(4096);
/// ```
#[derive(Debug, Clone)]
pub struct JsonlSource {
    options: FileOptions,
    schema: SchemaCell,
}

impl JsonlSource {
    /// A source reading `path`: one `.jsonl`/`.ndjson`/`.json` file, or every such file of a
    /// directory (sorted by name, including sub-folders except `_`/`.`-prefixed ones) as one
    /// stream. The schema is inferred unless given.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonlSource {
            options: FileOptions::new(CONNECTOR, path.into(), &["jsonl", "ndjson", "json"]),
            schema: SchemaCell::default(),
        }
    }

    /// Sets the instance name (used as `_cdp_source`). Default `jsonl`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.options.name = name.into();
        self
    }

    /// Sets the stream name. Default: the file stem, or the directory name.
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.options.stream = Some(stream.into());
        self
    }

    /// Decodes with `schema` instead of inferring one. Keys not in it are ignored.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.options.schema = Some(schema);
        self.schema = SchemaCell::default();
        self
    }

    /// Sets how many records schema inference samples (across files, in order). Default 1000.
    pub fn with_infer_records(mut self, records: usize) -> Self {
        self.options.infer_records = records;
        self
    }

    /// Sets the maximum rows per batch. Default 8192.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.options.batch_size = rows;
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

    /// The schema batches are decoded with: the given one, or one inferred from the first
    /// records (blocking file I/O; kept for the life of this source).
    pub fn schema(&self) -> Result<SchemaRef> {
        self.options.validate()?;
        resolve_schema(&self.options, &self.schema)
    }
}

fn resolve_schema(options: &FileOptions, cell: &SchemaCell) -> Result<SchemaRef> {
    cell.get_or_try_init(|| match &options.schema {
        Some(schema) => Ok(schema.clone()),
        None => infer_schema(options),
    })
}

/// Infers a schema from the first `infer_records` JSON objects of the files, in order,
/// skipping lines that do not parse (they will be dead-lettered when read).
fn infer_schema(options: &FileOptions) -> Result<SchemaRef> {
    let mut values = Vec::new();
    'files: for (_, path) in options.list_files()? {
        let mut reader = std::io::BufReader::new(open_file(&path)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(path.display().to_string(), e))?;
            if n == 0 {
                break;
            }
            if let Ok(value @ serde_json::Value::Object(_)) = serde_json::from_slice(&line) {
                values.push(value);
                if values.len() >= options.infer_records {
                    break 'files;
                }
            }
        }
    }
    if values.is_empty() {
        return Err(Error::Config(format!(
            "jsonl: found no JSON object to infer a schema from in `{}`; add data or give an \
             explicit `schema`",
            options.path.display()
        )));
    }
    let schema: Schema = infer_json_schema_from_iterator(values.iter().map(Ok))?;
    Ok(Arc::new(schema))
}

#[async_trait]
impl Source for JsonlSource {
    fn name(&self) -> &str {
        &self.options.name
    }

    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: CONNECTOR.into(),
            description: "Newline-delimited JSON files, read incrementally by byte offset".into(),
            sync_modes: vec![SyncMode::FullRefresh, SyncMode::IncrementalAppend],
        }
    }

    async fn discover(&self) -> Result<Catalog> {
        self.options.validate()?;
        let (options, cell) = (self.options.clone(), self.schema.clone());
        let schema = tokio::task::spawn_blocking(move || resolve_schema(&options, &cell))
            .await
            .map_err(|e| Error::external(CONNECTOR, e))??;
        self.options.catalog(schema)
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        let (options, cell) = (self.options.clone(), self.schema.clone());
        read_stream(options, request, move |options| {
            let format = JsonlFormat::new(resolve_schema(options, &cell)?);
            let batch_size = options.batch_size;
            Ok(move |out: &mut Emitter, key: &str, path: &Path| {
                read_file(&format, out, key, path, batch_size)
            })
        })
    }
}

const TRAILING_COMMA: &str = "invalid JSON: a comma before a closing `}` or `]`";

/// Whether JSON lines have a comma right before a closing `}` or `]` (whitespace, line
/// breaks included, between them), outside strings. Fast path: find the closing brackets
/// with `memchr` and look just behind each; only a comma found there has its line scanned
/// for strings, so valid input costs little more than the bracket search.
fn has_trailing_comma(json: &[u8]) -> bool {
    memchr::memchr2_iter(b'}', b']', json).any(|close| {
        let before = json[..close]
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
        match before {
            Some(comma) if json[comma] == b',' => {
                // The line holding the comma, from its start (a raw newline cannot be
                // inside a JSON string, so every line starts outside one).
                let start = json[..comma]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                outside_strings(&json[start..=comma])
            }
            _ => false,
        }
    })
}

/// Whether the last byte of `line` is outside any string literal of the line.
fn outside_strings(line: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &b in &line[..line.len().saturating_sub(1)] {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        }
    }
    !in_string
}

/// JSONL framing and decoding for the byte-offset engine.
#[derive(Debug)]
pub(crate) struct JsonlFormat {
    schema: SchemaRef,
}

impl JsonlFormat {
    pub(crate) fn new(schema: SchemaRef) -> Self {
        JsonlFormat { schema }
    }

    /// Whether a last line without its newline holds a whole value (or is plainly broken,
    /// which the slow path will report); `false` while it may still be being written.
    fn tail_is_complete(&self, tail: &[u8]) -> bool {
        if tail.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        let Ok(mut probe) = ReaderBuilder::new(self.schema.clone()).build_decoder() else {
            return true;
        };
        match probe.decode(tail) {
            Ok(_) => !probe.has_partial_record(),
            Err(_) => true,
        }
    }
}

impl RecordFormat for JsonlFormat {
    type Decoder = Decoder;

    fn decoder(&self, batch_size: usize) -> Result<Decoder> {
        Ok(ReaderBuilder::new(self.schema.clone())
            .with_batch_size(batch_size)
            .build_decoder()?)
    }

    fn decode(&self, decoder: &mut Decoder, buf: &[u8]) -> Result<usize, ArrowError> {
        // arrow-json's tape decoder accepts a comma before `}` or `]`; JSON does not. A
        // region holding one goes the line-by-line way, where `check` names the line.
        if has_trailing_comma(buf) {
            return Err(ArrowError::JsonError(TRAILING_COMMA.into()));
        }
        decoder.decode(buf)
    }

    fn buffered(&self, decoder: &Decoder) -> usize {
        decoder.len()
    }

    fn flush(&self, decoder: &mut Decoder) -> Result<Option<RecordBatch>, ArrowError> {
        decoder.flush()
    }

    fn finish(&self, decoder: &mut Decoder) -> Result<(), ArrowError> {
        if decoder.has_partial_record() {
            return Err(ArrowError::JsonError(
                "line ends inside a JSON value".into(),
            ));
        }
        Ok(())
    }

    fn feed_limit(&self, buf: &[u8], fed: usize, eof: bool) -> usize {
        let complete = buf[fed..]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(fed, |i| fed + i + 1);
        if eof && complete < buf.len() && self.tail_is_complete(&buf[complete..]) {
            return buf.len();
        }
        complete
    }

    fn records(&self, region: &[u8], eof: bool) -> (Vec<Range<usize>>, usize) {
        let end = self.feed_limit(region, 0, eof);
        let mut records = Vec::new();
        let mut start = 0;
        for (i, b) in region[..end].iter().enumerate() {
            if *b == b'\n' {
                records.push(start..i + 1);
                start = i + 1;
            }
        }
        if start < end {
            records.push(start..end);
        }
        (records, end)
    }

    fn check(&self, record: &[u8], batch_size: usize) -> std::result::Result<usize, String> {
        if has_trailing_comma(record) {
            return Err(TRAILING_COMMA.into());
        }
        // A small probe: building a decoder reserves room for a whole batch.
        let limit = batch_size.min(MAX_VALUES_PER_LINE);
        let mut probe = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(limit)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        let consumed = probe.decode(record).map_err(|e| e.to_string())?;
        if probe.has_partial_record() {
            return Err("incomplete JSON value: the line ends inside an object".into());
        }
        if consumed < record.len() && !record[consumed..].iter().all(u8::is_ascii_whitespace) {
            // The slow path cuts batches between lines, so a line must fit in one.
            return Err(format!("more than {limit} JSON values on one line"));
        }
        let rows = probe.len();
        probe.flush().map_err(|e| e.to_string())?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::has_trailing_comma;

    #[test]
    fn trailing_commas_outside_strings() {
        for bad in [
            &br#"{"a":1,}"#[..],
            br#"{"a":[1,2, ]}"#,
            b"{\"a\":1 ,\n}",
            br#"{"a":"x"}
{"b":{"c":1,}}"#,
            br#"{"a":"unterminated
{"b":1,}"#,
        ] {
            assert!(has_trailing_comma(bad), "{}", String::from_utf8_lossy(bad));
        }
        for good in [
            &br#"{"a":1,"b":[1,2]}"#[..],
            br#"{"a":",}"}"#,
            br#"{"a":"q\",]"}"#,
            br#"{"a":"\\",
"b":2}"#,
            b"",
        ] {
            assert!(
                !has_trailing_comma(good),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
    }
}
