//! [`PostgresIdentityLog`]: the identity log in a PostgreSQL table shared by workers.

use std::fmt;
use std::sync::Arc;

use cdp_identity::error::BackendErrorKind;
use cdp_identity::{Error, IdentityLog, LogEvent, LogRecord, Result};
use cdp_postgres::{PostgresConnection, qualified};
use tokio_postgres::error::SqlState;

use super::worker::{Worker, create_tables};
use super::{PostgresIdentityOptions, backend, pg_error};

const NAME: &str = "postgres identity log";

/// Records per `INSERT` statement; one append may hold a whole graph's history.
const CHUNK: usize = 5_000;

/// An identity log in a PostgreSQL table, so that workers on several machines share one
/// history.
///
/// The table `<schema>.<prefix>identity_log` holds one row per record: `seq bigint primary
/// key`, `kind text` and `at bigint` (UTC milliseconds) for queries, `event jsonb` (the
/// record as [`LogEvent`] JSON, what [`load`](IdentityLog::load) reads back) and
/// `appended_at timestamptz`.
///
/// An append is one transaction. It is optimistic: when the log already holds records at
/// the sequence numbers being appended (another writer flushed first), the append fails
/// with [`BackendErrorKind::Conflict`] and writes nothing; when they are the very records
/// being appended (a retry after a commit whose answer was lost), they are skipped. Two
/// writers racing for the same sequence numbers meet on the primary key: one commits, the
/// other gets the conflict. The log thus never forks and never has a gap.
///
/// Calls block until the database answered; they run on a thread of the handle's own (see
/// the [module docs](super)), so they may be made from async code.
pub struct PostgresIdentityLog {
    worker: Worker,
    table: Arc<str>,
    sql: Arc<Sql>,
}

/// The statements of one log, built once from its table name.
#[derive(Debug)]
struct Sql {
    len: String,
    insert: String,
    overlap: String,
    load: String,
}

impl Sql {
    fn new(table: &str) -> Sql {
        Sql {
            // Sequence numbers are contiguous from 0: MAX reads the primary key's last
            // entry where COUNT would scan the table.
            len: format!("SELECT COALESCE(max(seq) + 1, 0) FROM {table}"),
            insert: format!(
                "INSERT INTO {table} (seq, kind, at, event)
                 SELECT seq, kind, at, event::jsonb
                 FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[])
                      AS r(seq, kind, at, event)"
            ),
            overlap: format!(
                "SELECT event::text FROM {table} WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            ),
            load: format!("SELECT seq, event::text FROM {table} ORDER BY seq"),
        }
    }
}

impl fmt::Debug for PostgresIdentityLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresIdentityLog")
            .field("table", &self.table)
            .finish()
    }
}

impl PostgresIdentityLog {
    /// Connects and creates the schema and the log table if they are missing.
    pub fn open(
        connection: &PostgresConnection,
        options: &PostgresIdentityOptions,
    ) -> Result<Self> {
        let table: Arc<str> = qualified(&options.schema, &options.table("identity_log")?).into();
        let worker = Worker::start(NAME, connection)?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                 seq bigint PRIMARY KEY CHECK (seq >= 0),
                 kind text NOT NULL,
                 at bigint NOT NULL,
                 event jsonb NOT NULL,
                 appended_at timestamptz NOT NULL DEFAULT now()
             )"
        );
        let schema = options.schema.clone();
        let tables = vec![(table.to_string(), ddl)];
        worker
            .run(async move |conn| create_tables(&mut conn.client, NAME, &schema, &tables).await)?;
        let sql = Arc::new(Sql::new(&table));
        Ok(PostgresIdentityLog { worker, table, sql })
    }

    /// The log table, schema-qualified and quoted, for queries of its own.
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// The records of one append, as the columns of the `INSERT`.
struct Columns {
    seq: Vec<i64>,
    kind: Vec<&'static str>,
    at: Vec<i64>,
    event: Vec<String>,
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq)
        .map_err(|_| Error::InvalidOperation(format!("log seq {seq} is beyond PostgreSQL bigint")))
}

fn conflict(what: String) -> Error {
    backend(
        NAME,
        BackendErrorKind::Conflict,
        format!(
            "another writer appended first: {what}; nothing was appended. Rebuild the graph \
             from the log before writing again"
        ),
    )
}

impl IdentityLog for PostgresIdentityLog {
    fn append(&mut self, records: &[LogRecord]) -> Result<()> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        for (i, r) in records.iter().enumerate() {
            if r.seq != first.seq + i as u64 {
                return Err(Error::InvalidOperation(format!(
                    "log records must be consecutive: seq {} follows seq {}",
                    r.seq,
                    first.seq + i as u64 - 1
                )));
            }
        }
        let first = seq_i64(first.seq)?;
        seq_i64(first as u64 + records.len() as u64)?;
        let mut columns = Columns {
            seq: Vec::with_capacity(records.len()),
            kind: Vec::with_capacity(records.len()),
            at: Vec::with_capacity(records.len()),
            event: Vec::with_capacity(records.len()),
        };
        for (i, r) in records.iter().enumerate() {
            columns.seq.push(first + i as i64);
            columns.kind.push(r.event.kind_name());
            columns.at.push(r.event.at());
            columns.event.push(serde_json::to_string(&r.event)?);
        }
        let events: Vec<LogEvent> = records.iter().map(|r| r.event.clone()).collect();
        let sql = self.sql.clone();
        self.worker.run(async move |conn| {
            let pg = |context: &'static str| move |e| pg_error(NAME, context, &e);
            let len_statement = conn.statement(&sql.len).await.map_err(pg("prepare"))?;
            let insert = conn.statement(&sql.insert).await.map_err(pg("prepare"))?;
            let tx = conn
                .client
                .transaction()
                .await
                .map_err(pg("begin append"))?;
            let len: i64 = tx
                .query_one(&len_statement, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(pg("read log length"))?;
            if first > len {
                return Err(Error::InvalidOperation(format!(
                    "log append must continue at seq {len}, got {first}"
                )));
            }
            // Records already there must be these very records (a retried append), or
            // they are someone else's: a conflict.
            let overlap = usize::try_from(len - first)
                .unwrap_or(usize::MAX)
                .min(events.len());
            if overlap > 0 {
                let rows = tx
                    .query(&sql.overlap, &[&first, &(first + overlap as i64)])
                    .await
                    .map_err(pg("read overlapping records"))?;
                for (row, mine) in rows.iter().zip(&events) {
                    let text: String = row.try_get(0).map_err(pg("read overlapping records"))?;
                    let theirs: LogEvent = serde_json::from_str(&text)?;
                    if &theirs != mine {
                        return Err(conflict(format!(
                            "the log holds {len} records, which differ from this writer's \
                             from seq {first} on"
                        )));
                    }
                }
            }
            let mut from = overlap;
            while from < events.len() {
                let to = (from + CHUNK).min(events.len());
                tx.execute(
                    &insert,
                    &[
                        &&columns.seq[from..to],
                        &&columns.kind[from..to],
                        &&columns.at[from..to],
                        &&columns.event[from..to],
                    ],
                )
                .await
                .map_err(|e| {
                    // A writer that appended at these numbers after our length check.
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                        conflict(format!(
                            "records at seq {len} and on, while this append ran"
                        ))
                    } else {
                        pg_error(NAME, "append", &e)
                    }
                })?;
                from = to;
            }
            tx.commit().await.map_err(pg("commit append"))
        })
    }

    fn load(&self) -> Result<Vec<LogRecord>> {
        let sql = self.sql.clone();
        let rows: Vec<(i64, String)> = self.worker.read(async move |conn| {
            let rows = conn
                .client
                .query(&sql.load, &[])
                .await
                .map_err(|e| pg_error(NAME, "load", &e))?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(|e| pg_error(NAME, "load", &e))
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for (i, (seq, text)) in rows.into_iter().enumerate() {
            if seq != i as i64 {
                return Err(backend(
                    NAME,
                    BackendErrorKind::Failed,
                    format!(
                        "the log table {} has no record at seq {i} (next is {seq}); it was \
                         altered outside the log",
                        self.table
                    ),
                ));
            }
            out.push(LogRecord {
                seq: i as u64,
                event: serde_json::from_str(&text)?,
            });
        }
        Ok(out)
    }

    fn len(&self) -> Result<u64> {
        let sql = self.sql.clone();
        let len: i64 = self.worker.read(async move |conn| {
            let statement = conn
                .statement(&sql.len)
                .await
                .map_err(|e| pg_error(NAME, "read log length", &e))?;
            conn.client
                .query_one(&statement, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| pg_error(NAME, "read log length", &e))
        })?;
        Ok(len as u64)
    }
}
