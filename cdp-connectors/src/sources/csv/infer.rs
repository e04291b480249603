//! Headers and schema inference of the CSV source.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, Field, Schema};
use cdp_core::{Error, Result};

use super::records::Splitter;
use super::typing::{Class, classify, column_type, merge};
use super::{Dialect, DuplicateHeaders};
use crate::sources::common::open_file;

/// The UTF-8 byte order mark some tools write at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Bytes read from a file at a time while looking for its header or sampling its rows.
const CHUNK: usize = 64 * 1024;

/// Reads the records of a file from its start, a chunk at a time.
pub(crate) struct FileRecords<'a> {
    file: std::fs::File,
    splitter: &'a Splitter,
    buf: Vec<u8>,
    at: usize,
    /// File offset of `buf[0]`.
    offset: u64,
    eof: bool,
    /// Read a last record without its line break.
    read_unterminated: bool,
}

impl<'a> FileRecords<'a> {
    pub(crate) fn open(
        path: &Path,
        splitter: &'a Splitter,
        read_unterminated: bool,
    ) -> Result<Self> {
        let mut file = open_file(path)?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        let mut records = FileRecords {
            file,
            splitter,
            buf: Vec::new(),
            at: 0,
            offset: 0,
            eof: false,
            read_unterminated,
        };
        records.fill(path)?;
        if records.buf.starts_with(BOM) {
            records.at = BOM.len();
        }
        Ok(records)
    }

    fn fill(&mut self, path: &Path) -> Result<()> {
        if self.at > CHUNK {
            self.buf.drain(..self.at);
            self.offset += self.at as u64;
            self.at = 0;
        }
        let read = (&mut self.file)
            .take(CHUNK as u64)
            .read_to_end(&mut self.buf)
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        self.eof = read == 0;
        Ok(())
    }

    /// The next record's fields, or `None` at the end (a last record still without its
    /// line break counts as not there yet, unless `read_unterminated`).
    pub(crate) fn next(&mut self, path: &Path) -> Result<Option<Vec<Vec<u8>>>> {
        loop {
            let eof = self.eof && self.read_unterminated;
            if let Some(found) = self.splitter.first(&self.buf[self.at..], eof) {
                self.at += found.len;
                return Ok(Some(found.fields));
            }
            if self.eof {
                return Ok(None);
            }
            self.fill(path)?;
        }
    }

    /// The file offset right after the last record returned.
    pub(crate) fn position(&self) -> u64 {
        self.offset + self.at as u64
    }
}

/// Column names from a header record: invalid UTF-8 refused, empty names made
/// `column_<n>`, duplicates refused or suffixed (`email`, `email_2`) by `duplicates`.
pub(crate) fn header_names(
    fields: Vec<Vec<u8>>,
    duplicates: DuplicateHeaders,
    path: &Path,
) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(fields.len());
    for (i, field) in fields.into_iter().enumerate() {
        let name = String::from_utf8(field).map_err(|_| {
            Error::Config(format!(
                "csv: the header of `{}` has invalid UTF-8 in column {}",
                path.display(),
                i + 1
            ))
        })?;
        names.push(if name.is_empty() {
            format!("column_{}", i + 1)
        } else {
            name
        });
    }
    let mut first: HashMap<String, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        first.entry(name.clone()).or_insert(i);
    }
    let mut taken: std::collections::HashSet<String> = names.iter().cloned().collect();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for i in 0..names.len() {
        if seen.insert(names[i].clone()) {
            continue;
        }
        match duplicates {
            DuplicateHeaders::Error => {
                return Err(Error::Config(format!(
                    "csv: the header of `{}` names column `{}` twice (columns {} and {}); \
                     rename one, or set `duplicate_headers = \"suffix\"` to read them as \
                     `{}`, `{}_2`, …",
                    path.display(),
                    names[i],
                    first[&names[i]] + 1,
                    i + 1,
                    names[i],
                    names[i]
                )));
            }
            DuplicateHeaders::Suffix => {
                let mut n = 2;
                let renamed = loop {
                    let candidate = format!("{}_{n}", names[i]);
                    if !taken.contains(&candidate) {
                        break candidate;
                    }
                    n += 1;
                };
                taken.insert(renamed.clone());
                seen.insert(renamed.clone());
                names[i] = renamed;
            }
        }
    }
    Ok(names)
}

/// The header of a file and where its records start; `None` while the header line is not
/// complete (a file just created).
pub(crate) fn read_header(
    path: &Path,
    splitter: &Splitter,
    duplicates: DuplicateHeaders,
    read_unterminated: bool,
) -> Result<Option<(Vec<String>, u64)>> {
    let mut records = FileRecords::open(path, splitter, read_unterminated)?;
    match records.next(path)? {
        Some(fields) => Ok(Some((
            header_names(fields, duplicates, path)?,
            records.position(),
        ))),
        None => Ok(None),
    }
}

/// Where a headerless file's records start: after a byte order mark, if there is one.
pub(crate) fn data_start(path: &Path) -> Result<u64> {
    let mut file = open_file(path)?;
    let mut head = [0u8; 3];
    let n = file
        .read(&mut head)
        .map_err(|e| Error::io(path.display().to_string(), e))?;
    Ok(if head[..n] == *BOM { 3 } else { 0 })
}

/// What sampling found: columns in first-seen order, each with the class its values merged
/// into.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    columns: Vec<(String, Option<Class>)>,
    /// Headerless files: how many rows had each field count.
    widths: HashMap<usize, usize>,
    pub(crate) rows: usize,
}

impl Sample {
    fn column(&mut self, name: &str) -> &mut Option<Class> {
        let at = match self.columns.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.columns.push((name.to_string(), None));
                self.columns.len() - 1
            }
        };
        &mut self.columns[at].1
    }

    /// The type sampled for `name`, text if never sampled.
    pub(crate) fn type_of(&self, name: &str) -> DataType {
        column_type(
            self.columns
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, class)| *class),
        )
    }

    /// The schema: every column, typed by its samples.
    pub(crate) fn schema(&self) -> Schema {
        Schema::new(
            self.columns
                .iter()
                .map(|(name, class)| Field::new(name, column_type(*class), true))
                .collect::<Vec<_>>(),
        )
    }
}

/// The sampling settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sampling {
    pub(crate) dialect: Dialect,
    pub(crate) duplicates: DuplicateHeaders,
    pub(crate) read_unterminated: bool,
}

/// Samples the first `limit` rows of `files`, in order.
pub(crate) fn sample(
    files: &[(String, PathBuf)],
    sampling: Sampling,
    limit: usize,
    splitter: &Splitter,
) -> Result<Sample> {
    let mut sample = Sample::default();
    let mut headerless: Vec<Vec<Vec<u8>>> = Vec::new();
    for (_, path) in files {
        if sample.rows >= limit {
            break;
        }
        let mut records = FileRecords::open(path, splitter, sampling.read_unterminated)?;
        let names = if sampling.dialect.has_header {
            match records.next(path)? {
                Some(fields) => {
                    let names = header_names(fields, sampling.duplicates, path)?;
                    for name in &names {
                        sample.column(name);
                    }
                    Some(names)
                }
                None => continue,
            }
        } else {
            None
        };
        while sample.rows < limit {
            let Some(fields) = records.next(path)? else {
                break;
            };
            sample.rows += 1;
            match &names {
                Some(names) => {
                    for (name, field) in names.iter().zip(&fields) {
                        let class = std::str::from_utf8(field).map_or(Class::Text, classify);
                        let seen = sample.column(name);
                        *seen = merge(*seen, class);
                    }
                }
                None => {
                    *sample.widths.entry(fields.len()).or_default() += 1;
                    headerless.push(fields);
                }
            }
        }
    }
    if !sampling.dialect.has_header {
        // The width most rows have: one odd row must not make every other one ragged.
        let width = sample
            .widths
            .iter()
            .max_by_key(|(width, count)| (**count, std::cmp::Reverse(**width)))
            .map_or(0, |(width, _)| *width);
        for i in 0..width {
            sample.column(&format!("column_{}", i + 1));
        }
        for fields in headerless {
            for (i, field) in fields.iter().take(width).enumerate() {
                let class = std::str::from_utf8(field).map_or(Class::Text, classify);
                let seen = &mut sample.columns[i].1;
                *seen = merge(*seen, class);
            }
        }
    }
    Ok(sample)
}
