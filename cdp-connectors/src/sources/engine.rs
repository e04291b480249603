//! The byte-offset reader shared by the JSONL and CSV sources.
//!
//! The fast path hands large chunks to an Arrow push decoder, which reports how many bytes it
//! consumed; a batch ends exactly at a record boundary, so its file offset is the cursor.
//! Bytes are kept from the last emitted batch on, and only when decoding fails are those
//! bytes split into records and checked one by one, so a bad record costs a slow pass over
//! one batch's worth of input and every good record around it still comes through.
//!
//! The record-by-record path is also where a schemaless format applies its drift policy: a
//! record may be accepted, rewritten (unknown keys moved to an overflow column), refused
//! (a dead letter with its reason), or may change the schema, in which case the rows before
//! it are emitted with the old schema, the change is announced, and decoding goes on with
//! the new one.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use cdp_core::{DeadLetter, Error, Result, SchemaDrift};

use super::common::{Emitter, open_file};
use super::schemaless::Changes;

/// Bytes read from the file at a time. Large enough that syscalls are noise, small enough
/// that the bytes moved when a batch is cut off the buffer stay cheap.
const CHUNK: u64 = 512 * 1024;

/// Times one record may change the schema before it is refused: a record settles in one
/// change (all its new fields at once), a second is a safety margin.
const MAX_EVOLUTIONS_PER_RECORD: usize = 4;

/// What the record-by-record path makes of one record.
#[derive(Debug)]
pub(crate) enum Checked {
    /// It decodes as it is.
    Accept,
    /// It decodes as `record`; `overflow` is the overflow column's value for its row, for
    /// formats that keep it beside the decoder.
    Rewrite {
        record: Vec<u8>,
        overflow: Option<String>,
    },
    /// The format changed its schema so the record fits; check it again.
    Evolve,
    /// It cannot become a row. With `resync`, the record's boundaries themselves are in
    /// doubt (a quote never closed swallowed the lines after it): only its first line is
    /// dead-lettered and reading resumes on the next one.
    Reject { reason: String, resync: bool },
}

/// A record format the engine can drive.
pub(crate) trait RecordFormat {
    /// The push decoder.
    type Decoder;

    /// A fresh decoder cutting batches of `batch_size` rows, for the current schema.
    fn decoder(&self, batch_size: usize) -> Result<Self::Decoder>;
    /// Feeds bytes; returns how many were consumed (fewer once the batch is full).
    fn decode(&self, decoder: &mut Self::Decoder, buf: &[u8]) -> Result<usize, ArrowError>;
    /// Rows buffered in the decoder.
    fn buffered(&self, decoder: &Self::Decoder) -> usize;
    /// Builds a batch of the buffered rows, in the current schema.
    fn flush(&mut self, decoder: &mut Self::Decoder) -> Result<Option<RecordBatch>, ArrowError>;
    /// Signals the end of the input, so a last record without a terminator completes (or
    /// fails, if it is cut short).
    fn finish(&self, decoder: &mut Self::Decoder) -> Result<(), ArrowError>;
    /// How much of `buf` the fast path may feed, `fed` bytes having been fed already.
    /// Bytes past it stay for later (a record still being written).
    fn feed_limit(&self, buf: &[u8], fed: usize, eof: bool) -> usize;
    /// At the end of the file: whether the bytes fed (which start at a record boundary) end
    /// at one, so finishing the decoder completes no half record.
    fn complete_at_eof(&self, fed: &[u8]) -> bool {
        let _ = fed;
        true
    }
    /// The first record of `region` (which starts at a record boundary): its length with
    /// its terminator, and a reason to refuse it regardless of its content. `None` when
    /// the region holds no complete record (yet).
    fn next_record(&self, region: &[u8], eof: bool) -> Option<(usize, Option<String>)>;
    /// The length of the first line of `record`, with its line break.
    fn first_line(&self, record: &[u8]) -> usize {
        memchr_newline(record).map_or(record.len(), |i| i + 1)
    }
    /// Decides what to make of one record (see [`Checked`]).
    fn check(&mut self, record: &[u8]) -> Checked;
    /// Feeds one accepted record to `decoder`, with its overflow value if the format keeps
    /// those beside the decoder.
    fn push(
        &self,
        decoder: &mut Self::Decoder,
        record: &[u8],
        overflow: Option<String>,
    ) -> Result<(), ArrowError>;
    /// Called before reading a file from `offset`; returns where the records start (after a
    /// header, for instance), or `None` when the file cannot be read yet (its header line
    /// is still being written).
    fn start(&mut self, path: &Path, offset: u64) -> Result<Option<u64>> {
        let _ = path;
        Ok(Some(offset))
    }
    /// Drift found and the schema change made since the last call.
    fn take_changes(&mut self) -> Changes {
        Changes::default()
    }
}

/// Reads `path` (cursor key `key`) from its committed position to its end.
pub(crate) fn read_file<F: RecordFormat>(
    format: &mut F,
    out: &mut Emitter,
    key: &str,
    path: &Path,
    batch_size: usize,
) -> Result<()> {
    let context = || path.display().to_string();
    let committed = out.position(key);
    let mut file = open_file(path)?;
    let len = file.metadata().map_err(|e| Error::io(context(), e))?.len();
    if len < committed {
        // The file is shorter than what was already read: it was truncated or replaced.
        // Reading it again could duplicate rows, so leave it and say so.
        tracing::warn!(
            file = %path.display(),
            committed,
            len,
            "file is shorter than its committed position; skipping it"
        );
        return Ok(());
    }
    if len == committed {
        return Ok(());
    }
    let Some(start) = format.start(path, committed)? else {
        return Ok(());
    };
    report(format, out, key, None)?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(context(), e))?;

    let mut lines = LineCounter::new(path.to_path_buf());
    let mut decoder = format.decoder(batch_size)?;
    // Invariant: `buf[0]` sits at file offset `base`, right after the last emitted batch.
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK as usize);
    let mut base = start;
    let mut fed = 0usize;
    let mut eof = false;

    loop {
        if !eof {
            let read = (&mut file)
                .take(CHUNK)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(context(), e))?;
            eof = read == 0;
        }
        let mut limit = format.feed_limit(&buf, fed, eof);
        let mut failed = false;
        while fed < limit {
            let consumed = match format.decode(&mut decoder, &buf[fed..limit]) {
                Ok(n) => n,
                Err(_) => {
                    failed = true;
                    break;
                }
            };
            fed += consumed;
            if format.buffered(&decoder) >= batch_size {
                match format.flush(&mut decoder) {
                    Ok(batch) => {
                        base += fed as u64;
                        buf.drain(..fed);
                        limit -= fed;
                        fed = 0;
                        if let Some(batch) = batch {
                            out.batch(batch, key, base)?;
                        }
                        report(format, out, key, None)?;
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            } else if consumed == 0 {
                break;
            }
        }
        if !failed && eof {
            let last = if format.complete_at_eof(&buf[..fed]) {
                format
                    .finish(&mut decoder)
                    .and_then(|()| format.flush(&mut decoder))
            } else {
                Err(ArrowError::ParseError(
                    "a record is cut off at the end".into(),
                ))
            };
            match last {
                Ok(batch) => {
                    base += fed as u64;
                    buf.drain(..fed);
                    fed = 0;
                    match batch {
                        Some(batch) => out.batch(batch, key, base)?,
                        None => out.checkpoint(key, base)?,
                    }
                    report(format, out, key, None)?;
                }
                Err(_) => failed = true,
            }
        }
        if failed {
            let region = Region {
                key,
                base,
                eof,
                batch_size,
            };
            let end = salvage(format, out, &region, &buf, &mut lines)?;
            base += end as u64;
            buf.drain(..end);
            fed = 0;
            decoder = format.decoder(batch_size)?;
        }
        if eof {
            out.checkpoint(key, base)?;
            if !buf.is_empty() {
                tracing::warn!(
                    file = %path.display(),
                    offset = base,
                    bytes = buf.len(),
                    "last record of the file is incomplete; it will be read once it is finished"
                );
            }
            return Ok(());
        }
    }
}

/// Where the bytes given to [`salvage`] sit.
struct Region<'a> {
    key: &'a str,
    /// File offset of the region's first byte.
    base: u64,
    eof: bool,
    batch_size: usize,
}

/// The slow path: checks the records of `bytes` one by one, dead-letters the bad ones and
/// emits the good ones in batches, each followed by a checkpoint that also covers the bad
/// records before it. Returns where the last complete record ends.
fn salvage<F: RecordFormat>(
    format: &mut F,
    out: &mut Emitter,
    region: &Region<'_>,
    bytes: &[u8],
    lines: &mut LineCounter,
) -> Result<usize> {
    let Region {
        key,
        base,
        eof,
        batch_size,
    } = *region;
    let mut decoder = format.decoder(batch_size)?;
    let arrow = |e: ArrowError| Error::from(e);
    // Line numbers are counted only here, and lazily, so the fast path never pays for them.
    let mut line_base: Option<(usize, u64)> = None;
    let mut line_at = |lines: &mut LineCounter, at: usize| -> Result<u64> {
        let (counted_to, line) = match line_base {
            Some(known) => known,
            None => (0, lines.line_at(base)?),
        };
        let line = line + count_newlines(&bytes[counted_to..at]);
        line_base = Some((at, line));
        Ok(line)
    };
    let mut pos = 0;
    while let Some((len, forced)) = format.next_record(&bytes[pos..], eof) {
        let start = pos;
        let mut record = &bytes[start..start + len];
        pos += len;
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut verdict = match forced {
            Some(reason) => Checked::Reject {
                reason,
                resync: false,
            },
            None => format.check(record),
        };
        let mut evolutions = 0;
        while let Checked::Evolve = verdict {
            // The rows before this record keep the schema they were decoded with.
            emit(format, &mut decoder, out, key, base + start as u64)?;
            let line = line_at(lines, start)?;
            report(format, out, key, Some(line))?;
            decoder = format.decoder(batch_size)?;
            evolutions += 1;
            verdict = if evolutions < MAX_EVOLUTIONS_PER_RECORD {
                format.check(record)
            } else {
                Checked::Reject {
                    reason: "the record kept changing the schema".into(),
                    resync: false,
                }
            };
        }
        match verdict {
            Checked::Accept | Checked::Rewrite { .. } => {
                // Cut the batch before this record when it would not fit, so a batch and its
                // checkpoint always end between records.
                let buffered = format.buffered(&decoder);
                if buffered > 0 && buffered + 1 > batch_size {
                    emit(format, &mut decoder, out, key, base + start as u64)?;
                }
                match verdict {
                    Checked::Rewrite { record, overflow } => {
                        format.push(&mut decoder, &record, overflow)
                    }
                    _ => format.push(&mut decoder, record, None),
                }
                .map_err(arrow)?;
                if format.buffered(&decoder) >= batch_size {
                    emit(format, &mut decoder, out, key, base + pos as u64)?;
                }
            }
            Checked::Reject { reason, resync } => {
                if resync {
                    let first = format.first_line(record);
                    if first < record.len() {
                        record = &record[..first];
                        pos = start + first;
                    }
                }
                let line = line_at(lines, start)?;
                let payload = String::from_utf8_lossy(trim_terminator(record)).into_owned();
                let letter = DeadLetter::new(out.stream(), "source", reason, payload)
                    .at(format!("{key}:{line}"));
                out.dead_letter(letter)?;
            }
            Checked::Evolve => {}
        }
        let changes = format.take_changes();
        if !changes.drift.is_empty() || changes.schema.is_some() {
            let line = line_at(lines, start)?;
            emit_changes(changes, out, key, Some(line))?;
        }
    }
    format.finish(&mut decoder).map_err(arrow)?;
    emit(format, &mut decoder, out, key, base + pos as u64)?;
    Ok(pos)
}

fn emit<F: RecordFormat>(
    format: &mut F,
    decoder: &mut F::Decoder,
    out: &mut Emitter,
    key: &str,
    position: u64,
) -> Result<()> {
    match format.flush(decoder)? {
        Some(batch) => out.batch(batch, key, position),
        None => out.checkpoint(key, position),
    }
}

/// Emits what the format found since it was last asked.
fn report<F: RecordFormat>(
    format: &mut F,
    out: &mut Emitter,
    key: &str,
    line: Option<u64>,
) -> Result<()> {
    emit_changes(format.take_changes(), out, key, line)
}

fn emit_changes(changes: Changes, out: &mut Emitter, key: &str, line: Option<u64>) -> Result<()> {
    let position = match line {
        Some(line) => format!("{key}:{line}"),
        None => key.to_string(),
    };
    for note in changes.drift {
        out.drift(SchemaDrift {
            stream: out.stream().to_string(),
            path: note.path,
            kind: note.kind,
            action: note.action,
            detail: note.detail,
            position: Some(position.clone()),
        })?;
    }
    if let Some((schema, state)) = changes.schema {
        out.schema_change(schema, state)?;
    }
    Ok(())
}

/// `record` without its line terminator.
pub(crate) fn trim_terminator(record: &[u8]) -> &[u8] {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    record.strip_suffix(b"\r").unwrap_or(record)
}

pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

/// Turns byte offsets into 1-based line numbers, reading the file only as far as asked and
/// never twice over the same bytes.
#[derive(Debug)]
struct LineCounter {
    path: PathBuf,
    /// `(offset, newlines before it)` of the furthest point counted.
    counted: (u64, u64),
}

impl LineCounter {
    fn new(path: PathBuf) -> Self {
        LineCounter {
            path,
            counted: (0, 0),
        }
    }

    fn line_at(&mut self, offset: u64) -> Result<u64> {
        let (from, mut newlines) = self.counted;
        if offset < from {
            self.counted = (0, 0);
            return self.line_at(offset);
        }
        if offset > from {
            let context = || self.path.display().to_string();
            let mut file = open_file(&self.path)?;
            file.seek(SeekFrom::Start(from))
                .map_err(|e| Error::io(context(), e))?;
            let mut remaining = offset - from;
            let mut chunk = vec![0u8; 64 * 1024];
            while remaining > 0 {
                let want = remaining.min(chunk.len() as u64) as usize;
                let n = file
                    .read(&mut chunk[..want])
                    .map_err(|e| Error::io(context(), e))?;
                if n == 0 {
                    break;
                }
                newlines += count_newlines(&chunk[..n]);
                remaining -= n as u64;
            }
            self.counted = (offset, newlines);
        }
        Ok(newlines + 1)
    }
}
