//! Flow checks stop a pipeline before data moves; per-destination transforms apply to one
//! destination only.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_core::{
    Batch, Error, Flow, FlowCheck, Pipeline, RECORD_HASH_COLUMN, Result, Transform, TransformOutput,
};

use super::support::{CountingSource, ProbeDestination, rows};

/// `email` may not reach destination `ads` unless it was hashed (renamed `email_sha256`).
#[derive(Debug)]
struct NoRawEmailToAds;

impl FlowCheck for NoRawEmailToAds {
    fn check(&self, flow: &Flow<'_>) -> Result<()> {
        if flow.destination == "ads" && flow.schema.column_with_name("email").is_some() {
            return Err(Error::Policy {
                stream: flow.stream.into(),
                destination: flow.destination.into(),
                message: "field `email` (class sensitive) must be hashed first".into(),
            });
        }
        Ok(())
    }
}

/// Replaces `email` by a stand-in hash column, for the test only.
#[derive(Debug)]
struct HashEmail;

impl Transform for HashEmail {
    fn name(&self) -> &str {
        "hash_email"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        let fields: Vec<Field> = input
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "email" => Field::new("email_sha256", DataType::Utf8, true),
                _ => f.as_ref().clone(),
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    fn apply(&self, batch: Batch) -> Result<TransformOutput> {
        let schema = self.output_schema(&batch.data.schema())?;
        let columns = batch
            .data
            .schema()
            .fields()
            .iter()
            .zip(batch.data.columns())
            .map(|(f, c)| match f.name().as_str() {
                "email" => {
                    let s = c.as_any().downcast_ref::<StringArray>().unwrap();
                    Arc::new(StringArray::from_iter(
                        s.iter().map(|v| v.map(|v| format!("h({})", v.len()))),
                    )) as _
                }
                _ => c.clone(),
            })
            .collect();
        let data = RecordBatch::try_new(schema, columns)?;
        Ok(TransformOutput::pass(Batch { data, ..batch }))
    }
}

#[tokio::test]
async fn validate_refuses_the_flow_without_running() {
    let ads = ProbeDestination::new("ads");
    let pipeline = Pipeline::builder("p")
        .source(CountingSource::new(3, 10))
        .destination(ads.clone())
        .check(NoRawEmailToAds)
        .build()
        .unwrap();
    let err = pipeline.validate().await.unwrap_err();
    assert!(err.to_string().contains("field `email`"), "{err}");
    assert_eq!(ads.writes.load(std::sync::atomic::Ordering::SeqCst), 0);

    let allowed = Pipeline::builder("p")
        .source(CountingSource::new(3, 10))
        .destination_with(ProbeDestination::new("ads"), vec![Box::new(HashEmail)])
        .check(NoRawEmailToAds)
        .build()
        .unwrap();
    let catalog = allowed.validate().await.unwrap();
    assert_eq!(catalog.streams[0].name, "users");
}

#[tokio::test]
async fn refused_flow_fails_before_anything_is_written() {
    let ads = ProbeDestination::new("ads");
    let err = Pipeline::builder("p")
        .source(CountingSource::new(3, 10))
        .destination(ads.clone())
        .check(NoRawEmailToAds)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("stream `users`"), "{message}");
    assert!(message.contains("destination `ads`"), "{message}");
    assert!(message.contains("field `email`"), "{message}");
    assert_eq!(ads.writes.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn destination_transforms_satisfy_the_check_and_apply_to_that_destination_only() {
    let ads = MemoryDestination::new("ads");
    let warehouse = MemoryDestination::new("warehouse");
    let (ads_rows, warehouse_rows) = (ads.handle(), warehouse.handle());
    Pipeline::builder("p")
        .source(MemorySource::new("users", vec![rows(0, 5)]))
        .destination(warehouse)
        .destination_with(ads, vec![Box::new(HashEmail)])
        .check(NoRawEmailToAds)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let ads_batch = &ads_rows.batches()[0].data;
    let wh_batch = &warehouse_rows.batches()[0].data;
    assert!(ads_batch.column_by_name("email").is_none());
    assert!(ads_batch.column_by_name("email_sha256").is_some());
    assert!(wh_batch.column_by_name("email").is_some());
    // What the ads destination holds is hashed as what it holds, not as the raw row.
    let hash = |b: &RecordBatch| {
        let c = b.column_by_name(RECORD_HASH_COLUMN).unwrap();
        c.as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .to_string()
    };
    assert_ne!(hash(ads_batch), hash(wh_batch));
    assert_eq!(ads_rows.prepared()[0].schema, ads_batch.schema());
}

/// A source whose second batch gains an `email` column the policy forbids.
#[tokio::test]
async fn schema_change_that_breaks_policy_stops_the_run() {
    let narrow = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let first = RecordBatch::try_new(narrow, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
    let second = rows(3, 2);
    let ads = MemoryDestination::new("ads");
    let handle = ads.handle();
    let err = Pipeline::builder("p")
        .source(MemorySource::new("users", vec![first, second]))
        .destination(ads)
        .check(NoRawEmailToAds)
        .commit_every_rows(1)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("field `email`"), "{err}");
    // The first batch was committed; the offending one never reached the destination.
    assert_eq!(handle.row_count(), 2);
    assert!(
        handle
            .batches()
            .iter()
            .all(|b| b.data.column_by_name("email").is_none())
    );
}

/// Stamps the `id` column, as text, as the profile id.
#[derive(Debug)]
struct IdAsProfile;

#[cdp_core::async_trait]
impl cdp_core::IdentityResolver for IdAsProfile {
    async fn resolve(&self, batch: Batch) -> Result<cdp_core::ResolvedBatch> {
        let ids = arrow::compute::cast(batch.data.column(0), &DataType::Utf8)?;
        let mut fields = batch.data.schema().fields().to_vec();
        fields.push(Arc::new(Field::new(
            cdp_core::PROFILE_ID_COLUMN,
            DataType::Utf8,
            true,
        )));
        let mut columns = batch.data.columns().to_vec();
        columns.push(ids);
        let data = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Ok(cdp_core::ResolvedBatch {
            batch: Batch { data, ..batch },
            events: Vec::new(),
        })
    }
}

/// Regression: a destination with its own transforms was prepared (and flow-checked) with a
/// schema that lacked `_cdp_profile_id`, while its batches carried it.
#[tokio::test]
async fn destination_transforms_keep_the_profile_id_in_schema_and_data() {
    let ads = MemoryDestination::new("ads");
    let handle = ads.handle();
    Pipeline::builder("p")
        .source(MemorySource::new("users", vec![rows(0, 3)]))
        .identity(Arc::new(IdAsProfile))
        .destination_with(ads, vec![Box::new(HashEmail)])
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let batch = &handle.batches()[0].data;
    assert!(batch.column_by_name(cdp_core::PROFILE_ID_COLUMN).is_some());
    assert_eq!(handle.prepared()[0].schema, batch.schema());
}
