//! The PostgreSQL source: discovery, full refresh and keyset-paged incremental reads,
//! straight from binary `COPY` into Arrow.

mod config;
mod deletes;
mod read;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use cdp_core::{
    Catalog, ConnectorSpec, Error, ReadRequest, Result, Source, SourceEventStream, StreamSpec,
    SyncMode,
};
use cdp_postgres::types::is_cursor_kind;
use cdp_postgres::{PG_TYPE_METADATA, PgKind, pg_error};
use tokio_postgres::Client;

pub use config::{FullRefreshDeletes, PostgresSourceConfig, PostgresStreamConfig};

/// Schema metadata key listing a stream's candidate cursor columns, comma-separated.
pub const CURSOR_CANDIDATES_METADATA: &str = "cdp.postgres.cursor_candidates";

/// Reads the tables and views of a PostgreSQL schema as streams.
///
/// **Discovery** lists tables, partitioned tables, views, materialized views and foreign
/// tables, maps their column types to Arrow (see [`types`](crate::postgres::types)), and
/// reports primary keys and candidate cursor columns (integer, numeric, date and timestamp
/// columns, `updated`/`modified` names first; see [`PostgresTable`]).
///
/// **Full refresh** reads the whole table in pages ordered by primary key, each page a
/// query continuing after the last key read, and checkpoints after every batch with that
/// key, so a resumed refresh continues where it stopped. Tables without a key are read in
/// one query and restart from the beginning after a crash (a destination that writes
/// idempotently by record hash absorbs the repeat). With
/// [`full_refresh_deletes`](PostgresSourceConfig::full_refresh_deletes), keys that were in
/// the previous complete refresh and are gone now are emitted as tombstones at the end.
///
/// **Incremental** reads rows after the checkpointed `(cursor, key…)` in that order, with
/// the row comparison `(cursor, key…) > (…)`: rows that share a cursor value are split
/// across pages and resumes by their key, so none is lost or read twice. Rows whose cursor
/// is null are not read. It needs a key: the primary key, or `primary_key` for views.
///
/// **Soft deletes**: with a `soft_delete_column`, rows it marks come out as tombstones
/// (`_cdp_op` = 1, only the key filled). When a stream can carry tombstones its non-key
/// columns are nullable in the Arrow schema.
///
/// Batches are decoded from binary `COPY (SELECT …) TO STDOUT` into Arrow builders, one
/// field at a time. A page that fails on a broken connection is re-run (after
/// reconnecting) from the last batch emitted, under the configured retry policy.
///
/// A checkpoint's cursor is JSON such as
/// `{"mode":"incremental","cursor_field":"updated_at","position":["2024-05-01 10:00:00+00","42"]}`
/// or `{"mode":"full_refresh","run":3,"previous_run":2,"position":["42"],"done":false}`.
#[derive(Debug, Clone)]
pub struct PostgresSource {
    inner: Arc<PostgresSourceConfig>,
    name: String,
}

/// A table or view as discovered.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresTable {
    /// Table name (the stream name).
    pub name: String,
    /// Whether it is a view or materialized view.
    pub is_view: bool,
    /// Columns in table order.
    pub columns: Vec<PostgresColumn>,
    /// Primary key columns, in key order; empty for views and keyless tables.
    pub primary_key: Vec<String>,
    /// Columns that could serve as an incremental cursor, best first.
    pub cursor_candidates: Vec<String>,
}

/// A column as discovered.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresColumn {
    /// Column name.
    pub name: String,
    /// Declared type, as `format_type` prints it (`numeric(12,2)`, `jsonb`, `integer[]`).
    pub declared_type: String,
    /// Whether the column may hold nulls.
    pub nullable: bool,
    /// How its values travel.
    pub(crate) kind: PgKind,
    /// Whether it is read through a cast to text (types without a native mapping).
    pub(crate) as_text: bool,
}

impl PostgresColumn {
    /// The Arrow field the column is read into (before tombstones widen nullability).
    pub fn field(&self) -> Field {
        Field::new(&self.name, self.kind.arrow_type(), self.nullable).with_metadata(HashMap::from(
            [(PG_TYPE_METADATA.to_string(), self.declared_type.clone())],
        ))
    }

    /// The `SELECT` expression reading the column.
    pub(crate) fn select(&self) -> String {
        let column = cdp_postgres::ident(&self.name);
        match (&self.kind, self.as_text) {
            (PgKind::Array(_), true) => format!("{column}::text[]"),
            (_, true) => format!("{column}::text"),
            _ => column,
        }
    }
}

impl PostgresSource {
    /// A source over `config` (see [`PostgresSourceConfig::build_source`], which also
    /// validates it).
    pub fn from_config(config: PostgresSourceConfig) -> Self {
        let name = config.name.clone().unwrap_or_else(|| "postgres".into());
        PostgresSource {
            inner: Arc::new(config),
            name,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PostgresSourceConfig {
        &self.inner
    }

    /// Lists the tables and views of the configured schema, with their columns, keys and
    /// cursor candidates.
    pub async fn discover_tables(&self) -> Result<Vec<PostgresTable>> {
        let client = self.inner.connection.connect(&self.name).await?;
        discover_tables(&client, &self.inner, &self.name).await
    }
}

/// What discovery found, filtered by the configured `tables`.
pub(crate) async fn discover_tables(
    client: &Client,
    config: &PostgresSourceConfig,
    connector: &str,
) -> Result<Vec<PostgresTable>> {
    let rows = client
        .query(
            "SELECT c.relname::text, c.relkind IN ('v', 'm'), a.attname::text, NOT a.attnotnull,
                    format_type(a.atttypid, a.atttypmod),
                    b.oid, CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
                    CASE WHEN b.typcategory = 'A' THEN b.typelem ELSE 0::oid END
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid
             JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND NOT c.relispartition
             ORDER BY c.relname, a.attnum",
            &[&config.schema],
        )
        .await
        .map_err(|e| pg_error(connector, format!("discover schema {}", config.schema), e))?;
    let keys = client
        .query(
            "SELECT c.relname::text, array_agg(a.attname::text ORDER BY k.ord)
             FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE i.indisprimary AND n.nspname = $1
             GROUP BY c.relname",
            &[&config.schema],
        )
        .await
        .map_err(|e| {
            pg_error(
                connector,
                format!("primary keys of schema {}", config.schema),
                e,
            )
        })?;
    let decode = |e| pg_error(connector, "read catalog", e);
    let mut primary_keys: HashMap<String, Vec<String>> = HashMap::new();
    for row in &keys {
        primary_keys.insert(
            row.try_get(0).map_err(decode)?,
            row.try_get(1).map_err(decode)?,
        );
    }
    let mut tables: Vec<PostgresTable> = Vec::new();
    for row in &rows {
        let table: String = row.try_get(0).map_err(decode)?;
        let is_view: bool = row.try_get(1).map_err(decode)?;
        let oid: u32 = row.try_get(5).map_err(decode)?;
        let typmod: i32 = row.try_get(6).map_err(decode)?;
        let element: u32 = row.try_get(7).map_err(decode)?;
        let (kind, as_text) = if element != 0 {
            match PgKind::from_oid(element, typmod) {
                Some(kind) => (PgKind::Array(Box::new(kind)), false),
                None => (PgKind::Array(Box::new(PgKind::Text)), true),
            }
        } else {
            match PgKind::from_oid(oid, typmod) {
                Some(kind) => (kind, false),
                None => (PgKind::Text, true),
            }
        };
        let column = PostgresColumn {
            name: row.try_get(2).map_err(decode)?,
            nullable: row.try_get(3).map_err(decode)?,
            declared_type: row.try_get(4).map_err(decode)?,
            kind,
            as_text,
        };
        match tables.last_mut() {
            Some(last) if last.name == table => last.columns.push(column),
            _ => tables.push(PostgresTable {
                primary_key: primary_keys.remove(&table).unwrap_or_default(),
                name: table,
                is_view,
                columns: vec![column],
                cursor_candidates: Vec::new(),
            }),
        }
    }
    // The source's own key table, when it lives in the schema it reads, is not a stream.
    if let Some(deletes) = &config.full_refresh_deletes
        && deletes.connection.is_none()
        && deletes.schema == config.schema
    {
        tables.retain(|t| t.name != deletes.table);
    }
    for table in &mut tables {
        table.cursor_candidates = cursor_candidates(&table.columns);
    }
    if !config.tables.is_empty() {
        for wanted in &config.tables {
            if !tables.iter().any(|t| &t.name == wanted) {
                return Err(Error::Config(format!(
                    "{connector}: table `{wanted}` not found in schema `{}`",
                    config.schema
                )));
            }
        }
        tables.retain(|t| config.tables.contains(&t.name));
    }
    for name in config.streams.keys() {
        if !tables.iter().any(|t| &t.name == name) {
            return Err(Error::Config(format!(
                "{connector}: settings for stream `{name}`, but no such table or view in \
                 schema `{}` (or it is not in `tables`)",
                config.schema
            )));
        }
    }
    Ok(tables)
}

/// Integer, numeric, date and timestamp columns, best cursor first: names saying
/// "updated"/"modified" first, then not-null timestamps, then the rest in table order.
fn cursor_candidates(columns: &[PostgresColumn]) -> Vec<String> {
    let mut candidates: Vec<(u8, usize, &PostgresColumn)> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.as_text && is_cursor_kind(&c.kind))
        .map(|(i, c)| {
            let name = c.name.to_ascii_lowercase();
            let timestamp = matches!(c.kind, PgKind::Timestamp | PgKind::Timestamptz);
            let rank = if timestamp && (name.contains("updated") || name.contains("modified")) {
                0
            } else if timestamp && !c.nullable {
                1
            } else if timestamp {
                2
            } else {
                3
            };
            (rank, i, c)
        })
        .collect();
    candidates.sort_by_key(|(rank, i, _)| (*rank, *i));
    candidates
        .into_iter()
        .map(|(_, _, c)| c.name.clone())
        .collect()
}

/// A stream's settings resolved against its table.
#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    pub(crate) table: PostgresTable,
    pub(crate) schema: SchemaRef,
    pub(crate) key: Vec<String>,
    pub(crate) cursor: Option<String>,
    pub(crate) soft_delete: Option<String>,
    pub(crate) tracks_deletes: bool,
    pub(crate) modes: Vec<SyncMode>,
    pub(crate) default_mode: SyncMode,
}

impl StreamPlan {
    pub(crate) fn new(table: PostgresTable, config: &PostgresSourceConfig) -> Result<Self> {
        let settings = config.streams.get(&table.name).cloned().unwrap_or_default();
        let key = settings
            .primary_key
            .clone()
            .unwrap_or_else(|| table.primary_key.clone());
        let column = |name: &str, what: &str| -> Result<&PostgresColumn> {
            table
                .columns
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "postgres source: {what} `{name}` is not a column of `{}`",
                        table.name
                    ))
                })
        };
        for k in &key {
            let c = column(k, "key column")?;
            if matches!(c.kind, PgKind::Array(_)) {
                return Err(Error::Config(format!(
                    "postgres source: key column `{k}` of `{}` is an array",
                    table.name
                )));
            }
        }
        if let Some(cursor) = &settings.cursor_field {
            let c = column(cursor, "cursor_field")?;
            if matches!(c.kind, PgKind::Array(_) | PgKind::Bytea) {
                return Err(Error::Config(format!(
                    "postgres source: cursor_field `{cursor}` of `{}` cannot be ordered",
                    table.name
                )));
            }
        }
        if let Some(column_name) = &settings.soft_delete_column {
            column(column_name, "soft_delete_column")?;
        }
        let tracks_deletes = config.full_refresh_deletes.is_some() && !key.is_empty();
        let tombstones =
            !key.is_empty() && (settings.soft_delete_column.is_some() || tracks_deletes);
        let fields: Vec<Field> = table
            .columns
            .iter()
            .map(|c| {
                let field = c.field();
                if tombstones && !key.contains(&c.name) {
                    field.with_nullable(true)
                } else {
                    field
                }
            })
            .collect();
        let mut metadata = HashMap::new();
        if !table.cursor_candidates.is_empty() {
            metadata.insert(
                CURSOR_CANDIDATES_METADATA.to_string(),
                table.cursor_candidates.join(","),
            );
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
        let mut modes = vec![SyncMode::FullRefresh];
        if settings.cursor_field.is_some() && !key.is_empty() {
            modes.push(SyncMode::IncrementalAppend);
            modes.push(SyncMode::IncrementalDedup);
        }
        let default_mode = match settings.sync_mode {
            Some(mode) => {
                if !modes.contains(&mode) {
                    return Err(Error::Config(format!(
                        "postgres source: stream `{}` cannot be read in mode {mode:?}: incremental \
                         modes need a `cursor_field` and a key (a primary key, or `primary_key`)",
                        table.name
                    )));
                }
                mode
            }
            None if modes.len() > 1 => SyncMode::IncrementalDedup,
            None => SyncMode::FullRefresh,
        };
        Ok(StreamPlan {
            schema,
            key,
            cursor: settings.cursor_field.clone(),
            soft_delete: settings.soft_delete_column.clone(),
            tracks_deletes,
            modes,
            default_mode,
            table,
        })
    }

    fn spec(&self) -> StreamSpec {
        let mut spec = StreamSpec::new(&self.table.name, self.schema.clone())
            .with_primary_key(self.key.clone())
            .with_sync_modes(self.modes.clone());
        spec.cursor_field = self.cursor.clone();
        spec
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn spec(&self) -> ConnectorSpec {
        ConnectorSpec {
            name: "postgres".into(),
            description: "Tables and views of a PostgreSQL schema: full refresh, or incremental \
                          by a cursor column with keyset paging; soft and hard deletes as \
                          tombstones"
                .into(),
            sync_modes: vec![
                SyncMode::FullRefresh,
                SyncMode::IncrementalAppend,
                SyncMode::IncrementalDedup,
            ],
        }
    }

    async fn discover(&self) -> Result<Catalog> {
        let tables = self.discover_tables().await?;
        let streams = tables
            .into_iter()
            .map(|t| StreamPlan::new(t, &self.inner).map(|p| p.spec()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Catalog::new(streams))
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let config = self.inner.clone();
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = read::run(config, name, request, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        })))
    }
}
