//! Tracking plans for events, in the spirit of Segment Protocols: per event name, the
//! allowed and required properties with their types. Unplanned events and violations are
//! counted per event, and blocked (dead-lettered) or let through by policy.
//!
//! Events arrive as rows with an event-name column (`event`) and their properties either
//! in a struct column (`properties`, as Segment `track` calls have them) or as top-level
//! columns. Unplanned *properties* can only be told apart from envelope fields in the
//! struct layout, so [`EventPlan::allow_unplanned_properties`] applies there only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray, RecordBatch, Scalar, StringArray, StructArray};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{and, cast, filter_record_batch, is_not_null, is_null, not, or};
use arrow::datatypes::{DataType, SchemaRef};
use cdp_core::event::row_to_json;
use cdp_core::{Batch, DeadLetter, Transform, TransformOutput};
use serde::{Deserialize, Serialize};

use crate::contract::{RowViolation, RuleKind, column_at_path, definite, wrong_type};
use crate::error::{Error, Result, lock};
use crate::types::TypeFamily;

/// A planned property of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyRule {
    /// The property name.
    pub name: String,
    /// Whether every event of this name must carry it.
    #[serde(default)]
    pub required: bool,
    /// The type family its values must be readable as.
    #[serde(default, rename = "type")]
    pub family: Option<TypeFamily>,
}

impl PropertyRule {
    /// A required property of `family`.
    pub fn required(name: impl Into<String>, family: TypeFamily) -> Self {
        PropertyRule {
            name: name.into(),
            required: true,
            family: Some(family),
        }
    }

    /// An optional property of `family`.
    pub fn optional(name: impl Into<String>, family: TypeFamily) -> Self {
        PropertyRule {
            name: name.into(),
            required: false,
            family: Some(family),
        }
    }
}

/// The plan of one event name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventPlan {
    /// Its properties.
    #[serde(default)]
    pub properties: Vec<PropertyRule>,
    /// Whether properties outside the plan may carry values.
    #[serde(default = "yes")]
    pub allow_unplanned_properties: bool,
}

fn yes() -> bool {
    true
}

impl EventPlan {
    /// A plan of `properties` that allows others.
    pub fn new(properties: Vec<PropertyRule>) -> Self {
        EventPlan {
            properties,
            allow_unplanned_properties: true,
        }
    }

    /// Refuses properties outside the plan.
    pub fn strict(mut self) -> Self {
        self.allow_unplanned_properties = false;
        self
    }
}

/// What happens to rows a plan does not cover or that break it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// Count them and let them through.
    Allow,
    /// Count them and send them to the dead-letter path.
    Block,
}

fn default_event_column() -> String {
    "event".into()
}

fn default_properties_column() -> Option<String> {
    Some("properties".into())
}

fn allow() -> PlanAction {
    PlanAction::Allow
}

fn block() -> PlanAction {
    PlanAction::Block
}

/// A tracking plan.
///
/// ```json
/// { "events": { "Order Completed": { "properties": [
///       { "name": "order_id", "required": true, "type": "string" },
///       { "name": "revenue", "type": "float" } ] } },
///   "on_unplanned_event": "allow", "on_violation": "block" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingPlan {
    /// Planned events by name.
    #[serde(default)]
    pub events: BTreeMap<String, EventPlan>,
    /// What to do with events the plan does not name. Default: allow.
    #[serde(default = "allow")]
    pub on_unplanned_event: PlanAction,
    /// What to do with planned events that break their plan. Default: block.
    #[serde(default = "block")]
    pub on_violation: PlanAction,
    /// The column holding the event name. Default `event`.
    #[serde(default = "default_event_column")]
    pub event_column: String,
    /// The struct column holding properties, when there is one. Default `properties`;
    /// without it (or when the batch has no such column) properties are top-level columns.
    #[serde(default = "default_properties_column")]
    pub properties_column: Option<String>,
}

impl Default for TrackingPlan {
    fn default() -> Self {
        TrackingPlan {
            events: BTreeMap::new(),
            on_unplanned_event: PlanAction::Allow,
            on_violation: PlanAction::Block,
            event_column: default_event_column(),
            properties_column: default_properties_column(),
        }
    }
}

/// Counts per event name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Rows seen.
    pub rows: u64,
    /// Rows of an event the plan does not name.
    pub unplanned: u64,
    /// Rows breaking their event's plan.
    pub violations: u64,
    /// Rows dead-lettered.
    pub blocked: u64,
}

/// The outcome of checking one batch.
#[derive(Debug, Clone)]
pub struct PlanValidation {
    /// One entry per row: `true` when the row is let through.
    pub pass: BooleanArray,
    /// Every violation and unplanned event, by row.
    pub violations: Vec<RowViolation>,
    /// Counts per event name (`(none)` for rows without one).
    pub counts: BTreeMap<String, EventCounts>,
}

impl TrackingPlan {
    /// Adds (or replaces) the plan of `event`.
    pub fn event(mut self, event: impl Into<String>, plan: EventPlan) -> Self {
        self.events.insert(event.into(), plan);
        self
    }

    /// Checks `batch` against the plan.
    pub fn validate(&self, batch: &RecordBatch) -> Result<PlanValidation> {
        let rows = batch.num_rows();
        let names = batch
            .column_by_name(&self.event_column)
            .ok_or_else(|| {
                Error::Config(format!(
                    "tracking plan: the batch has no event column `{}`",
                    self.event_column
                ))
            })
            .and_then(|c| Ok(cast(c, &DataType::Utf8)?))?;
        let names = names
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Config("event column did not cast to text".into()))?;
        let props = self
            .properties_column
            .as_ref()
            .filter(|p| {
                batch
                    .column_by_name(p)
                    .is_some_and(|c| c.as_any().is::<StructArray>())
            })
            .cloned();
        let prop_path = |name: &str| match &props {
            Some(p) => format!("{p}.{name}"),
            None => name.to_string(),
        };

        let mut planned = BooleanArray::from(vec![false; rows]);
        let mut violating = BooleanArray::from(vec![false; rows]);
        let mut violations = Vec::new();
        let push = |mask: &BooleanArray,
                    field: &str,
                    rule: RuleKind,
                    message: String,
                    violations: &mut Vec<RowViolation>| {
            for row in mask.values().set_indices() {
                violations.push(RowViolation {
                    row,
                    field: field.to_string(),
                    rule,
                    message: message.clone(),
                });
            }
        };
        for (event, plan) in &self.events {
            let is_event = definite(&eq(
                names,
                &Scalar::new(StringArray::from(vec![event.as_str()])),
            )?);
            if is_event.true_count() == 0 {
                continue;
            }
            planned = or(&planned, &is_event)?;
            for rule in &plan.properties {
                let path = prop_path(&rule.name);
                let column = column_at_path(batch, &path);
                if rule.required {
                    let missing = match &column {
                        Some(c) => and(&is_event, &is_null(c)?)?,
                        None => is_event.clone(),
                    };
                    if missing.true_count() > 0 {
                        violating = or(&violating, &missing)?;
                        push(
                            &missing,
                            &rule.name,
                            RuleKind::Missing,
                            format!("`{event}` requires property `{}`", rule.name),
                            &mut violations,
                        );
                    }
                }
                if let (Some(family), Some(column)) = (rule.family, &column) {
                    let present = is_not_null(column)?;
                    let bad = and(&is_event, &definite(&wrong_type(column, family, &present)?))?;
                    if bad.true_count() > 0 {
                        violating = or(&violating, &bad)?;
                        push(
                            &bad,
                            &rule.name,
                            RuleKind::WrongType,
                            format!("`{event}` property `{}` must be {family}", rule.name),
                            &mut violations,
                        );
                    }
                }
            }
            if !plan.allow_unplanned_properties
                && let Some(p) = &props
                && let Some(arr) = batch
                    .column_by_name(p)
                    .and_then(|c| c.as_any().downcast_ref::<StructArray>())
            {
                for (field, child) in arr.fields().iter().zip(arr.columns()) {
                    if plan.properties.iter().any(|r| r.name == *field.name()) {
                        continue;
                    }
                    let bad = and(
                        &is_event,
                        &definite(&and(&is_not_null(child)?, &is_not_null(arr)?)?),
                    )?;
                    if bad.true_count() > 0 {
                        violating = or(&violating, &bad)?;
                        push(
                            &bad,
                            field.name(),
                            RuleKind::UnplannedProperty,
                            format!("`{event}` does not plan property `{}`", field.name()),
                            &mut violations,
                        );
                    }
                }
            }
        }
        let unplanned = not(&planned)?;
        push(
            &unplanned,
            &self.event_column,
            RuleKind::UnplannedEvent,
            "event is not in the tracking plan".into(),
            &mut violations,
        );
        violations.sort_by_key(|v| v.row);

        let mut blocked = BooleanArray::from(vec![false; rows]);
        if self.on_unplanned_event == PlanAction::Block {
            blocked = or(&blocked, &unplanned)?;
        }
        if self.on_violation == PlanAction::Block {
            blocked = or(&blocked, &violating)?;
        }
        let mut counts: BTreeMap<String, EventCounts> = BTreeMap::new();
        for row in 0..rows {
            let name = if names.is_null(row) {
                "(none)"
            } else {
                names.value(row)
            };
            let c = counts.entry(name.to_string()).or_default();
            c.rows += 1;
            c.unplanned += u64::from(unplanned.value(row));
            c.violations += u64::from(violating.value(row));
            c.blocked += u64::from(blocked.value(row));
        }
        Ok(PlanValidation {
            pass: not(&blocked)?,
            violations,
            counts,
        })
    }
}

/// Counts of a [`TrackingPlanCheck`] per event name, readable while the pipeline runs.
#[derive(Debug, Clone, Default)]
pub struct TrackingStats {
    counts: Arc<Mutex<BTreeMap<String, EventCounts>>>,
}

impl TrackingStats {
    /// The counts so far, per event name.
    pub fn counts(&self) -> BTreeMap<String, EventCounts> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// A transform enforcing a [`TrackingPlan`]: blocked rows go to the dead-letter path with
/// their reasons, the rest continue; everything is counted.
#[derive(Debug)]
pub struct TrackingPlanCheck {
    name: String,
    plan: TrackingPlan,
    stats: TrackingStats,
}

impl TrackingPlanCheck {
    /// A check of `plan`.
    pub fn new(plan: TrackingPlan) -> Self {
        TrackingPlanCheck {
            name: "tracking_plan".into(),
            plan,
            stats: TrackingStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> TrackingStats {
        self.stats.clone()
    }
}

impl Transform for TrackingPlanCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        let v = self.plan.validate(&batch.data)?;
        {
            let mut counts = lock(&self.stats.counts, "tracking stats")?;
            for (name, c) in &v.counts {
                let total = counts.entry(name.clone()).or_default();
                total.rows += c.rows;
                total.unplanned += c.unplanned;
                total.violations += c.violations;
                total.blocked += c.blocked;
            }
        }
        let blocked = not(&v.pass)?;
        if blocked.true_count() == 0 {
            return Ok(TransformOutput::pass(batch));
        }
        let stage = format!("transform {}", self.name);
        let dead_letters = blocked
            .values()
            .set_indices()
            .map(|row| {
                let reasons: Vec<&str> = v
                    .violations
                    .iter()
                    .filter(|x| x.row == row)
                    .map(|x| x.message.as_str())
                    .collect();
                DeadLetter::new(
                    batch.stream.to_string(),
                    stage.clone(),
                    format!("tracking plan: {}", reasons.join("; ")),
                    row_to_json(&batch.data, row),
                )
                .at(format!("batch {} row {row}", batch.meta.lineage_id))
            })
            .collect();
        let data = filter_record_batch(&batch.data, &v.pass)?;
        Ok(TransformOutput {
            batch: Some(Batch { data, ..batch }),
            dead_letters,
        })
    }
}
