//! [`PostgresStateStore`]: pipeline state in a PostgreSQL table, shared by workers.

use std::time::Duration;

use async_trait::async_trait;
use cdp_core::{Error, Lease, LeaseGuard, PipelineState, Result, StateStore};
use cdp_postgres::{PostgresConnection, ident, pg_error, qualified};
use tokio::sync::Mutex;
use tokio_postgres::Client;

const CONNECTOR: &str = "postgres state store";
/// How often a run waiting for a lease tries again.
const LEASE_POLL: Duration = Duration::from_millis(250);

/// Keeps pipeline state in one PostgreSQL table, so workers on several machines share it.
///
/// The table (default `public.cdp_pipeline_state`) and its schema are created on first use:
/// `pipeline_id text primary key, epoch bigint, state jsonb, committed_at timestamptz`.
/// Each commit is one `INSERT … ON CONFLICT (pipeline_id) DO UPDATE` in its own
/// transaction, so a crash leaves the old state or the new one. Broken connections are
/// re-opened on the next call; their errors are transient, so the runtime retries them.
///
/// The [lease](StateStore::lease) of a pipeline is a session-level advisory lock
/// (`pg_try_advisory_lock` on a hash of the table and the pipeline id) held by a connection
/// of its own for the whole run: a second run, on this machine or another, waits or is
/// refused and told the holder's backend pid, application name and client address. The
/// server drops the lock when the holder's connection ends, however the process ends; a
/// run whose lease connection was lost stops before its next state commit.
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

/// A lease held by an advisory lock on the session of `client`.
#[derive(Debug)]
struct AdvisoryLease {
    client: Client,
    pipeline_id: String,
}

impl LeaseGuard for AdvisoryLease {
    fn check(&self) -> Result<()> {
        if self.client.is_closed() {
            return Err(Error::State(format!(
                "the connection holding the lease of pipeline `{}` was lost, so another run may \
                 have started; stopping before committing beside it",
                self.pipeline_id
            )));
        }
        Ok(())
    }
}

impl PostgresStateStore {
    /// The advisory lock key of `pipeline_id`'s lease, as SQL text hashed by the server.
    fn lease_key(&self, pipeline_id: &str) -> String {
        format!("cdp lease {} {pipeline_id}", self.table())
    }
}

#[async_trait]
impl StateStore for PostgresStateStore {
    async fn lease(&self, pipeline_id: &str, wait: Duration) -> Result<Lease> {
        let client = self.connection.connect(CONNECTOR).await?;
        let key = self.lease_key(pipeline_id);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let taken: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                    &[&key],
                )
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| pg_error(CONNECTOR, "take the pipeline's lease", e))?;
            if taken {
                return Ok(Lease::new(
                    pipeline_id,
                    AdvisoryLease {
                        client,
                        pipeline_id: pipeline_id.to_string(),
                    },
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                let holder = client
                    .query_opt(
                        "SELECT format('backend pid %s, application %L, client %s, since %s',
                                       a.pid, a.application_name,
                                       coalesce(host(a.client_addr), 'local'),
                                       date_trunc('second', a.backend_start))
                         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                           AND ((l.classid::bigint << 32) | l.objid::bigint)
                               = hashtextextended($1, 0)
                         LIMIT 1",
                        &[&key],
                    )
                    .await
                    .ok()
                    .flatten()
                    .and_then(|row| row.try_get::<_, String>(0).ok())
                    .unwrap_or_else(|| "another session".into());
                return Err(Error::Leased {
                    pipeline: pipeline_id.to_string(),
                    holder: format!("PostgreSQL {holder}"),
                    waited: wait,
                });
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

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
