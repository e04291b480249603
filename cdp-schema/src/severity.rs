//! Severity of each change, from a per-subject [`SchemaPolicy`].

use std::collections::BTreeMap;

use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

use crate::compat::CompatibilityMode;
use crate::diff::{Change, ChangeKind, SchemaDiff};
use crate::types::Promotions;

/// How much a change matters, least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nothing to do: the change flows through.
    None,
    /// Flows through; worth a look (dashboards, alerts).
    Monitor,
    /// Flows through, but downstream needs a patch (mapping, consumer update).
    Patch,
    /// Must not reach destinations until someone decides.
    Block,
}

impl Severity {
    /// The name used in reports (`no action`, `monitor`, `patch`, `block`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::None => "no action",
            Severity::Monitor => "monitor",
            Severity::Patch => "patch",
            Severity::Block => "block",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The kinds of change a policy assigns severities to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCategory {
    /// A nullable field was added.
    FieldAdded,
    /// A required field was added.
    RequiredFieldAdded,
    /// A field was removed.
    FieldRemoved,
    /// A field was renamed with a declared alias.
    FieldRenamed,
    /// A field looks renamed, without an alias.
    ProbableRename,
    /// A type was promoted.
    TypeWidened,
    /// A type narrowed.
    TypeNarrowed,
    /// A type changed incompatibly.
    TypeChanged,
    /// A field may now be null.
    NullabilityRelaxed,
    /// A field may no longer be null.
    NullabilityTightened,
    /// A unit, format or data class changed.
    SemanticChanged,
}

impl ChangeCategory {
    /// The category of a change.
    pub fn of(kind: &ChangeKind) -> ChangeCategory {
        match kind {
            ChangeKind::Added { nullable: true, .. } => ChangeCategory::FieldAdded,
            ChangeKind::Added {
                nullable: false, ..
            } => ChangeCategory::RequiredFieldAdded,
            ChangeKind::Removed { .. } => ChangeCategory::FieldRemoved,
            ChangeKind::Renamed { .. } => ChangeCategory::FieldRenamed,
            ChangeKind::ProbableRename { .. } => ChangeCategory::ProbableRename,
            ChangeKind::Widened { .. } => ChangeCategory::TypeWidened,
            ChangeKind::Narrowed { .. } => ChangeCategory::TypeNarrowed,
            ChangeKind::TypeChanged { .. } => ChangeCategory::TypeChanged,
            ChangeKind::NullabilityRelaxed => ChangeCategory::NullabilityRelaxed,
            ChangeKind::NullabilityTightened => ChangeCategory::NullabilityTightened,
            ChangeKind::SemanticChanged { .. } => ChangeCategory::SemanticChanged,
        }
    }
}

/// A severity for one field (or subtree), overriding the category default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityOverride {
    /// The field path (`context.device.id`), or a subtree (`context.*`).
    pub path: String,
    /// Only changes of this category; all categories when absent.
    #[serde(default)]
    pub category: Option<ChangeCategory>,
    /// The severity to use.
    pub severity: Severity,
}

impl SeverityOverride {
    fn matches(&self, change: &Change) -> bool {
        let category_ok = self
            .category
            .is_none_or(|c| c == ChangeCategory::of(&change.kind));
        let path_ok = |path: &str| match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix) || prefix.strip_suffix('.') == Some(path),
            None => path == self.path,
        };
        category_ok && (path_ok(&change.path) || change.old_path().is_some_and(path_ok))
    }
}

/// How a subject's schema may evolve and how much each change matters.
///
/// Serialized as a subject's policy document:
///
/// ```json
/// { "compatibility": "BACKWARD", "promotions": "iceberg",
///   "severities": { "field_removed": "block", "type_widened": "none" },
///   "overrides": [ { "path": "context.*", "severity": "monitor" } ] }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaPolicy {
    /// Compatibility mode the registry enforces on registration.
    #[serde(default)]
    pub compatibility: CompatibilityMode,
    /// Which type changes are promotions.
    #[serde(default)]
    pub promotions: Promotions,
    /// Severity per category; categories left out keep their default.
    #[serde(default)]
    pub severities: BTreeMap<ChangeCategory, Severity>,
    /// Per-field overrides; the first that matches wins.
    #[serde(default)]
    pub overrides: Vec<SeverityOverride>,
}

impl SchemaPolicy {
    /// The default severity of a category: additions flow, widenings and nullability
    /// changes are monitored, declared renames and semantic changes need a patch
    /// downstream, removals, undeclared renames, narrowings and type changes block.
    pub fn default_severity(category: ChangeCategory) -> Severity {
        use ChangeCategory::*;
        match category {
            FieldAdded => Severity::None,
            RequiredFieldAdded | TypeWidened | NullabilityRelaxed | NullabilityTightened => {
                Severity::Monitor
            }
            FieldRenamed | SemanticChanged => Severity::Patch,
            FieldRemoved | ProbableRename | TypeNarrowed | TypeChanged => Severity::Block,
        }
    }

    /// Sets the compatibility mode.
    pub fn with_compatibility(mut self, mode: CompatibilityMode) -> Self {
        self.compatibility = mode;
        self
    }

    /// Sets the promotion rules.
    pub fn with_promotions(mut self, promotions: Promotions) -> Self {
        self.promotions = promotions;
        self
    }

    /// Sets the severity of a category.
    pub fn with_severity(mut self, category: ChangeCategory, severity: Severity) -> Self {
        self.severities.insert(category, severity);
        self
    }

    /// Adds a per-field override (`path` exact, or a subtree ending in `*`).
    pub fn with_override(
        mut self,
        path: impl Into<String>,
        category: Option<ChangeCategory>,
        severity: Severity,
    ) -> Self {
        self.overrides.push(SeverityOverride {
            path: path.into(),
            category,
            severity,
        });
        self
    }

    /// The severity of one change.
    pub fn severity(&self, change: &Change) -> Severity {
        if let Some(o) = self.overrides.iter().find(|o| o.matches(change)) {
            return o.severity;
        }
        let category = ChangeCategory::of(&change.kind);
        self.severities
            .get(&category)
            .copied()
            .unwrap_or_else(|| Self::default_severity(category))
    }

    /// Every change of `diff` with its category and severity.
    pub fn classify(&self, diff: &SchemaDiff) -> ClassifiedDiff {
        ClassifiedDiff {
            changes: diff
                .changes
                .iter()
                .map(|c| ClassifiedChange {
                    change: c.clone(),
                    category: ChangeCategory::of(&c.kind),
                    severity: self.severity(c),
                })
                .collect(),
        }
    }

    /// Diffs two schemas with this policy's promotions and classifies the changes.
    pub fn assess(&self, old: &Schema, new: &Schema) -> ClassifiedDiff {
        self.classify(&SchemaDiff::between(old, new, self.promotions))
    }
}

/// A change with its category and severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifiedChange {
    /// The change.
    #[serde(flatten)]
    pub change: Change,
    /// Its category.
    pub category: ChangeCategory,
    /// Its severity under the subject's policy.
    pub severity: Severity,
}

/// A diff whose changes carry severities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClassifiedDiff {
    /// The changes, in schema order.
    pub changes: Vec<ClassifiedChange>,
}

impl ClassifiedDiff {
    /// The highest severity, `None` when nothing changed.
    pub fn max_severity(&self) -> Severity {
        self.changes
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::None)
    }

    /// The changes at `Block`.
    pub fn blocking(&self) -> impl Iterator<Item = &ClassifiedChange> {
        self.changes
            .iter()
            .filter(|c| c.severity == Severity::Block)
    }

    /// The plain diff.
    pub fn diff(&self) -> SchemaDiff {
        SchemaDiff {
            changes: self.changes.iter().map(|c| c.change.clone()).collect(),
        }
    }
}
