//! A PostgreSQL server for integration tests: where it is, a schema of its own per test, and
//! a plain client to set up and check tables (feature `postgres`).
//!
//! The server is `CDP_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test` (trust authentication, database `test`), the
//! one `.ci/run` starts. Every [`TestDb`] works in a schema `cdp_test_<pid>_<n>_<nanos>`,
//! dropped with everything in it when the `TestDb` is dropped, so tests run in parallel and
//! leave nothing behind.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use cdp_postgres::PostgresConnection;
use tokio_postgres::{Client, NoTls};

/// The test server's URL: `CDP_TEST_POSTGRES_URL`, or
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn url() -> String {
    std::env::var("CDP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A schema of its own on the test server, dropped (with everything in it) on drop.
///
/// Helpers panic on failure: that is how a test fails.
pub struct TestDb {
    /// The schema's name (needs no quoting).
    pub schema: String,
    /// A connection for setting up and reading back tables.
    pub client: Client,
}

impl fmt::Debug for TestDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDb")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// Creates a fresh schema; panics if the server cannot be reached.
    pub async fn new() -> TestDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let schema = format!(
            "cdp_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = connect().await;
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap_or_else(|e| panic!("create schema {schema}: {e:?}"));
        TestDb { schema, client }
    }

    /// Connection settings for the code under test, tagged with `application_name` (so a
    /// test can find its connections in `pg_stat_activity`).
    pub fn connection(&self, application_name: &str) -> PostgresConnection {
        PostgresConnection::url(url()).with_application_name(application_name)
    }

    /// `schema.name`.
    pub fn table(&self, name: &str) -> String {
        format!("{}.{name}", self.schema)
    }

    /// Runs `sql` (one or more statements).
    pub async fn exec(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// The number of rows in `table` of the test's schema.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {}", self.table(table));
        self.client
            .query_one(&sql, &[])
            .await
            .and_then(|row| row.try_get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// The rows of `schema.table` as JSON text, system columns left out, ordered by `order`.
    pub async fn rows_in(&self, schema: &str, table: &str, order: &str) -> Vec<String> {
        let sql = format!(
            "SELECT (to_jsonb(cdp_row__) - '_cdp_op' - '_cdp_source' - '_cdp_synced_at'
                     - '_cdp_record_hash' - '_cdp_lineage_id')::text
             FROM {schema}.{table} cdp_row__ ORDER BY {order}"
        );
        self.texts(&sql).await
    }

    /// The rows of `table` of the test's schema as JSON text, system columns left out.
    pub async fn rows(&self, table: &str, order: &str) -> Vec<String> {
        self.rows_in(&self.schema, table, order).await
    }

    /// Every column, system columns included, as JSON text.
    pub async fn raw_rows(&self, table: &str, order: &str) -> Vec<String> {
        let sql = format!(
            "SELECT to_jsonb(t)::text FROM {} t ORDER BY {order}",
            self.table(table)
        );
        self.texts(&sql).await
    }

    async fn texts(&self, sql: &str) -> Vec<String> {
        self.client
            .query(sql, &[])
            .await
            .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let schema = self.schema.clone();
        // Drop runs inside the test's runtime, where blocking on another would panic: do
        // the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
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

/// A plain client to the test server; panics if it cannot be reached. Must be called
/// inside a tokio runtime, which drives the connection.
pub async fn connect() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test server at {}: {e}", url()));
    tokio::spawn(connection);
    client
}
