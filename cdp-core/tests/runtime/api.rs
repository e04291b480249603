//! Public types can cross threads, and boxed components compose like plain ones.

use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_core::{
    Batch, Destination, Error, MemoryStateStore, Pipeline, PipelineHandle, RetryPolicy, RunReport,
    Source, Transform,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Batch>();
    send_sync::<Error>();
    send_sync::<RunReport>();
    send_sync::<PipelineHandle>();
    send_sync::<RetryPolicy>();
    send_sync::<MemoryStateStore>();
    send_sync::<MemorySource>();
    send_sync::<MemoryDestination>();
    send_sync::<Box<dyn Source>>();
    // Destinations are driven from one task through `&mut self`: `Send` is enough.
    send::<Box<dyn Destination>>();
    send_sync::<Box<dyn Transform>>();
    #[cfg(feature = "sqlite")]
    send_sync::<cdp_core::SqliteStateStore>();
    send::<Pipeline>();
}

/// A destination that holds something `Send` but not `Sync` (a `Cell`) is accepted, and
/// validating the pipeline it is in can still be awaited from a spawned task.
#[tokio::test]
async fn destinations_need_not_be_sync() {
    use std::cell::Cell;

    #[derive(Debug)]
    struct NotSync(MemoryDestination, Cell<u64>);

    #[async_trait::async_trait]
    impl Destination for NotSync {
        fn name(&self) -> &str {
            self.0.name()
        }
        async fn prepare(&mut self, stream: &cdp_core::StreamSpec) -> cdp_core::Result<()> {
            self.0.prepare(stream).await
        }
        async fn write(&mut self, batch: &Batch) -> cdp_core::Result<cdp_core::WriteOutcome> {
            self.1.set(self.1.get() + batch.num_rows() as u64);
            self.0.write(batch).await
        }
        async fn flush(&mut self, epoch: u64) -> cdp_core::Result<()> {
            self.0.flush(epoch).await
        }
    }

    let pipeline = Pipeline::builder("not-sync")
        .source(MemorySource::new("s", vec![super::support::rows(0, 3)]))
        .destination(NotSync(MemoryDestination::new("d"), Cell::new(0)))
        .build()
        .unwrap();
    let pipeline = tokio::spawn(async move {
        pipeline.validate().await.unwrap();
        pipeline
    })
    .await
    .unwrap();
    let report = pipeline.run().await.unwrap();
    assert_eq!(report.rows_out(), 3);
}

#[tokio::test]
async fn boxed_components_compose() {
    let source: Box<dyn Source> =
        Box::new(MemorySource::new("s", vec![super::support::rows(0, 3)]));
    let dest = MemoryDestination::new("d");
    let handle = dest.handle();
    let boxed: Box<dyn Destination> = Box::new(dest);
    Pipeline::builder("p")
        .source(source)
        .destination(boxed)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(handle.row_count(), 3);
}
