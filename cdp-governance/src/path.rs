//! Paths to every field of a schema, at every depth, and the patterns policies match them
//! with.
//!
//! Governance looks at *leaves*: the scalar fields at the bottom of structs, lists and maps.
//! A leaf is named by its path from the top-level column: struct fields are joined with
//! dots (`context.traits.phone`), list elements are marked `[]` (`contacts[].email`,
//! `emails[]`), and a map is a list of its entries (`attributes[].keys`,
//! `attributes[].values`). A name containing a dot is written in backticks, as in
//! [`cdp_core::path`].
//!
//! Patterns in policies come in two kinds:
//!
//! * a **name** pattern has no dot (`*email*`, `phone?`, `ip`) and matches a field's own
//!   name at any depth, so `*email*` catches `email`, `traits.email` and
//!   `contacts[].email`;
//! * a **path** pattern has dots (`traits.email`, `*.email`, `context.**`): `*` and `?`
//!   match within one segment, a `**` segment matches any number of segments (none
//!   included). List markers are not written: `contacts.email` matches
//!   `contacts[].email`.
//!
//! A pattern that matches a struct, list or map covers everything inside it.
//!
//! Some fields hold data the schema cannot see into: a JSON text column (marked with the
//! canonical `arrow.json` extension type, [`cdp_core::record::json_text_field`]), the keys
//! of a map, and the values of a map whose values are scalars (open keys). They are *opaque*: the policy's `opaque_class` applies unless the field's own
//! metadata says otherwise.

use std::fmt;

use cdp_core::arrow::datatypes::{DataType, FieldRef, Schema};

use crate::mask::MASKING_METADATA_KEY;

use cdp_core::record::is_json_text;
pub use cdp_core::record::{EXTENSION_NAME_KEY, JSON_EXTENSION};

/// One step from a field to what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    /// A struct field (or the top-level column).
    Field(String),
    /// The elements of a list, or the entries of a map.
    Item,
}

/// The path of a field inside a schema; see the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NestedPath {
    steps: Vec<Step>,
}

impl NestedPath {
    /// The path of a top-level column.
    pub fn column(name: &str) -> Self {
        NestedPath {
            steps: vec![Step::Field(name.to_string())],
        }
    }

    /// Parses a printed path (`contacts[].email`, `` properties.`utm.source` ``).
    pub fn parse(text: &str) -> Self {
        let mut steps = Vec::new();
        for segment in split_segments(text) {
            let mut name = segment.as_str();
            let mut items = 0;
            while let Some(rest) = name.strip_suffix("[]") {
                name = rest;
                items += 1;
            }
            steps.push(Step::Field(name.to_string()));
            steps.extend(std::iter::repeat_n(Step::Item, items));
        }
        NestedPath { steps }
    }

    /// This path, then the struct field `name`.
    pub fn child(&self, name: &str) -> Self {
        let mut steps = self.steps.clone();
        steps.push(Step::Field(name.to_string()));
        NestedPath { steps }
    }

    /// This path, then the elements of the list (or the entries of the map) it names.
    pub fn item(&self) -> Self {
        let mut steps = self.steps.clone();
        steps.push(Step::Item);
        NestedPath { steps }
    }

    /// The top-level column the path starts at.
    pub fn column_name(&self) -> &str {
        match self.steps.first() {
            Some(Step::Field(name)) => name,
            _ => "",
        }
    }

    /// The field's own name: its last named step (a list element is named after its list).
    pub fn name(&self) -> &str {
        self.steps
            .iter()
            .rev()
            .find_map(|s| match s {
                Step::Field(name) => Some(name.as_str()),
                Step::Item => None,
            })
            .unwrap_or("")
    }

    /// Whether the path names a top-level column.
    pub fn is_top_level(&self) -> bool {
        self.steps.len() == 1
    }

    /// The named steps, list markers left out: what path patterns match against.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match s {
            Step::Field(name) => Some(name.as_str()),
            Step::Item => None,
        })
    }

    /// The path as written in policies, without list markers (`contacts.email`).
    pub fn key(&self) -> String {
        let mut out = String::new();
        for segment in self.segments() {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&cdp_core::path::quote(segment));
        }
        out
    }

    /// Whether `self` is `other` or lies inside it.
    pub fn starts_with(&self, other: &NestedPath) -> bool {
        self.steps.starts_with(&other.steps)
    }

    /// The paths of the containers above this one, outermost first.
    pub fn ancestors(&self) -> impl Iterator<Item = NestedPath> + '_ {
        (1..self.steps.len()).map(|n| NestedPath {
            steps: self.steps[..n].to_vec(),
        })
    }
}

impl fmt::Display for NestedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for step in &self.steps {
            match step {
                Step::Field(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(&cdp_core::path::quote(name))?;
                }
                Step::Item => f.write_str("[]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A case-insensitive name or path pattern; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Name(Glob),
    Path(Vec<SegmentPattern>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SegmentPattern {
    AnyDepth,
    Glob(Glob),
}

impl PathPattern {
    /// Compiles `pattern`: a name pattern without dots, a path pattern with them. List
    /// markers (`[]`) may be written and are ignored.
    pub fn new(pattern: &str) -> Self {
        let cleaned = pattern.replace("[]", "");
        let segments = split_segments(&cleaned);
        let kind = if segments.len() <= 1 {
            PatternKind::Name(Glob::new(segments.first().map_or("", String::as_str)))
        } else {
            PatternKind::Path(
                segments
                    .iter()
                    .map(|s| match s.as_str() {
                        "**" => SegmentPattern::AnyDepth,
                        other => SegmentPattern::Glob(Glob::new(other)),
                    })
                    .collect(),
            )
        };
        PathPattern { kind }
    }

    /// Whether the pattern names fields by name (no dots) rather than by path.
    pub fn is_name_pattern(&self) -> bool {
        matches!(self.kind, PatternKind::Name(_))
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &NestedPath) -> bool {
        match &self.kind {
            PatternKind::Name(glob) => glob.matches(path.name()),
            PatternKind::Path(pattern) => {
                let segments: Vec<&str> = path.segments().collect();
                match_segments(pattern, &segments)
            }
        }
    }
}

/// Splits on dots outside backticks; a backticked segment is one literal name.
fn split_segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                current.push('`');
            }
            '`' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    out.push(current);
    out
}

fn match_segments(pattern: &[SegmentPattern], segments: &[&str]) -> bool {
    match pattern.split_first() {
        None => segments.is_empty(),
        Some((SegmentPattern::AnyDepth, rest)) => {
            (0..=segments.len()).any(|skip| match_segments(rest, &segments[skip..]))
        }
        Some((SegmentPattern::Glob(glob), rest)) => segments
            .split_first()
            .is_some_and(|(first, tail)| glob.matches(first) && match_segments(rest, tail)),
    }
}

/// A case-insensitive glob with `*` and `?`, on one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Self {
        Glob {
            pattern: pattern.to_lowercase().chars().collect(),
        }
    }

    /// Whether `text` matches, ignoring case.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.to_lowercase().chars().collect();
        let p = &self.pattern;
        // Iterative matcher with one backtrack point: linear for the patterns people write.
        let (mut ti, mut pi) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == text[ti]) {
                ti += 1;
                pi += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        while pi < p.len() && p[pi] == '*' {
            pi += 1;
        }
        pi == p.len()
    }
}

/// A field at the bottom of a schema's tree, with what lies above it.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Its path.
    pub path: NestedPath,
    /// The field itself (for a list element, the list's item field).
    pub field: FieldRef,
    /// The containers above it, outermost first, with their paths.
    pub ancestors: Vec<(NestedPath, FieldRef)>,
    /// Whether its content is opaque to the schema (JSON text, map keys, open-keyed map
    /// values).
    pub opaque: bool,
    /// The masking marker of the leaf or of the nearest container above it that carries
    /// one: a masked container covers everything inside.
    pub marker: Option<String>,
}

/// Every leaf of the user columns of `schema` (system `_cdp_` columns are not governed), in
/// schema order.
pub fn leaves(schema: &Schema) -> Vec<Leaf> {
    let mut out = Vec::new();
    for field in schema.fields() {
        if cdp_core::record::is_system_column(field.name()) {
            continue;
        }
        let mut ancestors = Vec::new();
        walk(
            field,
            NestedPath::column(field.name()),
            &mut ancestors,
            false,
            &mut out,
        );
    }
    out
}

/// Every field path of the user columns of `schema`, containers and leaves, in schema order
/// (a container before what it holds).
pub fn nodes(schema: &Schema) -> Vec<NestedPath> {
    let mut out: Vec<NestedPath> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for leaf in leaves(schema) {
        for path in leaf
            .ancestors
            .iter()
            .map(|(p, _)| p.clone())
            .chain([leaf.path])
        {
            if seen.insert(path.clone()) {
                out.push(path);
            }
        }
    }
    out
}

/// The children a container field holds, each with the path step to it and whether it is
/// opaque by position (map keys, scalar map values); `None` for a leaf.
pub(crate) fn children(field: &FieldRef) -> Option<Vec<(Option<&str>, FieldRef, bool)>> {
    match field.data_type() {
        DataType::Struct(fields) if !fields.is_empty() => Some(
            fields
                .iter()
                .map(|f| (Some(f.name().as_str()), f.clone(), false))
                .collect(),
        ),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            Some(vec![(None, item.clone(), false)])
        }
        DataType::Map(entries, _) => Some(vec![(None, entries.clone(), false)]),
        _ => None,
    }
}

fn walk(
    field: &FieldRef,
    path: NestedPath,
    ancestors: &mut Vec<(NestedPath, FieldRef)>,
    opaque: bool,
    out: &mut Vec<Leaf>,
) {
    let marked = field.metadata().contains_key(MASKING_METADATA_KEY);
    let is_map_entries = matches!(ancestors.last(), Some((_, parent)) if matches!(parent.data_type(), DataType::Map(..)));
    match children(field) {
        Some(kids) if !marked => {
            ancestors.push((path.clone(), field.clone()));
            for (index, (name, child, _)) in kids.into_iter().enumerate() {
                let child_path = match name {
                    Some(name) => path.child(name),
                    None => path.item(),
                };
                // A map's keys are open, and so are its values when they are scalars: the
                // schema cannot say what they hold.
                let child_opaque = opaque
                    || (is_map_entries && (index == 0 || children(&child).is_none()))
                    || is_json_text(&child);
                walk(&child, child_path, ancestors, child_opaque, out);
            }
            ancestors.pop();
        }
        _ => {
            let marker = std::iter::once(field)
                .chain(ancestors.iter().rev().map(|(_, f)| f))
                .find_map(|f| f.metadata().get(MASKING_METADATA_KEY).cloned());
            out.push(Leaf {
                path,
                field: field.clone(),
                ancestors: ancestors.clone(),
                opaque: opaque || is_json_text(field),
                marker,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_core::arrow::datatypes::Field;

    fn p(text: &str) -> NestedPath {
        NestedPath::parse(text)
    }

    #[test]
    fn name_patterns_match_at_any_depth_and_path_patterns_by_segment() {
        let email = PathPattern::new("*email*");
        assert!(email.matches(&p("email")));
        assert!(email.matches(&p("traits.email")));
        assert!(email.matches(&p("contacts[].email")));
        assert!(email.matches(&p("emails[]")));
        assert!(!email.matches(&p("traits.phone")));

        let one = PathPattern::new("*.email");
        assert!(one.matches(&p("traits.email")));
        assert!(!one.matches(&p("context.traits.email")));
        assert!(!one.matches(&p("email")));

        let deep = PathPattern::new("context.**");
        assert!(deep.matches(&p("context")));
        assert!(deep.matches(&p("context.ip")));
        assert!(deep.matches(&p("context.device.id")));
        assert!(!deep.matches(&p("traits.ip")));

        let anywhere = PathPattern::new("**.ip");
        assert!(anywhere.matches(&p("ip")));
        assert!(anywhere.matches(&p("context.ip")));

        let listed = PathPattern::new("contacts[].email");
        assert!(listed.matches(&p("contacts[].email")));
        assert!(PathPattern::new("contacts.email").matches(&p("contacts[].email")));
    }

    #[test]
    fn paths_print_with_list_markers_and_quotes() {
        let path = NestedPath::column("contacts").item().child("utm.source");
        assert_eq!(path.to_string(), "contacts[].`utm.source`");
        assert_eq!(path.key(), "contacts.`utm.source`");
        assert_eq!(path.name(), "utm.source");
        assert!(PathPattern::new("contacts.`utm.source`").matches(&path));
        assert_eq!(NestedPath::parse(&path.to_string()), path);
    }

    #[test]
    fn leaves_reach_structs_lists_and_maps_and_mark_open_content_opaque() {
        let contact = Field::new_struct(
            "item",
            vec![Field::new("email", DataType::Utf8, true)],
            true,
        );
        let json = Field::new("extra", DataType::Utf8, true).with_metadata(
            std::collections::HashMap::from([(
                EXTENSION_NAME_KEY.to_string(),
                JSON_EXTENSION.to_string(),
            )]),
        );
        let schema = Schema::new(vec![
            Field::new("_cdp_id", DataType::Utf8, false),
            Field::new_struct(
                "traits",
                vec![
                    Field::new("email", DataType::Utf8, true),
                    Field::new_list("tags", Field::new("item", DataType::Utf8, true), true),
                ],
                true,
            ),
            Field::new_list("contacts", contact, true),
            Field::new_map(
                "attrs",
                "entries",
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
                false,
                true,
            ),
            json,
        ]);
        let leaves = leaves(&schema);
        let got: Vec<(String, bool)> = leaves
            .iter()
            .map(|l| (l.path.to_string(), l.opaque))
            .collect();
        assert_eq!(
            got,
            [
                ("traits.email".to_string(), false),
                ("traits.tags[]".to_string(), false),
                ("contacts[].email".to_string(), false),
                ("attrs[].keys".to_string(), true),
                ("attrs[].values".to_string(), true),
                ("extra".to_string(), true),
            ]
        );
        // `contacts` (the list) and `contacts[]` (its element struct).
        assert_eq!(leaves[2].ancestors.len(), 2);
        assert_eq!(leaves[2].ancestors[1].0.to_string(), "contacts[]");
    }
}
