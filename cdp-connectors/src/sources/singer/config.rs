//! Configuration of the Singer source.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cdp_core::{Result, Source};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CatalogFlag, SingerSource};
use crate::config::{BuildSource, ConfigErrors, from_table};
use crate::sources::schemaless::{DEFAULT_OVERFLOW_COLUMN, DriftPolicy, NewFields, TypeConflicts};

/// Runs a Singer tap and reads its messages (see [`SingerSource`] for what becomes of
/// each):
///
/// ```toml
/// [sources.events]
/// type = "singer"
/// command = "tap-jsonl"              # a path, or a program on PATH
/// config = { path = "data/*.jsonl", stream_name = "events" }
/// batch_size = 8192
/// ```
///
/// With every key:
///
/// ```toml
/// [sources.crm]
/// type = "singer"
/// name = "crm"                       # default: the command's file name
/// command = "/opt/taps/bin/tap-hubspot"
/// args = []                          # before --config
/// env = { TAP_LOG_LEVEL = "info" }
/// cwd = "/opt/taps"
/// config_file = "/etc/cdp/tap-hubspot.json"   # or an inline `config = { … }`
/// catalog_file = "/etc/cdp/hubspot-catalog.json"
/// catalog_flag = "catalog"           # or "properties", for older taps
/// discover = true                    # run --discover when no catalog_file is given
/// batch_size = 8192
/// new_fields = "evolve"              # or "overflow", "dead_letter"
/// type_conflicts = "widen"           # or "dead_letter"
/// overflow_column = "_overflow"
/// stderr_lines = 20
/// max_line_bytes = 67108864
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingerSourceConfig {
    /// Instance name. Default: the command's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tap: a path, or a program on `PATH`.
    pub command: String,
    /// Arguments given before `--config`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables of the tap, on top of the inherited ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory of the tap. Default: the pipeline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// The tap's config as a table, written to a private temporary file for each run.
    /// Exclusive with `config_file`; without either the tap gets `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// The tap's config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// A catalog (stream selection, schemas) handed to the tap and read by discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_file: Option<PathBuf>,
    /// How the catalog is handed over: `catalog` (`--catalog`) or `properties`
    /// (`--properties`, older taps). Default `catalog`.
    #[serde(default)]
    pub catalog_flag: CatalogFlag,
    /// Whether discovery runs the tap with `--discover` when no `catalog_file` is given.
    /// Default `true`; with `false` the streams are learned from the tap's `SCHEMA`
    /// messages.
    #[serde(default = "yes")]
    pub discover: bool,
    /// Most rows per batch, per stream. Default 8192.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// What happens to a key the tap's schema does not declare: `evolve` adds the field,
    /// `overflow` keeps the unknown keys in `overflow_column`, `dead_letter` sends the
    /// record to the dead letters. Default `evolve`.
    #[serde(default)]
    pub new_fields: NewFields,
    /// What happens to a value of another type in a field this source added: `widen` or
    /// `dead_letter`. Fields the tap declared keep their types: a value that does not fit
    /// is a dead letter. Default `widen`.
    #[serde(default)]
    pub type_conflicts: TypeConflicts,
    /// The overflow column with `new_fields = "overflow"`. Default `_overflow`.
    #[serde(default = "default_overflow_column")]
    pub overflow_column: String,
    /// Lines of the tap's stderr kept for errors. Default 20.
    #[serde(default = "default_stderr_lines")]
    pub stderr_lines: usize,
    /// Longest line read from the tap or a batch file; a longer one is a dead letter.
    /// Default 64 MiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn yes() -> bool {
    true
}

fn default_batch_size() -> usize {
    8192
}

fn default_overflow_column() -> String {
    DEFAULT_OVERFLOW_COLUMN.to_string()
}

fn default_stderr_lines() -> usize {
    20
}

fn default_max_line_bytes() -> usize {
    64 * 1024 * 1024
}

impl SingerSourceConfig {
    /// A config running `command` with the defaults.
    pub fn new(command: impl Into<String>) -> Self {
        SingerSourceConfig {
            name: None,
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            config: None,
            config_file: None,
            catalog_file: None,
            catalog_flag: CatalogFlag::default(),
            discover: true,
            batch_size: default_batch_size(),
            new_fields: NewFields::default(),
            type_conflicts: TypeConflicts::default(),
            overflow_column: default_overflow_column(),
            stderr_lines: default_stderr_lines(),
            max_line_bytes: default_max_line_bytes(),
        }
    }

    /// Reads a `[sources.<name>]` table (without checking values).
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        from_table(table)
    }

    /// Checks the values without running anything; every problem with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        if self.command.trim().is_empty() {
            errors.push("command", "must name the tap to run");
        }
        if self.config.is_some() && self.config_file.is_some() {
            errors.push("config_file", "give `config` or `config_file`, not both");
        }
        if let Some(config) = &self.config
            && !config.is_object()
        {
            errors.push("config", "must be a table (the tap's JSON config object)");
        }
        if self.batch_size == 0 {
            errors.push("batch_size", "must be at least 1");
        }
        if self.max_line_bytes == 0 {
            errors.push("max_line_bytes", "must be at least 1");
        }
        if let Some(problem) = self.policy().overflow_problem() {
            errors.push("overflow_column", problem);
        }
        errors.into_result()
    }

    fn policy(&self) -> DriftPolicy {
        DriftPolicy {
            new_fields: self.new_fields,
            type_conflicts: self.type_conflicts,
            overflow_column: self.overflow_column.clone(),
        }
    }

    /// Validates, then builds the source (nothing is run until it is discovered or read).
    pub fn build_source(&self) -> Result<SingerSource> {
        self.validate()?;
        let mut source = SingerSource::new(self.command.clone())
            .with_args(self.args.clone())
            .with_catalog_flag(self.catalog_flag)
            .with_discover(self.discover)
            .with_batch_size(self.batch_size)
            .with_stderr_lines(self.stderr_lines)
            .with_max_line_bytes(self.max_line_bytes);
        if let Some(name) = &self.name {
            source = source.with_name(name.clone());
        }
        for (key, value) in &self.env {
            source = source.with_env(key.clone(), value.clone());
        }
        if let Some(cwd) = &self.cwd {
            source = source.with_cwd(cwd.clone());
        }
        if let Some(config) = &self.config {
            source = source.with_config(config.clone());
        }
        if let Some(path) = &self.config_file {
            source = source.with_config_file(path.clone());
        }
        if let Some(path) = &self.catalog_file {
            source = source.with_catalog_file(path.clone());
        }
        source.policy = self.policy();
        Ok(source)
    }
}

impl BuildSource for SingerSourceConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        SingerSourceConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Source>> {
        Ok(Box::new(self.build_source()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn problems_are_named_by_key() {
        let mut config = SingerSourceConfig::new(" ");
        config.config = Some(json!([1]));
        config.config_file = Some("c.json".into());
        config.batch_size = 0;
        let errors = config.validate().unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path()).collect();
        assert_eq!(paths, ["command", "config_file", "config", "batch_size"]);
    }
}
