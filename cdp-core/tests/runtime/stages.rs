//! What the pipeline builder passes to its components, and how a failure names its stage.

use std::sync::{Arc, Mutex};

use cdp_core::arrow::array::{ArrayRef, Int64Array};
use cdp_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::memory::MemoryDestination;
use cdp_core::{
    Batch, Catalog, Error, IdentityResolver, Pipeline, ReadRequest, ResolvedBatch, Result, Source,
    SourceEventStream, Stage, SyncMode,
};

use super::support::CountingSource;

/// A source that remembers the sync mode it was asked to read in.
#[derive(Debug, Clone, Default)]
struct ModeProbe {
    inner: Option<CountingSource>,
    asked: Arc<Mutex<Vec<Option<SyncMode>>>>,
}

#[cdp_core::async_trait]
impl Source for ModeProbe {
    fn name(&self) -> &str {
        "mode-probe"
    }

    async fn discover(&self) -> Result<Catalog> {
        self.inner.as_ref().unwrap().discover().await
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        self.asked.lock().unwrap().push(request.sync_mode);
        self.inner.as_ref().unwrap().read(request)
    }
}

#[tokio::test]
async fn the_builder_sync_mode_reaches_the_source() {
    for mode in [None, Some(SyncMode::FullRefresh)] {
        let source = ModeProbe {
            inner: Some(CountingSource::new(1, 2)),
            ..ModeProbe::default()
        };
        let mut builder = Pipeline::builder("p")
            .source(source.clone())
            .destination(MemoryDestination::new("d"));
        if let Some(mode) = mode {
            builder = builder.sync_mode(mode);
        }
        builder.build().unwrap().run().await.unwrap();
        assert_eq!(*source.asked.lock().unwrap(), vec![mode]);
    }
}

/// A resolver whose batches do not have the schema it declares.
#[derive(Debug)]
struct Inconsistent;

#[cdp_core::async_trait]
impl IdentityResolver for Inconsistent {
    async fn resolve(&self, batch: Batch) -> Result<ResolvedBatch> {
        // Declares a text `_cdp_profile_id` (the default) but stamps an integer one.
        let mut fields = batch.data.schema().fields().to_vec();
        fields.push(Arc::new(Field::new(
            cdp_core::PROFILE_ID_COLUMN,
            DataType::Int64,
            true,
        )));
        let mut columns = batch.data.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(vec![1; batch.num_rows()])) as ArrayRef);
        let data =
            cdp_core::arrow::array::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Ok(ResolvedBatch {
            batch: Batch { data, ..batch },
            events: Vec::new(),
        })
    }
}

#[tokio::test]
async fn a_resolver_must_produce_the_schema_it_declares() {
    let dest = MemoryDestination::new("d");
    let handle = dest.handle();
    let err = Pipeline::builder("p")
        .source(CountingSource::new(2, 3))
        .identity(Arc::new(Inconsistent))
        .destination(dest.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Some(&Stage::Identity), "{err}");
    let Error::Pipeline { source, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(**source, Error::Schema { .. }) && source.to_string().contains("output_schema"),
        "{source}"
    );
    assert_eq!(handle.row_count(), 0);
}

#[tokio::test]
async fn the_flow_check_sees_the_resolver_output_schema() {
    /// Records the schema of every flow it is asked about.
    #[derive(Debug, Default, Clone)]
    struct Seen(Arc<Mutex<Vec<SchemaRef>>>);
    impl cdp_core::FlowCheck for Seen {
        fn check(&self, flow: &cdp_core::Flow<'_>) -> Result<()> {
            self.0.lock().unwrap().push(flow.schema.clone());
            Ok(())
        }
    }
    #[derive(Debug)]
    struct Declared;
    #[cdp_core::async_trait]
    impl IdentityResolver for Declared {
        async fn resolve(&self, _: Batch) -> Result<ResolvedBatch> {
            unreachable!("validate moves no data")
        }
    }
    let seen = Seen::default();
    let pipeline = Pipeline::builder("p")
        .source(CountingSource::new(1, 1))
        .identity(Arc::new(Declared))
        .destination(MemoryDestination::new("d"))
        .check(seen.clone())
        .build()
        .unwrap();
    pipeline.validate().await.unwrap();
    let seen = seen.0.lock().unwrap();
    let field = seen[0]
        .field_with_name(cdp_core::PROFILE_ID_COLUMN)
        .unwrap();
    assert_eq!(field.data_type(), &DataType::Utf8);
}

/// A destination that panics on its first write.
#[derive(Debug)]
struct Panics;

#[cdp_core::async_trait]
impl cdp_core::Destination for Panics {
    fn name(&self) -> &str {
        "fragile"
    }
    async fn prepare(&mut self, _: &cdp_core::StreamSpec) -> Result<()> {
        Ok(())
    }
    async fn write(&mut self, _: &Batch) -> Result<cdp_core::WriteOutcome> {
        panic!("index out of bounds in the encoder")
    }
    async fn flush(&mut self, _: u64) -> Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_destination_is_a_crash_naming_it_not_a_state_error() {
    let err = Pipeline::builder("p")
        .source(CountingSource::new(2, 3))
        .destination(Panics)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.stage(), Some(&Stage::Destination("fragile".into())));
    let Error::Pipeline { source, .. } = &err else {
        panic!("{err}")
    };
    match &**source {
        Error::Crashed { component, panic } => {
            assert_eq!(component, "destination fragile");
            assert!(
                panic.as_deref().is_some_and(|p| p.contains("panicked")),
                "{panic:?}"
            );
        }
        other => panic!("expected a crash, got {other}"),
    }
}
