//! Regression: a person erased by one spelling of an identifier is suppressed when the same
//! identifier comes back in any other spelling (case, spaces, punctuation, phone formats),
//! including in nested fields. The suppression list once only lowercased emails, so a
//! person erased by phone `+1 (519) 555-0166` came back as `+15195550166`.

use std::sync::Arc;

use cdp_core::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StructArray};
use cdp_core::arrow::datatypes::{DataType, Field};
use cdp_core::identifier::{Normaliser, Vocabulary};
use cdp_governance::{HashKey, Identifier, Suppress, SuppressionList};

const KEY: &[u8] = b"suppression-list-key-32-bytes!!!";

fn list(vocabulary: Vocabulary) -> Arc<SuppressionList> {
    Arc::new(SuppressionList::new(HashKey::new(KEY).unwrap()).with_vocabulary(vocabulary))
}

/// Each kind: the spelling the person was erased by, and spellings that come back later.
fn spellings() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "email",
            "Ada.Lovelace@Example.COM",
            vec![
                "ada.lovelace@example.com",
                "  ADA.LOVELACE@EXAMPLE.COM ",
                "Ada.Lovelace@example.com\t",
            ],
        ),
        (
            "phone",
            "+1 (519) 555-0166",
            vec![
                "+15195550166",
                "(519) 555-0166",
                "519.555.0166",
                "519-555-0166",
                "1-519-555-0166",
                "001 519 555 0166",
                " +1 519 555 0166 ",
            ],
        ),
        ("user_id", "u-1842", vec![" u-1842", "u-1842  "]),
        ("crm_id", "crm-00042", vec!["CRM-00042", " Crm-00042 "]),
    ]
}

fn vocabulary() -> Vocabulary {
    Vocabulary::standard()
        .with("phone", Normaliser::phone(Some("US")))
        .with("crm_id", Normaliser::Lowercase)
}

#[test]
fn every_spelling_of_an_erased_identifier_is_suppressed() {
    let list = list(vocabulary());
    for (kind, erased, _) in spellings() {
        list.suppress(&Identifier::new(kind, erased)).unwrap();
    }
    for (kind, erased, later) in spellings() {
        for spelling in later {
            assert!(
                list.contains(&Identifier::new(kind, spelling)).unwrap(),
                "{kind} erased as {erased:?} but {spelling:?} is not suppressed"
            );
        }
    }
    // Other people are not.
    for (kind, other) in [
        ("email", "ada@example.com"),
        ("phone", "+1 519 555 0167"),
        ("user_id", "u-18420"),
        ("crm_id", "crm-0042"),
    ] {
        assert!(
            !list.contains(&Identifier::new(kind, other)).unwrap(),
            "{kind} {other}"
        );
    }
}

#[test]
fn reingested_rows_in_other_formats_are_all_dropped_top_level_and_nested() {
    let list = list(vocabulary());
    for (kind, erased, _) in spellings() {
        list.suppress(&Identifier::new(kind, erased)).unwrap();
    }
    // One row per later spelling, with the identifier both top-level and inside
    // `context.traits`, as Segment events carry it; plus one row of someone else.
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for (kind, _, later) in spellings() {
        rows.extend(later.into_iter().map(|s| (kind, s)));
    }
    let n = rows.len() + 1;
    let column = |kind: &str| -> ArrayRef {
        let mut values: Vec<Option<&str>> = rows
            .iter()
            .map(|(k, v)| (*k == kind).then_some(*v))
            .collect();
        values.push(match kind {
            "email" => Some("grace@example.com"),
            _ => None,
        });
        Arc::new(StringArray::from(values))
    };
    let traits = StructArray::from(vec![(
        Arc::new(Field::new("phone", DataType::Utf8, true)),
        column("phone"),
    )]);
    let context = StructArray::from(vec![(
        Arc::new(Field::new("traits", traits.data_type().clone(), true)),
        Arc::new(traits) as ArrayRef,
    )]);
    let data = RecordBatch::try_from_iter([
        ("email", column("email")),
        ("userId", column("user_id")),
        ("crm_id", column("crm_id")),
        ("context", Arc::new(context) as ArrayRef),
    ])
    .unwrap();
    let suppress = Suppress::new(list)
        .column("email", "email")
        .column("userId", "user_id")
        .column("crm_id", "crm_id")
        .column("context.traits.phone", "phone");
    let kept = suppress.filter(&data).unwrap();
    assert_eq!(kept.num_rows(), 1, "only the other person's row passes");
    assert_eq!(suppress.dropped(), (n - 1) as u64);
}

#[test]
fn the_standard_vocabulary_needs_a_region_for_national_numbers() {
    // Without a default region a national number cannot be placed: the raw form is kept
    // as typed, so erasing it blocks that spelling, and E.164 spellings match each other.
    let list = list(Vocabulary::standard());
    list.suppress(&Identifier::new("phone", "+1 (519) 555-0166"))
        .unwrap();
    assert!(
        list.contains(&Identifier::new("phone", "+15195550166"))
            .unwrap()
    );
    assert!(
        list.contains(&Identifier::new("phone", "001-519-555-0166"))
            .unwrap()
    );
}
