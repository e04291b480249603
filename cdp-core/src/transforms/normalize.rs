//! The `normalize` transform: nested source fields in, flat typed columns out.
//!
//! Each [`FieldRule`] reads a dot path (`context.traits.email`) through nested `Struct`
//! columns, cleans the value up with string [`Normaliser`]s, casts it to a [`CastType`] and
//! writes it as a top-level column. Everything is columnar: a rule costs one pass over the
//! column per step, whatever the batch size.
//!
//! A row whose value cannot be converted (a cast that fails, a phone number that is not one)
//! is not an error for the batch: it becomes a [`DeadLetter`] naming the field, the value and
//! the target, carrying the original row, and the other rows continue. A source path missing
//! from the input schema is a configuration error that fails the run, unless the rule is
//! `optional`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, StringArray,
    StringBuilder, new_null_array,
};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options, filter_record_batch};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{DeadLetter, row_to_json};
pub use crate::identifier::Normaliser;
use crate::identifier::{Normalised, Region};
use crate::path::{FieldPath, with_nulls};
use crate::record::{Batch, SYSTEM_PREFIX};
use crate::transform::{Transform, TransformOutput};

/// Stage name in dead letters.
const STAGE: &str = "transform normalize";
/// Stream named in schema errors raised without a batch (from
/// [`Transform::output_schema`]).
const ANY_STREAM: &str = "*";
/// Longest value quoted in a dead-letter reason; the full row is in the payload.
const MAX_QUOTED: usize = 80;

/// Configuration of [`Normalize`].
///
/// ```json
/// {
///   "fields": [
///     { "from": "context.traits.email", "to": "email", "normalise": ["trim", "lowercase", "empty_as_null"] },
///     { "from": "timestamp", "to": "event_time", "cast": "timestamp_us" },
///     { "from": "properties.revenue", "to": "revenue", "cast": "float64", "optional": true }
///   ],
///   "keep_unmapped": true,
///   "drop": ["context"]
/// }
/// ```
///
/// Output columns are the rules' `to` columns in rule order, then (with `keep_unmapped`)
/// the input's other top-level columns in input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// One rule per output column.
    pub fields: Vec<FieldRule>,
    /// Also pass on the input's top-level columns no rule consumed fully. A column is
    /// consumed fully when a rule reads it directly, or when rules read every leaf of it (a
    /// struct whose fields were all mapped). Default `false`: only mapped columns come out.
    #[serde(default)]
    pub keep_unmapped: bool,
    /// Top-level input columns never to pass on, even with `keep_unmapped`. Names absent
    /// from a batch are ignored.
    #[serde(default)]
    pub drop: Vec<String>,
    /// Region (ISO 3166 alpha-2, `US`, `GB`) of phone numbers written without a country
    /// code, for the `phone` (`e164`) normalisers that name none themselves. Without one,
    /// such numbers are invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_region: Option<Region>,
}

/// How to produce one output column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// Dot path of the source field: a top-level column (`email`) or a field of nested
    /// struct columns (`context.traits.email`); see [`FieldPath`] for names containing
    /// dots.
    pub from: String,
    /// Name of the output column.
    pub to: String,
    /// Arrow type to cast to. Without it the column keeps its type (`utf8` when
    /// normalisers are given). A value that is present but cannot be cast sends its row to
    /// the dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cast: Option<CastType>,
    /// String clean-ups from the identifier vocabulary ([`Normaliser`]), applied in order
    /// before the cast. A non-string source is rendered as a string first. A value a
    /// validating normaliser refuses (`email`, `phone`) sends its row to the dead letters.
    #[serde(default, alias = "normalize", skip_serializing_if = "Vec::is_empty")]
    pub normalise: Vec<Normaliser>,
    /// When the source path is absent from the input schema, produce an all-null column
    /// (of the `cast` type, `utf8` without one) instead of failing the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl FieldRule {
    /// A rule copying `from` to `to` unchanged.
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        FieldRule {
            from: from.into(),
            to: to.into(),
            cast: None,
            normalise: Vec::new(),
            optional: false,
        }
    }

    /// Casts the value to `cast`.
    pub fn cast(mut self, cast: CastType) -> Self {
        self.cast = Some(cast);
        self
    }

    /// Applies `normalisers` in order before the cast.
    pub fn normalise(mut self, normalisers: impl IntoIterator<Item = Normaliser>) -> Self {
        self.normalise.extend(normalisers);
        self
    }

    /// Makes the source optional.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// Target types of [`FieldRule::cast`], named as in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CastType {
    /// `Utf8`.
    Utf8,
    /// `Int64`; strings must hold an integer.
    Int64,
    /// `Float64`.
    Float64,
    /// `Boolean`; strings `true`/`false`, `t`/`f`, `yes`/`no`, `1`/`0` and the like.
    Boolean,
    /// `Timestamp(Microsecond, "UTC")`; strings are parsed as RFC 3339 (an offset is
    /// converted to UTC; a time without one is taken as UTC).
    TimestampUs,
    /// `Date32`; strings as `YYYY-MM-DD`.
    Date32,
}

impl CastType {
    /// The Arrow type of the output column.
    pub fn data_type(self) -> DataType {
        match self {
            CastType::Utf8 => DataType::Utf8,
            CastType::Int64 => DataType::Int64,
            CastType::Float64 => DataType::Float64,
            CastType::Boolean => DataType::Boolean,
            CastType::TimestampUs => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            CastType::Date32 => DataType::Date32,
        }
    }

    /// The name used in the config.
    pub fn name(self) -> &'static str {
        match self {
            CastType::Utf8 => "utf8",
            CastType::Int64 => "int64",
            CastType::Float64 => "float64",
            CastType::Boolean => "boolean",
            CastType::TimestampUs => "timestamp_us",
            CastType::Date32 => "date32",
        }
    }

    /// The type `cast_with_options` is asked for: timestamps are converted without a named
    /// zone and labelled `UTC` afterwards, so no time-zone database is needed.
    fn kernel_type(self, from: &DataType) -> DataType {
        match (self, from) {
            (CastType::TimestampUs, DataType::Timestamp(_, Some(tz))) => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(tz.clone()))
            }
            (CastType::TimestampUs, _) => DataType::Timestamp(TimeUnit::Microsecond, None),
            (other, _) => other.data_type(),
        }
    }
}

/// The `normalize` transform; see the [module docs](self) and [`NormalizeConfig`].
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use arrow::array::{AsArray, RecordBatch, StringArray, StructArray};
/// use arrow::datatypes::{DataType, Field};
/// use cdp_core::transforms::{Normalize, NormalizeConfig};
/// use cdp_core::{Batch, Transform};
///
/// # fn main() -> cdp_core::Result<()> {
/// let config: NormalizeConfig = serde_json::from_value(serde_json::json!({
///     "fields": [
///         { "from": "traits.email", "to": "email", "normalise": ["trim", "lowercase"] },
///         { "from": "ts", "to": "event_time", "cast": "timestamp_us" }
///     ]
/// }))?;
/// let normalize = Normalize::new(config)?;
///
/// let email = Field::new("email", DataType::Utf8, true);
/// let traits = StructArray::from(vec![(
///     Arc::new(email),
///     Arc::new(StringArray::from(vec![" Alice@X.io ", "bob@x.io"])) as _,
/// )]);
/// let ts = StringArray::from(vec!["2024-03-01T10:00:00Z", "yesterday"]);
/// let data = RecordBatch::try_from_iter([
///     ("traits", Arc::new(traits) as _),
///     ("ts", Arc::new(ts) as _),
/// ])?;
///
/// let input = data.schema();
/// let out = normalize.apply(Batch::new("events", data, "web"))?;
/// let batch = out.batch.expect("one row passes");
/// assert_eq!(batch.data.column(0).as_string::<i32>().value(0), "alice@x.io");
/// assert_eq!(batch.data.schema(), normalize.output_schema(&input)?);
/// // "yesterday" is no timestamp: that row is a dead letter, the other one passed.
/// assert_eq!(out.dead_letters.len(), 1);
/// assert!(out.dead_letters[0].reason.contains("yesterday"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Normalize {
    config: NormalizeConfig,
    /// Per rule: the parsed source path and the normalisers with the default region filled
    /// in.
    rules: Vec<(FieldPath, Vec<Normaliser>)>,
}

/// What one rule reads and writes, for one input schema.
#[derive(Debug)]
struct RulePlan {
    /// Child indices from the top-level column down; `None` for a missing optional source.
    path: Option<Vec<usize>>,
    /// Type of the value before the final cast (after normalisers).
    staged: DataType,
    /// Type of the output column.
    output: DataType,
}

/// How a batch of one schema is transformed.
#[derive(Debug)]
struct Plan {
    rules: Vec<RulePlan>,
    /// Input columns passed on unchanged.
    keep: Vec<usize>,
    schema: SchemaRef,
}

impl Normalize {
    /// Checks `config` and builds the transform.
    ///
    /// Fails with [`Error::Config`] on an empty or malformed `from`, an empty `to`, a `to`
    /// used twice or starting with `_cdp_`, a `drop` naming an output column, or an unknown
    /// region.
    pub fn new(config: NormalizeConfig) -> Result<Self> {
        let mut targets = HashSet::new();
        for rule in &config.fields {
            if rule.from.is_empty() || rule.to.is_empty() {
                return Err(Error::Config(format!(
                    "normalize: rule `{}` -> `{}` needs both `from` and `to`",
                    rule.from, rule.to
                )));
            }
            if rule.to.starts_with(SYSTEM_PREFIX) {
                return Err(Error::Config(format!(
                    "normalize: output column `{}` uses the reserved prefix `{SYSTEM_PREFIX}`",
                    rule.to
                )));
            }
            if !targets.insert(rule.to.as_str()) {
                return Err(Error::Config(format!(
                    "normalize: output column `{}` is produced by two rules",
                    rule.to
                )));
            }
        }
        if let Some(name) = config.drop.iter().find(|d| targets.contains(d.as_str())) {
            return Err(Error::Config(format!(
                "normalize: `{name}` is both in `drop` and the `to` of a rule"
            )));
        }
        if let Some(region) = &config.default_region {
            region
                .validate()
                .map_err(|e| Error::Config(format!("normalize: default_region: {e}")))?;
        }
        let mut rules = Vec::with_capacity(config.fields.len());
        for rule in &config.fields {
            let path = FieldPath::parse(&rule.from)
                .map_err(|e| Error::Config(format!("normalize: rule `{}`: {e}", rule.to)))?;
            let mut steps = Vec::with_capacity(rule.normalise.len());
            for step in &rule.normalise {
                let step = match step {
                    Normaliser::Phone {
                        default_region: None,
                    } => Normaliser::Phone {
                        default_region: config.default_region,
                    },
                    other => other.clone(),
                };
                step.validate()
                    .map_err(|e| Error::Config(format!("normalize: rule `{}`: {e}", rule.to)))?;
                steps.push(step);
            }
            rules.push((path, steps));
        }
        Ok(Normalize { config, rules })
    }

    /// The configuration.
    pub fn config(&self) -> &NormalizeConfig {
        &self.config
    }

    fn plan(&self, input: &Schema, stream: &str) -> Result<Plan> {
        let schema_error = |message: String| Error::Schema {
            stream: stream.to_string(),
            message: format!("normalize: {message}"),
        };
        let mut rules = Vec::with_capacity(self.config.fields.len());
        let mut fields = Vec::with_capacity(self.config.fields.len());
        let mut consumed: HashSet<Vec<usize>> = HashSet::new();
        for (rule, (path, _)) in self.config.fields.iter().zip(&self.rules) {
            let resolved = match path.resolve(input.fields()) {
                Ok(found) => Some((found.indices, found.field.data_type().clone())),
                Err(_) if rule.optional => None,
                Err(why) => {
                    let why = why.message;
                    return Err(schema_error(format!(
                        "source `{}` of `{}` is not in the input: {why} \
                         (mark the rule `optional` if it may be missing)",
                        rule.from, rule.to
                    )));
                }
            };
            let plan = match resolved {
                None => {
                    let output = rule.cast.map_or(DataType::Utf8, CastType::data_type);
                    RulePlan {
                        path: None,
                        staged: output.clone(),
                        output,
                    }
                }
                Some((path, source)) => {
                    let staged = if rule.normalise.is_empty() {
                        source
                    } else if can_cast_types(&source, &DataType::Utf8) {
                        DataType::Utf8
                    } else {
                        return Err(schema_error(format!(
                            "source `{}` is {source}, which normalisers cannot read as text",
                            rule.from
                        )));
                    };
                    let output = match rule.cast {
                        None => staged.clone(),
                        Some(cast) => {
                            if staged != cast.data_type()
                                && !can_cast_types(&staged, &cast.kernel_type(&staged))
                            {
                                return Err(schema_error(format!(
                                    "source `{}` is {staged}, which cannot be cast to {}",
                                    rule.from,
                                    cast.name()
                                )));
                            }
                            cast.data_type()
                        }
                    };
                    consumed.insert(path.clone());
                    RulePlan {
                        path: Some(path),
                        staged,
                        output,
                    }
                }
            };
            fields.push(Arc::new(Field::new(&rule.to, plan.output.clone(), true)));
            rules.push(plan);
        }

        let mut keep = Vec::new();
        if self.config.keep_unmapped {
            for (i, field) in input.fields().iter().enumerate() {
                if self.config.drop.iter().any(|d| d == field.name())
                    || fully_consumed(field, &mut vec![i], &consumed)
                {
                    continue;
                }
                if self.config.fields.iter().any(|r| &r.to == field.name()) {
                    return Err(schema_error(format!(
                        "output column `{}` would also be passed on from the input \
                         (add it to `drop`, or rename the rule's `to`)",
                        field.name()
                    )));
                }
                keep.push(i);
                fields.push(field.clone());
            }
        }
        let schema = Schema::new_with_metadata(fields, input.metadata().clone());
        Ok(Plan {
            rules,
            keep,
            schema: Arc::new(schema),
        })
    }

    /// Runs one rule over its source column; rows it rejects are added to `failures`.
    fn convert(
        rule: &FieldRule,
        normalisers: &[Normaliser],
        plan: &RulePlan,
        source: ArrayRef,
        failures: &mut BTreeMap<usize, Vec<String>>,
    ) -> Result<ArrayRef> {
        let mut current = source;
        if !normalisers.is_empty() && current.data_type() != &DataType::Utf8 {
            current = cast_with_options(&current, &DataType::Utf8, &safe())?;
        }
        for normaliser in normalisers {
            let strings = current.as_string_opt::<i32>().ok_or_else(|| {
                kernel_error(format!(
                    "text of `{}` came out as {}",
                    rule.from,
                    current.data_type()
                ))
            })?;
            let (next, invalid) = map_strings(strings, normaliser);
            for (row, expected) in invalid {
                let value = quote(&current, row);
                failures.entry(row).or_default().push(format!(
                    "field `{}` (from `{}`): {value} is not {expected}",
                    rule.to, rule.from
                ));
            }
            current = Arc::new(next);
        }
        debug_assert_eq!(current.data_type(), &plan.staged);
        let Some(cast) = rule.cast else {
            return Ok(current);
        };
        if current.data_type() == &plan.output {
            return Ok(current);
        }
        let kernel_type = cast.kernel_type(current.data_type());
        let mut cast_array = cast_with_options(&current, &kernel_type, &safe())?;
        if cast == CastType::TimestampUs {
            let labelled = cast_array
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| {
                    kernel_error(format!(
                        "cast of `{}` to timestamp_us came out as {}",
                        rule.from,
                        cast_array.data_type()
                    ))
                })?
                .clone()
                .with_timezone("UTC");
            cast_array = Arc::new(labelled);
        }
        // Safe casts turn failures into nulls; a null where the input had a value failed.
        if cast_array.null_count() != current.null_count() {
            for row in 0..current.len() {
                if current.is_valid(row) && cast_array.is_null(row) {
                    failures.entry(row).or_default().push(format!(
                        "field `{}` (from `{}`): cannot cast {} to {}",
                        rule.to,
                        rule.from,
                        quote(&current, row),
                        cast.name()
                    ));
                }
            }
        }
        Ok(cast_array)
    }
}

impl NormalizeConfig {
    /// Builds the boxed transform; see [`Normalize::new`].
    pub fn build(self) -> Result<Box<dyn Transform>> {
        Ok(Box::new(Normalize::new(self)?))
    }
}

impl Transform for Normalize {
    fn name(&self) -> &str {
        "normalize"
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(self.plan(input, ANY_STREAM)?.schema)
    }

    fn apply(&self, batch: Batch) -> Result<TransformOutput> {
        let plan = self.plan(&batch.data.schema(), &batch.stream)?;
        let rows = batch.num_rows();
        let mut failures: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(plan.schema.fields().len());
        for ((rule, (_, normalisers)), rule_plan) in
            self.config.fields.iter().zip(&self.rules).zip(&plan.rules)
        {
            let column = match &rule_plan.path {
                None => new_null_array(&rule_plan.output, rows),
                Some(path) => {
                    let (source, ancestors) = crate::path::extract(&batch.data, path);
                    let source = with_nulls(source, ancestors.as_ref());
                    Self::convert(rule, normalisers, rule_plan, source, &mut failures)?
                }
            };
            columns.push(column);
        }
        columns.extend(plan.keep.iter().map(|&i| batch.data.column(i).clone()));
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let data = RecordBatch::try_new_with_options(plan.schema, columns, &options)?;
        if failures.is_empty() {
            return Ok(TransformOutput::pass(Batch { data, ..batch }));
        }

        let dead_letters = failures
            .iter()
            .map(|(&row, reasons)| {
                DeadLetter::new(
                    batch.stream.as_ref(),
                    STAGE,
                    reasons.join("; "),
                    row_to_json(&batch.data, row),
                )
                .at(format!("batch {} row {row}", batch.meta.lineage_id))
            })
            .collect();
        let passing = BooleanArray::from_iter((0..rows).map(|r| Some(!failures.contains_key(&r))));
        let data = filter_record_batch(&data, &passing)?;
        let batch = (data.num_rows() > 0).then(|| Batch { data, ..batch });
        Ok(TransformOutput {
            batch,
            dead_letters,
        })
    }
}

/// A kernel returned something other than what it promised (a bug, not bad input).
fn kernel_error(message: String) -> Error {
    Error::Arrow(arrow::error::ArrowError::ComputeError(format!(
        "normalize: {message}"
    )))
}

fn safe() -> CastOptions<'static> {
    CastOptions {
        safe: true,
        ..CastOptions::default()
    }
}

/// Whether rules read `field` (at index path `path`) entirely: directly, or every leaf of it.
fn fully_consumed(field: &Field, path: &mut Vec<usize>, consumed: &HashSet<Vec<usize>>) -> bool {
    if consumed.contains(path.as_slice()) {
        return true;
    }
    let DataType::Struct(children) = field.data_type() else {
        return false;
    };
    !children.is_empty()
        && children.iter().enumerate().all(|(i, child)| {
            path.push(i);
            let all = fully_consumed(child, path, consumed);
            path.pop();
            all
        })
}

/// One normaliser over a string column, in one pass; also returns the rows it refused, with
/// what their value should have been.
fn map_strings(
    input: &StringArray,
    normaliser: &Normaliser,
) -> (StringArray, Vec<(usize, &'static str)>) {
    let mut builder = StringBuilder::with_capacity(input.len(), input.value_data().len());
    let mut buffer = String::new();
    let mut invalid = Vec::new();
    for (row, value) in input.iter().enumerate() {
        let Some(value) = value else {
            builder.append_null();
            continue;
        };
        match normaliser.outcome(value, &mut buffer) {
            Normalised::Value(v) => builder.append_value(v),
            Normalised::Null => builder.append_null(),
            Normalised::Invalid(expected) => {
                invalid.push((row, expected));
                builder.append_null();
            }
        }
    }
    (builder.finish(), invalid)
}

/// Row `row` of `array` for a message: strings quoted (so stray spaces show), long values
/// cut.
fn quote(array: &ArrayRef, row: usize) -> String {
    let mut text = String::new();
    if let Some(strings) = array.as_string_opt::<i32>() {
        text = format!("{:?}", strings.value(row));
    } else {
        let options = FormatOptions::default();
        match ArrayFormatter::try_new(array.as_ref(), &options) {
            Ok(formatter) => {
                let _ = write!(text, "{}", formatter.value(row));
            }
            Err(_) => text.push_str("<unprintable value>"),
        }
    }
    if text.len() > MAX_QUOTED {
        let mut cut = MAX_QUOTED;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Date32Array, Float64Array, Int64Array, StructArray, TimestampMicrosecondArray,
    };
    use arrow::buffer::NullBuffer;

    use super::*;

    fn config(value: serde_json::Value) -> NormalizeConfig {
        serde_json::from_value(value).unwrap()
    }

    fn normalize(value: serde_json::Value) -> Normalize {
        Normalize::new(config(value)).unwrap()
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> Batch {
        Batch::new(
            "events",
            RecordBatch::try_from_iter(columns).unwrap(),
            "test",
        )
    }

    fn column_strings(batch: &Batch, name: &str) -> Vec<Option<String>> {
        batch
            .data
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    /// `context { ip, traits { email } }` with a null `context` in row 1, a null `traits`
    /// in row 2 and a null `email` in row 3.
    fn nested() -> Batch {
        let email = Field::new("email", DataType::Utf8, true);
        let traits = StructArray::new(
            vec![email].into(),
            vec![strings(&[
                Some("a@x.io"),
                Some("b@x.io"),
                Some("c@x.io"),
                None,
            ])],
            Some(NullBuffer::from(vec![true, true, false, true])),
        );
        let ip = strings(&[Some("1.1.1.1"), Some("2.2.2.2"), Some("3.3.3.3"), None]);
        let context = StructArray::new(
            vec![
                Field::new("ip", DataType::Utf8, true),
                Field::new("traits", traits.data_type().clone(), true),
            ]
            .into(),
            vec![ip, Arc::new(traits)],
            Some(NullBuffer::from(vec![true, false, true, true])),
        );
        let id = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        batch(vec![("id", id), ("context", Arc::new(context))])
    }

    #[test]
    fn nested_extraction_propagates_parent_nulls() {
        let n = normalize(serde_json::json!({
            "fields": [
                { "from": "context.traits.email", "to": "email" },
                { "from": "context.ip", "to": "ip" },
                { "from": "id", "to": "id" }
            ]
        }));
        let out = n.apply(nested()).unwrap();
        assert!(out.dead_letters.is_empty(), "nulls are not failures");
        let batch = out.batch.unwrap();
        assert_eq!(
            column_strings(&batch, "email"),
            [Some("a@x.io".to_string()), None, None, None]
        );
        assert_eq!(
            column_strings(&batch, "ip"),
            [Some("1.1.1.1".into()), None, Some("3.3.3.3".into()), None]
        );
        let names: Vec<_> = batch
            .data
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["email", "ip", "id"]);
    }

    #[test]
    fn trim_lowercase_uppercase_empty_as_null() {
        let raw = strings(&[
            Some("  Alice@X.io "),
            Some("   "),
            Some("ÉMILE@x.io"),
            None,
            Some(""),
        ]);
        let n = normalize(serde_json::json!({
            "fields": [
                { "from": "raw", "to": "trimmed", "normalise": ["trim"] },
                { "from": "raw", "to": "email", "normalise": ["trim", "lowercase", "empty_as_null"] },
                { "from": "raw", "to": "upper", "normalise": ["uppercase"] },
                { "from": "raw", "to": "not_empty", "normalise": ["empty_as_null"] }
            ]
        }));
        let out = n.apply(batch(vec![("raw", raw)])).unwrap();
        assert!(out.dead_letters.is_empty());
        let b = out.batch.unwrap();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            column_strings(&b, "trimmed"),
            [s("Alice@X.io"), s(""), s("ÉMILE@x.io"), None, s("")]
        );
        assert_eq!(
            column_strings(&b, "email"),
            [s("alice@x.io"), None, s("émile@x.io"), None, None]
        );
        assert_eq!(
            column_strings(&b, "upper"),
            // `uppercase` (like `lowercase`) trims too: the vocabulary's case steps compare
            // identifiers, and surrounding blanks never belong to one.
            [s("ALICE@X.IO"), s(""), s("ÉMILE@X.IO"), None, s("")]
        );
        assert_eq!(
            column_strings(&b, "not_empty"),
            [s("  Alice@X.io "), s("   "), s("ÉMILE@x.io"), None, None]
        );
    }

    #[test]
    fn e164_normalises_phones_and_rejects_garbage() {
        let phones = [
            ("+1 415-555-0134", Some("+14155550134")),
            ("(415) 555-0134", Some("+14155550134")),
            ("415.555.0134", Some("+14155550134")),
            ("1-415-555-0134", Some("+14155550134")),
            ("+44 7700 900123", Some("+447700900123")),
            ("0044 7700 900123", Some("+447700900123")),
            ("  ", None),
        ];
        let raw = strings(&phones.iter().map(|(p, _)| Some(*p)).collect::<Vec<_>>());
        let n = normalize(serde_json::json!({
            "fields": [{ "from": "phone", "to": "phone", "normalise": ["e164"] }],
            "default_region": "US"
        }));
        let out = n.apply(batch(vec![("phone", raw.clone())])).unwrap();
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        let expected: Vec<Option<String>> =
            phones.iter().map(|(_, e)| e.map(String::from)).collect();
        assert_eq!(column_strings(&out.batch.unwrap(), "phone"), expected);

        // Another default region: the trunk 0 goes, the code comes in; a rule's own region
        // wins over the transform's.
        let uk = normalize(serde_json::json!({
            "fields": [{ "from": "phone", "to": "phone", "normalise": [{ "phone": { "default_region": "GB" } }] }],
            "default_region": "US"
        }));
        let out = uk
            .apply(batch(vec![("phone", strings(&[Some("07700 900123")]))]))
            .unwrap();
        assert_eq!(
            column_strings(&out.batch.unwrap(), "phone"),
            [Some("+447700900123".into())]
        );

        // Letters and impossible lengths are dead letters, not silent nulls.
        let bad = strings(&[
            Some("call me"),
            Some("+1 415-555-0134"),
            Some("123"),
            Some("+0 12345678"),
            Some("07700 900123"),
        ]);
        let out = n.apply(batch(vec![("phone", bad)])).unwrap();
        assert_eq!(
            column_strings(out.batch.as_ref().unwrap(), "phone"),
            [Some("+14155550134".into())]
        );
        let reasons: Vec<&str> = out.dead_letters.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons.len(), 4);
        assert!(
            reasons[0].contains("\"call me\" is not a phone number"),
            "{}",
            reasons[0]
        );
    }

    #[test]
    fn bad_timestamp_row_is_dead_lettered_and_the_rest_pass() {
        let ts = strings(&[
            Some("2024-03-01T10:00:00.250Z"),
            Some("not-a-timestamp"),
            Some("2024-03-01T12:00:00+02:00"),
            None,
        ]);
        let ids = Arc::new(Int64Array::from(vec![1, 2, 3, 4]));
        let input = batch(vec![("id", ids), ("timestamp", ts)]);
        let original = input.data.clone();
        let lineage = input.meta.lineage_id;
        let n = normalize(serde_json::json!({
            "fields": [{ "from": "timestamp", "to": "event_time", "cast": "timestamp_us" }],
            "keep_unmapped": true
        }));
        let out = n.apply(input).unwrap();

        assert_eq!(out.dead_letters.len(), 1);
        let letter = &out.dead_letters[0];
        assert_eq!(letter.stream, "events");
        assert_eq!(letter.stage, "transform normalize");
        assert_eq!(
            letter.reason,
            "field `event_time` (from `timestamp`): cannot cast \"not-a-timestamp\" to timestamp_us"
        );
        assert_eq!(letter.payload, row_to_json(&original, 1));
        assert_eq!(letter.payload, r#"{"id":2,"timestamp":"not-a-timestamp"}"#);
        assert_eq!(
            letter.position.as_deref(),
            Some(format!("batch {lineage} row 1").as_str())
        );

        let batch = out.batch.unwrap();
        assert_eq!(batch.num_rows(), 3);
        let ids = batch
            .data
            .column_by_name("id")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.values(), &[1, 3, 4]);
        let times = batch
            .data
            .column_by_name("event_time")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(times.timezone(), Some("UTC"));
        assert_eq!(times.value(0), 1_709_287_200_250_000);
        assert_eq!(
            times.value(1),
            1_709_287_200_000_000,
            "+02:00 converted to UTC"
        );
        assert!(times.is_null(2), "a null stays null and passes");
    }

    #[test]
    fn casts_to_every_target_type() {
        let n = normalize(serde_json::json!({
            "fields": [
                { "from": "n", "to": "n", "normalise": ["trim"], "cast": "int64" },
                { "from": "x", "to": "x", "cast": "float64" },
                { "from": "b", "to": "b", "cast": "boolean" },
                { "from": "d", "to": "d", "cast": "date32" },
                { "from": "i", "to": "i", "cast": "utf8" },
                { "from": "t", "to": "t", "cast": "timestamp_us" }
            ]
        }));
        let t = TimestampMicrosecondArray::from(vec![1_000_000]).with_timezone("+01:00");
        let out = n
            .apply(batch(vec![
                ("n", strings(&[Some(" 42 ")])),
                ("x", strings(&[Some("12.5")])),
                ("b", strings(&[Some("true")])),
                ("d", strings(&[Some("2024-03-01")])),
                ("i", Arc::new(Int64Array::from(vec![7]))),
                ("t", Arc::new(t)),
            ]))
            .unwrap();
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        let b = out.batch.unwrap().data;
        let col = |i: usize| b.column(i).clone();
        assert_eq!(
            col(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            42
        );
        assert_eq!(
            col(1)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(0),
            12.5
        );
        assert!(col(2).as_boolean().value(0));
        assert_eq!(
            col(3)
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap()
                .value(0),
            19_783
        );
        assert_eq!(col(4).as_string::<i32>().value(0), "7");
        let t = col(5);
        let t = t
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(
            (t.value(0), t.timezone()),
            (1_000_000, Some("UTC")),
            "same instant"
        );
    }

    #[test]
    fn every_row_failing_leaves_no_batch() {
        let n = normalize(serde_json::json!({
            "fields": [{ "from": "n", "to": "n", "cast": "int64" }]
        }));
        let out = n
            .apply(batch(vec![("n", strings(&[Some("one"), Some("two")]))]))
            .unwrap();
        assert!(out.batch.is_none());
        assert_eq!(out.dead_letters.len(), 2);
    }

    #[test]
    fn one_dead_letter_per_row_with_every_reason() {
        let n = normalize(serde_json::json!({
            "fields": [
                { "from": "n", "to": "n", "cast": "int64" },
                { "from": "t", "to": "t", "cast": "timestamp_us" }
            ]
        }));
        let out = n
            .apply(batch(vec![
                ("n", strings(&[Some("x")])),
                ("t", strings(&[Some("y")])),
            ]))
            .unwrap();
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(
            out.dead_letters[0].reason,
            "field `n` (from `n`): cannot cast \"x\" to int64; \
             field `t` (from `t`): cannot cast \"y\" to timestamp_us"
        );
    }

    #[test]
    fn output_schema_matches_applied_output() {
        let n = normalize(serde_json::json!({
            "fields": [
                { "from": "context.traits.email", "to": "email", "normalise": ["trim", "lowercase"] },
                { "from": "context.ip", "to": "ip" },
                { "from": "id", "to": "id_text", "cast": "utf8" },
                { "from": "properties.revenue", "to": "revenue", "cast": "float64", "optional": true },
                { "from": "missing", "to": "missing", "optional": true }
            ],
            "keep_unmapped": true
        }));
        let input = nested();
        let expected = n.output_schema(&input.data.schema()).unwrap();
        let out = n.apply(input).unwrap();
        let applied = out.batch.unwrap();
        assert_eq!(applied.data.schema(), expected);
        let types: Vec<(String, DataType)> = expected
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(
            types[..5],
            [
                ("email".into(), DataType::Utf8),
                ("ip".into(), DataType::Utf8),
                ("id_text".into(), DataType::Utf8),
                ("revenue".into(), DataType::Float64),
                ("missing".into(), DataType::Utf8),
            ]
        );
        // `id` was read whole: consumed. `context` was read in every leaf: consumed too.
        assert_eq!(types.len(), 5, "{types:?}");
        assert_eq!(applied.data.column(3).null_count(), 4);
    }

    #[test]
    fn keep_unmapped_keeps_partly_read_structs_and_honours_drop() {
        let rules = serde_json::json!([{ "from": "context.ip", "to": "ip" }]);
        let keep = normalize(serde_json::json!({ "fields": rules, "keep_unmapped": true }));
        let schema = keep.output_schema(&nested().data.schema()).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ip", "id", "context"]);

        let drop = normalize(serde_json::json!({
            "fields": rules, "keep_unmapped": true, "drop": ["context", "not_there"]
        }));
        let out = drop.apply(nested()).unwrap().batch.unwrap();
        let names: Vec<_> = out
            .data
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["ip", "id"]);

        let only = normalize(serde_json::json!({ "fields": rules }));
        assert_eq!(
            only.output_schema(&nested().data.schema())
                .unwrap()
                .fields()
                .len(),
            1
        );

        // A rule output clashing with a kept input column is a schema error.
        let clash = normalize(serde_json::json!({
            "fields": [{ "from": "context.ip", "to": "id" }], "keep_unmapped": true
        }));
        let err = clash.output_schema(&nested().data.schema()).unwrap_err();
        assert!(
            err.to_string().contains("`id` would also be passed on"),
            "{err}"
        );
    }

    #[test]
    fn missing_source_path_is_a_schema_error_naming_it() {
        let n = normalize(serde_json::json!({
            "fields": [{ "from": "context.traits.phone", "to": "phone" }]
        }));
        let err = n.output_schema(&nested().data.schema()).unwrap_err();
        assert!(matches!(err, Error::Schema { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("`context.traits.phone`"), "{message}");
        assert!(
            message.contains("no field `phone` in struct `context.traits` (it has: email)"),
            "{message}"
        );
        // The same from apply, naming the stream.
        let err = n.apply(nested()).unwrap_err();
        assert!(err.to_string().contains("stream `events`"), "{err}");

        let not_struct = normalize(serde_json::json!({
            "fields": [{ "from": "context.ip.v4", "to": "ip" }]
        }));
        let err = not_struct
            .output_schema(&nested().data.schema())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`context.ip` is Utf8, not a struct"),
            "{err}"
        );

        let top =
            normalize(serde_json::json!({ "fields": [{ "from": "userId", "to": "user_id" }] }));
        let err = top.output_schema(&nested().data.schema()).unwrap_err();
        assert!(
            err.to_string()
                .contains("no field `userId` in the input (it has: id, context)"),
            "{err}"
        );

        // Optional: an all-null column of the target type instead.
        let optional = normalize(serde_json::json!({
            "fields": [{ "from": "context.traits.phone", "to": "phone", "cast": "int64", "optional": true }]
        }));
        let out = optional.apply(nested()).unwrap().batch.unwrap();
        assert_eq!(out.data.column(0).data_type(), &DataType::Int64);
        assert_eq!(out.data.column(0).null_count(), 4);
    }

    #[test]
    fn field_names_with_dots_match_whole() {
        let n = normalize(serde_json::json!({ "fields": [{ "from": "a.b", "to": "ab" }] }));
        let out = n
            .apply(batch(vec![("a.b", strings(&[Some("dotted")]))]))
            .unwrap()
            .batch
            .unwrap();
        assert_eq!(column_strings(&out, "ab"), [Some("dotted".into())]);
    }

    #[test]
    fn config_is_strict_and_checked() {
        let typo = serde_json::json!({ "fields": [{ "from": "a", "to": "b", "cats": "int64" }] });
        assert!(serde_json::from_value::<NormalizeConfig>(typo).is_err());
        let unknown =
            serde_json::json!({ "fields": [{ "from": "a", "to": "b", "cast": "int32" }] });
        assert!(serde_json::from_value::<NormalizeConfig>(unknown).is_err());
        let top = serde_json::json!({ "fields": [], "keep": true });
        assert!(serde_json::from_value::<NormalizeConfig>(top).is_err());

        let parsed = config(serde_json::json!({
            "fields": [{ "from": "a", "to": "b", "cast": "timestamp_us", "normalize": ["trim", "e164", "empty_as_null"] }]
        }));
        assert_eq!(
            parsed.fields[0],
            FieldRule::new("a", "b")
                .cast(CastType::TimestampUs)
                .normalise([
                    Normaliser::Trim,
                    Normaliser::phone(None),
                    Normaliser::EmptyAsNull
                ])
        );
        assert_eq!(parsed.default_region, None);
        let round_trip: NormalizeConfig =
            serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(round_trip, parsed);

        for bad in [
            serde_json::json!({ "fields": [{ "from": "a", "to": "x" }, { "from": "b", "to": "x" }] }),
            serde_json::json!({ "fields": [{ "from": "a", "to": "_cdp_op" }] }),
            serde_json::json!({ "fields": [{ "from": "", "to": "x" }] }),
            serde_json::json!({ "fields": [{ "from": "a", "to": "x" }], "drop": ["x"] }),
            serde_json::json!({ "fields": [{ "from": "a..b", "to": "x" }] }),
        ] {
            let err = Normalize::new(config(bad)).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err:?}");
        }
        assert_eq!(
            config(serde_json::json!({ "fields": [] }))
                .build()
                .unwrap()
                .name(),
            "normalize"
        );
    }
}
