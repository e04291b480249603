//! CSV framing and decoding for the byte-offset engine, with the schemaless drift policy.
//!
//! arrow-csv splits records and fields (every column as text); [`typing`](super::typing)
//! then gives each column its type, refusing a batch in which a value does not fit, so the
//! engine checks that batch's records one by one and the policy decides about the odd one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_csv::reader::{Decoder, ReaderBuilder};
use cdp_core::{DriftAction, DriftKind, Error, Result};

use super::infer::{Sampling, data_start, read_header, sample};
use super::records::{Splitter, write_record};
use super::typing::{convert, fits, widened};
use super::{Dialect, DuplicateHeaders};
use crate::sources::engine::{Checked, RecordFormat};
use crate::sources::schemaless::delta::{Deltas, set_type};
use crate::sources::schemaless::path::Path as FieldPath;
use crate::sources::schemaless::{
    Changes, DriftLog, DriftPolicy, MAX_FIELDS, NewFields, field_count, type_name,
};

/// Where a column of the file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// The stream's field of that name.
    Field(String),
    /// Nowhere in the schema: to the overflow column, or its rows to the dead letters.
    Unknown(String),
}

/// The CSV format of one read.
#[derive(Debug)]
pub(crate) struct CsvFormat {
    dialect: Dialect,
    policy: DriftPolicy,
    duplicates: DuplicateHeaders,
    read_unterminated: bool,
    infer_records: usize,
    /// The base schema was given, so its columns keep their types.
    explicit: bool,
    base: SchemaRef,
    schema: SchemaRef,
    deltas: Deltas,
    log: DriftLog,
    changed: bool,
    splitter: Splitter,
    /// The current file's columns, in file order.
    layout: Vec<Slot>,
}

/// arrow-csv's decoder, with the overflow values of rows the record-by-record path kept
/// (fields past the header's).
#[derive(Debug)]
pub(crate) struct CsvDecoder {
    inner: Decoder,
    batch_size: usize,
    extras: Vec<Option<String>>,
}

impl CsvFormat {
    pub(crate) fn new(
        schema: SchemaRef,
        explicit: bool,
        policy: DriftPolicy,
        sampling: Sampling,
        infer_records: usize,
    ) -> Self {
        CsvFormat {
            dialect: sampling.dialect,
            policy,
            duplicates: sampling.duplicates,
            read_unterminated: sampling.read_unterminated,
            infer_records,
            explicit,
            base: schema.clone(),
            schema,
            deltas: Deltas::default(),
            log: DriftLog::default(),
            changed: false,
            splitter: Splitter::new(sampling.dialect),
            layout: Vec::new(),
        }
    }

    /// Continues from a cursor's schema state.
    pub(crate) fn restore(&mut self, state: &serde_json::Value) {
        self.deltas = Deltas::from_json(state);
        self.schema = self.deltas.apply(&self.base);
    }

    fn sampling(&self) -> Sampling {
        Sampling {
            dialect: self.dialect,
            duplicates: self.duplicates,
            read_unterminated: self.read_unterminated,
        }
    }

    fn is_overflow(&self, name: &str) -> bool {
        self.policy.new_fields == NewFields::Overflow && name == self.policy.overflow_column
    }

    /// Whether a column's type came from the configured schema (and never widens).
    fn is_explicit(&self, name: &str) -> bool {
        self.explicit && self.base.column_with_name(name).is_some()
    }

    /// Sets the field `name` to `data_type` (adding it if missing), as a schema change.
    fn evolve(&mut self, name: &str, data_type: DataType) -> bool {
        let path = FieldPath::default().child(name);
        let Some(next) = set_type(&self.schema, &path, data_type.clone()) else {
            return false;
        };
        if field_count(&next) > MAX_FIELDS {
            return false;
        }
        self.schema = next;
        self.deltas.set(path, data_type);
        self.changed = true;
        true
    }

    /// Maps the columns of a file's header onto the schema, evolving it for new columns
    /// when the policy says so.
    fn map_header(&mut self, names: Vec<String>, path: &Path) -> Result<()> {
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| self.schema.column_with_name(n).is_none() || self.is_overflow(n))
            .cloned()
            .collect();
        if !unknown.is_empty() && self.policy.new_fields == NewFields::Evolve {
            let sampled = sample(
                &[(String::new(), path.to_path_buf())],
                self.sampling(),
                self.infer_records,
                &self.splitter,
            )?;
            for name in &unknown {
                let data_type = sampled.type_of(name);
                let detail = format!("new column of type {}", type_name(&data_type));
                if !self.evolve(name, data_type) {
                    return Err(Error::Schema {
                        stream: path.display().to_string(),
                        message: format!(
                            "cannot add column `{name}`: the schema would grow past \
                             {MAX_FIELDS} fields"
                        ),
                    });
                }
                self.log.note(
                    name.clone(),
                    DriftKind::NewField,
                    DriftAction::SchemaChanged,
                    || detail,
                );
            }
        }
        for field in self.schema.fields() {
            let present = names.iter().any(|n| n == field.name());
            if !present && !field.is_nullable() && !self.is_overflow(field.name()) {
                return Err(Error::Config(format!(
                    "csv: the header of `{}` has no column `{}`, which the schema requires \
                     (nullable = false); found {names:?}",
                    path.display(),
                    field.name()
                )));
            }
        }
        self.layout = names
            .into_iter()
            .map(|name| {
                if self.schema.column_with_name(&name).is_some() && !self.is_overflow(&name) {
                    Slot::Field(name)
                } else {
                    if self.policy.new_fields == NewFields::Overflow {
                        let column = self.policy.overflow_column.clone();
                        self.log.note(
                            name.clone(),
                            DriftKind::NewField,
                            DriftAction::Overflowed,
                            || format!("column not in the schema, kept in `{column}`"),
                        );
                    }
                    Slot::Unknown(name)
                }
            })
            .collect();
        Ok(())
    }

    /// The utf8 schema arrow-csv splits a file's records with.
    fn text_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            (0..self.layout.len())
                .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ))
    }

    /// Types a batch of text columns into the stream's schema.
    fn typed(
        &self,
        text: &RecordBatch,
        extras: Vec<Option<String>>,
        from_salvage: bool,
    ) -> Result<RecordBatch, ArrowError> {
        let rows = text.num_rows();
        let refused = |what: String| ArrowError::CastError(what);
        let mut overflow: Vec<BTreeMap<String, String>> = Vec::new();
        let mut unknown = Vec::new();
        for (i, slot) in self.layout.iter().enumerate() {
            if let Slot::Unknown(name) = slot {
                let values = text.column(i).as_string::<i32>();
                if values.null_count() < rows {
                    if self.policy.new_fields != NewFields::Overflow {
                        return Err(refused(format!("column `{name}` is not in the schema")));
                    }
                    unknown.push((name, values));
                }
            }
        }
        let has_extras = extras.iter().any(Option::is_some);
        if self.policy.new_fields == NewFields::Overflow && (!unknown.is_empty() || has_extras) {
            overflow = vec![BTreeMap::new(); rows];
            for (name, values) in unknown {
                for (row, value) in values.iter().enumerate() {
                    if let Some(value) = value.filter(|v| !v.is_empty()) {
                        overflow[row].insert(name.clone(), value.to_string());
                    }
                }
            }
            for (row, extra) in extras.into_iter().enumerate().take(rows) {
                let Some(extra) = extra else { continue };
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&extra) {
                    for (k, v) in map {
                        if let serde_json::Value::String(v) = v {
                            overflow[row].insert(k, v);
                        }
                    }
                }
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            if self.is_overflow(field.name()) {
                let mut builder = StringBuilder::with_capacity(rows, 0);
                for row in 0..rows {
                    match overflow.get(row).filter(|m| !m.is_empty()) {
                        Some(map) => builder.append_value(
                            serde_json::to_string(map).unwrap_or_else(|_| "{}".into()),
                        ),
                        None => builder.append_null(),
                    }
                }
                columns.push(Arc::new(builder.finish()));
                continue;
            }
            let at = self
                .layout
                .iter()
                .position(|slot| matches!(slot, Slot::Field(n) if n == field.name()));
            match at {
                Some(i) => {
                    let values = text.column(i).as_string::<i32>();
                    let explicit = self.is_explicit(field.name());
                    let array = convert(values, field.data_type(), explicit).map_err(|row| {
                        refused(format!("row {row}: `{}` does not fit", field.name()))
                    })?;
                    columns.push(array);
                }
                None => columns.push(new_null_array(field.data_type(), rows)),
            }
        }
        if !from_salvage && self.may_hide_a_stray_quote(&columns) {
            return Err(refused(
                "a value spans lines; its records are checked one by one".into(),
            ));
        }
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    /// Whether a line after the first of `text` (which a quote runs through) reads as a
    /// complete row of its own: evidence that the quote is stray (it swallowed the rows
    /// after it) rather than opening a value that spans lines. A row of its own has every
    /// field, no quote read as a character (the line closing a quoted value has one), each
    /// value fitting its column, and a value in a column that is not text: in an all-text
    /// file a stray quote and a multi-line value look the same, and the record is taken as
    /// it reads.
    fn later_line_is_a_row(&self, text: &[u8]) -> bool {
        let mut lines = text.split_inclusive(|b| *b == b'\n').skip(1);
        lines.any(|line| line.ends_with(b"\n") && self.is_a_row(line))
    }

    fn is_a_row(&self, line: &[u8]) -> bool {
        let Some(found) = self.splitter.first(line, true) else {
            return false;
        };
        if found.fields.len() != self.layout.len() {
            return false;
        }
        let mut typed = false;
        for (slot, field) in self.layout.iter().zip(&found.fields) {
            // A quote read as a character: the line ends a quoted value, it is no row.
            if field.contains(&self.dialect.quote) {
                return false;
            }
            let Ok(text) = std::str::from_utf8(field) else {
                return false;
            };
            let Slot::Field(name) = slot else { continue };
            let Some((_, f)) = self.schema.fields().find(name) else {
                continue;
            };
            if !fits(text, f.data_type(), self.is_explicit(name)) {
                return false;
            }
            typed |= !text.is_empty() && f.data_type() != &DataType::Utf8;
        }
        typed
    }

    /// Whether a stray quote could go unnoticed in a batch: a text value holds a line break
    /// and the schema has a column that is not text (see [`Self::later_line_is_a_row`]).
    fn may_hide_a_stray_quote(&self, columns: &[ArrayRef]) -> bool {
        let typed = self
            .schema
            .fields()
            .iter()
            .any(|f| f.data_type() != &DataType::Utf8);
        typed
            && columns.iter().any(|c| {
                c.as_string_opt::<i32>()
                    .is_some_and(|s| s.values().contains(&b'\n'))
            })
    }
}

impl RecordFormat for CsvFormat {
    type Decoder = CsvDecoder;

    fn decoder(&self, batch_size: usize) -> Result<CsvDecoder> {
        let inner = ReaderBuilder::new(self.text_schema())
            .with_header(false)
            .with_delimiter(self.dialect.delimiter)
            .with_quote(self.dialect.quote)
            .with_batch_size(batch_size)
            .build_decoder();
        Ok(CsvDecoder {
            inner,
            batch_size,
            extras: Vec::new(),
        })
    }

    fn decode(&self, decoder: &mut CsvDecoder, buf: &[u8]) -> Result<usize, ArrowError> {
        decoder.inner.decode(buf)
    }

    fn buffered(&self, decoder: &CsvDecoder) -> usize {
        decoder.batch_size - decoder.inner.capacity()
    }

    fn flush(&mut self, decoder: &mut CsvDecoder) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(text) = decoder.inner.flush()? else {
            return Ok(None);
        };
        let take = decoder.extras.len().min(text.num_rows());
        let extras: Vec<Option<String>> = decoder.extras.drain(..take).collect();
        // Rows pushed one by one were checked already.
        let from_salvage = take > 0;
        self.typed(&text, extras, from_salvage).map(Some)
    }

    fn finish(&self, decoder: &mut CsvDecoder) -> Result<(), ArrowError> {
        // An empty slice is how csv-core learns the input ended.
        decoder.inner.decode(&[]).map(|_| ())
    }

    fn feed_limit(&self, buf: &[u8], fed: usize, eof: bool) -> usize {
        if eof && self.read_unterminated {
            return buf.len();
        }
        // Whole lines only: a last line without its break waits for it.
        buf[fed..]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(fed, |i| fed + i + 1)
    }

    fn complete_at_eof(&self, fed: &[u8]) -> bool {
        self.read_unterminated || self.splitter.complete_len(fed) == fed.len()
    }

    fn next_record(&self, region: &[u8], eof: bool) -> Option<(usize, Option<String>)> {
        let blank = region
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .count();
        if blank > 0 {
            return Some((blank, None));
        }
        if region.is_empty() {
            return None;
        }
        if let Some(found) = self.splitter.first(region, false) {
            return Some((found.len, None));
        }
        if !eof {
            return None;
        }
        if !region.contains(&b'\n') {
            // The last line, without its break: read only if told files end that way.
            return self
                .read_unterminated
                .then(|| self.splitter.first(region, true).map(|f| (f.len, None)))
                .flatten();
        }
        // A quote opened and never closed runs to the end of the file.
        if self.read_unterminated || self.later_line_is_a_row(region) {
            let first = self.first_line(region);
            return Some((
                first,
                Some(
                    "a quote opened on this line is never closed; the line is refused and \
                     reading goes on with the next one"
                        .into(),
                ),
            ));
        }
        None
    }

    fn check(&mut self, record: &[u8]) -> Checked {
        let reject = |reason: String, resync: bool| Checked::Reject { reason, resync };
        let Some(found) = self.splitter.first(record, true) else {
            return reject("not a CSV record".into(), false);
        };
        let body = super::super::engine::trim_terminator(record);
        let multiline = body.contains(&b'\n');
        let width = self.layout.len();
        let mut texts = Vec::with_capacity(found.fields.len());
        for (i, field) in found.fields.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => texts.push(text),
                Err(_) => return reject(format!("invalid UTF-8 in field {}", i + 1), false),
            }
        }
        if multiline && self.later_line_is_a_row(record) {
            return reject(
                "a quote on this line is closed only lines later, and the lines between read \
                 as rows of their own: the quote is stray; the line is refused and reading \
                 goes on with the next one"
                    .into(),
                true,
            );
        }
        let n = texts.len();
        let counted = || {
            let names = if self.dialect.has_header {
                "the header names"
            } else {
                "the schema has"
            };
            format!("the row has {n} fields; {names} {width}")
        };
        if n < width {
            return reject(counted(), false);
        }
        let mut extras = BTreeMap::new();
        if n > width {
            if self.policy.new_fields != NewFields::Overflow {
                self.log.note(
                    format!("field {}", width + 1),
                    DriftKind::NewField,
                    DriftAction::DeadLettered,
                    || "fields past the header's".into(),
                );
                return reject(counted(), false);
            }
            for (i, text) in texts.iter().enumerate().skip(width) {
                if !text.is_empty() {
                    extras.insert((i + 1).to_string(), text.to_string());
                }
            }
            if !extras.is_empty() {
                let column = self.policy.overflow_column.clone();
                self.log.note(
                    format!("field {}", width + 1),
                    DriftKind::NewField,
                    DriftAction::Overflowed,
                    || format!("fields past the header's, kept in `{column}` by position"),
                );
            }
        }
        let mut rejects = Vec::new();
        let mut changes = Vec::new();
        for (slot, text) in self.layout.iter().zip(&texts) {
            match slot {
                Slot::Field(name) => {
                    let Some((_, field)) = self.schema.fields().find(name) else {
                        continue;
                    };
                    if text.is_empty() {
                        if !field.is_nullable() {
                            rejects.push(format!("`{name}` is required but empty"));
                        }
                        continue;
                    }
                    let explicit = self.is_explicit(name);
                    if fits(text, field.data_type(), explicit) {
                        continue;
                    }
                    let found = type_name(field.data_type());
                    if self.policy.widen() && !explicit {
                        let to = widened(field.data_type(), text);
                        changes.push((
                            name.clone(),
                            to.clone(),
                            format!("{found} widened to {}", type_name(&to)),
                        ));
                    } else {
                        let why = if explicit {
                            "a column of the explicit schema keeps its type"
                        } else {
                            "type_conflicts = \"dead_letter\""
                        };
                        rejects.push(format!(
                            "`{name}` is {found} but the value {text:?} does not fit ({why})"
                        ));
                        self.log.note(
                            name.clone(),
                            DriftKind::TypeConflict,
                            DriftAction::DeadLettered,
                            || format!("{found} got {text:?}"),
                        );
                    }
                }
                Slot::Unknown(name) => {
                    if self.policy.new_fields == NewFields::DeadLetter && !text.is_empty() {
                        rejects.push(format!(
                            "column `{name}` is not in the schema (new_fields = \"dead_letter\")"
                        ));
                        self.log.note(
                            name.clone(),
                            DriftKind::NewField,
                            DriftAction::DeadLettered,
                            || "column not in the schema".into(),
                        );
                    }
                }
            }
        }
        if !rejects.is_empty() {
            return reject(rejects.join("; "), false);
        }
        if !changes.is_empty() {
            for (name, to, detail) in changes {
                if !self.evolve(&name, to) {
                    return reject(format!("cannot widen `{name}`"), false);
                }
                self.log.note(
                    name,
                    DriftKind::TypeConflict,
                    DriftAction::SchemaChanged,
                    || detail,
                );
            }
            return Checked::Evolve;
        }
        if n > width {
            let kept: Vec<Vec<u8>> = found.fields[..width].to_vec();
            return Checked::Rewrite {
                record: write_record(&kept, self.dialect),
                overflow: (!extras.is_empty())
                    .then(|| serde_json::to_string(&extras).unwrap_or_default()),
            };
        }
        Checked::Accept
    }

    fn push(
        &self,
        decoder: &mut CsvDecoder,
        record: &[u8],
        overflow: Option<String>,
    ) -> Result<(), ArrowError> {
        let mut rest = record;
        while !rest.is_empty() {
            let n = decoder.inner.decode(rest)?;
            if n == 0 {
                break;
            }
            rest = &rest[n..];
        }
        decoder.extras.push(overflow);
        Ok(())
    }

    fn start(&mut self, path: &Path, offset: u64) -> Result<Option<u64>> {
        if !self.dialect.has_header {
            self.layout = self
                .schema
                .fields()
                .iter()
                .filter(|f| !self.is_overflow(f.name()))
                .map(|f| Slot::Field(f.name().clone()))
                .collect();
            return Ok(Some(if offset > 0 {
                offset
            } else {
                data_start(path)?
            }));
        }
        let Some((names, end)) = read_header(
            path,
            &self.splitter,
            self.duplicates,
            self.read_unterminated,
        )?
        else {
            return Ok(None);
        };
        self.map_header(names, path)?;
        Ok(Some(if offset > 0 { offset } else { end }))
    }

    fn take_changes(&mut self) -> Changes {
        let schema =
            std::mem::take(&mut self.changed).then(|| (self.schema.clone(), self.deltas.to_json()));
        Changes {
            drift: self.log.take(),
            schema,
        }
    }
}
