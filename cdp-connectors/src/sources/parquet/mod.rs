//! The Parquet source.

mod config;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{Schema, SchemaRef};
use cdp_core::{
    Catalog, ConnectorSpec, Error, ReadRequest, Result, Source, SourceEventStream, SyncMode,
    async_trait,
};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub use config::{ParquetSourceConfig, ParquetSourceOptions};

use super::common::{Emitter, FileOptions, SchemaCell, open_file, read_stream};
use super::file_identity::Positions;

const CONNECTOR: &str = "parquet";

/// Reads Parquet files into Arrow batches, one stream per file or directory.
///
/// The cursor is the number of rows read from each file, so a resume skips them without
/// decoding them. Parquet files are immutable once written: a directory grows by new files,
/// which are read after the ones already done. A file replaced under its name (another size
/// or other first bytes) is read again from its start, and the run report says so. With an
/// explicit schema only its columns are decoded, cast to its types; a nullable column
/// missing from a file reads as nulls.
///
/// ```no_run
/// use cdp_connectors::sources::ParquetSource;
///
/// let source = ParquetSource::new("lake/orders/").with_stream("orders");
/// ```
#[derive(Debug, Clone)]
pub struct ParquetSource {
    options: FileOptions,
    schema: SchemaCell,
}

impl ParquetSource {
    /// A source reading `path`: one `.parquet` file, or every `.parquet` file of a directory
    /// (sorted by name, including sub-folders except `_`/`.`-prefixed ones, so a partitioned
    /// landing zone reads back) as one stream. The schema is the first file's unless given.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let mut options = FileOptions::new(CONNECTOR, path.into(), &["parquet"]);
        options.positions = Positions::Rows;
        ParquetSource {
            options,
            schema: SchemaCell::default(),
        }
    }

    /// Sets the instance name (used as `_cdp_source`). Default `parquet`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.options.name = name.into();
        self
    }

    /// Sets the stream name. Default: the file stem, or the directory name.
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.options.stream = Some(stream.into());
        self
    }

    /// Reads only the columns of `schema`, cast to its types, instead of the first file's
    /// schema.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.options.schema = Some(schema);
        self.schema = SchemaCell::default();
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

    /// The schema batches are read with: the given one, or the first file's.
    pub fn schema(&self) -> Result<SchemaRef> {
        self.options.validate()?;
        resolve_schema(&self.options, &self.schema)
    }
}

fn resolve_schema(options: &FileOptions, cell: &SchemaCell) -> Result<SchemaRef> {
    cell.get_or_try_init(|| match &options.schema {
        Some(schema) => Ok(schema.clone()),
        None => {
            let files = options.list_files()?;
            let Some((_, path)) = files.first() else {
                return Err(Error::Config(format!(
                    "parquet: found no .parquet file in `{}` to take the schema from; add data \
                     or give an explicit `schema`",
                    options.path.display()
                )));
            };
            let builder = reader_builder(path)?;
            // Drop file-level metadata: it describes the file, not the stream. Drop the
            // system columns of a landing zone written by a pipeline too (they are
            // recomputed when the rows are stamped again), but keep the row operation and
            // profile id.
            let fields: Vec<_> = builder
                .schema()
                .fields()
                .iter()
                .filter(|f| {
                    !cdp_core::record::is_system_column(f.name())
                        || super::schema::is_carried_system_column(f)
                })
                .cloned()
                .collect();
            Ok(Arc::new(Schema::new(fields)))
        }
    })
}

fn reader_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>> {
    ParquetRecordBatchReaderBuilder::try_new(open_file(path)?)
        .map_err(|e| Error::external(CONNECTOR, format!("{}: {e}", path.display())))
}

#[async_trait]
impl Source for ParquetSource {
    fn name(&self) -> &str {
        &self.options.name
    }

    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: CONNECTOR.into(),
            description: "Parquet files, read incrementally by row count".into(),
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
            let schema = resolve_schema(options, &cell)?;
            let batch_size = options.batch_size;
            Ok(move |out: &mut Emitter, key: &str, path: &Path| {
                read_parquet_file(&schema, out, key, path, batch_size)
            })
        })
    }
}

fn read_parquet_file(
    schema: &SchemaRef,
    out: &mut Emitter,
    key: &str,
    path: &Path,
    batch_size: usize,
) -> Result<()> {
    let parquet_error = |e: parquet::errors::ParquetError| {
        Error::external(CONNECTOR, format!("{}: {e}", path.display()))
    };
    let done = out.position(key);
    let builder = reader_builder(path)?;
    let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    if done >= total {
        if done > total {
            tracing::warn!(
                file = %path.display(),
                committed = done,
                rows = total,
                "file has fewer rows than were already read; skipping it"
            );
        }
        return Ok(());
    }
    // Decode only the columns the stream keeps.
    let roots: Vec<usize> = schema
        .fields()
        .iter()
        .filter_map(|f| builder.schema().index_of(f.name()).ok())
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let skip = usize::try_from(done).map_err(|e| Error::external(CONNECTOR, e))?;
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_size)
        .with_offset(skip)
        .build()
        .map_err(parquet_error)?;
    let mut position = done;
    for batch in reader {
        let batch = batch?;
        position += batch.num_rows() as u64;
        let batch = conform(batch, schema, out.stream(), path)?;
        out.batch(batch, key, position)?;
    }
    Ok(())
}

/// Reorders, casts and fills `batch`'s columns to match `schema`, so every file of a stream
/// yields batches of one schema.
fn conform(
    batch: RecordBatch,
    schema: &SchemaRef,
    stream: &str,
    path: &Path,
) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.with_schema(schema.clone())?);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef> {
            match batch.column_by_name(field.name()) {
                Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                Some(column) => Ok(cast(column, field.data_type())?),
                None if field.is_nullable() => {
                    Ok(new_null_array(field.data_type(), batch.num_rows()))
                }
                None => Err(Error::Schema {
                    stream: stream.to_string(),
                    message: format!(
                        "required column `{}` is missing from `{}`",
                        field.name(),
                        path.display()
                    ),
                }),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
