//! Graceful cancellation commits what was read up to the source's checkpoint.

use std::sync::Arc;
use std::time::Duration;

use cdp_core::{MemoryStateStore, Pipeline, RunMode, RunStatus, StateStore};

use super::support::{CountingSource, ProbeDestination};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_at_a_checkpoint_and_resume_continues() {
    let store = Arc::new(MemoryStateStore::new());
    let mut dest = ProbeDestination::new("slow");
    dest.write_delay = Some(Duration::from_millis(5));
    let pipeline = Pipeline::builder("p")
        .source(CountingSource::new(1_000, 10))
        .destination(dest.clone())
        .state_store(store.clone())
        .mode(RunMode::Streaming {
            commit_interval: Duration::from_millis(20),
        })
        .build()
        .unwrap();
    let handle = pipeline.handle();
    let run = tokio::spawn(pipeline.run());
    tokio::time::sleep(Duration::from_millis(150)).await;
    handle.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Cancelled);
    let state = store.load("p").await.unwrap();
    let done = state.cursor("users").unwrap().as_u64().unwrap() as i64;
    assert!(done > 0 && done < 1_000, "cursor {done}");
    // Everything up to the committed cursor is there, and nothing past it.
    assert_eq!(dest.committed_ids(), (0..done * 10).collect::<Vec<_>>());

    let report = Pipeline::builder("p")
        .source(CountingSource::new(1_000, 10))
        .destination(dest.clone())
        .state_store(store.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(dest.committed_ids(), (0..10_000).collect::<Vec<_>>());
}
