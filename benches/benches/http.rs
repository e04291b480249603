//! The HTTP connectors against bare reqwest on loopback, baselines measured in the same
//! run:
//!
//! - `http_source`: the HTTP source through a pipeline (paging, schemaless decoding into
//!   Arrow, stamping, checkpoints) against a bare reqwest loop paging the same fake API
//!   and parsing each page into `serde_json::Value`s.
//! - `webhook`: the webhook destination (envelopes, idempotency keys, HMAC signatures,
//!   JSON arrays of 100, one request in flight; the same unsigned; the same with four in
//!   flight) against bare reqwest POSTs, one at a time, of the same batches as JSON
//!   arrays.
//!
//! `cargo bench -p cdp-benches --bench http`

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use axum::routing::post;
use cdp_connectors::destinations::webhook::SigningConfig;
use cdp_connectors::http::{Secret, SecretSource};
use cdp_connectors::{HttpSource, HttpSourceConfig, WebhookDestinationConfig};
use cdp_core::{
    Batch, Destination, MemoryStateStore, Pipeline, Result, RunMode, StreamSpec, WriteOutcome,
    async_trait,
};
use cdp_testkit::saas::{API_KEY, FakeSaas, SaasConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: usize = 5_000;
const PAGE: usize = 100;
const BATCHES: usize = 50;

/// Counts rows and forgets them: the pipeline's cost without a sink's.
#[derive(Debug, Default)]
struct Count(usize);

#[async_trait]
impl Destination for Count {
    fn name(&self) -> &str {
        "count"
    }
    async fn prepare(&mut self, _stream: &StreamSpec) -> Result<()> {
        Ok(())
    }
    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        self.0 += batch.num_rows();
        Ok(WriteOutcome::default())
    }
    async fn flush(&mut self, _epoch: u64) -> Result<()> {
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// Pages `/items/next` to its end, parsing each page; returns the records seen.
async fn bare_pages(client: &reqwest::Client, base: &str) -> usize {
    let mut url = format!("{base}/items/next?limit={PAGE}");
    let mut seen = 0;
    loop {
        let body = client
            .get(&url)
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let items = page["items"].as_array().unwrap();
        seen += items.len();
        match page["next"].as_str() {
            Some(next) if !items.is_empty() => url = format!("{base}{next}"),
            _ => return seen,
        }
    }
}

fn source(base: &str, key: &std::path::Path) -> HttpSource {
    let text = format!(
        r#"base_url = "{base}"
auth = {{ type = "bearer", token = {{ file = "{}" }} }}

[[streams]]
name = "customers"
path = "/items/next"
records = "/items"
page_size = {{ param = "limit", size = {PAGE} }}
paginate = {{ type = "next_url", pointer = "/next" }}
incremental = {{ cursor_field = "/updated", param = "updated_since" }}
"#,
        key.display()
    );
    let table: serde_json::Value = toml::from_str(&text).unwrap();
    HttpSourceConfig::from_table(&table)
        .unwrap()
        .build_source()
        .unwrap()
}

fn http_source(c: &mut Criterion) {
    let runtime = runtime();
    let server = runtime.block_on(FakeSaas::start(SaasConfig {
        customers: RECORDS,
        invoices: 0,
        ..SaasConfig::default()
    }));
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), API_KEY).unwrap();
    let base = server.url();
    let client = client();
    let source = source(&base, key.path());

    let mut group = c.benchmark_group("http_source");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);
    group.bench_function("bare_reqwest_loop", |b| {
        b.iter(|| assert_eq!(runtime.block_on(bare_pages(&client, &base)), RECORDS))
    });
    group.bench_function("http_source_pipeline", |b| {
        b.iter(|| {
            let report = runtime.block_on(async {
                Pipeline::builder("bench-http")
                    .source(source.clone())
                    .destination(Count::default())
                    .state_store(Arc::new(MemoryStateStore::new()))
                    .mode(RunMode::Batch)
                    .build()
                    .unwrap()
                    .run()
                    .await
                    .unwrap()
            });
            assert_eq!(report.rows_out() as usize, RECORDS);
        })
    });
    group.finish();
}

/// `BATCHES` stamped batches of `PAGE` rows.
fn batches() -> Vec<Batch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("plan", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, true),
    ]));
    (0..BATCHES)
        .map(|b| {
            let ids: Vec<i64> = (0..PAGE).map(|r| (b * PAGE + r) as i64).collect();
            let email: Vec<String> = ids.iter().map(|i| format!("user{i}@example.com")).collect();
            let plan: Vec<&str> = ids
                .iter()
                .map(|i| ["free", "pro", "team"][*i as usize % 3])
                .collect();
            let event: Vec<&str> = ids.iter().map(|_| "Subscription Renewed").collect();
            let data = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(email)),
                    Arc::new(StringArray::from(plan)),
                    Arc::new(StringArray::from(event)),
                ],
            )
            .unwrap();
            Batch::new("subscriptions", data, "bench").stamp().unwrap()
        })
        .collect()
}

/// A receiver that takes every body and answers at once.
async fn sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/hooks",
        post(|body: axum::body::Bytes| async move {
            let _ = body.len();
            "{\"rejected\":[]}"
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hooks")
}

/// The batches' user columns as JSON arrays: what a hand-written client would POST.
fn bare_bodies(batches: &[Batch]) -> Vec<Vec<u8>> {
    batches
        .iter()
        .map(|batch| {
            let user = batch.data.project(&[0, 1, 2, 3]).unwrap();
            let mut writer = arrow_json::ArrayWriter::new(Vec::new());
            writer.write(&user).unwrap();
            writer.finish().unwrap();
            writer.into_inner()
        })
        .collect()
}

fn webhook(c: &mut Criterion) {
    let runtime = runtime();
    let url = runtime.block_on(sink());
    let batches = batches();
    let client = client();
    let mut config = WebhookDestinationConfig::new(url.clone());
    config.webhook.signing = Some(SigningConfig {
        secret: SecretSource::Value(Secret::new("whsec_bench")),
        header: "Cdp-Signature".into(),
    });
    let mut destination = config.build_destination().unwrap();

    let mut group = c.benchmark_group("webhook");
    group.throughput(Throughput::Elements((BATCHES * PAGE) as u64));
    group.sample_size(20);
    group.bench_function("bare_reqwest_posts", |b| {
        b.iter(|| {
            runtime.block_on(async {
                // Encoding is part of the work: the destination encodes too.
                for body in bare_bodies(&batches) {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                }
            })
        })
    });
    let mut epoch = 0;
    group.bench_function("webhook_destination", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for batch in &batches {
                    destination.write(batch).await.unwrap();
                }
                epoch += 1;
                destination.flush(epoch).await.unwrap();
                assert!(destination.take_refused().is_empty());
            })
        })
    });
    // The same without signatures: what signing costs.
    let mut unsigned = WebhookDestinationConfig::new(url.clone())
        .build_destination()
        .unwrap();
    group.bench_function("webhook_destination_unsigned", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for batch in &batches {
                    unsigned.write(batch).await.unwrap();
                }
                epoch += 1;
                unsigned.flush(epoch).await.unwrap();
            })
        })
    });
    // Four requests in flight (records of one key may then arrive out of order).
    let mut concurrent_config = WebhookDestinationConfig::new(url.clone());
    concurrent_config.webhook.concurrency = 4;
    concurrent_config.webhook.signing = config.webhook.signing.clone();
    let mut concurrent = concurrent_config.build_destination().unwrap();
    group.bench_function("webhook_destination_concurrency_4", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for batch in &batches {
                    concurrent.write(batch).await.unwrap();
                }
                epoch += 1;
                concurrent.flush(epoch).await.unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, http_source, webhook);
criterion_main!(benches);
