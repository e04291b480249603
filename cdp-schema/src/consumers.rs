//! Downstream consumers of a subject's fields, and the impact of a diff on them.
//!
//! A consumer (a dashboard, a transform, an activation rule) declares the fields it reads
//! and whether it requires them. [`impact`] says, for each consumer, whether a diff breaks
//! it (a required field is gone, renamed, or no longer of a type it can read), degrades it
//! (an optional field is gone, a field may now be null, widened, or changed meaning), or
//! leaves it alone.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::diff::{Change, ChangeKind, SchemaDiff};
use crate::error::{Result, lock};

/// What kind of thing reads the fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerKind {
    /// A dashboard or report.
    Dashboard,
    /// A transform or model downstream.
    Transform,
    /// An activation (audience sync, webhook, campaign rule).
    Activation,
    /// Anything else, named.
    Other(String),
}

impl std::fmt::Display for ConsumerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsumerKind::Dashboard => f.write_str("dashboard"),
            ConsumerKind::Transform => f.write_str("transform"),
            ConsumerKind::Activation => f.write_str("activation"),
            ConsumerKind::Other(name) => f.write_str(name),
        }
    }
}

/// A field a consumer reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldUse {
    /// The field's path (`email`, `context.device.id`).
    pub path: String,
    /// Whether the consumer fails without it (rather than showing less).
    pub required: bool,
}

/// A downstream consumer of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    /// Unique name (`churn-dashboard`).
    pub name: String,
    /// What it is.
    pub kind: ConsumerKind,
    /// The subject (stream) it reads.
    pub subject: String,
    /// The fields it reads.
    pub reads: Vec<FieldUse>,
}

impl Consumer {
    /// A consumer of `subject` that reads nothing yet.
    pub fn new(name: impl Into<String>, kind: ConsumerKind, subject: impl Into<String>) -> Self {
        Consumer {
            name: name.into(),
            kind,
            subject: subject.into(),
            reads: Vec::new(),
        }
    }

    /// Declares a field the consumer cannot work without.
    pub fn requires(mut self, path: impl Into<String>) -> Self {
        self.reads.push(FieldUse {
            path: path.into(),
            required: true,
        });
        self
    }

    /// Declares a field the consumer uses when present.
    pub fn reads(mut self, path: impl Into<String>) -> Self {
        self.reads.push(FieldUse {
            path: path.into(),
            required: false,
        });
        self
    }
}

/// How badly a change hurts a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImpactLevel {
    /// Nothing it reads changed.
    Unaffected,
    /// It keeps working with less, or with values it should double-check.
    Degraded,
    /// It fails until someone updates it.
    Broken,
}

impl std::fmt::Display for ImpactLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ImpactLevel::Unaffected => "unaffected",
            ImpactLevel::Degraded => "degraded",
            ImpactLevel::Broken => "broken",
        })
    }
}

/// One field of a consumer hit by one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldImpact {
    /// The field the consumer reads.
    pub field: String,
    /// The change, described.
    pub change: String,
    /// What it does to the consumer.
    pub level: ImpactLevel,
}

/// What a diff does to one consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerImpact {
    /// The consumer's name.
    pub consumer: String,
    /// Its kind.
    pub kind: ConsumerKind,
    /// The worst level over its fields.
    pub level: ImpactLevel,
    /// Each field hit.
    pub fields: Vec<FieldImpact>,
}

/// What a diff does to every consumer of a subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impact {
    /// Consumers, worst hit first; unaffected ones are included for completeness.
    pub consumers: Vec<ConsumerImpact>,
}

impl Impact {
    /// Consumers at exactly `level`.
    pub fn at(&self, level: ImpactLevel) -> impl Iterator<Item = &ConsumerImpact> {
        self.consumers.iter().filter(move |c| c.level == level)
    }

    /// Names of broken consumers.
    pub fn broken(&self) -> Vec<&str> {
        self.at(ImpactLevel::Broken)
            .map(|c| c.consumer.as_str())
            .collect()
    }

    /// Names of degraded consumers.
    pub fn degraded(&self) -> Vec<&str> {
        self.at(ImpactLevel::Degraded)
            .map(|c| c.consumer.as_str())
            .collect()
    }

    /// The worst level over all consumers.
    pub fn worst(&self) -> ImpactLevel {
        self.consumers
            .iter()
            .map(|c| c.level)
            .max()
            .unwrap_or(ImpactLevel::Unaffected)
    }
}

/// Whether `path` is `ancestor` or lies below it.
fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with(['.', '[', '{']))
}

/// What `change` does to a consumer reading `field`.
fn field_level(change: &Change, field: &FieldUse) -> Option<ImpactLevel> {
    let old = change.old_path()?;
    let hard = if field.required {
        ImpactLevel::Broken
    } else {
        ImpactLevel::Degraded
    };
    if is_within(&field.path, old) {
        // The field itself or one of its ancestors changed.
        Some(match change.kind {
            ChangeKind::Removed { .. }
            | ChangeKind::Renamed { .. }
            | ChangeKind::ProbableRename { .. }
            | ChangeKind::TypeChanged { .. }
            | ChangeKind::Narrowed { .. } => hard,
            ChangeKind::NullabilityRelaxed if field.required => ImpactLevel::Degraded,
            ChangeKind::Widened { .. } | ChangeKind::SemanticChanged { .. }
                if field.path == old =>
            {
                ImpactLevel::Degraded
            }
            _ => return None,
        })
    } else if is_within(old, &field.path) {
        // Something inside the (struct, list) field it reads changed shape.
        match change.kind {
            ChangeKind::NullabilityTightened => None,
            _ => Some(ImpactLevel::Degraded),
        }
    } else {
        None
    }
}

/// What `diff` does to each of `consumers`.
pub fn impact(consumers: &[Consumer], diff: &SchemaDiff) -> Impact {
    let mut out: Vec<ConsumerImpact> = consumers
        .iter()
        .map(|consumer| {
            let mut fields = Vec::new();
            for field in &consumer.reads {
                for change in &diff.changes {
                    if let Some(level) = field_level(change, field) {
                        fields.push(FieldImpact {
                            field: field.path.clone(),
                            change: change.describe(),
                            level,
                        });
                    }
                }
            }
            ConsumerImpact {
                consumer: consumer.name.clone(),
                kind: consumer.kind.clone(),
                level: fields
                    .iter()
                    .map(|f| f.level)
                    .max()
                    .unwrap_or(ImpactLevel::Unaffected),
                fields,
            }
        })
        .collect();
    out.sort_by(|a, b| b.level.cmp(&a.level).then(a.consumer.cmp(&b.consumer)));
    Impact { consumers: out }
}

/// The consumers of every subject; shared between a registry, guards and reports.
#[derive(Debug, Default)]
pub struct ConsumerRegistry {
    by_subject: Mutex<BTreeMap<String, Vec<Consumer>>>,
}

impl ConsumerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        ConsumerRegistry::default()
    }

    /// Registers (or replaces, by name) a consumer.
    pub fn register(&self, consumer: Consumer) -> Result<()> {
        let mut map = lock(&self.by_subject, "consumer registry")?;
        let list = map.entry(consumer.subject.clone()).or_default();
        list.retain(|c| c.name != consumer.name);
        list.push(consumer);
        Ok(())
    }

    /// Removes a consumer of `subject`; returns whether it was there.
    pub fn unregister(&self, subject: &str, name: &str) -> Result<bool> {
        let mut map = lock(&self.by_subject, "consumer registry")?;
        let Some(list) = map.get_mut(subject) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|c| c.name != name);
        Ok(list.len() != before)
    }

    /// The consumers of `subject`.
    pub fn consumers(&self, subject: &str) -> Result<Vec<Consumer>> {
        Ok(lock(&self.by_subject, "consumer registry")?
            .get(subject)
            .cloned()
            .unwrap_or_default())
    }

    /// What `diff` of `subject` does to its consumers.
    pub fn impact(&self, subject: &str, diff: &SchemaDiff) -> Result<Impact> {
        Ok(impact(&self.consumers(subject)?, diff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_respects_segment_boundaries() {
        assert!(is_within("context.device.id", "context"));
        assert!(is_within("items[].sku", "items"));
        assert!(!is_within("contextual", "context"));
    }
}
