//! Reading one configuration table into a typed config: every unknown key and the first
//! value that does not parse, each named by its key path.
//!
//! Why not serde's own tools: an internally tagged enum (`#[serde(tag = "type")]`) and
//! `#[serde(flatten)]` both buffer the table before the variant or the flattened struct sees
//! it, so an error inside reports only the table's path (`sources.events: invalid type:
//! string "big", expected usize`, not `sources.events.batch_size: …`), and `flatten` turns
//! `deny_unknown_fields` into `unknown field `x`, there are no fields`. Here a table is a
//! `serde_json::Value` read by reference, deserialized under `serde_path_to_error`, and a
//! config made of parts gets each key routed to the part that declares it.

use std::borrow::Cow;

use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use super::error::{ConfigError, ConfigErrors, join, key_segment};

/// Reads a `T` from one configuration table (a `serde_json::Value` object), reporting every
/// key `T` does not know and the first value that does not parse, each with its key path
/// relative to the table.
///
/// `T` is an ordinary `#[derive(Deserialize)]` struct; with `#[serde(deny_unknown_fields)]`
/// nested tables refuse unknown keys too. This is what a host's connector factory calls (see
/// [`ConnectorRegistry::register_source`](super::ConnectorRegistry::register_source)):
///
/// ```
/// use cdp_connectors::config::from_table;
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct ApiConfig {
///     url: String,
///     #[serde(default)]
///     page_size: usize,
/// }
///
/// let table = serde_json::json!({"url": "https://api.example.com", "page_sise": 100});
/// let errors = from_table::<ApiConfig>(&table).unwrap_err();
/// assert_eq!(
///     errors.to_string(),
///     "page_sise: unknown field `page_sise` (did you mean `page_size`?), expected `url` or \
///      `page_size`"
/// );
/// ```
pub fn from_table<T: DeserializeOwned>(table: &Value) -> Result<T, ConfigErrors> {
    let mut errors = ConfigErrors::new();
    let known = match (struct_fields::<T>(), table) {
        (Some(fields), Value::Object(map)) => {
            let (known, unknown) = route(map, &[fields]);
            errors.extend(unknown.into_iter().map(|key| unknown_key(key, fields)));
            known.into_iter().next().map(Value::Object)
        }
        _ => None,
    };
    let table = known.map_or(Cow::Borrowed(table), Cow::Owned);
    match deserialize::<T>(&table) {
        Ok(value) if errors.is_empty() => Ok(value),
        Ok(_) => Err(errors),
        Err(error) => {
            errors.extend([error]);
            Err(errors)
        }
    }
}

/// Reads a config made of two parts from one flat table: each key goes to the part whose
/// struct declares it, a key neither declares is refused (listing the keys of both), and
/// each part reports its problems with their key paths. Both parts must be plain
/// `#[derive(Deserialize)]` structs (no `flatten`), whose field lists serde exposes.
#[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
pub(crate) fn from_table_parts<A, B>(table: &Value) -> Result<(A, B), ConfigErrors>
where
    A: DeserializeOwned,
    B: DeserializeOwned,
{
    let (Some(a_fields), Some(b_fields)) = (struct_fields::<A>(), struct_fields::<B>()) else {
        return Err(ConfigErrors::at(
            "",
            "internal: a config part is not a plain struct",
        ));
    };
    let Value::Object(map) = table else {
        return Err(ConfigErrors::at(
            "",
            format!("expected a table, got {}", kind(table)),
        ));
    };
    let mut errors = ConfigErrors::new();
    let (parts, unknown) = route(map, &[a_fields, b_fields]);
    let all: Vec<&str> = a_fields.iter().chain(b_fields).copied().collect();
    errors.extend(unknown.into_iter().map(|key| unknown_key(key, &all)));
    let mut parts = parts.into_iter().map(Value::Object);
    let (a_table, b_table) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let a = deserialize::<A>(&a_table).map_err(|e| errors.extend([e]));
    let b = deserialize::<B>(&b_table).map_err(|e| errors.extend([e]));
    match (a, b) {
        (Ok(a), Ok(b)) if errors.is_empty() => Ok((a, b)),
        _ => Err(errors),
    }
}

/// Splits `map` into one table per field list (a key goes to the first list naming it), and
/// the keys no list names, sorted.
fn route<'a>(
    map: &'a Map<String, Value>,
    lists: &[&[&str]],
) -> (Vec<Map<String, Value>>, Vec<&'a str>) {
    let mut parts = vec![Map::new(); lists.len()];
    let mut unknown = Vec::new();
    for (key, value) in map {
        match lists
            .iter()
            .position(|fields| fields.contains(&key.as_str()))
        {
            Some(i) => {
                parts[i].insert(key.clone(), value.clone());
            }
            None => unknown.push(key.as_str()),
        }
    }
    unknown.sort_unstable();
    (parts, unknown)
}

/// Deserializes `value`, naming the key path of the first error.
pub(crate) fn deserialize<T: DeserializeOwned>(value: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = render(error.path());
        ConfigError::new(path, error.into_inner().to_string())
    })
}

/// A `serde_path_to_error` path in the key-path syntax of [`ConfigError::path`].
fn render(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .fold(String::new(), |out, segment| match segment {
            Segment::Seq { index } => format!("{out}[{index}]"),
            Segment::Map { key } | Segment::Enum { variant: key } => join(&out, &key_segment(key)),
            Segment::Unknown => join(&out, "?"),
        })
}

/// The refusal of `key`, with the nearest known key when one is close.
pub(crate) fn unknown_key(key: &str, known: &[&str]) -> ConfigError {
    // Worded as serde words it, so that nested refusals (reported by serde) read alike.
    let expected = match known {
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>();
            format!("one of {}", list.join(", "))
        }
    };
    let hint = suggest(key, known.iter().copied())
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    let message = if known.is_empty() {
        format!("unknown field `{key}`, there are no fields")
    } else {
        format!("unknown field `{key}`{hint}, expected {expected}")
    };
    ConfigError::new(key_segment(key), message)
}

/// The candidate nearest to `word`, when it is near enough to be a typo of it.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| *distance <= (c.chars().count() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The JSON kind of `value`, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// The keys a `#[derive(Deserialize)]` struct reads, including aliases; `None` for anything
/// else (maps, enums, structs with `flatten`, hand-written impls). Serde's derive hands them
/// to `Deserializer::deserialize_struct`; a deserializer that only records them and stops
/// reads them out without any input.
pub(crate) fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut fields = None;
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

/// Stops a [`FieldNames`] pass: nothing is ever deserialized.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names read")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Column {
        name: String,
        #[serde(default)]
        nullable: bool,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Shared {
        path: String,
        #[serde(default)]
        batch_size: usize,
        #[serde(default)]
        schema: Vec<Column>,
    }

    #[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Own {
        #[serde(default)]
        delimiter: Option<char>,
    }

    fn messages(errors: ConfigErrors) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn field_names_come_from_the_derive() {
        assert_eq!(
            struct_fields::<Shared>(),
            Some(&["path", "batch_size", "schema"][..])
        );
        assert_eq!(struct_fields::<Value>(), None);
        assert_eq!(
            struct_fields::<std::collections::BTreeMap<String, u8>>(),
            None
        );
    }

    #[test]
    fn every_unknown_key_and_the_first_bad_value_are_named() {
        let table = json!({
            "path": "x", "batch_sise": 1, "zzz": true,
            "schema": [{"name": "a"}, {"name": "b", "nulable": true}],
        });
        assert_eq!(
            messages(from_table::<Shared>(&table).unwrap_err()),
            [
                "batch_sise: unknown field `batch_sise` (did you mean `batch_size`?), expected \
                 one of `path`, `batch_size`, `schema`",
                "zzz: unknown field `zzz`, expected one of `path`, `batch_size`, `schema`",
                "schema[1].nulable: unknown field `nulable`, expected `name` or `nullable`",
            ]
        );
        let bad = json!({"path": "x", "batch_size": "big"});
        assert_eq!(
            messages(from_table::<Shared>(&bad).unwrap_err()),
            ["batch_size: invalid type: string \"big\", expected usize"]
        );
        assert_eq!(
            messages(from_table::<Shared>(&json!({})).unwrap_err()),
            ["missing field `path`"]
        );
    }

    #[cfg(any(feature = "jsonl", feature = "csv", feature = "parquet"))]
    #[test]
    fn parts_share_one_table_and_keep_their_paths() {
        let (shared, own) = from_table_parts::<Shared, Own>(&json!({
            "path": "x", "delimiter": ";", "batch_size": 3
        }))
        .unwrap();
        assert_eq!((shared.batch_size, own.delimiter), (3, Some(';')));

        let errors = from_table_parts::<Shared, Own>(&json!({
            "path": "x", "delimitter": ";", "delimiter": "ab",
            "schema": [{"name": 1}],
        }))
        .unwrap_err();
        assert_eq!(
            messages(errors),
            [
                "delimitter: unknown field `delimitter` (did you mean `delimiter`?), expected \
                 one of `path`, `batch_size`, `schema`, `delimiter`",
                "schema[0].name: invalid type: integer `1`, expected a string",
                "delimiter: invalid value: string \"ab\", expected a character",
            ]
        );
        assert_eq!(
            messages(from_table_parts::<Shared, Own>(&json!("x")).unwrap_err()),
            ["expected a table, got a string"]
        );
    }

    #[test]
    fn suggestions_are_typos_only() {
        let known = ["batch_size", "path", "stream"];
        assert_eq!(suggest("batchsize", known), Some("batch_size"));
        assert_eq!(suggest("pth", known), Some("path"));
        assert_eq!(suggest("color", known), None);
    }
}
