//! A schema per test, SQL helpers, and reading whole tables back for comparison.

use std::sync::atomic::{AtomicUsize, Ordering};

use cdp_connectors::PostgresConnection;
use cdp_core::{Checkpoint, PipelineState, ReadRequest, Source, SourceEvent};
use futures::StreamExt;
use tokio_postgres::{Client, NoTls};

pub(crate) fn url() -> String {
    std::env::var("CDP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A schema of its own on the test server, dropped (with everything in it) on drop.
pub(crate) struct TestDb {
    pub(crate) schema: String,
    pub(crate) client: Client,
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "cdp_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = connect().await;
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        TestDb { schema, client }
    }

    /// Connection settings for the connectors, tagged with `application_name`.
    pub(crate) fn connection(&self, application_name: &str) -> PostgresConnection {
        PostgresConnection::url(url()).with_application_name(application_name)
    }

    pub(crate) fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    pub(crate) async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    pub(crate) async fn count(&self, table: &str) -> i64 {
        self.client
            .query_one(&format!("SELECT count(*) FROM {}", self.table(table)), &[])
            .await
            .unwrap()
            .get(0)
    }

    /// The rows of `schema.table` as JSON text, system columns left out, ordered by `order`.
    pub(crate) async fn rows_in(&self, schema: &str, table: &str, order: &str) -> Vec<String> {
        let sql = format!(
            "SELECT (to_jsonb(cdp_row__) - '_cdp_op' - '_cdp_source' - '_cdp_synced_at'
                     - '_cdp_record_hash' - '_cdp_lineage_id')::text
             FROM {schema}.{table} cdp_row__ ORDER BY {order}"
        );
        self.client
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub(crate) async fn rows(&self, table: &str, order: &str) -> Vec<String> {
        self.rows_in(&self.schema, table, order).await
    }

    /// Every column, system columns included, as JSON text.
    pub(crate) async fn raw_rows(&self, table: &str, order: &str) -> Vec<String> {
        let sql = format!(
            "SELECT to_jsonb(t)::text FROM {} t ORDER BY {order}",
            self.table(table)
        );
        self.client
            .query(&sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop runs inside the test's runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = connect().await;
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            });
        })
        .join();
    }
}

pub(crate) async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test server at {}: {e}", url()));
    tokio::spawn(connection);
    client
}

/// What one read produced, in order.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub(crate) events: Vec<SourceEvent>,
}

impl Read {
    pub(crate) fn batches(&self) -> Vec<cdp_core::Batch> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Batch(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn checkpoints(&self) -> Vec<Checkpoint> {
        self.events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Checkpoint(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// Values of an Int64 (or smaller integer) column over every batch, with each row's op.
    pub(crate) fn ids(&self, column: &str) -> Vec<(i64, u8)> {
        let mut out = Vec::new();
        for batch in self.batches() {
            let ops = batch.ops().unwrap();
            let col = batch
                .data
                .column_by_name(column)
                .unwrap_or_else(|| panic!("no `{column}` in {:?}", batch.data.schema()));
            let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Int64).unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .unwrap();
            for (i, op) in ops.iter().enumerate() {
                out.push((col.value(i), *op as u8));
            }
        }
        out
    }

    /// Every batch is followed by a checkpoint, and none is larger than `max`.
    pub(crate) fn assert_aligned(&self, max: usize) {
        for (i, event) in self.events.iter().enumerate() {
            if let SourceEvent::Batch(b) = event {
                assert!(
                    b.num_rows() <= max && b.num_rows() > 0,
                    "batch of {}",
                    b.num_rows()
                );
                assert!(
                    matches!(self.events.get(i + 1), Some(SourceEvent::Checkpoint(_))),
                    "batch {i} not followed by a checkpoint"
                );
            }
        }
    }
}

pub(crate) async fn read_all(source: &dyn Source, request: ReadRequest) -> Read {
    let mut stream = source.read(request).expect("read starts");
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.expect("read event"));
    }
    Read { events }
}

pub(crate) fn resume(stream: &str, cursor: serde_json::Value) -> ReadRequest {
    let mut state = PipelineState::default();
    state.streams.insert(stream.to_string(), cursor);
    ReadRequest {
        state,
        ..ReadRequest::default()
    }
}
