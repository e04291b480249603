//! Paths to fields of nested schemas, as drift reports and cursors name them.

use std::fmt;

use serde_json::Value;

/// One step down a schema: a field of a struct, or the items of a list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Segment {
    Field(String),
    Item,
}

/// A path from the top of a schema: `properties.plan`, `items[].sku`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Path(pub(crate) Vec<Segment>);

impl Path {
    pub(crate) fn child(&self, name: &str) -> Path {
        let mut segments = self.0.clone();
        segments.push(Segment::Field(name.to_string()));
        Path(segments)
    }

    pub(crate) fn item(&self) -> Path {
        let mut segments = self.0.clone();
        segments.push(Segment::Item);
        Path(segments)
    }

    /// The path as JSON for a cursor: field names as strings, list items as `null`.
    pub(crate) fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .map(|s| match s {
                    Segment::Field(name) => Value::String(name.clone()),
                    Segment::Item => Value::Null,
                })
                .collect(),
        )
    }

    pub(crate) fn from_json(value: &Value) -> Option<Path> {
        let segments = value
            .as_array()?
            .iter()
            .map(|s| match s {
                Value::String(name) => Some(Segment::Field(name.clone())),
                Value::Null => Some(Segment::Item),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        (!segments.is_empty()).then_some(Path(segments))
    }
}

impl fmt::Display for Path {
    /// Dotted, a name holding `.`, `` ` `` or `[` in backticks (a backtick doubled), list
    /// items as `[]`: the spelling of [`cdp_core::path::FieldPath`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for segment in &self.0 {
            match segment {
                Segment::Field(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    if name.contains(['.', '`', '[']) || name.is_empty() {
                        write!(f, "`{}`", name.replace('`', "``"))?;
                    } else {
                        f.write_str(name)?;
                    }
                }
                Segment::Item => f.write_str("[]")?,
            }
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_dotted_and_round_trip_as_json() {
        let path = Path::default().child("items").item().child("a.b");
        assert_eq!(path.to_string(), "items[].`a.b`");
        assert_eq!(Path::from_json(&path.to_json()), Some(path));
        assert_eq!(Path::default().child("plan").to_string(), "plan");
        assert_eq!(Path::from_json(&serde_json::json!([])), None);
        assert_eq!(Path::from_json(&serde_json::json!([1])), None);
    }
}
