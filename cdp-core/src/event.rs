//! What flows out of a source: batches, schema changes, checkpoints, watermarks and
//! records that could not be read.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::record::Batch;

/// Name of the stream dead letters are written to.
pub const DEAD_LETTER_STREAM: &str = "_cdp_dead_letters";

/// One event in a source's output.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceEvent {
    /// Rows for one stream.
    Batch(Batch),
    /// A stream's schema changed; later batches of it use `schema`.
    SchemaChange {
        /// The stream.
        stream: Arc<str>,
        /// The new user schema.
        schema: SchemaRef,
    },
    /// Everything emitted before this point is covered by `state`: once every destination
    /// has durably flushed it, the runtime commits the state, and a resume starts after it.
    Checkpoint(Checkpoint),
    /// No record of `stream` with an event time before `event_time` will follow.
    Watermark {
        /// The stream.
        stream: Arc<str>,
        /// The watermark.
        event_time: DateTime<Utc>,
    },
    /// A record the source could not turn into a row; it goes to the dead-letter path.
    DeadLetter(DeadLetter),
    /// A schemaless source found data its schema did not hold (a new key, a value of
    /// another type) and says what it did about it; counted per stream in the run report.
    Drift(SchemaDrift),
    /// The source noticed something about its input that changes what it reads (a file
    /// replaced, truncated or rotated under its name); said in the run report.
    Notice(SourceNotice),
}

/// Something a source noticed about its input and what it did about it, for the run
/// report: a file replaced under its name (read again from its start), a rotated file
/// recognised under its new name (read on from where it was).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceNotice {
    /// The stream.
    pub stream: String,
    /// What it is about (a file, relative to the source's path).
    pub subject: String,
    /// What happened and what the source did, in words.
    pub message: String,
}

/// What a schemaless source found that its schema did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DriftKind {
    /// A key (or CSV column) the schema has no field for.
    NewField,
    /// A value whose type does not fit its field's type.
    TypeConflict,
}

/// What a schemaless source did about a [`SchemaDrift`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DriftAction {
    /// The stream's schema changed (a field added or widened); a
    /// [`SourceEvent::SchemaChange`] precedes the first batch carrying it.
    SchemaChanged,
    /// The values went, as JSON, into the stream's overflow column.
    Overflowed,
    /// The records went to the dead letters, with the reason.
    DeadLettered,
}

/// One kind of drift found in a stream: reported the first time a read meets it (per
/// field, kind and action), not once per record, so a key present in every record of a
/// large file is one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDrift {
    /// The stream.
    pub stream: String,
    /// The field, as a dotted path (`properties.plan`; a name holding a dot is quoted in
    /// backticks).
    pub path: String,
    /// What was found.
    pub kind: DriftKind,
    /// What the source did.
    pub action: DriftAction,
    /// In words: the types involved (`new key of type Utf8`, `Int64 widened to Float64`).
    pub detail: String,
    /// Where it was first seen (file and line), when known.
    pub position: Option<String>,
}

/// A source's resume position for one stream: an opaque JSON cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The stream whose position this is.
    pub stream: String,
    /// The cursor, in whatever shape the source chooses.
    pub cursor: serde_json::Value,
}

impl Checkpoint {
    /// A checkpoint for `stream` at `cursor`.
    pub fn new(stream: impl Into<String>, cursor: serde_json::Value) -> Self {
        Checkpoint {
            stream: stream.into(),
            cursor,
        }
    }
}

/// The committed resume positions of all streams of a pipeline, plus the epoch of the
/// barrier that committed them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineState {
    /// Number of the last committed barrier; `0` before the first commit.
    pub epoch: u64,
    /// Per-stream cursors.
    pub streams: BTreeMap<String, serde_json::Value>,
}

impl PipelineState {
    /// The cursor of `stream`, if one was committed.
    pub fn cursor(&self, stream: &str) -> Option<&serde_json::Value> {
        self.streams.get(stream)
    }
}

/// A record that could not be processed, with the reason; nothing is dropped silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The stream the record belonged to.
    pub stream: String,
    /// The stage that rejected it (`source`, `transform normalize`, ...).
    pub stage: String,
    /// Why it was rejected, in words a person can act on.
    pub reason: String,
    /// The record as it arrived (raw line, or the row rendered as JSON).
    pub payload: String,
    /// Where it came from (file and line, offset, key), when known.
    pub position: Option<String>,
    /// When it was rejected.
    pub rejected_at: DateTime<Utc>,
}

impl DeadLetter {
    /// A dead letter rejected now.
    pub fn new(
        stream: impl Into<String>,
        stage: impl Into<String>,
        reason: impl Into<String>,
        payload: impl Into<String>,
    ) -> Self {
        DeadLetter {
            stream: stream.into(),
            stage: stage.into(),
            reason: reason.into(),
            payload: payload.into(),
            position: None,
            rejected_at: Utc::now(),
        }
    }

    /// Records where the rejected record came from.
    pub fn at(mut self, position: impl Into<String>) -> Self {
        self.position = Some(position.into());
        self
    }

    /// The Arrow schema of dead-letter batches.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("stream", DataType::Utf8, false),
            Field::new("stage", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("payload", DataType::Utf8, false),
            Field::new("position", DataType::Utf8, true),
            Field::new(
                "rejected_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))
    }

    /// Packs dead letters into one batch of stream [`DEAD_LETTER_STREAM`].
    pub fn to_batch(letters: &[DeadLetter], source_id: &str) -> Result<Batch> {
        let text = |f: fn(&DeadLetter) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(letters.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            text(|d| &d.stream),
            text(|d| &d.stage),
            text(|d| &d.reason),
            text(|d| &d.payload),
            Arc::new(StringArray::from_iter(
                letters.iter().map(|d| d.position.as_deref()),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    letters.iter().map(|d| d.rejected_at.timestamp_micros()),
                )
                .with_timezone("UTC"),
            ),
        ];
        let data = RecordBatch::try_new(Self::schema(), columns)?;
        Ok(Batch::new(DEAD_LETTER_STREAM, data, source_id))
    }
}

/// Renders row `row` of `batch` as one JSON object, for dead-letter payloads.
pub fn row_to_json(batch: &RecordBatch, row: usize) -> String {
    let slice = batch.slice(row, 1);
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    let rendered = writer.write(&slice).and_then(|()| writer.finish());
    match rendered {
        Ok(()) => String::from_utf8_lossy(&writer.into_inner())
            .trim_end()
            .to_string(),
        Err(e) => format!("<row {row} could not be rendered: {e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: rendering a stamped row (its `_cdp_synced_at` is zoned "UTC") must work,
    /// or dead letters of stamped batches lose their payload.
    #[test]
    fn stamped_rows_render_as_json() {
        let letters = [DeadLetter::new("s", "source", "bad", "{}")];
        let batch = DeadLetter::to_batch(&letters, "src")
            .unwrap()
            .stamp()
            .unwrap();
        let json = row_to_json(&batch.data, 0);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["reason"], "bad");
        assert!(
            value["_cdp_synced_at"].as_str().unwrap().ends_with('Z'),
            "{json}"
        );
    }
}
