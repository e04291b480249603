//! The Singer message protocol as a fake tap speaks it: schemas and their changes, records,
//! states, batch files, malformed lines, and taps that fail.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, TimeUnit};
use cdp_connectors::JsonlDestination;
use cdp_core::record::is_json_text;
use cdp_core::{MemoryStateStore, Pipeline, ReadRequest, RunMode, Source, SourceEvent, StateStore};
use cdp_testkit::read::read_all;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::{Fakes, Script};

/// Written out, so the properties keep the order a tap gives them.
const USERS_SCHEMA: &str = r#"{
    "id": {"type": "integer"},
    "email": {"type": ["null", "string"]},
    "signed_up": {"type": ["string", "null"], "format": "date-time"},
    "score": {"type": ["number", "null"]},
    "active": {"type": "boolean"},
    "address": {"type": "object", "properties": {"city": {"type": "string"}}},
    "tags": {"type": "array", "items": {"type": "string"}},
    "traits": {"type": ["null", "object"], "additionalProperties": true}
}"#;

async fn failure(source: &dyn Source) -> String {
    let mut events = source.read(ReadRequest::default()).unwrap();
    while let Some(event) = events.next().await {
        if let Err(error) = event {
            return error.to_string();
        }
    }
    panic!("the read did not fail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_become_typed_batches_and_each_state_checkpoints_every_stream() {
    let fakes = Fakes::new();
    let mut script = Script::new();
    let compact: Value = serde_json::from_str(USERS_SCHEMA).unwrap();
    assert_eq!(compact.as_object().unwrap().len(), 8);
    script
        .schema_text("users", &USERS_SCHEMA.replace(['\n', ' '], ""))
        .schema(
            "orders",
            json!({"id": {"type": "integer"}, "user": {"type": "integer"}}),
        );
    for id in 0..4 {
        script.record(
            "users",
            json!({"id": id, "email": format!("u{id}@example.com"), "signed_up": "2024-05-01T10:00:00+02:00",
                "score": 1.5, "active": true, "address": {"city": "Lyon"}, "tags": ["a"],
                "traits": {"plan": "pro", "seats": id}}),
        );
    }
    script
        .record("orders", json!({"id": 10, "user": 1}))
        .state();
    script
        .record("orders", json!({"id": 11, "user": 2}))
        .state();
    let read = read_all(&fakes.source(&script, None), ReadRequest::default()).await;

    let users: Vec<_> = read
        .batches()
        .into_iter()
        .filter(|b| &*b.stream == "users")
        .collect();
    assert_eq!(users.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    // Batches of at most `batch_size` (3) rows.
    assert!(users.iter().all(|b| b.num_rows() <= 3));
    let schema = users[0].data.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "email",
            "signed_up",
            "score",
            "active",
            "address",
            "tags",
            "traits"
        ],
        "the tap's column order"
    );
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert_eq!(
        schema.field(2).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(schema.field(3).data_type(), &DataType::Float64);
    assert_eq!(schema.field(4).data_type(), &DataType::Boolean);
    assert!(matches!(schema.field(5).data_type(), DataType::Struct(_)));
    assert!(matches!(schema.field(6).data_type(), DataType::List(_)));
    assert!(
        is_json_text(schema.field(7)),
        "a free-form object is JSON text"
    );
    let data = &users[0].data;
    let signed_up = data
        .column(2)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    // 10:00 at +02:00 is 08:00 UTC.
    assert_eq!(signed_up.value(0), 1_714_550_400_000_000);
    let traits: Value = serde_json::from_str(data.column(7).as_string::<i32>().value(1)).unwrap();
    assert_eq!(traits, json!({"plan": "pro", "seats": 1}));

    let checkpoints: Vec<(String, Value)> = read
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Checkpoint(c) => Some((c.stream.clone(), c.cursor.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        checkpoints,
        [
            (
                "orders".to_string(),
                json!({"state": {"line": 8}, "seq": 1})
            ),
            ("users".to_string(), json!({"state": {"line": 8}, "seq": 1})),
            (
                "orders".to_string(),
                json!({"state": {"line": 10}, "seq": 2})
            ),
            (
                "users".to_string(),
                json!({"state": {"line": 10}, "seq": 2})
            ),
        ]
    );
    // Every batch comes before the checkpoint covering it.
    let last_batch = read
        .events
        .iter()
        .rposition(|e| matches!(e, SourceEvent::Batch(_)))
        .unwrap();
    assert!(matches!(
        read.events.last(),
        Some(SourceEvent::Checkpoint(_))
    ));
    assert!(last_batch < read.events.len() - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_hands_the_tap_its_last_state() {
    let fakes = Fakes::new();
    let mut script = Script::new();
    script.schema("s", json!({"id": {"type": "integer"}}));
    for id in 0..6 {
        script.record("s", json!({"id": id}));
        if id % 2 == 1 {
            script.state();
        }
    }
    let source = fakes.source(&script, None);
    let full = read_all(&source, ReadRequest::default()).await;
    assert_eq!(full.ids("id"), [0, 1, 2, 3, 4, 5]);
    // States are on lines 4, 7 and 10; the second one was committed.
    let cursor = json!({"state": {"line": 7}, "seq": 2});
    let resumed = read_all(&source, cdp_testkit::read::resume("s", cursor)).await;
    assert_eq!(resumed.ids("id"), [4, 5]);
    let last = resumed.events.iter().rev().find_map(|e| match e {
        SourceEvent::Checkpoint(c) => Some(c.cursor.clone()),
        _ => None,
    });
    assert_eq!(last, Some(json!({"state": {"line": 10}, "seq": 3})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_mid_stream_announces_the_new_schema() {
    let fakes = Fakes::new();
    let mut script = Script::new();
    script
        .schema("s", json!({"id": {"type": "integer"}, "name": {"type": "string"}}))
        .record("s", json!({"id": 1, "name": "a"}))
        .record("s", json!({"id": 2, "name": "b"}))
        .schema(
            "s",
            json!({"id": {"type": "integer"}, "name": {"type": "string"}, "tier": {"type": "integer"}}),
        )
        .record("s", json!({"id": 3, "name": "c", "tier": 2}))
        // The same schema again changes nothing.
        .schema(
            "s",
            json!({"id": {"type": "integer"}, "name": {"type": "string"}, "tier": {"type": "integer"}}),
        )
        .record("s", json!({"id": 4, "name": "d", "tier": 3}))
        .state();
    let read = read_all(&fakes.source(&script, None), ReadRequest::default()).await;
    let kinds: Vec<String> = read
        .events
        .iter()
        .map(|e| match e {
            SourceEvent::Batch(b) => format!("batch {}x{}", b.num_rows(), b.data.num_columns()),
            SourceEvent::SchemaChange { schema, .. } => format!("schema {}", schema.fields().len()),
            SourceEvent::Checkpoint(_) => "checkpoint".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["batch 2x2", "schema 3", "batch 2x3", "checkpoint"]);
}

fn gzip(path: &Path, text: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_messages_read_their_files_gzip_or_plain() {
    let fakes = Fakes::new();
    let gz = fakes.path("batch-1.json.gz");
    gzip(&gz, "{\"id\":1}\n{\"id\":2}\nnot json\n{\"id\":3}\n");
    let plain = fakes.path("batch-2.jsonl");
    std::fs::write(&plain, "{\"id\":4}\n[5]\n").unwrap();
    let missing = fakes.path("gone.json.gz");
    let batch = |files: &[&Path], compression: &str| {
        let manifest: Vec<String> = files
            .iter()
            .map(|p| format!("file://{}", p.display()))
            .collect();
        json!({"type": "BATCH", "stream": "s", "encoding": {"format": "jsonl", "compression": compression},
            "manifest": manifest})
    };
    let mut script = Script::new();
    script
        .schema("s", json!({"id": {"type": "integer"}}))
        .record("s", json!({"id": 0}))
        .line(crate::support::compact(&batch(&[&gz], "gzip")))
        .line(crate::support::compact(&batch(&[&plain], "none")))
        .line(crate::support::compact(&batch(&[&missing], "gzip")))
        .state();
    let read = read_all(&fakes.source(&script, None), ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [0, 1, 2, 3, 4]);
    let letters: Vec<(String, String)> = read
        .dead_letters()
        .into_iter()
        .map(|d| (d.position.unwrap_or_default(), d.reason))
        .collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    assert_eq!(letters[0].0, "batch-1.json.gz:3");
    assert!(letters[0].1.contains("invalid JSON"), "{letters:?}");
    assert_eq!(letters[1].0, "batch-2.jsonl:2");
    assert!(letters[1].1.contains("not a JSON object"), "{letters:?}");
    assert!(
        letters[2].1.contains("cannot open batch file"),
        "{letters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_dead_letters_and_the_read_goes_on() {
    let fakes = Fakes::new();
    let mut script = Script::new();
    script
        .schema("s", json!({"id": {"type": "integer"}}))
        .record("s", json!({"id": 1}))
        .line("this is not JSON")
        .line(r#"{"type":"RECORD","record":{"id":2}}"#)
        .line(r#"{"type":"RECORD","stream":"s","record":[2]}"#)
        .line(r#"{"type":"HEARTBEAT","stream":"s"}"#)
        .record("s", json!({"id": "three"}))
        .record("s", json!({"id": 4, "note": "x".repeat(300)}))
        .line(r#"{"type":"ACTIVATE_VERSION","stream":"s","version":1}"#)
        .record("s", json!({"id": 5}))
        .state();
    let source = fakes.source(&script, None).with_max_line_bytes(200);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 5]);
    let letters = read.dead_letters();
    let reasons: Vec<(&str, &str)> = letters
        .iter()
        .map(|d| (d.stream.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 6, "{reasons:#?}");
    assert!(reasons[0].1.starts_with("invalid JSON"), "{reasons:?}");
    assert_eq!(
        reasons[0].0, "fake-tap",
        "a line naming no stream goes under the source's name"
    );
    assert!(reasons[1].1.contains("without a `stream`"), "{reasons:?}");
    assert!(reasons[2].1.contains("not a JSON object"), "{reasons:?}");
    assert!(
        reasons[3]
            .1
            .contains("unknown Singer message type `HEARTBEAT`"),
        "{reasons:?}"
    );
    assert!(
        reasons[4].1.contains("longer than 200 bytes"),
        "{reasons:?}"
    );
    assert_eq!(reasons[5], ("s", reasons[5].1));
    assert!(
        reasons[5]
            .1
            .contains("`id` is Int64 but the value is a string"),
        "{reasons:?}"
    );
    assert_eq!(
        letters[5].position.as_deref(),
        Some("message 6 after state 0")
    );
    // The read ends with a checkpoint covering the letters of every stream.
    let covered: Vec<&str> = read
        .events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Checkpoint(c) => Some(c.stream.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(covered, ["fake-tap", "s"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tap_fails_the_read_with_its_status_and_stderr() {
    let fakes = Fakes::new();
    let mut script = Script::new();
    script
        .schema("s", json!({"id": {"type": "integer"}}))
        .record("s", json!({"id": 1}))
        .line("#STDERR Traceback (most recent call last):")
        .line("#STDERR KeyError: 'api_key'")
        .line("#EXIT 2");
    let error = failure(&fakes.source(&script, None)).await;
    assert!(error.contains("exited with status 2"), "{error}");
    assert!(error.contains("| KeyError: 'api_key'"), "{error}");
    assert!(error.contains("| Traceback"), "{error}");

    let mut killed = Script::new();
    killed
        .schema("s", json!({"id": {"type": "integer"}}))
        .line("#KILL");
    let error = failure(&fakes.source(&killed, None)).await;
    assert!(
        error.contains("was killed by signal 9 (SIGKILL)"),
        "{error}"
    );

    let missing =
        cdp_connectors::SingerSource::new(fakes.path("no-such-tap").display().to_string());
    let error = failure(&missing).await;
    assert!(error.contains("could not start"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_reads_the_taps_catalog() {
    let fakes = Fakes::new();
    let catalog = json!({"streams": [{
        "tap_stream_id": "users",
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}}},
        "key_properties": ["id"],
        "replication_key": "at",
    }]});
    let catalog = fakes
        .source(&Script::new(), Some(catalog))
        .discover()
        .await
        .unwrap();
    assert_eq!(catalog.streams.len(), 1);
    assert_eq!(catalog.streams[0].primary_key, ["id"]);
    assert_eq!(catalog.streams[0].cursor_field.as_deref(), Some("at"));
    let off = fakes.source(&Script::new(), None).with_discover(false);
    assert!(off.discover().await.unwrap().streams.is_empty());
}

fn landed_ids(root: &Path, stream: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut stack = vec![root.join(stream)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                for line in std::fs::read_to_string(&path).unwrap().lines() {
                    let row: Value = serde_json::from_str(line).unwrap();
                    ids.push(row["id"].as_i64().unwrap());
                }
            }
        }
    }
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_tap_resumes_from_the_last_committed_state() {
    let fakes = Fakes::new();
    let marker = fakes.path("crashed-once");
    let mut script = Script::new();
    script.schema("s", json!({"id": {"type": "integer"}}));
    for id in 0..10 {
        script.record("s", json!({"id": id}));
        if id % 3 == 2 {
            script.state();
        }
        if id == 7 {
            script.line(format!("#FAIL_ONCE {}", marker.display()));
        }
    }
    script.state();
    let lake = fakes.path("lake");
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let run = |store: Arc<dyn StateStore>| {
        Pipeline::builder("singer-crash")
            .source(fakes.source(&script, None))
            .destination(JsonlDestination::new(&lake))
            .state_store(store)
            .mode(RunMode::Batch)
            .commit_every_rows(1)
            .build()
            .unwrap()
            .run()
    };
    let error = run(store.clone()).await.unwrap_err().to_string();
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(
        error.contains("boom: the tap lost its connection"),
        "{error}"
    );
    // Committed: up to the state after id 5; ids 6 and 7 came after it.
    assert_eq!(landed_ids(&lake, "s"), [0, 1, 2, 3, 4, 5]);
    let report = run(store.clone()).await.unwrap();
    assert_eq!(
        report.rows_in(),
        4,
        "the resume starts after the committed state"
    );
    assert_eq!(landed_ids(&lake, "s"), (0..10).collect::<Vec<_>>());
    let state = store.load("singer-crash").await.unwrap();
    assert_eq!(state.cursor("s").unwrap()["state"], json!({"line": 16}));
}
