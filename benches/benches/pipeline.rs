//! Pipeline overhead: in-memory source → runtime → in-memory destination, in batches of
//! 8,192 rows, against the same work done by a plain loop in the same run.
//!
//! * `direct_stamp` — the baseline: stamp every batch (the `_cdp_` columns and record hash
//!   that any pipeline has to compute) and hand it to a destination, with no runtime.
//! * `runtime` — the same batches through `Pipeline` (channels, workers, barriers, stats).
//! * `stamp_only` — the stamping alone, to show what the record hash costs.

use std::sync::Arc;

use cdp_core::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use cdp_core::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_core::{Batch, Destination, MemoryStateStore, Pipeline, RunMode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS_PER_BATCH: usize = 8_192;
const BATCHES: usize = 64;

fn fixture() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("anonymous_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("revenue", DataType::Float64, true),
    ]));
    let events = [
        "Product Viewed",
        "Order Completed",
        "Signed Up",
        "Page Viewed",
    ];
    (0..BATCHES)
        .map(|b| {
            let base = (b * ROWS_PER_BATCH) as i64;
            let ids = base..base + ROWS_PER_BATCH as i64;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.clone().map(|i| format!("anon-{:08x}", i / 3)),
                )),
                Arc::new(StringArray::from_iter(
                    ids.clone()
                        .map(|i| (i % 4 == 0).then(|| format!("user-{}", i / 12))),
                )),
                Arc::new(StringArray::from_iter_values(
                    ids.clone().map(|i| events[(i % 4) as usize]),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        ids.clone().map(|i| 1_700_000_000_000_000 + i * 1_000),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from_iter(
                    ids.map(|i| (i % 10 == 0).then_some(i as f64 / 100.0)),
                )),
            ];
            RecordBatch::try_new(schema.clone(), columns).expect("fixture batch")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batches = fixture();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("pipeline_overhead");
    group.throughput(Throughput::Elements((ROWS_PER_BATCH * BATCHES) as u64));
    group.sample_size(20);

    group.bench_function("stamp_only", |b| {
        b.iter(|| {
            for data in &batches {
                let stamped = Batch::new("events", data.clone(), "bench").stamp();
                std::hint::black_box(stamped.expect("stamp"));
            }
        })
    });

    group.bench_function("direct_stamp", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut dest = MemoryDestination::new("sink");
                for data in &batches {
                    let batch = Batch::new("events", data.clone(), "bench")
                        .stamp()
                        .expect("stamp");
                    dest.write(&batch).await.expect("write");
                }
                dest.flush(1).await.expect("flush");
                dest.commit(1).await.expect("commit");
                std::hint::black_box(dest.handle().row_count())
            })
        })
    });

    group.bench_function("runtime", |b| {
        b.iter(|| {
            rt.block_on(async {
                let dest = MemoryDestination::new("sink");
                let handle = dest.handle();
                Pipeline::builder("bench")
                    .source(MemorySource::new("events", batches.clone()))
                    .destination(dest)
                    .state_store(Arc::new(MemoryStateStore::new()))
                    .mode(RunMode::Batch)
                    .commit_every_rows(ROWS_PER_BATCH * 16)
                    .build()
                    .expect("build")
                    .run()
                    .await
                    .expect("run");
                std::hint::black_box(handle.row_count())
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
