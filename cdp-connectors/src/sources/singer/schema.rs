//! JSON Schema (what Singer's `SCHEMA` messages carry) to Arrow.
//!
//! A tap's JSON Schema becomes an Arrow schema of nullable fields (a record may leave any
//! key out):
//!
//! | JSON Schema | Arrow |
//! |---|---|
//! | `"string"` | `Utf8` |
//! | `"string"`, `"format": "date-time"` | `Timestamp(µs, "UTC")` |
//! | `"string"`, `"format": "date"` | `Date32` |
//! | `"integer"` | `Int64` |
//! | `"number"`, or `["integer", "number"]` | `Float64` |
//! | `"boolean"` | `Boolean` |
//! | `"object"` with `properties` | `Struct` of them |
//! | `"array"` with `items` | `List` of the item |
//! | `"null"` added to any of these (`["null", "string"]`), or an `anyOf` / `oneOf` of one of them and `{"type": "null"}` | the same, nullable |
//! | anything else: no `type`, several types (`["string", "integer"]`), an object without `properties`, an array without `items`, `$ref`, `allOf` | `Utf8` marked as JSON text ([`json_text_field`]) holding the value's JSON |
//!
//! Other string formats (`time`, `singer.decimal`, `uri`, …) stay text, so no value is
//! changed on the way. (The other direction, for targets, is the destination's.)

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use cdp_core::record::{is_json_text, json_text_field};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::sources::schemaless::json::{Entries, parse_record};

/// What a JSON Schema's `type` (with its format) asks for, before nullability.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Text,
    Timestamp,
    Date,
    Integer,
    Number,
    Boolean,
    Object(Fields),
    Array(Arc<Field>),
    /// Ambiguous or unknown: the value's JSON text.
    Json,
}

/// The entries of a JSON object in the order written (a tap lists its columns in the
/// order it means them), values unparsed; `None` if `raw` is not an object.
fn entries(raw: &RawValue) -> Option<Entries<'_>> {
    parse_record(raw.get().as_bytes()).ok()
}

fn get<'a>(entries: &Entries<'a>, key: &str) -> Option<&'a RawValue> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn text<'a>(entries: &Entries<'a>, key: &str) -> Option<String> {
    serde_json::from_str(get(entries, key)?.get()).ok()
}

/// The Arrow schema of a stream's JSON Schema, and whether it describes the record's keys
/// (`properties`). Without properties the schema is empty and records are decoded by
/// inference alone.
pub(crate) fn arrow_schema(schema: &RawValue) -> (SchemaRef, bool) {
    match entries(schema)
        .and_then(|e| get(&e, "properties"))
        .and_then(entries)
    {
        Some(properties) => (Arc::new(Schema::new(fields(&properties))), true),
        None => (Arc::new(Schema::empty()), false),
    }
}

fn fields(properties: &Entries<'_>) -> Fields {
    properties
        .iter()
        .map(|(name, schema)| field(name, schema))
        .collect()
}

/// The nullable field `name` of `schema`.
pub(crate) fn field(name: &str, schema: &RawValue) -> Field {
    match kind(schema) {
        Kind::Json => json_text_field(name),
        kind => Field::new(name, data_type(kind), true),
    }
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text | Kind::Json => DataType::Utf8,
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Date => DataType::Date32,
        Kind::Integer => DataType::Int64,
        Kind::Number => DataType::Float64,
        Kind::Boolean => DataType::Boolean,
        Kind::Object(fields) => DataType::Struct(fields),
        Kind::Array(item) => DataType::List(item),
    }
}

fn kind(schema: &RawValue) -> Kind {
    let Some(object) = entries(schema) else {
        // `true`, or anything that is not a schema object: any value.
        return Kind::Json;
    };
    if get(&object, "$ref").is_some() || get(&object, "allOf").is_some() {
        return Kind::Json;
    }
    if let Some(alternatives) = get(&object, "anyOf")
        .or_else(|| get(&object, "oneOf"))
        .and_then(|raw| serde_json::from_str::<Vec<&RawValue>>(raw.get()).ok())
    {
        let kinds: Vec<Kind> = alternatives
            .iter()
            .filter(|alternative| !is_null_schema(alternative))
            .map(|alternative| kind(alternative))
            .collect();
        return match kinds.as_slice() {
            [one] => one.clone(),
            [first, rest @ ..] if rest.iter().all(|k| k == first) => first.clone(),
            _ => Kind::Json,
        };
    }
    let types: Vec<String> =
        match get(&object, "type").map(|raw| serde_json::from_str::<Value>(raw.get())) {
            Some(Ok(Value::String(one))) => vec![one],
            Some(Ok(Value::Array(several))) => several
                .into_iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect(),
            _ => return Kind::Json,
        };
    let mut types: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| *t != "null")
        .collect();
    types.sort_unstable();
    types.dedup();
    match types.as_slice() {
        ["string"] => match text(&object, "format").as_deref() {
            Some("date-time") => Kind::Timestamp,
            Some("date") => Kind::Date,
            _ => Kind::Text,
        },
        ["integer"] => Kind::Integer,
        ["number"] | ["integer", "number"] => Kind::Number,
        ["boolean"] => Kind::Boolean,
        ["object"] => match get(&object, "properties").and_then(entries) {
            Some(properties) if !properties.is_empty() => Kind::Object(fields(&properties)),
            _ => Kind::Json,
        },
        ["array"] => match get(&object, "items") {
            Some(items) if items.get().starts_with('{') => {
                Kind::Array(Arc::new(field("item", items)))
            }
            _ => Kind::Json,
        },
        _ => Kind::Json,
    }
}

fn is_null_schema(schema: &RawValue) -> bool {
    let Some(object) = entries(schema) else {
        return false;
    };
    match get(&object, "type").map(|raw| serde_json::from_str::<Value>(raw.get())) {
        Some(Ok(Value::String(t))) => t == "null",
        Some(Ok(Value::Array(types))) => types.iter().all(|t| t == "null"),
        _ => false,
    }
}

/// Whether any field of `fields`, at any depth, is JSON text.
pub(crate) fn has_json_text(fields: &Fields) -> bool {
    fields.iter().any(|field| field_has_json_text(field))
}

/// Whether `field`, or a field inside it, is JSON text.
pub(crate) fn field_has_json_text(field: &Field) -> bool {
    if is_json_text(field) {
        return true;
    }
    match field.data_type() {
        DataType::Struct(children) => has_json_text(children),
        DataType::List(item) | DataType::LargeList(item) => field_has_json_text(item),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn raw(value: &Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).unwrap()
    }

    fn type_of(schema: Value) -> (DataType, bool) {
        let field = field("f", &raw(&schema));
        (field.data_type().clone(), is_json_text(&field))
    }

    #[test]
    fn json_schema_types_map_to_arrow() {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let cases = [
            (json!({"type": ["null", "string"]}), DataType::Utf8, false),
            (
                json!({"type": ["string", "null"], "format": "date-time"}),
                utc.clone(),
                false,
            ),
            (
                json!({"type": "string", "format": "date"}),
                DataType::Date32,
                false,
            ),
            (
                json!({"type": "string", "format": "time"}),
                DataType::Utf8,
                false,
            ),
            (json!({"type": ["integer", "null"]}), DataType::Int64, false),
            (json!({"type": "number"}), DataType::Float64, false),
            (
                json!({"type": ["integer", "number", "null"]}),
                DataType::Float64,
                false,
            ),
            (json!({"type": "boolean"}), DataType::Boolean, false),
            (
                json!({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}),
                utc,
                false,
            ),
            (json!({"type": ["string", "integer"]}), DataType::Utf8, true),
            (json!({}), DataType::Utf8, true),
            (
                json!({"type": ["null", "object"], "additionalProperties": true}),
                DataType::Utf8,
                true,
            ),
            (json!({"type": "array"}), DataType::Utf8, true),
            (json!({"$ref": "#/definitions/x"}), DataType::Utf8, true),
            (
                json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
                DataType::Utf8,
                true,
            ),
        ];
        for (schema, expected, json_text) in cases {
            assert_eq!(type_of(schema.clone()), (expected, json_text), "{schema}");
        }
        let (nested, _) = type_of(json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {}}}
        }));
        let DataType::Struct(children) = nested else {
            panic!("{nested:?}")
        };
        assert_eq!(children[0].data_type(), &DataType::Int64);
        // Items of any type: a list of JSON texts.
        assert!(matches!(children[1].data_type(), DataType::List(item) if is_json_text(item)));
        assert!(has_json_text(&children));
        let (list, _) = type_of(json!({"type": "array", "items": {"type": "string"}}));
        assert_eq!(
            list,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        );
    }

    #[test]
    fn a_schema_without_properties_is_inferred() {
        let (schema, described) = arrow_schema(&raw(&json!({"type": "object"})));
        assert!(!described);
        assert!(schema.fields().is_empty());
    }
}
