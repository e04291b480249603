//! Erasure reaches identity, end to end: people land through a pipeline with identity
//! resolution and a profile store; one is erased by one spelling of one identifier; the
//! graph, the profile store and the identity log forget them; and when the same person's
//! identifiers come back in other spellings, every row is suppressed before it reaches
//! identity or a destination.

#![cfg(all(feature = "identity", feature = "governance"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use cdp::core::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use cdp::core::memory::{MemoryDestination, MemorySource};
use cdp::erasure::{IdentityGraphTarget, ProfileStoreTarget};
use cdp::governance::{Eraser, HashKey, Identifier, Suppress, SuppressionList};
use cdp::identity::{
    ColumnMapping, IdentifierColumn, IdentifierKey, IdentityGraph, IdentityLog, MemoryProfileStore,
    ProfileStore, Resolver, ResolverConfig, RulesConfig, SqliteLog, StoreConfig,
};
use cdp::{Pipeline, Vocabulary};

const KINDS: [&str; 4] = ["user_id", "email", "phone", "anonymous_id"];

fn rules() -> RulesConfig {
    serde_json::from_value(serde_json::json!({
        "identifiers": [
            {"name": "user_id", "priority": 1, "limit": 1},
            {"name": "email", "priority": 2, "normaliser": "email"},
            {"name": "phone", "priority": 3, "normaliser": {"phone": {"default_region": "US"}}},
            {"name": "anonymous_id", "priority": 4, "anonymous": true}
        ]
    }))
    .unwrap()
}

/// Rows of `(user_id, email, phone, anonymous_id)`.
fn batch(rows: &[[Option<&str>; 4]]) -> RecordBatch {
    RecordBatch::try_from_iter(KINDS.iter().enumerate().map(|(i, kind)| {
        let column: StringArray = rows.iter().map(|r| r[i]).collect();
        (*kind, Arc::new(column) as _)
    }))
    .unwrap()
}

/// Ada (erased later) on web and mobile, and two other people.
fn first_load() -> RecordBatch {
    batch(&[
        [None, None, None, Some("anon-ada-web")],
        [
            Some("u-ada"),
            Some("Ada.Lovelace@Example.com"),
            None,
            Some("anon-ada-web"),
        ],
        [
            Some("u-ada"),
            None,
            Some("+1 (519) 555-0166"),
            Some("anon-ada-ios"),
        ],
        [
            Some("u-grace"),
            Some("grace@example.com"),
            Some("212-555-0101"),
            None,
        ],
        [None, Some("alan@example.com"), None, Some("anon-alan")],
    ])
}

/// The same people later, Ada in spellings the first load never used.
fn second_load() -> RecordBatch {
    batch(&[
        [None, Some("  ADA.LOVELACE@EXAMPLE.COM "), None, None],
        [None, None, Some("519.555.0166"), None],
        [None, None, Some("+15195550166"), Some("anon-new-device")],
        [Some(" u-ada "), None, None, None],
        [None, None, None, Some("anon-ada-ios")],
        [Some("u-grace"), None, Some("(212) 555-0101"), None],
        [None, Some("Alan@Example.com"), None, None],
    ])
}

fn resolver(store: Arc<MemoryProfileStore>, log: SqliteLog) -> Arc<Resolver> {
    let resolver = ResolverConfig {
        rules: rules(),
        mapping: ColumnMapping::new(
            KINDS
                .iter()
                .map(|k| IdentifierColumn::new(*k, *k))
                .collect(),
        ),
        events: Default::default(),
    }
    .build()
    .unwrap()
    .with_log(Box::new(log))
    .unwrap()
    .with_store(store)
    .unwrap();
    Arc::new(resolver)
}

async fn land(
    data: RecordBatch,
    resolver: &Arc<Resolver>,
    suppression: Option<&Arc<SuppressionList>>,
) -> Vec<RecordBatch> {
    let dest = MemoryDestination::new("profiles_out");
    let rows = dest.handle();
    let mut pipeline = Pipeline::builder("people").source(MemorySource::new("people", vec![data]));
    if let Some(list) = suppression {
        let suppress = KINDS
            .iter()
            .fold(Suppress::new(list.clone()), |s, k| s.column(k, *k));
        pipeline = pipeline.transform(suppress);
    }
    pipeline
        .identity(resolver.clone())
        .destination(dest)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    rows.batches().into_iter().map(|b| b.data).collect()
}

fn lookup(store: &dyn ProfileStore, vocabulary: &Vocabulary, kind: &str, raw: &str) -> bool {
    let id = vocabulary.normalised(&Identifier::new(kind, raw)).unwrap();
    store.lookup(IdentifierKey::of(&id)).is_some()
}

#[tokio::test]
async fn an_erased_person_leaves_graph_store_and_log_and_stays_out_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("identity.db");
    let store = Arc::new(MemoryProfileStore::new(StoreConfig::default()));
    let resolver = resolver(store.clone(), SqliteLog::open(&log_path).unwrap());
    let vocabulary = resolver.graph().rules().vocabulary();

    land(first_load(), &resolver, None).await;
    let ada = resolver
        .profile_of("email", "ada.lovelace@example.com")
        .unwrap();
    assert_eq!(resolver.profile_of("phone", "+15195550166"), Some(ada));
    assert_eq!(
        resolver.profile_of("anonymous_id", "anon-ada-ios"),
        Some(ada)
    );
    assert!(lookup(&*store, &vocabulary, "user_id", "u-ada"));
    let others_before = resolver.graph().partition().len() - 1;

    // Erase by the phone number, written as a person would type it.
    let suppression = Arc::new(
        SuppressionList::new(HashKey::new(b"erasure-end-to-end-key-32-bytes!").unwrap())
            .with_vocabulary(vocabulary.clone()),
    );
    let eraser = Eraser::new(suppression.clone())
        .target(Arc::new(IdentityGraphTarget::new(resolver.clone())))
        .target(Arc::new(ProfileStoreTarget::new(
            store.clone(),
            vocabulary.clone(),
        )));
    let receipt = eraser
        .erase(
            &Identifier::new("phone", "+1 (519) 555-0166"),
            "privacy-team",
        )
        .await
        .unwrap();

    // The graph returned every identifier Ada had, so all of them are suppressed.
    let linked = &receipt.targets[0].linked;
    for (kind, value) in [
        ("user_id", "u-ada"),
        ("email", "ada.lovelace@example.com"),
        ("phone", "+15195550166"),
        ("anonymous_id", "anon-ada-web"),
        ("anonymous_id", "anon-ada-ios"),
    ] {
        let id = Identifier::new(kind, value);
        assert!(linked.contains(&id), "{id} not linked: {linked:?}");
        assert!(suppression.contains(&id).unwrap(), "{id} not suppressed");
        assert_eq!(
            resolver.profile_of(kind, value),
            None,
            "{id} still in the graph"
        );
        assert!(
            !lookup(&*store, &vocabulary, kind, value),
            "{id} still served"
        );
    }
    assert_eq!(receipt.targets[0].records_removed, 5);
    // Nobody else was touched.
    assert_eq!(resolver.graph().partition().len(), others_before);
    assert!(lookup(&*store, &vocabulary, "email", "grace@example.com"));

    // The identity log replays to the same graph: the erasure is in it.
    let records = SqliteLog::open(&log_path).unwrap().load().unwrap();
    assert!(records.iter().any(|r| r.event.kind_name() == "erase"));
    let replayed = IdentityGraph::replay(resolver.graph().rules().clone(), records).unwrap();
    assert_eq!(replayed.digest(), resolver.graph().digest());
    assert_eq!(
        replayed.profile_of("email", "ada.lovelace@example.com"),
        None
    );

    // Ada comes back in other spellings: every one of her rows is dropped before identity;
    // the other people's rows land.
    let landed = land(second_load(), &resolver, Some(&suppression)).await;
    let rows: usize = landed.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 2, "only Grace's and Alan's rows land");
    for batch in &landed {
        let users = batch.column_by_name("user_id").unwrap().as_string::<i32>();
        let emails = batch.column_by_name("email").unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            assert!(!users.is_valid(row) || users.value(row).trim() != "u-ada");
            assert!(!emails.is_valid(row) || !emails.value(row).to_lowercase().contains("ada"));
        }
    }
    assert_eq!(
        resolver.profile_of("email", "ada.lovelace@example.com"),
        None
    );
    assert_eq!(resolver.profile_of("anonymous_id", "anon-new-device"), None);
    assert_eq!(resolver.graph().partition().len(), others_before);
}
