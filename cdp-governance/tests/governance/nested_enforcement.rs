//! The no-leak property on nested data: random schemas of structs in lists in structs, maps
//! and JSON text columns, random classifications (metadata, name and path rules) and random
//! policies, through real pipelines to memory destinations. Either the run is refused
//! before any destination receives a row, or no raw value a destination may not receive in
//! the clear appears anywhere in what it received — searched by value in every child array
//! at every depth (values under null parents included) and inside JSON text. And what may
//! arrive in the clear does arrive: the rest of each struct survives its masked fields.
//!
//! The classes and treatments are worked out here, from the policy as written, by rules
//! simple enough to check by eye; the library is not asked.

use std::collections::BTreeMap;
use std::sync::Arc;

use cdp_core::Pipeline;
use cdp_core::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListArray, MapArray, StringArray, StructArray,
};
use cdp_core::arrow::buffer::{NullBuffer, OffsetBuffer};
use cdp_core::arrow::compute::cast;
use cdp_core::arrow::datatypes::{DataType, Field, Fields, Schema};
use cdp_core::memory::{MemoryDestination, MemoryHandle, MemorySource};
use cdp_governance::{
    ClassRule, DataClass, DestinationPolicy, JSON_EXTENSION, Keys, Method, PolicyConfig, with_class,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{HASH_KEY, TOKEN_KEY, batch, runtime};

const NAMES: [&str; 12] = [
    "email", "phone", "ip", "name", "id", "plan", "traits", "context", "contacts", "device",
    "extra", "tags",
];

#[derive(Debug, Clone, Copy)]
enum LeafKind {
    Text,
    Int,
    Json,
}

#[derive(Debug, Clone)]
enum Shape {
    Leaf(LeafKind, Option<DataClass>),
    Struct(Vec<(String, Shape)>, Option<DataClass>),
    List(Box<Shape>),
    Map(Box<Shape>),
}

fn class() -> impl Strategy<Value = DataClass> {
    prop::sample::select(DataClass::ALL.to_vec())
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES.to_vec()).prop_map(str::to_string)
}

fn unique(fields: Vec<(String, Shape)>) -> Vec<(String, Shape)> {
    let mut seen = std::collections::HashSet::new();
    fields
        .into_iter()
        .filter(|(name, _)| seen.insert(name.clone()))
        .collect()
}

fn shape() -> impl Strategy<Value = Shape> {
    let leaf = (
        prop_oneof![4 => Just(LeafKind::Text), 1 => Just(LeafKind::Int), 1 => Just(LeafKind::Json)],
        prop::option::weighted(0.15, class()),
    )
        .prop_map(|(kind, meta)| Shape::Leaf(kind, meta));
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            3 => (
                prop::collection::vec((name(), inner.clone()), 1..4),
                prop::option::weighted(0.1, class()),
            )
                .prop_map(|(fields, meta)| Shape::Struct(unique(fields), meta)),
            2 => inner.clone().prop_map(|s| Shape::List(Box::new(s))),
            1 => inner.prop_map(|s| Shape::Map(Box::new(s))),
        ]
    })
}

#[derive(Debug, Clone)]
enum PatternSpec {
    Name(String),
    Contains(String),
    Path(String, String),
    Under(String),
    AnyDepth(String),
}

impl PatternSpec {
    fn text(&self) -> String {
        match self {
            PatternSpec::Name(n) => n.clone(),
            PatternSpec::Contains(s) => format!("*{s}*"),
            PatternSpec::Path(a, b) => format!("{a}.{b}"),
            PatternSpec::Under(a) => format!("{a}.**"),
            PatternSpec::AnyDepth(b) => format!("**.{b}"),
        }
    }

    /// Whether the node with these segments (field names, list markers left out) matches.
    fn matches(&self, segments: &[String]) -> bool {
        let last = segments.last().map(String::as_str).unwrap_or("");
        match self {
            PatternSpec::Name(n) => last == n,
            PatternSpec::Contains(s) => last.contains(s.as_str()),
            PatternSpec::Path(a, b) => segments == [a.clone(), b.clone()],
            PatternSpec::Under(a) => segments.first() == Some(a),
            PatternSpec::AnyDepth(b) => last == b,
        }
    }
}

fn pattern() -> impl Strategy<Value = PatternSpec> {
    prop_oneof![
        name().prop_map(PatternSpec::Name),
        prop::sample::select(vec!["mail", "hone", "i", "e", "ta"])
            .prop_map(|s| PatternSpec::Contains(s.to_string())),
        (name(), name()).prop_map(|(a, b)| PatternSpec::Path(a, b)),
        name().prop_map(PatternSpec::Under),
        name().prop_map(PatternSpec::AnyDepth),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Drop),
        Just(Method::Null),
        Just(Method::Redact),
        (0usize..6).prop_map(|keep_last| Method::Partial { keep_last }),
        Just(Method::Hash),
        Just(Method::Tokenize),
    ]
}

#[derive(Debug, Clone)]
struct DestSpec {
    policy: DestinationPolicy,
    governed: bool,
}

fn destination() -> impl Strategy<Value = DestSpec> {
    (
        class(),
        prop::collection::btree_map(class(), method(), 0..3),
        prop::collection::btree_map(name(), method(), 0..2),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(max_class, require, fields, governed)| DestSpec {
            policy: DestinationPolicy {
                max_class,
                purposes: vec![],
                require,
                fields,
            },
            governed,
        })
}

#[derive(Debug, Clone)]
struct Case {
    columns: Vec<(String, Shape)>,
    rules: Vec<(PatternSpec, DataClass)>,
    default: DataClass,
    dests: Vec<DestSpec>,
    rows: usize,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((name(), shape()), 1..5),
        prop::collection::vec((pattern(), class()), 0..5),
        class(),
        prop::collection::vec(destination(), 1..4),
        1usize..6,
        any::<u64>(),
    )
        .prop_map(|(columns, rules, default, dests, rows, seed)| Case {
            columns: unique(columns),
            rules,
            default,
            dests,
            rows,
            seed,
        })
}

/// One leaf as the generator built it.
#[derive(Debug, Clone)]
struct LeafInfo {
    path: String,
    segments: Vec<String>,
    meta: Option<DataClass>,
    /// The containers above, outermost first: segments and metadata.
    ancestors: Vec<(Vec<String>, Option<DataClass>)>,
    opaque: bool,
    /// The paths of the maps above it.
    maps_above: Vec<String>,
    /// Every value generated for it (JSON text: the secret inside).
    raws: Vec<String>,
}

struct Generator {
    rng: ChaCha8Rng,
    next: u64,
    leaves: Vec<LeafInfo>,
}

/// Where a node sits, for the leaves below it.
#[derive(Clone, Default)]
struct Place {
    path: String,
    segments: Vec<String>,
    ancestors: Vec<(Vec<String>, Option<DataClass>)>,
    maps_above: Vec<String>,
}

impl Generator {
    fn token(&mut self, prefix: char) -> String {
        self.next += 1;
        // `~` is in no hex, base64 or redaction output: a token is found only where it
        // was written.
        format!("{prefix}~{:x}~q", self.next)
    }

    fn nulls(&mut self, n: usize) -> Option<NullBuffer> {
        let valid: Vec<bool> = (0..n).map(|_| self.rng.random_bool(0.85)).collect();
        valid.iter().any(|v| !v).then(|| NullBuffer::from(valid))
    }

    fn leaf(
        &mut self,
        place: &Place,
        kind: LeafKind,
        meta: Option<DataClass>,
        opaque: bool,
        n: usize,
        nullable: bool,
    ) -> (DataType, ArrayRef, Option<DataClass>) {
        let mut raws = Vec::new();
        let valid: Vec<bool> = (0..n)
            .map(|_| !nullable || self.rng.random_bool(0.9))
            .collect();
        let (data_type, array): (DataType, ArrayRef) = match kind {
            LeafKind::Text => {
                let values: Vec<Option<String>> =
                    valid.iter().map(|v| v.then(|| self.token('t'))).collect();
                raws.extend(values.iter().flatten().cloned());
                (DataType::Utf8, Arc::new(StringArray::from(values)))
            }
            LeafKind::Int => {
                let values: Vec<Option<i64>> = valid
                    .iter()
                    .map(|v| {
                        v.then(|| {
                            self.next += 1;
                            4_000_000_000_000_000 + (self.next as i64) * 7_919
                        })
                    })
                    .collect();
                raws.extend(values.iter().flatten().map(ToString::to_string));
                (DataType::Int64, Arc::new(Int64Array::from(values)))
            }
            LeafKind::Json => {
                let values: Vec<Option<String>> = valid
                    .iter()
                    .map(|v| {
                        v.then(|| {
                            let secret = self.token('j');
                            raws.push(secret.clone());
                            format!(r#"{{"secret":"{secret}","n":1}}"#)
                        })
                    })
                    .collect();
                (DataType::Utf8, Arc::new(StringArray::from(values)))
            }
        };
        self.leaves.push(LeafInfo {
            path: place.path.clone(),
            segments: place.segments.clone(),
            meta,
            ancestors: place.ancestors.clone(),
            opaque: opaque || matches!(kind, LeafKind::Json),
            maps_above: place.maps_above.clone(),
            raws,
        });
        (data_type, array, meta)
    }

    /// The field named `name` of `shape` at `place`, with `n` values.
    fn build(
        &mut self,
        name: &str,
        shape: &Shape,
        place: &Place,
        n: usize,
        opaque: bool,
        nullable: bool,
    ) -> (Field, ArrayRef) {
        match shape {
            Shape::Leaf(kind, meta) => {
                let (data_type, array, meta) = self.leaf(place, *kind, *meta, opaque, n, nullable);
                let mut field = Field::new(name, data_type, nullable);
                if matches!(kind, LeafKind::Json) {
                    field = field.with_metadata(std::collections::HashMap::from([(
                        "ARROW:extension:name".to_string(),
                        JSON_EXTENSION.to_string(),
                    )]));
                }
                if let Some(meta) = meta {
                    field = with_class(field, meta);
                }
                (field, array)
            }
            Shape::Struct(children, meta) => {
                let mut inner = place.clone();
                inner.ancestors.push((place.segments.clone(), *meta));
                let mut fields = Vec::new();
                let mut arrays = Vec::new();
                for (child, shape) in children {
                    let mut at = inner.clone();
                    at.path = format!("{}.{child}", place.path);
                    at.segments.push(child.clone());
                    let (f, a) = self.build(child, shape, &at, n, opaque, true);
                    fields.push(f);
                    arrays.push(a);
                }
                let nulls = if nullable { self.nulls(n) } else { None };
                let array =
                    StructArray::try_new(Fields::from(fields.clone()), arrays, nulls).unwrap();
                let mut field = Field::new(name, array.data_type().clone(), nullable);
                if let Some(meta) = meta {
                    field = with_class(field, *meta);
                }
                (field, Arc::new(array))
            }
            Shape::List(item) => {
                let lengths: Vec<usize> = (0..n).map(|_| self.rng.random_range(0..3)).collect();
                let total = lengths.iter().sum();
                let mut inner = place.clone();
                inner.ancestors.push((place.segments.clone(), None));
                inner.path = format!("{}[]", place.path);
                let (item_field, values) = self.build("item", item, &inner, total, opaque, true);
                let item_field = Arc::new(item_field);
                let nulls = self.nulls(n);
                let array = ListArray::try_new(
                    item_field.clone(),
                    OffsetBuffer::from_lengths(lengths),
                    values,
                    nulls,
                )
                .unwrap();
                (
                    Field::new(name, DataType::List(item_field), nullable),
                    Arc::new(array),
                )
            }
            Shape::Map(value) => {
                let lengths: Vec<usize> = (0..n).map(|_| self.rng.random_range(0..3)).collect();
                let total = lengths.iter().sum();
                let mut entries = place.clone();
                entries.ancestors.push((place.segments.clone(), None));
                entries.ancestors.push((place.segments.clone(), None));
                entries.maps_above.push(place.path.clone());
                let mut keys_at = entries.clone();
                keys_at.path = format!("{}[].keys", place.path);
                keys_at.segments.push("keys".into());
                let (keys_field, keys) = self.build(
                    "keys",
                    &Shape::Leaf(LeafKind::Text, None),
                    &keys_at,
                    total,
                    true,
                    false,
                );
                let mut values_at = entries.clone();
                values_at.path = format!("{}[].values", place.path);
                values_at.segments.push("values".into());
                let scalar = matches!(**value, Shape::Leaf(..));
                let (values_field, values) =
                    self.build("values", value, &values_at, total, opaque || scalar, true);
                let entries_fields = Fields::from(vec![keys_field, values_field]);
                let entries_array =
                    StructArray::try_new(entries_fields.clone(), vec![keys, values], None).unwrap();
                let entries_field = Arc::new(Field::new(
                    "entries",
                    DataType::Struct(entries_fields),
                    false,
                ));
                let nulls = self.nulls(n);
                let array = MapArray::try_new(
                    entries_field.clone(),
                    OffsetBuffer::from_lengths(lengths),
                    entries_array,
                    nulls,
                    false,
                )
                .unwrap();
                (
                    Field::new(name, DataType::Map(entries_field, false), nullable),
                    Arc::new(array),
                )
            }
        }
    }
}

/// The class of a leaf by the policy as written: its own metadata or first matching rule,
/// raised by any classified container above it; opaque content at least `restricted`
/// unless its own metadata says otherwise; else the default.
fn class_of(leaf: &LeafInfo, rules: &[(PatternSpec, DataClass)], default: DataClass) -> DataClass {
    let explicit = |segments: &[String], meta: Option<DataClass>| {
        meta.or_else(|| {
            rules
                .iter()
                .find(|(p, _)| p.matches(segments))
                .map(|(_, c)| *c)
        })
    };
    let own = explicit(&leaf.segments, leaf.meta);
    let inherited = leaf
        .ancestors
        .iter()
        .filter_map(|(segments, meta)| explicit(segments, *meta))
        .max();
    let mut class = own.into_iter().chain(inherited).max();
    if leaf.opaque && leaf.meta.is_none() {
        class = Some(class.map_or(DataClass::Restricted, |c| c.max(DataClass::Restricted)));
    }
    class.unwrap_or(default)
}

/// Whether `leaf` may reach a destination under `policy` in the clear.
fn clear(leaf: &LeafInfo, class: DataClass, policy: &DestinationPolicy) -> bool {
    let named = leaf
        .ancestors
        .iter()
        .map(|(s, _)| s.as_slice())
        .chain([leaf.segments.as_slice()])
        .any(|segments| {
            segments
                .last()
                .is_some_and(|last| policy.fields.keys().any(|k| k == last))
        });
    !named && !policy.require.contains_key(&class) && class <= policy.max_class
}

/// Every value of every leaf array received, at every depth, as text.
fn received_text(handle: &MemoryHandle) -> String {
    fn walk(array: &ArrayRef, out: &mut String) {
        match array.data_type() {
            DataType::Struct(_) => {
                for child in array.as_struct().columns() {
                    walk(child, out);
                }
            }
            DataType::List(_) => walk(array.as_list::<i32>().values(), out),
            DataType::LargeList(_) => walk(array.as_list::<i64>().values(), out),
            DataType::Map(..) => {
                let entries: ArrayRef = Arc::new(array.as_map().entries().clone());
                walk(&entries, out);
            }
            _ => {
                let text = cast(array, &DataType::Utf8).unwrap();
                for value in text.as_string::<i32>().iter().flatten() {
                    out.push_str(value);
                    out.push('\n');
                }
            }
        }
    }
    let mut out = String::new();
    for b in handle.batches() {
        for column in b.data.columns() {
            walk(column, &mut out);
        }
    }
    out
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let mut generator = Generator {
        rng: ChaCha8Rng::seed_from_u64(case.seed),
        next: 0,
        leaves: Vec::new(),
    };
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (name, shape) in &case.columns {
        let place = Place {
            path: name.clone(),
            segments: vec![name.clone()],
            ..Place::default()
        };
        let (f, a) = generator.build(name, shape, &place, case.rows, false, true);
        fields.push(f);
        columns.push(a);
    }
    let schema = Arc::new(Schema::new(fields));
    let data = batch(&schema, columns);
    let config = PolicyConfig {
        default_class: case.default,
        opaque_class: None,
        classify: case
            .rules
            .iter()
            .map(|(p, class)| ClassRule {
                pattern: p.text(),
                class: *class,
            })
            .collect(),
        tracking_plan: BTreeMap::new(),
        destinations: case
            .dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.governed)
            .map(|(i, d)| (format!("d{i}"), d.policy.clone()))
            .collect(),
        default_destination: None,
        retention: Default::default(),
    };
    let policy = config.build().unwrap().with_keys(
        Keys::new()
            .with_hash_key(HASH_KEY)
            .unwrap()
            .with_token_key(&TOKEN_KEY)
            .unwrap(),
    );

    let mut builder = Pipeline::builder("nested-prop")
        .source(MemorySource::new("events", vec![data]))
        .check(policy.enforcer());
    let mut handles = Vec::new();
    let mut planned = true;
    for (i, d) in case.dests.iter().enumerate() {
        let destination = MemoryDestination::new(format!("d{i}"));
        handles.push(destination.handle());
        builder = if d.governed {
            match policy.transforms_for(&format!("d{i}"), &schema) {
                Ok(t) => builder.destination_with(destination, t),
                Err(_) => {
                    // A method that does not fit a field (a hash on a whole struct named in
                    // `fields`): refused before anything runs.
                    planned = false;
                    builder.destination(destination)
                }
            }
        } else {
            builder.destination(destination)
        };
    }
    if !planned {
        return Ok(());
    }
    let result = runtime().block_on(builder.build().unwrap().run());
    if result.is_err() {
        for h in &handles {
            prop_assert_eq!(h.row_count(), 0, "refused, yet a destination received rows");
        }
        prop_assert!(
            case.dests.iter().any(|d| !d.governed),
            "refused: {:?}",
            result
        );
        return Ok(());
    }
    for (i, d) in case.dests.iter().enumerate() {
        let text = received_text(&handles[i]);
        prop_assert_eq!(
            handles[i].row_count(),
            case.rows,
            "rows are never lost to masking"
        );
        for leaf in &generator.leaves {
            let class = class_of(leaf, &case.rules, case.default);
            let in_clear = clear(leaf, class, &d.policy);
            for raw in &leaf.raws {
                let found = text.contains(raw.as_str());
                if !in_clear {
                    prop_assert!(
                        !found,
                        "d{} received `{}` of `{}` ({}) in the clear",
                        i,
                        raw,
                        leaf.path,
                        class
                    );
                } else if leaf.maps_above.iter().all(|map| {
                    // A map goes whole when its keys or all its values may not arrive: only
                    // maps whose every leaf is clear must arrive.
                    let inside = format!("{map}[].");
                    generator
                        .leaves
                        .iter()
                        .filter(|l| l.path.starts_with(&inside))
                        .all(|l| clear(l, class_of(l, &case.rules, case.default), &d.policy))
                }) {
                    prop_assert!(
                        found,
                        "d{} lost `{}` of `{}` ({})",
                        i,
                        raw,
                        leaf.path,
                        class
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn no_nested_value_reaches_a_destination_in_a_form_its_class_forbids(case in case()) {
        check(&case)?;
    }
}

#[test]
fn the_readme_policy_example_parses_and_reaches_nested_fields() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Governance on nested data")
        .nth(1)
        .expect("README has the section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    let policy = PolicyConfig::from_toml(block)
        .unwrap()
        .build()
        .unwrap()
        .with_keys(Keys::new().with_hash_key(HASH_KEY).unwrap());
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, true);
    let schema = Schema::new(vec![
        Field::new_struct("traits", vec![utf8("email"), utf8("plan")], true),
        Field::new_struct(
            "context",
            vec![
                utf8("ip"),
                Field::new_struct("device", vec![utf8("id")], true),
            ],
            true,
        ),
    ]);
    let decisions = policy.decide(None, "activation", &schema).unwrap();
    let printed: Vec<String> = decisions.iter().map(ToString::to_string).collect();
    assert_eq!(
        printed,
        [
            "* -> activation: `traits.email` is sensitive (rule #1 `*email*`) -> masked: hash \
             [destinations.activation.require.sensitive]",
            "* -> activation: `traits.plan` is internal (default_class) -> in the clear \
             [destinations.activation.max_class = internal]",
            "* -> activation: `context.ip` is restricted (rule #2 `context.**`) -> dropped \
             [destinations.activation.require.restricted]",
            "* -> activation: `context.device.id` is restricted (rule #2 `context.**`) -> \
             masked: hash [destinations.activation.fields.context.device.id]",
        ]
    );
    let masked = policy
        .masking_for("activation", &schema)
        .unwrap()
        .masked_schema(&schema)
        .unwrap();
    let context = masked.field_with_name("context").unwrap();
    let DataType::Struct(inside) = context.data_type() else {
        panic!("context is a struct");
    };
    let names: Vec<&str> = inside.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["device"], "context.ip dropped from the struct");
}
