//! Micro-batch mode flushes on time when rows stop arriving, and coalesces small batches.

use std::sync::Arc;
use std::time::Duration;

use cdp_core::{MemoryStateStore, Pipeline, RunMode, RunStatus, StateStore};

use super::support::{CountingSource, ProbeDestination};

#[tokio::test]
async fn flushes_on_max_wait_when_the_source_goes_quiet() {
    let mut source = CountingSource::new(3, 5);
    source.then_pend = true; // 15 rows, then silence: never reaches max_rows
    let dest = ProbeDestination::new("probe");
    let store = Arc::new(MemoryStateStore::new());
    let pipeline = Pipeline::builder("p")
        .source(source)
        .destination(dest.clone())
        .state_store(store.clone())
        .mode(RunMode::MicroBatch {
            max_rows: 1_000,
            max_wait: Duration::from_millis(50),
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());

    let mut waited = Duration::ZERO;
    while dest.committed_ids().len() < 15 && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    assert_eq!(dest.committed_ids(), (0..15).collect::<Vec<_>>());
    assert_eq!(
        store.load("p").await.unwrap().cursor("users"),
        Some(&serde_json::json!(3))
    );
    // Three 5-row batches arrived within max_wait: coalesced into one write.
    assert_eq!(dest.writes.load(std::sync::atomic::Ordering::SeqCst), 1);

    handle.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    assert_eq!(report.committed_epoch, 1);
}

#[tokio::test]
async fn flushes_when_max_rows_are_pending() {
    let dest = ProbeDestination::new("probe");
    let report = Pipeline::builder("p")
        .source(CountingSource::new(10, 10))
        .destination(dest.clone())
        .mode(RunMode::MicroBatch {
            max_rows: 30,
            max_wait: Duration::from_secs(3600),
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(dest.committed_ids().len(), 100);
    // Commits after 30, 60, 90 rows and at the end.
    assert_eq!(report.committed_epoch, 4);
    assert_eq!(dest.writes.load(std::sync::atomic::Ordering::SeqCst), 4);
}
