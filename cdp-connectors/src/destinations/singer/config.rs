//! Configuration of the Singer destination.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cdp_core::{Destination, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SingerDestination;
use crate::config::{BuildDestination, ConfigErrors, from_table};

/// Writes through a Singer target (see [`SingerDestination`] for how epochs are staged,
/// delivered and confirmed):
///
/// ```toml
/// [destinations.files]
/// type = "singer"
/// command = "target-jsonl"           # a path, or a program on PATH
/// config = { destination_path = "out/", do_timestamp_file = false }
/// staging_dir = "state/singer-staging"
/// ```
///
/// With every key:
///
/// ```toml
/// [destinations.warehouse]
/// type = "singer"
/// name = "warehouse"                 # default: the command's file name
/// command = "/opt/targets/bin/target-postgres"
/// args = []                          # before --config
/// env = { LOGLEVEL = "info" }
/// cwd = "/opt/targets"
/// config_file = "/etc/cdp/target-postgres.json"   # or an inline `config = { … }`
/// staging_dir = "/var/lib/cdp/singer-staging"
/// confirm_state = true               # require the epoch's STATE written back
/// timeout_secs = 3600                # longest one delivery may take
/// stderr_lines = 20
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingerDestinationConfig {
    /// Instance name. Default: the command's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The target: a path, or a program on `PATH`.
    pub command: String,
    /// Arguments given before `--config`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables of the target, on top of the inherited ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory of the target. Default: the pipeline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// The target's config as a table, written to a private temporary file for each run.
    /// Exclusive with `config_file`; without either the target gets `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    /// The target's config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// Where epochs wait, durably, until the pipeline committed them and the target
    /// confirmed them. Keep it on the disk the pipeline's state is on.
    pub staging_dir: PathBuf,
    /// Whether the target must write the epoch's state back (default `true`); `false`
    /// accepts exit status 0 alone.
    #[serde(default = "yes")]
    pub confirm_state: bool,
    /// Longest one delivery may take, in seconds, before the target is killed. Default
    /// 3600.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Lines of the target's stderr kept for errors. Default 20.
    #[serde(default = "default_stderr_lines")]
    pub stderr_lines: usize,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> u64 {
    3600
}

fn default_stderr_lines() -> usize {
    20
}

impl SingerDestinationConfig {
    /// A config running `command`, staging under `staging_dir`, with the defaults.
    pub fn new(command: impl Into<String>, staging_dir: impl Into<PathBuf>) -> Self {
        SingerDestinationConfig {
            name: None,
            command: command.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            config: None,
            config_file: None,
            staging_dir: staging_dir.into(),
            confirm_state: true,
            timeout_secs: default_timeout(),
            stderr_lines: default_stderr_lines(),
        }
    }

    /// Reads a `[destinations.<name>]` table (without checking values).
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        from_table(table)
    }

    /// Checks the values without running anything; every problem with its key path.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        if self.command.trim().is_empty() {
            errors.push("command", "must name the target to run");
        }
        if self.config.is_some() && self.config_file.is_some() {
            errors.push("config_file", "give `config` or `config_file`, not both");
        }
        if let Some(config) = &self.config
            && !config.is_object()
        {
            errors.push(
                "config",
                "must be a table (the target's JSON config object)",
            );
        }
        if self.staging_dir.as_os_str().is_empty() {
            errors.push("staging_dir", "must not be empty");
        }
        if self.timeout_secs == 0 {
            errors.push("timeout_secs", "must be at least 1");
        }
        errors.into_result()
    }

    /// Validates, then builds the destination (nothing is run until it opens).
    pub fn build_destination(&self) -> Result<SingerDestination> {
        self.validate()?;
        let mut destination =
            SingerDestination::new(self.command.clone(), self.staging_dir.clone())
                .with_args(self.args.clone())
                .with_confirm_state(self.confirm_state)
                .with_timeout(Duration::from_secs(self.timeout_secs))
                .with_stderr_lines(self.stderr_lines);
        if let Some(name) = &self.name {
            destination = destination.with_name(name.clone());
        }
        for (key, value) in &self.env {
            destination = destination.with_env(key.clone(), value.clone());
        }
        if let Some(cwd) = &self.cwd {
            destination = destination.with_cwd(cwd.clone());
        }
        if let Some(config) = &self.config {
            destination = destination.with_config(config.clone());
        }
        if let Some(path) = &self.config_file {
            destination = destination.with_config_file(path.clone());
        }
        Ok(destination)
    }
}

impl BuildDestination for SingerDestinationConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        SingerDestinationConfig::validate(self)
    }

    fn build(&self) -> Result<Box<dyn Destination>> {
        Ok(Box::new(self.build_destination()?))
    }
}
