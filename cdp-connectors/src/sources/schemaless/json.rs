//! The schemaless JSON path: robust inference from a sample, and the verdict on one record
//! that does not fit the schema (accept, rewrite, evolve the schema, or refuse), by the
//! source's [`DriftPolicy`].
//!
//! Records are looked at through [`RawValue`]s, so a value moved or kept keeps its exact
//! text (a number is never re-printed through a float).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use cdp_core::{DriftAction, DriftKind};
use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::delta::{Deltas, set_type};
use super::path::Path;
use super::text::{NumberKind, canonical_int, canonical_number, number_kind};
use super::{Changes, DriftLog, DriftPolicy, MAX_FIELDS, NewFields, field_count, type_name};

/// The kind of a JSON value, from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    Null,
    Bool,
    Number(NumberKind),
    String,
    Object,
    Array,
}

impl JsonKind {
    fn of(raw: &RawValue) -> JsonKind {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') => JsonKind::Object,
            Some(b'[') => JsonKind::Array,
            Some(b'"') => JsonKind::String,
            Some(b't' | b'f') => JsonKind::Bool,
            Some(b'n') | None => JsonKind::Null,
            Some(_) => JsonKind::Number(number_kind(text)),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number(NumberKind::Int) => "an integer",
            JsonKind::Number(NumberKind::BigInt) => "an integer beyond 64 bits",
            JsonKind::Number(NumberKind::Float) => "a fractional number",
            JsonKind::String => "a string",
            JsonKind::Object => "an object",
            JsonKind::Array => "a list",
        }
    }
}

/// The entries of a JSON object, in order, values unparsed.
pub(crate) type Entries<'a> = Vec<(String, &'a RawValue)>;

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

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

struct ItemsVisitor;

impl<'de> Visitor<'de> for ItemsVisitor {
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

/// Parses one record: exactly one JSON object, nothing but whitespace around it.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<Entries<'_>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let entries = match de.deserialize_map(EntriesVisitor) {
        Ok(entries) => entries,
        Err(e) => {
            // Say what the line holds when it is valid JSON of another kind.
            return Err(match serde_json::from_slice::<&RawValue>(bytes) {
                Ok(raw) => format!(
                    "expected a JSON object, found {}",
                    JsonKind::of(raw).describe()
                ),
                Err(_) => format!("invalid JSON: {e}"),
            });
        }
    };
    de.end().map_err(|_| {
        "more than one JSON value on the line (a line holds one record)".to_string()
    })?;
    Ok(entries)
}

fn object(raw: &RawValue) -> Entries<'_> {
    // A raw value of an object that parsed once parses again.
    serde_json::Deserializer::from_str(raw.get())
        .deserialize_map(EntriesVisitor)
        .unwrap_or_default()
}

fn items(raw: &RawValue) -> Vec<&RawValue> {
    serde_json::Deserializer::from_str(raw.get())
        .deserialize_seq(ItemsVisitor)
        .unwrap_or_default()
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// What the values seen at one place of the sample were; resolved into a type by the
/// conflict policy.
#[derive(Debug, Default)]
pub(crate) struct Shape {
    nulls: usize,
    bools: usize,
    ints: usize,
    big_ints: usize,
    floats: usize,
    strings: usize,
    objects: usize,
    arrays: usize,
    /// Families in the order first seen, to break ties.
    order: Vec<Family>,
    fields: Vec<(String, Shape)>,
    items: Option<Box<Shape>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Bool,
    Number,
    String,
    Object,
    Array,
}

impl Shape {
    /// Adds the entries of one object.
    pub(crate) fn observe_entries(&mut self, entries: &Entries<'_>) {
        self.count(Family::Object);
        self.objects += 1;
        for (key, value) in entries {
            self.child(key).observe(value);
        }
    }

    fn child(&mut self, key: &str) -> &mut Shape {
        let at = match self.fields.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                self.fields.push((key.to_string(), Shape::default()));
                self.fields.len() - 1
            }
        };
        &mut self.fields[at].1
    }

    fn count(&mut self, family: Family) {
        if !self.order.contains(&family) {
            self.order.push(family);
        }
    }

    /// Adds one value.
    pub(crate) fn observe(&mut self, raw: &RawValue) {
        match JsonKind::of(raw) {
            JsonKind::Null => self.nulls += 1,
            JsonKind::Bool => {
                self.count(Family::Bool);
                self.bools += 1;
            }
            JsonKind::Number(kind) => {
                self.count(Family::Number);
                match kind {
                    NumberKind::Int => self.ints += 1,
                    NumberKind::BigInt => self.big_ints += 1,
                    NumberKind::Float => self.floats += 1,
                }
            }
            JsonKind::String => {
                self.count(Family::String);
                self.strings += 1;
            }
            JsonKind::Object => self.observe_entries(&object(raw)),
            JsonKind::Array => {
                self.count(Family::Array);
                self.arrays += 1;
                let shape = self.items.get_or_insert_with(Box::default);
                for item in items(raw) {
                    shape.observe(item);
                }
            }
        }
    }

    fn total(&self, family: Family) -> usize {
        match family {
            Family::Bool => self.bools,
            Family::Number => self.ints + self.big_ints + self.floats,
            Family::String => self.strings,
            Family::Object => self.objects,
            Family::Array => self.arrays,
        }
    }

    /// The type these values get: see the module docs of `schemaless` for the rules.
    pub(crate) fn resolve(&self, widen: bool) -> DataType {
        let family = match self.order.as_slice() {
            [] => return DataType::Null,
            [one] => *one,
            _ if widen => return DataType::Utf8,
            several => {
                // The family most values have; the first seen among equals.
                let mut best = several[0];
                for family in &several[1..] {
                    if self.total(*family) > self.total(best) {
                        best = *family;
                    }
                }
                best
            }
        };
        match family {
            Family::Bool => DataType::Boolean,
            // Only text holds an integer beyond 64 bits exactly.
            Family::Number if self.big_ints > 0 && widen => DataType::Utf8,
            Family::Number if self.floats > 0 => DataType::Float64,
            Family::Number => DataType::Int64,
            Family::String => DataType::Utf8,
            Family::Object => DataType::Struct(self.resolve_fields(widen)),
            Family::Array => {
                let item = self
                    .items
                    .as_ref()
                    .map_or(DataType::Null, |s| s.resolve(widen));
                DataType::List(Arc::new(Field::new_list_field(item, true)))
            }
        }
    }

    /// The fields of an object shape.
    pub(crate) fn resolve_fields(&self, widen: bool) -> Fields {
        self.fields
            .iter()
            .map(|(name, shape)| Field::new(name, shape.resolve(widen), true))
            .collect()
    }

    /// The schema of the sampled records (the root shape).
    pub(crate) fn schema(&self, widen: bool) -> Schema {
        Schema::new(self.resolve_fields(widen))
    }
}

/// One difference between a record and the schema.
#[derive(Debug)]
enum Finding<'a> {
    /// A key the schema has no field for.
    Unknown { path: Path, value: &'a RawValue },
    /// A value whose kind the field does not take.
    Conflict {
        path: Path,
        field: DataType,
        kind: JsonKind,
        explicit: bool,
    },
    /// A field that was null in every sampled record got a value.
    Refine { path: Path, value: &'a RawValue },
    /// Widening: a text field took a number or boolean (the decoder keeps its text).
    AsText { path: Path, kind: JsonKind },
    /// Widening: a text field took an object or list (rewritten as its JSON text).
    Stringify { path: Path, kind: JsonKind },
}

/// What to do with one record that did not decode as it was.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Decode it as it is.
    Accept,
    /// Decode this instead (unknown keys moved to the overflow column, objects in text
    /// fields turned into their JSON text).
    Rewrite(Vec<u8>),
    /// The schema changed so the record fits; judge it again.
    Evolved,
    /// It cannot become a row, for this reason.
    Reject(String),
}

/// The drift state of one read of a JSON stream.
#[derive(Debug)]
pub(crate) struct JsonDrift {
    policy: DriftPolicy,
    base: SchemaRef,
    schema: SchemaRef,
    deltas: Deltas,
    /// Top-level fields whose types were given, so never widen.
    explicit: HashSet<String>,
    log: DriftLog,
    changed: bool,
}

impl JsonDrift {
    /// Starts from `base` (with the overflow column, if the policy has one); `explicit`
    /// says the base was given rather than inferred.
    pub(crate) fn new(policy: DriftPolicy, base: SchemaRef, explicit: bool) -> Self {
        let explicit = if explicit {
            base.fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| *n != policy.overflow_column)
                .collect()
        } else {
            HashSet::new()
        };
        JsonDrift {
            policy,
            schema: base.clone(),
            base,
            deltas: Deltas::default(),
            explicit,
            log: DriftLog::default(),
            changed: false,
        }
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub(crate) fn policy(&self) -> &DriftPolicy {
        &self.policy
    }

    /// Continues from a cursor's schema state.
    pub(crate) fn restore(&mut self, state: &serde_json::Value) {
        self.deltas = Deltas::from_json(state);
        self.schema = self.deltas.apply(&self.base);
    }

    /// Notes that the decoder kept numbers or booleans as text in `paths`.
    pub(crate) fn coerced(&mut self, paths: Vec<Path>) {
        for path in paths {
            self.log.note(
                path.to_string(),
                DriftKind::TypeConflict,
                DriftAction::SchemaChanged,
                || "a number or boolean in a text field, kept as its JSON text".into(),
            );
        }
    }

    /// The drift found and the schema change made since the last call.
    pub(crate) fn take_changes(&mut self) -> Changes {
        let schema =
            std::mem::take(&mut self.changed).then(|| (self.schema.clone(), self.deltas.to_json()));
        Changes {
            drift: self.log.take(),
            schema,
        }
    }

    /// Judges one record that the decoder refused (or that is checked on its own).
    pub(crate) fn judge(&mut self, record: &[u8]) -> Verdict {
        let entries = match parse_record(record) {
            Ok(entries) => entries,
            Err(reason) => return Verdict::Reject(reason),
        };
        let mut candidate = self.schema.clone();
        let mut evolved = Vec::new();
        // Evolving can reveal more (a list whose items differ): a few rounds settle it.
        for _ in 0..8 {
            let findings = self.walk(&entries, &candidate);
            let mut rejects = Vec::new();
            let mut changes: Vec<(Path, DataType, DriftKind, String)> = Vec::new();
            let mut unknown: Vec<(Path, Shape)> = Vec::new();
            let mut rewrite = false;
            let mut notes = Vec::new();
            for finding in findings {
                match finding {
                    Finding::Unknown { path, value } => match self.policy.new_fields {
                        NewFields::Evolve => {
                            let at = match unknown.iter().position(|(p, _)| *p == path) {
                                Some(at) => at,
                                None => {
                                    unknown.push((path, Shape::default()));
                                    unknown.len() - 1
                                }
                            };
                            unknown[at].1.observe(value);
                        }
                        NewFields::Overflow => {
                            rewrite = true;
                            let column = self.policy.overflow_column.clone();
                            notes.push((
                                path,
                                DriftKind::NewField,
                                DriftAction::Overflowed,
                                format!("unknown key, kept in `{column}`"),
                            ));
                        }
                        NewFields::DeadLetter => {
                            rejects.push(format!(
                                "unknown key `{path}` (the schema has no such field; \
                                 new_fields = \"dead_letter\")"
                            ));
                            notes.push((
                                path,
                                DriftKind::NewField,
                                DriftAction::DeadLettered,
                                "unknown key".into(),
                            ));
                        }
                    },
                    Finding::Conflict {
                        path,
                        field,
                        kind,
                        explicit,
                    } => match self.widened(&field, kind, explicit) {
                        Ok(to) => {
                            let detail = format!(
                                "{} widened to {} for {}",
                                type_name(&field),
                                type_name(&to),
                                kind.describe()
                            );
                            changes.push((path, to, DriftKind::TypeConflict, detail));
                        }
                        Err(why) => {
                            rejects.push(format!(
                                "`{path}` is {} but the value is {} ({why})",
                                type_name(&field),
                                kind.describe()
                            ));
                            notes.push((
                                path,
                                DriftKind::TypeConflict,
                                DriftAction::DeadLettered,
                                format!("{} got {}", type_name(&field), kind.describe()),
                            ));
                        }
                    },
                    Finding::Refine { path, value } => {
                        let mut shape = Shape::default();
                        shape.observe(value);
                        let to = shape.resolve(self.policy.widen());
                        let detail = format!("null in the sample, now {}", type_name(&to));
                        changes.push((path, to, DriftKind::TypeConflict, detail));
                    }
                    Finding::AsText { path, kind } => notes.push((
                        path,
                        DriftKind::TypeConflict,
                        DriftAction::SchemaChanged,
                        format!("{} in a text field, kept as its JSON text", kind.describe()),
                    )),
                    Finding::Stringify { path, kind } => {
                        rewrite = true;
                        notes.push((
                            path,
                            DriftKind::TypeConflict,
                            DriftAction::SchemaChanged,
                            format!("{} in a text field, kept as its JSON text", kind.describe()),
                        ));
                    }
                }
            }
            for (path, shape) in unknown {
                let to = shape.resolve(self.policy.widen());
                let detail = format!("new key of type {}", type_name(&to));
                changes.push((path, to, DriftKind::NewField, detail));
            }
            if !rejects.is_empty() {
                // A record that will not land changes nothing: only its refusal is noted.
                for (path, kind, action, detail) in notes {
                    if action == DriftAction::DeadLettered {
                        self.log.note(path.to_string(), kind, action, || detail);
                    }
                }
                return Verdict::Reject(rejects.join("; "));
            }
            if !changes.is_empty() {
                for (path, to, kind, detail) in changes {
                    let Some(next) = set_type(&candidate, &path, to.clone()) else {
                        return Verdict::Reject(format!("cannot add `{path}` to the schema"));
                    };
                    candidate = next;
                    evolved.push((path, to, kind, detail));
                }
                if field_count(&candidate) > MAX_FIELDS {
                    return Verdict::Reject(format!(
                        "the record would grow the schema past {MAX_FIELDS} fields; \
                         use new_fields = \"overflow\" for data keyed by ids"
                    ));
                }
                continue;
            }
            for (path, kind, action, detail) in notes {
                self.log.note(path.to_string(), kind, action, || detail);
            }
            if !evolved.is_empty() {
                for (path, to, kind, detail) in evolved {
                    self.log
                        .note(path.to_string(), kind, DriftAction::SchemaChanged, || {
                            detail
                        });
                    self.deltas.set(path, to);
                }
                self.schema = candidate;
                self.changed = true;
                return Verdict::Evolved;
            }
            if rewrite {
                return Verdict::Rewrite(self.rewrite(&entries));
            }
            return Verdict::Accept;
        }
        Verdict::Reject("the record's types did not settle into a schema".into())
    }

    /// The type `field` widens to for a value of `kind`, or why it does not.
    fn widened(
        &self,
        field: &DataType,
        kind: JsonKind,
        explicit: bool,
    ) -> Result<DataType, &'static str> {
        if !self.policy.widen() {
            return Err("type_conflicts = \"dead_letter\"");
        }
        if explicit {
            return Err("a column of the explicit schema keeps its type");
        }
        match (field, kind) {
            (f, JsonKind::Number(NumberKind::Float)) if f.is_integer() => Ok(DataType::Float64),
            (f, _) if f.is_integer() || f.is_floating() || *f == DataType::Boolean => {
                Ok(DataType::Utf8)
            }
            (DataType::Struct(_), _) => Err("an object field is not widened"),
            (DataType::List(_), _) => Err("a list field is not widened"),
            _ => Err("no widening rule covers it"),
        }
    }

    fn walk<'a>(&self, entries: &Entries<'a>, schema: &Schema) -> Vec<Finding<'a>> {
        let mut findings = Vec::new();
        for (key, value) in entries {
            let path = Path::default().child(key);
            match schema.fields().find(key) {
                Some((_, field)) => {
                    let explicit = self.explicit.contains(key);
                    self.check(field.data_type(), value, path, explicit, &mut findings);
                }
                None => findings.push(Finding::Unknown { path, value }),
            }
        }
        findings
    }

    fn check<'a>(
        &self,
        field: &DataType,
        value: &'a RawValue,
        path: Path,
        explicit: bool,
        findings: &mut Vec<Finding<'a>>,
    ) {
        let kind = JsonKind::of(value);
        if kind == JsonKind::Null {
            return;
        }
        let conflict = |findings: &mut Vec<Finding<'a>>, path: Path| {
            findings.push(Finding::Conflict {
                path,
                field: field.clone(),
                kind,
                explicit,
            })
        };
        match field {
            DataType::Null => findings.push(Finding::Refine { path, value }),
            DataType::Struct(fields) => {
                if kind != JsonKind::Object {
                    return conflict(findings, path);
                }
                for (key, child) in object(value) {
                    let child_path = path.child(&key);
                    match fields.find(&key) {
                        Some((_, f)) => {
                            self.check(f.data_type(), child, child_path, false, findings)
                        }
                        None => findings.push(Finding::Unknown {
                            path: child_path,
                            value: child,
                        }),
                    }
                }
            }
            DataType::List(item) => {
                if kind != JsonKind::Array {
                    return conflict(findings, path);
                }
                for element in items(value) {
                    self.check(item.data_type(), element, path.item(), false, findings);
                }
            }
            DataType::Boolean if kind != JsonKind::Bool => conflict(findings, path),
            f if f.is_integer() => {
                let fits = match kind {
                    JsonKind::Number(NumberKind::Int) => true,
                    JsonKind::String => serde_json::from_str::<String>(value.get())
                        .is_ok_and(|s| canonical_int(&s).is_some()),
                    _ => false,
                };
                if !fits {
                    conflict(findings, path);
                }
            }
            f if f.is_floating() => {
                let fits = match kind {
                    JsonKind::Number(n) => n != NumberKind::BigInt,
                    JsonKind::String => serde_json::from_str::<String>(value.get())
                        .is_ok_and(|s| canonical_number(&s).is_some()),
                    _ => false,
                };
                if !fits {
                    conflict(findings, path);
                }
            }
            DataType::Utf8 => match kind {
                JsonKind::String => {}
                _ if !self.policy.widen() => conflict(findings, path),
                JsonKind::Object | JsonKind::Array => {
                    findings.push(Finding::Stringify { path, kind })
                }
                _ => findings.push(Finding::AsText { path, kind }),
            },
            // Timestamps, dates and the other configured types: arrow-json decides.
            _ => {}
        }
    }

    /// The record with unknown keys moved to the overflow column (when the policy has one)
    /// and objects and lists in text fields turned into their JSON text.
    fn rewrite(&self, entries: &Entries<'_>) -> Vec<u8> {
        let overflow = self.policy.new_fields == NewFields::Overflow;
        let (mut known, unknown) = rewrite_object(entries, self.schema.fields(), overflow);
        if let Some(unknown) = unknown {
            known.pop();
            if known.len() > 1 {
                known.push(',');
            }
            let _ = write!(
                known,
                "{}:{}}}",
                json_string(&self.policy.overflow_column),
                json_string(&unknown)
            );
        }
        known.into_bytes()
    }
}

/// Rewrites an object: `(known part, unknown part if any)`, both JSON text.
fn rewrite_object(
    entries: &Entries<'_>,
    fields: &Fields,
    overflow: bool,
) -> (String, Option<String>) {
    let mut known = String::from("{");
    let mut unknown = String::from("{");
    for (key, value) in entries {
        let (kept, moved) = match fields.find(key) {
            None if overflow => (None, Some(value.get().to_string())),
            None => (Some(value.get().to_string()), None),
            Some((_, field)) => rewrite_value(field.data_type(), value, overflow),
        };
        if let Some(kept) = kept {
            if known.len() > 1 {
                known.push(',');
            }
            let _ = write!(known, "{}:{kept}", json_string(key));
        }
        if let Some(moved) = moved {
            if unknown.len() > 1 {
                unknown.push(',');
            }
            let _ = write!(unknown, "{}:{moved}", json_string(key));
        }
    }
    known.push('}');
    unknown.push('}');
    (known, (unknown.len() > 2).then_some(unknown))
}

fn rewrite_value(
    field: &DataType,
    value: &RawValue,
    overflow: bool,
) -> (Option<String>, Option<String>) {
    let kind = JsonKind::of(value);
    match (field, kind) {
        (DataType::Utf8, JsonKind::Object | JsonKind::Array) => {
            (Some(json_string(value.get())), None)
        }
        (DataType::Struct(fields), JsonKind::Object) => {
            let (known, unknown) = rewrite_object(&object(value), fields, overflow);
            (Some(known), unknown)
        }
        (DataType::List(item), JsonKind::Array) => {
            let mut known = Vec::new();
            let mut unknown = Vec::new();
            for element in items(value) {
                let (kept, moved) = rewrite_value(item.data_type(), element, overflow);
                known.push(kept.unwrap_or_else(|| "null".into()));
                unknown.push(moved);
            }
            let moved = unknown.iter().any(Option::is_some).then(|| {
                let parts: Vec<String> = unknown
                    .into_iter()
                    .map(|m| m.unwrap_or_else(|| "null".into()))
                    .collect();
                format!("[{}]", parts.join(","))
            });
            (Some(format!("[{}]", known.join(","))), moved)
        }
        _ => (Some(value.get().to_string()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::schemaless::TypeConflicts;

    fn infer(lines: &[&str], widen: bool) -> Schema {
        let mut shape = Shape::default();
        for line in lines {
            shape.observe_entries(&parse_record(line.as_bytes()).unwrap());
        }
        shape.schema(widen)
    }

    fn policy(new_fields: NewFields, type_conflicts: TypeConflicts) -> DriftPolicy {
        DriftPolicy {
            new_fields,
            type_conflicts,
            ..DriftPolicy::default()
        }
    }

    #[test]
    fn a_line_is_one_object() {
        assert!(parse_record(br#" {"a":1} "#).is_ok());
        let two = parse_record(br#"{"a":1}{"b":2}"#).unwrap_err();
        assert!(two.contains("more than one JSON value"), "{two}");
        let list = parse_record(b"[1,2]").unwrap_err();
        assert_eq!(list, "expected a JSON object, found a list");
        assert!(
            parse_record(b"{oops")
                .unwrap_err()
                .starts_with("invalid JSON")
        );
    }

    #[test]
    fn inference_widens_or_votes() {
        let lines = [
            r#"{"userId":"u1","n":1,"p":{"a":1}}"#,
            r#"{"userId":{"x":1},"n":1.5,"p":{"b":"x"}}"#,
            r#"{"userId":"u3","n":2,"p":null,"z":null}"#,
        ];
        let widened = infer(&lines, true);
        assert_eq!(
            widened.field_with_name("userId").unwrap().data_type(),
            &DataType::Utf8
        );
        assert_eq!(
            widened.field_with_name("n").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(
            widened.field_with_name("z").unwrap().data_type(),
            &DataType::Null
        );
        let DataType::Struct(p) = widened.field_with_name("p").unwrap().data_type() else {
            panic!()
        };
        assert_eq!(p.len(), 2);
        let voted = infer(&[lines[0], lines[1], lines[2], r#"{"userId":7}"#], false);
        assert_eq!(
            voted.field_with_name("userId").unwrap().data_type(),
            &DataType::Utf8
        );
    }

    #[test]
    fn new_keys_evolve_overflow_or_dead_letter() {
        let base = Arc::new(infer(&[r#"{"event":"a","properties":{"seats":1}}"#], true));
        let record = br#"{"event":"b","properties":{"seats":2,"plan":"premium"}}"#;

        let mut evolve = JsonDrift::new(DriftPolicy::default(), base.clone(), false);
        assert!(matches!(evolve.judge(record), Verdict::Evolved));
        assert!(matches!(evolve.judge(record), Verdict::Accept));
        let changes = evolve.take_changes();
        assert_eq!(changes.drift.len(), 1);
        assert_eq!(changes.drift[0].path, "properties.plan");
        let (schema, state) = changes.schema.unwrap();
        let mut resumed = JsonDrift::new(DriftPolicy::default(), base.clone(), false);
        resumed.restore(&state);
        assert_eq!(resumed.schema(), &schema);

        let overflow_policy = policy(NewFields::Overflow, TypeConflicts::Widen);
        let with_column = overflow_policy.with_overflow("t", base.clone()).unwrap();
        let mut overflow = JsonDrift::new(overflow_policy, with_column, false);
        let Verdict::Rewrite(bytes) = overflow.judge(record) else {
            panic!()
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["properties"], serde_json::json!({"seats": 2}));
        assert_eq!(value["_overflow"], r#"{"properties":{"plan":"premium"}}"#);

        let mut refuse = JsonDrift::new(
            policy(NewFields::DeadLetter, TypeConflicts::Widen),
            base,
            false,
        );
        let Verdict::Reject(reason) = refuse.judge(record) else {
            panic!()
        };
        assert!(reason.contains("properties.plan"), "{reason}");
    }

    #[test]
    fn conflicts_widen_by_the_rules_or_dead_letter() {
        let base = Arc::new(infer(&[r#"{"n":1,"s":"x","o":{"a":1},"b":true}"#], true));
        let mut widen = JsonDrift::new(DriftPolicy::default(), base.clone(), false);
        assert!(matches!(widen.judge(br#"{"n":10.75}"#), Verdict::Evolved));
        assert_eq!(
            widen.schema().field_with_name("n").unwrap().data_type(),
            &DataType::Float64
        );
        assert!(matches!(widen.judge(br#"{"n":"many"}"#), Verdict::Evolved));
        assert_eq!(
            widen.schema().field_with_name("n").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(matches!(widen.judge(br#"{"s":5}"#), Verdict::Accept));
        let Verdict::Rewrite(text) = widen.judge(br#"{"s":{"k":[1, 2]}}"#) else {
            panic!()
        };
        assert_eq!(text, br#"{"s":"{\"k\":[1, 2]}"}"#);
        assert!(matches!(
            widen.judge(br#"{"o":"flat"}"#),
            Verdict::Reject(_)
        ));
        assert!(matches!(
            widen.judge(br#"{"b":12345678901234567890}"#),
            Verdict::Evolved
        ));

        let mut strict = JsonDrift::new(
            policy(NewFields::Evolve, TypeConflicts::DeadLetter),
            base,
            false,
        );
        let Verdict::Reject(reason) = strict.judge(br#"{"n":10.75}"#) else {
            panic!()
        };
        assert_eq!(
            reason,
            "`n` is Int64 but the value is a fractional number (type_conflicts = \"dead_letter\")"
        );
        // A record that is refused does not evolve the schema.
        assert!(matches!(
            strict.judge(br#"{"new":1,"n":"x"}"#),
            Verdict::Reject(_)
        ));
        assert_eq!(strict.schema().fields().len(), 4);
    }
}
