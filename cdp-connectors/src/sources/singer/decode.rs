//! A stream's records into Arrow batches, through the schemaless decoder the JSONL source
//! uses (no second JSON decoder): the tap's schema is the base, a key it does not declare
//! evolves the schema, goes to the overflow column or is a dead letter, and a value that
//! does not fit its declared type is a dead letter, by the source's drift policy.
//!
//! Records wait here until a batch is full or the tap writes a `STATE`, then are decoded in
//! one pass when they all fit, record by record (where the policy applies) when not.
//! Values of JSON-text fields (what the tap's schema left open) are turned into their JSON
//! text first, so such a field takes any value and keeps it exactly.

use std::fmt::Write as _;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Fields, SchemaRef};
use cdp_core::Result;
use cdp_core::record::is_json_text;
use serde_json::Value;
use serde_json::value::RawValue;

use super::schema::{field_has_json_text, has_json_text};
use crate::sources::engine::{Checked, RecordFormat};
use crate::sources::jsonl::JsonlFormat;
use crate::sources::schemaless::json::{JsonDrift, parse_record};
use crate::sources::schemaless::{Changes, DriftNote, DriftPolicy};

/// Times one record may change the schema before it is refused (as in the JSONL source).
const MAX_EVOLUTIONS_PER_RECORD: usize = 4;

/// What decoding produced, in order.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// Rows, in the schema announced last.
    Batch(RecordBatch),
    /// A record that cannot become a row.
    DeadLetter {
        position: String,
        payload: String,
        reason: String,
    },
    /// Drift found (once per field, kind and action in a read).
    Drift(DriftNote),
    /// The schema changed; the cursor keeps `state` to decode the same way on a resume.
    Schema { schema: SchemaRef },
}

#[derive(Debug)]
struct Pending {
    /// The record as the tap wrote it.
    original: String,
    /// What is decoded, when the JSON-text fields changed it.
    rewritten: Option<String>,
    position: String,
}

impl Pending {
    fn bytes(&self) -> &[u8] {
        self.rewritten
            .as_deref()
            .unwrap_or(&self.original)
            .as_bytes()
    }
}

/// The decoder of one stream for one read, from one `SCHEMA` of the tap.
#[derive(Debug)]
pub(crate) struct StreamDecoder {
    base: SchemaRef,
    json_text: bool,
    format: JsonlFormat,
    pending: Vec<Pending>,
    /// The schema changes made on top of `base`, in the cursor form.
    changes: Option<Value>,
}

impl StreamDecoder {
    /// Decodes with `base` (overflow column included); `explicit` says the tap described
    /// the record's keys. `changes` are a checkpoint's schema changes to continue from.
    pub(crate) fn new(
        policy: DriftPolicy,
        base: SchemaRef,
        explicit: bool,
        changes: Option<&Value>,
    ) -> Self {
        let mut drift = JsonDrift::new(policy, base.clone(), explicit);
        if let Some(changes) = changes {
            drift.restore(changes);
        }
        StreamDecoder {
            json_text: has_json_text(base.fields()),
            base,
            format: JsonlFormat::new(drift),
            pending: Vec::new(),
            changes: changes.cloned(),
        }
    }

    /// The schema the tap declared (with the overflow column).
    pub(crate) fn base(&self) -> &SchemaRef {
        &self.base
    }

    /// The schema changes made on top of the base, for the stream's cursor.
    pub(crate) fn changes(&self) -> Option<&Value> {
        self.changes.as_ref()
    }

    /// Records waiting to be decoded.
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queues one record (a JSON object) found at `position`.
    pub(crate) fn push(&mut self, record: &RawValue, position: String) {
        let original = record.get().to_string();
        let rewritten = self
            .json_text
            .then(|| rewrite_json_text(&original, self.base.fields()))
            .flatten();
        self.pending.push(Pending {
            original,
            rewritten,
            position,
        });
    }

    /// Decodes the waiting records.
    pub(crate) fn decode(&mut self) -> Result<Vec<Decoded>> {
        let records = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        if records.is_empty() {
            return Ok(out);
        }
        if let Some(batch) = self.fast(&records)? {
            self.changed(&mut out);
            out.push(Decoded::Batch(batch));
            return Ok(out);
        }
        let rows = records.len();
        let mut decoder = self.format.decoder(rows)?;
        for record in records {
            let mut verdict = self.format.check(record.bytes());
            let mut evolutions = 0;
            while let Checked::Evolve = verdict {
                // The rows before this record keep the schema they were decoded with.
                if let Some(batch) = self.format.flush(&mut decoder)? {
                    out.push(Decoded::Batch(batch));
                }
                self.changed(&mut out);
                decoder = self.format.decoder(rows)?;
                evolutions += 1;
                verdict = if evolutions < MAX_EVOLUTIONS_PER_RECORD {
                    self.format.check(record.bytes())
                } else {
                    Checked::Reject {
                        reason: "the record kept changing the schema".into(),
                        resync: false,
                    }
                };
            }
            match verdict {
                Checked::Accept => self.format.push(&mut decoder, record.bytes(), None)?,
                Checked::Rewrite { record, .. } => self.format.push(&mut decoder, &record, None)?,
                Checked::Reject { reason, .. } => out.push(Decoded::DeadLetter {
                    position: record.position,
                    payload: record.original,
                    reason,
                }),
                Checked::Evolve => {}
            }
            self.changed(&mut out);
        }
        self.format.finish(&mut decoder)?;
        if let Some(batch) = self.format.flush(&mut decoder)? {
            out.push(Decoded::Batch(batch));
        }
        Ok(out)
    }

    /// Every record in one pass, if each fits the schema as it is.
    fn fast(&mut self, records: &[Pending]) -> Result<Option<RecordBatch>> {
        let mut text = Vec::with_capacity(records.iter().map(|r| r.bytes().len() + 1).sum());
        for record in records {
            text.extend_from_slice(record.bytes());
            text.push(b'\n');
        }
        let mut decoder = self.format.decoder(records.len())?;
        let mut fed = 0;
        while fed < text.len() {
            match self.format.decode(&mut decoder, &text[fed..]) {
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

    fn changed(&mut self, out: &mut Vec<Decoded>) {
        let Changes { drift, schema } = self.format.take_changes();
        out.extend(drift.into_iter().map(Decoded::Drift));
        if let Some((schema, state)) = schema {
            self.changes = Some(state);
            out.push(Decoded::Schema { schema });
        }
    }
}

/// `record` with the value of every JSON-text field of `fields` (at any depth, through
/// objects and lists) replaced by a string of its JSON text; `None` if nothing changed.
fn rewrite_json_text(record: &str, fields: &Fields) -> Option<String> {
    let mut out = String::with_capacity(record.len() + 16);
    rewrite_object(record, fields, &mut out).then_some(out)
}

/// Writes the object `raw` with its JSON-text fields rewritten; whether anything changed.
fn rewrite_object(raw: &str, fields: &Fields, out: &mut String) -> bool {
    let Ok(entries) = parse_record(raw.as_bytes()) else {
        out.push_str(raw);
        return false;
    };
    let mut changed = false;
    out.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:", json_string(key));
        match fields.find(key) {
            Some((_, field)) if is_json_text(field) => changed |= rewrite_text(value, out),
            Some((_, field)) => changed |= rewrite_value(value, field.data_type(), out),
            None => out.push_str(value.get()),
        }
    }
    out.push('}');
    changed
}

fn rewrite_value(value: &RawValue, data_type: &DataType, out: &mut String) -> bool {
    match data_type {
        DataType::Struct(children) if value.get().starts_with('{') && has_json_text(children) => {
            rewrite_object(value.get(), children, out)
        }
        DataType::List(item) if value.get().starts_with('[') => {
            let (json_item, nested) = (is_json_text(item), field_has_json_text(item));
            let elements = match serde_json::from_str::<Vec<&RawValue>>(value.get()) {
                Ok(elements) if nested => elements,
                _ => {
                    out.push_str(value.get());
                    return false;
                }
            };
            let mut changed = false;
            out.push('[');
            for (i, element) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                changed |= if json_item {
                    rewrite_text(element, out)
                } else {
                    rewrite_value(element, item.data_type(), out)
                };
            }
            out.push(']');
            changed
        }
        _ => {
            out.push_str(value.get());
            false
        }
    }
}

/// A JSON-text value: null stays null, anything else becomes a string of its JSON.
fn rewrite_text(value: &RawValue, out: &mut String) -> bool {
    if value.get() == "null" {
        out.push_str("null");
        return false;
    }
    out.push_str(&json_string(value.get()));
    true
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::{Field, Schema};
    use cdp_core::record::json_text_field;

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn json_text_fields_take_any_value_as_its_json() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            json_text_field("props"),
            Field::new(
                "nested",
                DataType::Struct(vec![json_text_field("any")].into()),
                true,
            ),
        ]));
        let mut decoder = StreamDecoder::new(DriftPolicy::default(), schema, true, None);
        for (i, record) in [
            r#"{"id":1,"props":{"a":[1,2]},"nested":{"any":"x"}}"#,
            r#"{"id":2,"props":"text","nested":{"any":7}}"#,
            r#"{"id":3,"props":null}"#,
        ]
        .iter()
        .enumerate()
        {
            decoder.push(&raw(record), format!("message {i}"));
        }
        let out = decoder.decode().unwrap();
        let [Decoded::Batch(batch)] = out.as_slice() else {
            panic!("{out:?}")
        };
        let props = batch.column(1).as_string::<i32>();
        assert_eq!(
            props,
            &StringArray::from(vec![Some(r#"{"a":[1,2]}"#), Some(r#""text""#), None])
        );
        let nested = batch.column(2).as_struct().column(0).as_string::<i32>();
        assert_eq!(nested.value(0), r#""x""#);
        assert_eq!(nested.value(1), "7");
    }

    #[test]
    fn a_value_off_the_declared_type_is_a_dead_letter_and_a_new_key_evolves() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let mut decoder = StreamDecoder::new(DriftPolicy::default(), schema, true, None);
        decoder.push(&raw(r#"{"n":1}"#), "m1".into());
        decoder.push(&raw(r#"{"n":1.5}"#), "m2".into());
        decoder.push(&raw(r#"{"n":2,"plan":"pro"}"#), "m3".into());
        let out = decoder.decode().unwrap();
        let kinds: Vec<String> = out
            .iter()
            .map(|d| match d {
                Decoded::Batch(b) => format!("batch {}", b.num_rows()),
                Decoded::DeadLetter { position, .. } => format!("dead {position}"),
                Decoded::Drift(_) => "drift".into(),
                Decoded::Schema { schema } => format!("schema {}", schema.fields().len()),
            })
            .collect();
        // The refused record's letter goes out as it is judged; the row before the new key
        // leaves with the schema it had.
        assert_eq!(
            kinds,
            [
                "dead m2", "drift", "batch 1", "drift", "schema 2", "batch 1"
            ]
        );
        let changes = decoder.changes().cloned().unwrap();
        let resumed = StreamDecoder::new(
            DriftPolicy::default(),
            decoder.base().clone(),
            true,
            Some(&changes),
        );
        assert_eq!(resumed.changes(), Some(&changes));
    }
}
