//! Configuration of the PostgreSQL source.

use std::collections::BTreeMap;

use cdp_core::{Result, RetryPolicy, Source, SyncMode};
use cdp_postgres::PostgresConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PostgresSource;
use crate::config::{BuildSource, ConfigErrors, from_table};
use crate::postgres::{check_connection, check_instance, check_retry};

/// Default rows per batch (and per checkpoint).
pub(crate) const DEFAULT_BATCH_SIZE: usize = 10_000;
/// Default rows per query.
pub(crate) const DEFAULT_PAGE_SIZE: usize = 100_000;

/// Reads the tables and views of one PostgreSQL schema, one stream per table.
///
/// ```toml
/// [sources.crm]
/// type = "postgres"
/// schema = "public"
/// tables = ["customers", "orders", "active_customers"]  # default: every table and view
/// batch_size = 10000                    # rows per batch; a checkpoint follows each
/// page_size = 100000                    # rows per query (keyset page)
///
/// [sources.crm.connection]
/// url = "postgres://etl@db:5432/crm"
/// password_env = "CRM_PASSWORD"
///
/// [sources.crm.streams.orders]
/// cursor_field = "updated_at"           # incremental by this column
/// soft_delete_column = "deleted_at"     # non-null (or true) => tombstone
///
/// [sources.crm.streams.active_customers] # a view: give it a key
/// primary_key = ["id"]
///
/// [sources.crm.full_refresh_deletes]    # tombstones for rows gone since the last full refresh
/// schema = "cdp"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// Where to connect.
    pub connection: PostgresConnection,
    /// Instance name, stamped into `_cdp_source`. Default `postgres`.
    #[serde(default)]
    pub name: Option<String>,
    /// The schema whose tables and views become streams. Default `public`. Stream names are
    /// the table names; read several schemas with several sources.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Tables and views to read; empty means all of them.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Per-stream settings, by table name.
    #[serde(default)]
    pub streams: BTreeMap<String, PostgresStreamConfig>,
    /// Rows per batch; a checkpoint follows every batch. Default 10 000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Rows per query: each page is one `SELECT … ORDER BY cursor, key LIMIT page_size`
    /// continuing after the last row of the previous page, so no query holds a snapshot
    /// open for the whole table. Default 100 000.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Detect rows deleted since the last full refresh, by keeping each full refresh's keys
    /// in a side table. Off when absent.
    #[serde(default)]
    pub full_refresh_deletes: Option<FullRefreshDeletes>,
    /// How connecting and re-running a page after a broken connection are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// Settings of one stream (table or view).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStreamConfig {
    /// A column that grows whenever a row is inserted or changed (`updated_at`, a sequence);
    /// makes the stream incremental. Rows where it is null are not read incrementally.
    #[serde(default)]
    pub cursor_field: Option<String>,
    /// Key columns, for views and tables without a primary key; they must not be null.
    #[serde(default)]
    pub primary_key: Option<Vec<String>>,
    /// A column that marks deleted rows: a row where it is `true` (boolean column) or not
    /// null (any other type, e.g. `deleted_at`) is emitted as a tombstone carrying only its
    /// key. In incremental mode the cursor must move when a row is soft-deleted.
    #[serde(default)]
    pub soft_delete_column: Option<String>,
    /// Mode to read in. Default: `incremental_dedup` with a cursor, else `full_refresh`.
    #[serde(default)]
    pub sync_mode: Option<SyncMode>,
}

/// Where full-refresh delete detection keeps the keys it saw.
///
/// Each full refresh records the key of every row it reads in
/// `schema.table (scope text, run bigint, key text[])`; at its end, keys of the previous
/// complete run that this run did not see are emitted as tombstones. The keys live with
/// the source (not in the destination) because deletes are a fact about the source that
/// every destination must receive alike, and a source cannot see its destinations. A
/// read-only source database can point `connection` at another PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullRefreshDeletes {
    /// Schema of the key table; created if missing. Default `public`.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Name of the key table. Default `cdp_seen_keys`.
    #[serde(default = "default_key_table")]
    pub table: String,
    /// The database holding it. Default: the source database.
    #[serde(default)]
    pub connection: Option<PostgresConnection>,
}

impl Default for FullRefreshDeletes {
    fn default() -> Self {
        FullRefreshDeletes {
            schema: default_schema(),
            table: default_key_table(),
            connection: None,
        }
    }
}

fn default_schema() -> String {
    "public".into()
}

fn default_key_table() -> String {
    "cdp_seen_keys".into()
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

fn default_page_size() -> usize {
    DEFAULT_PAGE_SIZE
}

impl PostgresSourceConfig {
    /// A configuration reading every table of `public` with every default.
    pub fn new(connection: PostgresConnection) -> Self {
        PostgresSourceConfig {
            connection,
            name: None,
            schema: default_schema(),
            tables: Vec::new(),
            streams: BTreeMap::new(),
            batch_size: DEFAULT_BATCH_SIZE,
            page_size: DEFAULT_PAGE_SIZE,
            full_refresh_deletes: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Reads `schema` instead of `public`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Reads only `tables`.
    pub fn with_tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = tables.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the settings of stream `table`.
    pub fn with_stream(mut self, table: impl Into<String>, stream: PostgresStreamConfig) -> Self {
        self.streams.insert(table.into(), stream);
        self
    }

    /// Sets the rows per batch.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows;
        self
    }

    /// Sets the rows per query.
    pub fn with_page_size(mut self, rows: usize) -> Self {
        self.page_size = rows;
        self
    }

    /// Turns on full-refresh delete detection.
    pub fn with_full_refresh_deletes(mut self, deletes: FullRefreshDeletes) -> Self {
        self.full_refresh_deletes = Some(deletes);
        self
    }

    /// Sets the instance name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Reads one table (without `type`): every unknown key and the first bad value, with
    /// their key paths.
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        from_table(table)
    }

    /// Checks the values without connecting and without reading the credentials (see
    /// [`PostgresConnection::validate`]); every problem with its key path. Whether the
    /// tables and columns exist is found when the source discovers them.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        check_instance(
            &self.connection,
            self.name.as_deref(),
            &self.schema,
            &mut errors,
        );
        check_names(&self.tables, "tables", &mut errors);
        for (table, stream) in &self.streams {
            let path = format!("streams.{}", crate::config::key_segment(table));
            if !self.tables.is_empty() && !self.tables.contains(table) {
                errors.push(
                    &path,
                    format!("`{table}` is not in `tables`, so it is never read"),
                );
            }
            stream.check(&path, &mut errors);
        }
        for (key, value) in [
            ("batch_size", self.batch_size),
            ("page_size", self.page_size),
        ] {
            if value == 0 {
                errors.push(key, "must be at least 1");
            }
        }
        if let Some(deletes) = &self.full_refresh_deletes {
            for (key, value) in [("schema", &deletes.schema), ("table", &deletes.table)] {
                if value.is_empty() {
                    errors.push(format!("full_refresh_deletes.{key}"), "must not be empty");
                }
            }
            if let Some(connection) = &deletes.connection {
                check_connection(connection, "full_refresh_deletes.connection", &mut errors);
            }
        }
        check_retry(&self.retry, "retry", &mut errors);
        errors.into_result()
    }

    /// Validates the configuration and builds the source. Nothing connects, and no
    /// credential is read, until the source is checked, discovered or read.
    pub fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.build_source()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_source(&self) -> Result<PostgresSource> {
        self.validate()?;
        Ok(PostgresSource::from_config(self.clone()))
    }
}

impl BuildSource for PostgresSourceConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        PostgresSourceConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        PostgresSourceConfig::build(self)
    }
}

/// Records empty and repeated names in the list at `key`.
fn check_names(names: &[String], key: &str, errors: &mut ConfigErrors) {
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            errors.push(format!("{key}[{i}]"), "must not be empty");
        } else if let Some(first) = names[..i].iter().position(|n| n == name) {
            errors.push(
                format!("{key}[{i}]"),
                format!("`{name}` is listed twice (also {key}[{first}])"),
            );
        }
    }
}

impl PostgresStreamConfig {
    /// Records what is wrong with the stream's settings, under `path`.
    fn check(&self, path: &str, errors: &mut ConfigErrors) {
        for (key, value) in [
            ("cursor_field", &self.cursor_field),
            ("soft_delete_column", &self.soft_delete_column),
        ] {
            if value.as_deref() == Some("") {
                errors.push(format!("{path}.{key}"), "must not be empty");
            }
        }
        if let Some(key) = &self.primary_key {
            if key.is_empty() {
                errors.push(
                    format!("{path}.primary_key"),
                    "lists no column; omit it to use the table's primary key",
                );
            }
            check_names(key, &format!("{path}.primary_key"), errors);
        }
        let incremental = match self.sync_mode {
            Some(SyncMode::IncrementalAppend) => Some("incremental_append"),
            Some(SyncMode::IncrementalDedup) => Some("incremental_dedup"),
            _ => None,
        };
        if let Some(mode) = incremental
            && self.cursor_field.is_none()
        {
            errors.push(
                format!("{path}.sync_mode"),
                format!("`{mode}` needs a `cursor_field`"),
            );
        }
    }
}

/// `StreamSpec`-level view of a stream's settings (used by [`PostgresStreamConfig`]
/// builders in Rust code).
impl PostgresStreamConfig {
    /// Incremental by `column`.
    pub fn cursor(column: impl Into<String>) -> Self {
        PostgresStreamConfig {
            cursor_field: Some(column.into()),
            ..Self::default()
        }
    }

    /// Sets the key columns.
    pub fn with_primary_key<I, S>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.primary_key = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the soft-delete column.
    pub fn with_soft_delete(mut self, column: impl Into<String>) -> Self {
        self.soft_delete_column = Some(column.into());
        self
    }

    /// Sets the sync mode.
    pub fn with_sync_mode(mut self, mode: SyncMode) -> Self {
        self.sync_mode = Some(mode);
        self
    }
}
