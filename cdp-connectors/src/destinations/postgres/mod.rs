//! The PostgreSQL destination: tables from Arrow schemas, one transaction per flush.

mod config;
mod fit;
mod isolate;

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field};
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use cdp_core::destination::RefusedRow;
use cdp_core::record::{OP_COLUMN, RECORD_HASH_COLUMN};
use cdp_core::{
    Batch, Destination, Error, Op, RejectedRow, Result, RetryPolicy, StreamSpec, WriteOutcome,
};
use cdp_postgres::copy::normalized;
use cdp_postgres::refusal::{Declared, assignable_type};
use cdp_postgres::{
    CopyEncoder, PG_TYPE_METADATA, PgKind, PostgresConnection, RowRefusal, ident, pg_error,
    qualified,
};
use futures::SinkExt;
use tokio_postgres::Client;

pub use config::PostgresDestinationConfig;

/// Longest identifier PostgreSQL keeps; longer ones are silently truncated by the server.
const MAX_IDENTIFIER: usize = 63;
/// Bytes of COPY data gathered before they are sent.
const SEND_CHUNK: usize = 1 << 20;
/// `work_mem` for the merge of a flush (`SET LOCAL`, so for that transaction only): the
/// hash of a join between the staging table and the target; at the default 4 MB a hash of
/// 200k keys spills to disk in batches.
const MERGE_WORK_MEM: &str = "64MB";
/// The first server version with `MERGE`.
const MERGE_SINCE: u32 = 150_000;
/// Rows one flush may refuse before the flush fails instead (see
/// [`PostgresDestination::with_max_refused_rows`]).
pub const DEFAULT_MAX_REFUSED_ROWS: usize = 1000;

/// Writes streams into PostgreSQL tables, one table per stream.
///
/// - [`prepare`](Destination::prepare) creates `schema.{table_prefix}{stream}` from the
///   stream's Arrow schema, system columns included (see
///   [`types`](crate::postgres::types) for the mapping; a field read from PostgreSQL keeps
///   its declared type, so `jsonb` stays `jsonb`), with the stream's primary key, or a
///   unique `_cdp_record_hash` when it has none. A wider schema later adds the new columns
///   (`ALTER TABLE … ADD COLUMN`); columns are never dropped or retyped.
/// - [`write`](Destination::write) only checks and keeps the batch. Refused row by row (and
///   dead-lettered with the reason): rows with a null key, tombstones of streams without a
///   key, rows with a NUL byte in a string column (PostgreSQL text cannot store one: the
///   server would refuse it with SQLSTATE 22021), and rows with a value an existing column
///   would change rather than refuse (a fraction into an integer column, more decimals than
///   a `numeric`'s scale, a text longer than a `character varying(n)`, more digits of a
///   second than a `timestamp(p)`, nanoseconds): values are kept or refused, never changed.
/// - [`flush`](Destination::flush) applies everything kept since the last flush in one
///   transaction: per stream, a binary `COPY` into a temporary staging table (each key
///   once: when a key occurs more than once, its last row wins), then — under a
///   `SHARE ROW EXCLUSIVE` lock that keeps other writers of the table waiting until the
///   commit — one `MERGE` that deletes the tombstones' rows, updates rows whose content
///   changed and inserts keys the table lacks (servers before PostgreSQL 15, which lack
///   `MERGE`: a `DELETE`, an `UPDATE` and an `INSERT`; without a key: `INSERT … ON
///   CONFLICT (_cdp_record_hash) DO NOTHING`). An empty table is loaded by `COPY` straight
///   in. Rows whose record hash did not change are not rewritten, so replaying batches
///   after a crash leaves the table as it was. If the connection breaks, the transaction
///   is rolled back by the server, the error is transient, and the retried flush
///   reconnects and applies the same rows again: a batch is committed whole or not at all.
/// - When PostgreSQL refuses a flush for its data (a `CHECK`, `NOT NULL` or `UNIQUE`
///   constraint, a value out of a column's range: SQLSTATE classes 22 and 23), the rows it
///   refuses are found by splitting the flush under savepoints, and handed to the runtime
///   with PostgreSQL's message and SQLSTATE ([`take_refused`](Destination::take_refused))
///   to be dead-lettered; every other row lands in the same transaction and epoch, so a
///   rerun never meets the refused rows again. This costs nothing while no row is refused:
///   the flush's statements are the same. More than
///   [`max_refused_rows`](Self::with_max_refused_rows) refused rows in one flush fail it.
///
/// Streams without a primary key are appended; rows with identical content collapse into
/// one (they have the same record hash).
#[derive(Debug)]
pub struct PostgresDestination {
    name: String,
    connection: PostgresConnection,
    schema: String,
    table_prefix: String,
    preserve_source_types: bool,
    fillfactor: Option<u8>,
    retry: RetryPolicy,
    client: Option<Client>,
    /// Whether the connected server has `MERGE` (PostgreSQL 15+).
    has_merge: bool,
    /// Overrides the choice by server version (tests run the pre-15 statements on a newer
    /// server with it).
    statements: Option<Statements>,
    schema_created: bool,
    tables: HashMap<String, Table>,
    /// Batches written since the last flush, in arrival order.
    pending: Vec<(String, RecordBatch)>,
    flushes: u64,
    /// Rows the last flush refused, until the runtime takes them.
    refused: Vec<RefusedRow>,
    max_refused_rows: usize,
}

/// What the destination knows of one stream's table.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    key: Vec<String>,
    /// Column name → declared SQL type, as the server reports it.
    columns: HashMap<String, String>,
    /// Column name → type oid.
    oids: HashMap<String, u32>,
}

impl PostgresDestination {
    /// A destination writing into schema `public` over `connection`.
    pub fn new(connection: PostgresConnection) -> Self {
        PostgresDestination {
            name: "postgres".into(),
            connection,
            schema: "public".into(),
            table_prefix: String::new(),
            preserve_source_types: true,
            fillfactor: None,
            retry: RetryPolicy::default(),
            client: None,
            has_merge: false,
            statements: None,
            schema_created: false,
            tables: HashMap::new(),
            pending: Vec::new(),
            flushes: 0,
            refused: Vec::new(),
            max_refused_rows: DEFAULT_MAX_REFUSED_ROWS,
        }
    }

    /// How many rows PostgreSQL may refuse in one flush (each dead-lettered) before the
    /// flush fails instead, the trouble then being the table rather than a few rows.
    /// Default [`DEFAULT_MAX_REFUSED_ROWS`].
    pub fn with_max_refused_rows(mut self, rows: usize) -> Self {
        self.max_refused_rows = rows;
        self
    }

    /// Sets the instance name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Writes into `schema` (created if missing) instead of `public`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Prefixes every table name, e.g. `crm_`.
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }

    /// Whether new columns take the PostgreSQL type recorded in a field's
    /// [`PG_TYPE_METADATA`] (on by default) or always the type mapped from Arrow.
    pub fn with_preserve_source_types(mut self, preserve: bool) -> Self {
        self.preserve_source_types = preserve;
        self
    }

    /// Creates tables with this `fillfactor` (10–100; PostgreSQL's default is 100). Space
    /// left free in each page lets an update of a changed row stay on its page without a
    /// new index entry (a HOT update), which roughly halves the cost of upserts that
    /// rewrite many rows, at the price of a larger table. Applies to tables this destination
    /// creates; for an existing table use `ALTER TABLE … SET (fillfactor = N)`.
    pub fn with_fillfactor(mut self, fillfactor: u8) -> Self {
        self.fillfactor = Some(fillfactor);
        self
    }

    /// How creating and altering tables is retried on transient errors (writes and
    /// flushes are retried by the runtime).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The (unquoted) table a stream is written to.
    pub fn table_name(&self, stream: &str) -> String {
        format!("{}{stream}", self.table_prefix)
    }

    async fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = self.connection.connect(&self.name).await?;
            // Staging tables are temporary: give them room in memory (the default 8 MB
            // spills a large flush to disk). Only settable before the first temp table.
            let replies = client
                .simple_query("SET temp_buffers = '256MB'; SHOW server_version_num")
                .await
                .map_err(|e| pg_error(&self.name, "session settings", e))?;
            let version = replies.iter().find_map(|reply| match reply {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    row.get(0).and_then(|v| v.parse::<u32>().ok())
                }
                _ => None,
            });
            self.has_merge = version.is_some_and(|v| v >= MERGE_SINCE);
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| Error::external("postgres", "no connection"))
    }

    /// Forgets the connection after a transient error, so the next attempt reconnects.
    fn failed(&mut self, error: Error) -> Error {
        if error.is_retryable() {
            self.client = None;
        }
        error
    }

    /// The SQL type a new column for `field` gets.
    fn column_type(&self, stream: &str, field: &Field) -> Result<String> {
        let kind = PgKind::from_arrow(field.data_type()).ok_or_else(|| Error::Schema {
            stream: stream.to_string(),
            message: format!(
                "column `{}` has type {}, which the PostgreSQL destination cannot write",
                field.name(),
                field.data_type()
            ),
        })?;
        let textual = match &kind {
            PgKind::Text => true,
            PgKind::Array(element) => **element == PgKind::Text,
            _ => false,
        };
        if self.preserve_source_types
            && textual
            && let Some(declared) = field.metadata().get(PG_TYPE_METADATA)
        {
            return Ok(declared.clone());
        }
        Ok(kind.sql_type())
    }

    async fn prepare_once(&mut self, stream: &StreamSpec) -> Result<Table> {
        let name = self.table_name(&stream.name);
        let schema = stream.schema.clone();
        check_identifier(&stream.name, &name, "table")?;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            check_identifier(&stream.name, field.name(), "column")?;
            columns.push((field.name().clone(), self.column_type(&stream.name, field)?));
        }
        for key in &stream.primary_key {
            if schema.column_with_name(key).is_none() {
                return Err(Error::Schema {
                    stream: stream.name.clone(),
                    message: format!("primary key column `{key}` is not in the schema"),
                });
            }
        }
        let table = qualified(&self.schema, &name);
        let connector = self.name.clone();
        let create_schema = !self.schema_created;
        let schema_sql = format!("CREATE SCHEMA IF NOT EXISTS {}", ident(&self.schema));
        let mut create = format!("CREATE TABLE IF NOT EXISTS {table} (");
        for (column, sql_type) in &columns {
            create.push_str(&format!("{} {sql_type}, ", ident(column)));
        }
        if stream.primary_key.is_empty() {
            if schema.column_with_name(RECORD_HASH_COLUMN).is_some() {
                create.push_str(&format!("UNIQUE ({}))", ident(RECORD_HASH_COLUMN)));
            } else {
                create.truncate(create.len() - 2);
                create.push(')');
            }
        } else {
            let key: Vec<String> = stream.primary_key.iter().map(|k| ident(k)).collect();
            create.push_str(&format!("PRIMARY KEY ({}))", key.join(", ")));
        }
        if let Some(fillfactor) = self.fillfactor {
            if !(10..=100).contains(&fillfactor) {
                return Err(Error::Config(format!(
                    "{}: fillfactor must be between 10 and 100, got {fillfactor}",
                    self.name
                )));
            }
            create.push_str(&format!(" WITH (fillfactor = {fillfactor})"));
        }
        let client = self.client().await?;
        if create_schema {
            client
                .batch_execute(&schema_sql)
                .await
                .map_err(|e| pg_error(&connector, "create schema", e))?;
        }
        client
            .batch_execute(&create)
            .await
            .map_err(|e| pg_error(&connector, format!("create table {table}"), e))?;
        let (mut existing, mut oids) = table_columns(client, &table, &connector).await?;
        let mut added = false;
        for (column, sql_type) in &columns {
            if !existing.contains_key(column) {
                tracing::info!(table = %table, column = %column, sql_type = %sql_type, "adding column");
                client
                    .batch_execute(&format!(
                        "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {sql_type}",
                        ident(column)
                    ))
                    .await
                    .map_err(|e| {
                        pg_error(&connector, format!("add column {column} to {table}"), e)
                    })?;
                added = true;
            }
        }
        if added {
            (existing, oids) = table_columns(client, &table, &connector).await?;
        }
        self.schema_created = true;
        Ok(Table {
            name,
            key: stream.primary_key.clone(),
            columns: existing,
            oids,
        })
    }

    /// Applies every pending batch in one transaction; if PostgreSQL refuses rows, applies
    /// all but those (see [`isolate`]) and keeps them for [`Destination::take_refused`].
    async fn apply(&mut self) -> Result<()> {
        self.flushes += 1;
        let flush = self.flushes;
        let connector = self.name.clone();
        let schema = self.schema.clone();
        // Streams in order of first appearance, each with its batches in arrival order.
        let mut order: Vec<&str> = Vec::new();
        let mut by_stream: HashMap<&str, Vec<&RecordBatch>> = HashMap::new();
        for (stream, batch) in &self.pending {
            by_stream
                .entry(stream.as_str())
                .or_insert_with(|| {
                    order.push(stream.as_str());
                    Vec::new()
                })
                .push(batch);
        }
        let mut plans = Vec::with_capacity(order.len());
        let statements = self.statements.unwrap_or(if self.has_merge {
            Statements::Merge
        } else {
            Statements::Separate
        });
        for (index, stream) in order.iter().enumerate() {
            let table = self.tables.get(*stream).ok_or_else(|| Error::Schema {
                stream: stream.to_string(),
                message: "written before it was prepared".into(),
            })?;
            let batches = &by_stream[stream];
            plans.push((
                plan(
                    stream,
                    table,
                    &schema,
                    batches,
                    format!("_cdp_stage_{flush}_{index}"),
                    statements,
                )?,
                *stream,
                qualified(&schema, &table.name),
            ));
        }
        let Some(client) = self.client.as_mut().filter(|c| !c.is_closed()) else {
            return Err(Error::transient(
                connector,
                "connection closed before the flush",
            ));
        };
        let refusal = match apply_all(client, &plans, &by_stream, &connector).await {
            Ok(()) => return Ok(()),
            Err(Failure::Other(e)) => return Err(e),
            Err(Failure::Rows(refusal)) => refusal,
        };
        // The failed transaction was rolled back when it was dropped.
        tracing::warn!(destination = %connector, %refusal,
            "PostgreSQL refused rows of the flush; finding them, the other rows still land");
        let tx = client
            .transaction()
            .await
            .map_err(|e| pg_error(&connector, "begin", e))?;
        let refused =
            isolate::apply(&tx, &plans, &by_stream, &connector, self.max_refused_rows).await?;
        if let Err(e) = tx.commit().await {
            return Err(match RowRefusal::of(&e) {
                Some(refusal) => {
                    let tables: Vec<&str> = plans.iter().map(|(_, _, t)| t.as_str()).collect();
                    isolate::refused_at_commit(&connector, &tables.join(", "), &refusal)
                }
                None => pg_error(&connector, "commit", e),
            });
        }
        tracing::warn!(destination = %connector, rows = refused.len(),
            "PostgreSQL refused rows; they go to the dead letters");
        self.refused.extend(refused);
        Ok(())
    }
}

/// Why a flush's statements failed.
#[derive(Debug)]
enum Failure {
    /// The server refused the rows (or some of them); others may go through.
    Rows(RowRefusal),
    /// Anything else: the flush fails (and is retried if the error is transient).
    Other(Error),
}

impl Failure {
    fn of(connector: &str, context: impl Into<String>, e: tokio_postgres::Error) -> Failure {
        match RowRefusal::of(&e) {
            Some(refusal) => Failure::Rows(refusal),
            None => Failure::Other(pg_error(connector, context, e)),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

/// The flush as one transaction: per stream, a `COPY` straight into an empty table, or into
/// a staging table and a merge.
async fn apply_all(
    client: &mut Client,
    plans: &[(Plan, &str, String)],
    by_stream: &HashMap<&str, Vec<&RecordBatch>>,
    connector: &str,
) -> Result<(), Failure> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| pg_error(connector, "begin", e))?;
    for (plan, stream, _) in plans {
        let mut direct = None;
        if let Some(d) = &plan.direct {
            tx.batch_execute(&d.lock)
                .await
                .map_err(|e| pg_error(connector, format!("lock the table of {stream}"), e))?;
            let empty: bool = tx
                .query_one(&d.is_empty, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| pg_error(connector, format!("look into {stream}"), e))?;
            if empty {
                direct = Some(d.copy.as_str());
            }
        }
        let batches = &by_stream[stream];
        if let Some(copy) = direct {
            // An empty table: no row to update or delete, and the keys are unique
            // already, so the upserts go straight in and the tombstones are moot.
            let keep = upserts_only(batches, &plan.keep)?;
            copy_rows(&tx, copy, plan, batches, &keep, stream, connector).await?;
            continue;
        }
        tx.batch_execute(&plan.create_staging)
            .await
            .map_err(|e| pg_error(connector, format!("create staging table for {stream}"), e))?;
        copy_rows(
            &tx, &plan.copy, plan, batches, &plan.keep, stream, connector,
        )
        .await?;
        tx.batch_execute(&plan.merge)
            .await
            .map_err(|e| Failure::of(connector, format!("merge rows of {stream}"), e))?;
    }
    tx.commit()
        .await
        .map_err(|e| Failure::of(connector, "commit", e))
}

/// Streams `batches` (the rows `keep` selects) as binary COPY through `copy`.
async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    copy: &str,
    plan: &Plan,
    batches: &[&RecordBatch],
    keep: &[Option<Vec<bool>>],
    stream: &str,
    connector: &str,
) -> Result<(), Failure> {
    let failed = |e| Failure::of(connector, format!("copy rows of {stream}"), e);
    let sink = tx.copy_in::<_, bytes::Bytes>(copy).await.map_err(failed)?;
    let mut sink = std::pin::pin!(sink);
    let mut encoder = CopyEncoder::new(plan.columns.clone(), plan.types.clone());
    for (batch, keep) in batches.iter().zip(keep) {
        encoder
            .write(batch, keep.as_deref())
            .map_err(|e| Error::Schema {
                stream: stream.to_string(),
                message: e,
            })?;
        if encoder.buffered() >= SEND_CHUNK {
            sink.send(encoder.take()).await.map_err(failed)?;
        }
    }
    sink.send(encoder.finish()).await.map_err(failed)?;
    sink.as_mut().finish().await.map_err(failed)?;
    Ok(())
}

/// `keep` narrowed to upserts: the rows of an empty table's first load.
fn upserts_only(
    batches: &[&RecordBatch],
    keep: &[Option<Vec<bool>>],
) -> Result<Vec<Option<Vec<bool>>>> {
    batches
        .iter()
        .zip(keep)
        .map(|(batch, keep)| {
            let Some(ops) = op_column(batch)? else {
                return Ok(keep.clone());
            };
            if ops.values().iter().all(|&op| op == Op::Upsert as u8) {
                return Ok(keep.clone());
            }
            Ok(Some(
                (0..batch.num_rows())
                    .map(|i| ops.value(i) == Op::Upsert as u8 && keep.as_ref().is_none_or(|k| k[i]))
                    .collect(),
            ))
        })
        .collect()
}

/// Checks an identifier fits PostgreSQL's limit, which it would otherwise truncate silently.
fn check_identifier(stream: &str, name: &str, what: &str) -> Result<()> {
    if name.len() > MAX_IDENTIFIER {
        return Err(Error::Schema {
            stream: stream.to_string(),
            message: format!(
                "{what} name `{name}` is longer than PostgreSQL's {MAX_IDENTIFIER} bytes"
            ),
        });
    }
    Ok(())
}

/// The columns of `table` (quoted, qualified) with their declared types.
async fn table_columns(
    client: &Client,
    table: &str,
    connector: &str,
) -> Result<(HashMap<String, String>, HashMap<String, u32>)> {
    let rows = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod), atttypid FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&table],
        )
        .await
        .map_err(|e| pg_error(connector, format!("columns of {table}"), e))?;
    let mut columns = HashMap::with_capacity(rows.len());
    let mut oids = HashMap::with_capacity(rows.len());
    for row in &rows {
        let read =
            |row: &tokio_postgres::Row| -> Result<(String, String, u32), tokio_postgres::Error> {
                Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            };
        let (name, declared, oid) =
            read(row).map_err(|e| pg_error(connector, format!("columns of {table}"), e))?;
        oids.insert(name.clone(), oid);
        columns.insert(name, declared);
    }
    Ok((columns, oids))
}

/// The SQL of one stream's part of a flush.
#[derive(Debug)]
struct Plan {
    columns: Vec<String>,
    types: Vec<DataType>,
    /// Per batch, the rows to send (`None`: all).
    keep: Vec<Option<Vec<bool>>>,
    create_staging: String,
    /// Empties the staging table between the attempts of an isolation.
    truncate_staging: String,
    copy: String,
    merge: String,
    /// For keyed streams whose column types match the encoding exactly: a `COPY` straight
    /// into the table, used when the table is empty (an initial load).
    direct: Option<Direct>,
}

/// The empty-table fast path of a keyed stream.
#[derive(Debug)]
struct Direct {
    lock: String,
    is_empty: String,
    copy: String,
}

/// How a keyed stream's staged rows are merged into its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statements {
    /// One `MERGE` (PostgreSQL 15+).
    Merge,
    /// `DELETE`, `UPDATE` and `INSERT … WHERE NOT EXISTS`, for older servers.
    Separate,
}

/// The given conditions joined by `AND`; `None` if there are none.
fn conditions<const N: usize>(parts: [Option<String>; N]) -> Option<String> {
    let parts: Vec<String> = parts.into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join(" AND "))
}

/// The batch's `_cdp_op` column, if it has one.
fn op_column(batch: &RecordBatch) -> Result<Option<&arrow::array::UInt8Array>> {
    let Some(ops) = batch.column_by_name(OP_COLUMN) else {
        return Ok(None);
    };
    let ops = ops
        .as_any()
        .downcast_ref::<arrow::array::UInt8Array>()
        .ok_or_else(|| Error::Schema {
            stream: String::new(),
            message: format!("{OP_COLUMN} must be UInt8"),
        })?;
    Ok(Some(ops))
}

/// Whether any row that will be staged is other than an upsert (a tombstone).
fn any_but_upserts(batches: &[&RecordBatch], keep: &[Option<Vec<bool>>]) -> Result<bool> {
    for (batch, keep) in batches.iter().zip(keep) {
        let Some(ops) = op_column(batch)? else {
            continue;
        };
        let upsert = Op::Upsert as u8;
        if ops
            .values()
            .iter()
            .enumerate()
            .any(|(i, &op)| op != upsert && keep.as_ref().is_none_or(|k| k[i]))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn plan(
    stream: &str,
    table: &Table,
    schema: &str,
    batches: &[&RecordBatch],
    staging: String,
    statements: Statements,
) -> Result<Plan> {
    let schema_error = |message: String| Error::Schema {
        stream: stream.to_string(),
        message,
    };
    // Union of the batches' columns, in order of first appearance; the last type wins.
    let mut columns: Vec<String> = Vec::new();
    let mut types: HashMap<String, DataType> = HashMap::new();
    for batch in batches {
        for field in batch.schema().fields() {
            if types
                .insert(field.name().clone(), field.data_type().clone())
                .is_none()
            {
                columns.push(field.name().clone());
            }
        }
    }
    let types: Vec<DataType> = columns.iter().map(|c| normalized(&types[c])).collect();
    let mut staging_columns = Vec::with_capacity(columns.len());
    let mut select = Vec::with_capacity(columns.len());
    let mut exact = true;
    for (column, data_type) in columns.iter().zip(&types) {
        let kind = PgKind::from_arrow(data_type).ok_or_else(|| {
            schema_error(format!(
                "column `{column}` has type {data_type}, which cannot be written"
            ))
        })?;
        let target = table.columns.get(column).ok_or_else(|| {
            schema_error(format!("column `{column}` is not in table {}", table.name))
        })?;
        exact &= table.oids.get(column) == Some(&kind.oid());
        staging_columns.push(format!("{} {}", ident(column), kind.sql_type()));
        // Cast to the type without its length (`character varying`, not `(5)`): the
        // assignment then refuses a longer value, where an explicit cast would cut it.
        select.push(format!("s.{}::{}", ident(column), assignable_type(target)));
    }
    let quoted: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let target = qualified(schema, &table.name);
    let staging_ident = ident(&staging);
    let create_staging = format!(
        "CREATE TEMP TABLE {staging_ident} ({}) ON COMMIT DROP",
        staging_columns.join(", ")
    );
    let copy = format!(
        "COPY {staging_ident} ({}) FROM STDIN (FORMAT binary)",
        quoted.join(", ")
    );
    let has_op = columns.iter().any(|c| c == OP_COLUMN);
    let upserts = if has_op {
        format!(" WHERE s.{} = {}", ident(OP_COLUMN), Op::Upsert as u8)
    } else {
        String::new()
    };
    let insert = format!(
        "INSERT INTO {target} ({}) SELECT {} FROM {staging_ident} s{upserts}",
        quoted.join(", "),
        select.join(", ")
    );
    let mut keep = vec![None; batches.len()];
    let merge = if table.key.is_empty() {
        if columns.iter().any(|c| c == RECORD_HASH_COLUMN) {
            format!(
                "{insert} ON CONFLICT ({}) DO NOTHING",
                ident(RECORD_HASH_COLUMN)
            )
        } else {
            insert
        }
    } else {
        keep = last_per_key(stream, &table.key, batches)?;
        // Without tombstones every staged row is an upsert and no statement tests the op.
        let deletes = has_op && any_but_upserts(batches, &keep)?;
        // Keys are unique in the staging table (last row wins), and the lock keeps other
        // writers out until commit, so no statement needs `ON CONFLICT`'s speculative
        // insertion (which also locks, and so writes, every row it leaves unchanged).
        // `MERGE` needs no statistics of the staging table (an `ANALYZE` cost a tenth of a
        // 200k-row merge): the planner sizes it by its pages, and the op column is tested
        // in the `WHEN` clauses, not in the join.
        let op_is = |op: Op| format!("s.{} = {}", ident(OP_COLUMN), op as u8);
        let upserts_only = deletes.then(|| op_is(Op::Upsert));
        let key_match: Vec<String> = table
            .key
            .iter()
            .map(|k| {
                let declared = assignable_type(&table.columns[k]);
                format!("t.{0} = s.{0}::{declared}", ident(k))
            })
            .collect();
        let key_match = key_match.join(" AND ");
        let updates: Vec<String> = columns
            .iter()
            .zip(&select)
            .filter(|(c, _)| !table.key.contains(c))
            .map(|(c, value)| format!("{} = {value}", ident(c)))
            .collect();
        let changed = columns.iter().any(|c| c == RECORD_HASH_COLUMN).then(|| {
            format!(
                "t.{hash} IS DISTINCT FROM s.{hash}::{declared}",
                hash = ident(RECORD_HASH_COLUMN),
                declared = table.columns[RECORD_HASH_COLUMN]
            )
        });
        let update_when = conditions([upserts_only.clone(), changed]);
        let mut merge = format!(
            "LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE;\n\
             SET LOCAL work_mem = '{MERGE_WORK_MEM}';\n"
        );
        match statements {
            Statements::Merge => {
                // One join of staging and table for the deletes, updates and inserts.
                merge.push_str(&format!(
                    "MERGE INTO {target} AS t USING {staging_ident} AS s ON {key_match}"
                ));
                if deletes {
                    merge.push_str(&format!(
                        "\nWHEN MATCHED AND {} THEN DELETE",
                        op_is(Op::Delete)
                    ));
                }
                if !updates.is_empty() {
                    merge.push_str(&format!(
                        "\nWHEN MATCHED{} THEN UPDATE SET {}",
                        update_when
                            .as_ref()
                            .map(|c| format!(" AND {c}"))
                            .unwrap_or_default(),
                        updates.join(", ")
                    ));
                }
                merge.push_str(&format!(
                    "\nWHEN NOT MATCHED{} THEN INSERT ({}) VALUES ({})",
                    upserts_only
                        .as_ref()
                        .map(|c| format!(" AND {c}"))
                        .unwrap_or_default(),
                    quoted.join(", "),
                    select.join(", ")
                ));
            }
            Statements::Separate => {
                if deletes {
                    // Here the op column filters each statement: the planner needs its
                    // statistics to pick the joins.
                    merge.push_str(&format!(
                        "ANALYZE {staging_ident};\n\
                         DELETE FROM {target} AS t USING {staging_ident} s \
                         WHERE {} AND {key_match};\n",
                        op_is(Op::Delete)
                    ));
                }
                if !updates.is_empty() {
                    merge.push_str(&format!(
                        "UPDATE {target} AS t SET {} FROM {staging_ident} s WHERE {key_match}{};\n",
                        updates.join(", "),
                        update_when
                            .as_ref()
                            .map(|c| format!(" AND {c}"))
                            .unwrap_or_default(),
                    ));
                }
                let missing = format!("NOT EXISTS (SELECT 1 FROM {target} t WHERE {key_match})");
                merge.push_str(&format!(
                    "INSERT INTO {target} ({}) SELECT {} FROM {staging_ident} s WHERE {}",
                    quoted.join(", "),
                    select.join(", "),
                    conditions([upserts_only, Some(missing)]).unwrap_or_default()
                ));
            }
        }
        merge
    };
    let direct = (exact && !table.key.is_empty()).then(|| Direct {
        lock: format!("LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE"),
        is_empty: format!("SELECT NOT EXISTS (SELECT 1 FROM {target})"),
        copy: format!(
            "COPY {target} ({}) FROM STDIN (FORMAT binary)",
            quoted.join(", ")
        ),
    });
    Ok(Plan {
        columns,
        types,
        keep,
        create_staging,
        truncate_staging: format!("TRUNCATE {staging_ident}"),
        copy,
        merge,
        direct,
    })
}

/// Marks, per batch, the rows that are the last occurrence of their key (so the staging
/// table holds each key once); `None` where a batch keeps every row.
fn last_per_key(
    stream: &str,
    key: &[String],
    batches: &[&RecordBatch],
) -> Result<Vec<Option<Vec<bool>>>> {
    let key_columns = |batch: &RecordBatch| -> Result<Vec<ArrayRef>> {
        key.iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .cloned()
                    .ok_or_else(|| Error::Schema {
                        stream: stream.to_string(),
                        message: format!("batch lacks primary key column `{k}`"),
                    })
            })
            .collect()
    };
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let fields = key_columns(first)?
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = batches
        .iter()
        .map(|b| {
            converter
                .convert_columns(&key_columns(b)?)
                .map_err(Error::from)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut keep: Vec<Option<Vec<bool>>> = vec![None; batches.len()];
    let mut last = HashMap::with_capacity(rows.iter().map(|r| r.num_rows()).sum());
    for (b, batch_rows) in rows.iter().enumerate() {
        for i in 0..batch_rows.num_rows() {
            if let Some((pb, pi)) = last.insert(batch_rows.row(i), (b, i)) {
                let mask: &mut Vec<bool> =
                    keep[pb].get_or_insert_with(|| vec![true; batches[pb].num_rows()]);
                mask[pi] = false;
            }
        }
    }
    Ok(keep)
}

/// Rows of `batch` the destination refuses: a null key, a tombstone without a key, or text
/// with a NUL byte.
fn refused(batch: &Batch, key: &[String]) -> Result<Vec<RejectedRow>> {
    let mut rejected = Vec::new();
    if key.is_empty() {
        for (row, op) in batch.ops()?.into_iter().enumerate() {
            if op == Op::Delete {
                rejected.push(RejectedRow {
                    row,
                    reason: "a delete (tombstone) needs a primary key; the stream has none".into(),
                });
            }
        }
    }
    for k in key {
        let Some(column) = batch.data.column_by_name(k) else {
            return Err(Error::Schema {
                stream: batch.stream.to_string(),
                message: format!("batch lacks primary key column `{k}`"),
            });
        };
        if column.null_count() > 0 {
            for row in 0..column.len() {
                if column.is_null(row) && !rejected.iter().any(|r: &RejectedRow| r.row == row) {
                    rejected.push(RejectedRow {
                        row,
                        reason: format!("primary key column `{k}` is null"),
                    });
                }
            }
        }
    }
    refuse_nul_bytes(&batch.data, &mut rejected);
    rejected.sort_by_key(|r| r.row);
    Ok(rejected)
}

/// Refuses the rows with a NUL byte in a string column: PostgreSQL text (and every type read
/// from text) cannot hold one, and in the flush's COPY it fails the whole transaction, so one
/// such row would stop the pipeline. Each row is refused once, for its first such column.
fn refuse_nul_bytes(batch: &RecordBatch, rejected: &mut Vec<RejectedRow>) {
    fn rows<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<usize> {
        values
            .enumerate()
            .filter(|(_, v)| v.is_some_and(|v| v.as_bytes().contains(&0)))
            .map(|(row, _)| row)
            .collect()
    }
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        // The byte buffers are scanned first: a NUL is rare, and then no row is visited.
        let nul = match column.data_type() {
            DataType::Utf8 if column.as_string::<i32>().values().contains(&0) => {
                rows(column.as_string::<i32>().iter())
            }
            DataType::LargeUtf8 if column.as_string::<i64>().values().contains(&0) => {
                rows(column.as_string::<i64>().iter())
            }
            DataType::Utf8View => rows(column.as_string_view().iter()),
            _ => continue,
        };
        for row in nul {
            if !rejected.iter().any(|r| r.row == row) {
                rejected.push(RejectedRow {
                    row,
                    reason: format!(
                        "column `{}` holds a NUL byte, which PostgreSQL text cannot store \
                         (the server refuses it with SQLSTATE 22021)",
                        field.name()
                    ),
                });
            }
        }
    }
}

#[async_trait]
impl Destination for PostgresDestination {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&mut self) -> Result<()> {
        let client = self.connection.connect(&self.name).await?;
        client
            .batch_execute("SELECT 1")
            .await
            .map_err(|e| pg_error(&self.name, "check", e))
    }

    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        let retry = self.retry.clone();
        let what = format!("prepare {}", stream.name);
        let mut attempts = retry.start(&what);
        let table = loop {
            match self.prepare_once(stream).await {
                Ok(table) => break table,
                Err(e) => {
                    let e = self.failed(e);
                    attempts.backoff(e).await?;
                }
            }
        };
        self.tables.insert(stream.name.clone(), table);
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        let table = self
            .tables
            .get(batch.stream.as_ref())
            .ok_or_else(|| Error::Schema {
                stream: batch.stream.to_string(),
                message: "written before it was prepared".into(),
            })?;
        let mut rejected = refused(batch, &table.key)?;
        fit::refuse_misfits(
            &batch.data,
            |column| {
                let sql_type = table.columns.get(column)?;
                Some((sql_type.clone(), Declared::parse(sql_type)))
            },
            &mut rejected,
        );
        rejected.sort_by_key(|r| r.row);
        let data = if rejected.is_empty() {
            batch.data.clone()
        } else {
            let mut keep = vec![true; batch.num_rows()];
            for r in &rejected {
                keep[r.row] = false;
            }
            arrow::compute::filter_record_batch(&batch.data, &keep.into())?
        };
        if data.num_rows() > 0 {
            self.pending.push((batch.stream.to_string(), data));
        }
        Ok(WriteOutcome { rejected })
    }

    async fn flush(&mut self, _epoch: u64) -> Result<()> {
        // Refusals not taken belong to a flush whose epoch is being retried or abandoned.
        self.refused.clear();
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.client().await {
            return Err(self.failed(e));
        }
        match self.apply().await {
            Ok(()) => {
                self.pending.clear();
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    fn take_refused(&mut self) -> Vec<RefusedRow> {
        std::mem::take(&mut self.refused)
    }

    async fn close(&mut self) -> Result<()> {
        self.client = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, UInt8Array};
    use arrow::datatypes::Schema;

    use super::*;

    fn batch(ids: &[i64], tag: &str, ops: &[u8]) -> Batch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(OP_COLUMN, DataType::UInt8, false),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| format!("{tag} {i}")),
                )),
                Arc::new(UInt8Array::from(ops.to_vec())),
            ],
        )
        .unwrap();
        Batch::new("accounts", data, "test").stamp().unwrap()
    }

    /// The table the destination would have found for the stamped `batch`.
    fn table_for(batch: &Batch) -> Table {
        let mut columns = HashMap::new();
        let mut oids = HashMap::new();
        for field in batch.data.schema().fields() {
            let kind = PgKind::from_arrow(field.data_type()).unwrap();
            columns.insert(field.name().clone(), kind.sql_type());
            oids.insert(field.name().clone(), kind.oid());
        }
        Table {
            name: "accounts".into(),
            key: vec!["id".into()],
            columns,
            oids,
        }
    }

    fn merge_sql(batches: &[Batch], statements: Statements) -> String {
        let table = table_for(&batches[0]);
        let data: Vec<&RecordBatch> = batches.iter().map(|b| &b.data).collect();
        plan("accounts", &table, "crm", &data, "stage".into(), statements)
            .unwrap()
            .merge
    }

    #[test]
    fn upserts_merge_in_one_statement_without_filtering_on_the_op() {
        let sql = merge_sql(&[batch(&[1, 2], "v1", &[0, 0])], Statements::Merge);
        assert!(sql.contains("MERGE INTO \"crm\".\"accounts\" AS t USING \"stage\" AS s"));
        assert!(sql.contains("WHEN MATCHED AND t.\"_cdp_record_hash\" IS DISTINCT FROM"));
        assert!(sql.contains("WHEN NOT MATCHED THEN INSERT"));
        assert!(!sql.contains("DELETE"), "{sql}");
        assert!(!sql.contains("\"_cdp_op\" = 0"), "{sql}");
        assert!(!sql.contains("ANALYZE"), "{sql}");
        assert!(sql.contains("SET LOCAL work_mem"), "{sql}");
    }

    #[test]
    fn tombstones_add_a_delete_and_keep_them_out_of_updates_and_inserts() {
        let batches = [batch(&[1, 2], "v1", &[0, 1])];
        let sql = merge_sql(&batches, Statements::Merge);
        assert!(
            sql.contains("WHEN MATCHED AND s.\"_cdp_op\" = 1 THEN DELETE"),
            "{sql}"
        );
        assert!(
            sql.contains("WHEN MATCHED AND s.\"_cdp_op\" = 0 AND t."),
            "{sql}"
        );
        assert!(
            sql.contains("WHEN NOT MATCHED AND s.\"_cdp_op\" = 0 THEN INSERT"),
            "{sql}"
        );
        // A tombstone overridden by a later upsert of its key is not staged: no delete.
        let batches = [batch(&[2], "x", &[1]), batch(&[2], "v2", &[0])];
        assert!(!merge_sql(&batches, Statements::Merge).contains("DELETE"));
    }

    #[test]
    fn text_with_a_nul_byte_is_refused_in_every_string_layout() {
        use arrow::array::{LargeStringArray, StringViewArray};

        let strings = StringArray::from(vec![Some("a\0"), Some("b"), None, Some("\0")]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(strings.clone()),
            Arc::new(LargeStringArray::from(vec![None, Some("\0"), None, None])),
            Arc::new(StringViewArray::from(vec![
                None,
                None,
                Some("long enough \0 view"),
                None,
            ])),
        ];
        let fields: Vec<Field> = ["plain", "large", "view"]
            .iter()
            .zip(&columns)
            .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
            .collect();
        let data = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut rejected = Vec::new();
        refuse_nul_bytes(&data, &mut rejected);
        let rows: Vec<(usize, &str)> = rejected
            .iter()
            .map(|r| (r.row, r.reason.split('`').nth(1).unwrap_or_default()))
            .collect();
        assert_eq!(
            rows,
            [(0, "plain"), (3, "plain"), (1, "large"), (2, "view")]
        );
        // A slice without the NUL: its buffer still holds one, its rows do not.
        let sliced = Arc::new(strings.slice(1, 2)) as ArrayRef;
        let schema = Schema::new(vec![Field::new("plain", DataType::Utf8, true)]);
        let data = RecordBatch::try_new(Arc::new(schema), vec![sliced]).unwrap();
        let mut rejected = Vec::new();
        refuse_nul_bytes(&data, &mut rejected);
        assert!(rejected.is_empty(), "{rejected:?}");
    }

    #[test]
    fn servers_before_15_get_separate_statements() {
        let sql = merge_sql(&[batch(&[1, 2], "v1", &[0, 0])], Statements::Separate);
        assert!(!sql.contains("MERGE") && !sql.contains("DELETE"), "{sql}");
        assert!(
            sql.contains("UPDATE \"crm\".\"accounts\" AS t SET"),
            "{sql}"
        );
        assert!(sql.contains("WHERE NOT EXISTS (SELECT 1 FROM"), "{sql}");
        let sql = merge_sql(&[batch(&[1, 2], "v1", &[0, 1])], Statements::Separate);
        assert!(
            sql.contains("DELETE FROM \"crm\".\"accounts\" AS t USING"),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE s.\"_cdp_op\" = 0 AND NOT EXISTS"),
            "{sql}"
        );
    }

    /// Both statement forms, run against the test server, leave the same rows.
    #[cfg(feature = "postgres-integration")]
    #[tokio::test]
    async fn merge_and_separate_statements_leave_the_same_table() {
        let url = std::env::var("CDP_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let connection = PostgresConnection::url(url).with_application_name("cdp-test-merge");
        let client = connection.connect("test").await.unwrap();
        let schema = format!("cdp_test_merge_{}", std::process::id());
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
        let flushes = [
            vec![batch(&[1, 2, 3, 4, 5], "v1", &[0; 5])],
            // 1 unchanged, 2 changed, 3 deleted, 4 changed twice (the last wins), 6 new,
            // 9 deleted though it never existed, 5 deleted then upserted again.
            vec![
                batch(&[1, 2, 3, 9, 5], "v1", &[0, 0, 1, 1, 1]),
                batch(&[2, 4, 4, 6, 5], "v2", &[0, 0, 0, 0, 0]),
            ],
        ];
        let mut tables = Vec::new();
        for (prefix, statements) in [("m_", Statements::Merge), ("s_", Statements::Separate)] {
            let mut dest = PostgresDestination::new(connection.clone())
                .with_schema(&schema)
                .with_table_prefix(prefix);
            dest.statements = Some(statements);
            let spec =
                StreamSpec::new("accounts", flushes[0][0].data.schema()).with_primary_key(["id"]);
            dest.prepare(&spec).await.unwrap();
            for (epoch, batches) in flushes.iter().enumerate() {
                for b in batches {
                    dest.write(b).await.unwrap();
                }
                dest.flush(epoch as u64 + 1).await.unwrap();
            }
            let read = format!(
                "SELECT id, name, _cdp_record_hash, xmin::text FROM {schema}.{prefix}accounts \
                 ORDER BY id"
            );
            let before = client.query(&read, &[]).await.unwrap();
            // A replay of the last flush writes nothing.
            for b in &flushes[1] {
                dest.write(b).await.unwrap();
            }
            dest.flush(3).await.unwrap();
            let after = client.query(&read, &[]).await.unwrap();
            let rows = |rows: &[tokio_postgres::Row]| -> Vec<(i64, String, String, String)> {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                    .collect()
            };
            assert_eq!(rows(&after), rows(&before), "{statements:?}");
            tables.push(rows(&after));
        }
        let content = |rows: &[(i64, String, String, String)]| -> Vec<(i64, String, String)> {
            rows.iter()
                .map(|(id, name, hash, _)| (*id, name.clone(), hash.clone()))
                .collect()
        };
        assert_eq!(content(&tables[0]), content(&tables[1]));
        let names: Vec<(i64, &str)> = tables[0].iter().map(|r| (r.0, r.1.as_str())).collect();
        assert_eq!(
            names,
            [
                (1, "v1 1"),
                (2, "v2 2"),
                (4, "v2 4"),
                (5, "v2 5"),
                (6, "v2 6")
            ]
        );
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .unwrap();
    }
}
