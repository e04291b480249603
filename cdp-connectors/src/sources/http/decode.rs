//! Pages of JSON records into Arrow batches, through the schemaless decoder the JSONL
//! source uses: a key the schema lacks evolves it, goes to the overflow column or is a dead
//! letter, and a type conflict widens or is a dead letter, by the source's policy.
//!
//! A page is decoded in one pass when its records fit the schema; otherwise record by
//! record, where the drift policy applies (as the JSONL source's slow path does for a
//! region of a file).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use cdp_core::Result;
use serde_json::Value;

use crate::sources::engine::{Checked, RecordFormat};
use crate::sources::jsonl::JsonlFormat;
use crate::sources::schemaless::delta::Deltas;
use crate::sources::schemaless::json::{JsonDrift, Shape, parse_record};
use crate::sources::schemaless::path::Path;
use crate::sources::schemaless::{Changes, DriftNote, DriftPolicy};

/// Times one record may change the schema before it is refused (as in the JSONL source).
const MAX_EVOLUTIONS_PER_RECORD: usize = 4;

/// What decoding a page produced, in order.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// Rows, in the schema announced last.
    Batch(RecordBatch),
    /// Record `index` of the page cannot become a row.
    DeadLetter { index: usize, reason: String },
    /// Drift found (once per field, kind and action in a read).
    Drift(DriftNote),
    /// The schema changed; `state` goes into the checkpoint.
    Schema { schema: SchemaRef, state: Value },
}

/// The decoder of one stream for one read.
#[derive(Debug)]
pub(crate) struct PageDecoder {
    format: JsonlFormat,
}

impl PageDecoder {
    /// Decodes with `base` (overflow column included), continuing from the schema changes
    /// of a checkpoint.
    pub(crate) fn new(
        policy: DriftPolicy,
        base: SchemaRef,
        explicit: bool,
        changes: Option<&Value>,
    ) -> Self {
        let mut drift = JsonDrift::new(policy, base, explicit);
        if let Some(changes) = changes {
            drift.restore(changes);
        }
        PageDecoder {
            format: JsonlFormat::new(drift),
        }
    }

    /// Decodes `records` (one compact JSON object each).
    pub(crate) fn decode(&mut self, records: &[String]) -> Result<Vec<Decoded>> {
        let mut out = Vec::new();
        if records.is_empty() {
            return Ok(out);
        }
        if let Some(batch) = self.fast(records)? {
            changes(self.format.take_changes(), &mut out);
            out.push(Decoded::Batch(batch));
            return Ok(out);
        }
        let rows = records.len();
        let mut decoder = self.format.decoder(rows)?;
        for (index, record) in records.iter().enumerate() {
            let mut verdict = self.format.check(record.as_bytes());
            let mut evolutions = 0;
            while let Checked::Evolve = verdict {
                // The rows before this record keep the schema they were decoded with.
                if let Some(batch) = self.format.flush(&mut decoder)? {
                    out.push(Decoded::Batch(batch));
                }
                changes(self.format.take_changes(), &mut out);
                decoder = self.format.decoder(rows)?;
                evolutions += 1;
                verdict = if evolutions < MAX_EVOLUTIONS_PER_RECORD {
                    self.format.check(record.as_bytes())
                } else {
                    Checked::Reject {
                        reason: "the record kept changing the schema".into(),
                        resync: false,
                    }
                };
            }
            match verdict {
                Checked::Accept => self.format.push(&mut decoder, record.as_bytes(), None)?,
                Checked::Rewrite { record, .. } => self.format.push(&mut decoder, &record, None)?,
                Checked::Reject { reason, .. } => out.push(Decoded::DeadLetter { index, reason }),
                Checked::Evolve => {}
            }
            changes(self.format.take_changes(), &mut out);
        }
        self.format.finish(&mut decoder)?;
        if let Some(batch) = self.format.flush(&mut decoder)? {
            out.push(Decoded::Batch(batch));
        }
        Ok(out)
    }

    /// The whole page in one pass, if every record fits the schema as it is.
    fn fast(&mut self, records: &[String]) -> Result<Option<RecordBatch>> {
        let mut text = String::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for record in records {
            text.push_str(record);
            text.push('\n');
        }
        let bytes = text.as_bytes();
        let mut decoder = self.format.decoder(records.len())?;
        let mut fed = 0;
        while fed < bytes.len() {
            match self.format.decode(&mut decoder, &bytes[fed..]) {
                Ok(0) => break,
                Ok(n) => fed += n,
                Err(_) => return Ok(None),
            }
        }
        if self.format.buffered(&decoder) != records.len()
            || self.format.finish(&mut decoder).is_err()
        {
            return Ok(None);
        }
        match self.format.flush(&mut decoder) {
            Ok(batch) => Ok(batch),
            Err(_) => Ok(None),
        }
    }
}

fn changes(changes: Changes, out: &mut Vec<Decoded>) {
    out.extend(changes.drift.into_iter().map(Decoded::Drift));
    if let Some((schema, state)) = changes.schema {
        out.push(Decoded::Schema { schema, state });
    }
}

/// The schema of a sample of records (one compact JSON object each), by the conflict
/// policy; records that are not objects are left out (they will be dead letters).
pub(crate) fn infer(records: &[String], widen: bool) -> SchemaRef {
    let mut shape = Shape::default();
    for record in records {
        if let Ok(entries) = parse_record(record.as_bytes()) {
            shape.observe_entries(&entries);
        }
    }
    Arc::new(shape.schema(widen))
}

/// `schema` in the checkpoint form of schema changes from an empty schema.
pub(crate) fn schema_to_json(schema: &Schema) -> Value {
    let mut deltas = Deltas::default();
    for field in schema.fields() {
        deltas.set(
            Path::default().child(field.name()),
            field.data_type().clone(),
        );
    }
    deltas.to_json()
}

/// The schema a checkpoint's base holds.
pub(crate) fn schema_from_json(value: &Value) -> SchemaRef {
    Deltas::from_json(value).apply(&Arc::new(Schema::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(records: &[&str]) -> Vec<String> {
        records.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn a_new_key_evolves_the_schema_mid_page() {
        let sample = lines(&[r#"{"id":1,"name":"a"}"#]);
        let base = infer(&sample, true);
        assert_eq!(schema_from_json(&schema_to_json(&base)), base);
        let mut decoder = PageDecoder::new(DriftPolicy::default(), base, false, None);
        let out = decoder
            .decode(&lines(&[
                r#"{"id":1,"name":"a"}"#,
                r#"{"id":2,"name":"b","plan":"pro"}"#,
                r#"[1]"#,
            ]))
            .unwrap();
        let kinds: Vec<&str> = out
            .iter()
            .map(|d| match d {
                Decoded::Batch(_) => "batch",
                Decoded::DeadLetter { .. } => "dead",
                Decoded::Drift(_) => "drift",
                Decoded::Schema { .. } => "schema",
            })
            .collect();
        assert_eq!(kinds, ["batch", "drift", "schema", "dead", "batch"]);
    }
}
