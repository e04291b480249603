//! A Singer catalog (what `--discover` prints, or a catalog file) as a cdp [`Catalog`].

use std::sync::Arc;

use arrow::datatypes::Schema;
use cdp_core::{Catalog, StreamSpec, SyncMode};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::schema::arrow_schema;
use crate::sources::schemaless::DriftPolicy;

#[derive(Deserialize)]
struct SingerCatalog<'a> {
    #[serde(borrow)]
    streams: Vec<CatalogStream<'a>>,
}

#[derive(Deserialize)]
struct CatalogStream<'a> {
    #[serde(default)]
    tap_stream_id: Option<String>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default, borrow)]
    schema: Option<&'a RawValue>,
    #[serde(default)]
    key_properties: Option<Vec<String>>,
    #[serde(default)]
    replication_key: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// The streams of a Singer catalog (its JSON text): every stream not deselected
/// (`"selected": false` in its top-level metadata), with its schema, key properties and
/// replication key. The overflow column is added when the policy has one.
pub(crate) fn from_singer(
    catalog: &[u8],
    policy: &DriftPolicy,
    connector: &str,
) -> Result<Catalog, String> {
    let catalog: SingerCatalog<'_> = serde_json::from_slice(catalog)
        .map_err(|e| format!("expected a JSON object with a `streams` list: {e}"))?;
    let mut specs: Vec<StreamSpec> = Vec::new();
    for (i, stream) in catalog.streams.iter().enumerate() {
        let name = stream
            .tap_stream_id
            .as_deref()
            .or(stream.stream.as_deref())
            .ok_or_else(|| format!("streams[{i}] has neither `tap_stream_id` nor `stream`"))?;
        let top = stream.metadata.as_ref().and_then(top_metadata);
        if top.and_then(|m| m.get("selected")).and_then(Value::as_bool) == Some(false) {
            continue;
        }
        if specs.iter().any(|s| s.name == name) {
            continue;
        }
        let schema = match stream.schema {
            Some(schema) => arrow_schema(schema).0,
            None => Arc::new(Schema::empty()),
        };
        let schema = policy
            .with_overflow(connector, schema)
            .map_err(|e| e.to_string())?;
        let keys = stream
            .key_properties
            .clone()
            .or_else(|| strings(top.and_then(|m| m.get("table-key-properties"))))
            .unwrap_or_default();
        let cursor = stream.replication_key.as_deref().or_else(|| {
            top.and_then(|m| m.get("replication-key"))
                .and_then(Value::as_str)
        });
        let mut modes = vec![SyncMode::FullRefresh, SyncMode::IncrementalAppend];
        if !keys.is_empty() {
            modes.push(SyncMode::IncrementalDedup);
        }
        let mut spec = StreamSpec::new(name, schema)
            .with_primary_key(keys)
            .with_sync_modes(modes);
        if let Some(cursor) = cursor {
            spec = spec.with_cursor_field(cursor);
        }
        specs.push(spec);
    }
    Ok(Catalog::new(specs))
}

/// The metadata entry of the stream itself (breadcrumb `[]`).
fn top_metadata(metadata: &Value) -> Option<&Value> {
    metadata
        .as_array()?
        .iter()
        .find(|entry| {
            entry
                .get("breadcrumb")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        })
        .and_then(|entry| entry.get("metadata"))
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    let list = value?.as_array()?;
    Some(
        list.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow::datatypes::DataType;
    use serde_json::json;

    use super::*;

    #[test]
    fn streams_keys_and_selection_are_read() {
        let catalog = json!({"streams": [
            {
                "tap_stream_id": "users",
                "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
                "key_properties": ["id"],
                "replication_key": "updated_at",
                "metadata": [{"breadcrumb": [], "metadata": {"selected": true}}]
            },
            {
                "stream": "orders",
                "schema": {"type": "object", "properties": {}},
                "metadata": [{"breadcrumb": [], "metadata": {"table-key-properties": ["no"]}}]
            },
            {
                "tap_stream_id": "hidden",
                "schema": {},
                "metadata": [{"breadcrumb": [], "metadata": {"selected": false}}]
            }
        ]});
        let text = catalog.to_string();
        let catalog = from_singer(text.as_bytes(), &DriftPolicy::default(), "singer").unwrap();
        let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["users", "orders"]);
        let users = &catalog.streams[0];
        assert_eq!(users.primary_key, ["id"]);
        assert_eq!(users.cursor_field.as_deref(), Some("updated_at"));
        assert_eq!(users.schema.field(0).data_type(), &DataType::Int64);
        assert!(users.supports(SyncMode::IncrementalDedup));
        assert_eq!(catalog.streams[1].primary_key, ["no"]);
        assert!(from_singer(b"[]", &DriftPolicy::default(), "s").is_err());
    }
}
