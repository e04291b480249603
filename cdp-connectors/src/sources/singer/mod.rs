//! The Singer source: any Singer tap as a cdp source (feature `singer`).

mod batch;
mod catalog;
mod config;
mod cursor;
mod decode;
mod message;
mod read;
pub(crate) mod schema;

use std::path::PathBuf;
use std::process::Stdio;

use cdp_core::{
    Catalog, ConnectorSpec, Error, ReadRequest, Result, Source, SourceEvent, SourceEventStream,
    SyncMode, async_trait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

pub use config::SingerSourceConfig;

use self::read::ReadSetup;
use crate::singer::SingerError;
use crate::singer::process::{
    ChildGuard, KillOnDrop, Program, ProgramConfig, Workdir, read_bounded,
};
use crate::sources::schemaless::{DriftPolicy, NewFields, TypeConflicts};

const CONNECTOR: &str = "singer";

/// Events buffered between the thread reading the tap and the pipeline: when they are
/// not taken, the thread stops reading and the tap blocks on its full stdout.
const CHANNEL: usize = 16;

/// Largest `--discover` output read.
const MAX_CATALOG_BYTES: u64 = 64 * 1024 * 1024;

/// How a tap is handed its catalog: `--catalog` (current taps) or `--properties` (older
/// ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogFlag {
    /// `--catalog FILE`.
    #[default]
    Catalog,
    /// `--properties FILE`.
    Properties,
}

impl CatalogFlag {
    fn flag(self) -> &'static str {
        match self {
            CatalogFlag::Catalog => "--catalog",
            CatalogFlag::Properties => "--properties",
        }
    }
}

/// Runs a [Singer](https://hub.meltano.com/singer/spec) tap as a child process and reads
/// its messages as a cdp source.
///
/// The tap is started as `COMMAND ARGS… --config FILE [--catalog FILE] [--state FILE]`
/// for each read (an inline config and the state go to a private temporary directory,
/// removed afterwards), with stdin closed; its stdout is read line by line:
///
/// - `SCHEMA` gives a stream's schema: JSON Schema mapped to Arrow (see
///   the `schema` module docs: `["null", "string"]` is a nullable `Utf8`,
///   `format: date-time` a UTC timestamp, objects structs, arrays lists, anything
///   ambiguous JSON text). A later `SCHEMA` that differs is a schema change: the rows
///   before it keep the old schema.
/// - `RECORD`s are decoded through the same schemaless path as the JSONL source, into
///   batches of at most `batch_size` rows per stream: a key the schema does not declare is
///   added, kept in the overflow column or dead-lettered ([`NewFields`]); a value that
///   does not fit its declared type is a dead letter with the reason (declared types are
///   kept); a stream without a `SCHEMA` is inferred.
/// - `STATE` becomes a checkpoint of every stream, each holding the tap's state (see the
///   cursor below); the runtime commits it only after every destination flushed what came
///   before it, and the next read hands the last committed state to the tap (`--state`).
/// - `BATCH` (Singer SDK batch messages) names files of records: local `file://` JSON
///   lines, gzip-compressed or not, read like `RECORD`s; a file that cannot be read makes
///   its `BATCH` message a dead letter.
/// - `ACTIVATE_VERSION` is ignored: cdp destinations keep what they were given and do not
///   delete the rows of earlier versions of a stream.
///
/// A line that is not a Singer message (not JSON, an unknown type, a `RECORD` without a
/// stream, longer than `max_line_bytes`) is a dead letter, filed under the stream it names
/// or, when it names none, under the source's name as stream; the read goes on.
///
/// A tap that exits with a non-zero status or is killed fails the read with its status
/// and the last lines of its stderr; what came after the last committed state is read
/// again on the next run. A read that is dropped (the run failed or was cancelled) kills
/// its tap.
///
/// # The cursor
///
/// A tap's state is one value for the whole tap; a pipeline keeps a cursor per stream. At
/// each state every stream gets the same cursor, `{"state": <the tap's state>, "seq": n,
/// "schemas": {...}}`: the state numbered by `seq`, plus the fields this source added to
/// each stream's schema (so a resume decodes as the interrupted read did). A resume hands
/// the tap the state of the cursor with the highest `seq`.
///
/// # Delivery
///
/// A resume is exactly after the committed state as far as the tap's state goes: a tap
/// that resumes right after its state yields each record once; one whose state is coarser
/// replays records before it, which then arrive again (use a destination that upserts on
/// the key the tap declares). Records after a tap's last `STATE` are committed when the
/// tap ends, with that state; a resume reads them again, and the run report says so.
///
/// ```no_run
/// use cdp_connectors::sources::SingerSource;
///
/// let source = SingerSource::new("tap-jsonl")
///     .with_config(serde_json::json!({"path": "data/*.jsonl", "stream_name": "events"}))
///     .with_batch_size(4096);
/// ```
#[derive(Debug, Clone)]
pub struct SingerSource {
    name: String,
    program: Program,
    catalog_file: Option<PathBuf>,
    catalog_flag: CatalogFlag,
    discover: bool,
    policy: DriftPolicy,
    batch_size: usize,
    max_line_bytes: usize,
}

impl SingerSource {
    /// A source running the tap `command` (a path, or a program on `PATH`), with an empty
    /// config. Its name is the command's file name.
    pub fn new(command: impl Into<String>) -> Self {
        let command = command.into();
        let name = std::path::Path::new(&command).file_name().map_or_else(
            || CONNECTOR.to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        SingerSource {
            program: Program::new(name.clone(), command),
            name,
            catalog_file: None,
            catalog_flag: CatalogFlag::default(),
            discover: true,
            policy: DriftPolicy::default(),
            batch_size: 8192,
            max_line_bytes: 64 * 1024 * 1024,
        }
    }

    /// Sets the instance name (`_cdp_source`, errors, and the stream of dead letters that
    /// name no stream).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.program.connector = self.name.clone();
        self
    }

    /// Adds arguments before `--config`.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.program.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the tap (it inherits the others).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.program.env.insert(key.into(), value.into());
        self
    }

    /// Runs the tap in `dir`.
    pub fn with_cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.program.cwd = Some(dir.into());
        self
    }

    /// The tap's config, a JSON object written to a private file for each run.
    pub fn with_config(mut self, config: Value) -> Self {
        self.program.config = ProgramConfig::Inline(config);
        self
    }

    /// The tap's config file.
    pub fn with_config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.program.config = ProgramConfig::File(path.into());
        self
    }

    /// A catalog file handed to the tap (`--catalog`, or what
    /// [`with_catalog_flag`](Self::with_catalog_flag) says) and read by `discover`.
    pub fn with_catalog_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.catalog_file = Some(path.into());
        self
    }

    /// How the catalog file is handed over. Default [`CatalogFlag::Catalog`].
    pub fn with_catalog_flag(mut self, flag: CatalogFlag) -> Self {
        self.catalog_flag = flag;
        self
    }

    /// Whether `discover` runs the tap with `--discover` when no catalog file is given
    /// (default `true`); without either, it lists no stream and the streams are learned
    /// from the tap's `SCHEMA` messages.
    pub fn with_discover(mut self, discover: bool) -> Self {
        self.discover = discover;
        self
    }

    /// Most rows per batch (per stream). Default 8192.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Sets what happens to a key the tap's schema does not declare. Default
    /// [`NewFields::Evolve`].
    pub fn with_new_fields(mut self, new_fields: NewFields) -> Self {
        self.policy.new_fields = new_fields;
        self
    }

    /// Sets what happens to a value of another type in a field the source added (declared
    /// fields keep their types). Default [`TypeConflicts::Widen`].
    pub fn with_type_conflicts(mut self, type_conflicts: TypeConflicts) -> Self {
        self.policy.type_conflicts = type_conflicts;
        self
    }

    /// Sets the overflow column's name (with [`NewFields::Overflow`]). Default `_overflow`.
    pub fn with_overflow_column(mut self, name: impl Into<String>) -> Self {
        self.policy.overflow_column = name.into();
        self
    }

    /// Lines of the tap's stderr kept for errors. Default 20.
    pub fn with_stderr_lines(mut self, lines: usize) -> Self {
        self.program.stderr_lines = lines;
        self
    }

    /// Longest line read from the tap (or a batch file); a longer one is a dead letter.
    /// Default 64 MiB.
    pub fn with_max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.program.command.is_empty() {
            return Err(Error::Config("singer: `command` must not be empty".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Config(
                "singer: `batch_size` must be at least 1".into(),
            ));
        }
        if self.max_line_bytes == 0 {
            return Err(Error::Config(
                "singer: `max_line_bytes` must be at least 1".into(),
            ));
        }
        self.policy.validate(CONNECTOR)
    }

    fn catalog_error(&self, program: String, reason: String, stderr: Vec<String>) -> Error {
        self.program.error(SingerError::Catalog {
            program,
            reason,
            stderr,
        })
    }

    /// Runs `tap --config … --discover` and returns what it printed.
    fn run_discover(&self) -> Result<Vec<u8>> {
        let dir = Workdir::new()?;
        let mut command = self.program.command(&dir)?;
        command
            .arg("--discover")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let (mut child, tail) = self.program.spawn(command)?;
        let read = child
            .stdout
            .take()
            .map(|stdout| read_bounded(stdout, MAX_CATALOG_BYTES));
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("waiting for `{}`", self.program.command), e))?;
        let stderr = tail.finish();
        if !status.success() {
            return Err(self.program.exited(status, stderr));
        }
        match read {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => {
                Err(self.catalog_error(self.program.command.clone(), e.to_string(), stderr))
            }
            None => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl Source for SingerSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: CONNECTOR.into(),
            description: "Any Singer tap, run as a child process, resumed from its state".into(),
            sync_modes: vec![SyncMode::FullRefresh, SyncMode::IncrementalAppend],
        }
    }

    /// The catalog file's streams, or those of `tap --discover`, or none (see
    /// [`with_discover`](Self::with_discover)).
    async fn discover(&self) -> Result<Catalog> {
        self.validate()?;
        let (json, from) = match &self.catalog_file {
            Some(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| Error::io(path.display().to_string(), e))?;
                (bytes, path.display().to_string())
            }
            None if self.discover => {
                let source = self.clone();
                let bytes = tokio::task::spawn_blocking(move || source.run_discover())
                    .await
                    .map_err(|e| Error::external(self.name.clone(), e))??;
                (bytes, self.program.command.clone())
            }
            None => return Ok(Catalog::default()),
        };
        catalog::from_singer(&json, &self.policy, &self.name)
            .map_err(|reason| self.catalog_error(from, reason, Vec::new()))
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        self.validate()?;
        let setup = ReadSetup {
            name: self.name.clone(),
            program: self.program.clone(),
            catalog: self
                .catalog_file
                .clone()
                .map(|path| (self.catalog_flag.flag(), path)),
            policy: self.policy.clone(),
            batch_size: self.batch_size,
            max_line_bytes: self.max_line_bytes,
        };
        Ok(tap_stream(self.name.clone(), move |guard, tx| {
            read::run(&setup, &request, guard, tx)
        }))
    }
}

/// Runs `work` on tokio's blocking pool (the tap's output is read with blocking I/O) and
/// returns its events as a stream. The thread starts on the first poll; dropping the
/// stream kills the tap the thread registered with the guard, which ends the thread.
fn tap_stream<F>(connector: String, work: F) -> SourceEventStream
where
    F: FnOnce(&ChildGuard, mpsc::Sender<Result<SourceEvent>>) -> Result<()> + Send + 'static,
{
    type Rx = mpsc::Receiver<Result<SourceEvent>>;
    enum State<F> {
        Idle(F),
        Running(Rx, tokio::task::JoinHandle<()>, KillOnDrop),
        Done,
    }

    let stream = futures::stream::unfold(State::Idle(work), move |state| {
        let connector = connector.clone();
        async move {
            let (mut rx, handle, killer) = match state {
                State::Idle(work) => {
                    let (tx, rx) = mpsc::channel(CHANNEL);
                    let guard = ChildGuard::default();
                    let killer = KillOnDrop(guard.clone());
                    let handle = tokio::task::spawn_blocking(move || {
                        let errors = tx.clone();
                        match work(&guard, tx) {
                            Ok(()) | Err(Error::Cancelled) => {}
                            Err(e) => {
                                let _ = errors.blocking_send(Err(e));
                            }
                        }
                    });
                    (rx, handle, killer)
                }
                State::Running(rx, handle, killer) => (rx, handle, killer),
                State::Done => return None,
            };
            match rx.recv().await {
                Some(event) => Some((event, State::Running(rx, handle, killer))),
                None => match handle.await {
                    Ok(()) => None,
                    Err(e) => Some((Err(Error::external(connector, e)), State::Done)),
                },
            }
        }
    });
    Box::pin(stream)
}
