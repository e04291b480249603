//! Layers and field-level lineage: a mapping transform from raw to curated fields (rename,
//! cast, extract nested) that records which source fields, which transform and which
//! schema version produced each curated field, queryable afterwards.
//!
//! The mapping itself is `cdp-core`'s [`Normalize`] (nested paths, normalisers, casts,
//! failed rows dead-lettered); [`LineageMapping`] wraps it, optionally moves the rows to a
//! curated stream, and records one [`LineageEdge`] per output field into a shared
//! [`LineageGraph`]. The schema version comes from the batch metadata the
//! [`SchemaGuard`](crate::SchemaGuard) stamps upstream.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use cdp_core::transforms::{Normalize, NormalizeConfig};
use cdp_core::{Batch, Transform, TransformOutput};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, lock};
use crate::types::fingerprint;

/// How one curated field was produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageEdge {
    /// The stream the field lands in.
    pub target_stream: String,
    /// The field produced.
    pub target_field: String,
    /// The stream read.
    pub source_stream: String,
    /// The source fields read (dot paths).
    pub source_fields: Vec<String>,
    /// The transform that produced it.
    pub transform: String,
    /// What it did (`copy`, `rename`, `extract`, `cast to int64`, `normalise trim`, …).
    pub operation: String,
    /// The registry version of the source schema, when a guard stamped it.
    pub source_schema_version: Option<u32>,
    /// When the edge was first seen.
    pub first_seen: DateTime<Utc>,
}

impl LineageEdge {
    fn same_as(&self, other: &LineageEdge) -> bool {
        self.target_stream == other.target_stream
            && self.target_field == other.target_field
            && self.source_stream == other.source_stream
            && self.source_fields == other.source_fields
            && self.transform == other.transform
            && self.operation == other.operation
            && self.source_schema_version == other.source_schema_version
    }

    fn reads(&self, stream: &str, field: &str) -> bool {
        self.source_stream == stream
            && self.source_fields.iter().any(|s| {
                s == field
                    || s.strip_prefix(field).is_some_and(|r| r.starts_with('.'))
                    || field
                        .strip_prefix(s.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            })
    }
}

/// Every lineage edge recorded; cheap to clone, clones share the edges.
#[derive(Debug, Clone, Default)]
pub struct LineageGraph {
    edges: Arc<Mutex<Vec<LineageEdge>>>,
}

impl LineageGraph {
    /// An empty graph.
    pub fn new() -> Self {
        LineageGraph::default()
    }

    /// Records `edge` unless the same edge is already known.
    pub fn record(&self, edge: LineageEdge) -> Result<()> {
        let mut edges = lock(&self.edges, "lineage graph")?;
        if !edges.iter().any(|e| e.same_as(&edge)) {
            edges.push(edge);
        }
        Ok(())
    }

    /// Every edge, in the order first seen.
    pub fn edges(&self) -> Vec<LineageEdge> {
        self.edges.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The edges that produce `field` of `stream` directly.
    pub fn producers_of(&self, stream: &str, field: &str) -> Vec<LineageEdge> {
        self.edges()
            .into_iter()
            .filter(|e| e.target_stream == stream && e.target_field == field)
            .collect()
    }

    /// Every edge upstream of `field` of `stream`, nearest first, following fields
    /// through as many mappings as there are.
    pub fn upstream(&self, stream: &str, field: &str) -> Vec<LineageEdge> {
        let edges = self.edges();
        let mut out: Vec<LineageEdge> = Vec::new();
        let mut queue = VecDeque::from([(stream.to_string(), field.to_string())]);
        let mut seen = HashSet::new();
        while let Some((s, f)) = queue.pop_front() {
            if !seen.insert((s.clone(), f.clone())) {
                continue;
            }
            for e in edges
                .iter()
                .filter(|e| e.target_stream == s && e.target_field == f)
            {
                if !out.iter().any(|o| o.same_as(e)) {
                    out.push(e.clone());
                }
                for source in &e.source_fields {
                    queue.push_back((e.source_stream.clone(), source.clone()));
                }
            }
        }
        out
    }

    /// Every edge downstream of `field` of `stream` (or of a field inside it), nearest
    /// first: what a change to that field reaches.
    pub fn downstream(&self, stream: &str, field: &str) -> Vec<LineageEdge> {
        let edges = self.edges();
        let mut out: Vec<LineageEdge> = Vec::new();
        let mut queue = VecDeque::from([(stream.to_string(), field.to_string())]);
        let mut seen = HashSet::new();
        while let Some((s, f)) = queue.pop_front() {
            if !seen.insert((s.clone(), f.clone())) {
                continue;
            }
            for e in edges.iter().filter(|e| e.reads(&s, &f)) {
                if !out.iter().any(|o| o.same_as(e)) {
                    out.push(e.clone());
                }
                queue.push_back((e.target_stream.clone(), e.target_field.clone()));
            }
        }
        out
    }

    /// The edges as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.edges()).unwrap_or_else(|e| format!("\"{e}\""))
    }
}

/// A mapping transform from raw to curated fields that records field-level lineage.
///
/// ```
/// use cdp_core::transforms::{CastType, FieldRule, NormalizeConfig};
/// use cdp_schema::lineage::LineageMapping;
///
/// # fn main() -> cdp_schema::Result<()> {
/// let config = NormalizeConfig {
///     fields: vec![
///         FieldRule::new("userId", "user_id"),
///         FieldRule::new("context.device.id", "device_id"),
///         FieldRule::new("properties.revenue", "revenue").cast(CastType::Float64),
///     ],
///     keep_unmapped: false,
///     drop: Vec::new(),
///     default_region: None,
/// };
/// let mapping = LineageMapping::new(config)?.into_stream("orders_curated");
/// let lineage = mapping.lineage();
/// # let _ = lineage;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LineageMapping {
    name: String,
    target_stream: Option<String>,
    normalize: Normalize,
    graph: LineageGraph,
    recorded: Mutex<HashSet<(String, Option<u32>, String)>>,
}

impl LineageMapping {
    /// A mapping following `config` (see [`NormalizeConfig`]).
    pub fn new(config: NormalizeConfig) -> Result<Self> {
        Ok(LineageMapping {
            name: "mapping".into(),
            target_stream: None,
            normalize: Normalize::new(config)?,
            graph: LineageGraph::new(),
            recorded: Mutex::default(),
        })
    }

    /// Renames the transform (lineage, dead letters, metrics).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sends the mapped rows to stream `stream` (the curated layer) instead of the input's.
    pub fn into_stream(mut self, stream: impl Into<String>) -> Self {
        self.target_stream = Some(stream.into());
        self
    }

    /// Records into `graph` (shared with other mappings) instead of a graph of its own.
    pub fn with_lineage(mut self, graph: LineageGraph) -> Self {
        self.graph = graph;
        self
    }

    /// The graph this mapping records into.
    pub fn lineage(&self) -> LineageGraph {
        self.graph.clone()
    }

    /// Records the edges for batches of `input` on `stream` at `version`, once.
    fn record(&self, stream: &str, version: Option<u32>, input: &SchemaRef) -> Result<()> {
        let key = (stream.to_string(), version, fingerprint(input));
        if !lock(&self.recorded, "lineage mapping")?.insert(key) {
            return Ok(());
        }
        let output = self.normalize.output_schema(input)?;
        let target_stream = self.target_stream.as_deref().unwrap_or(stream);
        let now = Utc::now();
        let rules = &self.normalize.config().fields;
        for field in output.fields() {
            let (source, operation) = match rules.iter().find(|r| r.to == *field.name()) {
                Some(rule) => {
                    let mut ops = Vec::new();
                    let nested = cdp_core::path::FieldPath::parse(&rule.from)
                        .ok()
                        .and_then(|p| p.resolve(input.fields()).ok())
                        .is_some_and(|r| r.indices.len() > 1);
                    if nested {
                        ops.push("extract".to_string());
                    } else if rule.from != rule.to {
                        ops.push("rename".to_string());
                    }
                    for n in &rule.normalise {
                        ops.push(format!("normalise {n}"));
                    }
                    if let Some(cast) = rule.cast {
                        ops.push(format!("cast to {}", cast.name()));
                    }
                    if ops.is_empty() {
                        ops.push("copy".into());
                    }
                    (rule.from.clone(), ops.join(", "))
                }
                None => (field.name().clone(), "copy".to_string()),
            };
            self.graph.record(LineageEdge {
                target_stream: target_stream.to_string(),
                target_field: field.name().clone(),
                source_stream: stream.to_string(),
                source_fields: vec![source],
                transform: self.name.clone(),
                operation,
                source_schema_version: version,
                first_seen: now,
            })?;
        }
        Ok(())
    }
}

impl Transform for LineageMapping {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        self.normalize.output_schema(input)
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        let stream = batch.stream.clone();
        self.record(&stream, batch.meta.schema_version, &batch.data.schema())?;
        let mut out = self.normalize.apply(batch)?;
        if let (Some(target), Some(b)) = (&self.target_stream, out.batch.as_mut()) {
            b.stream = Arc::from(target.as_str());
        }
        Ok(out)
    }
}
