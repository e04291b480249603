//! The record model: Arrow batches in a small envelope, and the reserved `_cdp_` columns.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, StringDictionaryBuilder};
use arrow::array::{TimestampMicrosecondArray, UInt8Array};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::hash::record_hashes;

/// Prefix of every column the runtime reserves; sources must not emit columns with it.
pub const SYSTEM_PREFIX: &str = "_cdp_";
/// Row operation: `0` upsert, `1` delete (a tombstone). See [`Op`].
pub const OP_COLUMN: &str = "_cdp_op";
/// The source id the row came from.
pub const SOURCE_COLUMN: &str = "_cdp_source";
/// When the row was synced, UTC microseconds.
pub const SYNCED_AT_COLUMN: &str = "_cdp_synced_at";
/// Stable 128-bit content hash of the row's user columns, hex encoded.
pub const RECORD_HASH_COLUMN: &str = "_cdp_record_hash";
/// Lineage id (UUID v7) of the batch the row arrived in.
pub const LINEAGE_ID_COLUMN: &str = "_cdp_lineage_id";
/// Profile id assigned by identity resolution.
pub const PROFILE_ID_COLUMN: &str = "_cdp_profile_id";

/// Arrow field metadata key naming a field's extension type.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// The canonical extension type of a text field holding JSON documents. Whoever emits JSON
/// text (an overflow column of unknown keys, a raw payload) marks it with this, so that
/// governance treats its content as opaque rather than as an ordinary string.
pub const JSON_EXTENSION: &str = "arrow.json";

/// A nullable UTF-8 field named `name` marked as JSON text ([`JSON_EXTENSION`]).
pub fn json_text_field(name: impl Into<String>) -> Field {
    let metadata = std::collections::HashMap::from([(
        EXTENSION_NAME_KEY.to_string(),
        JSON_EXTENSION.to_string(),
    )]);
    Field::new(name, DataType::Utf8, true).with_metadata(metadata)
}

/// Whether `field` is marked as JSON text ([`JSON_EXTENSION`]).
pub fn is_json_text(field: &Field) -> bool {
    field
        .metadata()
        .get(EXTENSION_NAME_KEY)
        .is_some_and(|name| name == JSON_EXTENSION)
}

/// Whether a column name is one of the reserved system columns.
pub fn is_system_column(name: &str) -> bool {
    name.starts_with(SYSTEM_PREFIX)
}

/// What a row means to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Op {
    /// Insert or replace the row with this primary key.
    Upsert = 0,
    /// Delete the row with this primary key (a tombstone; other columns may be null).
    Delete = 1,
}

impl Op {
    /// Decodes the `_cdp_op` column value.
    pub fn from_code(code: u8) -> Option<Op> {
        match code {
            0 => Some(Op::Upsert),
            1 => Some(Op::Delete),
            _ => None,
        }
    }
}

/// Metadata that travels with every batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchMeta {
    /// The source (connector instance) that produced the batch.
    pub source_id: Arc<str>,
    /// When the batch was read.
    pub synced_at: DateTime<Utc>,
    /// Unique, time-ordered id of this batch (UUID v7), for lineage and dead letters.
    pub lineage_id: Uuid,
    /// Version of the stream's schema in a registry, once one is assigned.
    pub schema_version: Option<u32>,
}

impl BatchMeta {
    /// Metadata for a batch read now from `source_id`, with a fresh lineage id.
    pub fn now(source_id: impl Into<Arc<str>>) -> Self {
        BatchMeta {
            source_id: source_id.into(),
            synced_at: Utc::now(),
            lineage_id: Uuid::now_v7(),
            schema_version: None,
        }
    }
}

/// The unit every stage exchanges: one stream's Arrow data plus its metadata.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream (table, event type, topic) the rows belong to.
    pub stream: Arc<str>,
    /// The rows.
    pub data: RecordBatch,
    /// Where and when they came from.
    pub meta: BatchMeta,
}

impl Batch {
    /// Wraps `data` for `stream`, read now from `source_id`.
    pub fn new(
        stream: impl Into<Arc<str>>,
        data: RecordBatch,
        source_id: impl Into<Arc<str>>,
    ) -> Self {
        Batch {
            stream: stream.into(),
            data,
            meta: BatchMeta::now(source_id),
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.data.num_rows()
    }

    /// Bytes held by the Arrow buffers (what the batch costs in memory).
    pub fn byte_size(&self) -> usize {
        self.data.get_array_memory_size()
    }

    /// Whether the system columns have been added.
    pub fn is_stamped(&self) -> bool {
        self.data
            .schema()
            .column_with_name(RECORD_HASH_COLUMN)
            .is_some()
    }

    /// The row operations: all upserts unless an `_cdp_op` column says otherwise.
    pub fn ops(&self) -> Result<Vec<Op>> {
        let Some(column) = self.data.column_by_name(OP_COLUMN) else {
            return Ok(vec![Op::Upsert; self.num_rows()]);
        };
        let codes = column
            .as_any()
            .downcast_ref::<UInt8Array>()
            .ok_or_else(|| self.schema_error(format!("{OP_COLUMN} must be UInt8")))?;
        codes
            .iter()
            .map(|c| {
                Op::from_code(c.unwrap_or(0)).ok_or_else(|| {
                    self.schema_error(format!("{OP_COLUMN} holds unknown code {c:?}"))
                })
            })
            .collect()
    }

    /// Adds the system columns (`_cdp_op` when missing, `_cdp_source`, `_cdp_synced_at`,
    /// `_cdp_record_hash`, `_cdp_lineage_id`) and returns the stamped batch.
    ///
    /// User columns keep their order; system columns go last. Stamping twice replaces the
    /// earlier stamp but keeps an existing `_cdp_op` and `_cdp_profile_id`.
    pub fn stamp(self) -> Result<Batch> {
        let rows = self.num_rows();
        let schema = self.data.schema();
        let mut fields: Vec<Arc<Field>> = Vec::with_capacity(schema.fields().len() + 5);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.capacity());
        let mut user_columns: Vec<(&str, &ArrayRef)> = Vec::new();
        let mut op: Option<ArrayRef> = None;
        let mut profile: Option<(Arc<Field>, ArrayRef)> = None;
        for (field, column) in schema.fields().iter().zip(self.data.columns()) {
            match field.name().as_str() {
                OP_COLUMN => op = Some(column.clone()),
                PROFILE_ID_COLUMN => profile = Some((field.clone(), column.clone())),
                name if is_system_column(name) => {}
                name => {
                    user_columns.push((name, column));
                    fields.push(field.clone());
                    columns.push(column.clone());
                }
            }
        }
        let hashes = record_hashes(&user_columns, rows)?;

        fields.push(Arc::new(Field::new(OP_COLUMN, DataType::UInt8, false)));
        columns
            .push(op.unwrap_or_else(|| Arc::new(UInt8Array::from(vec![Op::Upsert as u8; rows]))));

        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        fields.push(Arc::new(Field::new(SOURCE_COLUMN, dict.clone(), false)));
        columns.push(constant_string(&self.meta.source_id, rows));

        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        fields.push(Arc::new(Field::new(SYNCED_AT_COLUMN, ts, false)));
        let micros = self.meta.synced_at.timestamp_micros();
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![micros; rows]).with_timezone("UTC"),
        ));

        fields.push(Arc::new(Field::new(
            RECORD_HASH_COLUMN,
            DataType::Utf8,
            false,
        )));
        columns.push(Arc::new(hashes));

        fields.push(Arc::new(Field::new(LINEAGE_ID_COLUMN, dict, false)));
        columns.push(constant_string(&self.meta.lineage_id.to_string(), rows));

        if let Some((field, column)) = profile {
            fields.push(field);
            columns.push(column);
        }
        let stamped = Schema::new_with_metadata(fields, schema.metadata().clone());
        let data = RecordBatch::try_new(Arc::new(stamped), columns)?;
        Ok(Batch { data, ..self })
    }

    /// The schema without system columns: what the source declared.
    pub fn user_schema(&self) -> SchemaRef {
        user_schema(&self.data.schema())
    }

    fn schema_error(&self, message: String) -> Error {
        Error::Schema {
            stream: self.stream.to_string(),
            message,
        }
    }
}

/// The schema [`Batch::stamp`] gives batches of `schema`: user columns, then the system
/// columns.
pub fn stamped_schema(schema: &SchemaRef) -> Result<SchemaRef> {
    let empty = RecordBatch::new_empty(schema.clone());
    Ok(Batch::new("", empty, "").stamp()?.data.schema())
}

/// `schema` without the reserved `_cdp_` columns.
pub fn user_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .filter(|f| !is_system_column(f.name()))
        .cloned()
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A dictionary column holding one value `rows` times: one string, `rows` small keys.
fn constant_string(value: &str, rows: usize) -> ArrayRef {
    let mut builder = StringDictionaryBuilder::<Int32Type>::with_capacity(rows, 1, value.len());
    for _ in 0..rows {
        builder.append_value(value);
    }
    Arc::new(builder.finish())
}

/// Reads a UTF-8 column by name, for code that needs the hash or a key as strings.
pub fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch
        .column_by_name(name)?
        .as_any()
        .downcast_ref::<StringArray>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn sample() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a@x.io"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn stamp_adds_system_columns_after_user_columns() {
        let batch = Batch::new("users", sample(), "crm").stamp().unwrap();
        let names: Vec<_> = batch
            .data
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "email",
                OP_COLUMN,
                SOURCE_COLUMN,
                SYNCED_AT_COLUMN,
                RECORD_HASH_COLUMN,
                LINEAGE_ID_COLUMN
            ]
        );
        assert_eq!(batch.ops().unwrap(), vec![Op::Upsert, Op::Upsert]);
        assert_eq!(batch.user_schema().fields().len(), 2);
    }

    #[test]
    fn restamping_keeps_hash_stable_and_ops() {
        let first = Batch::new("users", sample(), "crm").stamp().unwrap();
        let h1 = string_column(&first.data, RECORD_HASH_COLUMN)
            .unwrap()
            .value(0)
            .to_string();
        let again = Batch::new("users", first.data.clone(), "crm")
            .stamp()
            .unwrap();
        let h2 = string_column(&again.data, RECORD_HASH_COLUMN)
            .unwrap()
            .value(0)
            .to_string();
        assert_eq!(h1, h2);
        assert_eq!(again.data.num_columns(), first.data.num_columns());
    }
}
