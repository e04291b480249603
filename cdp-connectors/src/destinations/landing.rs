//! The staging and publishing logic shared by the file destinations.
//!
//! Writes of epoch `e` go to `{root}/_staging/{pipeline}/epoch-{e}-{run}/{stream}/dt=…/part-….{ext}`,
//! the same relative layout as the published files; `{run}` is unique to each `open`, so two
//! runs never write the same staged file, even if they overlap (which the pipeline's lease
//! prevents). `flush(e)` finishes and fsyncs them; `commit(e)` renames each into `{root}` (an
//! atomic replace, so publishing twice leaves the same files) and removes the staging
//! directory. `open` finishes an interrupted commit for every epoch the pipeline committed and
//! deletes the staging of later ones, which the runtime will replay.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

#[cfg(feature = "jsonl")]
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Array, RecordBatch, make_array};
use arrow::compute::kernels::boolean::or_kleene;
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{cast, filter_record_batch, is_null};
#[cfg(feature = "jsonl")]
use arrow::datatypes::Schema;
use arrow::datatypes::{DataType, Date32Type, SchemaRef};
use cdp_core::{Batch, Error, OpenContext, RejectedRow, Result, StreamSpec};
use chrono::{DateTime, NaiveDate};

/// Name of the staging directory under the root.
pub(crate) const STAGING_DIR: &str = "_staging";

/// One file being written.
pub(crate) trait PartWriter: Send + std::fmt::Debug {
    /// Appends rows.
    fn write(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Bytes written so far, for the size cap (an estimate while data is buffered).
    fn size(&self) -> u64;
    /// Completes the file and makes it durable.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// A file format the landing zone writes.
pub(crate) trait FileFormat: Send + Sync + std::fmt::Debug {
    /// File extension, without the dot.
    fn extension(&self) -> &'static str;
    /// Starts a file at `path` for rows of `schema`.
    fn create(&self, file: File, path: &Path, schema: SchemaRef) -> Result<Box<dyn PartWriter>>;
    /// Whether one file holds one schema, so a schema change starts a new file.
    fn one_schema_per_file(&self) -> bool;
    /// Rows of `batch` the format cannot hold without changing a value (they become dead
    /// letters). Default: none.
    fn refused(&self, batch: &RecordBatch) -> Vec<RejectedRow> {
        let _ = batch;
        Vec::new()
    }
}

#[derive(Debug)]
struct OpenPart {
    writer: Box<dyn PartWriter>,
    schema: SchemaRef,
}

/// `(stream, day)`: one open file at a time per pair.
type PartKey = (String, String);

/// Staged landing-zone writer; see the module docs.
#[derive(Debug)]
pub(crate) struct Landing {
    connector: &'static str,
    root: PathBuf,
    format: Box<dyn FileFormat>,
    partition_column: Option<String>,
    max_file_bytes: u64,
    /// The epoch current writes belong to; `None` until `open`.
    epoch: Option<u64>,
    /// The pipeline id from `open`, made safe for file names. Staging and file names carry
    /// it so that several pipelines can share one root (one dead-letter folder, say) without
    /// publishing, discarding or overwriting each other's files.
    pipeline: String,
    /// Unique to each `open`: the staging directories of this run are its own.
    run: String,
    open: BTreeMap<PartKey, OpenPart>,
    next_seq: HashMap<PartKey, u32>,
    schemas: HashMap<String, SchemaRef>,
    /// Directories that gained entries this epoch: fsynced at flush, so the staged files
    /// are found after a crash.
    new_dirs: BTreeSet<PathBuf>,
}

impl Landing {
    pub(crate) fn new(
        connector: &'static str,
        root: PathBuf,
        format: Box<dyn FileFormat>,
        partition_column: Option<String>,
        max_file_bytes: u64,
    ) -> Self {
        Landing {
            connector,
            root,
            format,
            partition_column,
            max_file_bytes,
            epoch: None,
            pipeline: String::new(),
            run: String::new(),
            open: BTreeMap::new(),
            next_seq: HashMap::new(),
            schemas: HashMap::new(),
            new_dirs: BTreeSet::new(),
        }
    }

    /// Replaces the format chosen at construction (Parquet's compression is a builder
    /// option).
    #[cfg(feature = "parquet")]
    pub(crate) fn set_format(&mut self, format: Box<dyn FileFormat>) {
        self.format = format;
    }

    pub(crate) fn set_partition_column(&mut self, column: Option<String>) {
        self.partition_column = column;
    }

    pub(crate) fn set_max_file_bytes(&mut self, bytes: u64) {
        self.max_file_bytes = bytes.max(1);
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn staging_root(&self) -> PathBuf {
        self.root.join(STAGING_DIR).join(&self.pipeline)
    }

    fn staging(&self, epoch: u64) -> PathBuf {
        self.staging_root()
            .join(format!("epoch-{epoch}-{}", self.run))
    }

    pub(crate) fn open(&mut self, ctx: &OpenContext) -> Result<()> {
        create_dir_all(&self.root)?;
        self.pipeline = file_safe(&ctx.pipeline_id);
        self.run = run_token();
        // Abandon anything a previous use of this value left open.
        self.open.clear();
        self.next_seq.clear();
        self.new_dirs.clear();
        let staging_root = self.staging_root();
        let mut staged: Vec<(u64, PathBuf)> = Vec::new();
        match std::fs::read_dir(&staging_root) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| io(&staging_root, e))?;
                    let name = entry.file_name();
                    // `epoch-{e}-{run}`, or `epoch-{e}` as staged by earlier versions.
                    let epoch = name
                        .to_str()
                        .and_then(|n| n.strip_prefix("epoch-"))
                        .and_then(|n| n.split('-').next())
                        .and_then(|n| n.parse::<u64>().ok());
                    match epoch {
                        Some(epoch) => staged.push((epoch, entry.path())),
                        None => tracing::warn!(
                            path = %entry.path().display(),
                            "unexpected entry in the staging directory; leaving it"
                        ),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&staging_root, e)),
        }
        staged.sort();
        for (epoch, dir) in staged {
            if epoch <= ctx.committed_epoch {
                tracing::info!(epoch, "publishing files staged before a restart");
                self.publish_dir(&dir)?;
            } else {
                tracing::info!(
                    epoch,
                    "discarding uncommitted staged files; they will be replayed"
                );
                std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
                sync_dir(&staging_root)?;
            }
        }
        self.epoch = Some(ctx.committed_epoch + 1);
        Ok(())
    }

    pub(crate) fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        check_stream_name(&stream.name)?;
        let changed = self
            .schemas
            .get(&stream.name)
            .is_some_and(|old| old.fields() != stream.schema.fields());
        if changed && self.format.one_schema_per_file() {
            // New files for the new schema; the old ones stay staged for this epoch.
            let keys: Vec<PartKey> = self
                .open
                .keys()
                .filter(|(s, _)| *s == stream.name)
                .cloned()
                .collect();
            for key in keys {
                self.finish_part(&key)?;
            }
        }
        self.schemas
            .insert(stream.name.clone(), stream.schema.clone());
        Ok(())
    }

    /// Stages `batch`, but for the rows the format refuses, which it returns.
    pub(crate) fn write(&mut self, batch: &Batch) -> Result<Vec<RejectedRow>> {
        let refused = self.format.refused(&batch.data);
        if refused.is_empty() {
            self.write_rows(batch)?;
        } else {
            let mut keep = vec![true; batch.num_rows()];
            for r in &refused {
                keep[r.row] = false;
            }
            let data = filter_record_batch(&batch.data, &keep.into())?;
            self.write_rows(&Batch {
                data,
                ..batch.clone()
            })?;
        }
        Ok(refused)
    }

    fn write_rows(&mut self, batch: &Batch) -> Result<()> {
        let Some(epoch) = self.epoch else {
            return Err(Error::Config(format!(
                "{}: write before open: call `Destination::open` first, so staged files of an \
                 earlier run are published or discarded",
                self.connector
            )));
        };
        check_stream_name(&batch.stream)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        for (day, data) in self.split_by_day(batch)? {
            let key = (batch.stream.to_string(), day);
            let stale = self.open.get(&key).is_some_and(|part| {
                self.format.one_schema_per_file() && part.schema.fields() != data.schema().fields()
            });
            if stale {
                self.finish_part(&key)?;
            }
            if !self.open.contains_key(&key) {
                let part = self.create_part(epoch, &key, data.schema())?;
                self.open.insert(key.clone(), part);
            }
            let full = match self.open.get_mut(&key) {
                Some(part) => {
                    part.writer.write(&data)?;
                    part.writer.size() >= self.max_file_bytes
                }
                None => false,
            };
            if full {
                self.finish_part(&key)?;
            }
        }
        Ok(())
    }

    fn create_part(&mut self, epoch: u64, key: &PartKey, schema: SchemaRef) -> Result<OpenPart> {
        let seq = self.next_seq.entry(key.clone()).or_insert(0);
        let name = format!(
            "part-{}-{epoch:010}-{seq:05}.{}",
            self.pipeline,
            self.format.extension()
        );
        *seq += 1;
        let relative = Path::new(&key.0).join(format!("dt={}", key.1));
        let dir = self.staging(epoch).join(&relative);
        create_dir_all(&dir)?;
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| io(&path, e))?;
        // The file's own entry, and every directory up to the root that may be new.
        let mut ancestor = Some(dir.as_path());
        while let Some(d) = ancestor {
            self.new_dirs.insert(d.to_path_buf());
            if d == self.root {
                break;
            }
            ancestor = d.parent();
        }
        let writer = self.format.create(file, &path, schema.clone())?;
        Ok(OpenPart { writer, schema })
    }

    fn finish_part(&mut self, key: &PartKey) -> Result<()> {
        if let Some(part) = self.open.remove(key) {
            part.writer.finish()?;
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, epoch: u64) -> Result<()> {
        match self.epoch {
            Some(current) if current == epoch => {}
            Some(current) => {
                return Err(Error::Config(format!(
                    "{}: flush of epoch {epoch}, but the writes since the last flush belong to \
                     epoch {current} (epochs must follow the committed one, in order)",
                    self.connector
                )));
            }
            None => {
                return Err(Error::Config(format!(
                    "{}: flush before open: call `Destination::open` first",
                    self.connector
                )));
            }
        }
        let keys: Vec<PartKey> = self.open.keys().cloned().collect();
        for key in keys {
            self.finish_part(&key)?;
        }
        for dir in std::mem::take(&mut self.new_dirs).iter().rev() {
            sync_dir(dir)?;
        }
        self.next_seq.clear();
        self.epoch = Some(epoch + 1);
        Ok(())
    }

    /// Moves the files staged for `epoch` into place; a no-op when there are none (already
    /// published, or nothing was written).
    pub(crate) fn publish(&mut self, epoch: u64) -> Result<()> {
        let staging = self.staging(epoch);
        self.publish_dir(&staging)
    }

    /// Moves the files staged in `staging` into place, then removes it.
    fn publish_dir(&mut self, staging: &Path) -> Result<()> {
        let staging = staging.to_path_buf();
        if !staging.exists() {
            return Ok(());
        }
        let mut files = Vec::new();
        collect_files(&staging, &mut files)?;
        files.sort();
        let mut touched = BTreeSet::new();
        for source in files {
            let relative = source
                .strip_prefix(&staging)
                .map_err(|e| Error::external(self.connector, e))?;
            let target = self.root.join(relative);
            if let Some(dir) = target.parent() {
                if !touched.contains(dir) {
                    create_dir_all(dir)?;
                }
                let mut ancestor = Some(dir);
                while let Some(d) = ancestor {
                    touched.insert(d.to_path_buf());
                    if d == self.root {
                        break;
                    }
                    ancestor = d.parent();
                }
            }
            std::fs::rename(&source, &target).map_err(|e| io(&source, e))?;
        }
        for dir in touched.iter().rev() {
            sync_dir(dir)?;
        }
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
        sync_dir(&self.staging_root())?;
        // Leave no empty staging folders behind. `remove_dir` only removes empty ones, so
        // another pipeline staging into the same root at the same moment is unaffected.
        let pipeline_dir = self.staging_root();
        if std::fs::remove_dir(&pipeline_dir).is_ok()
            && let Some(shared) = pipeline_dir.parent()
        {
            let _ = std::fs::remove_dir(shared);
        }
        Ok(())
    }

    pub(crate) fn close(&mut self) -> Result<()> {
        // Unflushed files stay staged and are discarded by the next `open`.
        let keys: Vec<PartKey> = self.open.keys().cloned().collect();
        for key in keys {
            self.finish_part(&key)?;
        }
        Ok(())
    }

    /// Splits a batch by the day its rows belong to: the batch's sync day, or the day of the
    /// partition column (rows where it is null fall back to the sync day).
    fn split_by_day(&self, batch: &Batch) -> Result<Vec<(String, RecordBatch)>> {
        let synced = batch.meta.synced_at.date_naive();
        let Some(column) = &self.partition_column else {
            return Ok(vec![(day_string(synced), batch.data.clone())]);
        };
        let schema_error = |message: String| Error::Schema {
            stream: batch.stream.to_string(),
            message,
        };
        let values = batch.data.column_by_name(column).ok_or_else(|| {
            schema_error(format!("partition column `{column}` is not in the batch"))
        })?;
        if !matches!(
            values.data_type(),
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
        ) {
            return Err(schema_error(format!(
                "partition column `{column}` is {}, not a timestamp or date",
                values.data_type()
            )));
        }
        // Timestamps hold UTC instants whatever their zone, so the UTC day needs no zone
        // lookup (which arrow cannot do for named zones without chrono-tz).
        let values = match values.data_type() {
            DataType::Timestamp(unit, Some(_)) => retype(values, DataType::Timestamp(*unit, None))?,
            _ => values.clone(),
        };
        let days = cast(&values, &DataType::Date32)?;
        let days: &Date32Array = days.as_primitive::<Date32Type>();
        let fallback = days_since_epoch(synced);
        let distinct: BTreeSet<i32> = days.iter().map(|d| d.unwrap_or(fallback)).collect();
        if distinct.len() == 1 {
            let day = distinct.first().copied().unwrap_or(fallback);
            return Ok(vec![(day_string(date_of(day)), batch.data.clone())]);
        }
        let nulls = is_null(days)?;
        let mut parts = Vec::with_capacity(distinct.len());
        for day in distinct {
            let mut mask = eq(days, &Date32Array::new_scalar(day))?;
            if day == fallback && days.null_count() > 0 {
                mask = or_kleene(&mask, &nulls)?;
            }
            parts.push((
                day_string(date_of(day)),
                filter_record_batch(&batch.data, &mask)?,
            ));
        }
        Ok(parts)
    }
}

/// Checks the root can be created and written.
pub(crate) fn check_root(root: &Path) -> Result<()> {
    create_dir_all(root)?;
    let probe = root.join(".cdp-write-check");
    std::fs::write(&probe, b"").map_err(|e| io(&probe, e))?;
    std::fs::remove_file(&probe).map_err(|e| io(&probe, e))
}

/// The same array under another type of identical layout (a timestamp's zone).
fn retype(array: &ArrayRef, data_type: DataType) -> Result<ArrayRef> {
    let data = array
        .to_data()
        .into_builder()
        .data_type(data_type)
        .build()?;
    Ok(make_array(data))
}

/// Renames UTC zones (`UTC`, `Etc/UTC`, `Z`) of top-level timestamp columns to `+00:00`:
/// the same instants, but a zone arrow can format without the chrono-tz database.
#[cfg(feature = "jsonl")]
pub(crate) fn offset_utc_zones(batch: &RecordBatch) -> Result<RecordBatch> {
    let named_utc = |tz: &str| matches!(tz, "UTC" | "Etc/UTC" | "Z" | "utc");
    let needs = batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(_, Some(tz)) if named_utc(tz)));
    if !needs {
        return Ok(batch.clone());
    }
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::Timestamp(unit, Some(tz)) if named_utc(tz) => {
                let data_type = DataType::Timestamp(*unit, Some(UTC_OFFSET.into()));
                columns.push(retype(column, data_type.clone())?);
                fields.push(Arc::new(field.as_ref().clone().with_data_type(data_type)));
            }
            _ => {
                columns.push(column.clone());
                fields.push(field.clone());
            }
        }
    }
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// UTC spelled as an offset.
#[cfg(feature = "jsonl")]
const UTC_OFFSET: &str = "+00:00";

fn days_since_epoch(date: NaiveDate) -> i32 {
    let epoch = NaiveDate::default();
    i32::try_from(date.signed_duration_since(epoch).num_days()).unwrap_or(0)
}

fn date_of(days: i32) -> NaiveDate {
    DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

fn day_string(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Stream names become directory names: keep them to one plain path component.
fn check_stream_name(stream: &str) -> Result<()> {
    let bad = stream.is_empty()
        || stream == "."
        || stream == ".."
        || stream == STAGING_DIR
        || stream.contains(['/', '\\', '\0']);
    if bad {
        return Err(Error::Config(format!(
            "stream name {stream:?} cannot be a directory name in a landing zone: it must be \
             non-empty, contain no `/` or `\\`, and not be `.`, `..` or `{STAGING_DIR}`"
        )));
    }
    Ok(())
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        if entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

pub(crate) fn io(path: &Path, e: std::io::Error) -> Error {
    Error::io(path.display().to_string(), e)
}

fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))
}

/// Makes a directory's entries (new, renamed or removed files) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        match File::open(dir) {
            Ok(handle) => handle.sync_all().map_err(|e| io(dir, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(dir, e)),
        }
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for fsync on this platform; renames are durable
        // once the file system flushes its journal.
        let _ = dir;
        Ok(())
    }
}

/// A token no other `open` (in this process or another) produces: process id and time.
fn run_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static OPENS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:x}.{:x}.{:x}",
        std::process::id(),
        nanos,
        OPENS.fetch_add(1, Ordering::Relaxed)
    )
}

/// `id` with every character outside `[A-Za-z0-9_.-]` replaced by `_`, never empty.
fn file_safe(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match safe.as_str() {
        "" | "." | ".." => format!("pipeline{safe}"),
        _ => safe,
    }
}
