//! The Singer destination: any Singer target as a cdp destination (feature `singer`).

mod config;
mod deliver;
mod encode;
mod schema;
mod stage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use cdp_core::{
    Batch, Destination, Error, OpenContext, Result, StreamSpec, WriteOutcome, async_trait,
};
use serde_json::{Value, json};

pub use config::SingerDestinationConfig;

use self::deliver::{Confirm, deliver};
use self::stage::Stage;
use crate::singer::process::{Program, ProgramConfig};

const CONNECTOR: &str = "singer";

/// Writes through a [Singer](https://hub.meltano.com/singer/spec) target run as a child
/// process: every Singer target becomes a cdp destination.
///
/// Each stream is sent as a `SCHEMA` (JSON Schema from the Arrow schema, the system
/// columns included; `key_properties` from the stream's primary key, or
/// `_cdp_record_hash` when it has none) and its rows as `RECORD`s; JSON-text columns go
/// as the JSON they hold. A row JSON cannot carry (NaN, an infinity, a temporal value
/// outside what text renders) is refused and becomes a dead letter.
///
/// # Delivery
///
/// Targets write as they read and say what they made durable by writing back the `STATE`
/// they were sent, so the messages of each epoch are first staged on disk
/// (`{staging_dir}/{pipeline}/{name}/`): [`flush`](Destination::flush) makes them durable
/// there, and only once the pipeline has committed the epoch does
/// [`commit`](Destination::commit) start the target (`COMMAND ARGS… --config FILE`) and
/// send them, followed by a `STATE` naming the epoch:
///
/// ```json
/// {"type":"STATE","value":{"cdp_destination":"warehouse","cdp_epoch":7,"cdp_pipeline":"crm"}}
/// ```
///
/// The epoch is delivered when the target exits with status 0 having written that state
/// back on stdout (`confirm_state = false` accepts the exit status alone, for targets that
/// write no state); then its staged file is removed. A target that fails, is killed or
/// does not confirm fails the commit with its status and last stderr lines, and the epoch
/// stays staged: when the destination opens next it sends every staged epoch the pipeline
/// committed (and drops those it did not), so a crash at any point loses nothing. A target
/// that fails (or a crash that strikes) after it wrote part of an epoch is sent the whole
/// epoch again: a target that upserts on `key_properties` writes each row once, an
/// append-only one may write the part it had twice.
///
/// Each delivery starts the target afresh, so a target sees a complete input with a
/// final `STATE` every epoch; pace epochs with the pipeline's commit interval.
#[derive(Debug)]
pub struct SingerDestination {
    name: String,
    program: Program,
    staging_dir: PathBuf,
    confirm: Confirm,
    pipeline: Option<String>,
    stage: Option<Stage>,
    specs: HashMap<String, StreamSpec>,
    /// The schema of each stream whose `SCHEMA` is in the epoch being written.
    announced: HashMap<String, SchemaRef>,
}

impl SingerDestination {
    /// A destination running the target `command` (a path, or a program on `PATH`) with
    /// an empty config, staging epochs under `staging_dir`. Its name is the command's file
    /// name.
    pub fn new(command: impl Into<String>, staging_dir: impl Into<PathBuf>) -> Self {
        let command = command.into();
        let name = Path::new(&command).file_name().map_or_else(
            || CONNECTOR.to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        SingerDestination {
            program: Program::new(name.clone(), command),
            name,
            staging_dir: staging_dir.into(),
            confirm: Confirm {
                state: true,
                timeout: Duration::from_secs(3600),
            },
            pipeline: None,
            stage: None,
            specs: HashMap::new(),
            announced: HashMap::new(),
        }
    }

    /// Sets the instance name (metrics, errors, governance, and the staging folder).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self.program.connector = self.name.clone();
        self
    }

    /// Adds arguments before `--config`.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.program.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the target (it inherits the others).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.program.env.insert(key.into(), value.into());
        self
    }

    /// Runs the target in `dir`.
    pub fn with_cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.program.cwd = Some(dir.into());
        self
    }

    /// The target's config, a JSON object written to a private file for each run.
    pub fn with_config(mut self, config: Value) -> Self {
        self.program.config = ProgramConfig::Inline(config);
        self
    }

    /// The target's config file.
    pub fn with_config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.program.config = ProgramConfig::File(path.into());
        self
    }

    /// Whether an epoch counts as delivered only when the target wrote its state back
    /// (default `true`); with `false`, exiting with status 0 is enough.
    pub fn with_confirm_state(mut self, confirm: bool) -> Self {
        self.confirm.state = confirm;
        self
    }

    /// Longest one delivery may take before the target is killed and the commit fails.
    /// Default one hour.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.confirm.timeout = timeout;
        self
    }

    /// Lines of the target's stderr kept for errors. Default 20.
    pub fn with_stderr_lines(mut self, lines: usize) -> Self {
        self.program.stderr_lines = lines;
        self
    }

    fn stage(&mut self) -> Result<&mut Stage> {
        self.stage.as_mut().ok_or_else(|| {
            Error::Config(format!(
                "singer destination `{}`: written before it was opened",
                self.program.connector
            ))
        })
    }

    fn marker(&self, epoch: u64) -> Value {
        json!({
            "cdp_pipeline": self.pipeline.clone().unwrap_or_default(),
            "cdp_destination": self.name,
            "cdp_epoch": epoch,
        })
    }

    /// Delivers every staged epoch up to `epoch` (the committed ones), in order; with
    /// `drop_later`, removes the staged epochs after it (never committed).
    async fn deliver_staged(&mut self, epoch: u64, drop_later: bool) -> Result<()> {
        let staged = match &self.stage {
            Some(stage) => stage.epochs()?,
            None => return Ok(()),
        };
        for (staged_epoch, path) in staged {
            if staged_epoch > epoch {
                if drop_later && let Some(stage) = &self.stage {
                    tracing::info!(destination = %self.name, epoch = staged_epoch,
                        "dropping a staged epoch the pipeline did not commit");
                    stage.remove(&path)?;
                }
                continue;
            }
            let (program, marker, confirm) = (
                self.program.clone(),
                self.marker(staged_epoch),
                self.confirm,
            );
            let file = path.clone();
            tokio::task::spawn_blocking(move || {
                deliver(&program, &file, staged_epoch, &marker, confirm)
            })
            .await
            .map_err(|e| Error::external(self.name.clone(), e))??;
            if let Some(stage) = &self.stage {
                stage.remove(&path)?;
            }
            tracing::debug!(destination = %self.name, epoch = staged_epoch, "delivered to the target");
        }
        Ok(())
    }
}

#[async_trait]
impl Destination for SingerDestination {
    fn name(&self) -> &str {
        &self.name
    }

    /// Sends the committed epochs a stopped run left staged, and drops the others.
    async fn open(&mut self, ctx: &OpenContext) -> Result<()> {
        self.pipeline = Some(ctx.pipeline_id.clone());
        self.stage = Some(Stage::open(
            &self.staging_dir,
            &ctx.pipeline_id,
            &self.name,
        )?);
        self.announced.clear();
        self.deliver_staged(ctx.committed_epoch, true).await
    }

    async fn prepare(&mut self, stream: &StreamSpec) -> Result<()> {
        if self.announced.get(&stream.name) != Some(&stream.schema) {
            self.announced.remove(&stream.name);
        }
        self.specs.insert(stream.name.clone(), stream.clone());
        Ok(())
    }

    async fn write(&mut self, batch: &Batch) -> Result<WriteOutcome> {
        let rejected = encode::refused(&batch.data);
        let rows = encode::without(&batch.data, &rejected)?;
        if rows.num_rows() > 0 {
            let mut out = Vec::with_capacity(rows.get_array_memory_size());
            let schema = rows.schema();
            if self.announced.get(&*batch.stream) != Some(&schema) {
                let key = self
                    .specs
                    .get(&*batch.stream)
                    .map(|s| s.primary_key.clone())
                    .unwrap_or_default();
                out.extend_from_slice(
                    encode::schema_line(&batch.stream, &schema, &key)?.as_bytes(),
                );
                self.announced.insert(batch.stream.to_string(), schema);
            }
            encode::record_lines(&batch.stream, &rows, &mut out)?;
            self.stage()?.append(&out)?;
        }
        Ok(WriteOutcome { rejected })
    }

    async fn flush(&mut self, epoch: u64) -> Result<()> {
        let stage = self.stage()?;
        if stage.is_empty() {
            return Ok(());
        }
        stage.seal(epoch)?;
        // Each epoch is sent to a target of its own, which needs the schemas again.
        self.announced.clear();
        Ok(())
    }

    async fn commit(&mut self, epoch: u64) -> Result<()> {
        self.deliver_staged(epoch, false).await
    }
}
