//! Every user of the identifier vocabulary normalises the same input the same way: the
//! `Normalize` transform, the identity rules and resolver, and the suppression list. They
//! once had three normalisers that disagreed (a phone number erased in one format came back
//! in another); now they share `cdp_core::identifier`, and this property holds them to it.

#![cfg(all(feature = "identity", feature = "governance"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use cdp::core::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use cdp::core::identifier::Normalised;
use cdp::core::transforms::normalize::{FieldRule, Normalize, NormalizeConfig};
use cdp::core::{Batch, Normaliser, Transform, Vocabulary};
use cdp::governance::{HashKey, Identifier, SuppressionList};
use cdp::identity::{ColumnMapping, IdentifierColumn, ResolverConfig, RulesConfig};
use proptest::prelude::*;

/// The identifier kinds under test, each with its normaliser.
fn kinds() -> Vec<(&'static str, Normaliser)> {
    vec![
        ("email", Normaliser::Email),
        ("phone", Normaliser::phone(Some("US"))),
        ("phone_intl", Normaliser::phone(None)),
        ("crm_id", Normaliser::Lowercase),
        ("user_id", Normaliser::Trim),
    ]
}

fn vocabulary() -> Vocabulary {
    kinds()
        .into_iter()
        .fold(Vocabulary::empty(), |v, (kind, n)| v.with(kind, n))
}

fn rules_config() -> RulesConfig {
    let identifiers: Vec<_> = kinds()
        .into_iter()
        .enumerate()
        .map(|(i, (kind, normaliser))| {
            serde_json::json!({"name": kind, "priority": i + 1, "normaliser": normaliser})
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "identifiers": identifiers })).unwrap()
}

// The alphabets are small so that two draws are often two spellings of one identifier.

/// Spellings of emails: case, surrounding blanks, and junk that is not an email.
fn email() -> impl Strategy<Value = String> {
    let local = "[a-bA-B][.+_-]?[a-bA-B]?";
    let domain = "(x|X)\\.(com|COM|co\\.uk)";
    prop_oneof![
        4 => (local, domain, " {0,2}", "[ \t]{0,2}")
            .prop_map(|(l, d, before, after)| format!("{before}{l}@{d}{after}")),
        1 => "\\PC{0,12}",
    ]
}

/// Spellings of phone numbers: national and international formats of a few real-shaped
/// North American and UK numbers, `00` prefixes, `+0…`, and random digits and junk.
fn phone() -> impl Strategy<Value = String> {
    let nanp = (prop::sample::select(vec!["519", "212"]), 0u32..3)
        .prop_map(|(area, line)| (area.to_string(), format!("555{line:04}")));
    let formatted = (nanp, 0usize..7).prop_map(|((area, number), style)| {
        let (mid, last) = number.split_at(3);
        match style {
            0 => format!("+1 ({area}) {mid}-{last}"),
            1 => format!("+1{area}{number}"),
            2 => format!("({area}) {mid}-{last}"),
            3 => format!("{area}.{mid}.{last}"),
            4 => format!("1-{area}-{mid}-{last}"),
            5 => format!("001 {area} {mid} {last}"),
            _ => format!(" {area}{number} "),
        }
    });
    prop_oneof![
        4 => formatted,
        1 => "\\+44 ?20 ?7946 ?00[0-2]",
        1 => "\\+?0?[0-9 ()-]{3,16}",
        1 => "\\PC{0,10}",
    ]
}

fn raw(kind: &str) -> BoxedStrategy<String> {
    match kind {
        "email" => email().boxed(),
        "phone" | "phone_intl" => phone().boxed(),
        _ => " {0,2}[a-bA-B][0-1-]? {0,2}".boxed(),
    }
}

/// A kind and two spellings of it; often two spellings of the same identifier.
fn case() -> impl Strategy<Value = (String, String, String)> {
    prop::sample::select(kinds().into_iter().map(|(k, _)| k).collect::<Vec<_>>())
        .prop_flat_map(|kind| (Just(kind.to_string()), raw(kind), raw(kind)))
}

/// What the `Normalize` transform makes of `raw` with `normaliser`: the value, `None` for
/// a null, or `Err` when the row went to the dead letters.
fn through_transform(normaliser: &Normaliser, raw: &str) -> Result<Option<String>, String> {
    let config = NormalizeConfig {
        fields: vec![FieldRule::new("v", "v").normalise([normaliser.clone()])],
        keep_unmapped: false,
        drop: Vec::new(),
        default_region: None,
    };
    let transform = Normalize::new(config).unwrap();
    let data =
        RecordBatch::try_from_iter([("v", Arc::new(StringArray::from(vec![raw])) as _)]).unwrap();
    let output = transform.apply(Batch::new("s", data, "test")).unwrap();
    if let Some(letter) = output.dead_letters.first() {
        return Err(letter.reason.clone());
    }
    let batch = output.batch.unwrap();
    let column = batch.data.column(0).as_string::<i32>();
    Ok(column.is_valid(0).then(|| column.value(0).to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_user_of_the_vocabulary_agrees((kind, a, b) in case()) {
        let vocabulary = vocabulary();
        let normaliser = vocabulary.normaliser(&kind).clone();
        let expected = |raw: &str| vocabulary.normalise(&kind, raw);
        let (na, nb) = (expected(&a), expected(&b));

        // The transform: the same value, a null for nothing, a dead letter for invalid.
        for raw in [&a, &b] {
            let mut buf = String::new();
            let got = through_transform(&normaliser, raw);
            match normaliser.outcome(raw, &mut buf) {
                Normalised::Value(v) => prop_assert_eq!(got, Ok(Some(v.to_string()))),
                Normalised::Null => prop_assert_eq!(got, Ok(None)),
                Normalised::Invalid(_) => prop_assert!(got.is_err(), "{:?} -> {:?}", raw, got),
            }
        }

        // The identity rules.
        let rules = cdp::identity::Rules::new(rules_config()).unwrap();
        prop_assert_eq!(rules.normalise(&kind, &a), na.clone());
        prop_assert_eq!(rules.vocabulary().normalise(&kind, &b), nb.clone());

        // The resolver: two rows holding only these spellings share a profile exactly
        // when the spellings normalise to the same identifier.
        let resolver = ResolverConfig {
            rules: rules_config(),
            mapping: ColumnMapping::new(vec![IdentifierColumn::new("v", kind.clone())]),
            events: Default::default(),
        }
        .build()
        .unwrap();
        let data = RecordBatch::try_from_iter([(
            "v",
            Arc::new(StringArray::from(vec![a.as_str(), b.as_str()])) as _,
        )])
        .unwrap();
        let resolved = resolver.resolve_batch(Batch::new("s", data, "test")).unwrap();
        let ids = resolved
            .batch
            .data
            .column_by_name(cdp::core::PROFILE_ID_COLUMN)
            .unwrap()
            .as_string::<i32>()
            .clone();
        prop_assert_eq!(ids.is_valid(0), na.is_some(), "{:?}", a);
        prop_assert_eq!(ids.is_valid(1), nb.is_some(), "{:?}", b);
        if let (Some(x), Some(y)) = (&na, &nb) {
            prop_assert_eq!(ids.value(0) == ids.value(1), x == y, "{:?} / {:?}", a, b);
            prop_assert!(resolver.profile_of(&kind, x).is_some());
        }

        // The suppression list, given the rules' vocabulary: erasing `a` suppresses `b`
        // exactly when they are the same identifier.
        let list = SuppressionList::new(HashKey::new(b"vocabulary-property-key-32-bytes").unwrap())
            .with_vocabulary(rules.vocabulary());
        list.suppress(&Identifier::new(kind.clone(), a.clone())).unwrap();
        if let (Some(x), Some(y)) = (&na, &nb) {
            prop_assert_eq!(
                list.contains(&Identifier::new(kind.clone(), b.clone())).unwrap(),
                x == y,
                "erased {:?}, later {:?}", a, b
            );
        }
    }
}
