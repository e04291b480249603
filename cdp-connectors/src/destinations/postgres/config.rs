//! Configuration of the PostgreSQL destination.

use cdp_core::{Destination, Result};
use cdp_postgres::PostgresConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PostgresDestination;
use crate::config::{BuildDestination, ConfigErrors, from_table};
use crate::postgres::check_instance;

/// Writes streams into PostgreSQL tables.
///
/// ```toml
/// [destinations.warehouse]
/// type = "postgres"
/// schema = "crm"                 # created if missing; default "public"
/// table_prefix = "raw_"          # table = prefix + stream name
/// fillfactor = 70                # room for in-place updates when upserts rewrite rows
/// max_refused_rows = 1000        # rows refused in one flush (dead-lettered) before it fails
/// [destinations.warehouse.connection]
/// url = "postgres://loader@warehouse:5432/analytics"
/// password_env = "WAREHOUSE_PASSWORD"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDestinationConfig {
    /// Where to connect.
    pub connection: PostgresConnection,
    /// Instance name. Default `postgres`.
    #[serde(default)]
    pub name: Option<String>,
    /// Schema the tables go in; created if missing. Default `public`.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Prefix of every table name. Default none.
    #[serde(default)]
    pub table_prefix: String,
    /// Whether new columns take the PostgreSQL type a PostgreSQL source recorded for the
    /// field (`jsonb`, `uuid`, …) rather than the one mapped from its Arrow type. Default
    /// true.
    #[serde(default = "default_true")]
    pub preserve_source_types: bool,
    /// `fillfactor` of the tables the destination creates (10–100): room left in each page
    /// so that upserts rewriting many rows update them in place. Default: the server's
    /// (100).
    #[serde(default)]
    pub fillfactor: Option<u8>,
    /// How many rows PostgreSQL may refuse in one flush (a constraint, a value out of range:
    /// each becomes a dead letter with PostgreSQL's message and SQLSTATE) before the flush
    /// fails instead, the trouble then being the table rather than a few rows. Default 1000.
    #[serde(default = "default_max_refused_rows")]
    pub max_refused_rows: usize,
}

fn default_max_refused_rows() -> usize {
    super::DEFAULT_MAX_REFUSED_ROWS
}

fn default_schema() -> String {
    "public".into()
}

fn default_true() -> bool {
    true
}

impl PostgresDestinationConfig {
    /// A configuration writing into `public` over `connection`.
    pub fn new(connection: PostgresConnection) -> Self {
        PostgresDestinationConfig {
            connection,
            name: None,
            schema: default_schema(),
            table_prefix: String::new(),
            preserve_source_types: true,
            fillfactor: None,
            max_refused_rows: default_max_refused_rows(),
        }
    }

    /// Reads one table (without `type`): every unknown key and the first bad value, with
    /// their key paths.
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        from_table(table)
    }

    /// Checks the values without connecting and without reading the credentials (see
    /// [`PostgresConnection::validate`]); every problem with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        check_instance(
            &self.connection,
            self.name.as_deref(),
            &self.schema,
            &mut errors,
        );
        if let Some(fillfactor) = self.fillfactor
            && !(10..=100).contains(&fillfactor)
        {
            errors.push(
                "fillfactor",
                format!("must be between 10 and 100, got {fillfactor}"),
            );
        }
        errors.into_result()
    }

    /// Validates the configuration and builds the destination. Nothing connects, and no
    /// credential is read, until the destination is checked or opened.
    pub fn build(&self) -> Result<Box<dyn Destination>> {
        Ok(Box::new(self.build_destination()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_destination(&self) -> Result<PostgresDestination> {
        self.validate()?;
        let mut destination = PostgresDestination::new(self.connection.clone())
            .with_schema(&self.schema)
            .with_table_prefix(&self.table_prefix)
            .with_preserve_source_types(self.preserve_source_types)
            .with_max_refused_rows(self.max_refused_rows);
        if let Some(name) = &self.name {
            destination = destination.with_name(name);
        }
        if let Some(fillfactor) = self.fillfactor {
            destination = destination.with_fillfactor(fillfactor);
        }
        Ok(destination)
    }
}

impl BuildDestination for PostgresDestinationConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        PostgresDestinationConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Destination>> {
        PostgresDestinationConfig::build(self)
    }
}
