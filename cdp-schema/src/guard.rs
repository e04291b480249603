//! The schema guard: a pipeline transform that detects every schema change of a stream
//! before any destination sees it, classifies it by the subject's policy, and acts.
//!
//! - A change whose highest severity is below [`Severity::Block`] (additions, promotions,
//!   declared renames by default) is registered as the subject's next version and passed
//!   on; the runtime re-prepares destinations with the new schema, so they evolve (add a
//!   column, widen a type).
//! - A blocking change is handled by the guard's [`BreakingAction`]: fail the stream with
//!   an error naming the change ([`Block`](BreakingAction::Block)); send the rows to the
//!   dead-letter path and keep the stream going ([`Quarantine`](BreakingAction::Quarantine));
//!   or keep the destination's columns and put the new shape beside them, Stitch-style
//!   ([`SplitColumn`](BreakingAction::SplitColumn)): a column whose type changed keeps its
//!   type and goes null while the new values land in `amount__string`; a column that
//!   disappeared goes null; new columns are added.
//!
//! A change whose severities pass but which the subject's compatibility mode refuses (a
//! required field added under `BACKWARD`, say) is breaking too: the registry has the last
//! word on what becomes a version.
//!
//! Every decision is recorded as a [`GuardEvent`] with the classified changes and their
//! impact on registered consumers, readable through a [`GuardHandle`]. With
//! [`SchemaGuard::enforce_contracts`], rows are also validated against the contract
//! registered with the accepted version.
//!
//! The guard keeps its per-stream state in memory and reads the registry when it first
//! sees a stream, so a restarted pipeline picks up the accepted version where it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_core::event::row_to_json;
use cdp_core::{Batch, DeadLetter, Transform, TransformOutput};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::consumers::{ConsumerRegistry, Impact};
use crate::contract::{Contract, ContractStats, enforce};
use crate::error::{Error, Result, lock};
use crate::registry::SchemaRegistry;
use crate::severity::{ClassifiedDiff, Severity};
use crate::types::{self, Promotions, TypeFamily, TypeRelation, fingerprint};

/// What the guard does with a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakingAction {
    /// Fail the run with an error naming the change; nothing of the batch moves, and the
    /// last committed checkpoint stays, so a re-run after a fix replays it.
    #[default]
    Block,
    /// Dead-letter the batch's rows with the reason, keep the stream going.
    Quarantine,
    /// Keep every column destinations have, nulling what no longer fits, and add
    /// `<column>__<type>` columns for values of a new type. Changes this cannot express
    /// (inside structs or lists) fall back to quarantine.
    SplitColumn,
}

/// What the guard did about a schema it had not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    /// The schema was registered (first sight, or a non-breaking change) and passed on.
    Registered,
    /// The stream was failed.
    Blocked,
    /// The rows were dead-lettered.
    Quarantined,
    /// The rows were reshaped onto the accepted columns plus split columns.
    Split,
}

/// One schema decision of the guard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardEvent {
    /// The stream (registry subject).
    pub stream: String,
    /// The accepted version before the change, if there was one.
    pub from_version: Option<u32>,
    /// The version destinations receive after it (unchanged when blocked or quarantined).
    pub to_version: Option<u32>,
    /// The changes and their severities.
    pub changes: ClassifiedDiff,
    /// What they do to the stream's registered consumers.
    pub impact: Impact,
    /// What the guard did.
    pub action: GuardAction,
    /// When.
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<GuardEvent>,
    quarantined_rows: u64,
}

/// Reads what a [`SchemaGuard`] decided, after the pipeline took the guard.
#[derive(Debug, Clone, Default)]
pub struct GuardHandle {
    log: Arc<Mutex<Log>>,
    contract: Arc<ContractStats>,
}

impl GuardHandle {
    /// Every decision so far, in order.
    pub fn events(&self) -> Vec<GuardEvent> {
        self.log
            .lock()
            .map(|l| l.events.clone())
            .unwrap_or_default()
    }

    /// Rows sent to the dead-letter path by quarantine.
    pub fn quarantined_rows(&self) -> u64 {
        self.log.lock().map(|l| l.quarantined_rows).unwrap_or(0)
    }

    /// What contract enforcement did (see [`SchemaGuard::enforce_contracts`]).
    pub fn contract_stats(&self) -> &ContractStats {
        &self.contract
    }
}

/// How to build each output column from an incoming batch.
#[derive(Debug, Clone)]
enum Source {
    /// Incoming column `index`, cast to the output type when it differs.
    Column(usize),
    /// A column of nulls.
    Null,
}

#[derive(Debug, Clone)]
enum Decision {
    Pass {
        version: u32,
    },
    Conform {
        schema: SchemaRef,
        sources: Vec<Source>,
        version: u32,
    },
    Quarantine {
        reason: String,
    },
    Block {
        message: String,
    },
}

/// The schema destinations receive, as registered.
#[derive(Debug, Clone)]
struct Accepted {
    schema: SchemaRef,
    fingerprint: String,
    version: u32,
    /// The version's contract, carried forward to the versions the guard registers.
    contract: Option<Arc<Contract>>,
}

#[derive(Debug, Default)]
struct StreamState {
    loaded: bool,
    accepted: Option<Accepted>,
    /// Decisions per incoming schema fingerprint, for the current accepted schema.
    decisions: HashMap<String, Decision>,
    /// The last incoming schema and its fingerprint: batches of one source usually share
    /// the same `Arc<Schema>`, so most batches skip hashing.
    last: Option<(SchemaRef, String)>,
}

impl StreamState {
    fn accept(&mut self, schema: SchemaRef, registration: crate::registry::Registration) {
        let contract = self.accepted.as_ref().and_then(|a| a.contract.clone());
        self.accepted = Some(Accepted {
            schema,
            fingerprint: registration.fingerprint,
            version: registration.version,
            contract,
        });
        self.decisions.clear();
    }

    fn contract(&self) -> Option<Contract> {
        self.accepted
            .as_ref()
            .and_then(|a| a.contract.as_deref().cloned())
    }
}

/// The schema guard transform. See the [module docs](self).
#[derive(Debug)]
pub struct SchemaGuard {
    name: String,
    registry: SchemaRegistry,
    consumers: Option<Arc<ConsumerRegistry>>,
    action: BreakingAction,
    enforce_contracts: bool,
    streams: Mutex<HashMap<String, StreamState>>,
    handle: GuardHandle,
}

impl SchemaGuard {
    /// A guard registering in `registry`, blocking breaking changes.
    pub fn new(registry: SchemaRegistry) -> Self {
        SchemaGuard {
            name: "schema_guard".into(),
            registry,
            consumers: None,
            action: BreakingAction::default(),
            enforce_contracts: false,
            streams: Mutex::default(),
            handle: GuardHandle::default(),
        }
    }

    /// Judges impact on these consumers and names the broken ones in errors and events.
    pub fn with_consumers(mut self, consumers: Arc<ConsumerRegistry>) -> Self {
        self.consumers = Some(consumers);
        self
    }

    /// Sets what happens on a breaking change.
    pub fn on_breaking(mut self, action: BreakingAction) -> Self {
        self.action = action;
        self
    }

    /// Also validates rows against the contract registered with the stream's accepted
    /// version: violating rows go to the dead-letter path, valid rows continue. Versions the
    /// guard registers carry the previous version's contract forward.
    pub fn enforce_contracts(mut self) -> Self {
        self.enforce_contracts = true;
        self
    }

    /// Renames the transform (for dead letters, metrics and errors).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A handle to the guard's decisions.
    pub fn handle(&self) -> GuardHandle {
        self.handle.clone()
    }

    fn record(&self, event: GuardEvent) {
        let level = if event.action == GuardAction::Registered {
            tracing::Level::INFO
        } else {
            tracing::Level::WARN
        };
        let changes: Vec<String> = event
            .changes
            .changes
            .iter()
            .map(|c| format!("{} [{}]", c.change.describe(), c.severity))
            .collect();
        if level == tracing::Level::INFO {
            tracing::info!(stream = %event.stream, version = ?event.to_version, changes = ?changes, "schema accepted");
        } else {
            tracing::warn!(stream = %event.stream, action = ?event.action, changes = ?changes,
                broken = ?event.impact.broken(), "breaking schema change");
        }
        if let Ok(mut log) = self.handle.log.lock() {
            log.events.push(event);
        }
    }

    /// Decides what to do with batches of `incoming` on `stream`.
    fn decide(
        &self,
        stream: &str,
        state: &mut StreamState,
        incoming: &SchemaRef,
    ) -> Result<Decision> {
        let Some(Accepted {
            schema: accepted,
            version: from_version,
            ..
        }) = state.accepted.clone()
        else {
            let reg = self.registry.register(stream, incoming)?;
            let version = reg.version;
            state.accept(incoming.clone(), reg);
            self.record(GuardEvent {
                stream: stream.to_string(),
                from_version: None,
                to_version: Some(version),
                changes: ClassifiedDiff::default(),
                impact: Impact::default(),
                action: GuardAction::Registered,
                at: Utc::now(),
            });
            return Ok(Decision::Pass { version });
        };
        let policy = self.registry.policy(stream)?;
        let changes = policy.assess(&accepted, incoming);
        let impact = match &self.consumers {
            Some(c) => c.impact(stream, &changes.diff())?,
            None => Impact::default(),
        };
        let event = |action, to_version| GuardEvent {
            stream: stream.to_string(),
            from_version: Some(from_version),
            to_version,
            changes: changes.clone(),
            impact: impact.clone(),
            action,
            at: Utc::now(),
        };
        let mut reasons: Vec<String> = changes
            .blocking()
            .map(|c| format!("{} [{}]", c.change.describe(), c.severity))
            .collect();
        if changes.max_severity() < Severity::Block {
            match self
                .registry
                .register_with_contract(stream, incoming, state.contract())
            {
                Ok(reg) => {
                    let version = reg.version;
                    state.accept(incoming.clone(), reg);
                    self.record(event(GuardAction::Registered, Some(version)));
                    return Ok(Decision::Pass { version });
                }
                Err(Error::Incompatible {
                    mode, reasons: r, ..
                }) => {
                    reasons.push(format!("not {mode} compatible: {}", r.join("; ")));
                }
                Err(e) => return Err(e),
            }
        }
        let broken = impact.broken();
        let mut message = reasons.join("; ");
        if !broken.is_empty() {
            message.push_str(&format!("; broken consumers: {}", broken.join(", ")));
        }
        match self.action {
            BreakingAction::Block => {
                self.record(event(GuardAction::Blocked, Some(from_version)));
                Ok(Decision::Block { message })
            }
            BreakingAction::SplitColumn => {
                if let Some((schema, sources)) = split_plan(&accepted, incoming, policy.promotions)
                {
                    match self
                        .registry
                        .register_with_contract(stream, &schema, state.contract())
                    {
                        Ok(reg) => {
                            let version = reg.version;
                            state.accept(schema.clone(), reg);
                            self.record(event(GuardAction::Split, Some(version)));
                            return Ok(Decision::Conform {
                                schema,
                                sources,
                                version,
                            });
                        }
                        Err(Error::Incompatible {
                            mode, reasons: r, ..
                        }) => {
                            message.push_str(&format!(
                                "; split columns not {mode} compatible: {}",
                                r.join("; ")
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.record(event(GuardAction::Quarantined, Some(from_version)));
                Ok(Decision::Quarantine { reason: message })
            }
            BreakingAction::Quarantine => {
                self.record(event(GuardAction::Quarantined, Some(from_version)));
                Ok(Decision::Quarantine { reason: message })
            }
        }
    }

    fn process(&self, mut batch: Batch) -> Result<TransformOutput> {
        let incoming = batch.data.schema();
        let stream = batch.stream.to_string();
        let (decision, contract) = {
            let mut streams = lock(&self.streams, "schema guard")?;
            let state = streams.entry(stream.clone()).or_default();
            if !state.loaded {
                state.accepted = self.registry.latest(&stream)?.map(|v| Accepted {
                    schema: v.schema,
                    fingerprint: v.fingerprint,
                    version: v.version,
                    contract: v.contract.map(Arc::new),
                });
                state.loaded = true;
            }
            let print = match &state.last {
                Some((schema, print)) if Arc::ptr_eq(schema, &incoming) => print.clone(),
                _ => {
                    let print = fingerprint(&incoming);
                    state.last = Some((incoming.clone(), print.clone()));
                    print
                }
            };
            let decision = match &state.accepted {
                Some(a) if a.fingerprint == print => Decision::Pass { version: a.version },
                _ => match state.decisions.get(&print) {
                    Some(d) => d.clone(),
                    None => {
                        let d = self.decide(&stream, state, &incoming)?;
                        // Passes re-check against the new accepted schema by fingerprint.
                        if !matches!(d, Decision::Pass { .. }) {
                            state.decisions.insert(print.clone(), d.clone());
                        }
                        d
                    }
                },
            };
            let contract = if self.enforce_contracts {
                state.accepted.as_ref().and_then(|a| a.contract.clone())
            } else {
                None
            };
            (decision, contract)
        };
        let checked = |batch: Batch| -> Result<TransformOutput> {
            match &contract {
                Some(c) => enforce(c, batch, &self.name, &self.handle.contract),
                None => Ok(TransformOutput::pass(batch)),
            }
        };
        match decision {
            Decision::Pass { version } => {
                batch.meta.schema_version = Some(version);
                checked(batch)
            }
            Decision::Conform {
                schema,
                sources,
                version,
            } => {
                let data = conform(&batch.data, &schema, &sources)?;
                batch.meta.schema_version = Some(version);
                checked(Batch { data, ..batch })
            }
            Decision::Block { message } => Err(Error::Blocked { stream, message }),
            Decision::Quarantine { reason } => {
                let stage = format!("transform {}", self.name);
                let rows = batch.num_rows();
                let letters = (0..rows)
                    .map(|row| {
                        DeadLetter::new(
                            stream.clone(),
                            stage.clone(),
                            format!("quarantined by breaking schema change: {reason}"),
                            row_to_json(&batch.data, row),
                        )
                        .at(format!("batch {} row {row}", batch.meta.lineage_id))
                    })
                    .collect();
                if let Ok(mut log) = self.handle.log.lock() {
                    log.quarantined_rows += rows as u64;
                }
                Ok(TransformOutput {
                    batch: None,
                    dead_letters: letters,
                })
            }
        }
    }
}

impl Transform for SchemaGuard {
    fn name(&self) -> &str {
        &self.name
    }

    /// The guard passes schemas through; split columns appear only once a breaking change
    /// is seen, and the runtime re-prepares destinations from the batches then.
    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        Ok(self.process(batch)?)
    }
}

/// The split-column schema for `incoming` over `accepted`, and where each column comes
/// from; `None` when a change lies inside a nested type.
fn split_plan(
    accepted: &Schema,
    incoming: &Schema,
    rules: Promotions,
) -> Option<(SchemaRef, Vec<Source>)> {
    let mut fields: Vec<Field> = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    let mut used = vec![false; incoming.fields().len()];
    // Split columns already in the accepted schema, filled from incoming columns below.
    let split_of = |name: &str| {
        name.split_once("__")
            .map(|(base, _)| base.to_string())
            .filter(|base| accepted.field_with_name(base).is_ok())
    };
    for af in accepted.fields() {
        if split_of(af.name()).is_some() {
            continue;
        }
        let found = incoming.index_of(af.name()).ok();
        let Some(i) = found else {
            fields.push(af.as_ref().clone().with_nullable(true));
            sources.push(Source::Null);
            continue;
        };
        used[i] = true;
        let nf = incoming.field(i);
        let (at, nt) = (af.data_type(), nf.data_type());
        let nested = types::is_nested(at) || types::is_nested(nt);
        if nested {
            if !types::same_logical(at, nt) {
                return None;
            }
            fields.push(
                af.as_ref()
                    .clone()
                    .with_nullable(af.is_nullable() || nf.is_nullable()),
            );
            sources.push(Source::Column(i));
            continue;
        }
        match types::relate(at, nt, rules) {
            TypeRelation::Same | TypeRelation::Narrowed => {
                fields.push(
                    af.as_ref()
                        .clone()
                        .with_nullable(af.is_nullable() || nf.is_nullable()),
                );
                sources.push(Source::Column(i));
            }
            TypeRelation::Widened => {
                fields.push(
                    af.as_ref()
                        .clone()
                        .with_data_type(nt.clone())
                        .with_nullable(af.is_nullable() || nf.is_nullable()),
                );
                sources.push(Source::Column(i));
            }
            TypeRelation::Incompatible => {
                fields.push(af.as_ref().clone().with_nullable(true));
                sources.push(Source::Null);
                let split = format!("{}__{}", af.name(), TypeFamily::of(nt));
                let existing = accepted.field_with_name(&split).ok();
                let field = existing
                    .cloned()
                    .unwrap_or_else(|| Field::new(&split, nt.clone(), true));
                fields.push(field);
                sources.push(Source::Column(i));
            }
        }
    }
    // Earlier split columns not refilled by this batch stay, as nulls.
    for af in accepted.fields() {
        if split_of(af.name()).is_some() && !fields.iter().any(|f| f.name() == af.name()) {
            match incoming.index_of(af.name()) {
                Ok(i) if !used[i] => {
                    used[i] = true;
                    fields.push(af.as_ref().clone());
                    sources.push(Source::Column(i));
                }
                _ => {
                    fields.push(af.as_ref().clone());
                    sources.push(Source::Null);
                }
            }
        }
    }
    for (i, nf) in incoming.fields().iter().enumerate() {
        if !used[i] && !fields.iter().any(|f| f.name() == nf.name()) {
            fields.push(nf.as_ref().clone().with_nullable(true));
            sources.push(Source::Column(i));
        }
    }
    let schema = Schema::new_with_metadata(fields, accepted.metadata().clone());
    Some((Arc::new(schema), sources))
}

/// Builds `schema` from `data` following `sources`, casting where types differ.
fn conform(data: &RecordBatch, schema: &SchemaRef, sources: &[Source]) -> Result<RecordBatch> {
    let rows = data.num_rows();
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(sources)
        .map(|(field, source)| -> Result<ArrayRef> {
            Ok(match source {
                Source::Null => new_null_array(field.data_type(), rows),
                Source::Column(i) => {
                    let column = data.column(*i);
                    if column.data_type() == field.data_type() {
                        column.clone()
                    } else {
                        cast_with_options(column, field.data_type(), &options)?
                    }
                }
            })
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The type suffix split columns use for `data_type` (`string`, `integer`, …).
pub fn split_suffix(data_type: &DataType) -> &'static str {
    TypeFamily::of(data_type).as_str()
}
