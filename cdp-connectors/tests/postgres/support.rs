//! A schema per test, SQL helpers, and reading whole tables back for comparison.

use std::sync::atomic::{AtomicUsize, Ordering};

use cdp_connectors::PostgresConnection;
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

pub(crate) use cdp_testkit::read::{read_all, resume};
