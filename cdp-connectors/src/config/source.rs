//! [`SourceConfig`]: one `[sources.<name>]` table, typed.

use std::fmt;

use cdp_core::{Result, Source};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::custom::CustomConfig;
use super::error::ConfigErrors;
use super::registry;

/// What a parsed source configuration can do: check its values, and build the source.
///
/// Implemented by every built-in source config and by [`SourceConfig`]; a host implements
/// it for the config of a source type it registers with
/// [`ConnectorRegistry::register_source`](super::ConnectorRegistry::register_source).
pub trait BuildSource: fmt::Debug + Send + Sync + 'static {
    /// Checks the values without side effects: no file is opened, no connection made, no
    /// environment variable read. Reports every problem found, each with its key path
    /// relative to the source's table (`batch_size`, `schema[2].name`).
    fn validate(&self) -> Result<(), ConfigErrors>;

    /// Validates, then builds the source. Building connects to nothing and reads no
    /// data: that happens when the source is checked, discovered or read.
    fn build(&self) -> Result<Box<dyn Source>>;
}

/// The configuration of a source of a type a host registered.
pub type CustomSourceConfig = CustomConfig<dyn BuildSource>;

/// One source's configuration, tagged by `type`:
///
/// ```toml
/// [sources.events]
/// type = "jsonl"
/// path = "data/events/"
/// ```
///
/// Each built-in type is a variant behind its connector's cargo feature and holds that
/// connector's config; types a host registered with
/// [`ConnectorRegistry`](super::ConnectorRegistry) are [`Custom`](SourceConfig::Custom).
///
/// Read one with [`SourceConfig::from_table`], with serde (`Deserialize` knows the
/// built-in types), or, with custom types and every problem of a whole `[sources]` table at
/// once, with [`ConnectorRegistry::parse_sources`](super::ConnectorRegistry::parse_sources).
/// Either way unknown keys are refused and errors name their key path. It serializes back to
/// the same table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
// A file holds a handful, each read once: boxing the PostgreSQL variant would only make
// every match on it clumsier.
#[allow(clippy::large_enum_variant)]
pub enum SourceConfig {
    /// `type = "jsonl"` (feature `jsonl`).
    #[cfg(feature = "jsonl")]
    Jsonl(crate::JsonlSourceConfig),
    /// `type = "csv"` (feature `csv`).
    #[cfg(feature = "csv")]
    Csv(crate::CsvSourceConfig),
    /// `type = "parquet"` (feature `parquet`).
    #[cfg(feature = "parquet")]
    Parquet(crate::ParquetSourceConfig),
    /// `type = "postgres"` (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(crate::PostgresSourceConfig),
    /// `type = "http"` (feature `http`).
    #[cfg(feature = "http")]
    Http(crate::HttpSourceConfig),
    /// `type = "singer"` (feature `singer`).
    #[cfg(feature = "singer")]
    Singer(crate::SingerSourceConfig),
    /// A type registered by the host.
    #[serde(untagged)]
    Custom(CustomSourceConfig),
}

impl SourceConfig {
    /// Reads one source table (its `type` and keys) with the built-in types; errors name
    /// key paths relative to the table. Values are not checked: see
    /// [`validate`](Self::validate).
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        registry::builtin().sources.read(table)
    }

    /// The `type` of this source.
    pub fn type_name(&self) -> &str {
        self.parts().0
    }

    /// Checks the values without side effects; see [`BuildSource::validate`].
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        self.parts().1.validate()
    }

    /// Validates, then builds the source; see [`BuildSource::build`].
    pub fn build(&self) -> Result<Box<dyn Source>> {
        self.parts().1.build()
    }

    /// The type name and the config behind it. Adding a connector adds one arm here.
    fn parts(&self) -> (&str, &dyn BuildSource) {
        match self {
            #[cfg(feature = "jsonl")]
            SourceConfig::Jsonl(config) => ("jsonl", config),
            #[cfg(feature = "csv")]
            SourceConfig::Csv(config) => ("csv", config),
            #[cfg(feature = "parquet")]
            SourceConfig::Parquet(config) => ("parquet", config),
            #[cfg(feature = "postgres")]
            SourceConfig::Postgres(config) => ("postgres", config),
            #[cfg(feature = "http")]
            SourceConfig::Http(config) => ("http", config),
            #[cfg(feature = "singer")]
            SourceConfig::Singer(config) => ("singer", config),
            SourceConfig::Custom(custom) => (custom.type_name(), custom.config()),
        }
    }
}

impl BuildSource for SourceConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        SourceConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        SourceConfig::build(self)
    }
}

impl registry::Validate for SourceConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        SourceConfig::validate(self)
    }
}

/// Reads the built-in types; the message lists every problem, one per line, with its key
/// path relative to this table.
impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Value::deserialize(deserializer)?;
        SourceConfig::from_table(&table).map_err(serde::de::Error::custom)
    }
}
