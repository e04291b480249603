//! Helpers shared by the topic modules.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use cdp_core::{DeadLetter, PipelineState, ReadRequest, Source, SourceEvent};
use futures::StreamExt;

/// What one read produced, in order.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub(crate) events: Vec<SourceEvent>,
}

impl Read {
    pub(crate) fn batches(&self) -> Vec<RecordBatch> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Batch(b) => Some(b.data.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn rows(&self) -> usize {
        self.batches().iter().map(RecordBatch::num_rows).sum()
    }

    pub(crate) fn ids(&self, column: &str) -> Vec<i64> {
        self.batches().iter().flat_map(|b| ids(b, column)).collect()
    }

    pub(crate) fn dead_letters(&self) -> Vec<DeadLetter> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::DeadLetter(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn checkpoints(&self) -> Vec<serde_json::Value> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Checkpoint(c) => Some(c.cursor.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn last_cursor(&self) -> serde_json::Value {
        self.checkpoints().last().cloned().expect("a checkpoint")
    }

    /// Every batch is directly followed by a checkpoint, and no batch exceeds `max` rows.
    pub(crate) fn assert_aligned(&self, max: usize) {
        for (i, event) in self.events.iter().enumerate() {
            if let SourceEvent::Batch(b) = event {
                assert!(
                    b.num_rows() <= max,
                    "batch of {} rows > {max}",
                    b.num_rows()
                );
                assert!(b.num_rows() > 0, "empty batch");
                assert!(
                    matches!(self.events.get(i + 1), Some(SourceEvent::Checkpoint(_))),
                    "batch {i} not followed by a checkpoint"
                );
            }
        }
    }
}

pub(crate) fn ids(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let col = batch.column_by_name(column).expect("id column");
    let col = arrow::compute::cast(col, &DataType::Int64).unwrap();
    let col = col.as_primitive::<Int64Type>();
    (0..col.len()).map(|i| col.value(i)).collect()
}

pub(crate) async fn read_all(source: &dyn Source, request: ReadRequest) -> Read {
    let mut stream = source.read(request).expect("read starts");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.expect("read event"));
    }
    Read { events }
}

pub(crate) fn resume(stream: &str, cursor: serde_json::Value) -> ReadRequest {
    let mut state = PipelineState::default();
    state.streams.insert(stream.to_string(), cursor);
    ReadRequest {
        state,
        ..ReadRequest::default()
    }
}

pub(crate) fn id_name_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

pub(crate) fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

pub(crate) fn jsonl_lines(range: std::ops::Range<i64>) -> String {
    range
        .map(|i| format!("{{\"id\":{i},\"name\":\"user {i}\"}}\n"))
        .collect()
}

pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
