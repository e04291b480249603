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
    send_sync::<Box<dyn Destination>>();
    send_sync::<Box<dyn Transform>>();
    #[cfg(feature = "sqlite")]
    send_sync::<cdp_core::SqliteStateStore>();
    send::<Pipeline>();
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
