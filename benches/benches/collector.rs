//! Durable ingestion through the collector's batch endpoint on loopback, fsync on, against
//! baselines measured in the same run.
//!
//! * `collector_batch_http` — 20,000 Segment `track` events as 200 `/v1/batch` requests of
//!   100 events, from 32 keep-alive connections at once, each acknowledged only after the
//!   log's group commit (`fsync`). Throughput is events/s; the target is ≥ 50,000/s on a
//!   2-core machine.
//! * `pipeline_from_memory` — baseline: the same events decoded into Arrow and run
//!   through a pipeline from memory to memory, no HTTP and no disk ("appending them
//!   straight into the pipeline").
//! * `append_fsync` — baseline: the same event lines appended to a file with one write and
//!   one `fsync` per request: what durability alone costs.

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use cdp_collector::{Collector, EventLog, LogConfig};
use cdp_core::Pipeline;
use cdp_core::memory::{MemoryDestination, MemorySource};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const KEY: &str = "bench-write-key";
const CONNECTIONS: usize = 32;
const REQUESTS: usize = 200;
const PER_REQUEST: usize = 100;
const EVENTS: usize = REQUESTS * PER_REQUEST;

fn event(n: usize, round: u64) -> serde_json::Value {
    let name = ["Product Viewed", "Order Completed", "Signed Up"][n % 3];
    serde_json::json!({
        "type": "track",
        "messageId": format!("r{round}-m{n}"),
        "userId": format!("user-{}", n % 5_000),
        "event": name,
        "properties": {"sku": format!("SKU-{}", n % 977), "price": (n % 100) as f64 + 0.99},
        "context": {"library": {"name": "analytics-node", "version": "3.1.0"}, "ip": "203.0.113.7"},
        "timestamp": "2024-05-01T12:00:00Z",
    })
}

/// The request bodies of one round; message ids differ per round so nothing is dropped as a
/// duplicate.
fn bodies(round: u64) -> Vec<String> {
    (0..REQUESTS)
        .map(|r| {
            let batch: Vec<serde_json::Value> = (0..PER_REQUEST)
                .map(|i| event(r * PER_REQUEST + i, round))
                .collect();
            serde_json::json!({"batch": batch, "sentAt": "2024-05-01T12:00:01Z"}).to_string()
        })
        .collect()
}

/// A keep-alive HTTP/1.1 connection that POSTs and reads each answer whole.
struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    auth: String,
}

impl Connection {
    async fn open(address: std::net::SocketAddr) -> Connection {
        let stream = TcpStream::connect(address).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        Connection {
            reader: BufReader::new(read),
            writer: write,
            auth: base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:")),
        }
    }

    async fn post(&mut self, body: &str) -> u16 {
        let head = format!(
            "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Authorization: Basic {}\r\nContent-Length: {}\r\n\r\n",
            self.auth,
            body.len()
        );
        self.writer.write_all(head.as_bytes()).await.expect("write");
        self.writer.write_all(body.as_bytes()).await.expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).await.expect("status");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer).await.expect("body");
        status
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let address = runtime.block_on(async {
        let log = EventLog::open(LogConfig::new(dir.path().join("log"))).expect("log");
        let router = Collector::new(vec![KEY.into()], log).router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    });

    let mut group = c.benchmark_group("collector_20k_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);

    let mut round = 0u64;
    group.bench_function("collector_batch_http", |b| {
        b.iter_batched(
            || {
                round += 1;
                bodies(round)
            },
            |bodies| {
                runtime.block_on(async {
                    let bodies = Arc::new(bodies);
                    let mut clients = Vec::new();
                    for c in 0..CONNECTIONS {
                        let bodies = bodies.clone();
                        clients.push(tokio::spawn(async move {
                            let mut connection = Connection::open(address).await;
                            for body in bodies.iter().skip(c).step_by(CONNECTIONS) {
                                assert_eq!(connection.post(body).await, 200);
                            }
                        }));
                    }
                    for client in clients {
                        client.await.expect("client");
                    }
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });

    let lines: Vec<serde_json::Value> = (0..EVENTS).map(|n| event(n, 0)).collect();
    let schema = Arc::new(
        arrow_json::reader::infer_json_schema_from_iterator(lines.iter().map(|l| Ok(l.clone())))
            .expect("schema"),
    );
    group.bench_function("pipeline_from_memory", |b| {
        b.iter(|| {
            let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
                .with_batch_size(8192)
                .build_decoder()
                .expect("decoder");
            decoder.serialize(&lines).expect("serialize");
            let mut batches = Vec::new();
            while let Some(batch) = decoder.flush().expect("flush") {
                batches.push(batch);
            }
            let destination = MemoryDestination::new("memory");
            runtime.block_on(async {
                Pipeline::builder("baseline")
                    .source(MemorySource::new("track", batches))
                    .destination(destination)
                    .build()
                    .expect("pipeline")
                    .run()
                    .await
                    .expect("run")
            });
        })
    });

    let chunks: Vec<Vec<u8>> = lines
        .chunks(PER_REQUEST)
        .map(|chunk| {
            let mut out = Vec::new();
            for line in chunk {
                serde_json::to_writer(&mut out, line).expect("json");
                out.push(b'\n');
            }
            out
        })
        .collect();
    group.bench_function("append_fsync", |b| {
        b.iter(|| {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.path().join("baseline.jsonl"))
                .expect("file");
            for chunk in &chunks {
                file.write_all(chunk).expect("write");
                file.sync_data().expect("fsync");
            }
            black_box(&file);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
