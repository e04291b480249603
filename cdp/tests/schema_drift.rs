//! A key a JSONL source first meets after its inference sample is an additive schema change
//! like any other: the schema guard registers it as the stream's next version and the
//! landing zone receives the new fields.

#![cfg(all(feature = "jsonl", feature = "schema"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use cdp::connectors::{JsonlDestination, JsonlSource};
use cdp::schema::{GuardAction, SchemaGuard, SchemaRegistry};
use cdp::{MemoryStateStore, Pipeline, RunMode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_guard_registers_keys_first_seen_after_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    let mut text = String::new();
    for i in 0..3000 {
        let mut event = json!({"id": i, "event": "Order Completed", "properties": {"order": i}});
        if i >= 2000 {
            event["plan"] = json!("premium");
            event["properties"]["plan"] = json!("premium");
        }
        text.push_str(&event.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();

    let registry = SchemaRegistry::in_memory();
    let guard = SchemaGuard::new(registry.clone());
    let decisions = guard.handle();
    let lake = dir.path().join("lake");
    let report = Pipeline::builder("drift")
        .source(JsonlSource::new(&path).with_batch_size(500))
        .transform(guard)
        .destination(JsonlDestination::new(&lake))
        .state_store(Arc::new(MemoryStateStore::new()))
        .mode(RunMode::Batch)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.stream("track").unwrap().drift_events, 2, "{report}");
    assert_eq!(report.rows_out(), 3000);

    let versions = registry.versions("track").unwrap();
    assert_eq!(versions.len(), 2);
    let latest = &versions[1].schema;
    assert!(latest.column_with_name("plan").is_some());
    let actions: Vec<_> = decisions.events().iter().map(|e| e.action).collect();
    assert_eq!(actions, [GuardAction::Registered, GuardAction::Registered]);

    let mut premium = 0;
    let mut stack = vec![lake];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let staging = path.file_name().unwrap().to_string_lossy().starts_with('_');
            if path.is_dir() && !staging {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let row: Value = serde_json::from_str(line).unwrap();
                    if row["plan"] == "premium" && row["properties"]["plan"] == "premium" {
                        premium += 1;
                    }
                }
            }
        }
    }
    assert_eq!(premium, 1000);
}
