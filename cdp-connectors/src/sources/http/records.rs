//! The records of a page: found by a JSON pointer, filtered, flattened if asked, and
//! written as one compact line each for the schemaless decoder. Values are handled as
//! [`RawValue`]s, so a number keeps its exact text.

use std::fmt::Write as _;

use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Keeps only the records whose field matches (`filter = { field = "/status", equals =
/// "paid" }`). Exactly one test: `equals`, `not_equals`, `one_of` or `exists`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordFilter {
    /// The field, as a JSON pointer into the record (`/status`, `/properties/plan`).
    pub field: String,
    /// Keep records whose field is this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// Keep records whose field is not this value (or is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    /// Keep records whose field is one of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// Keep records that have (`true`) or lack (`false`) the field, null counting as
    /// missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl RecordFilter {
    /// How many tests it names (exactly one is valid).
    pub(crate) fn tests(&self) -> usize {
        [
            self.equals.is_some(),
            self.not_equals.is_some(),
            self.one_of.is_some(),
            self.exists.is_some(),
        ]
        .into_iter()
        .filter(|t| *t)
        .count()
    }

    /// Whether `record` is kept.
    pub(crate) fn keeps(&self, record: &RawValue) -> bool {
        let value = pointer(record, &self.field)
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .filter(|v| !v.is_null());
        if let Some(expected) = &self.equals {
            return value.as_ref() == Some(expected);
        }
        if let Some(refused) = &self.not_equals {
            return value.as_ref() != Some(refused);
        }
        if let Some(options) = &self.one_of {
            return value.is_some_and(|v| options.contains(&v));
        }
        if let Some(exists) = self.exists {
            return value.is_some() == exists;
        }
        true
    }
}

struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
            entries.push(entry);
        }
        Ok(entries)
    }
}

struct Items;

impl<'de> Visitor<'de> for Items {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(item);
        }
        Ok(items)
    }
}

/// The entries of `raw` if it is an object.
pub(crate) fn entries(raw: &RawValue) -> Option<Vec<(String, &RawValue)>> {
    if !raw.get().starts_with('{') {
        return None;
    }
    serde_json::Deserializer::from_str(raw.get())
        .deserialize_map(Entries)
        .ok()
}

/// The items of `raw` if it is a list.
pub(crate) fn items(raw: &RawValue) -> Option<Vec<&RawValue>> {
    if !raw.get().starts_with('[') {
        return None;
    }
    serde_json::Deserializer::from_str(raw.get())
        .deserialize_seq(Items)
        .ok()
}

/// Finds one key of an object without building its other keys or values.
struct Field<'k>(&'k str);

impl<'de> Visitor<'de> for Field<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        // Keys with escapes cannot be borrowed; the caller then looks again the slow way.
        while let Some(key) = map.next_key::<&'de str>()? {
            let value = map.next_value::<&'de RawValue>()?;
            if found.is_none() && key == self.0 {
                found = Some(value);
            }
        }
        Ok(found)
    }
}

/// The value of `key` in the object `raw`.
fn field<'a>(raw: &'a RawValue, key: &str) -> Option<&'a RawValue> {
    match serde_json::Deserializer::from_str(raw.get()).deserialize_map(Field(key)) {
        Ok(found) => found,
        Err(_) => entries(raw)?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value),
    }
}

/// The value at JSON pointer `path` (RFC 6901: `/data/0/id`, `~1` for `/`, `~0` for `~`);
/// the empty pointer is `raw` itself.
pub(crate) fn pointer<'a>(raw: &'a RawValue, path: &str) -> Option<&'a RawValue> {
    if path.is_empty() {
        return Some(raw);
    }
    let mut current = raw;
    for segment in path.strip_prefix('/')?.split('/') {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        current = match current.get().as_bytes().first() {
            Some(b'{') => field(current, &segment)?,
            Some(b'[') => {
                let index: usize = segment.parse().ok()?;
                items(current)?.into_iter().nth(index)?
            }
            _ => return None,
        };
    }
    Some(current)
}

/// The value at `path` as a string: a JSON string's content, or a scalar's JSON text;
/// `None` for a missing value, null, an empty string, an object or a list.
pub(crate) fn pointer_text(raw: &RawValue, path: &str) -> Option<String> {
    let value = pointer(raw, path)?;
    match serde_json::from_str::<Value>(value.get()).ok()? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Where the records of a page are, and what they are: the items of a list at the
/// pointer, or the one object there. `Err` says why the page holds none.
pub(crate) fn select<'a>(body: &'a RawValue, path: &str) -> Result<Vec<&'a RawValue>, String> {
    let Some(found) = pointer(body, path) else {
        return Err(format!(
            "the response has nothing at `{path}`, where the records are"
        ));
    };
    match found.get().as_bytes().first() {
        Some(b'[') => items(found).ok_or_else(|| "the records are not a valid JSON list".into()),
        Some(b'{') => Ok(vec![found]),
        Some(b'n') => Ok(Vec::new()),
        _ => Err(format!(
            "expected a list of records (or one object) at `{path}`, found `{}`",
            found.get().chars().take(40).collect::<String>()
        )),
    }
}

/// `raw` as compact JSON text: the whitespace between tokens removed, every token (a
/// number's digits, a string's escapes) exactly as written.
pub(crate) fn compact(raw: &str, out: &mut String) {
    // Quotes, backslashes and JSON's whitespace are ASCII, so cutting the text at them
    // keeps every multi-byte character whole: runs between blanks are copied at once.
    let bytes = raw.as_bytes();
    let (mut in_string, mut escaped) = (false, false);
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            out.push_str(&raw[run..i]);
            run = i + 1;
        }
    }
    out.push_str(&raw[run..]);
}

/// `record` with nested objects spread into top-level keys joined by `separator`
/// (`{"a":{"b":1}}` becomes `{"a_b":1}`); lists and empty objects stay as they are. A
/// record that is not an object is returned compacted.
pub(crate) fn flatten(record: &RawValue, separator: &str, out: &mut String) {
    let Some(entries) = entries(record) else {
        compact(record.get(), out);
        return;
    };
    out.push('{');
    let mut first = true;
    flatten_into(&entries, "", separator, &mut first, out);
    out.push('}');
}

fn flatten_into(
    entries: &[(String, &RawValue)],
    prefix: &str,
    separator: &str,
    first: &mut bool,
    out: &mut String,
) {
    for (key, value) in entries {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}{separator}{key}")
        };
        if let Some(children) = entries_of_nonempty(value) {
            flatten_into(&children, &name, separator, first, out);
            continue;
        }
        if !*first {
            out.push(',');
        }
        *first = false;
        let _ = write!(out, "{}:", serde_json::to_string(&name).unwrap_or_default());
        compact(value.get(), out);
    }
}

fn entries_of_nonempty(raw: &RawValue) -> Option<Vec<(String, &RawValue)>> {
    entries(raw).filter(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn pointers_walk_objects_and_lists() {
        let body = raw(r#"{"data":[{"id":"a/1"},{"id":2}],"a/b":{"~c":true}}"#);
        assert_eq!(pointer(&body, "/data/1/id").unwrap().get(), "2");
        assert_eq!(pointer(&body, "/a~1b/~0c").unwrap().get(), "true");
        assert!(pointer(&body, "/data/9").is_none());
        assert_eq!(pointer_text(&body, "/data/0/id").as_deref(), Some("a/1"));
        assert_eq!(select(&body, "/data").unwrap().len(), 2);
        assert!(select(&body, "/nope").is_err());
    }

    #[test]
    fn compacting_keeps_tokens_exact() {
        let mut out = String::new();
        compact("{ \"a b\" : 1.50 ,\n \"c\": \"x \\\" y\" }", &mut out);
        assert_eq!(out, r#"{"a b":1.50,"c":"x \" y"}"#);
    }

    #[test]
    fn flattening_spreads_nested_objects() {
        let mut out = String::new();
        let record =
            raw(r#"{"id":1,"address":{"city":"Oslo","geo":{"lat":59.9}},"tags":[1, 2],"e":{}}"#);
        flatten(&record, "_", &mut out);
        assert_eq!(
            out,
            r#"{"id":1,"address_city":"Oslo","address_geo_lat":59.9,"tags":[1,2],"e":{}}"#
        );
    }

    #[test]
    fn filters_test_one_field() {
        let record = raw(r#"{"status":"paid","n":null}"#);
        let filter =
            |json: serde_json::Value| -> RecordFilter { serde_json::from_value(json).unwrap() };
        assert!(filter(serde_json::json!({"field": "/status", "equals": "paid"})).keeps(&record));
        assert!(
            !filter(serde_json::json!({"field": "/status", "not_equals": "paid"})).keeps(&record)
        );
        assert!(
            filter(serde_json::json!({"field": "/status", "one_of": ["x", "paid"]})).keeps(&record)
        );
        assert!(!filter(serde_json::json!({"field": "/n", "exists": true})).keeps(&record));
    }
}
