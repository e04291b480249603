//! PostgreSQL throughput against the server's own limit, measured in the same run.
//!
//! The fixture is a 200k-row table (bigint key, text, numeric(12,2), integer, timestamptz,
//! boolean) in a schema of its own on the server at `CDP_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped at the end.
//!
//! - `source/copy_to_memory`: `COPY table TO STDOUT (FORMAT binary)` collected in memory,
//!   the least work that gets the rows out of the server.
//! - `source/source_to_arrow`: the PostgreSQL source's full refresh into Arrow batches
//!   (keyset pages ordered by key, decoding, checkpoints, the channel to the consumer).
//! - `destination/copy_from`: the same table's rows, as captured binary COPY bytes,
//!   `COPY … FROM STDIN` into an empty table with the same key.
//! - `destination/arrow_to_destination`: the source's stamped batches (user and system
//!   columns) written and flushed into an empty table by the PostgreSQL destination
//!   (an empty table: COPY straight in, in one transaction).
//! - `destination/arrow_to_destination_upsert`: the same, into the populated table with
//!   every row changed (staging COPY, then one MERGE, in one transaction): the worst case,
//!   where PostgreSQL writes a new version of every row and its index entry.
//! - `destination/arrow_to_destination_upsert_fillfactor_50`: the same upserts into a table
//!   the destination created with `fillfactor = 50`, so that new row versions fit on their
//!   page (HOT updates, no new index entries).
//! - `destination/arrow_to_destination_replay`: the same batches again into the table they
//!   were loaded into, as after a crash: staged and compared, nothing rewritten.
//!
//! Tables are emptied between iterations, outside the timed part. Run with
//! `cargo bench -p cdp-benches --features postgres --bench postgres`.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use cdp_connectors::{PostgresConnection, PostgresDestination, PostgresSourceConfig};
use cdp_core::{Batch, Destination, ReadRequest, Source, SourceEvent, StreamSpec};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{SinkExt, StreamExt};
use tokio_postgres::{Client, NoTls};

const ROWS: usize = 200_000;

fn url() -> String {
    std::env::var("CDP_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn copy_out(client: &Client, sql: &str) -> Vec<bytes::Bytes> {
    let stream = client.copy_out(sql).await.unwrap();
    let mut stream = std::pin::pin!(stream);
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.unwrap());
    }
    chunks
}

async fn read_batches(source: &dyn Source) -> Vec<Batch> {
    let mut events = source.read(ReadRequest::default()).unwrap();
    let mut batches = Vec::new();
    while let Some(event) = events.next().await {
        if let SourceEvent::Batch(batch) = event.unwrap() {
            batches.push(batch);
        }
    }
    batches
}

fn postgres(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("cdp_bench_{}", std::process::id());
    let client = runtime.block_on(async {
        let client = connect().await;
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.orders (id bigint PRIMARY KEY, customer text NOT NULL,
                     amount numeric(12,2), qty integer, created_at timestamptz NOT NULL,
                     paid boolean);
                 INSERT INTO {schema}.orders
                 SELECT i, 'customer-' || (i % 9973), (i % 100000) / 100.0, i % 17,
                        timestamptz '2024-01-01' + i * interval '1 second', i % 3 = 0
                 FROM generate_series(1, {ROWS}) i;
                 CREATE TABLE {schema}.raw_copy (LIKE {schema}.orders INCLUDING ALL);"
            ))
            .await
            .unwrap();
        client
            .batch_execute(&format!("VACUUM ANALYZE {schema}.orders"))
            .await
            .unwrap();
        client
    });
    let connection = PostgresConnection::url(url()).with_application_name("cdp-bench");
    let source = PostgresSourceConfig::new(connection.clone())
        .with_schema(&schema)
        .with_tables(["orders"])
        .build_source()
        .unwrap();

    let mut group = c.benchmark_group("postgres/source");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let copy_to = format!("COPY {schema}.orders TO STDOUT (FORMAT binary)");
    group.bench_function("copy_to_memory", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let chunks = copy_out(&client, &copy_to).await;
                black_box(chunks.iter().map(|c| c.len()).sum::<usize>())
            })
        })
    });
    group.bench_function("source_to_arrow", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let batches = read_batches(&source).await;
                let rows: usize = batches.iter().map(Batch::num_rows).sum();
                assert_eq!(rows, ROWS);
                black_box(rows)
            })
        })
    });
    group.finish();

    // Fixtures for the write side, built once: the COPY bytes of the table, and the
    // source's batches stamped as the runtime stamps them.
    let copy_bytes = runtime.block_on(copy_out(&client, &copy_to));
    let batches: Vec<Batch> = runtime
        .block_on(read_batches(&source))
        .into_iter()
        .map(|b| b.stamp().unwrap())
        .collect();
    let spec = StreamSpec::new("copy_orders", batches[0].data.schema()).with_primary_key(["id"]);
    let batches: Vec<Batch> = batches
        .into_iter()
        .map(|b| Batch {
            stream: "copy_orders".into(),
            ..b
        })
        .collect();
    let mut destination = PostgresDestination::new(connection.clone()).with_schema(&schema);
    runtime.block_on(destination.prepare(&spec)).unwrap();

    let mut group = c.benchmark_group("postgres/destination");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let copy_in = format!("COPY {schema}.raw_copy FROM STDIN (FORMAT binary)");
    let truncate_raw = format!("TRUNCATE {schema}.raw_copy");
    group.bench_function("copy_from", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    client.batch_execute(&truncate_raw).await.unwrap();
                    let started = Instant::now();
                    let sink = client.copy_in::<_, bytes::Bytes>(&copy_in).await.unwrap();
                    let mut sink = std::pin::pin!(sink);
                    for chunk in &copy_bytes {
                        sink.feed(chunk.clone()).await.unwrap();
                    }
                    sink.as_mut().finish().await.unwrap();
                    total += started.elapsed();
                }
                total
            })
        })
    });
    let truncate_copy = format!("TRUNCATE {schema}.copy_orders");
    group.bench_function("arrow_to_destination", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for epoch in 0..iters {
                    client.batch_execute(&truncate_copy).await.unwrap();
                    let started = Instant::now();
                    for batch in &batches {
                        destination.write(batch).await.unwrap();
                    }
                    destination.flush(epoch + 1).await.unwrap();
                    total += started.elapsed();
                }
                total
            })
        })
    });
    // Upserts into a populated table: every key exists and every row changed, the
    // versions alternating between iterations (the merge path, not the initial load).
    let changed: Vec<Batch> = runtime.block_on(async {
        client
            .batch_execute(&format!(
                "UPDATE {schema}.orders SET customer = customer || '*'"
            ))
            .await
            .unwrap();
        read_batches(&source)
            .await
            .into_iter()
            .map(|b| Batch {
                stream: "copy_orders".into(),
                ..b.stamp().unwrap()
            })
            .collect()
    });
    group.bench_function("arrow_to_destination_upsert", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(timed_flushes(
                &client,
                &mut destination,
                &truncate_copy,
                &batches,
                &[&changed, &batches],
                iters,
            ))
        })
    });
    // The same upserts into a table created with free space in every page, where the
    // rewritten rows can stay on their page (HOT updates, no new index entries).
    let mut roomy = PostgresDestination::new(connection)
        .with_schema(&schema)
        .with_table_prefix("ff50_")
        .with_fillfactor(50);
    runtime.block_on(roomy.prepare(&spec)).unwrap();
    let truncate_roomy = format!("TRUNCATE {schema}.ff50_copy_orders");
    group.bench_function("arrow_to_destination_upsert_fillfactor_50", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(timed_flushes(
                &client,
                &mut roomy,
                &truncate_roomy,
                &batches,
                &[&changed, &batches],
                iters,
            ))
        })
    });
    group.bench_function("arrow_to_destination_replay", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(timed_flushes(
                &client,
                &mut destination,
                &truncate_copy,
                &batches,
                &[&batches],
                iters,
            ))
        })
    });
    group.finish();

    runtime.block_on(async {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
    });
}

/// Empties the table and loads `initial`, then times `iters` flushes, the `i`-th writing
/// `versions[i % versions.len()]` over what the table holds.
async fn timed_flushes(
    client: &Client,
    destination: &mut PostgresDestination,
    truncate: &str,
    initial: &[Batch],
    versions: &[&Vec<Batch>],
    iters: u64,
) -> Duration {
    client.batch_execute(truncate).await.unwrap();
    for batch in initial {
        destination.write(batch).await.unwrap();
    }
    destination.flush(1).await.unwrap();
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let version = versions[i as usize % versions.len()];
        let started = Instant::now();
        for batch in version {
            destination.write(batch).await.unwrap();
        }
        destination.flush(i + 2).await.unwrap();
        total += started.elapsed();
    }
    total
}

criterion_group!(benches, postgres);
criterion_main!(benches);
