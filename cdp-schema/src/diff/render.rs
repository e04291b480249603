//! Readable text and JSON reports of a diff, with severities, compatibility and impact.

use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};

use crate::compat::{self, CompatViolation, CompatibilityMode, Direction};
use crate::consumers::{Consumer, Impact, ImpactLevel, impact};
use crate::diff::ChangeKind;
use crate::severity::{ClassifiedDiff, SchemaPolicy, Severity};
use crate::types::Promotions;

/// Everything a person needs to decide about a schema change: the classified changes,
/// whether the new schema passes the subject's compatibility mode, and which consumers it
/// hurts. Serializes to JSON; [`render`](DiffReport::render) gives the text form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffReport {
    /// The mode the new schema was checked against.
    pub compatibility: CompatibilityMode,
    /// The promotion rules types were judged by.
    pub promotions: Promotions,
    /// Whether the new schema passes `compatibility` against the old one.
    pub compatible: bool,
    /// Why not, when it does not.
    pub violations: Vec<CompatViolation>,
    /// The highest severity of any change.
    pub max_severity: Severity,
    /// The changes with their severities.
    pub changes: ClassifiedDiff,
    /// What the changes do to the registered consumers (empty when none were given).
    pub impact: Impact,
}

impl DiffReport {
    /// Diffs `old` → `new` under `policy`, and judges the impact on `consumers`.
    pub fn new(old: &Schema, new: &Schema, policy: &SchemaPolicy, consumers: &[Consumer]) -> Self {
        let changes = policy.assess(old, new);
        let check = compat::check(policy.compatibility, new, &[(1, old)], policy.promotions);
        let impact = if consumers.is_empty() {
            Impact::default()
        } else {
            impact(consumers, &changes.diff())
        };
        DiffReport {
            compatibility: policy.compatibility,
            promotions: policy.promotions,
            compatible: check.is_compatible(),
            violations: check.violations,
            max_severity: changes.max_severity(),
            changes,
            impact,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as text, one change per line, aligned in columns.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let n = self.changes.changes.len();
        if n == 0 {
            out.push_str("No schema changes.\n");
        } else {
            let mut counts = Vec::new();
            for severity in [
                Severity::Block,
                Severity::Patch,
                Severity::Monitor,
                Severity::None,
            ] {
                let k = self
                    .changes
                    .changes
                    .iter()
                    .filter(|c| c.severity == severity)
                    .count();
                if k > 0 {
                    counts.push(format!("{k} {severity}"));
                }
            }
            let plural = if n == 1 { "" } else { "s" };
            out.push_str(&format!(
                "{n} schema change{plural} ({}); highest severity: {}\n",
                counts.join(", "),
                self.max_severity.as_str().to_uppercase()
            ));
        }
        let verdict = if self.compatible {
            "compatible"
        } else {
            "NOT compatible"
        };
        out.push_str(&format!(
            "Compatibility {} ({} promotions): {verdict}\n",
            self.compatibility, self.promotions
        ));
        for v in &self.violations {
            let way = match v.direction {
                Direction::Backward => "new schema reading old data",
                Direction::Forward => "old schema reading new data",
            };
            out.push_str(&format!(
                "  x {way}: `{}` {}\n",
                v.incompatibility.path, v.incompatibility.message
            ));
        }
        if n > 0 {
            let rows: Vec<[String; 4]> = self
                .changes
                .changes
                .iter()
                .map(|c| {
                    [
                        c.severity.as_str().to_string(),
                        c.change.kind.label().to_string(),
                        c.change.path.clone(),
                        detail(&c.change.kind),
                    ]
                })
                .collect();
            let header = [
                "SEVERITY".to_string(),
                "CHANGE".to_string(),
                "FIELD".to_string(),
                "DETAIL".to_string(),
            ];
            let widths: Vec<usize> = (0..3)
                .map(|i| {
                    rows.iter()
                        .chain(std::iter::once(&header))
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            out.push('\n');
            for row in std::iter::once(&header).chain(&rows) {
                let line = format!(
                    "  {:w0$}  {:w1$}  {:w2$}  {}",
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2]
                );
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        if !self.impact.consumers.is_empty() {
            out.push_str("\nConsumers:\n");
            for c in &self.impact.consumers {
                out.push_str(&format!("  {:10}  {} ({})", c.level, c.consumer, c.kind));
                if c.level == ImpactLevel::Unaffected {
                    out.push('\n');
                    continue;
                }
                out.push_str(":\n");
                for f in &c.fields {
                    out.push_str(&format!(
                        "      reads `{}`: {} [{}]\n",
                        f.field, f.change, f.level
                    ));
                }
            }
        }
        out
    }
}

fn detail(kind: &ChangeKind) -> String {
    let nullable = |n: bool| if n { "nullable" } else { "required" };
    match kind {
        ChangeKind::Added {
            data_type,
            nullable: n,
        } => format!("{data_type}, {}", nullable(*n)),
        ChangeKind::Removed {
            data_type,
            nullable: n,
        } => format!("was {data_type}, {}", nullable(*n)),
        ChangeKind::Renamed { from } => format!("from `{from}` (declared alias)"),
        ChangeKind::ProbableRename { from, evidence } => {
            format!("from `{from}`? {}", evidence.join("; "))
        }
        ChangeKind::Widened { from, to }
        | ChangeKind::Narrowed { from, to }
        | ChangeKind::TypeChanged { from, to } => format!("{from} -> {to}"),
        ChangeKind::NullabilityRelaxed => "required -> nullable".into(),
        ChangeKind::NullabilityTightened => "nullable -> required".into(),
        ChangeKind::SemanticChanged {
            attribute,
            from,
            to,
        } => format!(
            "{attribute}: {} -> {}",
            from.as_deref().unwrap_or("(none)"),
            to.as_deref().unwrap_or("(none)")
        ),
    }
}

/// A readable report of the changes from `old` to `new` under `policy`: each change with
/// its severity, and whether `new` passes the policy's compatibility mode.
///
/// ```
/// use arrow::datatypes::{DataType, Field, Schema};
/// use cdp_schema::{SchemaPolicy, render_report};
///
/// let old = Schema::new(vec![Field::new("amount", DataType::Int32, false)]);
/// let new = Schema::new(vec![Field::new("amount", DataType::Int64, false)]);
/// let report = render_report(&old, &new, &SchemaPolicy::default());
/// assert!(report.contains("widened"));
/// ```
pub fn render_report(old: &Schema, new: &Schema, policy: &SchemaPolicy) -> String {
    DiffReport::new(old, new, policy, &[]).render()
}

/// Like [`render_report`], with what the changes do to `consumers`.
pub fn render_report_with_consumers(
    old: &Schema,
    new: &Schema,
    policy: &SchemaPolicy,
    consumers: &[Consumer],
) -> String {
    DiffReport::new(old, new, policy, consumers).render()
}
