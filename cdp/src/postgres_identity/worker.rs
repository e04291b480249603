//! The thread behind each handle: a single-threaded tokio runtime that owns the connection
//! and runs the jobs the synchronous trait methods send it.
//!
//! A caller blocks on a std channel for its answer, never on the runtime, so the same call
//! works from plain threads and from inside any tokio runtime (where `block_on` would
//! panic). The job queue needs no bound of its own: every caller waits for its answer
//! before it sends again, so the queue never holds more jobs than there are callers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread::JoinHandle;

use cdp_identity::error::BackendErrorKind;
use cdp_identity::{Error, Result};
use cdp_postgres::{PostgresConnection, ident};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_postgres::{Client, Statement, Transaction};

use super::{backend, connect_error, pg_error};

type Job =
    Box<dyn for<'s> FnOnce(&'s mut Session) -> Pin<Box<dyn Future<Output = ()> + 's>> + Send>;

/// An open connection and the statements prepared on it.
pub(super) struct Conn {
    pub(super) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// `sql` prepared on this connection, once: lookups then take one round trip instead
    /// of two.
    pub(super) async fn statement(
        &mut self,
        sql: &str,
    ) -> std::result::Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

/// The connection of one worker, opened on first use and again after it broke.
struct Session {
    name: &'static str,
    connection: PostgresConnection,
    conn: Option<Conn>,
}

impl Session {
    async fn conn(&mut self) -> Result<&mut Conn> {
        if self.is_broken() {
            self.conn = None;
            let client = self
                .connection
                .connect(self.name)
                .await
                .map_err(|e| connect_error(self.name, e))?;
            self.conn = Some(Conn {
                client,
                statements: HashMap::new(),
            });
        }
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(backend(
                self.name,
                BackendErrorKind::Transient,
                "no connection",
            )),
        }
    }

    fn is_broken(&self) -> bool {
        self.conn.as_ref().is_none_or(|c| c.client.is_closed())
    }
}

/// A connection on a thread of its own; see the module docs.
pub(super) struct Worker {
    name: &'static str,
    jobs: Option<UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.name)
            .field("running", &self.jobs.is_some())
            .finish()
    }
}

impl Worker {
    /// Starts the thread; the connection opens with the first job.
    pub(super) fn start(name: &'static str, connection: &PostgresConnection) -> Result<Worker> {
        let (jobs, mut queue) = unbounded_channel::<Job>();
        let (ready, started) = mpsc::sync_channel::<std::io::Result<()>>(1);
        let connection = connection.clone();
        let thread = std::thread::Builder::new()
            .name("cdp-pg-identity".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut session = Session {
                    name,
                    connection,
                    conn: None,
                };
                // Between jobs the runtime keeps driving the connection, so a connection
                // the server closed is noticed before the next job uses it.
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        job(&mut session).await;
                    }
                });
            })
            .map_err(|e| {
                backend(
                    name,
                    BackendErrorKind::Failed,
                    format!("cannot start a thread: {e}"),
                )
            })?;
        let worker = Worker {
            name,
            jobs: Some(jobs),
            thread: Some(thread),
        };
        match started.recv() {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(e)) => Err(backend(
                name,
                BackendErrorKind::Failed,
                format!("cannot start a tokio runtime: {e}"),
            )),
            Err(_) => Err(worker.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        backend(
            self.name,
            BackendErrorKind::Failed,
            "its connection thread stopped (a previous call panicked); open a new handle",
        )
    }

    fn submit<T: Send + 'static>(
        &self,
        job: impl for<'s> FnOnce(
            &'s mut Session,
            mpsc::SyncSender<Result<T>>,
        ) -> Pin<Box<dyn Future<Output = ()> + 's>>
        + Send
        + 'static,
    ) -> Result<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session| job(session, reply));
        let jobs = self.jobs.as_ref().ok_or_else(|| self.stopped())?;
        jobs.send(job).map_err(|_| self.stopped())?;
        answer.recv().map_err(|_| self.stopped())?
    }

    /// Runs `f` once on the connection and waits for its result: for writes, whose outcome
    /// is unknown when the connection breaks at commit.
    pub(super) fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(move |session, reply| {
            Box::pin(async move {
                let result = match session.conn().await {
                    Ok(conn) => f(conn).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            })
        })
    }

    /// Runs `f` and waits for its result, trying once more on a new connection when the
    /// first attempt failed because the connection broke: for reads.
    pub(super) fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: AsyncFn(&mut Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(move |session, reply| {
            Box::pin(async move {
                let mut result = match session.conn().await {
                    Ok(conn) => f(conn).await,
                    Err(e) => Err(e),
                };
                if matches!(&result, Err(e) if e.is_retryable()) && session.is_broken() {
                    result = match session.conn().await {
                        Ok(conn) => f(conn).await,
                        Err(e) => Err(e),
                    };
                }
                let _ = reply.send(result);
            })
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop; no job is in flight, since every call
        // borrows the handle until its answer came back.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates the schema and the tables that do not exist yet, in one transaction.
///
/// Concurrent `CREATE … IF NOT EXISTS` of the same object can still fail on the catalog's
/// unique indexes, so creators take turns on an advisory lock. Existing objects are looked
/// up rather than re-created, so a role without `CREATE` can open tables made for it.
pub(super) async fn create_tables(
    client: &mut Client,
    name: &'static str,
    schema: &str,
    tables: &[(String, String)],
) -> Result<()> {
    let pg = |context: &'static str| move |e: tokio_postgres::Error| pg_error(name, context, &e);
    let tx: Transaction<'_> = client
        .transaction()
        .await
        .map_err(pg("begin create tables"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('cdp identity tables', 0))",
        &[],
    )
    .await
    .map_err(pg("lock for create tables"))?;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(pg("look up schema"))?
        .is_some();
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)))
            .await
            .map_err(pg("create schema"))?;
    }
    for (table, ddl) in tables {
        let found: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(pg("look up table"))?;
        if !found {
            tx.batch_execute(ddl).await.map_err(pg("create table"))?;
        }
    }
    tx.commit().await.map_err(pg("commit create tables"))
}
