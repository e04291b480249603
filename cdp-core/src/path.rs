//! Dot paths to fields of nested struct columns: `context.device.id`.
//!
//! One resolver for every part of a pipeline that names a field — the `normalize`
//! transform's rules, the identity resolver's mapping, suppression, schema contracts — so a
//! path means the same field everywhere.
//!
//! A segment in backticks is one field name, dots and all: `` properties.`utm.source` ``
//! (a backtick inside is written twice). Unquoted, a field whose name contains dots is
//! still found: at each level the longest field name that matches a whole run of segments
//! wins, so `utm.source` finds a top-level column named `utm.source` before a struct `utm`.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Array, RecordBatch, StringArray, StructArray};
//! use arrow::datatypes::{DataType, Field};
//! use cdp_core::path::FieldPath;
//!
//! let device = StructArray::from(vec![(
//!     Arc::new(Field::new("id", DataType::Utf8, true)),
//!     Arc::new(StringArray::from(vec!["d-1", "d-2"])) as _,
//! )]);
//! let context = StructArray::from(vec![(
//!     Arc::new(Field::new("device", device.data_type().clone(), true)),
//!     Arc::new(device) as _,
//! )]);
//! let batch = RecordBatch::try_from_iter([("context", Arc::new(context) as _)]).unwrap();
//!
//! let path = FieldPath::parse("context.device.id").unwrap();
//! let ids = path.column(&batch).unwrap();
//! assert_eq!(ids.len(), 2);
//! assert!(FieldPath::parse("context.device.ip").unwrap().column(&batch).is_err());
//! ```

use std::fmt;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, make_array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields};

use crate::error::{Error, Result};

/// A parsed dot path; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Segment {
    name: String,
    /// Written in backticks: matches one field name exactly, never joined with others.
    quoted: bool,
}

/// Why a path did not resolve against a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    /// The path as written.
    pub path: String,
    /// What was missing or of the wrong type, and what was there instead.
    pub message: String,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for PathError {}

/// Where a path led in a schema.
#[derive(Debug, Clone)]
pub struct ResolvedPath {
    /// Child indices from the top-level column down.
    pub indices: Vec<usize>,
    /// The field at the end of the path.
    pub field: FieldRef,
}

impl FieldPath {
    /// Parses `text`; fails on an empty segment or an unclosed backtick.
    pub fn parse(text: &str) -> Result<Self> {
        let mut segments = Vec::new();
        let mut chars = text.chars().peekable();
        let bad = |why: &str| Error::Config(format!("field path `{text}`: {why}"));
        loop {
            let mut name = String::new();
            let quoted = chars.peek() == Some(&'`');
            if quoted {
                chars.next();
                loop {
                    match chars.next() {
                        Some('`') if chars.peek() == Some(&'`') => {
                            chars.next();
                            name.push('`');
                        }
                        Some('`') => break,
                        Some(c) => name.push(c),
                        None => return Err(bad("unclosed backtick")),
                    }
                }
                if !matches!(chars.peek(), None | Some('.')) {
                    return Err(bad("a quoted segment must be followed by `.` or the end"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
            }
            if name.is_empty() {
                return Err(bad("empty segment"));
            }
            segments.push(Segment { name, quoted });
            match chars.next() {
                Some('.') => continue,
                None => break,
                Some(_) => return Err(bad("unexpected character")),
            }
        }
        Ok(FieldPath {
            text: text.to_string(),
            segments,
        })
    }

    /// The path of a single field named `name` (quoted when it contains dots).
    pub fn field(name: &str) -> Self {
        FieldPath {
            text: quote(name),
            segments: vec![Segment {
                name: name.to_string(),
                quoted: true,
            }],
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name of the top-level column when the path is a single segment.
    pub fn top_level(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [only] => Some(&only.name),
            _ => None,
        }
    }

    /// Finds the path in `fields`.
    pub fn resolve(&self, fields: &Fields) -> std::result::Result<ResolvedPath, PathError> {
        let mut fields = fields.clone();
        let mut rest: &[Segment] = &self.segments;
        let mut indices = Vec::new();
        let mut walked = String::new();
        loop {
            let Some((i, field, used)) = step(&fields, rest) else {
                let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
                let place = if walked.is_empty() {
                    "the input".to_string()
                } else {
                    format!("struct `{walked}`")
                };
                return Err(self.error(format!(
                    "no field `{}` in {place} (it has: {})",
                    rest[0].name,
                    names.join(", ")
                )));
            };
            indices.push(i);
            rest = &rest[used..];
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(&quote(field.name()));
            if rest.is_empty() {
                return Ok(ResolvedPath { indices, field });
            }
            match field.data_type() {
                DataType::Struct(children) => fields = children.clone(),
                other => {
                    return Err(self.error(format!("`{walked}` is {other}, not a struct")));
                }
            }
        }
    }

    /// Whether the path names a field of `fields`.
    pub fn exists_in(&self, fields: &Fields) -> bool {
        self.resolve(fields).is_ok()
    }

    /// The column at the path, with the nulls of every struct above it folded in (a null
    /// `context` makes `context.device.id` null).
    pub fn column(&self, batch: &RecordBatch) -> std::result::Result<ArrayRef, PathError> {
        let (column, nulls) = self.column_parts(batch)?;
        Ok(with_nulls(column, nulls.as_ref()))
    }

    /// The column at the path as stored, and the nulls of the structs above it (`None` when
    /// none of them has a null); cheaper than [`column`](Self::column) when the caller
    /// checks validity itself.
    pub fn column_parts(
        &self,
        batch: &RecordBatch,
    ) -> std::result::Result<(ArrayRef, Option<NullBuffer>), PathError> {
        let resolved = self.resolve(batch.schema().fields())?;
        Ok(extract(batch, &resolved.indices))
    }

    fn error(&self, message: String) -> PathError {
        PathError {
            path: self.text.clone(),
            message,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for FieldPath {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        FieldPath::parse(s)
    }
}

/// `name` as one path segment: in backticks when it contains a dot or a backtick.
pub fn quote(name: &str) -> String {
    if name.contains(['.', '`']) || name.is_empty() {
        format!("`{}`", name.replace('`', "``"))
    } else {
        name.to_string()
    }
}

/// The field of `fields` matching the longest run of segments at the front of `rest`:
/// its index, the field, and how many segments it took.
fn step(fields: &Fields, rest: &[Segment]) -> Option<(usize, FieldRef, usize)> {
    let first = rest.first()?;
    if first.quoted {
        let (i, f) = fields.find(&first.name)?;
        return Some((i, f.clone(), 1));
    }
    let run = rest.iter().take_while(|s| !s.quoted).count();
    let mut joined: Vec<String> = Vec::with_capacity(run);
    let mut name = String::new();
    for s in &rest[..run] {
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&s.name);
        joined.push(name.clone());
    }
    joined
        .iter()
        .enumerate()
        .rev()
        .find_map(|(used, name)| fields.find(name).map(|(i, f)| (i, f.clone(), used + 1)))
}

/// The column at `indices` and the nulls of the structs above it.
pub(crate) fn extract(batch: &RecordBatch, indices: &[usize]) -> (ArrayRef, Option<NullBuffer>) {
    let mut current = batch.column(indices[0]).clone();
    let mut nulls: Option<NullBuffer> = None;
    for &i in &indices[1..] {
        let Some(parent) = current.as_struct_opt() else {
            break;
        };
        nulls = NullBuffer::union(nulls.as_ref(), parent.nulls());
        current = parent.column(i).clone();
    }
    (current, nulls.filter(|n| n.null_count() > 0))
}

/// `array` with `ancestors`' nulls added to its own; no copy of the values.
pub fn with_nulls(array: ArrayRef, ancestors: Option<&NullBuffer>) -> ArrayRef {
    let Some(ancestors) = ancestors else {
        return array;
    };
    let nulls = NullBuffer::union(array.nulls(), Some(ancestors));
    match array.to_data().into_builder().nulls(nulls).build() {
        Ok(data) => make_array(data),
        // The buffers are the array's own and the null buffer has its length: unreachable.
        Err(_) => array,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, StructArray};
    use arrow::buffer::NullBuffer;
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let id = Arc::new(StringArray::from(vec![Some("d-1"), Some("d-2"), None])) as ArrayRef;
        let device = StructArray::new(
            vec![Field::new("id", DataType::Utf8, true)].into(),
            vec![id],
            Some(NullBuffer::from(vec![true, false, true])),
        );
        let context = StructArray::from(vec![
            (
                Arc::new(Field::new("device", device.data_type().clone(), true)),
                Arc::new(device) as ArrayRef,
            ),
            (
                Arc::new(Field::new("utm.source", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
            ),
        ]);
        let dotted = Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef;
        RecordBatch::try_from_iter([
            ("context", Arc::new(context) as ArrayRef),
            ("context.ip", dotted),
        ])
        .unwrap()
    }

    #[test]
    fn parses_quoted_and_plain_segments() {
        let p = FieldPath::parse("properties.`utm.source`.x").unwrap();
        assert_eq!(p.segments.len(), 3);
        assert_eq!(p.segments[1].name, "utm.source");
        assert_eq!(FieldPath::parse("`a``b`").unwrap().segments[0].name, "a`b");
        for bad in ["", "a..b", "a.", "`a", "`a`b"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(quote("utm.source"), "`utm.source`");
        assert_eq!(FieldPath::field("a.b").as_str(), "`a.b`");
    }

    #[test]
    fn resolves_through_structs_with_ancestor_nulls() {
        let b = batch();
        let ids = FieldPath::parse("context.device.id")
            .unwrap()
            .column(&b)
            .unwrap();
        let ids = ids.as_string::<i32>();
        assert_eq!(ids.iter().collect::<Vec<_>>(), [Some("d-1"), None, None]);
        let (raw, nulls) = FieldPath::parse("context.device.id")
            .unwrap()
            .column_parts(&b)
            .unwrap();
        assert_eq!(raw.null_count(), 1);
        assert_eq!(nulls.map(|n| n.null_count()), Some(1));
    }

    #[test]
    fn dotted_names_match_whole_or_quoted() {
        let b = batch();
        // A top-level column named `context.ip` wins over a (missing) struct field.
        let ip = FieldPath::parse("context.ip").unwrap().column(&b).unwrap();
        assert_eq!(ip.data_type(), &DataType::Int64);
        let utm = FieldPath::parse("context.utm.source").unwrap();
        assert_eq!(utm.resolve(b.schema().fields()).unwrap().indices, [0, 1]);
        let quoted = FieldPath::parse("context.`utm.source`").unwrap();
        assert_eq!(quoted.resolve(b.schema().fields()).unwrap().indices, [0, 1]);
        let forced = FieldPath::parse("`context`.ip").unwrap();
        let err = forced.resolve(b.schema().fields()).unwrap_err();
        assert!(
            err.message.contains("no field `ip` in struct `context`"),
            "{err}"
        );
        assert!(err.message.contains("device, utm.source"), "{err}");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
        let err = FieldPath::parse("n.x")
            .unwrap()
            .resolve(schema.fields())
            .unwrap_err();
        assert_eq!(err.message, "`n` is Int64, not a struct");
        let err = FieldPath::parse("m")
            .unwrap()
            .resolve(schema.fields())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `m`: no field `m` in the input (it has: n)"
        );
    }
}
