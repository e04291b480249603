//! One run at a time per pipeline (the state store's lease), and rows a destination refuses
//! at flush.

use std::sync::Arc;
use std::time::Duration;

use cdp_core::destination::RefusedRow;
use cdp_core::memory::MemoryDestination;
use cdp_core::{
    Batch, Destination, Error, MemoryStateStore, Pipeline, Result, RunMode, StateStore, StreamSpec,
    WriteOutcome, async_trait,
};

use super::support::*;

fn pipeline(
    id: &str,
    store: &Arc<MemoryStateStore>,
    source: CountingSource,
    destination: impl Destination + 'static,
) -> cdp_core::PipelineBuilder {
    let store: Arc<dyn StateStore> = store.clone();
    Pipeline::builder(id)
        .source(source)
        .destination(destination)
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(10)
}

#[tokio::test]
async fn a_second_run_of_a_running_pipeline_is_refused_before_it_reads_anything() {
    let store = Arc::new(MemoryStateStore::new());
    let mut endless = CountingSource::new(2, 10);
    endless.then_pend = true;
    let first = pipeline("sync", &store, endless, ProbeDestination::new("a"))
        .build()
        .unwrap();
    let handle = first.handle();
    let running = tokio::spawn(first.run());
    tokio::time::sleep(Duration::from_millis(100)).await;

    let source = CountingSource::new(2, 10);
    let produced = source.produced.clone();
    let error = pipeline("sync", &store, source, ProbeDestination::new("b"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(&error, Error::Pipeline { source, .. } if matches!(**source, Error::Leased { .. })),
        "{message}"
    );
    assert!(message.contains("already running"), "{message}");
    assert_eq!(produced.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Another pipeline on the same store is not held up.
    pipeline(
        "other",
        &store,
        CountingSource::new(2, 10),
        ProbeDestination::new("c"),
    )
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();

    // A run that waits gets its turn when the first one ends, and resumes after it.
    let source = CountingSource::new(3, 10);
    let produced = source.produced.clone();
    let waiting = tokio::spawn(
        pipeline("sync", &store, source, ProbeDestination::new("d"))
            .lease_wait(Duration::from_secs(30))
            .build()
            .unwrap()
            .run(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    handle.cancel();
    running.await.unwrap().unwrap();
    let report = waiting.await.unwrap().unwrap();
    assert_eq!(report.rows_out(), 10);
    assert_eq!(produced.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Refuses, at flush, the rows whose id is a multiple of 7.
#[derive(Debug)]
struct RefusesAtFlush {
    inner: MemoryDestination,
    pending: Vec<Batch>,
    refused: Vec<RefusedRow>,
}

#[async_trait]
impl Destination for RefusesAtFlush {
    fn name(&self) -> &str {
        "picky"
    }

    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        self.inner.prepare(stream).await
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        self.pending.push(batch.clone());
        Ok(WriteOutcome::default())
    }

    async fn flush(&mut self, epoch: u64) -> Result<()> {
        for batch in std::mem::take(&mut self.pending) {
            let ids = batch.data.column_by_name("id").unwrap();
            let ids = ids
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            let keep: Vec<bool> = ids.values().iter().map(|id| id % 7 != 0).collect();
            for (row, kept) in keep.iter().enumerate() {
                if !kept {
                    self.refused.push(RefusedRow {
                        stream: batch.stream.to_string(),
                        row: cdp_core::event::row_to_json(&batch.data, row),
                        reason: "multiples of 7 are not welcome (CODE 7)".into(),
                        position: Some("table picky".into()),
                    });
                }
            }
            let data = arrow::compute::filter_record_batch(&batch.data, &keep.into())?;
            self.inner.write(&Batch { data, ..batch }).await?;
        }
        self.inner.flush(epoch).await
    }

    fn take_refused(&mut self) -> Vec<RefusedRow> {
        std::mem::take(&mut self.refused)
    }

    async fn commit(&mut self, epoch: u64) -> Result<()> {
        self.inner.commit(epoch).await
    }
}

#[tokio::test]
async fn rows_refused_at_flush_are_dead_letters_of_the_same_epoch() {
    let store = Arc::new(MemoryStateStore::new());
    let landed = MemoryDestination::new("inner");
    let rows = landed.handle();
    let dead = MemoryDestination::new("dead");
    let letters = dead.handle();
    let picky = RefusesAtFlush {
        inner: landed,
        pending: Vec::new(),
        refused: Vec::new(),
    };
    let report = pipeline("picky", &store, CountingSource::new(5, 10), picky)
        .dead_letter(dead)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    // ids 0..50: 0, 7, …, 49 refused.
    assert_eq!(report.dead_letters, 8);
    assert_eq!(rows.row_count(), 42);
    let stats = &report.destinations[0];
    assert_eq!((stats.rows_written, stats.rows_rejected), (42, 8));
    let batches = letters.batches();
    let reasons = batches[0].data.column_by_name("reason").unwrap();
    let reasons = reasons
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    assert_eq!(reasons.value(0), "multiples of 7 are not welcome (CODE 7)");
    let stages = batches[0].data.column_by_name("stage").unwrap();
    let stages = stages
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    assert_eq!(stages.value(0), "destination picky");
}
