//! The [`Resolver`]: [`cdp_core::IdentityResolver`] on Arrow batches.
//!
//! A [`ColumnMapping`] says which columns (or dotted paths into struct columns, such as
//! `context.device.id`) hold which identifier type. For each batch the resolver normalises
//! and interns each identifier column in one pass, links every row's identifiers to the
//! row's highest-priority one, and appends a `_cdp_profile_id` Utf8 column holding each
//! row's profile id as the graph stands after the whole batch.

use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, LargeStringArray, RecordBatch, StringArray, StringBuilder,
    StringViewArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use async_trait::async_trait;
use cdp_core::path::FieldPath;
use cdp_core::{Batch, IdentityEvent, IdentityEventKind, PROFILE_ID_COLUMN, ResolvedBatch};
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::{Change, Ctx, IdentityGraph, NONE};
use crate::identifier::{Identifier, MAX_IDENTIFIER_LEN, ProfileId};
use crate::log::{IdentityLog, LogRecord};
use crate::rules::RulesConfig;

/// Which columns hold identifiers, and where to find a row's time and consent scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    /// Identifier columns. A row's identifiers are linked to each other; missing columns
    /// count as null, but a batch with none of them is a schema error.
    pub identifiers: Vec<IdentifierColumn>,
    /// Column or path with the event time (a timestamp, epoch milliseconds, or RFC 3339
    /// text). Rows without one use the batch's sync time.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Column or path with the consent scope of the row's identifiers (a scope name from
    /// the rules). Null means the identifier types' own scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// The rule name recorded on links made from this mapping.
    #[serde(default = "default_rule")]
    pub rule: String,
    /// Columns whose values become profile traits in the profile store.
    #[serde(default)]
    pub traits: Vec<TraitColumn>,
}

impl ColumnMapping {
    /// A mapping of identifier columns only.
    pub fn new(identifiers: Vec<IdentifierColumn>) -> Self {
        ColumnMapping {
            identifiers,
            timestamp: None,
            scope: None,
            rule: default_rule(),
            traits: Vec::new(),
        }
    }

    /// Sets the event time column.
    pub fn timestamp(mut self, path: impl Into<String>) -> Self {
        self.timestamp = Some(path.into());
        self
    }

    /// Sets the consent scope column.
    pub fn scope(mut self, path: impl Into<String>) -> Self {
        self.scope = Some(path.into());
        self
    }

    /// Adds a trait column.
    pub fn with_trait(mut self, path: impl Into<String>, name: impl Into<String>) -> Self {
        self.traits.push(TraitColumn {
            path: path.into(),
            name: name.into(),
        });
        self
    }
}

/// A column whose values become a profile trait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraitColumn {
    /// Column name or dotted path.
    pub path: String,
    /// The trait name.
    pub name: String,
}

fn default_rule() -> String {
    crate::DEFAULT_RULE.to_string()
}

/// One identifier column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierColumn {
    /// Column name, or a dot path into struct columns (`context.traits.email`); see
    /// [`FieldPath`] for names that contain dots.
    pub path: String,
    /// The identifier type, as declared in the rules.
    #[serde(rename = "type")]
    pub kind: String,
}

impl IdentifierColumn {
    /// `path` holds identifiers of type `kind`.
    pub fn new(path: impl Into<String>, kind: impl Into<String>) -> Self {
        IdentifierColumn {
            path: path.into(),
            kind: kind.into(),
        }
    }
}

/// Which identity changes a resolved batch reports to the runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventDetail {
    /// Everything: every identifier joining a profile, merges, refusals, holds.
    #[default]
    All,
    /// Merges, refusals, holds and splits, but not identifiers joining profiles (the bulk
    /// of events on a large load; the identity log still has them).
    Changes,
    /// Nothing (the identity log still has everything).
    None,
}

/// Rules, mapping and reporting, as one config document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolverConfig {
    /// The identity rules.
    pub rules: RulesConfig,
    /// Where identifiers are in the batches.
    pub mapping: ColumnMapping,
    /// What resolved batches report.
    #[serde(default)]
    pub events: EventDetail,
}

impl ResolverConfig {
    /// Builds a resolver with an in-memory identity log.
    pub fn build(self) -> Result<Resolver> {
        let graph = IdentityGraph::from_config(self.rules)?;
        Ok(Resolver::new(graph, self.mapping)?.with_events(self.events))
    }
}

#[derive(Debug)]
struct Compiled {
    /// Identifier columns, highest priority first.
    columns: Vec<(String, u8)>,
    timestamp: Option<String>,
    scope: Option<String>,
    rule: String,
    traits: Vec<TraitColumn>,
}

#[derive(Debug)]
struct Durable {
    log: Option<Box<dyn IdentityLog>>,
    flushed: u64,
}

/// State shared by every resolver made from one graph.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) graph: Mutex<IdentityGraph>,
    durable: Mutex<Durable>,
    pub(crate) store: OnceLock<Arc<dyn crate::profile::ProfileStore>>,
}

/// Resolves batches against a shared identity graph. Cloning is cheap; clones share the
/// graph. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Resolver {
    pub(crate) shared: Arc<Shared>,
    mapping: Arc<Compiled>,
    events: EventDetail,
}

impl Resolver {
    /// A resolver over `graph` with `mapping`.
    pub fn new(graph: IdentityGraph, mapping: ColumnMapping) -> Result<Self> {
        let shared = Arc::new(Shared {
            graph: Mutex::new(graph),
            durable: Mutex::new(Durable {
                log: None,
                flushed: 0,
            }),
            store: OnceLock::new(),
        });
        let mapping = Arc::new(compile(&shared.graph.lock(), mapping)?);
        Ok(Resolver {
            shared,
            mapping,
            events: EventDetail::All,
        })
    }

    /// Sets what resolved batches report.
    pub fn with_events(mut self, events: EventDetail) -> Self {
        self.events = events;
        self
    }

    /// Another resolver over the same graph (and store and log) with a different mapping,
    /// for a second stream whose identifiers sit in other columns.
    pub fn with_mapping(&self, mapping: ColumnMapping) -> Result<Self> {
        let compiled = compile(&self.shared.graph.lock(), mapping)?;
        Ok(Resolver {
            shared: self.shared.clone(),
            mapping: Arc::new(compiled),
            events: self.events,
        })
    }

    /// Attaches a durable identity log; [`IdentityResolver::flush`](cdp_core::IdentityResolver)
    /// appends everything not yet in it. When the log already holds records (a restart),
    /// the graph must be empty and is rebuilt from them first.
    pub fn with_log(self, log: Box<dyn IdentityLog>) -> Result<Self> {
        let existing = log.load()?;
        {
            let mut graph = self.shared.graph.lock();
            if !existing.is_empty() {
                if graph.log_len() > 0 {
                    return Err(Error::InvalidOperation(
                        "the log has records and the graph is not empty".into(),
                    ));
                }
                for r in &existing {
                    graph.replay_one(r)?;
                }
            }
        }
        let flushed = existing.len() as u64;
        let mut durable = self.shared.durable.lock();
        if durable.log.is_some() {
            return Err(Error::InvalidOperation("a log is already attached".into()));
        }
        *durable = Durable {
            log: Some(log),
            flushed,
        };
        drop(durable);
        Ok(self)
    }

    /// Attaches a profile store, kept up to date with every batch and every merge, unmerge
    /// and expiry done through the resolver. The store first receives the graph's current
    /// profiles.
    pub fn with_store(self, store: Arc<dyn crate::profile::ProfileStore>) -> Result<Self> {
        let graph = self.shared.graph.lock();
        store.apply(&crate::profile::full_delta(&graph))?;
        self.shared
            .store
            .set(store)
            .map_err(|_| Error::InvalidOperation("a profile store is already attached".into()))?;
        drop(graph);
        Ok(self)
    }

    /// Locks the graph for reading or for operations the resolver does not wrap. Changes
    /// made through the guard are logged but not reported to the profile store.
    pub fn graph(&self) -> MutexGuard<'_, IdentityGraph> {
        self.shared.graph.lock()
    }

    /// The attached profile store.
    pub fn store(&self) -> Option<&Arc<dyn crate::profile::ProfileStore>> {
        self.shared.store.get()
    }

    /// Resolves one batch. The `_cdp_profile_id` column replaces an existing one.
    pub fn resolve_batch(&self, batch: Batch) -> Result<ResolvedBatch> {
        let rows = batch.num_rows();
        let stream = batch.stream.to_string();
        let columns = self.identifier_arrays(&batch.data, &stream)?;
        let times = self.times(&batch)?;
        let scopes = self.scope_strings(&batch.data, &stream)?;

        let mut graph = self.shared.graph.lock();
        let source = graph.source_label(&batch.meta.source_id)?;
        let rule = graph.rule_label(&self.mapping.rule)?;
        let row_scopes: Option<Vec<u8>> = match &scopes {
            None => None,
            Some(values) => Some(
                (0..rows)
                    .map(|r| {
                        if values.is_null(r) {
                            return Ok(0);
                        }
                        let name = values.value(r);
                        graph
                            .rules()
                            .scope_index(name)
                            .ok_or_else(|| Error::Schema {
                                stream: stream.clone(),
                                message: format!("row {r}: unknown consent scope `{name}`"),
                            })
                    })
                    .collect::<Result<_>>()?,
            ),
        };

        // Interning column by column keeps each pass on one Arrow buffer; the rows are then
        // linked from a compact row-major table of node ids.
        let k = columns.len();
        let mut nodes = vec![NONE; rows * k];
        let mut buf = String::new();
        for (c, (kind, values)) in columns.iter().enumerate() {
            let normaliser = graph.rules().types[*kind as usize].normaliser.clone();
            for r in 0..rows {
                let Some(raw) = values.get(r) else { continue };
                let Some(value) = normaliser.apply(raw, &mut buf) else {
                    continue;
                };
                if value.len() > MAX_IDENTIFIER_LEN {
                    continue;
                }
                let scope = row_scopes.as_ref().map_or(0, |s| s[r]);
                nodes[r * k + c] = graph.intern(*kind, value, scope, times[r])?;
            }
        }
        let mut changes = Vec::new();
        let mut anchors = Vec::with_capacity(rows);
        for r in 0..rows {
            let ctx = Ctx {
                at: times[r],
                source,
                rule,
                confidence: 1.0,
            };
            anchors.push(graph.link_row(&nodes[r * k..(r + 1) * k], ctx, &mut changes));
        }
        drop(nodes);

        let mut ids = StringBuilder::with_capacity(rows, rows * 36);
        let mut text = uuid::Uuid::encode_buffer();
        for &anchor in &anchors {
            if anchor == NONE {
                ids.append_null();
                continue;
            }
            let slot = graph.slot_of(anchor);
            let id = graph.profile_uuid(slot).0;
            ids.append_value(id.hyphenated().encode_lower(&mut text));
        }
        let events = self.report(&graph, &changes);
        if let Some(store) = self.shared.store.get() {
            let traits: Vec<(Arc<str>, Vec<Option<serde_json::Value>>)> = self
                .mapping
                .traits
                .iter()
                .filter_map(|t| {
                    let (array, nulls) = lookup_path(&batch.data, &t.path)?;
                    Some((
                        Arc::from(t.name.as_str()),
                        json_values(&array, nulls.as_ref()),
                    ))
                })
                .collect();
            let source: Arc<str> = batch.meta.source_id.clone();
            let delta =
                crate::profile::batch_delta(&graph, &changes, &anchors, &times, &source, &traits);
            store.apply(&delta)?;
        }
        drop(graph);

        let data = with_profile_column(&batch.data, Arc::new(ids.finish()))?;
        Ok(ResolvedBatch {
            batch: Batch { data, ..batch },
            events,
        })
    }

    fn report(&self, graph: &IdentityGraph, changes: &[Change]) -> Vec<IdentityEvent> {
        match self.events {
            EventDetail::None => Vec::new(),
            EventDetail::All => graph.core_events(changes),
            EventDetail::Changes => {
                let mut events = graph.core_events(
                    &changes
                        .iter()
                        .filter(|c| !matches!(c, Change::Created { .. } | Change::Joined { .. }))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                events.retain(|e| e.kind != IdentityEventKind::Link);
                events
            }
        }
    }

    /// Applies a graph operation and reports its changes to the store.
    pub(crate) fn operate<T>(
        &self,
        op: impl FnOnce(&mut IdentityGraph, &mut Vec<Change>) -> Result<T>,
    ) -> Result<(T, Vec<IdentityEvent>)> {
        let mut graph = self.shared.graph.lock();
        let mut changes = Vec::new();
        let out = op(&mut graph, &mut changes)?;
        if let Some(store) = self.shared.store.get() {
            store.apply(&crate::profile::changes_delta(&graph, &changes))?;
        }
        Ok((out, graph.core_events(&changes)))
    }

    /// Undoes a merge by the sequence number of its `merge` log event (see
    /// [`IdentityGraph::unmerge`]).
    pub fn unmerge(&self, merge_seq: u64, at: i64) -> Result<Vec<IdentityEvent>> {
        Ok(self.operate(|g, c| g.unmerge_changes(merge_seq, at, c))?.1)
    }

    /// Undoes the merge caused by the link between `a` and `b`.
    pub fn unmerge_link(
        &self,
        a: &Identifier,
        b: &Identifier,
        at: i64,
    ) -> Result<Vec<IdentityEvent>> {
        Ok(self
            .operate(|g, c| {
                let seq = g.merge_of_link(a, b)?;
                g.unmerge_changes(seq, at, c)
            })?
            .1)
    }

    /// Removes a link (see [`IdentityGraph::unlink`]).
    pub fn unlink(&self, a: &Identifier, b: &Identifier, at: i64) -> Result<Vec<IdentityEvent>> {
        Ok(self
            .operate(|g, c| {
                let na = g
                    .node_of(a)
                    .ok_or_else(|| Error::NotFound(format!("identifier {a}")))?;
                let nb = g
                    .node_of(b)
                    .ok_or_else(|| Error::NotFound(format!("identifier {b}")))?;
                g.unlink_nodes(na, nb, at, c)
            })?
            .1)
    }

    /// Expires identifiers past their TTL at `now` (see [`IdentityGraph::expire`]).
    pub fn expire(&self, now: i64) -> Result<(usize, Vec<IdentityEvent>)> {
        self.operate(|g, c| Ok(g.expire_changes(now, c)))
    }

    /// Erases the person `identifier` belongs to from the graph, and from the profile store
    /// when there is one (see [`IdentityGraph::erase`]). Returns what was removed: the
    /// person's identifiers, to suppress and tombstone downstream.
    pub fn erase(
        &self,
        identifier: &Identifier,
        at: i64,
    ) -> Result<(crate::graph::Erased, Vec<IdentityEvent>)> {
        self.operate(|g, c| Ok(g.erase_changes(identifier, at, c)))
    }

    /// Applies a probabilistic match run to the graph (see
    /// [`MatchRun::apply_to_graph`](crate::probabilistic::MatchRun::apply_to_graph)):
    /// auto-links are linked under the rules, review-band pairs queued for review, and the
    /// profile store follows the changes. Ids are identifiers of type `kind`.
    pub fn apply_match_run(
        &self,
        run: &crate::probabilistic::MatchRun,
        kind: &str,
        left_ids: &arrow::array::StringArray,
        right_ids: &arrow::array::StringArray,
        at: i64,
        source: &str,
    ) -> Result<(crate::probabilistic::GraphOutcome, Vec<IdentityEvent>)> {
        self.operate(|g, c| run.apply_changes(g, kind, left_ids, right_ids, at, source, c))
    }

    /// Switches freeze mode (see [`IdentityGraph::set_frozen`]).
    pub fn set_frozen(&self, frozen: bool, at: i64) {
        self.shared.graph.lock().set_frozen(frozen, at);
    }

    /// Applies a held merge.
    pub fn approve(&self, review: u32, at: i64) -> Result<Vec<IdentityEvent>> {
        Ok(self.operate(|g, c| g.approve_changes(review, at, c))?.1)
    }

    /// Drops a held merge.
    pub fn reject(&self, review: u32, at: i64) -> Result<()> {
        self.shared.graph.lock().reject(review, at)
    }

    /// The profile of a raw identifier value, from the graph (takes the graph lock; use the
    /// profile store for live lookups).
    pub fn profile_of(&self, kind: &str, raw: &str) -> Option<ProfileId> {
        self.shared.graph.lock().profile_of(kind, raw)
    }

    /// Explains whether two identifiers share a profile (see [`IdentityGraph::explain`]).
    pub fn explain(&self, a: &Identifier, b: &Identifier) -> Result<crate::Explanation> {
        self.shared.graph.lock().explain(a, b)
    }

    /// Explains a profile (see [`IdentityGraph::explain_profile`]).
    pub fn explain_profile(&self, id: ProfileId) -> Result<crate::ProfileExplanation> {
        self.shared.graph.lock().explain_profile(id)
    }

    /// The graph's health as of `now` (see [`IdentityGraph::health`]).
    pub fn health(&self, now: i64) -> crate::HealthReport {
        self.shared.graph.lock().health(now)
    }

    /// Appends every log record not yet in the durable log. A no-op without one.
    pub fn flush_log(&self) -> Result<()> {
        let mut durable = self.shared.durable.lock();
        let Durable { log, flushed } = &mut *durable;
        let Some(log) = log else { return Ok(()) };
        let records: Vec<LogRecord> = self.shared.graph.lock().log_since(*flushed);
        if records.is_empty() {
            return Ok(());
        }
        log.append(&records)?;
        *flushed += records.len() as u64;
        Ok(())
    }

    fn identifier_arrays(&self, data: &RecordBatch, stream: &str) -> Result<Vec<(u8, StrColumn)>> {
        let mut out = Vec::with_capacity(self.mapping.columns.len());
        let mut found = 0;
        for (path, kind) in &self.mapping.columns {
            match lookup_path(data, path) {
                Some((array, nulls)) => {
                    found += 1;
                    out.push((*kind, StrColumn::new(array, nulls, stream, path)?));
                }
                None => out.push((*kind, StrColumn::Missing)),
            }
        }
        if found == 0 && data.num_rows() > 0 {
            let paths: Vec<&str> = self
                .mapping
                .columns
                .iter()
                .map(|(p, _)| p.as_str())
                .collect();
            return Err(Error::Schema {
                stream: stream.to_string(),
                message: format!("none of the identifier columns {paths:?} is in the batch"),
            });
        }
        Ok(out)
    }

    fn times(&self, batch: &Batch) -> Result<Vec<i64>> {
        let rows = batch.num_rows();
        let default = batch.meta.synced_at.timestamp_millis();
        let Some(path) = &self.mapping.timestamp else {
            return Ok(vec![default; rows]);
        };
        let Some((array, nulls)) = lookup_path(&batch.data, path) else {
            return Ok(vec![default; rows]);
        };
        let schema_error = |message: String| Error::Schema {
            stream: batch.stream.to_string(),
            message,
        };
        let values: Vec<Option<i64>> = match array.data_type() {
            DataType::Int64 => array
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .collect(),
            // Read the stored UTC instant directly: a cast to a zone-less timestamp would
            // shift zoned values to wall-clock time.
            DataType::Timestamp(unit, _) => {
                let raw = arrow::compute::cast(&array, &DataType::Int64)
                    .map_err(|e| schema_error(format!("timestamp column `{path}`: {e}")))?;
                let to_ms = |v: i64| match unit {
                    TimeUnit::Second => v.saturating_mul(1_000),
                    TimeUnit::Millisecond => v,
                    TimeUnit::Microsecond => v / 1_000,
                    TimeUnit::Nanosecond => v / 1_000_000,
                };
                raw.as_primitive::<arrow::datatypes::Int64Type>()
                    .iter()
                    .map(|v| v.map(to_ms))
                    .collect()
            }
            _ => {
                let millis =
                    arrow::compute::cast(&array, &DataType::Timestamp(TimeUnit::Millisecond, None))
                        .map_err(|e| schema_error(format!("timestamp column `{path}`: {e}")))?;
                millis
                    .as_primitive::<TimestampMillisecondType>()
                    .iter()
                    .collect()
            }
        };
        Ok(values
            .into_iter()
            .enumerate()
            .map(|(r, v)| match v {
                Some(v) if nulls.as_ref().is_none_or(|n| n.is_valid(r)) => v,
                _ => default,
            })
            .collect())
    }

    fn scope_strings(&self, data: &RecordBatch, stream: &str) -> Result<Option<StringArray>> {
        let Some(path) = &self.mapping.scope else {
            return Ok(None);
        };
        let Some((array, nulls)) = lookup_path(data, path) else {
            return Ok(None);
        };
        let text = arrow::compute::cast(&array, &DataType::Utf8).map_err(|e| Error::Schema {
            stream: stream.to_string(),
            message: format!("scope column `{path}`: {e}"),
        })?;
        let text = text.as_string::<i32>().clone();
        Ok(Some(match nulls {
            None => text,
            Some(parent) => {
                let nulls = NullBuffer::union(text.nulls(), Some(&parent));
                let (offsets, values, _) = text.into_parts();
                StringArray::new(offsets, values, nulls)
            }
        }))
    }
}

fn compile(graph: &IdentityGraph, mapping: ColumnMapping) -> Result<Compiled> {
    if mapping.identifiers.is_empty() {
        return Err(Error::config(
            "the mapping needs at least one identifier column",
        ));
    }
    let paths = mapping
        .identifiers
        .iter()
        .map(|c| c.path.as_str())
        .chain(mapping.timestamp.as_deref())
        .chain(mapping.scope.as_deref())
        .chain(mapping.traits.iter().map(|t| t.path.as_str()));
    for path in paths {
        FieldPath::parse(path).map_err(|e| Error::config(e.to_string()))?;
    }
    let rules = graph.rules();
    let mut columns = Vec::with_capacity(mapping.identifiers.len());
    for (i, c) in mapping.identifiers.iter().enumerate() {
        let kind = rules.require_type(&c.kind)?;
        columns.push((rules.types[kind as usize].priority, i, c.path.clone(), kind));
    }
    // Rows are linked to their highest-priority identifier: sort the columns once here.
    columns.sort_by_key(|&(priority, i, _, _)| (priority, i));
    Ok(Compiled {
        columns: columns
            .into_iter()
            .map(|(_, _, path, kind)| (path, kind))
            .collect(),
        timestamp: mapping.timestamp,
        scope: mapping.scope,
        rule: mapping.rule,
        traits: mapping.traits,
    })
}

/// The column at a dot path ([`FieldPath`]), with the validity of the structs above it (a
/// null struct makes its fields null); `None` when the batch has no such field. Paths were
/// checked when the mapping was compiled.
fn lookup_path(data: &RecordBatch, path: &str) -> Option<(ArrayRef, Option<NullBuffer>)> {
    FieldPath::parse(path).ok()?.column_parts(data).ok()
}

/// An identifier column as text, whatever its Arrow string type.
enum StrColumn {
    Missing,
    Utf8(StringArray, Option<NullBuffer>),
    Large(LargeStringArray, Option<NullBuffer>),
    View(StringViewArray, Option<NullBuffer>),
}

impl StrColumn {
    fn new(array: ArrayRef, nulls: Option<NullBuffer>, stream: &str, path: &str) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Utf8 => StrColumn::Utf8(array.as_string::<i32>().clone(), nulls),
            DataType::LargeUtf8 => StrColumn::Large(array.as_string::<i64>().clone(), nulls),
            DataType::Utf8View => StrColumn::View(array.as_string_view().clone(), nulls),
            other => {
                // Numbers, dictionaries and the like: identifiers are compared as text.
                let text =
                    arrow::compute::cast(&array, &DataType::Utf8).map_err(|e| Error::Schema {
                        stream: stream.to_string(),
                        message: format!("identifier column `{path}` ({other}) as text: {e}"),
                    })?;
                StrColumn::Utf8(text.as_string::<i32>().clone(), nulls)
            }
        })
    }

    #[inline]
    fn get(&self, row: usize) -> Option<&str> {
        fn valid(nulls: &Option<NullBuffer>, row: usize) -> bool {
            nulls.as_ref().is_none_or(|n| n.is_valid(row))
        }
        match self {
            StrColumn::Missing => None,
            StrColumn::Utf8(a, n) => (a.is_valid(row) && valid(n, row)).then(|| a.value(row)),
            StrColumn::Large(a, n) => (a.is_valid(row) && valid(n, row)).then(|| a.value(row)),
            StrColumn::View(a, n) => (a.is_valid(row) && valid(n, row)).then(|| a.value(row)),
        }
    }
}

/// Trait values as JSON, one per row.
fn json_values(array: &ArrayRef, nulls: Option<&NullBuffer>) -> Vec<Option<serde_json::Value>> {
    use serde_json::Value;
    let valid = |r: usize| array.is_valid(r) && nulls.is_none_or(|n| n.is_valid(r));
    let rows = array.len();
    let cast = |to: &DataType| arrow::compute::cast(array, to).ok();
    match array.data_type() {
        DataType::Boolean => {
            let a = array.as_boolean();
            (0..rows)
                .map(|r| valid(r).then(|| Value::Bool(a.value(r))))
                .collect()
        }
        t if t.is_integer() => match cast(&DataType::Int64) {
            Some(a) => {
                let a = a.as_primitive::<arrow::datatypes::Int64Type>();
                (0..rows)
                    .map(|r| valid(r).then(|| Value::from(a.value(r))))
                    .collect()
            }
            None => vec![None; rows],
        },
        t if t.is_floating() => match cast(&DataType::Float64) {
            Some(a) => {
                let a = a.as_primitive::<arrow::datatypes::Float64Type>();
                (0..rows)
                    .map(|r| {
                        valid(r)
                            .then(|| serde_json::Number::from_f64(a.value(r)).map(Value::Number))
                            .flatten()
                    })
                    .collect()
            }
            None => vec![None; rows],
        },
        _ => match cast(&DataType::Utf8) {
            Some(a) => {
                let a = a.as_string::<i32>();
                (0..rows)
                    .map(|r| valid(r).then(|| Value::String(a.value(r).to_string())))
                    .collect()
            }
            None => vec![None; rows],
        },
    }
}

fn with_profile_column(data: &RecordBatch, ids: ArrayRef) -> Result<RecordBatch> {
    let schema = data.schema();
    let mut columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(data.columns())
        .filter(|(f, _)| f.name() != PROFILE_ID_COLUMN)
        .map(|(_, c)| c.clone())
        .collect();
    columns.push(ids);
    Ok(RecordBatch::try_new(
        cdp_core::identity::with_profile_id(&schema),
        columns,
    )?)
}

#[async_trait]
impl cdp_core::IdentityResolver for Resolver {
    async fn resolve(&self, batch: Batch) -> cdp_core::Result<ResolvedBatch> {
        Ok(self.resolve_batch(batch)?)
    }

    async fn flush(&self) -> cdp_core::Result<()> {
        Ok(self.flush_log()?)
    }
}
