//! One read: the tap runs as a child process and its messages become events.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufReader;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use arrow::datatypes::Schema;

use cdp_core::{
    Batch, Checkpoint, DeadLetter, Error, ReadRequest, Result, SchemaDrift, SourceEvent,
    SourceNotice, SyncMode,
};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::batch;
use super::cursor::{Resume, cursor};
use super::decode::{Decoded, StreamDecoder};
use super::message::Message;
use super::schema::arrow_schema;
use crate::singer::process::{ChildGuard, Program, Workdir, read_line};
use crate::sources::schemaless::DriftPolicy;

/// Bytes of a line kept in the dead letter of a line that could not be read.
const DEAD_LINE_BYTES: usize = 64 * 1024;

/// Everything a read needs, cloned into its thread.
#[derive(Debug, Clone)]
pub(crate) struct ReadSetup {
    pub(crate) name: String,
    pub(crate) program: Program,
    /// `--catalog` or `--properties`, and the file.
    pub(crate) catalog: Option<(&'static str, PathBuf)>,
    pub(crate) policy: DriftPolicy,
    pub(crate) batch_size: usize,
    pub(crate) max_line_bytes: usize,
}

/// Runs the tap for `request` and sends its events to `tx`; the child is registered with
/// `guard`, which kills it if the read is dropped.
pub(crate) fn run(
    setup: &ReadSetup,
    request: &ReadRequest,
    guard: &ChildGuard,
    tx: mpsc::Sender<Result<SourceEvent>>,
) -> Result<()> {
    let resume = match request.sync_mode {
        // A full refresh reads everything: the tap gets no state.
        Some(SyncMode::FullRefresh) => Resume::default(),
        _ => Resume::from_request(request)?,
    };
    let dir = Workdir::new()?;
    let program = &setup.program;
    let mut command = program.command(&dir)?;
    if let Some((flag, path)) = &setup.catalog {
        command.arg(flag).arg(path);
    }
    if let Some(state) = &resume.state {
        let path = dir.path().join("state.json");
        dir.write_private(&path, &serde_json::to_vec(state)?)?;
        command.arg("--state").arg(path);
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    let (mut child, tail) = program.spawn(command)?;
    let stdout = child.stdout.take();
    guard.set(child);
    let Some(stdout) = stdout else {
        guard.kill();
        return Err(Error::Config(
            "singer: the tap's stdout was not captured".into(),
        ));
    };

    let mut reader = Reader::new(setup, request, resume, tx);
    let mut lines = BufReader::with_capacity(256 * 1024, stdout);
    let mut line = Vec::new();
    let outcome = loop {
        line.clear();
        match read_line(&mut lines, &mut line, setup.max_line_bytes) {
            Ok(None) => break Ok(()),
            Ok(Some(cut)) => {
                if let Err(e) = reader.line(&line, cut) {
                    break Err(e);
                }
            }
            Err(e) => break Err(Error::io(format!("the stdout of `{}`", program.command), e)),
        }
    };
    if let Err(error) = outcome {
        guard.kill();
        return Err(error);
    }
    let status = guard
        .wait()
        .map_err(|e| Error::io(format!("waiting for `{}`", program.command), e))?;
    let stderr = tail.finish();
    match status {
        Some(status) if !status.success() => Err(program.exited(status, stderr)),
        _ => reader.finish(),
    }
}

/// The state of one read.
struct Reader<'a> {
    setup: &'a ReadSetup,
    request: &'a ReadRequest,
    tx: mpsc::Sender<Result<SourceEvent>>,
    decoders: BTreeMap<String, StreamDecoder>,
    /// Streams checkpointed at each state.
    known: BTreeSet<String>,
    /// Committed schema changes, taken by each stream's first `SCHEMA`.
    committed_schemas: HashMap<String, Value>,
    state: Option<Value>,
    seq: u64,
    /// Messages since the last state (for positions that a resume reproduces).
    since_state: u64,
    /// Whether anything was emitted or queued since the last checkpoint.
    uncovered: bool,
}

impl<'a> Reader<'a> {
    fn new(
        setup: &'a ReadSetup,
        request: &'a ReadRequest,
        resume: Resume,
        tx: mpsc::Sender<Result<SourceEvent>>,
    ) -> Self {
        let known = resume
            .streams
            .iter()
            .filter(|s| request.wants(s))
            .cloned()
            .collect();
        Reader {
            setup,
            request,
            tx,
            decoders: BTreeMap::new(),
            known,
            committed_schemas: resume.schemas,
            state: resume.state,
            seq: resume.seq,
            since_state: 0,
            uncovered: false,
        }
    }

    fn send(&self, event: SourceEvent) -> Result<()> {
        self.tx
            .blocking_send(Ok(event))
            .map_err(|_| Error::Cancelled)
    }

    fn position(&self) -> String {
        format!("message {} after state {}", self.since_state, self.seq)
    }

    fn line(&mut self, line: &[u8], cut: bool) -> Result<()> {
        let text = line.trim_ascii();
        if text.is_empty() {
            return Ok(());
        }
        if cut {
            self.since_state += 1;
            let reason = format!(
                "a line longer than {} bytes (max_line_bytes); its start is kept",
                self.setup.max_line_bytes
            );
            return self.dead_line(None, text, reason);
        }
        match Message::parse(text) {
            Ok(message) => self.message(message, text),
            Err(reason) => {
                self.since_state += 1;
                self.dead_line(None, text, reason)
            }
        }
    }

    /// A line that cannot be read: a dead letter of its stream, or of the source's name
    /// when it names none.
    fn dead_line(&mut self, stream: Option<&str>, line: &[u8], reason: String) -> Result<()> {
        let stream = stream.unwrap_or(&self.setup.name).to_string();
        let kept = &line[..line.len().min(DEAD_LINE_BYTES)];
        let letter = DeadLetter::new(
            stream.as_str(),
            "source",
            reason,
            String::from_utf8_lossy(kept).into_owned(),
        )
        .at(self.position());
        self.known.insert(stream);
        self.uncovered = true;
        self.send(SourceEvent::DeadLetter(letter))
    }

    fn message(&mut self, message: Message<'_>, line: &[u8]) -> Result<()> {
        match message {
            Message::Schema { stream, schema } => self.schema(stream, schema),
            Message::Record { stream, record } => {
                if !self.request.wants(&stream) {
                    return Ok(());
                }
                self.since_state += 1;
                let position = self.position();
                self.record(&stream, record, position)
            }
            Message::State { value } => self.state(value),
            Message::Batch {
                stream,
                format,
                compression,
                manifest,
            } => {
                if !self.request.wants(&stream) {
                    return Ok(());
                }
                self.since_state += 1;
                for uri in manifest {
                    if let Err(reason) =
                        self.batch_file(&stream, &uri, &format, compression.as_deref())?
                    {
                        self.dead_line(Some(&stream), line, reason)?;
                    }
                }
                Ok(())
            }
            Message::ActivateVersion { stream } => {
                tracing::debug!(stream = %stream, "ACTIVATE_VERSION ignored");
                Ok(())
            }
        }
    }

    fn schema(&mut self, stream: String, schema: &RawValue) -> Result<()> {
        if !self.request.wants(&stream) {
            return Ok(());
        }
        let (base, explicit) = arrow_schema(schema);
        let base = self.setup.policy.with_overflow(&self.setup.name, base)?;
        let changed = match self.decoders.get(&stream) {
            Some(current) if current.base() == &base => return Ok(()),
            Some(_) => true,
            None => false,
        };
        if changed {
            // Rows already queued keep the schema they came with.
            self.flush(&stream)?;
        }
        let committed = if changed {
            None
        } else {
            self.committed_schemas.remove(&stream)
        };
        let decoder = StreamDecoder::new(
            self.setup.policy.clone(),
            base.clone(),
            explicit,
            committed.as_ref(),
        );
        self.decoders.insert(stream.clone(), decoder);
        self.known.insert(stream.clone());
        if changed {
            self.send(SourceEvent::SchemaChange {
                stream: stream.into(),
                schema: base,
            })?;
        }
        Ok(())
    }

    /// The decoder of `stream`; a stream whose records came without a `SCHEMA` is
    /// decoded by inference alone.
    fn decoder(&mut self, stream: &str) -> &mut StreamDecoder {
        match self.decoders.entry(stream.to_string()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                tracing::warn!(
                    stream,
                    "a RECORD before any SCHEMA of its stream; inferring its schema"
                );
                let empty = Arc::new(Schema::empty());
                let base = self
                    .setup
                    .policy
                    .with_overflow(&self.setup.name, empty.clone())
                    .unwrap_or(empty);
                let committed = self.committed_schemas.remove(stream);
                self.known.insert(stream.to_string());
                entry.insert(StreamDecoder::new(
                    self.setup.policy.clone(),
                    base,
                    false,
                    committed.as_ref(),
                ))
            }
        }
    }

    fn record(&mut self, stream: &str, record: &RawValue, position: String) -> Result<()> {
        let batch_size = self.setup.batch_size;
        self.uncovered = true;
        let decoder = self.decoder(stream);
        decoder.push(record, position);
        if decoder.pending() >= batch_size {
            self.flush(stream)?;
        }
        Ok(())
    }

    /// Reads the records of one batch file into `stream`; the inner error is why the
    /// file could not be read (its `BATCH` message becomes a dead letter).
    fn batch_file(
        &mut self,
        stream: &str,
        uri: &str,
        format: &str,
        compression: Option<&str>,
    ) -> Result<Result<(), String>> {
        let opened = batch::local_path(uri)
            .and_then(|path| Ok((batch::open(&path, format, compression)?, path)));
        let (mut reader, path) = match opened {
            Ok(opened) => opened,
            Err(reason) => return Ok(Err(reason)),
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            let cut = match read_line(&mut reader, &mut line, self.setup.max_line_bytes) {
                Ok(Some(cut)) => cut,
                Ok(None) => return Ok(Ok(())),
                Err(e) => {
                    return Ok(Err(format!(
                        "reading batch file {} stopped at line {}: {e}",
                        path.display(),
                        number + 1
                    )));
                }
            };
            number += 1;
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let position = format!("{name}:{number}");
            let parsed = if cut {
                Err(format!(
                    "a line longer than {} bytes (max_line_bytes); its start is kept",
                    self.setup.max_line_bytes
                ))
            } else {
                match serde_json::from_slice::<&RawValue>(text) {
                    Ok(raw) if raw.get().starts_with('{') => Ok(raw),
                    Ok(_) => Err("a batch file record that is not a JSON object".to_string()),
                    Err(e) => Err(format!("invalid JSON in a batch file: {e}")),
                }
            };
            match parsed {
                Ok(record) => self.record(stream, record, position)?,
                Err(reason) => {
                    let kept = &text[..text.len().min(DEAD_LINE_BYTES)];
                    let letter = DeadLetter::new(
                        stream,
                        "source",
                        reason,
                        String::from_utf8_lossy(kept).into_owned(),
                    )
                    .at(position);
                    self.known.insert(stream.to_string());
                    self.uncovered = true;
                    self.send(SourceEvent::DeadLetter(letter))?;
                }
            }
        }
    }

    /// Decodes what `stream` has queued and sends it.
    fn flush(&mut self, stream: &str) -> Result<()> {
        let Some(decoder) = self.decoders.get_mut(stream) else {
            return Ok(());
        };
        for decoded in decoder.decode()? {
            let event = match decoded {
                Decoded::Batch(data) => {
                    SourceEvent::Batch(Batch::new(stream, data, self.setup.name.as_str()))
                }
                Decoded::DeadLetter {
                    position,
                    payload,
                    reason,
                } => SourceEvent::DeadLetter(
                    DeadLetter::new(stream, "source", reason, payload).at(position),
                ),
                Decoded::Drift(note) => SourceEvent::Drift(SchemaDrift {
                    stream: stream.to_string(),
                    path: note.path,
                    kind: note.kind,
                    action: note.action,
                    detail: note.detail,
                    position: None,
                }),
                Decoded::Schema { schema } => SourceEvent::SchemaChange {
                    stream: stream.into(),
                    schema,
                },
            };
            self.send(event)?;
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<()> {
        let streams: Vec<String> = self.decoders.keys().cloned().collect();
        for stream in streams {
            self.flush(&stream)?;
        }
        Ok(())
    }

    fn state(&mut self, value: Value) -> Result<()> {
        // A tap often starts by repeating the state it was given: nothing new.
        if !self.uncovered && self.state.as_ref() == Some(&value) {
            return Ok(());
        }
        self.flush_all()?;
        self.state = Some(value);
        self.seq += 1;
        self.since_state = 0;
        self.checkpoint()
    }

    fn checkpoint(&mut self) -> Result<()> {
        // Streams not read yet in this run keep the changes they were committed with.
        let mut schemas: BTreeMap<&String, &Value> = self.committed_schemas.iter().collect();
        for (stream, decoder) in &self.decoders {
            match decoder.changes() {
                Some(changes) => schemas.insert(stream, changes),
                None => schemas.remove(stream),
            };
        }
        let cursor = cursor(self.state.as_ref(), self.seq, schemas);
        for stream in &self.known {
            self.send(SourceEvent::Checkpoint(Checkpoint::new(
                stream.clone(),
                cursor.clone(),
            )))?;
        }
        self.uncovered = false;
        Ok(())
    }

    /// The tap ended well: what is queued goes out, and what came after its last state is
    /// covered by that state (a resume reads it again: the tap's state does not cover it).
    fn finish(mut self) -> Result<()> {
        if !self.uncovered {
            return Ok(());
        }
        self.flush_all()?;
        let stream = self
            .known
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| self.setup.name.clone());
        let message = match &self.state {
            Some(_) => format!(
                "the tap wrote {} messages after its last STATE and ended; they are committed \
                 with that state, which does not cover them, so a resume reads them again",
                self.since_state
            ),
            None => "the tap wrote no STATE: each run reads everything again".to_string(),
        };
        self.send(SourceEvent::Notice(SourceNotice {
            stream,
            subject: self.setup.program.command.clone(),
            message,
        }))?;
        self.seq += 1;
        self.checkpoint()
    }
}
