//! The profile store behind a resolver: survivorship, computed traits, lookups during
//! writes, merges and unmerges, SQLite snapshots; and the durable identity log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_core::{Batch, IdentityResolver};
use cdp_identity::{
    ColumnMapping, IdentifierColumn, IdentifierKey, IdentityGraph, MemoryProfileStore,
    ProfileStore, Resolver, StoreConfig,
};
use serde_json::json;

use super::common::{id, rules};

pub(super) fn rows(
    anon: &[&str],
    email: &[Option<&str>],
    plan: &[Option<&str>],
    orders: &[Option<i64>],
    ts: &[i64],
) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("anonymous_id", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
        Field::new("plan", DataType::Utf8, true),
        Field::new("orders", DataType::Int64, true),
        Field::new("ts", DataType::Int64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(anon.to_vec())),
        Arc::new(StringArray::from(email.to_vec())),
        Arc::new(StringArray::from(plan.to_vec())),
        Arc::new(Int64Array::from(orders.to_vec())),
        Arc::new(Int64Array::from(ts.to_vec())),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

pub(super) fn mapping() -> ColumnMapping {
    ColumnMapping::new(vec![
        IdentifierColumn::new("anonymous_id", "anonymous_id"),
        IdentifierColumn::new("email", "email"),
    ])
    .timestamp("ts")
    .with_trait("plan", "plan")
    .with_trait("orders", "orders")
}

pub(super) fn store() -> Arc<MemoryProfileStore> {
    let config: StoreConfig = serde_json::from_value(json!({
        "traits": [{"name": "orders", "rule": "sum"}, {"name": "plan", "rule": "latest"}]
    }))
    .unwrap();
    Arc::new(MemoryProfileStore::new(config))
}

pub(super) fn resolver(store: Arc<MemoryProfileStore>) -> Resolver {
    Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping())
        .unwrap()
        .with_store(store)
        .unwrap()
}

pub(super) fn key(kind: &str, value: &str) -> IdentifierKey {
    IdentifierKey::of(&id(kind, value))
}

#[tokio::test]
async fn traits_survive_by_rule_and_merged_ids_resolve() {
    let s = store();
    let r = resolver(s.clone());
    let batch = rows(
        &["a1", "a2", "a1"],
        &[None, Some("ada@x.io"), None],
        &[Some("free"), Some("pro"), None],
        &[Some(1), Some(2), Some(3)],
        &[10, 20, 30],
    );
    r.resolve(Batch::new("events", batch, "web")).await.unwrap();
    let a1 = s.lookup(key("anonymous_id", "a1")).unwrap();
    assert_eq!(a1.event_count, 2);
    assert_eq!(a1.traits["orders"].value, json!(4));
    assert_eq!(a1.traits["plan"].value, json!("free"));
    assert_eq!((a1.first_seen, a1.last_seen), (Some(10), Some(30)));

    // a1 and the email meet: the profiles merge and their traits combine.
    let merge = rows(&["a1"], &[Some("ADA@x.io")], &[None], &[None], &[40]);
    r.resolve(Batch::new("events", merge, "web")).await.unwrap();
    let merged = s.lookup(key("email", "ada@x.io")).unwrap();
    assert_eq!(merged.event_count, 4);
    assert_eq!(merged.traits["orders"].value, json!(6));
    assert_eq!(merged.traits["plan"].value, json!("pro"));
    assert_eq!(merged.merged_from.len(), 1);
    assert_eq!(s.get(merged.merged_from[0]).unwrap().id, merged.id);
    assert_eq!(s.len(), 1);

    // Unmerge: the absorbed profile comes back with what it had.
    let seq = r.graph().merges()[0].seq;
    r.unmerge(seq, 50).unwrap();
    assert_eq!(s.len(), 2);
    let back = s.lookup(key("email", "ada@x.io")).unwrap();
    assert_ne!(back.id, merged.id);
    assert_eq!(back.traits["plan"].value, json!("pro"));
    assert_eq!(s.lookup(key("anonymous_id", "a1")).unwrap().id, merged.id);
}

#[tokio::test]
async fn lookups_run_while_a_writer_ingests() {
    let s = store();
    let r = resolver(s.clone());
    let first = rows(&["seed"], &[Some("seed@x.io")], &[None], &[None], &[1]);
    r.resolve(Batch::new("events", first, "web")).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let k = key("email", "seed@x.io");
            let mut hits = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert!(s.lookup(k).is_some());
                hits += 1;
            }
            hits
        })
    };
    for b in 0..50 {
        let anons: Vec<String> = (0..200).map(|i| format!("a{b}-{i}")).collect();
        let anon: Vec<&str> = anons.iter().map(String::as_str).collect();
        let n = anon.len();
        let batch = rows(
            &anon,
            &vec![None; n],
            &vec![None; n],
            &vec![None; n],
            &vec![5; n],
        );
        r.resolve(Batch::new("events", batch, "web")).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(s.identifier_count(), 2 + 50 * 200);
}
