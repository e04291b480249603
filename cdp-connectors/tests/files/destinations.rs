//! The JSONL and Parquet landing-zone destinations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use cdp_connectors::{
    JsonlDestination, JsonlDestinationConfig, ParquetCompression, ParquetDestination,
    ParquetDestinationConfig,
};
use cdp_core::{
    Batch, DEAD_LETTER_STREAM, DeadLetter, Destination, Error, OpenContext, StreamSpec,
};
use chrono::{TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;

use crate::support::ids;

fn ctx(committed_epoch: u64) -> OpenContext {
    OpenContext {
        pipeline_id: "test".into(),
        committed_epoch,
    }
}

fn users(range: std::ops::Range<i64>) -> RecordBatch {
    RecordBatch::try_new(
        crate::support::id_name_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(range.clone())),
            Arc::new(StringArray::from_iter_values(
                range.map(|i| format!("user {i}")),
            )),
        ],
    )
    .unwrap()
}

/// A stamped batch synced on 2024-05-`day`.
fn batch(stream: &str, data: RecordBatch, day: u32) -> Batch {
    let mut batch = Batch::new(stream, data, "test");
    batch.meta.synced_at = Utc.with_ymd_and_hms(2024, 5, day, 12, 0, 0).unwrap();
    batch.stamp().unwrap()
}

fn spec(stream: &str, schema: SchemaRef) -> StreamSpec {
    StreamSpec::new(stream, schema)
}

/// Published files under `root`, relative, skipping the staging directory.
fn published(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.starts_with("_staging") {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

/// The epochs staged under `root` (`epoch-N`), without the run token of each directory.
fn staged_epochs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = staged_dirs(root)
        .iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let mut parts = name.splitn(3, '-');
            format!("{}-{}", parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    names.sort();
    names
}

/// The staging directories of pipeline `test` under `root`, sorted.
fn staged_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("_staging/test"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn read_jsonl_ids(path: &Path) -> Vec<i64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn all_ids(root: &Path, ext: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for rel in published(root) {
        let path: PathBuf = root.join(&rel);
        if !rel.ends_with(ext) {
            continue;
        }
        if ext == "jsonl" {
            out.extend(read_jsonl_ids(&path));
        } else {
            for b in read_parquet(&path) {
                out.extend(ids(&b, "id"));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn jsonl_write_flush_commit_publishes_partitioned_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("landing");
    let mut dest = JsonlDestination::new(&root);
    dest.check().await.unwrap();
    dest.open(&ctx(0)).await.unwrap();
    dest.prepare(&spec("users", crate::support::id_name_schema()))
        .await
        .unwrap();
    dest.write(&batch("users", users(0..10), 1)).await.unwrap();
    dest.write(&batch("users", users(10..15), 2)).await.unwrap();
    dest.write(&batch("users", users(15..20), 1)).await.unwrap();
    dest.flush(1).await.unwrap();
    // Staged, not yet visible.
    assert!(published(&root).is_empty());
    assert_eq!(staged_epochs(&root), ["epoch-1"]);
    dest.commit(1).await.unwrap();

    assert_eq!(
        published(&root),
        BTreeSet::from([
            "users/dt=2024-05-01/part-test-0000000001-00000.jsonl".to_string(),
            "users/dt=2024-05-02/part-test-0000000001-00000.jsonl".to_string(),
        ])
    );
    assert!(staged_epochs(&root).is_empty());
    let day1 = read_jsonl_ids(&root.join("users/dt=2024-05-01/part-test-0000000001-00000.jsonl"));
    assert_eq!(day1, (0..10).chain(15..20).collect::<Vec<_>>());
    assert_eq!(all_ids(&root, "jsonl"), (0..20).collect::<Vec<_>>());

    // The next epoch writes new files next to the old ones.
    dest.write(&batch("users", users(20..25), 1)).await.unwrap();
    dest.flush(2).await.unwrap();
    dest.commit(2).await.unwrap();
    dest.close().await.unwrap();
    assert!(published(&root).contains("users/dt=2024-05-01/part-test-0000000002-00000.jsonl"));
    assert_eq!(all_ids(&root, "jsonl"), (0..25).collect::<Vec<_>>());

    // The system columns travel with the rows.
    let line =
        std::fs::read_to_string(root.join("users/dt=2024-05-02/part-test-0000000001-00000.jsonl"))
            .unwrap();
    let row: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(row["_cdp_source"], json!("test"));
    assert!(row["_cdp_record_hash"].is_string());
}

#[tokio::test]
async fn parquet_write_flush_commit_round_trips_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let mut dest = ParquetDestination::new(&root).with_compression(ParquetCompression::Snappy);
    dest.open(&ctx(0)).await.unwrap();
    dest.prepare(&spec("users", crate::support::id_name_schema()))
        .await
        .unwrap();
    for i in 0..10 {
        dest.write(&batch("users", users(i * 100..(i + 1) * 100), 3))
            .await
            .unwrap();
    }
    dest.write(&batch("orders", users(0..7), 3)).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.commit(1).await.unwrap();

    assert_eq!(
        published(&root),
        BTreeSet::from([
            "orders/dt=2024-05-03/part-test-0000000001-00000.parquet".to_string(),
            "users/dt=2024-05-03/part-test-0000000001-00000.parquet".to_string(),
        ])
    );
    let batches =
        read_parquet(&root.join("users/dt=2024-05-03/part-test-0000000001-00000.parquet"));
    let ids: Vec<i64> = batches.iter().flat_map(|b| ids(b, "id")).collect();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
    let schema = batches[0].schema();
    assert!(schema.column_with_name("_cdp_record_hash").is_some());
    assert!(schema.column_with_name("name").is_some());
}

#[tokio::test]
async fn a_crash_after_flush_is_published_when_the_epoch_was_committed() {
    for (format, ext) in [("jsonl", "jsonl"), ("parquet", "parquet")] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("zone");
        let make = |root: &Path| -> Box<dyn Destination> {
            match format {
                "jsonl" => Box::new(JsonlDestination::new(root)),
                _ => Box::new(ParquetDestination::new(root)),
            }
        };
        {
            let mut dest = make(&root);
            dest.open(&ctx(4)).await.unwrap();
            dest.write(&batch("users", users(0..30), 1)).await.unwrap();
            dest.flush(5).await.unwrap();
            // Dropped here: the pipeline committed epoch 5, the destination never heard.
        }
        assert!(published(&root).is_empty());
        assert_eq!(staged_epochs(&root), ["epoch-5"]);

        let mut dest = make(&root);
        dest.open(&ctx(5)).await.unwrap();
        assert_eq!(
            published(&root),
            BTreeSet::from([format!(
                "users/dt=2024-05-01/part-test-0000000005-00000.{ext}"
            )])
        );
        assert!(staged_epochs(&root).is_empty());
        assert_eq!(all_ids(&root, ext), (0..30).collect::<Vec<_>>());
        // Writes go on with the next epoch.
        dest.write(&batch("users", users(30..31), 1)).await.unwrap();
        dest.flush(6).await.unwrap();
        dest.commit(6).await.unwrap();
        assert_eq!(all_ids(&root, ext), (0..31).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn open_discards_what_was_staged_after_the_committed_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("zone");
    {
        let mut dest = ParquetDestination::new(&root);
        dest.open(&ctx(0)).await.unwrap();
        dest.write(&batch("users", users(0..10), 1)).await.unwrap();
        dest.flush(1).await.unwrap();
        dest.write(&batch("users", users(10..20), 1)).await.unwrap();
        dest.flush(2).await.unwrap();
        // Half-written epoch 3, never flushed.
        dest.write(&batch("users", users(20..25), 1)).await.unwrap();
    }
    assert_eq!(staged_epochs(&root), ["epoch-1", "epoch-2", "epoch-3"]);

    // Only epoch 1 was committed by the pipeline: 2 and 3 will be replayed.
    let mut dest = ParquetDestination::new(&root);
    dest.open(&ctx(1)).await.unwrap();
    assert!(staged_epochs(&root).is_empty());
    assert_eq!(all_ids(&root, "parquet"), (0..10).collect::<Vec<_>>());

    // The replay writes epoch 2 again, under the same names.
    dest.write(&batch("users", users(10..25), 1)).await.unwrap();
    dest.flush(2).await.unwrap();
    dest.commit(2).await.unwrap();
    assert_eq!(all_ids(&root, "parquet"), (0..25).collect::<Vec<_>>());
    assert_eq!(published(&root).len(), 2);
}

#[tokio::test]
async fn committing_twice_and_reopening_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("zone");
    let mut dest = JsonlDestination::new(&root);
    dest.open(&ctx(0)).await.unwrap();
    dest.write(&batch("users", users(0..5), 1)).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.commit(1).await.unwrap();
    let before = published(&root);
    dest.commit(1).await.unwrap();
    assert_eq!(published(&root), before);

    let mut again = JsonlDestination::new(&root);
    again.open(&ctx(1)).await.unwrap();
    again.commit(1).await.unwrap();
    assert_eq!(published(&root), before);
    assert_eq!(all_ids(&root, "jsonl"), (0..5).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_interrupted_commit_is_finished_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("zone");
    {
        let mut dest = JsonlDestination::new(&root);
        dest.open(&ctx(0)).await.unwrap();
        dest.write(&batch("users", users(0..5), 1)).await.unwrap();
        dest.write(&batch("users", users(5..9), 2)).await.unwrap();
        dest.flush(1).await.unwrap();
    }
    // Simulate a crash half-way through the renames: one file already moved.
    let rel = "users/dt=2024-05-01/part-test-0000000001-00000.jsonl";
    std::fs::create_dir_all(root.join("users/dt=2024-05-01")).unwrap();
    let staged = staged_dirs(&root);
    assert_eq!(staged_epochs(&root), ["epoch-1"]);
    std::fs::rename(staged[0].join(rel), root.join(rel)).unwrap();

    let mut dest = JsonlDestination::new(&root);
    dest.open(&ctx(1)).await.unwrap();
    assert_eq!(published(&root).len(), 2);
    assert_eq!(all_ids(&root, "jsonl"), (0..9).collect::<Vec<_>>());
}

#[tokio::test]
async fn partition_column_splits_rows_by_their_own_day() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]));
    let day = |d: u32| {
        Utc.with_ymd_and_hms(2024, 1, d, 23, 59, 0)
            .unwrap()
            .timestamp_micros()
    };
    let data = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(day(1)),
                    Some(day(2)),
                    Some(day(1)),
                    None,
                    Some(day(3)),
                ])
                .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("zone");
    let config: ParquetDestinationConfig =
        serde_json::from_value(json!({"root": root, "partition_column": "at"})).unwrap();
    let mut dest = config.build().unwrap();
    dest.open(&ctx(0)).await.unwrap();
    dest.prepare(&spec("events", schema)).await.unwrap();
    dest.write(&batch("events", data, 9)).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.commit(1).await.unwrap();

    let file = |d: &str| root.join(format!("events/dt={d}/part-test-0000000001-00000.parquet"));
    let ids_of = |d: &str| -> Vec<i64> {
        read_parquet(&file(d))
            .iter()
            .flat_map(|b| ids(b, "id"))
            .collect()
    };
    assert_eq!(ids_of("2024-01-01"), [1, 3]);
    assert_eq!(ids_of("2024-01-02"), [2]);
    assert_eq!(ids_of("2024-01-03"), [5]);
    // A null partition value falls back to the sync day.
    assert_eq!(ids_of("2024-05-09"), [4]);

    let mut bad = JsonlDestination::new(dir.path().join("other")).with_partition_column("id");
    bad.open(&ctx(0)).await.unwrap();
    let err = bad
        .write(&batch("users", users(0..2), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Schema { .. }), "{err}");
}

#[tokio::test]
async fn schema_evolution_starts_a_new_parquet_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let mut dest = ParquetDestination::new(&root);
    dest.open(&ctx(0)).await.unwrap();
    dest.prepare(&spec("users", crate::support::id_name_schema()))
        .await
        .unwrap();
    dest.write(&batch("users", users(0..3), 1)).await.unwrap();

    let wider = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("plan", DataType::Utf8, true),
    ]));
    let data = RecordBatch::try_new(
        wider.clone(),
        vec![
            Arc::new(Int64Array::from(vec![3, 4])),
            Arc::new(StringArray::from(vec!["c", "d"])),
            Arc::new(StringArray::from(vec![Some("pro"), None])),
        ],
    )
    .unwrap();
    dest.prepare(&spec("users", wider)).await.unwrap();
    dest.write(&batch("users", data, 1)).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.commit(1).await.unwrap();

    let files: Vec<String> = published(&root).into_iter().collect();
    assert_eq!(
        files,
        [
            "users/dt=2024-05-01/part-test-0000000001-00000.parquet",
            "users/dt=2024-05-01/part-test-0000000001-00001.parquet",
        ]
    );
    let second = read_parquet(&root.join(&files[1]));
    assert!(second[0].schema().column_with_name("plan").is_some());
    assert_eq!(all_ids(&root, "parquet"), [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn the_size_cap_splits_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("zone");
    let config = JsonlDestinationConfig::new(&root).with_max_file_bytes(1000);
    let mut dest = config.build().unwrap();
    dest.open(&ctx(0)).await.unwrap();
    for i in 0..10 {
        dest.write(&batch("users", users(i * 10..(i + 1) * 10), 1))
            .await
            .unwrap();
    }
    dest.flush(1).await.unwrap();
    dest.commit(1).await.unwrap();
    assert!(published(&root).len() >= 5, "{:?}", published(&root));
    assert_eq!(all_ids(&root, "jsonl"), (0..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn dead_letters_are_written_like_any_stream() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dlq");
    let mut dest = JsonlDestination::new(&root);
    dest.open(&ctx(0)).await.unwrap();
    let letters = vec![
        DeadLetter::new("events", "source", "bad json", "{oops").at("events.jsonl:7"),
        DeadLetter::new("events", "source", "wrong type", "{\"id\":\"x\"}"),
    ];
    let batch = DeadLetter::to_batch(&letters, "src").unwrap();
    let day = batch.meta.synced_at.format("%Y-%m-%d").to_string();
    dest.write(&batch.stamp().unwrap()).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.commit(1).await.unwrap();

    let path = root.join(format!(
        "{DEAD_LETTER_STREAM}/dt={day}/part-test-0000000001-00000.jsonl"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["reason"], json!("bad json"));
    assert_eq!(rows[0]["position"], json!("events.jsonl:7"));
    assert_eq!(rows[0]["payload"], json!("{oops"));
}

#[tokio::test]
async fn contract_violations_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut dest = JsonlDestination::new(dir.path());
    let err = dest
        .write(&batch("users", users(0..1), 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("open"), "{err}");

    dest.open(&ctx(3)).await.unwrap();
    let err = dest.flush(7).await.unwrap_err();
    assert!(err.to_string().contains("epoch 4"), "{err}");

    let err = dest
        .write(&batch("../escape", users(0..1), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = dest
        .prepare(&spec("_staging", crate::support::id_name_schema()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");

    let unknown =
        serde_json::from_value::<ParquetDestinationConfig>(json!({"root": "x", "codec": "zstd"}));
    assert!(unknown.is_err());
    let compression: ParquetDestinationConfig =
        serde_json::from_value(json!({"root": "x", "compression": "snappy"})).unwrap();
    assert_eq!(compression.format.compression, ParquetCompression::Snappy);
}

/// Regression: two pipelines sharing one root (a common dead-letter folder) must not
/// discard, publish or overwrite each other's staged files.
#[tokio::test]
async fn pipelines_sharing_a_root_keep_their_files_apart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let open = |pipeline: &str| OpenContext {
        pipeline_id: pipeline.into(),
        committed_epoch: 0,
    };
    let mut a = JsonlDestination::new(&root);
    let mut b = JsonlDestination::new(&root);
    a.open(&open("a")).await.unwrap();
    a.prepare(&spec("users", batch("users", users(0..0), 1).data.schema()))
        .await
        .unwrap();
    a.write(&batch("users", users(1..3), 1)).await.unwrap();
    a.flush(1).await.unwrap();
    // B starts after A staged epoch 1 but before A committed it.
    b.open(&open("b")).await.unwrap();
    b.prepare(&spec("users", batch("users", users(0..0), 1).data.schema()))
        .await
        .unwrap();
    b.write(&batch("users", users(3..4), 1)).await.unwrap();
    b.flush(1).await.unwrap();
    a.commit(1).await.unwrap();
    b.commit(1).await.unwrap();
    let mut ids = Vec::new();
    for name in [
        "part-a-0000000001-00000.jsonl",
        "part-b-0000000001-00000.jsonl",
    ] {
        ids.extend(read_jsonl_ids(&root.join("users/dt=2024-05-01").join(name)));
    }
    ids.sort();
    assert_eq!(ids, [1, 2, 3]);
}
