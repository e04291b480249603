//! [`PostgresStateStore`]: pipeline state in a PostgreSQL table, shared by workers.

use async_trait::async_trait;
use cdp_core::{Error, PipelineState, Result, StateStore};
use cdp_postgres::{PostgresConnection, ident, pg_error, qualified};
use tokio::sync::Mutex;
use tokio_postgres::Client;

const CONNECTOR: &str = "postgres state store";

/// Keeps pipeline state in one PostgreSQL table, so workers on several machines share it.
///
/// The table (default `public.cdp_pipeline_state`) and its schema are created on first use:
/// `pipeline_id text primary key, epoch bigint, state jsonb, committed_at timestamptz`.
/// Each commit is one `INSERT … ON CONFLICT (pipeline_id) DO UPDATE` in its own
/// transaction, so a crash leaves the old state or the new one. Broken connections are
/// re-opened on the next call; their errors are transient, so the runtime retries them.
///
/// ```no_run
/// # async fn demo() -> cdp_core::Result<()> {
/// use cdp_connectors::{PostgresConnection, PostgresStateStore};
/// use cdp_core::StateStore;
///
/// let store = PostgresStateStore::new(PostgresConnection::url("postgres://etl@db/cdp"));
/// let state = store.load("crm-to-warehouse").await?;
/// # let _ = state; Ok(()) }
/// ```
#[derive(Debug)]
pub struct PostgresStateStore {
    connection: PostgresConnection,
    schema: String,
    table: String,
    client: Mutex<Option<Client>>,
}

impl PostgresStateStore {
    /// A store in `public.cdp_pipeline_state`; nothing is opened until first use.
    pub fn new(connection: PostgresConnection) -> Self {
        PostgresStateStore {
            connection,
            schema: "public".into(),
            table: "cdp_pipeline_state".into(),
            client: Mutex::new(None),
        }
    }

    /// Keeps the state in `schema.table` instead (both created on first use).
    pub fn with_table(mut self, schema: impl Into<String>, table: impl Into<String>) -> Self {
        self.schema = schema.into();
        self.table = table.into();
        self
    }

    fn table(&self) -> String {
        qualified(&self.schema, &self.table)
    }

    /// Runs `f` on an open connection (opening it, and the table, if needed); drops the
    /// connection after a transient error so the next call starts afresh.
    async fn with_client<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
        what: &str,
    ) -> Result<T> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let client = self.connection.connect(CONNECTOR).await?;
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {};
                     CREATE TABLE IF NOT EXISTS {} (
                         pipeline_id text PRIMARY KEY,
                         epoch bigint NOT NULL,
                         state jsonb NOT NULL,
                         committed_at timestamptz NOT NULL DEFAULT now()
                     )",
                    ident(&self.schema),
                    self.table()
                ))
                .await
                .map_err(|e| pg_error(CONNECTOR, format!("create table {}", self.table()), e))?;
            *guard = Some(client);
        }
        let Some(client) = guard.as_mut() else {
            return Err(Error::State(
                "postgres state store has no connection".into(),
            ));
        };
        match f(client).await {
            Ok(value) => Ok(value),
            Err(e) => {
                let error = pg_error(CONNECTOR, what, e);
                if error.is_retryable() {
                    *guard = None;
                }
                Err(error)
            }
        }
    }
}

#[async_trait]
impl StateStore for PostgresStateStore {
    async fn load(&self, pipeline_id: &str) -> Result<PipelineState> {
        let sql = format!(
            "SELECT state::text FROM {} WHERE pipeline_id = $1",
            self.table()
        );
        let text: Option<String> = self
            .with_client(
                async |client| {
                    let row = client.query_opt(&sql, &[&pipeline_id]).await?;
                    row.map(|r| r.try_get(0)).transpose()
                },
                "load state",
            )
            .await?;
        match text {
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                Error::State(format!(
                    "state of pipeline `{pipeline_id}` is not valid JSON: {e}"
                ))
            }),
            None => Ok(PipelineState::default()),
        }
    }

    async fn commit(&self, pipeline_id: &str, state: &PipelineState) -> Result<()> {
        let text = serde_json::to_string(state)?;
        let epoch = i64::try_from(state.epoch)
            .map_err(|_| Error::State(format!("epoch {} out of range", state.epoch)))?;
        let sql = format!(
            "INSERT INTO {} (pipeline_id, epoch, state) VALUES ($1, $2, $3::text::jsonb)
             ON CONFLICT (pipeline_id) DO UPDATE
             SET epoch = excluded.epoch, state = excluded.state, committed_at = now()",
            self.table()
        );
        self.with_client(
            async |client| {
                let tx = client.transaction().await?;
                tx.execute(&sql, &[&pipeline_id, &epoch, &text]).await?;
                tx.commit().await
            },
            "commit state",
        )
        .await
    }

    async fn reset(&self, pipeline_id: &str) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE pipeline_id = $1", self.table());
        self.with_client(
            async |client| client.execute(&sql, &[&pipeline_id]).await.map(|_| ()),
            "reset state",
        )
        .await
    }
}
