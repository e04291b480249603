//! The file connectors under the real pipeline runtime: checkpoints, barriers and commits.

use std::path::Path;
use std::sync::Arc;

use cdp_connectors::{JsonlDestination, JsonlSource, ParquetDestination};
use cdp_core::{MemoryStateStore, Pipeline, RunMode, StateStore};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::support::*;

fn parquet_ids(root: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                        .unwrap()
                        .build()
                        .unwrap();
                for batch in reader {
                    out.extend(ids(&batch.unwrap(), "id"));
                }
            }
        }
    }
    out.sort();
    out
}

fn dead_letter_lines(root: &Path) -> Vec<serde_json::Value> {
    let dir = root.join(cdp_core::DEAD_LETTER_STREAM);
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    for day in std::fs::read_dir(dir).unwrap() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
            );
        }
    }
    out
}

async fn run(path: &Path, lake: &Path, dlq: &Path, store: Arc<dyn StateStore>) -> u64 {
    let source = JsonlSource::new(path)
        .with_schema(id_name_schema())
        .with_batch_size(10);
    let report = Pipeline::builder("files")
        .source(source)
        .destination(ParquetDestination::new(lake))
        .dead_letter(JsonlDestination::new(dlq))
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(25)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    report.rows_out()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_to_parquet_with_a_dead_letter_landing_zone_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (lake, dlq) = (dir.path().join("lake"), dir.path().join("dlq"));
    let mut text = jsonl_lines(0..60);
    text.push_str("{\"id\": \"not a number\"}\n");
    text.push_str(&jsonl_lines(60..100));
    write(&path, &text);
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());

    run(&path, &lake, &dlq, store.clone()).await;
    assert_eq!(parquet_ids(&lake), (0..100).collect::<Vec<_>>());
    let dead = dead_letter_lines(&dlq);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["position"], serde_json::json!("events.jsonl:61"));
    // Everything committed was published: no staged file is left behind.
    let staged: Vec<_> = std::fs::read_dir(lake.join("_staging"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "{staged:?}");

    // The file grows; the next run reads only the new lines.
    append(&path, &jsonl_lines(100..130));
    run(&path, &lake, &dlq, store.clone()).await;
    assert_eq!(parquet_ids(&lake), (0..130).collect::<Vec<_>>());
    assert_eq!(dead_letter_lines(&dlq).len(), 1);

    // Nothing new: nothing written.
    run(&path, &lake, &dlq, store).await;
    assert_eq!(parquet_ids(&lake), (0..130).collect::<Vec<_>>());
}
