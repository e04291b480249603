//! [`DestinationConfig`]: one `[destinations.<name>]` table, typed.

use std::fmt;

use cdp_core::{Destination, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::custom::CustomConfig;
use super::error::ConfigErrors;
use super::registry;

/// What a parsed destination configuration can do: check its values, and build the
/// destination.
///
/// Implemented by every built-in destination config and by [`DestinationConfig`]; a host
/// implements it for the config of a destination type it registers with
/// [`ConnectorRegistry::register_destination`](super::ConnectorRegistry::register_destination).
pub trait BuildDestination: fmt::Debug + Send + Sync + 'static {
    /// Checks the values without side effects: no file is opened, no connection made, no
    /// environment variable read. Reports every problem found, each with its key path
    /// relative to the destination's table.
    fn validate(&self) -> Result<(), ConfigErrors>;

    /// Validates, then builds the destination. Building connects to nothing and writes
    /// nothing: that happens when the destination is checked or opened.
    fn build(&self) -> Result<Box<dyn Destination>>;
}

/// The configuration of a destination of a type a host registered.
pub type CustomDestinationConfig = CustomConfig<dyn BuildDestination>;

/// One destination's configuration, tagged by `type`:
///
/// ```toml
/// [destinations.lake]
/// type = "parquet"
/// root = "lake/"
/// ```
///
/// Each built-in type is a variant behind its connector's cargo feature and holds that
/// connector's config; types a host registered with
/// [`ConnectorRegistry`](super::ConnectorRegistry) are
/// [`Custom`](DestinationConfig::Custom). Read and checked like a
/// [`SourceConfig`](super::SourceConfig).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
// A file holds a handful, each read once: boxing the PostgreSQL variant would only make
// every match on it clumsier.
#[allow(clippy::large_enum_variant)]
pub enum DestinationConfig {
    /// `type = "jsonl"` (feature `jsonl`).
    #[cfg(feature = "jsonl")]
    Jsonl(crate::JsonlDestinationConfig),
    /// `type = "parquet"` (feature `parquet`).
    #[cfg(feature = "parquet")]
    Parquet(crate::ParquetDestinationConfig),
    /// `type = "postgres"` (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(crate::PostgresDestinationConfig),
    /// `type = "webhook"` (feature `http`).
    #[cfg(feature = "http")]
    Webhook(crate::WebhookDestinationConfig),
    /// `type = "singer"` (feature `singer`).
    #[cfg(feature = "singer")]
    Singer(crate::SingerDestinationConfig),
    /// A type registered by the host.
    #[serde(untagged)]
    Custom(CustomDestinationConfig),
}

impl DestinationConfig {
    /// Reads one destination table (its `type` and keys) with the built-in types; errors
    /// name key paths relative to the table. Values are not checked: see
    /// [`validate`](Self::validate).
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        registry::builtin().destinations.read(table)
    }

    /// The `type` of this destination.
    pub fn type_name(&self) -> &str {
        self.parts().0
    }

    /// Checks the values without side effects; see [`BuildDestination::validate`].
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        self.parts().1.validate()
    }

    /// Validates, then builds the destination; see [`BuildDestination::build`].
    pub fn build(&self) -> Result<Box<dyn Destination>> {
        self.parts().1.build()
    }

    /// The type name and the config behind it. Adding a connector adds one arm here.
    fn parts(&self) -> (&str, &dyn BuildDestination) {
        match self {
            #[cfg(feature = "jsonl")]
            DestinationConfig::Jsonl(config) => ("jsonl", config),
            #[cfg(feature = "parquet")]
            DestinationConfig::Parquet(config) => ("parquet", config),
            #[cfg(feature = "postgres")]
            DestinationConfig::Postgres(config) => ("postgres", config),
            #[cfg(feature = "http")]
            DestinationConfig::Webhook(config) => ("webhook", config),
            #[cfg(feature = "singer")]
            DestinationConfig::Singer(config) => ("singer", config),
            DestinationConfig::Custom(custom) => (custom.type_name(), custom.config()),
        }
    }
}

impl BuildDestination for DestinationConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        DestinationConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Destination>> {
        DestinationConfig::build(self)
    }
}

impl registry::Validate for DestinationConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        DestinationConfig::validate(self)
    }
}

/// Reads the built-in types; the message lists every problem, one per line, with its key
/// path relative to this table.
impl<'de> Deserialize<'de> for DestinationConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Value::deserialize(deserializer)?;
        DestinationConfig::from_table(&table).map_err(serde::de::Error::custom)
    }
}
