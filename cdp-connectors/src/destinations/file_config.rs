//! The configuration every landing-zone destination shares: [`LandingOptions`], composed
//! with each format's own keys into a [`LandingDestinationConfig`].

use std::fmt;
use std::path::{Path, PathBuf};

use cdp_core::{Destination, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::DEFAULT_MAX_FILE_BYTES;
use super::file::{LandingDestination, LandingFormat};
use crate::config::{BuildDestination, ConfigErrors, from_table_parts};

/// The keys every landing-zone destination (JSONL, Parquet) has, written once here and
/// composed into each one's config:
///
/// ```toml
/// [destinations.lake]
/// type = "jsonl"
/// root = "landing/"                # created if missing
/// name = "lake"                    # default: the type
/// partition_column = "timestamp"   # default: the day each batch was synced
/// max_file_bytes = 268435456
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandingOptions {
    /// Root directory of the landing zone; created if missing.
    pub root: PathBuf,
    /// Instance name. Default: the connector type (`jsonl`, `parquet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A timestamp or date column whose day (UTC) partitions the rows (`dt=YYYY-MM-DD`).
    /// Default: the day each batch was synced. Rows where it is null go to the sync day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_column: Option<String>,
    /// Size at which a file is closed and a new one started. Default 256 MiB.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_max_file_bytes() -> u64 {
    DEFAULT_MAX_FILE_BYTES
}

impl LandingOptions {
    /// Options writing under `root` with every default.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LandingOptions {
            root: root.into(),
            name: None,
            partition_column: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// Records what is wrong with the values, with their key paths.
    fn check(&self, errors: &mut ConfigErrors) {
        if self.root.as_os_str().is_empty() {
            errors.push("root", "must name a directory");
        }
        for (key, value) in [
            ("name", &self.name),
            ("partition_column", &self.partition_column),
        ] {
            if value.as_deref() == Some("") {
                errors.push(key, "must not be empty; omit it for the default");
            }
        }
        if self.max_file_bytes == 0 {
            errors.push("max_file_bytes", "must be at least 1");
        }
    }

    /// Applies the options (but `root`, which the destination was made with).
    fn apply<F: LandingFormat>(&self, destination: LandingDestination<F>) -> LandingDestination<F> {
        let mut destination = destination.with_max_file_bytes(self.max_file_bytes);
        if let Some(name) = &self.name {
            destination = destination.with_name(name);
        }
        if let Some(column) = &self.partition_column {
            destination = destination.with_partition_column(column);
        }
        destination
    }
}

/// The keys of one landing-zone format, beside the [`LandingOptions`] every landing zone
/// has; implemented by [`JsonlDestinationOptions`](super::JsonlDestinationOptions) and
/// [`ParquetDestinationOptions`](super::ParquetDestinationOptions).
pub trait LandingDestinationFormat:
    fmt::Debug
    + Clone
    + PartialEq
    + Default
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
    + sealed::Sealed
{
    /// The file format written.
    type Format: LandingFormat;

    /// Records what is wrong with the format's values, with their key paths.
    fn check(&self, errors: &mut ConfigErrors);

    /// The destination writing under `root`, with the format's settings.
    fn destination(&self, root: &Path) -> LandingDestination<Self::Format>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A landing-zone destination's configuration: the keys every landing zone has
/// ([`LandingOptions`], in `landing`) and the format's own (in `format`), read from one flat
/// table. Used as [`JsonlDestinationConfig`](super::JsonlDestinationConfig) and
/// [`ParquetDestinationConfig`](super::ParquetDestinationConfig).
///
/// Deserializing refuses unknown keys, and the error names the key path of each problem
/// (one per line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LandingDestinationConfig<F> {
    /// The keys every landing zone has.
    #[serde(flatten)]
    pub landing: LandingOptions,
    /// The format's own keys.
    #[serde(flatten)]
    pub format: F,
}

impl<F: LandingDestinationFormat> LandingDestinationConfig<F> {
    /// A configuration writing under `root` with every default.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LandingDestinationConfig {
            landing: LandingOptions::new(root),
            format: F::default(),
        }
    }

    /// Reads one table (without `type`): every unknown key and the first bad value of each
    /// part, with their key paths.
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        let (landing, format) = from_table_parts::<LandingOptions, F>(table)?;
        Ok(LandingDestinationConfig { landing, format })
    }

    /// Sets the instance name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.landing.name = Some(name.into());
        self
    }

    /// Partitions by the day of this timestamp or date column.
    pub fn with_partition_column(mut self, column: impl Into<String>) -> Self {
        self.landing.partition_column = Some(column.into());
        self
    }

    /// Sets the size at which a file is closed.
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.landing.max_file_bytes = bytes;
        self
    }

    /// Checks the values without touching the file system; every problem with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        self.landing.check(&mut errors);
        self.format.check(&mut errors);
        errors.into_result()
    }

    /// Validates the configuration and builds the destination (creating nothing yet: the
    /// root is made when the destination is opened).
    pub fn build(&self) -> Result<Box<dyn Destination>> {
        Ok(Box::new(self.build_destination()?))
    }

    /// Like [`build`](Self::build), returning the concrete type.
    pub fn build_destination(&self) -> Result<LandingDestination<F::Format>> {
        self.validate()?;
        Ok(self
            .landing
            .apply(self.format.destination(&self.landing.root)))
    }
}

impl<F: LandingDestinationFormat> BuildDestination for LandingDestinationConfig<F> {
    fn validate(&self) -> Result<(), ConfigErrors> {
        LandingDestinationConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Destination>> {
        LandingDestinationConfig::build(self)
    }
}

impl<'de, F: LandingDestinationFormat> Deserialize<'de> for LandingDestinationConfig<F> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Value::deserialize(deserializer)?;
        LandingDestinationConfig::from_table(&table).map_err(serde::de::Error::custom)
    }
}
