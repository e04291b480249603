//! Batches as Singer messages: a `SCHEMA` from the Arrow schema, one `RECORD` per row.
//!
//! Rows are rendered by arrow-json with the JSONL destination's encoders (a time of
//! `24:00:00` stays itself), and a JSON-text column's value is embedded as the JSON it
//! holds, not as a string of it. JSON has no literal for NaN or an infinity and a Singer
//! target validates numbers as numbers, so a row holding one is refused (a dead letter
//! with the column named), as is a row with a temporal value no text renders.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, FieldRef, Float16Type, Float32Type, Float64Type, Schema};
use arrow::error::ArrowError;
use arrow_json::writer::{
    Encoder, EncoderFactory, EncoderOptions, LineDelimited, NullableEncoder, WriterBuilder,
};
use cdp_core::record::{RECORD_HASH_COLUMN, is_json_text};
use cdp_core::{RejectedRow, Result};
use serde_json::value::RawValue;

use super::schema::json_schema;
use crate::destinations::jsonl::encode::{ExactValues, unrenderable};

/// The `SCHEMA` line of `stream` (with its newline). `key_properties` are the stream's
/// primary key, or `_cdp_record_hash` when it has none and the rows carry it (so a
/// target that upserts on its keys writes a replayed row once).
pub(crate) fn schema_line(stream: &str, schema: &Schema, primary_key: &[String]) -> Result<String> {
    let keys: Vec<&str> = if !primary_key.is_empty() {
        primary_key.iter().map(String::as_str).collect()
    } else if schema.column_with_name(RECORD_HASH_COLUMN).is_some() {
        vec![RECORD_HASH_COLUMN]
    } else {
        Vec::new()
    };
    Ok(format!(
        "{{\"type\":\"SCHEMA\",\"stream\":{},\"schema\":{},\"key_properties\":{}}}\n",
        serde_json::to_string(stream)?,
        json_schema(schema),
        serde_json::to_string(&keys)?
    ))
}

/// The `STATE` line (with its newline).
pub(crate) fn state_line(value: &serde_json::Value) -> Result<String> {
    Ok(format!(
        "{{\"type\":\"STATE\",\"value\":{}}}\n",
        serde_json::to_string(value)?
    ))
}

/// The rows of `batch` a target cannot be given as JSON, each with the reason.
pub(crate) fn refused(batch: &RecordBatch) -> Vec<RejectedRow> {
    let mut refused = unrenderable(batch);
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        for row in non_finite(column.as_ref()) {
            if refused.iter().any(|r| r.row == row) {
                continue;
            }
            refused.push(RejectedRow {
                row,
                reason: format!(
                    "column `{}` holds NaN or an infinity, which JSON (and so Singer) has no \
                     number for",
                    field.name()
                ),
            });
        }
    }
    refused.sort_by_key(|r| r.row);
    refused
}

fn non_finite(column: &dyn Array) -> Vec<usize> {
    let finite: Box<dyn Fn(usize) -> bool + '_> = match column.data_type() {
        DataType::Float16 => {
            let values = column.as_primitive::<Float16Type>();
            Box::new(move |i| values.value(i).is_finite())
        }
        DataType::Float32 => {
            let values = column.as_primitive::<Float32Type>();
            Box::new(move |i| values.value(i).is_finite())
        }
        DataType::Float64 => {
            let values = column.as_primitive::<Float64Type>();
            Box::new(move |i| values.value(i).is_finite())
        }
        _ => return Vec::new(),
    };
    (0..column.len())
        .filter(|&i| column.is_valid(i) && !finite(i))
        .collect()
}

/// Appends a `RECORD` line per row of `batch` (all rows), for `stream`.
pub(crate) fn record_lines(stream: &str, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
    let mut rows = Vec::new();
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(false)
        .with_encoder_factory(Arc::new(SingerValues))
        .build::<_, LineDelimited>(&mut rows);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    let prefix = format!(
        "{{\"type\":\"RECORD\",\"stream\":{},\"record\":",
        serde_json::to_string(stream)?
    );
    for row in rows.split(|&b| b == b'\n').filter(|r| !r.is_empty()) {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(row);
        out.extend_from_slice(b"}\n");
    }
    Ok(())
}

/// Keeps the rows of `batch` not in `refused` (sorted by row).
pub(crate) fn without(batch: &RecordBatch, refused: &[RejectedRow]) -> Result<RecordBatch> {
    if refused.is_empty() {
        return Ok(batch.clone());
    }
    let mut keep = vec![true; batch.num_rows()];
    for row in refused {
        if let Some(slot) = keep.get_mut(row.row) {
            *slot = false;
        }
    }
    Ok(filter_record_batch(batch, &BooleanArray::from(keep))?)
}

/// The JSONL destination's encoders, and JSON-text columns embedded as JSON.
#[derive(Debug)]
struct SingerValues;

impl EncoderFactory for SingerValues {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        // arrow-json makes the encoder of a list's items with the list's field.
        let json_text = match field.data_type() {
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
                if *array.data_type() == DataType::Utf8 =>
            {
                is_json_text(item)
            }
            _ => is_json_text(field),
        };
        if json_text && let Some(text) = array.as_any().downcast_ref::<StringArray>() {
            return Ok(Some(NullableEncoder::new(
                Box::new(JsonText(text)),
                text.nulls().cloned(),
            )));
        }
        ExactValues.make_default_encoder(field, array, options)
    }
}

/// A JSON-text value as the JSON it holds; text that is not JSON stays a string.
struct JsonText<'a>(&'a StringArray);

impl Encoder for JsonText<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let text = self.0.value(idx);
        match serde_json::from_str::<&RawValue>(text) {
            Ok(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Err(_) => {
                let _ = serde_json::to_writer(&mut *out, text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow::array::{Float64Array, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, TimeUnit};
    use cdp_core::record::json_text_field;

    use super::*;

    #[test]
    fn rows_become_records_and_json_text_is_embedded() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("score", DataType::Float64, true),
            json_text_field("props"),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Float64Array::from(vec![Some(0.5), Some(f64::NAN), None])),
                Arc::new(StringArray::from(vec![
                    Some(r#"{"a":[1]}"#),
                    Some("x"),
                    Some("not json"),
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_000), None, None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let refused = refused(&batch);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].row, 1);
        assert!(
            refused[0].reason.contains("`score`"),
            "{}",
            refused[0].reason
        );
        let kept = without(&batch, &refused).unwrap();
        let mut out = Vec::new();
        record_lines("s", &kept, &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "RECORD");
        assert_eq!(lines[0]["stream"], "s");
        assert_eq!(lines[0]["record"]["props"], serde_json::json!({"a": [1]}));
        assert_eq!(lines[0]["record"]["at"], "2023-11-14T22:13:20Z");
        assert_eq!(lines[1]["record"]["props"], "not json");
        assert!(lines[1]["record"].get("score").is_none());

        let schema_line = schema_line("s", &schema, &[]).unwrap();
        let message: serde_json::Value = serde_json::from_str(&schema_line).unwrap();
        assert_eq!(message["key_properties"], serde_json::json!([]));
        assert_eq!(
            message["schema"]["properties"]["props"],
            serde_json::json!({})
        );
        assert_eq!(
            state_line(&serde_json::json!({"cdp_epoch": 1})).unwrap(),
            "{\"type\":\"STATE\",\"value\":{\"cdp_epoch\":1}}\n"
        );
    }
}
