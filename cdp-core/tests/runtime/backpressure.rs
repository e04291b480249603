//! A stalled destination stops the source: batches in flight stay bounded.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cdp_core::{Pipeline, RunStatus};

use super::support::{CountingSource, ProbeDestination};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_destination_bounds_batches_in_flight() {
    let source = CountingSource::new(200, 1_000);
    let produced = source.produced.clone();
    let dest = ProbeDestination::stalled("stalled");
    let stall = dest.stall.clone();
    let capacity = 2;
    let pipeline = Pipeline::builder("p")
        .source(source)
        .destination(dest.clone())
        .channel_capacity(capacity)
        .build()
        .unwrap();
    let run = tokio::spawn(pipeline.run());

    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_flight = produced.load(Ordering::SeqCst);
    // source→router channel + the router's batch + router→destination channel + the batch
    // blocked in the destination + the one the source holds while waiting to send.
    let bound = capacity + 1 + capacity + 1 + 1;
    assert!(
        in_flight <= bound,
        "{in_flight} batches produced with a stalled destination"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        produced.load(Ordering::SeqCst),
        in_flight,
        "source kept producing"
    );

    stall.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(dest.committed_ids().len(), 200 * 1_000);
}
