//! The JSONL (newline-delimited JSON) source.

mod config;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow_json::reader::{Decoder, ReaderBuilder};
use cdp_core::{
    Catalog, ConnectorSpec, Error, ReadRequest, Result, Source, SourceEventStream, SyncMode,
    async_trait,
};

pub use config::{JsonlSourceConfig, JsonlSourceOptions};

use super::common::{Emitter, FileOptions, SchemaCell, open_file, read_stream};
use super::engine::{Checked, RecordFormat, read_file};
use super::schemaless::decode::StrictDecoders;
use super::schemaless::json::{JsonDrift, Shape, Verdict, parse_record};
use super::schemaless::{Changes, DriftPolicy, NewFields, TypeConflicts};

const CONNECTOR: &str = "jsonl";

/// Reads newline-delimited JSON files into Arrow batches, one stream per file or directory.
///
/// Decoding runs on large chunks through arrow-json's push decoder on a blocking thread;
/// the cursor is the byte offset reached in each file, so a resume continues exactly where
/// the last checkpoint left off, including in files that grew since. A line that is not
/// valid JSON, or whose values do not fit the schema, becomes a dead letter with its file and
/// line number; the other lines still come through.
///
/// A line is one record: one JSON object. Anything else on it (a second object, a value
/// spread over several lines) makes it a dead letter. A last line without its newline is
/// read only once it is a complete value, so a file still being written is never read half
/// a record at a time.
///
/// The schema is inferred from the first records unless given, and records that do not
/// fit it are never dropped: a key it has no field for (at any depth) is added to the
/// schema, kept in an overflow column, or dead-lettered, and a value of another type widens
/// its field or is dead-lettered, as [`with_new_fields`](Self::with_new_fields) and
/// [`with_type_conflicts`](Self::with_type_conflicts) say (see
/// [`NewFields`](crate::sources::NewFields) for the rules). Integers stay exact: a
/// fractional number in an integer field is a type conflict, never truncated.
///
/// ```no_run
/// use cdp_connectors::sources::{JsonlSource, NewFields};
///
/// let source = JsonlSource::new("data/events/")
///     .with_stream("events")
///     .with_new_fields(NewFields::Overflow)
///     .with_batch_size(4096);
/// ```
#[derive(Debug, Clone)]
pub struct JsonlSource {
    options: FileOptions,
    drift: DriftPolicy,
    schema: SchemaCell,
}

impl JsonlSource {
    /// A source reading `path`: one `.jsonl`/`.ndjson`/`.json` file, or every such file of a
    /// directory (sorted by name, including sub-folders except `_`/`.`-prefixed ones) as one
    /// stream. The schema is inferred unless given.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonlSource {
            options: FileOptions::new(CONNECTOR, path.into(), &["jsonl", "ndjson", "json"]),
            drift: DriftPolicy::default(),
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

    /// Decodes with `schema` instead of inferring one. Its columns keep their types; keys
    /// not in it are handled by [`with_new_fields`](Self::with_new_fields).
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

    /// Sets what happens to a key the schema has no field for. Default
    /// [`NewFields::Evolve`].
    pub fn with_new_fields(mut self, new_fields: NewFields) -> Self {
        self.drift.new_fields = new_fields;
        self.schema = SchemaCell::default();
        self
    }

    /// Sets what happens to a value whose type does not fit its field. Default
    /// [`TypeConflicts::Widen`].
    pub fn with_type_conflicts(mut self, type_conflicts: TypeConflicts) -> Self {
        self.drift.type_conflicts = type_conflicts;
        self.schema = SchemaCell::default();
        self
    }

    /// Sets the name of the overflow column (with [`NewFields::Overflow`]). Default
    /// `_overflow`.
    pub fn with_overflow_column(mut self, name: impl Into<String>) -> Self {
        self.drift.overflow_column = name.into();
        self.schema = SchemaCell::default();
        self
    }

    /// The schema batches start out with: the given one, or one inferred from the first
    /// records (blocking file I/O; kept for the life of this source), plus the overflow
    /// column if the source has one. A read may add fields to it as it meets new keys.
    pub fn schema(&self) -> Result<SchemaRef> {
        self.validate()?;
        resolve_schema(&self.options, &self.drift, &self.schema)
    }

    fn validate(&self) -> Result<()> {
        self.options.validate()?;
        self.drift.validate(CONNECTOR)
    }
}

fn resolve_schema(
    options: &FileOptions,
    drift: &DriftPolicy,
    cell: &SchemaCell,
) -> Result<SchemaRef> {
    cell.get_or_try_init(|| {
        let schema = match &options.schema {
            Some(schema) => schema.clone(),
            None => infer_schema(options, drift)?,
        };
        drift.with_overflow(CONNECTOR, schema)
    })
}

/// Infers a schema from the first `infer_records` JSON objects of the files, in order,
/// skipping lines that are not one object (they will be dead-lettered when read). Values
/// that disagree are resolved by the conflict policy, never an error.
fn infer_schema(options: &FileOptions, drift: &DriftPolicy) -> Result<SchemaRef> {
    let mut shape = Shape::default();
    let mut sampled = 0;
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
            if let Ok(entries) = parse_record(&line) {
                shape.observe_entries(&entries);
                sampled += 1;
                if sampled >= options.infer_records {
                    break 'files;
                }
            }
        }
    }
    if sampled == 0 {
        return Err(Error::Config(format!(
            "jsonl: found no JSON object to infer a schema from in `{}`; add data or give an \
             explicit `schema`",
            options.path.display()
        )));
    }
    Ok(Arc::new(shape.schema(drift.widen())))
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
        self.validate()?;
        let (options, drift, cell) = (
            self.options.clone(),
            self.drift.clone(),
            self.schema.clone(),
        );
        let schema = tokio::task::spawn_blocking(move || resolve_schema(&options, &drift, &cell))
            .await
            .map_err(|e| Error::external(CONNECTOR, e))??;
        self.options.catalog(schema)
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        self.drift.validate(CONNECTOR)?;
        let (options, drift, cell) = (
            self.options.clone(),
            self.drift.clone(),
            self.schema.clone(),
        );
        read_stream(options, request, move |options| {
            let schema = resolve_schema(options, &drift, &cell)?;
            let mut format =
                JsonlFormat::new(JsonDrift::new(drift, schema, options.schema.is_some()));
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

const TRAILING_COMMA: &str = "invalid JSON: a comma before a closing `}` or `]`";
const TWO_VALUES: &str = "more than one JSON value on the line (a line holds one record)";

/// What the fast path must not let arrow-json decode, outside strings: a comma right before
/// a closing `}` or `]` (arrow-json accepts it; JSON does not), or an object followed on
/// the same line by another (arrow-json makes two rows of it; a line is one record).
/// Whitespace between them does not matter. Fast path: find the closing brackets with
/// `memchr` and look just behind and after each; only a suspect found there has its line
/// scanned for strings, so valid input costs little more than the bracket search.
fn needs_a_closer_look(json: &[u8]) -> Option<&'static str> {
    for close in memchr::memchr2_iter(b'}', b']', json) {
        // The byte just before settles most brackets: a value's last character.
        let comma = match close.checked_sub(1).map(|i| json[i]) {
            Some(b',') => Some(close - 1),
            Some(b' ' | b'\t' | b'\r' | b'\n') => json[..close]
                .iter()
                .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .filter(|&i| json[i] == b','),
            _ => None,
        };
        if let Some(comma) = comma
            && outside_strings(line_up_to(json, comma))
        {
            return Some(TRAILING_COMMA);
        }
        // And the byte just after: most closing braces are followed by one of these.
        if json[close] == b'}'
            && !matches!(json.get(close + 1), None | Some(b',' | b'}' | b']' | b'\n'))
        {
            let after = json[close + 1..]
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
                .map(|i| close + 1 + i);
            if let Some(next) = after
                && json[next] == b'{'
                && outside_strings(line_up_to(json, next))
            {
                return Some(TWO_VALUES);
            }
        }
    }
    None
}

/// The line holding `json[at]`, from its start up to and including that byte (a raw
/// newline cannot be inside a JSON string, so every line starts outside one).
fn line_up_to(json: &[u8], at: usize) -> &[u8] {
    let start = json[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    &json[start..=at]
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

/// JSONL framing and decoding for the byte-offset engine, with the schemaless drift policy.
#[derive(Debug)]
pub(crate) struct JsonlFormat {
    drift: JsonDrift,
    decoders: Arc<StrictDecoders>,
}

impl JsonlFormat {
    pub(crate) fn new(drift: JsonDrift) -> Self {
        let decoders = Arc::new(StrictDecoders::new(drift.schema(), drift.policy().widen()));
        JsonlFormat { drift, decoders }
    }

    fn restore(&mut self, state: &serde_json::Value) {
        self.drift.restore(state);
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.decoders = Arc::new(StrictDecoders::new(
            self.drift.schema(),
            self.drift.policy().widen(),
        ));
    }

    fn builder(&self, batch_size: usize) -> ReaderBuilder {
        ReaderBuilder::new(self.drift.schema().clone())
            .with_batch_size(batch_size)
            .with_strict_mode(true)
            .with_decoder_factory(self.decoders.clone())
    }

    /// Whether a last line without its newline holds a whole value (or is plainly broken,
    /// which the slow path will report); `false` while it may still be being written.
    fn tail_is_complete(&self, tail: &[u8]) -> bool {
        if tail.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        let Ok(mut probe) = self.builder(1).build_decoder() else {
            return true;
        };
        match probe.decode(tail) {
            Ok(_) => !probe.has_partial_record(),
            Err(_) => true,
        }
    }

    /// Decodes one record on its own: `Ok` if it makes exactly one row.
    fn probe(&self, record: &[u8]) -> std::result::Result<(), String> {
        let mut probe = self.builder(2).build_decoder().map_err(|e| e.to_string())?;
        let consumed = probe.decode(record).map_err(|e| e.to_string())?;
        if probe.has_partial_record() {
            return Err("incomplete JSON value: the line ends inside an object".into());
        }
        if probe.len() != 1
            || (consumed < record.len() && !record[consumed..].iter().all(u8::is_ascii_whitespace))
        {
            return Err(TWO_VALUES.into());
        }
        probe.flush().map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl RecordFormat for JsonlFormat {
    type Decoder = Decoder;

    fn decoder(&self, batch_size: usize) -> Result<Decoder> {
        Ok(self.builder(batch_size).build_decoder()?)
    }

    fn decode(&self, decoder: &mut Decoder, buf: &[u8]) -> Result<usize, ArrowError> {
        // A region holding a suspect goes the line-by-line way, where `check` names the line.
        if let Some(reason) = needs_a_closer_look(buf) {
            return Err(ArrowError::JsonError(reason.into()));
        }
        decoder.decode(buf)
    }

    fn buffered(&self, decoder: &Decoder) -> usize {
        decoder.len()
    }

    fn flush(&mut self, decoder: &mut Decoder) -> Result<Option<RecordBatch>, ArrowError> {
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
        let complete = memchr::memrchr(b'\n', &buf[fed..]).map_or(fed, |i| fed + i + 1);
        if eof && complete < buf.len() && self.tail_is_complete(&buf[complete..]) {
            return buf.len();
        }
        complete
    }

    fn next_record(&self, region: &[u8], eof: bool) -> Option<(usize, Option<String>)> {
        match memchr::memchr(b'\n', region) {
            Some(i) => Some((i + 1, None)),
            None if !region.is_empty() && eof && self.tail_is_complete(region) => {
                Some((region.len(), None))
            }
            None => None,
        }
    }

    fn check(&mut self, record: &[u8]) -> Checked {
        if let Some(reason) = needs_a_closer_look(record) {
            return Checked::Reject {
                reason: reason.into(),
                resync: false,
            };
        }
        let reject = |reason: String| Checked::Reject {
            reason,
            resync: false,
        };
        match self.drift.judge(record) {
            Verdict::Accept => match self.probe(record) {
                Ok(()) => Checked::Accept,
                Err(reason) => reject(reason),
            },
            Verdict::Rewrite(rewritten) => match self.probe(&rewritten) {
                Ok(()) => Checked::Rewrite {
                    record: rewritten,
                    overflow: None,
                },
                Err(reason) => reject(reason),
            },
            Verdict::Evolved => {
                self.rebuild();
                Checked::Evolve
            }
            Verdict::Reject(reason) => reject(reason),
        }
    }

    fn push(
        &self,
        decoder: &mut Decoder,
        record: &[u8],
        _overflow: Option<String>,
    ) -> Result<(), ArrowError> {
        let mut rest = record;
        while !rest.is_empty() {
            let n = decoder.decode(rest)?;
            if n == 0 {
                break;
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    fn take_changes(&mut self) -> Changes {
        self.drift.coerced(self.decoders.take_coerced());
        self.drift.take_changes()
    }
}

#[cfg(test)]
mod tests {
    use super::{TRAILING_COMMA, TWO_VALUES, needs_a_closer_look};

    #[test]
    fn suspects_outside_strings() {
        for bad in [
            &br#"{"a":1,}"#[..],
            br#"{"a":[1,2, ]}"#,
            b"{\"a\":1 ,\n}",
            br#"{"a":"x"}
{"b":{"c":1,}}"#,
            br#"{"a":"unterminated
{"b":1,}"#,
        ] {
            assert_eq!(
                needs_a_closer_look(bad),
                Some(TRAILING_COMMA),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for two in [&br#"{"a":1}{"b":2}"#[..], br#"{"a":1} 	{"b":2}"#] {
            assert_eq!(needs_a_closer_look(two), Some(TWO_VALUES));
        }
        for good in [
            &br#"{"a":1,"b":[1,2]}"#[..],
            br#"{"a":",}"}"#,
            br#"{"a":"q\",]"}"#,
            br#"{"a":"\\",
"b":2}"#,
            br#"{"a":"}{"}"#,
            b"{\"a\":{}}\n{\"b\":1}",
            b"",
        ] {
            assert_eq!(
                needs_a_closer_look(good),
                None,
                "{}",
                String::from_utf8_lossy(good)
            );
        }
    }
}
