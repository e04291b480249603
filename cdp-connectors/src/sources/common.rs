//! What the file sources share: file listing, the per-file cursor, the event emitter and
//! the blocking reader thread behind the returned stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use cdp_core::event::SourceNotice;
use cdp_core::{
    Batch, Catalog, Checkpoint, Error, ReadRequest, Result, SourceEvent, SourceEventStream,
    StreamSpec, SyncMode,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::file_identity::{self, FileIdentity, Positions};
use super::schema::check_user_schema;

/// Rows per batch unless configured otherwise.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 8192;
/// Records sampled for schema inference unless configured otherwise.
pub(crate) const DEFAULT_INFER_RECORDS: usize = 1000;
/// Events buffered between the reader thread and the consumer: enough to overlap decoding
/// with downstream work, few enough to keep memory bounded by a handful of batches.
const CHANNEL_CAPACITY: usize = 4;

/// Settings every file source has.
#[derive(Debug, Clone)]
pub(crate) struct FileOptions {
    pub(crate) connector: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) stream: Option<String>,
    pub(crate) schema: Option<SchemaRef>,
    pub(crate) infer_records: usize,
    pub(crate) batch_size: usize,
    pub(crate) extensions: Vec<String>,
    /// What the cursor's positions count (byte offsets unless the format says rows).
    pub(crate) positions: Positions,
}

impl FileOptions {
    pub(crate) fn new(connector: &'static str, path: PathBuf, extensions: &[&str]) -> Self {
        FileOptions {
            connector,
            path,
            name: connector.to_string(),
            stream: None,
            schema: None,
            infer_records: DEFAULT_INFER_RECORDS,
            batch_size: DEFAULT_BATCH_SIZE,
            extensions: extensions.iter().map(|e| (*e).to_string()).collect(),
            positions: Positions::Bytes,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::Config(format!(
                "{}: `batch_size` must be at least 1",
                self.connector
            )));
        }
        if self.infer_records == 0 && self.schema.is_none() {
            return Err(Error::Config(format!(
                "{}: `infer_records` must be at least 1 when no schema is given",
                self.connector
            )));
        }
        if let Some(schema) = &self.schema {
            check_user_schema(schema)?;
        }
        Ok(())
    }

    /// The stream name: configured, else the file stem of a file or the name of a directory.
    pub(crate) fn stream_name(&self) -> Result<String> {
        if let Some(stream) = &self.stream {
            return Ok(stream.clone());
        }
        let is_dir = self.path.is_dir();
        let name = if is_dir {
            self.path.file_name().map(PathBuf::from).or_else(|| {
                // `.` or `..` have no name of their own; their canonical path does.
                std::fs::canonicalize(&self.path)
                    .ok()
                    .and_then(|p| p.file_name().map(PathBuf::from))
            })
        } else {
            self.path.file_stem().map(PathBuf::from)
        };
        name.map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}: cannot derive a stream name from `{}`; set `stream`",
                    self.connector,
                    self.path.display()
                ))
            })
    }

    /// The files to read, sorted by name; the key of each is its name, which cursors use.
    pub(crate) fn list_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| Error::io(self.path.display().to_string(), e))?;
        if !meta.is_dir() {
            let key = self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.path.display().to_string());
            return Ok(vec![(key, self.path.clone())]);
        }
        let mut files = Vec::new();
        self.collect_files(&self.path, "", &mut files)?;
        files.sort();
        Ok(files)
    }

    /// Adds the wanted files under `dir` to `files`, keyed by their path relative to the
    /// source root (`dt=2024-05-01/part-1.parquet`), so a landing zone partitioned into
    /// folders reads back as one stream in partition order. Folders whose names start with
    /// `_` or `.` (`_staging`, `.git`) are skipped, as Hive and Spark do.
    fn collect_files(
        &self,
        dir: &Path,
        prefix: &str,
        files: &mut Vec<(String, PathBuf)>,
    ) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir.display().to_string(), e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = format!("{prefix}{name}");
            // Follow symlinks.
            let is_dir = path.is_dir();
            if is_dir {
                if !name.starts_with('_') && !name.starts_with('.') {
                    self.collect_files(&path, &format!("{key}/"), files)?;
                }
                continue;
            }
            let wanted = path
                .extension()
                .map(|ext| ext.to_string_lossy())
                .is_some_and(|ext| self.extensions.iter().any(|e| e.eq_ignore_ascii_case(&ext)));
            if wanted {
                files.push((key, path));
            }
        }
        Ok(())
    }

    /// The spec `discover` reports for the single stream.
    pub(crate) fn stream_spec(&self, schema: SchemaRef) -> Result<StreamSpec> {
        Ok(StreamSpec::new(self.stream_name()?, schema)
            .with_sync_modes([SyncMode::FullRefresh, SyncMode::IncrementalAppend]))
    }

    pub(crate) fn catalog(&self, schema: SchemaRef) -> Result<Catalog> {
        Ok(Catalog::new(vec![self.stream_spec(schema)?]))
    }
}

/// The schema of a source: given, or inferred once and kept so every read of this source
/// instance decodes with the same columns.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaCell(Arc<OnceLock<SchemaRef>>);

impl SchemaCell {
    pub(crate) fn get_or_try_init(
        &self,
        init: impl FnOnce() -> Result<SchemaRef>,
    ) -> Result<SchemaRef> {
        if let Some(schema) = self.0.get() {
            return Ok(schema.clone());
        }
        let schema = init()?;
        check_user_schema(&schema)?;
        Ok(self.0.get_or_init(|| schema).clone())
    }
}

/// The cursor of a file stream: per file (by name), the position up to which it was read,
/// and the identity of the version read (see [`file_identity`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileCursor {
    pub(crate) files: BTreeMap<String, u64>,
    /// Absent from cursors written before identities were kept; such entries trust names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) identity: BTreeMap<String, FileIdentity>,
    /// The fields a schemaless read added or widened (see `schemaless`), so a resumed read
    /// decodes with the schema the interrupted one had reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) schema: Option<serde_json::Value>,
}

impl FileCursor {
    /// The committed cursor of `stream`, or an empty one on a first run or a full refresh.
    pub(crate) fn from_request(request: &ReadRequest, stream: &str) -> Result<FileCursor> {
        if request.sync_mode == Some(SyncMode::FullRefresh) {
            return Ok(FileCursor::default());
        }
        match request.state.cursor(stream) {
            None | Some(serde_json::Value::Null) => Ok(FileCursor::default()),
            Some(value) => serde_json::from_value(value.clone()).map_err(|e| Error::Cursor {
                stream: stream.to_string(),
                message: format!(
                    "not a file cursor (expected {{\"files\": {{\"name\": position}}, \
                     \"identity\": {{\"name\": {{…}}}}}}, the identities optional): {e}"
                ),
            }),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({ "files": self.files }))
    }
}

/// Sends a stream's events from the reader thread, keeping the cursor they cover.
#[derive(Debug)]
pub(crate) struct Emitter {
    tx: mpsc::Sender<Result<SourceEvent>>,
    stream: Arc<str>,
    source_id: Arc<str>,
    cursor: FileCursor,
    /// The cursor as of the last checkpoint sent, so nothing is checkpointed twice.
    checkpointed: FileCursor,
    positions: Positions,
    /// The identity of each listed file's version, entered into the cursor with the file's
    /// first checkpoint.
    versions: BTreeMap<String, FileIdentity>,
    /// The file being read, open for the fingerprints of the bytes before each position.
    current: Option<(String, std::fs::File)>,
}

impl Emitter {
    pub(crate) fn new(
        tx: mpsc::Sender<Result<SourceEvent>>,
        stream: &str,
        source_id: &str,
        cursor: FileCursor,
        positions: Positions,
    ) -> Self {
        Emitter {
            tx,
            stream: stream.into(),
            source_id: source_id.into(),
            checkpointed: cursor.clone(),
            cursor,
            positions,
            versions: BTreeMap::new(),
            current: None,
        }
    }

    /// Matches the listed `files` with the cursor before anything is read (see
    /// [`file_identity`]): a file replaced or truncated is read from its start, a rotated
    /// one on from where its version was, entries of files gone are dropped. Says what
    /// happened in notices, and checkpoints the cursor if that changed it.
    pub(crate) fn resolve(&mut self, files: &[(String, PathBuf)]) -> Result<()> {
        let resolved = file_identity::resolve(
            files,
            &self.cursor.files,
            &self.cursor.identity,
            self.positions,
        )?;
        for (subject, message) in resolved.notices {
            tracing::warn!(stream = %self.stream, file = %subject, "{message}");
            self.send(SourceEvent::Notice(SourceNotice {
                stream: self.stream.to_string(),
                subject,
                message,
            }))?;
        }
        let mut cursor = FileCursor {
            schema: self.cursor.schema.take(),
            ..FileCursor::default()
        };
        for (key, position) in resolved.positions {
            // A version never read has no entry until its first checkpoint, as on a first run.
            if position > 0
                && let Some(identity) = resolved.identities.get(&key)
            {
                cursor.identity.insert(key.clone(), identity.clone());
                cursor.files.insert(key, position);
            }
        }
        self.versions = resolved.identities;
        self.cursor = cursor;
        if self.cursor != self.checkpointed {
            self.checkpointed = self.cursor.clone();
            let checkpoint = Checkpoint::new(self.stream.to_string(), self.cursor.to_json());
            self.send(SourceEvent::Checkpoint(checkpoint))?;
        }
        Ok(())
    }

    /// Starts reading `file` (at `path`): its positions are fingerprinted from here on.
    pub(crate) fn begin_file(&mut self, file: &str, path: &Path) -> Result<()> {
        self.current = match self.positions {
            Positions::Bytes => Some((file.to_string(), open_file(path)?)),
            Positions::Rows => None,
        };
        Ok(())
    }

    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    /// Where `file` was read up to, per the cursor (`0` if never).
    pub(crate) fn position(&self, file: &str) -> u64 {
        self.cursor.files.get(file).copied().unwrap_or(0)
    }

    fn send(&self, event: SourceEvent) -> Result<()> {
        // A closed channel means the consumer dropped the stream: stop reading quietly.
        self.tx
            .blocking_send(Ok(event))
            .map_err(|_| Error::Cancelled)
    }

    /// Emits `data` followed by a checkpoint placing `file` at `position`.
    pub(crate) fn batch(&mut self, data: RecordBatch, file: &str, position: u64) -> Result<()> {
        if data.num_rows() > 0 {
            let batch = Batch::new(self.stream.clone(), data, self.source_id.clone());
            self.send(SourceEvent::Batch(batch))?;
        }
        self.checkpoint(file, position)
    }

    /// Emits a checkpoint placing `file` at `position`, unless nothing moved since the last.
    pub(crate) fn checkpoint(&mut self, file: &str, position: u64) -> Result<()> {
        self.cursor.files.insert(file.to_string(), position);
        if !self.cursor.identity.contains_key(file)
            && let Some(identity) = self.versions.get(file)
        {
            self.cursor
                .identity
                .insert(file.to_string(), identity.clone());
        }
        if let Some((current, handle)) = &mut self.current
            && current == file
            && let Some(identity) = self.cursor.identity.get_mut(file)
        {
            identity
                .set_tail(handle, position)
                .map_err(|e| Error::io(file.to_string(), e))?;
        }
        if self.cursor == self.checkpointed {
            return Ok(());
        }
        self.checkpointed = self.cursor.clone();
        let checkpoint = Checkpoint::new(self.stream.to_string(), self.cursor.to_json());
        self.send(SourceEvent::Checkpoint(checkpoint))
    }

    /// Only the byte-offset formats find records they cannot decode one by one.
    #[cfg(any(feature = "jsonl", feature = "csv"))]
    pub(crate) fn dead_letter(&self, letter: cdp_core::DeadLetter) -> Result<()> {
        self.send(SourceEvent::DeadLetter(letter))
    }

    /// The schema changes the committed cursor carries, for a schemaless read to go on from.
    #[cfg(any(feature = "jsonl", feature = "csv"))]
    pub(crate) fn schema_state(&self) -> Option<&serde_json::Value> {
        self.cursor.schema.as_ref()
    }

    /// Announces the stream's new schema; `state` (the changes that make it) goes into the
    /// cursor with the next checkpoint.
    #[cfg(any(feature = "jsonl", feature = "csv"))]
    pub(crate) fn schema_change(
        &mut self,
        schema: SchemaRef,
        state: serde_json::Value,
    ) -> Result<()> {
        self.cursor.schema = Some(state);
        self.send(SourceEvent::SchemaChange {
            stream: self.stream.clone(),
            schema,
        })
    }

    /// Reports schema drift a schemaless read found.
    #[cfg(any(feature = "jsonl", feature = "csv"))]
    pub(crate) fn drift(&self, drift: cdp_core::SchemaDrift) -> Result<()> {
        self.send(SourceEvent::Drift(drift))
    }
}

/// Runs `work` on tokio's blocking pool (file I/O and decoding would stall the executor)
/// and returns its events as a stream. The thread starts on the first poll, so `read` needs
/// no runtime; dropping the stream stops the thread at its next send.
pub(crate) fn blocking_stream<F>(connector: &'static str, work: F) -> SourceEventStream
where
    F: FnOnce(mpsc::Sender<Result<SourceEvent>>) -> Result<()> + Send + 'static,
{
    type Rx = mpsc::Receiver<Result<SourceEvent>>;
    enum State<F> {
        Idle(F),
        Running(Rx, tokio::task::JoinHandle<()>),
        Done,
    }

    let stream = futures::stream::unfold(State::Idle(work), move |state| async move {
        let (mut rx, handle) = match state {
            State::Idle(work) => {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                let handle = tokio::task::spawn_blocking(move || {
                    let errors = tx.clone();
                    match work(tx) {
                        Ok(()) | Err(Error::Cancelled) => {}
                        Err(e) => {
                            let _ = errors.blocking_send(Err(e));
                        }
                    }
                });
                (rx, handle)
            }
            State::Running(rx, handle) => (rx, handle),
            State::Done => return None,
        };
        match rx.recv().await {
            Some(event) => Some((event, State::Running(rx, handle))),
            // The thread ended; make sure it did not end by panicking, which would
            // otherwise look like a finished read.
            None => match handle.await {
                Ok(()) => None,
                Err(e) => Some((Err(Error::external(connector, e)), State::Done)),
            },
        }
    });
    Box::pin(stream)
}

/// Opens `path` for reading, naming it in the error.
pub(crate) fn open_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))
}

/// Starts reading the stream of `options`: lists the files on the reader thread (so files
/// added since the source was built are seen), builds the per-file reader with `make` (which
/// may infer the schema) and reads every file from its committed position.
pub(crate) fn read_stream<Make, Reader>(
    options: FileOptions,
    request: ReadRequest,
    make: Make,
) -> Result<SourceEventStream>
where
    Make: FnOnce(&FileOptions) -> Result<Reader> + Send + 'static,
    Reader: FnMut(&mut Emitter, &str, &Path) -> Result<()>,
{
    options.validate()?;
    if request.sync_mode == Some(SyncMode::IncrementalDedup) {
        return Err(Error::Config(format!(
            "{}: sync mode incremental_dedup is not supported (files have no primary key); \
             use full_refresh or incremental_append",
            options.connector
        )));
    }
    let stream = options.stream_name()?;
    if !request.wants(&stream) {
        return Ok(Box::pin(futures::stream::empty()));
    }
    let cursor = FileCursor::from_request(&request, &stream)?;
    Ok(blocking_stream(options.connector, move |tx| {
        let files = options.list_files()?;
        if files.is_empty() {
            return Ok(());
        }
        let mut read_file = make(&options)?;
        let mut out = Emitter::new(tx, &stream, &options.name, cursor, options.positions);
        out.resolve(&files)?;
        for (key, path) in &files {
            out.begin_file(key, path)?;
            read_file(&mut out, key, path)?;
        }
        Ok(())
    }))
}
