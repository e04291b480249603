//! Must-show 1: for random schemas, classifications and policies, no value of a field ever
//! reaches a destination its class forbids, in the form the policy forbids. Real pipelines,
//! real memory destinations; either the run is refused before data moves, or what each
//! destination received is checked field by field against an independent reading of the
//! policy. Plus the run-time (schema change) refusal and printable decisions.

use std::collections::BTreeMap;
use std::sync::Arc;

use cdp_core::Pipeline;
use cdp_core::Transform;
use cdp_core::arrow::array::{Array, ArrayRef, AsArray, Date32Array, Int64Array, StringArray};
use cdp_core::arrow::compute::cast;
use cdp_core::arrow::datatypes::{DataType, Date32Type, Field, Schema};
use cdp_core::memory::{MemoryDestination, MemoryHandle, MemorySource};
use cdp_governance::class::Glob;
use cdp_governance::{
    ClassRule, DataClass, DestinationPolicy, Keys, Masking, Method, PolicyConfig, Tokenizer,
    decisions_for_file, with_class,
};
use chrono::{Datelike, NaiveDate};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use crate::common::{HASH_KEY, TOKEN_KEY, batch, received, runtime};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Int,
    Date,
}

#[derive(Debug, Clone)]
struct FieldSpec {
    name: String,
    kind: Kind,
    metadata: Option<DataClass>,
}

#[derive(Debug, Clone)]
struct DestSpec {
    policy: DestinationPolicy,
    governed: bool,
}

#[derive(Debug, Clone)]
struct Case {
    fields: Vec<FieldSpec>,
    rules: Vec<ClassRule>,
    default: DataClass,
    dests: Vec<DestSpec>,
    rows: usize,
    seed: u64,
}

fn class() -> impl Strategy<Value = DataClass> {
    prop::sample::select(DataClass::ALL.to_vec())
}

/// Methods every field type takes.
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

/// Methods for one field by name: generalisations only where the type fits.
fn field_method(name: &'static str) -> BoxedStrategy<(String, Method)> {
    let specific = match name {
        "birth" => Just(Method::Year).boxed(),
        "ip" => (0u8..=32, 0u8..=128)
            .prop_map(|(v4, v6)| Method::IpPrefix { v4, v6 })
            .boxed(),
        _ => method().boxed(),
    };
    prop_oneof![method(), specific]
        .prop_map(move |m| (name.to_string(), m))
        .boxed()
}

fn kind_of(name: &str) -> BoxedStrategy<Kind> {
    match name {
        "birth" => Just(Kind::Date).boxed(),
        "ip" => Just(Kind::Text).boxed(),
        "age" => Just(Kind::Int).boxed(),
        _ => prop::sample::select(vec![Kind::Text, Kind::Int, Kind::Date]).boxed(),
    }
}

const NAMES: [&str; 9] = [
    "email", "email_2", "ssn", "phone", "age", "city", "birth", "ip", "note",
];

fn case() -> impl Strategy<Value = Case> {
    let fields = prop::sample::subsequence(NAMES.to_vec(), 1..=6).prop_flat_map(|names| {
        let n = names.len();
        let kinds: Vec<_> = names.iter().map(|n| kind_of(n)).collect();
        (
            Just(names),
            kinds,
            prop::collection::vec(prop::option::weighted(0.3, class()), n),
        )
            .prop_map(|(names, kinds, metadata)| {
                names
                    .into_iter()
                    .zip(kinds)
                    .zip(metadata)
                    .map(|((name, kind), metadata)| FieldSpec {
                        name: name.to_string(),
                        kind,
                        metadata,
                    })
                    .collect::<Vec<_>>()
            })
    });
    let rules = prop::collection::vec(
        (
            prop::sample::select(vec!["email*", "ssn", "*phone*", "*a*", "b*", "ip"]),
            class(),
        ),
        0..4,
    )
    .prop_map(|rules| {
        rules
            .into_iter()
            .map(|(pattern, class)| ClassRule {
                pattern: pattern.to_string(),
                class,
            })
            .collect::<Vec<_>>()
    });
    let dest = (
        class(),
        prop::collection::btree_map(class(), method(), 0..3),
        prop::collection::vec(
            prop::sample::select(NAMES.to_vec()).prop_flat_map(field_method),
            0..3,
        ),
        prop::bool::weighted(0.75),
    )
        .prop_map(|(max_class, require, fields, governed)| DestSpec {
            policy: DestinationPolicy {
                max_class,
                purposes: vec![],
                require,
                fields: fields.into_iter().collect(),
            },
            governed,
        });
    (
        fields,
        rules,
        class(),
        prop::collection::vec(dest, 1..=3),
        1usize..20,
        any::<u64>(),
    )
        .prop_map(|(fields, rules, default, dests, rows, seed)| Case {
            fields,
            rules,
            default,
            dests,
            rows,
            seed,
        })
}

fn column(index: usize, spec: &FieldSpec, rows: usize, seed: u64) -> ArrayRef {
    let present = |row: usize| (row + index) % 5 != 3;
    match spec.kind {
        Kind::Text if spec.name == "ip" => {
            Arc::new(StringArray::from_iter((0..rows).map(|r| {
                present(r).then(|| format!("10.{}.{}.{}", seed % 251, index, r))
            })))
        }
        Kind::Text => {
            Arc::new(StringArray::from_iter((0..rows).map(|r| {
                present(r).then(|| format!("{}-{r}-{seed:x}-secret", spec.name))
            })))
        }
        Kind::Int => Arc::new(Int64Array::from_iter((0..rows).map(|r| {
            present(r).then_some(((index as i64) << 48) | ((seed as i64 & 0xffff) << 24) | r as i64)
        }))),
        Kind::Date => {
            Arc::new(Date32Array::from_iter((0..rows).map(|r| {
                present(r).then_some(10_000 + (seed % 5_000) as i32 + 37 * r as i32)
            })))
        }
    }
}

fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Text => DataType::Utf8,
        Kind::Int => DataType::Int64,
        Kind::Date => DataType::Date32,
    }
}

/// What the policy says, read independently of the crate's own decision code.
#[derive(Debug, PartialEq)]
enum Expect {
    Clear,
    Absent,
    Masked(Method),
}

fn expected(case: &Case, dest: &DestinationPolicy, field: &FieldSpec) -> Expect {
    let class = field
        .metadata
        .or_else(|| {
            case.rules
                .iter()
                .find(|r| Glob::new(&r.pattern).matches(&field.name))
                .map(|r| r.class)
        })
        .unwrap_or(case.default);
    let method = dest
        .fields
        .get(&field.name)
        .or_else(|| dest.require.get(&class));
    match method {
        Some(Method::Drop) => Expect::Absent,
        Some(m) => Expect::Masked(m.clone()),
        None if class <= dest.max_class => Expect::Clear,
        None => Expect::Absent,
    }
}

fn text(array: &ArrayRef) -> StringArray {
    cast(array, &DataType::Utf8)
        .unwrap()
        .as_string::<i32>()
        .clone()
}

fn hmac_hex(value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HASH_KEY).unwrap();
    mac.update(value.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `got` is `source` in exactly the form `method` produces, row by row.
fn check_masked(
    name: &str,
    method: &Method,
    source: &ArrayRef,
    got: &ArrayRef,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(source.len(), got.len(), "{}: row count", name);
    let src = text(source);
    for row in 0..source.len() {
        if source.is_null(row) {
            prop_assert!(got.is_null(row), "{name}: null must stay null");
            continue;
        }
        let raw = src.value(row);
        let out = || got.as_string::<i32>().value(row).to_string();
        match method {
            Method::Null => prop_assert!(got.is_null(row), "{name}: must be null"),
            Method::Redact => prop_assert_eq!(out(), "[redacted]"),
            Method::Partial { keep_last } => {
                let chars: Vec<char> = raw.chars().collect();
                let masked =
                    chars
                        .len()
                        .saturating_sub(*keep_last)
                        .max(if chars.len() <= *keep_last {
                            chars.len()
                        } else {
                            0
                        });
                let expected: String = std::iter::repeat_n('*', masked)
                    .chain(chars[masked..].iter().copied())
                    .collect();
                prop_assert_eq!(out(), expected, "{}: partial", name);
            }
            Method::Hash => prop_assert_eq!(out(), hmac_hex(raw), "{}: hmac", name),
            Method::Tokenize => {
                let tokenizer = Tokenizer::new(&TOKEN_KEY).unwrap();
                prop_assert_ne!(out(), raw);
                prop_assert_eq!(
                    tokenizer.detokenize(&out()).unwrap(),
                    raw,
                    "{}: token",
                    name
                );
            }
            Method::Year => {
                let days = source.as_primitive::<Date32Type>().value(row);
                let date = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(0);
                let date = date
                    .checked_add_signed(chrono::Duration::days(days.into()))
                    .unwrap();
                let jan1 = NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap();
                let want = (jan1 - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
                prop_assert_eq!(
                    got.as_primitive::<Date32Type>().value(row),
                    want,
                    "{}: year",
                    name
                );
            }
            Method::IpPrefix { v4, .. } => {
                // Test data holds IPv4 addresses in `ip` only; anything else must be nulled.
                match raw.parse::<std::net::Ipv4Addr>() {
                    Ok(ip) => {
                        let mask = u32::MAX.checked_shl(32 - u32::from(*v4)).unwrap_or(0);
                        let net = std::net::Ipv4Addr::from(u32::from(ip) & mask);
                        prop_assert_eq!(out(), format!("{net}/{v4}"), "{}: network", name);
                    }
                    Err(_) => prop_assert!(got.is_null(row), "{name}: non-address must be null"),
                }
            }
            Method::Drop => unreachable!("drop is checked as absence"),
        }
    }
    Ok(())
}

/// No cell of any text column of the destination equals a protected raw text value.
fn check_no_raw_text(
    handle: &MemoryHandle,
    raw: &StringArray,
    name: &str,
) -> Result<(), TestCaseError> {
    let protected: std::collections::HashSet<&str> = raw.iter().flatten().collect();
    for b in handle.batches() {
        for (field, col) in b.data.schema().fields().iter().zip(b.data.columns()) {
            if let Some(strings) = col.as_string_opt::<i32>() {
                for v in strings.iter().flatten() {
                    prop_assert!(
                        !protected.contains(v),
                        "raw value of `{name}` found in column `{}`",
                        field.name()
                    );
                }
            }
        }
    }
    Ok(())
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let fields: Vec<Field> = case
        .fields
        .iter()
        .map(|f| {
            let field = Field::new(&f.name, data_type(f.kind), true);
            match f.metadata {
                Some(c) => with_class(field, c),
                None => field,
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = case
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| column(i, f, case.rows, case.seed))
        .collect();
    let data = batch(&schema, columns.clone());
    let config = PolicyConfig {
        default_class: case.default,
        opaque_class: None,
        classify: case.rules.clone(),
        tracking_plan: BTreeMap::new(),
        destinations: case
            .dests
            .iter()
            .enumerate()
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

    let mut builder = Pipeline::builder("prop")
        .source(MemorySource::new("events", vec![data]))
        .check(policy.enforcer());
    let mut handles = Vec::new();
    for (i, d) in case.dests.iter().enumerate() {
        let name = format!("d{i}");
        let destination = MemoryDestination::new(&name);
        handles.push(destination.handle());
        builder = if d.governed {
            match policy.transforms_for(&name, &schema) {
                Ok(transforms) => builder.destination_with(destination, transforms),
                // The policy asks for a method the field's type cannot take: refused at
                // build time, nothing runs.
                Err(_) => return Ok(()),
            }
        } else {
            builder.destination(destination)
        };
    }
    let outcome = runtime().block_on(builder.build().unwrap().run());

    match outcome {
        Err(error) => {
            let refused = matches!(&error, cdp_core::Error::Pipeline { source, .. }
                if matches!(**source, cdp_core::Error::Policy { .. }));
            prop_assert!(refused, "only a policy refusal may stop the run: {error}");
            prop_assert!(
                case.dests.iter().any(|d| !d.governed),
                "destinations governed by transforms_for must never be refused: {error}"
            );
            for handle in &handles {
                prop_assert_eq!(handle.row_count(), 0, "refused, yet data moved");
            }
        }
        Ok(_) => {
            for (d, handle) in case.dests.iter().zip(&handles) {
                prop_assert_eq!(handle.row_count(), case.rows);
                for (spec, source) in case.fields.iter().zip(&columns) {
                    let got = received(handle, &spec.name);
                    match expected(case, &d.policy, spec) {
                        Expect::Clear => {}
                        Expect::Absent => {
                            prop_assert!(got.is_none(), "`{}` must be absent", spec.name)
                        }
                        Expect::Masked(method) => {
                            if let Some(got) = got {
                                check_masked(&spec.name, &method, source, &got)?;
                            }
                            if !matches!(spec.kind, Kind::Date) {
                                check_no_raw_text(handle, &text(source), &spec.name)?;
                            }
                        }
                    }
                    if matches!(expected(case, &d.policy, spec), Expect::Absent)
                        && !matches!(spec.kind, Kind::Date)
                    {
                        check_no_raw_text(handle, &text(source), &spec.name)?;
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_field_reaches_a_destination_in_a_form_its_class_forbids(case in case()) {
        run_case(&case)?;
    }
}

const POLICY: &str = r#"
default_class = "internal"
[[classify]]
pattern = "*email*"
class = "sensitive"
[[classify]]
pattern = "ssn"
class = "restricted"
[destinations.ads]
max_class = "internal"
purposes = ["marketing"]
require = { sensitive = "hash" }
[destinations.warehouse]
max_class = "sensitive"
purposes = ["analytics"]
"#;

fn keys() -> Keys {
    Keys::new().with_hash_key(HASH_KEY).unwrap()
}

fn users_schema(with_email: bool) -> Arc<Schema> {
    let mut fields = vec![Field::new("user_id", DataType::Utf8, false)];
    if with_email {
        fields.push(Field::new("email", DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

fn users(with_email: bool) -> cdp_core::arrow::array::RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec!["u1", "u2"]))];
    if with_email {
        columns.push(Arc::new(StringArray::from(vec!["a@x.io", "b@x.io"])));
    }
    batch(&users_schema(with_email), columns)
}

#[test]
fn ungoverned_destination_is_refused_before_any_data_moves() {
    let policy = PolicyConfig::from_toml(POLICY)
        .unwrap()
        .build()
        .unwrap()
        .with_keys(keys());
    let ads = MemoryDestination::new("ads");
    let handle = ads.handle();
    let error = runtime()
        .block_on(
            Pipeline::builder("p")
                .source(MemorySource::new("users", vec![users(true)]))
                .destination(ads)
                .check(policy.enforcer())
                .build()
                .unwrap()
                .run(),
        )
        .unwrap_err()
        .to_string();
    for part in [
        "`email`",
        "sensitive",
        "`ads`",
        "destinations.ads.require.sensitive",
        "in the clear",
    ] {
        assert!(error.contains(part), "{error} lacks {part}");
    }
    assert!(
        handle.prepared().is_empty(),
        "the destination was not even prepared"
    );
    assert_eq!(handle.row_count(), 0);
}

#[test]
fn schema_change_past_a_hand_built_masking_is_stopped() {
    // A masking listed by hand for the first schema knows nothing of `email`, so it would
    // pass through it in the clear: the enforcer must stop the run when it appears.
    let policy = PolicyConfig::from_toml(POLICY)
        .unwrap()
        .build()
        .unwrap()
        .with_keys(keys());
    let ads = MemoryDestination::new("ads");
    let handle = ads.handle();
    let masking = Masking::new("listed", keys()).field("user_id", DataClass::Internal, None);
    let error = runtime()
        .block_on(
            Pipeline::builder("p")
                .source(MemorySource::new("users", vec![users(false), users(true)]))
                .destination_with(ads, vec![Box::new(masking) as Box<dyn Transform>])
                .check(policy.enforcer())
                .build()
                .unwrap()
                .run(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("`email`"), "{error}");
    assert_eq!(handle.row_count(), 0, "nothing committed");
    assert!(
        handle
            .batches()
            .iter()
            .all(|b| b.data.column_by_name("email").is_none())
    );
}

#[test]
fn schema_change_adding_a_sensitive_field_is_masked_by_the_policy() {
    // The policy's masking asks the policy about every schema it sees: `email`, absent when
    // the pipeline was built, arrives hashed.
    let policy = PolicyConfig::from_toml(POLICY)
        .unwrap()
        .build()
        .unwrap()
        .with_keys(keys());
    let ads = MemoryDestination::new("ads");
    let handle = ads.handle();
    let transforms = policy.transforms_for("ads", &users_schema(false)).unwrap();
    let report = runtime()
        .block_on(
            Pipeline::builder("p")
                .source(MemorySource::new("users", vec![users(false), users(true)]))
                .destination_with(ads, transforms)
                .check(policy.enforcer())
                .build()
                .unwrap()
                .run(),
        )
        .unwrap();
    assert_eq!(report.streams[0].schema_changes, 1);
    let hashed: Vec<String> = handle
        .batches()
        .iter()
        .filter_map(|b| b.data.column_by_name("email").cloned())
        .flat_map(|c| {
            let c = c.as_string::<i32>().clone();
            (0..c.len())
                .map(move |i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let key = keys();
    let expected: Vec<String> = ["a@x.io", "b@x.io"]
        .iter()
        .map(|e| key.hash_key().unwrap().hash_hex(e.as_bytes()))
        .collect();
    assert_eq!(hashed, expected);
}

#[test]
fn policy_file_decisions_are_printable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let orders = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Utf8, false),
        Field::new("ssn", DataType::Utf8, true),
    ]));
    let decisions =
        decisions_for_file(&path, &[("users", users_schema(true)), ("orders", orders)]).unwrap();
    let printed: Vec<String> = decisions.iter().map(ToString::to_string).collect();
    assert_eq!(printed.len(), 8);
    assert!(
        printed.contains(
            &"users -> ads: `email` is sensitive (rule #1 `*email*`) -> masked: hash \
          [destinations.ads.require.sensitive]"
                .to_string()
        )
    );
    assert!(
        printed.contains(
            &"orders -> warehouse: `ssn` is restricted (rule #2 `ssn`) -> forbidden (dropped) \
          [destinations.warehouse.max_class = sensitive]"
                .to_string()
        )
    );
}
