//! Per-record failures go to the dead-letter destination; the rest of the batch continues.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use cdp_core::event::row_to_json;
use cdp_core::memory::MemoryDestination;
use cdp_core::{
    Batch, DEAD_LETTER_STREAM, DeadLetter, Error, Pipeline, Result, Transform, TransformOutput,
};

use super::support::{CountingSource, ProbeDestination};

/// Rejects rows whose id is a multiple of 7.
#[derive(Debug)]
struct RejectSevens;

impl Transform for RejectSevens {
    fn name(&self) -> &str {
        "reject_sevens"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> Result<TransformOutput> {
        let ids = batch
            .data
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let keep: arrow::array::BooleanArray = ids.iter().map(|v| v.map(|v| v % 7 != 0)).collect();
        let dead_letters = (0..ids.len())
            .filter(|&i| ids.value(i) % 7 == 0)
            .map(|i| {
                DeadLetter::new(
                    batch.stream.to_string(),
                    "transform reject_sevens",
                    format!("id {} is a multiple of 7", ids.value(i)),
                    row_to_json(&batch.data, i),
                )
            })
            .collect();
        let data = filter_record_batch(&batch.data, &keep).map_err(Error::from)?;
        Ok(TransformOutput {
            batch: Some(Batch { data, ..batch }),
            dead_letters,
        })
    }
}

#[tokio::test]
async fn bad_rows_are_dead_lettered_and_good_rows_land() {
    let dest = ProbeDestination::new("warehouse");
    let dlq = MemoryDestination::new("dlq");
    let dead = dlq.handle();
    let report = Pipeline::builder("p")
        .source(CountingSource::new(3, 10))
        .transform(RejectSevens)
        .destination(dest.clone())
        .dead_letter(dlq)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let good: Vec<i64> = (0..30).filter(|i| i % 7 != 0).collect();
    assert_eq!(dest.committed_ids(), good);
    assert_eq!(report.dead_letters, 5); // 0, 7, 14, 21, 28
    assert_eq!(report.stream("users").unwrap().dead_lettered, 5);

    let batches = dead.batches();
    assert!(batches.iter().all(|b| &*b.stream == DEAD_LETTER_STREAM));
    let reasons: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let col = b.data.column_by_name("reason").unwrap();
            let col = col.as_any().downcast_ref::<StringArray>().unwrap();
            col.iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(reasons.len(), 5);
    assert!(reasons.contains(&"id 14 is a multiple of 7".to_string()));
    let payload = batches[0].data.column_by_name("payload").unwrap();
    let payload = payload.as_any().downcast_ref::<StringArray>().unwrap();
    assert!(
        payload.value(0).contains("\"email\":\"user0@x.io\""),
        "{}",
        payload.value(0)
    );
}

#[tokio::test]
async fn without_a_dead_letter_destination_the_report_keeps_samples() {
    let report = Pipeline::builder("p")
        .source(CountingSource::new(1, 10))
        .transform(RejectSevens)
        .destination(ProbeDestination::new("warehouse"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.dead_letters, 2);
    assert_eq!(report.dead_letter_samples.len(), 2);
    assert_eq!(
        report.dead_letter_samples[1].reason,
        "id 7 is a multiple of 7"
    );
}

/// Replaces the `payload` of dead letters with a fixed text.
#[derive(Debug)]
struct RedactPayload;

impl Transform for RedactPayload {
    fn name(&self) -> &str {
        "redact_payload"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> Result<TransformOutput> {
        let index = batch.data.schema().index_of("payload")?;
        let mut columns = batch.data.columns().to_vec();
        columns[index] = Arc::new(StringArray::from(vec!["<redacted>"; batch.num_rows()]));
        let data = arrow::array::RecordBatch::try_new(batch.data.schema(), columns)?;
        Ok(TransformOutput::pass(Batch { data, ..batch }))
    }
}

#[tokio::test]
async fn dead_letter_transforms_redact_payloads() {
    let dlq = MemoryDestination::new("dlq");
    let dead = dlq.handle();
    Pipeline::builder("p")
        .source(CountingSource::new(1, 10))
        .transform(RejectSevens)
        .destination(ProbeDestination::new("warehouse"))
        .dead_letter_with(dlq, vec![Box::new(RedactPayload)])
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let batch = &dead.batches()[0].data;
    let payload = batch.column_by_name("payload").unwrap();
    let payload = payload.as_any().downcast_ref::<StringArray>().unwrap();
    assert!(payload.iter().all(|p| p == Some("<redacted>")));
    let reason = batch.column_by_name("reason").unwrap();
    let reason = reason.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(reason.value(1), "id 7 is a multiple of 7");
}
