//! The JSONL source.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use cdp_connectors::{JsonlSource, JsonlSourceConfig};
use cdp_core::{Error, ReadRequest, Source, SyncMode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn explicit_schema_reads_every_row_in_aligned_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.jsonl");
    write(&path, &jsonl_lines(0..100));
    let source = JsonlSource::new(&path)
        .with_schema(id_name_schema())
        .with_batch_size(16);

    let read = read_all(&source, ReadRequest::default()).await;

    assert_eq!(read.ids("id"), (0..100).collect::<Vec<_>>());
    read.assert_aligned(16);
    assert_eq!(read.batches().len(), 7);
    assert_eq!(read.records()[0].schema(), id_name_schema());
    assert_eq!(
        read.last_cursor()["files"],
        json!({"users.jsonl": file_len(&path)})
    );
    let catalog = source.discover().await.unwrap();
    assert_eq!(catalog.streams[0].name, "users");
    assert!(catalog.streams[0].supports(SyncMode::IncrementalAppend));
    assert!(catalog.streams[0].supports(SyncMode::FullRefresh));
}

#[tokio::test]
async fn inferred_schema_keeps_nested_objects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    write(
        &path,
        concat!(
            r#"{"event":"signup","userId":"u1","context":{"ip":"1.2.3.4","page":{"path":"/"}},"properties":{"plan":"pro","seats":3}}"#,
            "\n",
            r#"{"event":"login","userId":"u2","context":{"ip":"5.6.7.8"},"properties":{"seats":1.5}}"#,
            "\n"
        ),
    );
    let source = JsonlSource::new(&path);
    let schema = source.discover().await.unwrap().streams[0].schema.clone();
    let context = schema.field_with_name("context").unwrap();
    assert!(matches!(context.data_type(), DataType::Struct(_)));
    let properties = schema.field_with_name("properties").unwrap();
    let DataType::Struct(fields) = properties.data_type() else {
        panic!("properties is {}", properties.data_type());
    };
    // An integer in one record and a float in another widen to a float.
    assert_eq!(
        fields.find("seats").unwrap().1.data_type(),
        &DataType::Float64
    );

    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 2);
    assert!(read.dead_letters().is_empty());
    assert_eq!(read.records()[0].schema(), schema);
}

#[tokio::test]
async fn infer_records_limits_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sample.jsonl");
    write(&path, "{\"a\":1}\n{\"b\":\"x\"}\n");
    let source = JsonlSource::new(&path).with_infer_records(1);
    let schema = source.schema().unwrap();
    assert_eq!(schema.fields().len(), 1);
    assert_eq!(schema.field(0).name(), "a");
}

#[tokio::test]
async fn a_directory_is_one_stream_of_its_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    std::fs::create_dir(&events).unwrap();
    write(&events.join("b.jsonl"), &jsonl_lines(10..20));
    write(&events.join("a.jsonl"), &jsonl_lines(0..10));
    write(&events.join("notes.txt"), "not data\n");
    std::fs::create_dir(events.join("sub.jsonl")).unwrap();

    let source = JsonlSource::new(&events).with_batch_size(4);
    assert_eq!(source.discover().await.unwrap().streams[0].name, "events");
    let read = read_all(&source, ReadRequest::default()).await;

    assert_eq!(read.ids("id"), (0..20).collect::<Vec<_>>());
    read.assert_aligned(4);
    assert!(read.dead_letters().is_empty());
    assert_eq!(
        read.last_cursor()["files"],
        json!({
            "a.jsonl": file_len(&events.join("a.jsonl")),
            "b.jsonl": file_len(&events.join("b.jsonl")),
        })
    );
    // A batch never spans two files, and its checkpoint names the file it came from.
    assert_eq!(
        read.cursors()[2]["files"],
        json!({"a.jsonl": file_len(&events.join("a.jsonl"))})
    );
}

#[tokio::test]
async fn resuming_from_any_checkpoint_reads_exactly_the_remaining_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write(&path, &jsonl_lines(0..250));
    let all: Vec<i64> = (0..250).collect();

    for batch_size in [1, 3, 7, 64, 100, 1000] {
        let source = JsonlSource::new(&path)
            .with_schema(id_name_schema())
            .with_batch_size(batch_size);
        let first = read_all(&source, ReadRequest::default()).await;
        assert_eq!(first.ids("id"), all, "batch size {batch_size}");

        // Every checkpoint: rows before it plus rows of a resume from it are all rows, once.
        let mut emitted = 0usize;
        let mut checkpoints = 0;
        for event in &first.events {
            match event {
                cdp_core::SourceEvent::Batch(b) => emitted += b.num_rows(),
                cdp_core::SourceEvent::Checkpoint(c) => {
                    checkpoints += 1;
                    if checkpoints % 5 != 1 {
                        continue; // a sample keeps the small batch sizes quick
                    }
                    let rest = read_all(&source, resume("events", c.cursor.clone())).await;
                    let mut ids = all[..emitted].to_vec();
                    ids.extend(rest.ids("id"));
                    assert_eq!(ids, all, "batch size {batch_size}, cursor {}", c.cursor);
                    rest.assert_aligned(batch_size);
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn a_cursor_taken_mid_file_by_hand_resumes_at_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let text = jsonl_lines(0..50);
    write(&path, &text);
    // Offset of the start of line 21 (id 20).
    let offset = jsonl_lines(0..20).len();
    let source = JsonlSource::new(&path).with_schema(id_name_schema());
    let rest = read_all(
        &source,
        resume("events", json!({"files": {"events.jsonl": offset}})),
    )
    .await;
    assert_eq!(rest.ids("id"), (20..50).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_file_appended_to_after_a_checkpoint_continues_from_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write(&path, &jsonl_lines(0..30));
    let source = JsonlSource::new(&path)
        .with_schema(id_name_schema())
        .with_batch_size(8);
    let first = read_all(&source, ReadRequest::default()).await;
    assert_eq!(first.rows(), 30);

    append(&path, &jsonl_lines(30..45));
    let second = read_all(&source, resume("events", first.last_cursor())).await;
    assert_eq!(second.ids("id"), (30..45).collect::<Vec<_>>());
    assert_eq!(
        second.last_cursor()["files"],
        json!({"events.jsonl": file_len(&path)})
    );

    // Nothing new: nothing read, no checkpoint needed.
    let third = read_all(&source, resume("events", second.last_cursor())).await;
    assert!(third.events.is_empty(), "{:?}", third.events);
}

#[tokio::test]
async fn a_last_line_still_being_written_waits_for_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.jsonl");
    write(&path, "{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"na");
    let source = JsonlSource::new(&path).with_schema(id_name_schema());
    let first = read_all(&source, ReadRequest::default()).await;
    assert_eq!(first.ids("id"), [1]);
    assert!(first.dead_letters().is_empty());
    assert_eq!(first.last_cursor()["files"], json!({"live.jsonl": 20}));

    append(&path, "me\":\"b\"}");
    // Complete now, even without its newline.
    let second = read_all(&source, resume("live", first.last_cursor())).await;
    assert_eq!(second.ids("id"), [2]);
    assert_eq!(
        second.last_cursor()["files"],
        json!({"live.jsonl": file_len(&path)})
    );
}

#[tokio::test]
async fn malformed_and_misfit_lines_become_dead_letters_and_the_rest_comes_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.jsonl");
    let mut text = String::new();
    let mut bad_lines = Vec::new();
    let mut good = Vec::new();
    for i in 0..200i64 {
        let line = match i {
            10 => "{\"id\": 10, \"name\": \"unterminated}".to_string(),
            57 => "not json at all".to_string(),
            58 => "{\"id\": \"fifty-eight\", \"name\": \"wrong type\"}".to_string(),
            120 => String::new(),
            150 => "{\"name\": \"no id\"}".to_string(),
            199 => "[1, 2, 3]".to_string(),
            77 => "{\"id\": 77, \"name\": \"trailing comma\",}".to_string(),
            // Commas and braces inside strings are content, not syntax.
            88 => "{\"id\": 88, \"name\": \"in \\\",}\\\" quotes,]\"}".to_string(),
            _ => {
                good.push(i);
                format!("{{\"id\":{i},\"name\":\"user {i}\"}}")
            }
        };
        if i == 88 {
            good.push(i);
        }
        if matches!(i, 10 | 57 | 58 | 77 | 150 | 199) {
            bad_lines.push((format!("mixed.jsonl:{}", i + 1), line.clone()));
        }
        text.push_str(&line);
        text.push('\n');
    }
    write(&path, &text);

    for batch_size in [7, 64, 8192] {
        let source = JsonlSource::new(&path)
            .with_schema(id_name_schema())
            .with_batch_size(batch_size);
        let read = read_all(&source, ReadRequest::default()).await;

        assert_eq!(read.ids("id"), good, "batch size {batch_size}");
        read.assert_aligned(batch_size);
        let dead = read.dead_letters();
        let found: Vec<(String, String)> = dead
            .iter()
            .map(|d| (d.position.clone().unwrap(), d.payload.clone()))
            .collect();
        assert_eq!(found, bad_lines, "batch size {batch_size}");
        for letter in &dead {
            assert_eq!(letter.stream, "mixed");
            assert_eq!(letter.stage, "source");
            assert!(!letter.reason.is_empty());
        }
        assert!(dead[2].reason.contains("fifty-eight") || dead[2].reason.contains("Int64"));
        assert!(dead[3].reason.contains("comma"), "{}", dead[3].reason);
        // The final checkpoint covers the whole file, the trailing bad line included.
        assert_eq!(
            read.last_cursor()["files"],
            json!({"mixed.jsonl": file_len(&path)})
        );
        // Every dead letter is followed by a checkpoint before the stream ends.
        let last_dead = read
            .events
            .iter()
            .rposition(|e| matches!(e, cdp_core::SourceEvent::DeadLetter(_)))
            .unwrap();
        assert!(
            read.events[last_dead..]
                .iter()
                .any(|e| matches!(e, cdp_core::SourceEvent::Checkpoint(_)))
        );
    }
}

#[tokio::test]
async fn a_resume_after_a_dead_letter_does_not_repeat_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let mut text = jsonl_lines(0..5);
    text.push_str("{oops\n");
    text.push_str(&jsonl_lines(5..10));
    write(&path, &text);
    let source = JsonlSource::new(&path)
        .with_schema(id_name_schema())
        .with_batch_size(3);
    let first = read_all(&source, ReadRequest::default()).await;
    assert_eq!(first.dead_letters().len(), 1);
    assert_eq!(
        first.dead_letters()[0].position.as_deref(),
        Some("bad.jsonl:6")
    );

    // Resume from each checkpoint; the dead letter shows up only if the checkpoint is
    // before it, and its line number stays right.
    let mut seen_dead = false;
    for event in &first.events {
        match event {
            cdp_core::SourceEvent::DeadLetter(_) => seen_dead = true,
            cdp_core::SourceEvent::Checkpoint(c) => {
                let rest = read_all(&source, resume("bad", c.cursor.clone())).await;
                let dead = rest.dead_letters();
                if seen_dead {
                    assert!(dead.is_empty(), "dead letter repeated after {}", c.cursor);
                } else {
                    assert_eq!(dead.len(), 1);
                    assert_eq!(dead[0].position.as_deref(), Some("bad.jsonl:6"));
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn full_refresh_ignores_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write(&path, &jsonl_lines(0..10));
    let source = JsonlSource::new(&path).with_schema(id_name_schema());
    let mut request = resume(
        "events",
        json!({"files": {"events.jsonl": file_len(&path)}}),
    );
    assert_eq!(read_all(&source, request.clone()).await.rows(), 0);
    request.sync_mode = Some(SyncMode::FullRefresh);
    assert_eq!(read_all(&source, request).await.rows(), 10);
}

#[tokio::test]
async fn reserved_cdp_columns_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sys.jsonl");
    write(&path, "{\"id\":1,\"_cdp_op\":0}\n");

    let inferred = JsonlSource::new(&path);
    let err = inferred.discover().await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("_cdp_op"), "{err}");

    let schema = Arc::new(Schema::new(vec![Field::new(
        "_cdp_x",
        DataType::Utf8,
        true,
    )]));
    let explicit = JsonlSource::new(&path).with_schema(schema);
    let err = explicit.read(ReadRequest::default()).err().unwrap();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn a_bad_cursor_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write(&path, &jsonl_lines(0..3));
    let source = JsonlSource::new(&path).with_schema(id_name_schema());
    let err = source.read(resume("events", json!(42))).err().unwrap();
    assert!(err.to_string().contains("file cursor"), "{err}");
}

#[tokio::test]
async fn config_builds_the_source_and_rejects_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write(&path, &jsonl_lines(0..5));
    let config: JsonlSourceConfig = serde_json::from_value(json!({
        "path": path,
        "stream": "signups",
        "batch_size": 2,
        "schema": [
            {"name": "id", "type": "int64", "nullable": false},
            {"name": "name", "type": "utf8"}
        ]
    }))
    .unwrap();
    let source = config.build().unwrap();
    assert_eq!(source.name(), "jsonl");
    assert_eq!(source.discover().await.unwrap().streams[0].name, "signups");
    let read = read_all(source.as_ref(), ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [0, 1, 2, 3, 4]);
    read.assert_aligned(2);

    let unknown = serde_json::from_value::<JsonlSourceConfig>(json!({"path": "x", "batchsize": 1}));
    assert!(unknown.unwrap_err().to_string().contains("batchsize"));
    let zero = JsonlSourceConfig::new(&path).with_batch_size(0);
    assert!(matches!(zero.build(), Err(Error::Config(_))));
}

#[tokio::test]
async fn dropping_the_stream_stops_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.jsonl");
    write(&path, &jsonl_lines(0..20_000));
    let source = JsonlSource::new(&path)
        .with_schema(id_name_schema())
        .with_batch_size(10);
    let mut stream = source.read(ReadRequest::default()).unwrap();
    use futures::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, cdp_core::SourceEvent::Batch(_)));
    drop(stream);
}

#[test]
fn public_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JsonlSource>();
    assert_send_sync::<cdp_connectors::CsvSource>();
    assert_send_sync::<cdp_connectors::ParquetSource>();
    assert_send_sync::<cdp_connectors::JsonlDestination>();
    assert_send_sync::<cdp_connectors::ParquetDestination>();
    assert_send_sync::<JsonlSourceConfig>();
}

#[tokio::test]
async fn configured_timestamp_and_date_columns_decode_from_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("times.jsonl");
    write(
        &path,
        "{\"id\":1,\"at\":\"2024-05-01T10:00:00Z\",\"day\":\"2024-05-01\"}\n\
         {\"id\":2,\"at\":\"yesterday\",\"day\":\"2024-05-02\"}\n",
    );
    let config: JsonlSourceConfig = serde_json::from_value(json!({
        "path": path,
        "schema": [
            {"name": "id", "type": "int64"},
            {"name": "at", "type": "timestamp_us"},
            {"name": "day", "type": "date32"}
        ]
    }))
    .unwrap();
    let read = read_all(config.build().unwrap().as_ref(), ReadRequest::default()).await;
    let batches = read.records();
    let at = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(at.value(0), 1_714_557_600_000_000);
    assert_eq!(read.dead_letters().len(), 1);
    assert_eq!(
        read.dead_letters()[0].position.as_deref(),
        Some("times.jsonl:2")
    );
}

#[tokio::test]
async fn a_line_with_two_values_is_one_dead_letter_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.jsonl");
    write(
        &path,
        "{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"name\":\"b\"} {\"id\":3,\"name\":\"c\"}\n{bad\n{\"id\":4,\"name\":\"d\"}\n{\"id\":5}{\"id\":6}\n",
    );
    for batch_size in [1, 2, 10] {
        let source = JsonlSource::new(&path)
            .with_schema(id_name_schema())
            .with_batch_size(batch_size);
        let read = read_all(&source, ReadRequest::default()).await;
        assert_eq!(read.ids("id"), [1, 4], "batch size {batch_size}");
        let dead: Vec<_> = read
            .dead_letters()
            .into_iter()
            .map(|d| (d.position.unwrap(), d.reason))
            .collect();
        let positions: Vec<_> = dead.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(positions, ["two.jsonl:2", "two.jsonl:3", "two.jsonl:5"]);
        assert!(
            dead[0].1.contains("more than one JSON value"),
            "{}",
            dead[0].1
        );
        assert!(
            dead[2].1.contains("more than one JSON value"),
            "{}",
            dead[2].1
        );
        read.assert_aligned(batch_size);
        // Resuming from every checkpoint gives each row once.
        let mut emitted = 0;
        for event in &read.events {
            match event {
                cdp_core::SourceEvent::Batch(b) => emitted += b.num_rows(),
                cdp_core::SourceEvent::Checkpoint(c) => {
                    let rest = read_all(&source, resume("two", c.cursor.clone())).await;
                    let mut ids = [1, 4][..emitted].to_vec();
                    ids.extend(rest.ids("id"));
                    assert_eq!(ids, [1, 4], "batch size {batch_size}, {}", c.cursor);
                }
                _ => {}
            }
        }
    }
}
