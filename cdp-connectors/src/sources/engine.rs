//! The byte-offset reader shared by the JSONL and CSV sources.
//!
//! The fast path hands large chunks to an Arrow push decoder, which reports how many bytes it
//! consumed; a batch ends exactly at a record boundary, so its file offset is the cursor.
//! Bytes are kept from the last emitted batch on, and only when decoding fails are those
//! bytes split into records and checked one by one, so a bad record costs a slow pass over
//! one batch's worth of input and every good record around it still comes through.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use cdp_core::{DeadLetter, Error, Result};

use super::common::{Emitter, open_file};

/// Bytes read from the file at a time. Large enough that syscalls are noise, small enough
/// that the bytes moved when a batch is cut off the buffer stay cheap.
const CHUNK: u64 = 512 * 1024;

/// A record format the engine can drive.
pub(crate) trait RecordFormat {
    /// The push decoder.
    type Decoder;

    /// A fresh decoder cutting batches of `batch_size` rows.
    fn decoder(&self, batch_size: usize) -> Result<Self::Decoder>;
    /// Feeds bytes; returns how many were consumed (fewer once the batch is full).
    fn decode(&self, decoder: &mut Self::Decoder, buf: &[u8]) -> Result<usize, ArrowError>;
    /// Rows buffered in the decoder.
    fn buffered(&self, decoder: &Self::Decoder) -> usize;
    /// Builds a batch of the buffered rows.
    fn flush(&self, decoder: &mut Self::Decoder) -> Result<Option<RecordBatch>, ArrowError>;
    /// Signals the end of the input, so a last record without a terminator completes (or
    /// fails, if it is cut short).
    fn finish(&self, decoder: &mut Self::Decoder) -> Result<(), ArrowError>;
    /// How much of `buf` the fast path may feed, `fed` bytes having been fed already.
    /// Bytes past it stay for later (a record still being written).
    fn feed_limit(&self, buf: &[u8], fed: usize, eof: bool) -> usize;
    /// Splits `region`, which starts at a record boundary, into records (each with its
    /// terminator); also returns where the last complete one ends.
    fn records(&self, region: &[u8], eof: bool) -> (Vec<Range<usize>>, usize);
    /// Decodes one record on its own: the rows it makes (at most `batch_size`), or the
    /// reason it cannot become rows.
    fn check(&self, record: &[u8], batch_size: usize) -> std::result::Result<usize, String>;
    /// Called before reading a file from `offset`; returns where the records start (after a
    /// header, for instance).
    fn start(&self, file: &mut std::fs::File, path: &Path, offset: u64) -> Result<u64> {
        let _ = (file, path);
        Ok(offset)
    }
}

/// Reads `path` (cursor key `key`) from its committed position to its end.
pub(crate) fn read_file<F: RecordFormat>(
    format: &F,
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
    let start = format.start(&mut file, path, committed)?;
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
            let last = format
                .finish(&mut decoder)
                .and_then(|()| format.flush(&mut decoder));
            match last {
                Ok(batch) => {
                    base += fed as u64;
                    buf.drain(..fed);
                    fed = 0;
                    match batch {
                        Some(batch) => out.batch(batch, key, base)?,
                        None => out.checkpoint(key, base)?,
                    }
                }
                Err(_) => failed = true,
            }
        }
        if failed {
            let (records, end) = format.records(&buf, eof);
            salvage(
                format,
                out,
                key,
                &buf[..end],
                &records,
                base,
                &mut lines,
                batch_size,
            )?;
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

/// The slow path: checks the records of `region` one by one, dead-letters the bad ones and
/// emits the good ones in batches, each followed by a checkpoint that also covers the bad
/// records before it.
#[allow(clippy::too_many_arguments)]
fn salvage<F: RecordFormat>(
    format: &F,
    out: &mut Emitter,
    key: &str,
    region: &[u8],
    records: &[Range<usize>],
    base: u64,
    lines: &mut LineCounter,
    batch_size: usize,
) -> Result<()> {
    let mut decoder = format.decoder(batch_size)?;
    let arrow = |e: ArrowError| Error::from(e);
    // Line numbers are counted only here, and lazily, so the fast path never pays for them.
    let mut line_base: Option<(usize, u64)> = None;
    for range in records {
        let record = &region[range.clone()];
        if record.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match format.check(record, batch_size) {
            Ok(rows) => {
                // Cut the batch before this record when it would not fit, so a batch and its
                // checkpoint always end between records.
                let buffered = format.buffered(&decoder);
                if buffered > 0 && buffered + rows > batch_size {
                    emit(format, &mut decoder, out, key, base + range.start as u64)?;
                }
                let mut rest = record;
                while !rest.is_empty() {
                    let n = format.decode(&mut decoder, rest).map_err(arrow)?;
                    if n == 0 {
                        break;
                    }
                    rest = &rest[n..];
                }
                if format.buffered(&decoder) >= batch_size {
                    emit(format, &mut decoder, out, key, base + range.end as u64)?;
                }
            }
            Err(reason) => {
                let (counted_to, line) = match line_base {
                    Some(known) => known,
                    None => (0, lines.line_at(base)?),
                };
                let line = line + count_newlines(&region[counted_to..range.start]);
                line_base = Some((range.start, line));
                let payload = String::from_utf8_lossy(trim_terminator(record)).into_owned();
                let letter = DeadLetter::new(out.stream(), "source", reason, payload)
                    .at(format!("{key}:{line}"));
                out.dead_letter(letter)?;
            }
        }
    }
    format.finish(&mut decoder).map_err(arrow)?;
    emit(format, &mut decoder, out, key, base + region.len() as u64)
}

fn emit<F: RecordFormat>(
    format: &F,
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

/// `record` without its line terminator.
pub(crate) fn trim_terminator(record: &[u8]) -> &[u8] {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    record.strip_suffix(b"\r").unwrap_or(record)
}

pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
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
