//! The Parquet source.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_connectors::{ParquetSource, ParquetSourceConfig};
use cdp_core::{ReadRequest, Source};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::json;

use crate::support::*;

pub(crate) fn write_parquet(path: &Path, ids: std::ops::Range<i64>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Int32, true),
    ]));
    let file = std::fs::File::create(path).unwrap();
    // Small row groups, so an offset lands inside the file's structure.
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(17))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("u{i}")),
            )),
            Arc::new(Int32Array::from_iter_values(ids.map(|i| (i % 7) as i32))),
        ],
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn inferred_schema_reads_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.parquet");
    write_parquet(&path, 0..100);
    let source = ParquetSource::new(&path).with_batch_size(30);
    let catalog = source.discover().await.unwrap();
    assert_eq!(catalog.streams[0].name, "scores");
    assert_eq!(catalog.streams[0].schema.fields().len(), 3);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), (0..100).collect::<Vec<_>>());
    read.assert_aligned(30);
    assert_eq!(read.last_cursor()["files"], json!({"scores.parquet": 100}));
}

#[tokio::test]
async fn explicit_schema_projects_and_casts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.parquet");
    write_parquet(&path, 0..10);
    let schema = Arc::new(Schema::new(vec![
        Field::new("score", DataType::Int64, true),
        Field::new("id", DataType::Int64, false),
        Field::new("added_later", DataType::Utf8, true),
    ]));
    let source = ParquetSource::new(&path).with_schema(schema.clone());
    let read = read_all(&source, ReadRequest::default()).await;
    let batches = read.records();
    assert_eq!(batches[0].schema(), schema);
    assert_eq!(read.ids("id"), (0..10).collect::<Vec<_>>());
    assert_eq!(batches[0].column(2).null_count(), 10);
}

#[tokio::test]
async fn a_directory_resumes_by_row_count_and_picks_up_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir(&lake).unwrap();
    write_parquet(&lake.join("part-1.parquet"), 0..40);
    write_parquet(&lake.join("part-2.parquet"), 40..75);
    let all: Vec<i64> = (0..75).collect();

    for batch_size in [1, 9, 64] {
        let source = ParquetSource::new(&lake).with_batch_size(batch_size);
        let first = read_all(&source, ReadRequest::default()).await;
        assert_eq!(first.ids("id"), all);
        let mut emitted = 0;
        for event in &first.events {
            match event {
                cdp_core::SourceEvent::Batch(b) => emitted += b.num_rows(),
                cdp_core::SourceEvent::Checkpoint(c) if emitted % 3 == 0 || batch_size > 1 => {
                    let rest = read_all(&source, resume("lake", c.cursor.clone())).await;
                    let mut ids = all[..emitted].to_vec();
                    ids.extend(rest.ids("id"));
                    assert_eq!(ids, all, "batch size {batch_size}, cursor {}", c.cursor);
                }
                _ => {}
            }
        }
    }

    let source = ParquetSource::new(&lake);
    let first = read_all(&source, ReadRequest::default()).await;
    write_parquet(&lake.join("part-3.parquet"), 75..80);
    let second = read_all(&source, resume("lake", first.last_cursor())).await;
    assert_eq!(second.ids("id"), (75..80).collect::<Vec<_>>());
}

#[tokio::test]
async fn config_builds_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.parquet");
    write_parquet(&path, 0..5);
    let config: ParquetSourceConfig = serde_json::from_value(json!({
        "path": path,
        "stream": "s",
        "schema": [{"name": "id", "type": "int64", "nullable": false}]
    }))
    .unwrap();
    let source = config.build().unwrap();
    let read = read_all(source.as_ref(), ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [0, 1, 2, 3, 4]);
    assert_eq!(read.records()[0].num_columns(), 1);
}

/// A landing zone written by a pipeline (`{stream}/dt=…/part-….parquet`, with a `_staging`
/// folder) reads back as one stream, in partition order, without the staged files.
#[tokio::test]
async fn a_partitioned_landing_zone_reads_back_as_one_stream() {
    use cdp_core::{Destination, OpenContext, StreamSpec};
    use chrono::TimeZone;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let mut dest = cdp_connectors::ParquetDestination::new(&root);
    dest.open(&OpenContext {
        pipeline_id: "p".into(),
        committed_epoch: 0,
    })
    .await
    .unwrap();
    for (epoch, day, ids) in [(1, 2, 0..3), (2, 1, 3..5)] {
        let names: Vec<String> = ids.clone().map(|i| format!("user {i}")).collect();
        let data = arrow::array::RecordBatch::try_new(
            crate::support::id_name_schema(),
            vec![
                std::sync::Arc::new(arrow::array::Int64Array::from_iter_values(ids)),
                std::sync::Arc::new(arrow::array::StringArray::from(names)),
            ],
        )
        .unwrap();
        let mut batch = cdp_core::Batch::new("events", data, "t");
        batch.meta.synced_at = chrono::Utc.with_ymd_and_hms(2024, 5, day, 0, 0, 0).unwrap();
        let batch = batch.stamp().unwrap();
        dest.prepare(&StreamSpec::new("events", batch.data.schema()))
            .await
            .unwrap();
        dest.write(&batch).await.unwrap();
        dest.flush(epoch).await.unwrap();
        dest.commit(epoch).await.unwrap();
    }
    // Something staged but never committed must not be read.
    std::fs::create_dir_all(root.join("events/_staging")).unwrap();
    std::fs::copy(
        root.join("events/dt=2024-05-01/part-p-0000000002-00000.parquet"),
        root.join("events/_staging/part-x.parquet"),
    )
    .unwrap();

    let source = cdp_connectors::ParquetSource::new(root.join("events"));
    let mut events = source.read(cdp_core::ReadRequest::default()).unwrap();
    let mut ids = Vec::new();
    let mut cursor = None;
    while let Some(event) = futures::StreamExt::next(&mut events).await {
        match event.unwrap() {
            cdp_core::SourceEvent::Batch(b) => ids.extend(crate::support::ids(&b.data, "id")),
            cdp_core::SourceEvent::Checkpoint(c) => cursor = Some(c.cursor),
            _ => {}
        }
    }
    // dt=2024-05-01 sorts first.
    assert_eq!(ids, [3, 4, 0, 1, 2]);
    let cursor = cursor.unwrap();
    assert!(
        cursor["files"]
            .get("dt=2024-05-02/part-p-0000000001-00000.parquet")
            .is_some(),
        "{cursor}"
    );
}
