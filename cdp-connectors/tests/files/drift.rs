//! Schema drift in the JSONL source: new keys after the inference sample, values of another
//! type, as the run report and the landing zones see them.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use cdp_connectors::{
    JsonlDestination, JsonlSource, JsonlSourceConfig, NewFields, ParquetDestination, TypeConflicts,
};
use cdp_core::{
    DriftAction, DriftKind, MemoryStateStore, Pipeline, ReadRequest, RunMode, RunReport,
    SourceEvent, StateStore,
};
use cdp_testkit::conformance::check_source;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

use crate::support::*;

/// Segment-like `track` events; from `plan_from` on they carry `plan` at the top and in
/// `properties`.
fn events(range: std::ops::Range<usize>, plan_from: usize) -> String {
    let mut out = String::new();
    for i in range {
        let mut event = json!({
            "type": "track",
            "event": "Order Completed",
            "messageId": format!("m-{i}"),
            "userId": format!("u-{}", i % 50),
            "context": {"ip": "10.0.0.1", "library": {"name": "analytics.js"}},
            "properties": {"order": i, "revenue": 1.5},
        });
        if i >= plan_from {
            event["plan"] = json!("premium");
            event["properties"]["plan"] = json!("premium");
        }
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out
}

/// Every file under `root` with extension `ext`, but for `_`-prefixed folders (staging).
fn files(root: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('_') {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

pub(crate) fn landed_json(root: &Path) -> Vec<Value> {
    files(root, "jsonl")
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(crate) fn landed_parquet(root: &Path) -> Vec<RecordBatch> {
    files(root, "parquet")
        .iter()
        .flat_map(|path| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The non-null text values of `path` (a top-level column or `parent.child`) over batches.
fn parquet_texts(batches: &[RecordBatch], path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for batch in batches {
        let column = match path.split_once('.') {
            None => batch.column_by_name(path).cloned(),
            Some((parent, child)) => batch
                .column_by_name(parent)
                .and_then(|p| p.as_struct().column_by_name(child).cloned()),
        };
        let Some(column) = column else { continue };
        let column = column.as_string::<i32>();
        out.extend(column.iter().flatten().map(str::to_string));
    }
    out
}

async fn land(source: JsonlSource, root: &Path, store: Arc<dyn StateStore>) -> RunReport {
    Pipeline::builder("drift")
        .source(source)
        .destination(JsonlDestination::new(root.join("jsonl")))
        .destination(ParquetDestination::new(root.join("parquet")))
        .dead_letter(JsonlDestination::new(root.join("dlq")).with_name("dlq"))
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(700)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_first_seen_after_the_sample_becomes_a_column_in_every_landing_zone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    write(&path, &events(0..3000, 2000));
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let source = JsonlSource::new(&path).with_batch_size(500);
    // The sample (the first 1,000 records) has no `plan`.
    let discovered = source.schema().unwrap();
    assert!(discovered.column_with_name("plan").is_none());

    let report = land(source.clone(), dir.path(), store.clone()).await;
    let stream = report.stream("track").unwrap();
    assert_eq!(stream.rows_out, 3000);
    assert_eq!(stream.dead_lettered, 0);
    assert!(stream.schema_changes >= 1, "{report}");
    assert_eq!(stream.drift_events, 2, "{report}");
    let paths: Vec<_> = report.drift.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["plan", "properties.plan"]);
    for drift in &report.drift {
        assert_eq!(drift.kind, DriftKind::NewField);
        assert_eq!(drift.action, DriftAction::SchemaChanged);
        assert_eq!(drift.position.as_deref(), Some("track.jsonl:2001"));
    }
    assert!(report.to_string().contains("schema drift: 2"), "{report}");

    let json = landed_json(&dir.path().join("jsonl"));
    assert_eq!(json.len(), 3000);
    let premium = |v: &&Value| v["plan"] == "premium" && v["properties"]["plan"] == "premium";
    assert_eq!(json.iter().filter(premium).count(), 1000);
    let parquet = landed_parquet(&dir.path().join("parquet"));
    assert_eq!(
        parquet.iter().map(RecordBatch::num_rows).sum::<usize>(),
        3000
    );
    assert_eq!(parquet_texts(&parquet, "plan").len(), 1000);
    assert_eq!(parquet_texts(&parquet, "properties.plan").len(), 1000);

    // A later run resumes with the schema the first one reached: more rows with `plan`
    // land, nothing twice, and no schema change is needed any more.
    append(&path, &events(3000..3100, 0));
    let report = land(source, dir.path(), store).await;
    let stream = report.stream("track").unwrap();
    assert_eq!(stream.rows_out, 100);
    assert_eq!(stream.schema_changes, 0, "{report}");
    let json = landed_json(&dir.path().join("jsonl"));
    assert_eq!(json.len(), 3100);
    assert_eq!(json.iter().filter(premium).count(), 1100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_go_to_the_overflow_column_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    write(&path, &events(0..3000, 2000));
    let config: JsonlSourceConfig = serde_json::from_value(json!({
        "path": path,
        "batch_size": 500,
        "new_fields": "overflow",
        "overflow_column": "_extra",
    }))
    .unwrap();
    let source = config.build_source().unwrap();
    assert!(
        source
            .schema()
            .unwrap()
            .column_with_name("_extra")
            .is_some()
    );
    let report = land(source, dir.path(), Arc::new(MemoryStateStore::new())).await;
    let stream = report.stream("track").unwrap();
    assert_eq!(stream.rows_out, 3000);
    assert_eq!(stream.schema_changes, 0, "{report}");
    assert_eq!(stream.drift_events, 2, "{report}");
    assert!(
        report
            .drift
            .iter()
            .all(|d| d.action == DriftAction::Overflowed)
    );

    let expected = json!({"plan": "premium", "properties": {"plan": "premium"}});
    let json = landed_json(&dir.path().join("jsonl"));
    let overflowed: Vec<Value> = json
        .iter()
        .filter_map(|v| v["_extra"].as_str())
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(overflowed.len(), 1000);
    assert!(overflowed.iter().all(|v| *v == expected));
    // The known part of `properties` still lands in its column.
    assert!(json.iter().all(|v| v["properties"]["order"].is_number()));
    let parquet = landed_parquet(&dir.path().join("parquet"));
    let texts = parquet_texts(&parquet, "_extra");
    assert_eq!(texts.len(), 1000);
    assert!(
        texts
            .iter()
            .all(|t| serde_json::from_str::<Value>(t).unwrap() == expected)
    );
}

#[tokio::test]
async fn unknown_keys_are_dead_letters_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    write(&path, &events(0..1500, 1200));
    let source = JsonlSource::new(&path).with_new_fields(NewFields::DeadLetter);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 1200);
    let dead = read.dead_letters();
    assert_eq!(dead.len(), 300);
    assert!(
        dead[0].reason.contains("unknown key `plan`"),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].position.as_deref(), Some("track.jsonl:1201"));
}

/// 500 events whose `userId` is a string, but for record 10 (an object) and whose `type`
/// is a string, but for record 20 (a list): both inside the inference sample.
fn conflicting() -> String {
    let mut out = String::new();
    for i in 0..500 {
        let user = if i == 10 {
            json!({"x": 1})
        } else {
            json!(format!("u-{i}"))
        };
        let kind = if i == 20 {
            json!(["a"])
        } else {
            json!("track")
        };
        out.push_str(&json!({"i": i, "userId": user, "type": kind}).to_string());
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn a_record_of_another_type_inside_the_sample_is_a_dead_letter_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conflict.jsonl");
    write(&path, &conflicting());
    let source = JsonlSource::new(&path)
        .with_type_conflicts(TypeConflicts::DeadLetter)
        .with_batch_size(64);
    let schema = source.schema().unwrap();
    assert_eq!(
        schema.field_with_name("userId").unwrap().data_type(),
        &DataType::Utf8
    );
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 498);
    let dead = read.dead_letters();
    let found: Vec<_> = dead
        .iter()
        .map(|d| (d.position.clone().unwrap(), d.reason.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "conflict.jsonl:11".to_string(),
                "`userId` is Utf8 but the value is an object (type_conflicts = \"dead_letter\")"
                    .to_string()
            ),
            (
                "conflict.jsonl:21".to_string(),
                "`type` is Utf8 but the value is a list (type_conflicts = \"dead_letter\")"
                    .to_string()
            ),
        ]
    );
    let drift: Vec<_> = read
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Drift(d) => Some((d.path.clone(), d.action)),
            _ => None,
        })
        .collect();
    assert_eq!(
        drift,
        [
            ("userId".to_string(), DriftAction::DeadLettered),
            ("type".to_string(), DriftAction::DeadLettered)
        ]
    );
}

#[tokio::test]
async fn a_record_of_another_type_inside_the_sample_widens_its_column_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conflict.jsonl");
    write(&path, &conflicting());
    let source = JsonlSource::new(&path).with_batch_size(64);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 500);
    assert!(read.dead_letters().is_empty());
    let mut users = Vec::new();
    let mut kinds = Vec::new();
    for batch in read.records() {
        let u = batch.column_by_name("userId").unwrap().as_string::<i32>();
        users.extend(u.iter().map(|v| v.unwrap().to_string()));
        let k = batch.column_by_name("type").unwrap().as_string::<i32>();
        kinds.extend(k.iter().map(|v| v.unwrap().to_string()));
    }
    assert_eq!(users[10], r#"{"x":1}"#);
    assert_eq!(users[11], "u-11");
    assert_eq!(kinds[20], r#"["a"]"#);
}

#[tokio::test]
async fn integers_are_never_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n.jsonl");
    let mut text: String = (0..1200).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    text.push_str("{\"n\":10.75}\n{\"n\":0.4}\n{\"n\":12}\n{\"n\":12345678901234567890}\n");
    write(&path, &text);

    let widen = JsonlSource::new(&path).with_batch_size(100);
    let read = read_all(&widen, ReadRequest::default()).await;
    assert_eq!(read.rows(), 1204);
    let last = read.records().pop().unwrap();
    let n = last.column_by_name("n").unwrap();
    // 10.75 made the column a float; the integer beyond 64 bits made it text, exactly.
    assert_eq!(n.data_type(), &DataType::Utf8);
    let n = n.as_string::<i32>();
    assert_eq!(n.value(n.len() - 1), "12345678901234567890");
    let floats: Vec<f64> = read
        .records()
        .iter()
        .filter(|b| b.column_by_name("n").unwrap().data_type() == &DataType::Float64)
        .flat_map(|b| {
            let c = b
                .column_by_name("n")
                .unwrap()
                .as_primitive::<arrow::datatypes::Float64Type>();
            c.values().to_vec()
        })
        .collect();
    assert_eq!(floats, [10.75, 0.4, 12.0]);

    let strict = JsonlSource::new(&path).with_type_conflicts(TypeConflicts::DeadLetter);
    let read = read_all(&strict, ReadRequest::default()).await;
    assert_eq!(read.rows(), 1201);
    let reasons: Vec<_> = read.dead_letters().into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons.len(), 3);
    assert!(reasons[0].contains("fractional"), "{reasons:?}");
    assert!(reasons[2].contains("beyond 64 bits"), "{reasons:?}");
}

#[tokio::test]
async fn a_drifting_stream_conforms_resumed_from_any_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    let mut text = events(0..300, 150);
    text.push_str("{\"type\":\"track\",\"n\":1.5,\"properties\":{\"order\":\"x\"}}\n");
    text.push_str("{oops\n");
    text.push_str(&events(301..400, 0));
    write(&path, &text);
    for batch_size in [7, 64] {
        let source = JsonlSource::new(&path)
            .with_infer_records(100)
            .with_batch_size(batch_size);
        let report = check_source(&source, 40).await.unwrap();
        assert_eq!(report.rows, 400, "batch size {batch_size}");
        assert_eq!(report.dead_letters, 1);
        let overflow = JsonlSource::new(&path)
            .with_infer_records(100)
            .with_new_fields(NewFields::Overflow)
            .with_batch_size(batch_size);
        assert_eq!(check_source(&overflow, 40).await.unwrap().rows, 400);
    }
}

#[tokio::test]
async fn nested_and_listed_new_keys_evolve_their_structs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cart.jsonl");
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&json!({"id": i, "items": [{"sku": "a"}]}).to_string());
        text.push('\n');
    }
    text.push_str(r#"{"id":20,"items":[{"sku":"b","price":1},{"sku":"c","price":2.5}],"ctx":{"a":{"b":true}}}"#);
    text.push('\n');
    write(&path, &text);
    let source = JsonlSource::new(&path).with_infer_records(5);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 21);
    let changes: Vec<_> = read
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::SchemaChange { schema, .. } => Some(schema.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1);
    let last = read.records().pop().unwrap();
    assert_eq!(last.schema(), changes[0]);
    let items = last.column_by_name("items").unwrap().as_list::<i32>();
    let item = items.value(0);
    let prices = item
        .as_struct()
        .column_by_name("price")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>()
        .clone();
    assert_eq!(prices.values().to_vec(), [1.0, 2.5]);
    let drift: Vec<_> = read
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Drift(d) => Some(d.path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(drift, ["items[].price", "ctx"]);
}

#[test]
fn drift_config_keys_are_checked() {
    let bad: Result<JsonlSourceConfig, _> =
        serde_json::from_value(json!({"path": "x", "new_fields": "drop"}));
    assert!(bad.unwrap_err().to_string().contains("new_fields"));
    let config: JsonlSourceConfig =
        serde_json::from_value(json!({"path": "x", "overflow_column": "_cdp_extra"})).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("overflow_column"), "{err}");
}
