//! Barrier semantics: commits only after flushes, resume without loss or duplicates.

use std::sync::Arc;

use cdp_core::{Error, MemoryStateStore, Pipeline, RunStatus, StateStore};

use super::support::{CountingSource, Fault, ProbeDestination, fast_retry};

#[tokio::test]
async fn batch_run_delivers_every_row_once_and_commits_state() {
    let store = Arc::new(MemoryStateStore::new());
    let dest = ProbeDestination::new("probe");
    let report = Pipeline::builder("p")
        .source(CountingSource::new(10, 100))
        .destination(dest.clone())
        .state_store(store.clone())
        .commit_every_rows(300)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.rows_in(), 1000);
    assert_eq!(report.rows_out(), 1000);
    assert_eq!(dest.committed_ids(), (0..1000).collect::<Vec<_>>());
    let state = store.load("p").await.unwrap();
    assert_eq!(state.cursor("users"), Some(&serde_json::json!(10)));
    // 300-row commits over 1000 rows: after 300, 600, 900 and at the end.
    assert_eq!(state.epoch, 4);
    assert_eq!(report.committed_epoch, 4);
    assert!(report.stream("users").unwrap().freshness.is_some());
}

#[tokio::test]
async fn failed_flush_keeps_last_commit_and_resume_is_exactly_once() {
    let store = Arc::new(MemoryStateStore::new());
    let dest = ProbeDestination::new("probe")
        .with_fault(Fault::Flush(3, || Error::external("probe", "disk full")));
    let err = Pipeline::builder("p")
        .source(CountingSource::new(10, 100))
        .destination(dest.clone())
        .state_store(store.clone())
        .commit_every_rows(200)
        .retry(fast_retry())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("destination probe"), "{message}");
    assert!(message.contains("disk full"), "{message}");
    let state = store.load("p").await.unwrap();
    assert_eq!(state.epoch, 2);
    assert_eq!(state.cursor("users"), Some(&serde_json::json!(4)));
    assert_eq!(dest.committed_ids(), (0..400).collect::<Vec<_>>());

    // Resume: the same destination (as a restarted process would reopen it).
    let report = Pipeline::builder("p")
        .source(CountingSource::new(10, 100))
        .destination(dest.clone())
        .state_store(store.clone())
        .commit_every_rows(200)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.rows_in(), 600);
    assert_eq!(dest.committed_ids(), (0..1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn every_destination_gets_every_batch() {
    let a = ProbeDestination::new("a");
    let b = ProbeDestination::new("b");
    let report = Pipeline::builder("p")
        .source(CountingSource::new(5, 10))
        .destination(a.clone())
        .destination(b.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(a.committed_ids(), b.committed_ids());
    assert_eq!(a.committed_ids().len(), 50);
    assert_eq!(report.destinations.len(), 2);
    assert!(report.destinations.iter().all(|d| d.rows_written == 50));
}

#[tokio::test]
async fn duplicate_destination_names_fail_to_build() {
    let err = Pipeline::builder("p")
        .source(CountingSource::new(1, 1))
        .destination(ProbeDestination::new("x"))
        .destination(ProbeDestination::new("x"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("two destinations named `x`"));
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_state_store_resumes_across_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let dest = ProbeDestination::new("probe");
    for batches in [4, 9] {
        let store = Arc::new(cdp_core::SqliteStateStore::open(&path).unwrap());
        Pipeline::builder("p")
            .source(CountingSource::new(batches, 10))
            .destination(dest.clone())
            .state_store(store)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
    }
    assert_eq!(dest.committed_ids(), (0..90).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_schema_change_is_counted_and_destinations_are_prepared_again() {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::memory::{MemoryDestination, MemorySource};

    let narrow = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let first = RecordBatch::try_new(narrow, vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
    let wider = super::support::rows(2, 2);
    let dest = MemoryDestination::new("d");
    let handle = dest.handle();
    let report = Pipeline::builder("p")
        .source(MemorySource::new("users", vec![first, wider]))
        .destination(dest)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.stream("users").unwrap().schema_changes, 1);
    let prepared = handle.prepared();
    assert_eq!(prepared.len(), 2);
    assert!(prepared[0].schema.column_with_name("email").is_none());
    assert!(prepared[1].schema.column_with_name("email").is_some());
    assert_eq!(handle.row_count(), 3);
}
