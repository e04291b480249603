//! Data contracts: required and optional fields, their types and allowed values, and
//! deprecations with a window. Validating a batch gives row-level violations; the
//! [`ContractCheck`] transform sends the violating rows to the dead-letter path and passes
//! the valid rows on.
//!
//! Checks are columnar: each rule is a boolean mask computed with Arrow kernels
//! (`is_null`, `cast`, `eq`), and only violating rows are visited to describe them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar, StringArray};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{
    CastOptions, and, cast_with_options, filter_record_batch, is_not_null, is_null, not, or,
};
use arrow::datatypes::{DataType, SchemaRef};
use cdp_core::event::row_to_json;
use cdp_core::path::FieldPath;
use cdp_core::{Batch, DeadLetter, Transform, TransformOutput};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::types::TypeFamily;

/// A field's deprecation window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deprecation {
    /// From when producers should stop sending it (rows carrying it raise a warning).
    pub since: DateTime<Utc>,
    /// After this, rows still carrying a value are violations.
    #[serde(default)]
    pub removed_after: Option<DateTime<Utc>>,
    /// The field to use instead.
    #[serde(default)]
    pub replacement: Option<String>,
}

/// The rules for one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// The field's path (`email`, `context.device.id`).
    pub path: String,
    /// Whether every row must hold a value.
    #[serde(default)]
    pub required: bool,
    /// The type family values must be readable as (`"integer"`, `"string"`, ...).
    #[serde(default, rename = "type")]
    pub family: Option<TypeFamily>,
    /// The only values allowed (compared as text); any value when empty.
    #[serde(default)]
    pub allowed_values: Vec<String>,
    /// The field's deprecation, if it is being retired.
    #[serde(default)]
    pub deprecation: Option<Deprecation>,
}

impl FieldRule {
    /// A rule for `path` that allows anything.
    pub fn new(path: impl Into<String>) -> Self {
        FieldRule {
            path: path.into(),
            required: false,
            family: None,
            allowed_values: Vec::new(),
            deprecation: None,
        }
    }

    /// Every row must hold a value.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Values must be readable as `family`.
    pub fn of_type(mut self, family: TypeFamily) -> Self {
        self.family = Some(family);
        self
    }

    /// Values must be one of `values`.
    pub fn one_of<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_values = values.into_iter().map(Into::into).collect();
        self
    }

    /// The field is deprecated since `since`, and removed after `removed_after`.
    pub fn deprecated(
        mut self,
        since: DateTime<Utc>,
        removed_after: Option<DateTime<Utc>>,
        replacement: Option<String>,
    ) -> Self {
        self.deprecation = Some(Deprecation {
            since,
            removed_after,
            replacement,
        });
        self
    }
}

/// A subject's contract.
///
/// ```json
/// { "fields": [
///     { "path": "id", "required": true, "type": "integer" },
///     { "path": "plan", "allowed_values": ["free", "pro"] },
///     { "path": "phone", "deprecation": { "since": "2024-01-01T00:00:00Z",
///                                         "removed_after": "2024-07-01T00:00:00Z" } } ],
///   "allow_undeclared": true }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// The field rules.
    #[serde(default)]
    pub fields: Vec<FieldRule>,
    /// Whether top-level fields the contract does not declare may carry values.
    #[serde(default = "yes")]
    pub allow_undeclared: bool,
}

fn yes() -> bool {
    true
}

impl Default for Contract {
    fn default() -> Self {
        Contract {
            fields: Vec::new(),
            allow_undeclared: true,
        }
    }
}

/// Which rule a row broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A required field is null or absent.
    Missing,
    /// The value is not readable as the declared type.
    WrongType,
    /// The value is not one of the allowed values.
    NotAllowed,
    /// The field is past its removal date and still carries a value.
    Removed,
    /// The field is not in the contract, which allows no others.
    Undeclared,
    /// The event is not in the tracking plan.
    UnplannedEvent,
    /// The property is not in the event's plan, which allows no others.
    UnplannedProperty,
}

/// One row breaking one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowViolation {
    /// The row's index in the batch.
    pub row: usize,
    /// The field.
    pub field: String,
    /// The rule.
    pub rule: RuleKind,
    /// What was wrong, for people.
    pub message: String,
}

/// The outcome of validating one batch.
#[derive(Debug, Clone)]
pub struct Validation {
    /// One entry per row: `true` when the row breaks no rule.
    pub valid: BooleanArray,
    /// Every violation, by row.
    pub violations: Vec<RowViolation>,
    /// Things worth knowing that reject nothing (deprecated fields in use).
    pub warnings: Vec<String>,
}

impl Validation {
    /// Number of rows that pass.
    pub fn valid_rows(&self) -> usize {
        self.valid.true_count()
    }

    /// Number of rows that break a rule.
    pub fn invalid_rows(&self) -> usize {
        self.valid.len() - self.valid.true_count()
    }

    /// The reasons of row `row`, joined.
    pub fn reasons(&self, row: usize) -> String {
        self.violations
            .iter()
            .filter(|v| v.row == row)
            .map(|v| v.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The column at dot `path` ([`FieldPath`]: `a.b.c` through structs), with the nulls of
/// its ancestors; `None` when the batch has no such field.
pub(crate) fn column_at_path(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    FieldPath::parse(path).ok()?.column(batch).ok()
}

/// Nulls in a mask count as `false`.
pub(crate) fn definite(mask: &BooleanArray) -> BooleanArray {
    match mask.nulls() {
        None => mask.clone(),
        Some(nulls) => BooleanArray::new(mask.values() & nulls.inner(), None),
    }
}

fn all(value: bool, rows: usize) -> BooleanArray {
    BooleanArray::from(vec![value; rows])
}

impl Contract {
    /// A contract of `fields` that allows undeclared fields.
    pub fn new(fields: Vec<FieldRule>) -> Self {
        Contract {
            fields,
            allow_undeclared: true,
        }
    }

    /// Validates `batch` as of `now` (which decides deprecation windows).
    pub fn validate(&self, batch: &RecordBatch, now: DateTime<Utc>) -> Result<Validation> {
        let rows = batch.num_rows();
        let mut masks: Vec<(String, RuleKind, String, BooleanArray)> = Vec::new();
        let mut warnings = Vec::new();
        for rule in &self.fields {
            let Some(column) = column_at_path(batch, &rule.path) else {
                if rule.required {
                    masks.push((
                        rule.path.clone(),
                        RuleKind::Missing,
                        format!("required field `{}` is absent", rule.path),
                        all(true, rows),
                    ));
                }
                continue;
            };
            let present = is_not_null(&column)?;
            if rule.required {
                masks.push((
                    rule.path.clone(),
                    RuleKind::Missing,
                    format!("required field `{}` is null", rule.path),
                    is_null(&column)?,
                ));
            }
            if let Some(family) = rule.family {
                let bad = wrong_type(&column, family, &present)?;
                masks.push((
                    rule.path.clone(),
                    RuleKind::WrongType,
                    format!(
                        "field `{}` is not readable as {family} (column type {})",
                        rule.path,
                        crate::types::type_name(column.data_type())
                    ),
                    bad,
                ));
            }
            if !rule.allowed_values.is_empty() {
                let text = cast_with_options(&column, &DataType::Utf8, &CastOptions::default())?;
                let mut allowed = all(false, rows);
                for value in &rule.allowed_values {
                    let scalar = Scalar::new(StringArray::from(vec![value.as_str()]));
                    allowed = or(&allowed, &definite(&eq(&text, &scalar)?))?;
                }
                masks.push((
                    rule.path.clone(),
                    RuleKind::NotAllowed,
                    format!(
                        "field `{}` holds a value outside {:?}",
                        rule.path, rule.allowed_values
                    ),
                    and(&present, &not(&allowed)?)?,
                ));
            }
            if let Some(d) = &rule.deprecation {
                let in_use = present.true_count();
                let instead = d
                    .replacement
                    .as_ref()
                    .map(|r| format!("; use `{r}`"))
                    .unwrap_or_default();
                match d.removed_after {
                    Some(removed) if now > removed => masks.push((
                        rule.path.clone(),
                        RuleKind::Removed,
                        format!("field `{}` was removed after {removed}{instead}", rule.path),
                        present,
                    )),
                    _ if now >= d.since && in_use > 0 => warnings.push(format!(
                        "{in_use} rows carry `{}`, deprecated since {}{}{instead}",
                        rule.path,
                        d.since,
                        d.removed_after
                            .map(|r| format!(" and removed after {r}"))
                            .unwrap_or_default()
                    )),
                    _ => {}
                }
            }
        }
        if !self.allow_undeclared {
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let declared = self.fields.iter().any(|r| {
                    r.path == *field.name() || r.path.starts_with(&format!("{}.", field.name()))
                });
                if !declared && !cdp_core::record::is_system_column(field.name()) {
                    masks.push((
                        field.name().clone(),
                        RuleKind::Undeclared,
                        format!("field `{}` is not in the contract", field.name()),
                        is_not_null(column)?,
                    ));
                }
            }
        }

        let mut invalid = all(false, rows);
        let mut violations = Vec::new();
        for (field, rule, message, mask) in &masks {
            let mask = definite(mask);
            if mask.true_count() == 0 {
                continue;
            }
            invalid = or(&invalid, &mask)?;
            for row in mask.values().set_indices() {
                violations.push(RowViolation {
                    row,
                    field: field.clone(),
                    rule: *rule,
                    message: message.clone(),
                });
            }
        }
        violations.sort_by_key(|v| v.row);
        Ok(Validation {
            valid: not(&invalid)?,
            violations,
            warnings,
        })
    }
}

/// Rows holding a value not readable as `family`.
pub(crate) fn wrong_type(
    column: &ArrayRef,
    family: TypeFamily,
    present: &BooleanArray,
) -> Result<BooleanArray> {
    if TypeFamily::of(column.data_type()) == family {
        return Ok(all(false, column.len()));
    }
    let Some(target) = family.canonical_type() else {
        return Ok(present.clone());
    };
    let options = CastOptions {
        safe: true,
        ..CastOptions::default()
    };
    match cast_with_options(column, &target, &options) {
        // A value that casts to null did not parse.
        Ok(cast) => Ok(and(present, &is_null(&cast)?)?),
        Err(_) => Ok(present.clone()),
    }
}

/// Counts of what a [`ContractCheck`] did; shared with its handle.
#[derive(Debug, Default)]
pub struct ContractStats {
    /// Rows passed on.
    pub valid_rows: AtomicU64,
    /// Rows dead-lettered.
    pub invalid_rows: AtomicU64,
    /// Deprecation warnings raised.
    pub warnings: AtomicU64,
}

/// A transform that validates every batch against a contract: violating rows go to the
/// dead-letter path with their reasons, valid rows continue.
#[derive(Debug)]
pub struct ContractCheck {
    name: String,
    contract: Contract,
    stats: Arc<ContractStats>,
}

impl ContractCheck {
    /// A check named `contract` of `contract`.
    pub fn new(contract: Contract) -> Self {
        ContractCheck {
            name: "contract".into(),
            contract,
            stats: Arc::default(),
        }
    }

    /// Renames the transform (for dead letters and metrics).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The counters, readable while the pipeline runs.
    pub fn stats(&self) -> Arc<ContractStats> {
        self.stats.clone()
    }
}

impl Transform for ContractCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn output_schema(&self, input: &SchemaRef) -> cdp_core::Result<SchemaRef> {
        Ok(input.clone())
    }

    fn apply(&self, batch: Batch) -> cdp_core::Result<TransformOutput> {
        Ok(enforce(&self.contract, batch, &self.name, &self.stats)?)
    }
}

/// Validates `batch` against `contract`: violating rows become dead letters of stage
/// `transform <name>`, valid rows continue.
pub(crate) fn enforce(
    contract: &Contract,
    batch: Batch,
    name: &str,
    stats: &ContractStats,
) -> Result<TransformOutput> {
    let validation = contract.validate(&batch.data, Utc::now())?;
    for warning in &validation.warnings {
        tracing::warn!(stream = %batch.stream, "{warning}");
    }
    stats
        .warnings
        .fetch_add(validation.warnings.len() as u64, Ordering::Relaxed);
    let invalid = validation.invalid_rows();
    stats
        .valid_rows
        .fetch_add(validation.valid_rows() as u64, Ordering::Relaxed);
    stats
        .invalid_rows
        .fetch_add(invalid as u64, Ordering::Relaxed);
    if invalid == 0 {
        return Ok(TransformOutput::pass(batch));
    }
    let stage = format!("transform {name}");
    let invalid_mask = not(&validation.valid)?;
    let dead_letters = invalid_mask
        .values()
        .set_indices()
        .map(|row| {
            DeadLetter::new(
                batch.stream.to_string(),
                stage.clone(),
                format!("contract violated: {}", validation.reasons(row)),
                row_to_json(&batch.data, row),
            )
            .at(format!("batch {} row {row}", batch.meta.lineage_id))
        })
        .collect();
    let data = filter_record_batch(&batch.data, &validation.valid)?;
    Ok(TransformOutput {
        batch: Some(Batch { data, ..batch }),
        dead_letters,
    })
}

/// A [`FlowCheck`](cdp_core::FlowCheck) refusing, before any data moves and on every
/// schema change, a flow whose schema lacks a field the stream's registered contract
/// requires (the contract of the subject's latest version in the registry).
#[derive(Debug, Clone)]
pub struct ContractFlowCheck {
    registry: crate::registry::SchemaRegistry,
}

impl ContractFlowCheck {
    /// A check against the contracts in `registry`.
    pub fn new(registry: crate::registry::SchemaRegistry) -> Self {
        ContractFlowCheck { registry }
    }
}

impl cdp_core::FlowCheck for ContractFlowCheck {
    fn check(&self, flow: &cdp_core::Flow<'_>) -> cdp_core::Result<()> {
        let Some(latest) = self.registry.latest(flow.stream)? else {
            return Ok(());
        };
        let Some(contract) = latest.contract else {
            return Ok(());
        };
        for rule in contract.fields.iter().filter(|r| r.required) {
            if !schema_has_path(flow.schema, &rule.path) {
                return Err(cdp_core::Error::Policy {
                    stream: flow.stream.to_string(),
                    destination: flow.destination.to_string(),
                    message: format!(
                        "field `{}` is required by the contract of version {}, but the \
                         schema reaching the destination has no such field",
                        rule.path, latest.version
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Whether `schema` has a field at dot `path` (through structs).
fn schema_has_path(schema: &arrow::datatypes::Schema, path: &str) -> bool {
    FieldPath::parse(path).is_ok_and(|p| p.exists_in(schema.fields()))
}
