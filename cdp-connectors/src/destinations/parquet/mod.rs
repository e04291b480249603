//! The Parquet landing-zone destination.

mod config;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use cdp_core::{Error, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

pub use config::{ParquetDestinationConfig, ParquetDestinationOptions};

use super::DEFAULT_MAX_FILE_BYTES;
use super::file::{LandingDestination, Parquet};
use super::landing::{FileFormat, Landing, PartWriter, io};

const CONNECTOR: &str = <Parquet as super::file::LandingFormat>::CONNECTOR;

/// How Parquet pages are compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParquetCompression {
    /// Zstandard at its default level: smaller files, a little more CPU. The default.
    #[default]
    Zstd,
    /// Snappy: faster, larger files.
    Snappy,
}

impl ParquetCompression {
    fn codec(self) -> Compression {
        match self {
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            ParquetCompression::Snappy => Compression::SNAPPY,
        }
    }
}

/// Writes every stream as Parquet files in a landing zone:
/// `{root}/{stream}/dt=YYYY-MM-DD/part-{pipeline}-{epoch:010}-{seq:05}.parquet`, readable by Spark,
/// Trino, DataFusion or [`ParquetSource`](crate::sources::ParquetSource).
///
/// Each epoch writes one file per stream and day (more if `max_file_bytes` is reached, or
/// when the stream's schema changes: a file holds one schema). Files are staged per epoch and
/// published on commit, so after a crash and a resume every row is in exactly one published
/// file. Rows keep their `_cdp_` columns.
///
/// ```no_run
/// use cdp_connectors::destinations::{ParquetCompression, ParquetDestination};
///
/// let destination = ParquetDestination::new("lake/").with_compression(ParquetCompression::Snappy);
/// ```
pub type ParquetDestination = LandingDestination<Parquet>;

impl LandingDestination<Parquet> {
    /// A destination writing zstd-compressed files under `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::from_landing(Landing::new(
            CONNECTOR,
            root.into(),
            Box::new(ParquetFormat {
                compression: ParquetCompression::default(),
            }),
            None,
            DEFAULT_MAX_FILE_BYTES,
        ))
    }

    /// Sets the page compression. Default zstd.
    pub fn with_compression(mut self, compression: ParquetCompression) -> Self {
        if let Ok(landing) = self.inner.landing_mut() {
            landing.set_format(Box::new(ParquetFormat { compression }));
        }
        self
    }
}

#[derive(Debug)]
struct ParquetFormat {
    compression: ParquetCompression,
}

impl FileFormat for ParquetFormat {
    fn extension(&self) -> &'static str {
        "parquet"
    }

    fn create(&self, file: File, path: &Path, schema: SchemaRef) -> Result<Box<dyn PartWriter>> {
        let properties = WriterProperties::builder()
            .set_compression(self.compression.codec())
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(properties))
            .map_err(|e| parquet_error(path, e))?;
        Ok(Box::new(ParquetPart {
            writer,
            path: path.to_path_buf(),
        }))
    }

    fn one_schema_per_file(&self) -> bool {
        true
    }
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::external(CONNECTOR, format!("{}: {e}", path.display()))
}

struct ParquetPart {
    writer: ArrowWriter<File>,
    path: PathBuf,
}

impl fmt::Debug for ParquetPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParquetPart")
            .field("path", &self.path)
            .field("bytes_written", &self.writer.bytes_written())
            .finish()
    }
}

impl PartWriter for ParquetPart {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| parquet_error(&self.path, e))
    }

    fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.writer
            .finish()
            .map_err(|e| parquet_error(&self.path, e))?;
        self.writer
            .inner()
            .sync_all()
            .map_err(|e| io(&self.path, e))
    }
}
