//! Reading a source to its end in a test, and views of what it produced.

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::datatypes::DataType;
use cdp_core::{Batch, Checkpoint, DeadLetter, PipelineState, ReadRequest, Source, SourceEvent};
use futures::StreamExt;

/// Every event one read produced, in order.
#[derive(Debug, Default)]
pub struct SourceRead {
    /// The events as the source emitted them.
    pub events: Vec<SourceEvent>,
}

/// Reads `source` to the end of `request`; panics on any error (a test failure).
pub async fn read_all(source: &dyn Source, request: ReadRequest) -> SourceRead {
    let mut stream = source.read(request).expect("read starts");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.expect("read event"));
    }
    SourceRead { events }
}

/// A request resuming `stream` from `cursor`.
pub fn resume(stream: &str, cursor: serde_json::Value) -> ReadRequest {
    let mut state = PipelineState::default();
    state.streams.insert(stream.to_string(), cursor);
    ReadRequest {
        state,
        ..ReadRequest::default()
    }
}

impl SourceRead {
    /// The batches, in order.
    pub fn batches(&self) -> Vec<Batch> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Batch(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    /// The batches' data, in order.
    pub fn records(&self) -> Vec<RecordBatch> {
        self.batches().into_iter().map(|b| b.data).collect()
    }

    /// Rows over every batch.
    pub fn rows(&self) -> usize {
        self.batches().iter().map(Batch::num_rows).sum()
    }

    /// Values of an integer column over every batch, cast to `i64`.
    pub fn ids(&self, column: &str) -> Vec<i64> {
        self.ids_with_ops(column)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Values of an integer column over every batch, each with its row's op code
    /// (`0` upsert, `1` delete).
    pub fn ids_with_ops(&self, column: &str) -> Vec<(i64, u8)> {
        let mut out = Vec::new();
        for batch in self.batches() {
            let ops = batch.ops().expect("valid op column");
            let col = batch
                .data
                .column_by_name(column)
                .unwrap_or_else(|| panic!("no `{column}` in {:?}", batch.data.schema()));
            let col = arrow::compute::cast(col, &DataType::Int64).expect("an integer column");
            let col = col
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("cast to Int64");
            for (i, op) in ops.iter().enumerate() {
                out.push((col.value(i), *op as u8));
            }
        }
        out
    }

    /// The dead letters, in order.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::DeadLetter(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    /// The checkpoints, in order.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Checkpoint(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// The checkpoints' cursors, in order.
    pub fn cursors(&self) -> Vec<serde_json::Value> {
        self.checkpoints().into_iter().map(|c| c.cursor).collect()
    }

    /// The last checkpoint's cursor; panics when there was none.
    pub fn last_cursor(&self) -> serde_json::Value {
        self.cursors().pop().expect("a checkpoint")
    }

    /// Asserts that every batch is non-empty, has at most `max` rows, and is directly
    /// followed by a checkpoint.
    pub fn assert_aligned(&self, max: usize) {
        for (i, event) in self.events.iter().enumerate() {
            if let SourceEvent::Batch(b) = event {
                assert!(b.num_rows() > 0, "batch {i} is empty");
                assert!(
                    b.num_rows() <= max,
                    "batch {i} of {} rows > {max}",
                    b.num_rows()
                );
                assert!(
                    matches!(self.events.get(i + 1), Some(SourceEvent::Checkpoint(_))),
                    "batch {i} not followed by a checkpoint"
                );
            }
        }
    }
}
