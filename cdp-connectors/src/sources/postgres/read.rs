//! The read loop: pages of binary `COPY`, batches, checkpoints, tombstones.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt8Array, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::record::OP_COLUMN;
use cdp_core::{
    Batch, Checkpoint, Error, Op, ReadRequest, Result, RetryPolicy, SourceEvent, SyncMode,
};
use cdp_postgres::types::value_text;
use cdp_postgres::{CopyDecoder, PgKind, PostgresConnection, ident, literal, pg_error, qualified};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::Sender;
use tokio_postgres::Client;

use super::deletes::KeyStore;
use super::{PostgresColumn, PostgresSourceConfig, StreamPlan, discover_tables};

/// A stream's checkpointed position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// `incremental` or `full_refresh`.
    pub(crate) mode: String,
    /// The cursor column an incremental position refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cursor_field: Option<String>,
    /// The last row emitted: cursor value (incremental) then key values, as PostgreSQL
    /// input text.
    #[serde(default)]
    pub(crate) position: Option<Vec<String>>,
    /// Full refresh: the number of this refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run: Option<u64>,
    /// Full refresh: the last complete refresh before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) previous_run: Option<u64>,
    /// Full refresh: whether this refresh completed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) done: bool,
}

const INCREMENTAL: &str = "incremental";
const FULL_REFRESH: &str = "full_refresh";

/// A connection that is re-opened after a transient failure.
#[derive(Debug)]
pub(crate) struct Conn {
    connection: PostgresConnection,
    connector: String,
    client: Option<Client>,
}

impl Conn {
    pub(crate) fn new(connection: PostgresConnection, connector: &str) -> Self {
        Conn {
            connection,
            connector: connector.to_string(),
            client: None,
        }
    }

    pub(crate) async fn get(&mut self) -> Result<&Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = self.connection.connect(&self.connector).await?;
            client
                .batch_execute("SET standard_conforming_strings = on")
                .await
                .map_err(|e| pg_error(&self.connector, "session settings", e))?;
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| Error::external(self.connector.clone(), "no connection"))
    }

    pub(crate) fn reset(&mut self) {
        self.client = None;
    }
}

/// Reads every wanted stream, in catalog order.
pub(super) async fn run(
    config: Arc<PostgresSourceConfig>,
    name: String,
    request: ReadRequest,
    tx: &Sender<Result<SourceEvent>>,
) -> Result<()> {
    let mut conn = Conn::new(config.connection.clone(), &name);
    let tables = {
        let mut attempts = config.retry.start("connect");
        loop {
            let result = match conn.get().await {
                Ok(client) => discover_tables(client, &config, &name).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(tables) => break tables,
                Err(e) => {
                    conn.reset();
                    attempts.backoff(e).await?;
                }
            }
        }
    };
    let mut keys = config
        .full_refresh_deletes
        .as_ref()
        .map(|d| KeyStore::new(d, &config.connection, &name));
    for table in tables {
        if !request.wants(&table.name) {
            continue;
        }
        let plan = StreamPlan::new(table, &config)?;
        let mode = match request.sync_mode {
            Some(mode) if plan.modes.contains(&mode) => mode,
            _ => plan.default_mode,
        };
        let state = request
            .state
            .cursor(&plan.table.name)
            .map(|v| serde_json::from_value::<Cursor>(v.clone()))
            .transpose()
            .map_err(|e| Error::Cursor {
                stream: plan.table.name.to_string(),
                message: format!("not a postgres cursor: {e}"),
            })?;
        let mut reader = StreamReader::new(&config, &name, plan, &mut conn, keys.as_mut(), tx);
        let result = match mode {
            SyncMode::FullRefresh => reader.full_refresh(state).await,
            SyncMode::IncrementalAppend | SyncMode::IncrementalDedup => {
                reader.incremental(state).await
            }
        };
        match result {
            Ok(()) => {}
            // The consumer went away: stop quietly.
            Err(Error::Cancelled) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct StreamReader<'a> {
    batch_size: usize,
    page_size: usize,
    retry: &'a RetryPolicy,
    source: &'a str,
    schema_name: &'a str,
    plan: StreamPlan,
    /// The plan's schema plus `_cdp_op`, for batches carrying tombstones.
    with_op: SchemaRef,
    conn: &'a mut Conn,
    keys: Option<&'a mut KeyStore>,
    tx: &'a Sender<Result<SourceEvent>>,
    cursor: Cursor,
    /// Columns of the ORDER BY (cursor, then key), as indexes into the table's columns.
    order: Vec<usize>,
}

impl<'a> StreamReader<'a> {
    fn new(
        config: &'a PostgresSourceConfig,
        source: &'a str,
        plan: StreamPlan,
        conn: &'a mut Conn,
        keys: Option<&'a mut KeyStore>,
        tx: &'a Sender<Result<SourceEvent>>,
    ) -> Self {
        let mut fields: Vec<Arc<Field>> = plan.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(OP_COLUMN, DataType::UInt8, false)));
        let with_op = Arc::new(Schema::new_with_metadata(
            fields,
            plan.schema.metadata().clone(),
        ));
        StreamReader {
            batch_size: config.batch_size,
            page_size: config.page_size,
            retry: &config.retry,
            source,
            schema_name: &config.schema,
            plan,
            with_op,
            conn,
            keys,
            tx,
            cursor: Cursor::default(),
            order: Vec::new(),
        }
    }

    fn column_index(&self, name: &str) -> Result<usize> {
        self.plan
            .table
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                Error::Config(format!("no column `{name}` in `{}`", self.plan.table.name))
            })
    }

    fn stream(&self) -> &str {
        &self.plan.table.name
    }

    fn scope(&self) -> String {
        format!(
            "{}/{}.{}",
            self.source, self.schema_name, self.plan.table.name
        )
    }

    async fn incremental(&mut self, state: Option<Cursor>) -> Result<()> {
        let Some(cursor_field) = self.plan.cursor.clone() else {
            return Err(Error::Config(format!(
                "stream `{}` has no cursor_field",
                self.stream()
            )));
        };
        self.order = std::iter::once(cursor_field.as_str())
            .chain(self.plan.key.iter().map(String::as_str))
            .map(|c| self.column_index(c))
            .collect::<Result<_>>()?;
        self.cursor = Cursor {
            mode: INCREMENTAL.into(),
            cursor_field: Some(cursor_field.clone()),
            ..Cursor::default()
        };
        if let Some(state) = state {
            if state.mode == INCREMENTAL && state.cursor_field.as_deref() == Some(&cursor_field) {
                self.cursor.position = state.position;
            } else {
                tracing::warn!(
                    stream = self.stream(),
                    "the checkpoint is not an incremental position on `{cursor_field}`; \
                     reading the stream from the start"
                );
            }
        }
        self.paged(Some(&cursor_field)).await
    }

    async fn full_refresh(&mut self, state: Option<Cursor>) -> Result<()> {
        self.order = self
            .plan
            .key
            .iter()
            .map(|c| self.column_index(c))
            .collect::<Result<_>>()?;
        let (run, previous_run, position, resumed) = match state {
            Some(s) if s.mode == FULL_REFRESH && !s.done => {
                (s.run.unwrap_or(1), s.previous_run, s.position, true)
            }
            Some(s) if s.mode == FULL_REFRESH => {
                let run = s.run.unwrap_or(0);
                (run + 1, Some(run), None, false)
            }
            _ => (1, None, None, false),
        };
        self.cursor = Cursor {
            mode: FULL_REFRESH.into(),
            position: if self.order.is_empty() {
                None
            } else {
                position
            },
            run: Some(run),
            previous_run,
            ..Cursor::default()
        };
        let tracking = self.plan.tracks_deletes;
        if tracking && !resumed {
            let scope = self.scope();
            if let Some(keys) = self.keys.as_deref_mut() {
                keys.start_run(&scope, previous_run).await?;
            }
        }
        if self.order.is_empty() {
            self.unpaged().await?;
        } else {
            self.paged(None).await?;
        }
        if tracking && let Some(previous) = previous_run {
            self.deletes(previous, run).await?;
        }
        self.cursor.done = true;
        self.checkpoint().await
    }

    /// Reads pages ordered by the `order` columns after the checkpointed position.
    async fn paged(&mut self, cursor_field: Option<&str>) -> Result<()> {
        let retry = self.retry;
        let what = format!("read {}", self.stream());
        loop {
            let mut attempts = retry.start(&what);
            let rows = loop {
                let sql = self.page_sql(cursor_field);
                match self.copy(&sql).await {
                    Ok(rows) => break rows,
                    Err(Error::Cancelled) => return Err(Error::Cancelled),
                    Err(e) => {
                        self.conn.reset();
                        attempts.backoff(e).await?;
                    }
                }
            };
            if rows < self.page_size {
                return Ok(());
            }
        }
    }

    /// Reads a table without a key in one query; a retry starts it over.
    async fn unpaged(&mut self) -> Result<()> {
        let sql = format!(
            "COPY (SELECT {} FROM {}) TO STDOUT (FORMAT binary)",
            self.select_list(),
            qualified(self.schema_name, self.stream())
        );
        let retry = self.retry;
        let what = format!("read {}", self.stream());
        let mut attempts = retry.start(&what);
        loop {
            match self.copy(&sql).await {
                Ok(_) => return Ok(()),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                Err(e) => {
                    self.conn.reset();
                    attempts.backoff(e).await?;
                }
            }
        }
    }

    fn select_list(&self) -> String {
        self.plan
            .table
            .columns
            .iter()
            .map(PostgresColumn::select)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The query of the next page: rows after the position in `order`.
    fn page_sql(&self, cursor_field: Option<&str>) -> String {
        let columns = &self.plan.table.columns;
        let order: Vec<String> = self
            .order
            .iter()
            .map(|&i| ident(&columns[i].name))
            .collect();
        let filter = match &self.cursor.position {
            Some(position) if position.len() == self.order.len() => {
                let values: Vec<String> = self
                    .order
                    .iter()
                    .zip(position)
                    .map(|(&i, v)| format!("{}::{}", literal(v), columns[i].declared_type))
                    .collect();
                format!(" WHERE ({}) > ({})", order.join(", "), values.join(", "))
            }
            _ => match cursor_field {
                Some(cursor) => format!(" WHERE {} IS NOT NULL", ident(cursor)),
                None => String::new(),
            },
        };
        format!(
            "COPY (SELECT {} FROM {}{filter} ORDER BY {} LIMIT {}) TO STDOUT (FORMAT binary)",
            self.select_list(),
            qualified(self.schema_name, self.stream()),
            order.join(", "),
            self.page_size
        )
    }

    /// Runs one `COPY … TO STDOUT`, emitting a batch (and checkpoint) every `batch_size`
    /// rows; returns the rows read.
    async fn copy(&mut self, sql: &str) -> Result<usize> {
        let connector = self.source.to_string();
        let columns = &self.plan.table.columns;
        let mut decoder = CopyDecoder::new(
            columns.iter().map(|c| c.name.clone()).collect(),
            &columns.iter().map(|c| c.kind.clone()).collect::<Vec<_>>(),
        );
        let stream = self
            .conn
            .get()
            .await?
            .copy_out(sql)
            .await
            .map_err(|e| pg_error(&connector, format!("read {}", self.plan.table.name), e))?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| pg_error(&connector, format!("read {}", self.plan.table.name), e))?;
            decoder.push(&chunk);
            while decoder.next_row().map_err(|e| self.decode_error(e))? {
                rows += 1;
                if decoder.rows() >= self.batch_size {
                    let arrays = decoder.finish().map_err(|e| self.decode_error(e))?;
                    self.emit(arrays).await?;
                }
            }
        }
        if !decoder.is_finished() {
            return Err(self.decode_error("the COPY stream ended without its trailer".into()));
        }
        if decoder.rows() > 0 {
            let arrays = decoder.finish().map_err(|e| self.decode_error(e))?;
            self.emit(arrays).await?;
        }
        Ok(rows)
    }

    fn decode_error(&self, message: String) -> Error {
        Error::external(
            self.source.to_string(),
            format!("decoding table {}: {message}", self.plan.table.name),
        )
    }

    /// Emits one batch and the checkpoint after it.
    async fn emit(&mut self, arrays: Vec<ArrayRef>) -> Result<()> {
        let data = RecordBatch::try_new(self.plan.schema.clone(), arrays)?;
        let last = data.num_rows() - 1;
        if !self.order.is_empty() {
            let position = self
                .order
                .iter()
                .map(|&i| {
                    value_text(data.column(i).as_ref(), last)
                        .map_err(|e| self.decode_error(e))?
                        .ok_or_else(|| {
                            Error::Config(format!(
                                "stream `{}`: column `{}` is null in a row; cursor and key \
                                 columns must not be null",
                                self.stream(),
                                self.plan.table.columns[i].name
                            ))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            self.cursor.position = Some(position);
        }
        if self.cursor.mode == FULL_REFRESH && self.plan.tracks_deletes {
            let key: Vec<ArrayRef> = self.order.iter().map(|&i| data.column(i).clone()).collect();
            let scope = self.scope();
            let run = self.cursor.run.unwrap_or(1);
            if let Some(keys) = self.keys.as_deref_mut() {
                keys.record(&scope, run, &key).await?;
            }
        }
        let data = match &self.plan.soft_delete {
            Some(column) if !self.plan.key.is_empty() => self.soft_delete(data, column)?,
            _ => data,
        };
        self.send(SourceEvent::Batch(Batch::new(
            self.plan.table.name.clone(),
            data,
            self.source.to_string(),
        )))
        .await?;
        self.checkpoint().await
    }

    async fn checkpoint(&self) -> Result<()> {
        let cursor = serde_json::to_value(&self.cursor)?;
        self.send(SourceEvent::Checkpoint(Checkpoint::new(
            self.plan.table.name.clone(),
            cursor,
        )))
        .await
    }

    async fn send(&self, event: SourceEvent) -> Result<()> {
        self.tx.send(Ok(event)).await.map_err(|_| Error::Cancelled)
    }

    /// Turns rows the soft-delete column marks into tombstones.
    fn soft_delete(&self, data: RecordBatch, column: &str) -> Result<RecordBatch> {
        let Some(marks) = data.column_by_name(column) else {
            return Ok(data);
        };
        let deleted: BooleanArray = match marks.data_type() {
            DataType::Boolean => {
                let marks = marks.as_any().downcast_ref::<BooleanArray>();
                (0..data.num_rows())
                    .map(|i| Some(marks.is_some_and(|m| m.is_valid(i) && m.value(i))))
                    .collect()
            }
            _ => (0..data.num_rows())
                .map(|i| Some(marks.is_valid(i)))
                .collect(),
        };
        if deleted.true_count() == 0 {
            return Ok(data);
        }
        self.tombstones(&data, &deleted)
    }

    /// `data` with the rows marked in `deleted` reduced to their key and `_cdp_op` = 1.
    fn tombstones(&self, data: &RecordBatch, deleted: &BooleanArray) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(data.num_columns() + 1);
        for (field, column) in self.plan.schema.fields().iter().zip(data.columns()) {
            if self.plan.key.contains(field.name()) {
                columns.push(column.clone());
            } else {
                columns.push(arrow::compute::nullif(column, deleted)?);
            }
        }
        let ops: UInt8Array = deleted
            .iter()
            .map(|d| {
                Some(if d == Some(true) {
                    Op::Delete
                } else {
                    Op::Upsert
                } as u8)
            })
            .collect();
        columns.push(Arc::new(ops));
        Ok(RecordBatch::try_new(self.with_op.clone(), columns)?)
    }

    /// Emits tombstones for keys of refresh `previous` that refresh `run` did not see.
    async fn deletes(&mut self, previous: u64, run: u64) -> Result<()> {
        let scope = self.scope();
        let key_columns: Vec<PostgresColumn> = self
            .order
            .iter()
            .map(|&i| self.plan.table.columns[i].clone())
            .collect();
        let Some(keys) = self.keys.as_deref_mut() else {
            return Ok(());
        };
        let gone = keys.gone(&scope, previous, run, &key_columns).await?;
        let count = gone.first().map_or(0, |a| a.len());
        if count > 0 {
            tracing::info!(
                stream = self.stream(),
                rows = count,
                "rows deleted since the last full refresh"
            );
        }
        let mut offset = 0;
        while offset < count {
            let len = self.batch_size.min(count - offset);
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.with_op.fields().len());
            for field in self.plan.schema.fields() {
                match self.plan.key.iter().position(|k| k == field.name()) {
                    Some(k) => columns.push(gone[k].slice(offset, len)),
                    None => columns.push(new_null_array(field.data_type(), len)),
                }
            }
            columns.push(Arc::new(UInt8Array::from(vec![Op::Delete as u8; len])));
            let data = RecordBatch::try_new(self.with_op.clone(), columns)?;
            self.send(SourceEvent::Batch(Batch::new(
                self.plan.table.name.clone(),
                data,
                self.source.to_string(),
            )))
            .await?;
            self.checkpoint().await?;
            offset += len;
        }
        Ok(())
    }
}

/// The kind a key column is stored as in the key table's `text[]` and cast back to.
pub(crate) fn key_cast(column: &PostgresColumn) -> String {
    if column.as_text {
        "text".into()
    } else {
        match &column.kind {
            PgKind::Text | PgKind::Jsonb => "text".into(),
            kind => kind.sql_type(),
        }
    }
}
