//! The JSONL landing-zone destination.

mod config;
pub(crate) mod encode;

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_json::LineDelimitedWriter;
use arrow_json::writer::{LineDelimited, WriterBuilder};
use cdp_core::{RejectedRow, Result};

pub use config::{JsonlDestinationConfig, JsonlDestinationOptions};

use super::DEFAULT_MAX_FILE_BYTES;
use super::file::{Jsonl, LandingDestination};
use super::landing::{FileFormat, Landing, PartWriter, io, offset_utc_zones};

const CONNECTOR: &str = <Jsonl as super::file::LandingFormat>::CONNECTOR;

/// Writes every stream as newline-delimited JSON files in a landing zone:
/// `{root}/{stream}/dt=YYYY-MM-DD/part-{pipeline}-{epoch:010}-{seq:05}.jsonl`.
///
/// Files are staged per epoch and published on commit, so after a crash and a resume every
/// row is in exactly one published file. Rows keep their `_cdp_` columns; null values are
/// left out of the objects. Schema changes need nothing special: each line carries its keys.
/// Pointed at the dead-letter stream, it keeps rejected records with their reasons.
///
/// Values JSON has no literal for keep their values: NaN and ±infinity are written as the
/// strings `"NaN"`, `"Infinity"` and `"-Infinity"`, and a time of day of `24:00:00` (which
/// PostgreSQL has) as `"24:00:00"`. A row with any other temporal value that cannot be
/// written as text (a date beyond chrono's ±262,000 years) is refused, and becomes a dead
/// letter, rather than written with an error message in its place.
///
/// ```no_run
/// use cdp_connectors::destinations::JsonlDestination;
///
/// let destination = JsonlDestination::new("landing/").with_partition_column("timestamp");
/// ```
pub type JsonlDestination = LandingDestination<Jsonl>;

impl LandingDestination<Jsonl> {
    /// A destination writing under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::from_landing(Landing::new(
            CONNECTOR,
            root.into(),
            Box::new(JsonlFormat),
            None,
            DEFAULT_MAX_FILE_BYTES,
        ))
    }
}

#[derive(Debug)]
struct JsonlFormat;

impl FileFormat for JsonlFormat {
    fn extension(&self) -> &'static str {
        "jsonl"
    }

    fn create(&self, file: File, path: &Path, _schema: SchemaRef) -> Result<Box<dyn PartWriter>> {
        let out = Counting {
            inner: BufWriter::with_capacity(256 * 1024, file),
            bytes: 0,
        };
        let writer = WriterBuilder::new()
            .with_encoder_factory(Arc::new(encode::ExactValues))
            .build::<_, LineDelimited>(out);
        Ok(Box::new(JsonlPart {
            writer,
            path: path.to_path_buf(),
        }))
    }

    fn one_schema_per_file(&self) -> bool {
        false
    }

    fn refused(&self, batch: &RecordBatch) -> Vec<RejectedRow> {
        encode::unrenderable(batch)
    }
}

struct JsonlPart {
    writer: LineDelimitedWriter<Counting<BufWriter<File>>>,
    path: PathBuf,
}

impl fmt::Debug for JsonlPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlPart")
            .field("path", &self.path)
            .field("bytes", &self.writer.get_ref().bytes)
            .finish()
    }
}

impl PartWriter for JsonlPart {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        Ok(self.writer.write(&offset_utc_zones(batch)?)?)
    }

    fn size(&self) -> u64 {
        self.writer.get_ref().bytes
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.writer.finish()?;
        let path = self.path;
        let file = self
            .writer
            .into_inner()
            .inner
            .into_inner()
            .map_err(|e| io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| io(&path, e))
    }
}

/// Counts bytes on their way to the file, for the size cap.
#[derive(Debug)]
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
