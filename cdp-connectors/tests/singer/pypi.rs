//! The PyPI tap `tap-jsonl` and target `target-jsonl` (each installed into a cached
//! virtualenv, see `cdp_testkit::singer`) as a cdp source and destination.
//!
//! What the installed packages do, read from their source: `tap-jsonl` (Meltano Singer
//! SDK) takes `path` (a glob), `stream_name` and `primary_keys`; it adds
//! `_sdc_last_modified` (the file's mtime, `date-time`), `_sdc_filename` and
//! `_sdc_stream` to every record, types a free-form object as `["null", "object"]` without
//! properties and an array as untyped items, writes `STATE` only every 10,000 records and
//! at the end, and supports the SDK's `batch_config` (gzip JSON lines in `BATCH`
//! messages). `target-jsonl` takes `destination_path`, `custom_name` and
//! `do_timestamp_file`, validates every record against its stream's schema, appends
//! records to `{stream}.jsonl`, and writes the last state value back on stdout when its
//! input ends (only if no record came after it).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit};
use cdp_connectors::{JsonlSource, ParquetDestination, SingerDestination, SingerSource};
use cdp_core::record::is_json_text;
use cdp_core::{MemoryStateStore, Pipeline, RunMode, Source, StateStore};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

const FILES: usize = 3;
const PER_FILE: usize = 1500;

fn write_events(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..FILES {
        let mut text = String::new();
        for i in f * PER_FILE..(f + 1) * PER_FILE {
            let record = json!({
                "id": i,
                "user": format!("user-{}", i % 97),
                "at": format!("2024-05-{:02}T10:{:02}:00Z", 1 + i % 28, i % 60),
                "amount": (i % 300) as f64 + 0.25,
                "props": {"plan": if i % 2 == 0 { "pro" } else { "free" }, "seats": i % 7},
                "tags": ["a", "b"],
            });
            text.push_str(&record.to_string());
            text.push('\n');
        }
        std::fs::write(dir.join(format!("part-{f}.jsonl")), text).unwrap();
    }
}

fn tap(data: &Path, extra: Value) -> SingerSource {
    let mut config = json!({
        "path": format!("{}/*.jsonl", data.display()),
        "stream_name": "events",
        "primary_keys": ["id"],
    });
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    SingerSource::new(
        cdp_testkit::singer::program("tap-jsonl")
            .display()
            .to_string(),
    )
    .with_config(config)
    .with_batch_size(1000)
}

fn parquet_batches(root: &Path) -> Vec<arrow::array::RecordBatch> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("_staging") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                        .unwrap()
                        .build()
                        .unwrap();
                out.extend(reader.map(Result::unwrap));
            }
        }
    }
    out
}

async fn sync(
    source: SingerSource,
    lake: &Path,
    store: Arc<dyn StateStore>,
) -> cdp_core::RunReport {
    Pipeline::builder("tap-jsonl")
        .source(source)
        .destination(ParquetDestination::new(lake))
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(1000)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

fn ids(batches: &[arrow::array::RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let column = b
                .column_by_name("id")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>();
            column.values().to_vec()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_jsonl_runs_as_a_source_into_a_parquet_landing_zone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_events(&data);
    let source = tap(&data, json!({}));

    let catalog = source.discover().await.unwrap();
    assert_eq!(catalog.streams.len(), 1);
    assert_eq!(catalog.streams[0].name, "events");
    assert_eq!(catalog.streams[0].primary_key, ["id"]);

    let lake = dir.path().join("lake");
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let report = sync(source, &lake, store.clone()).await;
    assert_eq!(report.rows_out(), (FILES * PER_FILE) as u64);
    assert_eq!(report.dead_letters, 0);

    let batches = parquet_batches(&lake.join("events"));
    assert_eq!(
        ids(&batches),
        (0..(FILES * PER_FILE) as i64).collect::<Vec<_>>()
    );
    let schema = batches[0].schema();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    assert_eq!(
        schema.field_with_name("id").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(schema.field_with_name("at").unwrap().data_type(), &utc);
    assert_eq!(
        schema.field_with_name("amount").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        schema
            .field_with_name("_sdc_last_modified")
            .unwrap()
            .data_type(),
        &utc
    );
    let props = schema.field_with_name("props").unwrap();
    assert!(
        is_json_text(props),
        "a free-form object is JSON text: {props:?}"
    );
    let tags = schema.field_with_name("tags").unwrap();
    assert!(
        matches!(tags.data_type(), DataType::List(item) if is_json_text(item)),
        "untyped items are JSON text: {tags:?}"
    );
    let first = batches
        .iter()
        .find_map(|b| {
            let ids = b
                .column_by_name("id")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>();
            (0..b.num_rows())
                .find(|&r| ids.value(r) == 4)
                .map(|r| (b.clone(), r))
        })
        .unwrap();
    let props = first.0.column_by_name("props").unwrap().as_string::<i32>();
    assert_eq!(
        serde_json::from_str::<Value>(props.value(first.1)).unwrap(),
        json!({"plan": "pro", "seats": 4})
    );
    let at = first.0.column_by_name("at").unwrap();
    assert!(at.is_valid(first.1));

    // The committed state is the tap's final state, on the stream's cursor.
    let state = store.load("tap-jsonl").await.unwrap();
    let cursor = state.cursor("events").unwrap();
    let partitions = cursor["state"]["bookmarks"]["events"]["partitions"]
        .as_array()
        .unwrap();
    assert_eq!(partitions.len(), FILES);
    assert!(
        partitions
            .iter()
            .all(|p| p.get("replication_key_value").is_some())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_jsonl_batch_messages_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_events(&data);
    let batches_dir = dir.path().join("batches");
    std::fs::create_dir_all(&batches_dir).unwrap();
    let source = tap(
        &data,
        json!({"batch_config": {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": format!("file://{}", batches_dir.display()), "prefix": "cdp-"},
        }}),
    );
    let lake = dir.path().join("lake");
    let report = sync(source, &lake, Arc::new(MemoryStateStore::new())).await;
    assert_eq!(report.rows_out(), (FILES * PER_FILE) as u64);
    let written = std::fs::read_dir(&batches_dir).unwrap().count();
    assert!(written >= 1, "the tap wrote batch files");
    let batches = parquet_batches(&lake.join("events"));
    assert_eq!(
        ids(&batches),
        (0..(FILES * PER_FILE) as i64).collect::<Vec<_>>()
    );
}

fn target(out: &Path, staging: &Path) -> SingerDestination {
    SingerDestination::new(
        cdp_testkit::singer::program("target-jsonl")
            .display()
            .to_string(),
        staging,
    )
    .with_config(json!({"destination_path": out.display().to_string(), "do_timestamp_file": false}))
}

fn written(out: &Path, stream: &str) -> Vec<Value> {
    let path = out.join(format!("{stream}.jsonl"));
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_writes_through_target_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("signups.jsonl");
    let mut text = String::new();
    for i in 0..2500 {
        text.push_str(&format!(
            "{{\"id\":{i},\"email\":\"u{i}@example.com\",\"plan\":\"{}\",\"seats\":{}}}\n",
            if i % 3 == 0 { "pro" } else { "free" },
            i % 9
        ));
    }
    std::fs::write(&input, text).unwrap();
    let (out, staging) = (dir.path().join("out"), dir.path().join("staging"));
    let run = || {
        Pipeline::builder("to-target-jsonl")
            .source(JsonlSource::new(&input).with_batch_size(500))
            .destination(target(&out, &staging))
            .state_store(Arc::new(MemoryStateStore::new()))
            .mode(RunMode::Batch)
            .commit_every_rows(1000)
            .build()
            .unwrap()
            .run()
    };
    let report = run().await.unwrap();
    assert_eq!(report.rows_out(), 2500);
    assert!(
        report.committed_epoch >= 3,
        "several epochs, each its own target run"
    );
    let records = written(&out, "signups");
    let mut ids: Vec<i64> = records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..2500).collect::<Vec<_>>(), "every row once");
    let row = records.iter().find(|r| r["id"] == 3).unwrap();
    assert_eq!(row["email"], "u3@example.com");
    assert_eq!(row["plan"], "pro");
    assert_eq!(row["seats"], 3);
    assert!(row["_cdp_record_hash"].is_string());
    // Every epoch was confirmed by the state target-jsonl wrote back: nothing is left
    // staged.
    let staged = std::fs::read_dir(staging.join("to-target-jsonl")).unwrap();
    for entry in staged {
        let left = std::fs::read_dir(entry.unwrap().path()).unwrap().count();
        assert_eq!(left, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_jsonl_to_target_jsonl_through_cdp() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_events(&data);
    let (out, staging) = (dir.path().join("out"), dir.path().join("staging"));
    let report = Pipeline::builder("singer-to-singer")
        .source(tap(&data, json!({})))
        .destination(target(&out, &staging))
        .state_store(Arc::new(MemoryStateStore::new()))
        .mode(RunMode::Batch)
        .commit_every_rows(2000)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.rows_out(), (FILES * PER_FILE) as u64);
    let records = written(&out, "events");
    assert_eq!(records.len(), FILES * PER_FILE);
    let row = records.iter().find(|r| r["id"] == 4).unwrap();
    // The tap's free-form object reaches the target as the object it was.
    assert_eq!(row["props"], json!({"plan": "pro", "seats": 4}));
    assert_eq!(row["tags"], json!(["a", "b"]));
    assert_eq!(row["at"], "2024-05-05T10:04:00Z");
}
