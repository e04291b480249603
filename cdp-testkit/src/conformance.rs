//! Conformance harnesses every connector must pass: the contracts the runtime relies on for
//! exactly-once delivery, checked from the outside. Sources here ([`check_source`]);
//! destinations in [`destination`] ([`check_destination`]).
//!
//! [`check_source`] reads a source once from scratch, then resumes it from every checkpoint
//! it emitted (or an evenly spread sample of them) and checks that:
//!
//! - `discover` lists each stream once, with no reserved `_cdp_` columns but the carried
//!   `_cdp_op` / `_cdp_profile_id`;
//! - every batch belongs to a discovered stream and carries no other reserved column;
//! - every batch and dead letter is followed by a checkpoint of its stream before the read
//!   ends (the runtime only commits at checkpoints: anything after the last one would be
//!   read again after a crash);
//! - resuming from a checkpoint yields exactly the rows (compared by content hash) and dead
//!   letters that came after it in the full read, in order — nothing lost, nothing repeated.
//!
//! ```
//! use std::sync::Arc;
//! use cdp_core::arrow::array::{Int64Array, RecordBatch};
//! use cdp_core::arrow::datatypes::{DataType, Field, Schema};
//! use cdp_core::memory::MemorySource;
//! use cdp_testkit::conformance::check_source;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
//! let batches = (0..4)
//!     .map(|i| RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![i]))]).unwrap())
//!     .collect();
//! let report = check_source(&MemorySource::new("numbers", batches), 10).await.unwrap();
//! assert_eq!(report.rows, 4);
//! assert_eq!(report.resumes_checked, 4);
//! # }
//! ```

pub mod destination;

pub use destination::{
    BadRow, DestinationConformance, DestinationKind, DestinationUnderTest, Publishes, VisibleRows,
    check_destination,
};

use std::collections::HashMap;

use cdp_core::hash::hash_rows;
use cdp_core::record::is_system_column;
use cdp_core::{OP_COLUMN, PROFILE_ID_COLUMN, PipelineState, ReadRequest, Source, SourceEvent};
use futures::StreamExt;

/// What [`check_source`] verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConformance {
    /// Rows in the full read.
    pub rows: usize,
    /// Dead letters in the full read.
    pub dead_letters: usize,
    /// Checkpoints in the full read.
    pub checkpoints: usize,
    /// Resumes checked (one per sampled checkpoint).
    pub resumes_checked: usize,
}

/// One thing a source emitted that must be delivered exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Row {
        stream: String,
        hash: String,
    },
    DeadLetter {
        stream: String,
        payload: String,
        position: Option<String>,
    },
}

/// The items of one read and, for each checkpoint, the state after it and how many items
/// preceded it.
#[derive(Debug, Default)]
struct Read {
    items: Vec<Item>,
    checkpoints: Vec<(PipelineState, usize)>,
}

/// Checks `source` against the contract in the [module docs](self), resuming from at most
/// `max_resumes` of its checkpoints. Returns what was checked, or a message naming the first
/// violation.
pub async fn check_source(
    source: &dyn Source,
    max_resumes: usize,
) -> Result<SourceConformance, String> {
    let catalog = source
        .discover()
        .await
        .map_err(|e| format!("discover failed: {e}"))?;
    let mut names = std::collections::HashSet::new();
    for stream in &catalog.streams {
        if !names.insert(stream.name.clone()) {
            return Err(format!("discover lists stream `{}` twice", stream.name));
        }
        check_columns(
            &stream.name,
            stream.schema.fields().iter().map(|f| f.name()),
        )?;
    }

    let full = read(source, PipelineState::default(), &names).await?;
    let rows = full
        .items
        .iter()
        .filter(|i| matches!(i, Item::Row { .. }))
        .count();
    let total = full.checkpoints.len();
    let step = total.div_ceil(max_resumes.max(1)).max(1);
    let mut resumes_checked = 0;
    for (state, before) in full.checkpoints.iter().step_by(step) {
        let resumed = read(source, state.clone(), &names).await?;
        let expected = &full.items[*before..];
        if resumed.items != expected {
            let at = resumed
                .items
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(resumed.items.len().min(expected.len()));
            return Err(format!(
                "resuming after item {before} of {} (state {}) read {} items where {} were \
                 left; first difference at item {at}: got {:?}, expected {:?}",
                full.items.len(),
                serde_json::to_string(&state.streams).unwrap_or_default(),
                resumed.items.len(),
                expected.len(),
                resumed.items.get(at),
                expected.get(at),
            ));
        }
        resumes_checked += 1;
    }
    Ok(SourceConformance {
        rows,
        dead_letters: full.items.len() - rows,
        checkpoints: total,
        resumes_checked,
    })
}

fn check_columns<'a>(stream: &str, names: impl Iterator<Item = &'a String>) -> Result<(), String> {
    for name in names {
        if is_system_column(name) && name != OP_COLUMN && name != PROFILE_ID_COLUMN {
            return Err(format!("stream `{stream}` has reserved column `{name}`"));
        }
    }
    Ok(())
}

async fn read(
    source: &dyn Source,
    state: PipelineState,
    streams: &std::collections::HashSet<String>,
) -> Result<Read, String> {
    let request = ReadRequest {
        state: state.clone(),
        ..ReadRequest::default()
    };
    let mut events = source
        .read(request)
        .map_err(|e| format!("read failed: {e}"))?;
    let mut out = Read::default();
    let mut cursors = state;
    // Items per stream not yet covered by a checkpoint of that stream.
    let mut uncovered: HashMap<String, usize> = HashMap::new();
    while let Some(event) = events.next().await {
        match event.map_err(|e| format!("read failed mid-stream: {e}"))? {
            SourceEvent::Batch(batch) => {
                if !streams.contains(&*batch.stream) {
                    return Err(format!("batch of undiscovered stream `{}`", batch.stream));
                }
                let schema = batch.data.schema();
                check_columns(&batch.stream, schema.fields().iter().map(|f| f.name()))?;
                let hashes = hash_rows(&batch.data).map_err(|e| e.to_string())?;
                for hash in hashes.iter().flatten() {
                    out.items.push(Item::Row {
                        stream: batch.stream.to_string(),
                        hash: hash.to_string(),
                    });
                }
                *uncovered.entry(batch.stream.to_string()).or_default() += batch.num_rows();
            }
            SourceEvent::DeadLetter(letter) => {
                *uncovered.entry(letter.stream.clone()).or_default() += 1;
                out.items.push(Item::DeadLetter {
                    stream: letter.stream,
                    payload: letter.payload,
                    position: letter.position,
                });
            }
            SourceEvent::Checkpoint(checkpoint) => {
                uncovered.remove(&checkpoint.stream);
                cursors
                    .streams
                    .insert(checkpoint.stream.clone(), checkpoint.cursor);
                out.checkpoints.push((cursors.clone(), out.items.len()));
            }
            _ => {}
        }
    }
    if let Some((stream, n)) = uncovered.iter().find(|(_, n)| **n > 0) {
        return Err(format!(
            "{n} items of stream `{stream}` came after its last checkpoint: a crash would \
             deliver them twice"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cdp_core::arrow::array::{Int64Array, RecordBatch};
    use cdp_core::arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::{
        Batch, Catalog, Checkpoint, Result, SourceEventStream, StreamSpec, async_trait,
    };

    use super::*;

    /// Emits three one-row batches; `ignore_cursor` restarts every read from scratch,
    /// `trailing` adds a batch after the last checkpoint.
    #[derive(Debug)]
    struct Broken {
        ignore_cursor: bool,
        trailing: bool,
    }

    fn batch(n: i64) -> Batch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let data = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![n]))]);
        Batch::new("s", data.unwrap(), "broken")
    }

    #[async_trait]
    impl Source for Broken {
        fn name(&self) -> &str {
            "broken"
        }

        async fn discover(&self) -> Result<Catalog> {
            let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
            Ok(Catalog::new(vec![StreamSpec::new("s", schema)]))
        }

        fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
            let done = match self.ignore_cursor {
                true => 0,
                false => request
                    .state
                    .cursor("s")
                    .and_then(|c| c.as_i64())
                    .unwrap_or(0),
            };
            let mut events: Vec<Result<SourceEvent>> = Vec::new();
            for n in done..3 {
                events.push(Ok(SourceEvent::Batch(batch(n))));
                events.push(Ok(SourceEvent::Checkpoint(Checkpoint::new(
                    "s",
                    (n + 1).into(),
                ))));
            }
            if self.trailing {
                events.push(Ok(SourceEvent::Batch(batch(99))));
            }
            Ok(Box::pin(futures::stream::iter(events)))
        }
    }

    #[tokio::test]
    async fn a_source_that_ignores_its_cursor_fails() {
        let broken = Broken {
            ignore_cursor: true,
            trailing: false,
        };
        let err = check_source(&broken, 10).await.unwrap_err();
        assert!(err.contains("resuming after item 1"), "{err}");
    }

    #[tokio::test]
    async fn rows_after_the_last_checkpoint_fail() {
        let broken = Broken {
            ignore_cursor: false,
            trailing: true,
        };
        let err = check_source(&broken, 10).await.unwrap_err();
        assert!(err.contains("after its last checkpoint"), "{err}");
    }

    #[tokio::test]
    async fn a_correct_source_passes() {
        let good = Broken {
            ignore_cursor: false,
            trailing: false,
        };
        let report = check_source(&good, 10).await.unwrap();
        assert_eq!(
            (report.rows, report.checkpoints, report.resumes_checked),
            (3, 3, 3)
        );
    }
}
