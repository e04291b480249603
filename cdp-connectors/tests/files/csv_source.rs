//! The CSV source.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Field, Schema};
use cdp_connectors::{CsvSource, CsvSourceConfig};
use cdp_core::{Error, ReadRequest, Source};
use serde_json::json;

use crate::support::*;

fn csv_rows(range: std::ops::Range<i64>) -> String {
    range.map(|i| format!("{i},user {i}\n")).collect()
}

#[tokio::test]
async fn explicit_schema_reads_every_row_after_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    write(&path, &format!("id,name\n{}", csv_rows(0..50)));
    let source = CsvSource::new(&path)
        .with_schema(id_name_schema())
        .with_batch_size(16);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), (0..50).collect::<Vec<_>>());
    read.assert_aligned(16);
    assert_eq!(read.records()[0].schema(), id_name_schema());
    assert_eq!(
        read.last_cursor()["files"],
        json!({"users.csv": file_len(&path)})
    );
}

#[tokio::test]
async fn inferred_schema_from_the_header_and_first_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.csv");
    write(
        &path,
        "order_id,total,paid,note\n1,9.5,true,\"first, with comma\"\n2,12,false,\"multi\nline\"\n",
    );
    let source = CsvSource::new(&path);
    let schema = source.discover().await.unwrap().streams[0].schema.clone();
    let types: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Float64,
            DataType::Boolean,
            DataType::Utf8
        ]
    );
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 2);
    let notes = read.records()[0].column(3).as_string::<i32>().clone();
    assert_eq!(notes.value(0), "first, with comma");
    assert_eq!(notes.value(1), "multi\nline");
}

#[tokio::test]
async fn a_directory_reads_each_file_after_its_own_header() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    write(
        &exports.join("2024-01.csv"),
        &format!("id,name\n{}", csv_rows(0..5)),
    );
    write(
        &exports.join("2024-02.csv"),
        &format!("id,name\n{}", csv_rows(5..12)),
    );
    let source = CsvSource::new(&exports).with_batch_size(4);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), (0..12).collect::<Vec<_>>());
    assert!(read.dead_letters().is_empty());
    read.assert_aligned(4);
    assert_eq!(source.discover().await.unwrap().streams[0].name, "exports");
}

#[tokio::test]
async fn resuming_from_any_checkpoint_reads_exactly_the_remaining_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    write(&path, &format!("id,name\n{}", csv_rows(0..120)));
    let all: Vec<i64> = (0..120).collect();
    for batch_size in [1, 5, 32, 500] {
        let source = CsvSource::new(&path)
            .with_schema(id_name_schema())
            .with_batch_size(batch_size);
        let first = read_all(&source, ReadRequest::default()).await;
        assert_eq!(first.ids("id"), all);
        let mut emitted = 0;
        for event in &first.events {
            match event {
                cdp_core::SourceEvent::Batch(b) => emitted += b.num_rows(),
                cdp_core::SourceEvent::Checkpoint(c) => {
                    let rest = read_all(&source, resume("rows", c.cursor.clone())).await;
                    let mut ids = all[..emitted].to_vec();
                    ids.extend(rest.ids("id"));
                    assert_eq!(ids, all, "batch size {batch_size}, cursor {}", c.cursor);
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn a_file_appended_to_continues_without_rereading_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    write(&path, &format!("id,name\n{}", csv_rows(0..10)));
    let source = CsvSource::new(&path).with_schema(id_name_schema());
    let first = read_all(&source, ReadRequest::default()).await;
    append(&path, &csv_rows(10..13));
    let second = read_all(&source, resume("rows", first.last_cursor())).await;
    assert_eq!(second.ids("id"), [10, 11, 12]);
    assert!(second.dead_letters().is_empty());
}

#[tokio::test]
async fn bad_rows_become_dead_letters_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    let text = concat!(
        "id,name\n",
        "1,a\n",
        "2,b,extra\n",
        "three,c\n",
        "4,\"quoted\nacross lines\"\n",
        "5\n",
        "6,f\n",
    );
    write(&path, text);
    for batch_size in [1, 2, 100] {
        let source = CsvSource::new(&path)
            .with_schema(id_name_schema())
            .with_batch_size(batch_size);
        let read = read_all(&source, ReadRequest::default()).await;
        assert_eq!(read.ids("id"), [1, 4, 6], "batch size {batch_size}");
        let dead: Vec<_> = read
            .dead_letters()
            .into_iter()
            .map(|d| (d.position.unwrap(), d.payload))
            .collect();
        assert_eq!(
            dead,
            [
                ("bad.csv:3".to_string(), "2,b,extra".to_string()),
                ("bad.csv:4".to_string(), "three,c".to_string()),
                ("bad.csv:7".to_string(), "5".to_string()),
            ],
            "batch size {batch_size}"
        );
        assert_eq!(
            read.last_cursor()["files"],
            json!({"bad.csv": file_len(&path)})
        );
    }
}

#[tokio::test]
async fn header_columns_are_matched_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swapped.csv");
    write(&path, "name,id\na,1\n");
    let source = CsvSource::new(&path).with_schema(id_name_schema());
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1]);
    assert_eq!(read.records()[0].schema(), id_name_schema());

    // A required column the header lacks is a configuration error naming it.
    write(&path, "name\na\n");
    let mut stream = source.read(ReadRequest::default()).unwrap();
    use futures::StreamExt;
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("no column `id`"), "{err}");
}

#[tokio::test]
async fn config_sets_delimiter_and_headerless_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.csv");
    write(&path, "1;x\n2;y\n");
    let config: CsvSourceConfig = serde_json::from_value(json!({
        "path": path,
        "delimiter": ";",
        "has_header": false,
        "schema": [{"name": "id", "type": "int64"}, {"name": "tag", "type": "utf8"}]
    }))
    .unwrap();
    let source = config.build().unwrap();
    let read = read_all(source.as_ref(), ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 2]);

    let mut bad = CsvSourceConfig::new(&path);
    bad.format.delimiter = '→';
    assert!(matches!(bad.build(), Err(Error::Config(_))));
}

#[tokio::test]
async fn reserved_cdp_columns_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sys.csv");
    write(&path, "id,_cdp_source\n1,x\n");
    let err = CsvSource::new(&path).discover().await.unwrap_err();
    assert!(err.to_string().contains("_cdp_source"), "{err}");
    let schema = Arc::new(Schema::new(vec![Field::new(
        "_cdp_op",
        DataType::Utf8,
        true,
    )]));
    assert!(CsvSource::new(&path).with_schema(schema).schema().is_err());
}
