//! Retryable destination errors are retried (honouring Retry-After); others stop the run.

use std::sync::Arc;
use std::time::Duration;

use cdp_core::{Error, MemoryStateStore, Pipeline, RetryPolicy, Stage, StateStore};

use super::support::{CountingSource, Fault, ProbeDestination};

#[tokio::test(start_paused = true)]
async fn throttled_write_waits_for_retry_after_then_succeeds() {
    let dest = ProbeDestination::new("api").with_fault(Fault::Write(1, || {
        Error::throttled("api", "429 Too Many Requests", Duration::from_secs(30))
    }));
    let started = tokio::time::Instant::now();
    let report = Pipeline::builder("p")
        .source(CountingSource::new(3, 10))
        .destination(dest.clone())
        .retry(RetryPolicy {
            initial_delay: Duration::from_millis(10),
            jitter: false,
            ..RetryPolicy::default()
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(30), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(31), "waited {waited:?}");
    assert_eq!(dest.committed_ids(), (0..30).collect::<Vec<_>>());
    assert_eq!(report.destinations[0].retries, 1);
}

#[tokio::test(start_paused = true)]
async fn permanent_error_stops_the_run_with_state_intact() {
    let store = Arc::new(MemoryStateStore::new());
    let dest = ProbeDestination::new("api").with_fault(Fault::Write(2, || {
        Error::external("api", "400 bad request: no such field")
    }));
    let err = Pipeline::builder("p")
        .source(CountingSource::new(5, 10))
        .destination(dest.clone())
        .state_store(store.clone())
        .commit_every_rows(10)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("stopped in destination api"),
        "{err}"
    );
    assert_eq!(err.stage(), Some(&Stage::Destination("api".into())));
    let state = store.load("p").await.unwrap();
    assert_eq!(state.cursor("users"), Some(&serde_json::json!(2)));
    assert_eq!(dest.committed_ids(), (0..20).collect::<Vec<_>>());
}

/// A destination whose first `prepare` (DDL) fails transiently.
#[derive(Debug)]
struct FlakyDdl {
    inner: ProbeDestination,
    failures: usize,
}

#[cdp_core::async_trait]
impl cdp_core::Destination for FlakyDdl {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn prepare(&mut self, stream: &cdp_core::StreamSpec) -> cdp_core::Result<()> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(Error::transient(
                "warehouse",
                "connection reset during ALTER TABLE",
            ));
        }
        self.inner.prepare(stream).await
    }

    async fn write(&mut self, batch: &cdp_core::Batch) -> cdp_core::Result<cdp_core::WriteOutcome> {
        self.inner.write(batch).await
    }

    async fn flush(&mut self, epoch: u64) -> cdp_core::Result<()> {
        self.inner.flush(epoch).await
    }

    async fn commit(&mut self, epoch: u64) -> cdp_core::Result<()> {
        self.inner.commit(epoch).await
    }
}

#[tokio::test(start_paused = true)]
async fn transient_prepare_failures_are_retried() {
    let probe = ProbeDestination::new("warehouse");
    let report = Pipeline::builder("p")
        .source(CountingSource::new(2, 10))
        .destination(FlakyDdl {
            inner: probe.clone(),
            failures: 2,
        })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(probe.committed_ids(), (0..20).collect::<Vec<_>>());
    assert_eq!(report.destinations[0].retries, 2);
}
