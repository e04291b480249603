//! Arrow to JSON Schema, for the `SCHEMA` messages sent to targets: each Arrow type maps
//! to the JSON Schema its JSON rendering satisfies, a nullable field adds `"null"` to its
//! type, and a JSON-text field is `{}` (any value).

use arrow::datatypes::{DataType, Field, Fields, Schema};
use cdp_core::record::is_json_text;

/// The JSON Schema (as JSON text, properties in the schema's order) of records rendered
/// from `schema` as JSON: the root object.
pub(crate) fn json_schema(schema: &Schema) -> String {
    let mut out = String::new();
    write_object(schema.fields(), &mut out);
    out
}

fn write_object(fields: &Fields, out: &mut String) {
    out.push_str(r#"{"type":"object","properties":{"#);
    write_properties(fields, out);
    out.push_str("}}");
}

fn write_properties(fields: &Fields, out: &mut String) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(field.name()).unwrap_or_else(|_| "\"\"".into()));
        out.push(':');
        write_field(field, out);
    }
}

/// The schema of one field: `type` (with `"null"` when nullable), then `format`,
/// `properties` or `items` as the type has them.
fn write_field(field: &Field, out: &mut String) {
    if is_json_text(field) {
        out.push_str("{}");
        return;
    }
    let data_type = match field.data_type() {
        DataType::Dictionary(_, value) => value.as_ref(),
        other => other,
    };
    let (kind, format) = match data_type {
        DataType::Null => ("null", None),
        DataType::Boolean => ("boolean", None),
        t if t.is_integer() => ("integer", None),
        // arrow-json writes decimals as JSON numbers of their exact digits.
        t if t.is_floating() => ("number", None),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ("number", None),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("string", None),
        DataType::Timestamp(_, _) => ("string", Some("date-time")),
        DataType::Date32 | DataType::Date64 => ("string", Some("date")),
        DataType::Time32(_) | DataType::Time64(_) => ("string", Some("time")),
        DataType::Struct(_) | DataType::Map(_, _) => ("object", None),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => ("array", None),
        // Binary, durations, intervals and the rest: whatever arrow-json writes for them.
        _ => {
            out.push_str("{}");
            return;
        }
    };
    if field.is_nullable() && kind != "null" {
        out.push_str(&format!(r#"{{"type":["{kind}","null"]"#));
    } else {
        out.push_str(&format!(r#"{{"type":"{kind}""#));
    }
    if let Some(format) = format {
        out.push_str(&format!(r#","format":"{format}""#));
    }
    match data_type {
        DataType::Struct(children) => {
            out.push_str(r#","properties":{"#);
            write_properties(children, out);
            out.push('}');
        }
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::FixedSizeList(item, _)
        | DataType::ListView(item)
        | DataType::LargeListView(item) => {
            out.push_str(r#","items":"#);
            write_field(item, out);
        }
        _ => {}
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use arrow::datatypes::TimeUnit;
    use cdp_core::record::json_text_field;
    use serde_json::value::RawValue;
    use serde_json::{Value, json};

    use super::*;
    use crate::sources::singer::schema::arrow_schema;

    #[test]
    fn arrow_maps_back_to_json_schema() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            json_text_field("props"),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let text = json_schema(&schema);
        // Properties keep the schema's order.
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        assert!(at("id") < at("name") && at("name") < at("at") && at("at") < at("props"));
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"type": "object", "properties": {
                "id": {"type": "integer"},
                "name": {"type": ["string", "null"]},
                "at": {"type": ["string", "null"], "format": "date-time"},
                "props": {},
                "tags": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
            }})
        );
        // And a tap's schema of those comes back as the same Arrow types.
        let (back, _) = arrow_schema(&RawValue::from_string(text).unwrap());
        assert_eq!(back.field(0).data_type(), &DataType::Int64);
        assert_eq!(back.field(2).data_type(), schema.field(2).data_type());
        assert!(is_json_text(back.field(3)));
        assert_eq!(back.field(4).data_type(), schema.field(4).data_type());
    }
}
