//! The JSONL landing-zone destination.

mod config;

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_json::LineDelimitedWriter;
use cdp_core::{Batch, Destination, OpenContext, Result, StreamSpec, WriteOutcome, async_trait};

pub use config::JsonlDestinationConfig;

use super::landing::{FileFormat, Landing, PartWriter, io, offset_utc_zones};
use super::{Blocking, DEFAULT_MAX_FILE_BYTES};

const CONNECTOR: &str = "jsonl";

/// Writes every stream as newline-delimited JSON files in a landing zone:
/// `{root}/{stream}/dt=YYYY-MM-DD/part-{pipeline}-{epoch:010}-{seq:05}.jsonl`.
///
/// Files are staged per epoch and published on commit, so after a crash and a resume every
/// row is in exactly one published file. Rows keep their `_cdp_` columns; null values are
/// left out of the objects. Schema changes need nothing special: each line carries its keys.
/// Pointed at the dead-letter stream, it keeps rejected records with their reasons.
///
/// ```no_run
/// use cdp_connectors::destinations::JsonlDestination;
///
/// let destination = JsonlDestination::new("landing/").with_partition_column("timestamp");
/// ```
#[derive(Debug)]
pub struct JsonlDestination {
    name: String,
    inner: Blocking,
}

impl JsonlDestination {
    /// A destination writing under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let landing = Landing::new(
            CONNECTOR,
            root.into(),
            Box::new(JsonlFormat),
            None,
            DEFAULT_MAX_FILE_BYTES,
        );
        JsonlDestination {
            name: CONNECTOR.into(),
            inner: Blocking::new(CONNECTOR, landing),
        }
    }

    /// Sets the instance name. Default `jsonl`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Partitions rows by the day (UTC) of this timestamp or date column instead of the sync
    /// day; rows where it is null go to the sync day.
    pub fn with_partition_column(mut self, column: impl Into<String>) -> Self {
        if let Ok(landing) = self.inner.landing_mut() {
            landing.set_partition_column(Some(column.into()));
        }
        self
    }

    /// Starts a new file once one reaches `bytes`. Default 256 MiB.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        if let Ok(landing) = self.inner.landing_mut() {
            landing.set_max_file_bytes(bytes);
        }
        self
    }

    /// The landing zone's root directory.
    pub fn root(&self) -> &Path {
        self.inner.root()
    }
}

#[async_trait]
impl Destination for JsonlDestination {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<()> {
        let root = self.inner.root().to_path_buf();
        tokio::task::spawn_blocking(move || super::landing::check_root(&root))
            .await
            .map_err(|e| cdp_core::Error::external(CONNECTOR, e))?
    }

    async fn open(&mut self, ctx: &OpenContext) -> Result<()> {
        let ctx = ctx.clone();
        self.inner.run(move |landing| landing.open(&ctx)).await
    }

    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        let stream = stream.clone();
        self.inner
            .run(move |landing| landing.prepare(&stream))
            .await
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        let batch = batch.clone();
        self.inner.run(move |landing| landing.write(&batch)).await?;
        Ok(WriteOutcome::default())
    }

    async fn flush(&mut self, epoch: u64) -> Result<()> {
        self.inner.run(move |landing| landing.flush(epoch)).await
    }

    async fn commit(&mut self, epoch: u64) -> Result<()> {
        self.inner.run(move |landing| landing.publish(epoch)).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.run(Landing::close).await
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
        Ok(Box::new(JsonlPart {
            writer: LineDelimitedWriter::new(out),
            path: path.to_path_buf(),
        }))
    }

    fn one_schema_per_file(&self) -> bool {
        false
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
