//! Inference of an Arrow schema from JSON samples, for file and HTTP sources.
//!
//! Each value gets a kind, and the kinds seen at one path unify by these rules:
//!
//! | seen | inferred |
//! |---|---|
//! | null with anything | that thing, nullable |
//! | integer and integer | `int64` (integers beyond `i64` are `float64`) |
//! | integer and float | `float64` |
//! | RFC 3339 text and RFC 3339 text | `timestamp(us, UTC)` (when detection is on) |
//! | RFC 3339 text and other text | `string` |
//! | object and object | `struct` of the union of their fields, in first-seen order |
//! | array and array | `list` of the unified elements |
//! | anything else (bool and number, text and object, …) | the [`Fallback`]: `string` holding the JSON text, or an error |
//!
//! A field is required only if every sample object holds it, never null; everything else
//! is nullable. Every conflict is reported with its path and what was seen.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diff::join;
use crate::error::{Error, Result};

/// What a path whose values conflict becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// A `string` column; readers store the value's JSON text.
    #[default]
    Utf8,
    /// Inference fails, naming the path and the kinds seen.
    Error,
}

/// Options of [`infer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferOptions {
    /// What conflicting paths become.
    pub fallback: Fallback,
    /// Whether RFC 3339 text becomes a timestamp.
    pub detect_timestamps: bool,
}

impl Default for InferOptions {
    fn default() -> Self {
        InferOptions {
            fallback: Fallback::Utf8,
            detect_timestamps: true,
        }
    }
}

/// A path whose values did not unify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The path (`context.device.id`, `items[]`).
    pub path: String,
    /// The kinds seen there.
    pub seen: Vec<String>,
}

/// An inferred schema, with the conflicts resolved by the fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    /// The schema.
    pub schema: Schema,
    /// Paths that fell back.
    pub conflicts: Vec<Conflict>,
    /// Number of samples read.
    pub samples: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    Str,
    Object(Vec<(String, Slot)>, usize),
    Array(Box<Slot>),
    Conflict(Vec<&'static str>),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Float => "float",
            Kind::Timestamp => "timestamp",
            Kind::Str => "string",
            Kind::Object(..) => "object",
            Kind::Array(_) => "array",
            Kind::Conflict(_) => "conflict",
        }
    }
}

/// What was seen at one path.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    kind: Kind,
    /// Whether a null was seen.
    nulls: bool,
    /// In how many parent objects the field appeared.
    occurrences: usize,
}

/// A JSON value whose objects keep their keys in document order (`serde_json::Value`
/// sorts them unless its `preserve_order` feature is on, which we do not impose).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool,
    Int,
    Float,
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn from_value(value: &Value) -> Json {
        match value {
            Value::Null => Json::Null,
            Value::Bool(_) => Json::Bool,
            Value::Number(n) if n.is_i64() => Json::Int,
            Value::Number(_) => Json::Float,
            Value::String(s) => Json::Str(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Json::from_value).collect()),
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Json::from_value(v)))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Json;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Bool)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Int)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(if i64::try_from(v).is_ok() {
                    Json::Int
                } else {
                    Json::Float
                })
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Float)
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::Str(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut fields: Vec<(String, Json)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    // A repeated key keeps its first position and its last value, as parsers do.
                    match fields.iter_mut().find(|(name, _)| *name == k) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((k, v)),
                    }
                }
                Ok(Json::Object(fields))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn kind_of(value: &Json, options: &InferOptions) -> Kind {
    match value {
        Json::Null => Kind::Null,
        Json::Bool => Kind::Bool,
        Json::Int => Kind::Int,
        Json::Float => Kind::Float,
        Json::Str(s)
            if options.detect_timestamps && chrono::DateTime::parse_from_rfc3339(s).is_ok() =>
        {
            Kind::Timestamp
        }
        Json::Str(_) => Kind::Str,
        Json::Array(items) => {
            let mut element = Slot {
                kind: Kind::Null,
                nulls: false,
                occurrences: 0,
            };
            for item in items {
                element = unify_slot(element, slot_of(item, options));
            }
            Kind::Array(Box::new(element))
        }
        Json::Object(fields) => Kind::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), slot_of(v, options)))
                .collect(),
            1,
        ),
    }
}

fn slot_of(value: &Json, options: &InferOptions) -> Slot {
    Slot {
        kind: kind_of(value, options),
        nulls: *value == Json::Null,
        occurrences: 1,
    }
}

fn unify_slot(a: Slot, b: Slot) -> Slot {
    Slot {
        nulls: a.nulls || b.nulls,
        occurrences: a.occurrences + b.occurrences,
        kind: unify(a.kind, b.kind),
    }
}

fn unify(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        (Null, k) | (k, Null) => k,
        (Int, Int) => Int,
        (Int | Float, Int | Float) => Float,
        (Timestamp, Timestamp) => Timestamp,
        (Str | Timestamp, Str | Timestamp) => Str,
        (Bool, Bool) => Bool,
        (Object(mut fields, n), Object(other, m)) => {
            for (name, slot) in other {
                match fields.iter().position(|(f, _)| *f == name) {
                    Some(i) => {
                        let (_, existing) = fields.remove(i);
                        fields.insert(i, (name, unify_slot(existing, slot)));
                    }
                    None => fields.push((name, slot)),
                }
            }
            Object(fields, n + m)
        }
        (Array(x), Array(y)) => Array(Box::new(unify_slot(*x, *y))),
        (Conflict(mut seen), other) | (other, Conflict(mut seen)) => {
            match other {
                Conflict(more) => seen.extend(more),
                k => seen.push(k.name()),
            }
            seen.sort_unstable();
            seen.dedup();
            Conflict(seen)
        }
        (x, y) => {
            let mut seen = vec![x.name(), y.name()];
            seen.sort_unstable();
            Conflict(seen)
        }
    }
}

fn to_type(
    kind: &Kind,
    path: &str,
    options: &InferOptions,
    conflicts: &mut Vec<Conflict>,
) -> Result<DataType> {
    Ok(match kind {
        Kind::Null => DataType::Null,
        Kind::Bool => DataType::Boolean,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Str => DataType::Utf8,
        Kind::Object(fields, count) => {
            DataType::Struct(to_fields(fields, *count, path, options, conflicts)?)
        }
        Kind::Array(element) => {
            let path = format!("{path}[]");
            let item = to_type(&element.kind, &path, options, conflicts)?;
            DataType::List(Arc::new(Field::new("item", item, true)))
        }
        Kind::Conflict(seen) => {
            let seen: Vec<String> = seen.iter().map(|s| s.to_string()).collect();
            if options.fallback == Fallback::Error {
                return Err(Error::Config(format!(
                    "JSON values at `{path}` do not unify: seen {}",
                    seen.join(", ")
                )));
            }
            conflicts.push(Conflict {
                path: path.to_string(),
                seen,
            });
            DataType::Utf8
        }
    })
}

fn to_fields(
    fields: &[(String, Slot)],
    parents: usize,
    prefix: &str,
    options: &InferOptions,
    conflicts: &mut Vec<Conflict>,
) -> Result<Fields> {
    fields
        .iter()
        .map(|(name, slot)| {
            let path = join(prefix, name);
            let data_type = to_type(&slot.kind, &path, options, conflicts)?;
            let nullable = slot.nulls || slot.occurrences < parents || data_type == DataType::Null;
            Ok(Field::new(name, data_type, nullable))
        })
        .collect()
}

/// Infers the schema of `samples`, each a JSON object (one record).
///
/// Fields come in the order of the samples' maps: sorted by name for
/// `serde_json::Value` (unless its `preserve_order` feature is on); use
/// [`infer_json_lines`] to keep the order of the text.
///
/// ```
/// use cdp_schema::infer::{infer, InferOptions};
/// use arrow::datatypes::DataType;
///
/// # fn main() -> cdp_schema::Result<()> {
/// let samples = [
///     serde_json::json!({"id": 1, "score": 2}),
///     serde_json::json!({"id": 2, "score": 2.5, "tag": "a"}),
/// ];
/// let inferred = infer(&samples, &InferOptions::default())?;
/// let score = inferred.schema.field_with_name("score")?;
/// assert_eq!(score.data_type(), &DataType::Float64);
/// assert!(inferred.schema.field_with_name("tag")?.is_nullable());
/// # Ok(()) }
/// ```
pub fn infer<'a>(
    samples: impl IntoIterator<Item = &'a Value>,
    options: &InferOptions,
) -> Result<Inferred> {
    let samples: Vec<Json> = samples.into_iter().map(Json::from_value).collect();
    infer_ordered(&samples, options)
}

fn infer_ordered(samples: &[Json], options: &InferOptions) -> Result<Inferred> {
    let mut root = Kind::Object(Vec::new(), 0);
    for (i, sample) in samples.iter().enumerate() {
        if !matches!(sample, Json::Object(_)) {
            return Err(Error::Config(format!(
                "JSON sample {i} is not an object but {}",
                kind_of(sample, options).name()
            )));
        }
        root = unify(root, kind_of(sample, options));
    }
    let mut conflicts = Vec::new();
    let fields = match &root {
        Kind::Object(fields, parents) => to_fields(fields, *parents, "", options, &mut conflicts)?,
        _ => Fields::empty(),
    };
    Ok(Inferred {
        schema: Schema::new(fields),
        conflicts,
        samples: samples.len(),
    })
}

/// Infers the schema of newline-delimited JSON text (blank lines skipped), keeping the
/// order in which fields first appear.
pub fn infer_json_lines(text: &str, options: &InferOptions) -> Result<Inferred> {
    let samples: Vec<Json> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    infer_ordered(&samples, options)
}
