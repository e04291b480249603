//! Files that change under their names (issue 14): replaced by a file of the same size, a
//! larger or a smaller one, truncated by copytruncate, truncated mid-line, rotated by
//! rename with a new file in their place. Each version of each file is read once from its
//! start, across real pipeline runs resuming from committed state, and the run report says
//! what happened.

use std::path::Path;
use std::sync::Arc;

use cdp_connectors::{JsonlSource, ParquetSource};
use cdp_core::memory::MemoryDestination;
use cdp_core::{MemoryStateStore, Pipeline, RunReport, Source, StateStore};

use crate::support::*;

/// One JSONL line per id; ids of the same number of digits make lines of the same length.
fn lines(ids: std::ops::Range<i64>) -> String {
    jsonl_lines(ids)
}

/// Runs the pipeline once (resuming from `store`) and returns the ids it landed, in order.
async fn sync(
    source: impl Source + 'static,
    store: &Arc<MemoryStateStore>,
) -> (Vec<i64>, RunReport) {
    let destination = MemoryDestination::new("sink");
    let handle = destination.handle();
    let store: Arc<dyn StateStore> = store.clone();
    let report = Pipeline::builder("rotation")
        .source(source)
        .destination(destination)
        .state_store(store)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let landed = handle
        .batches()
        .iter()
        .flat_map(|b| ids(&b.data, "id"))
        .collect();
    (landed, report)
}

fn jsonl(path: &Path) -> JsonlSource {
    JsonlSource::new(path)
        .with_stream("events")
        .with_schema(id_name_schema())
        .with_batch_size(16)
}

fn range(ids: std::ops::Range<i64>) -> Vec<i64> {
    ids.collect()
}

/// The notices of `report`, as `file: message`.
fn notices(report: &RunReport) -> Vec<String> {
    report
        .notices
        .iter()
        .map(|n| format!("{}: {}", n.subject, n.message))
        .collect()
}

/// A third run after the change finds nothing to do and nothing to say.
async fn nothing_more(source: impl Source + 'static, store: &Arc<MemoryStateStore>) {
    let (landed, report) = sync(source, store).await;
    assert!(landed.is_empty(), "{landed:?}");
    assert!(report.notices.is_empty(), "{:?}", notices(&report));
}

/// Reads version 1 (ids 100..200) of `events.jsonl` in `dir`, then returns the store.
async fn first_version(path: &Path, source: impl Source + 'static) -> Arc<MemoryStateStore> {
    write(path, &lines(100..200));
    let store = Arc::new(MemoryStateStore::new());
    let (landed, report) = sync(source, &store).await;
    assert_eq!(landed, range(100..200));
    assert!(report.notices.is_empty(), "{:?}", notices(&report));
    store
}

#[tokio::test]
async fn a_file_replaced_by_one_of_the_same_size_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let store = first_version(&path, jsonl(&path)).await;
    let before = file_len(&path);
    write(&path, &lines(200..300));
    assert_eq!(file_len(&path), before, "the fixture must keep the size");

    let (landed, report) = sync(jsonl(&path), &store).await;
    assert_eq!(landed, range(200..300));
    let said = notices(&report);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].starts_with("events.jsonl: "), "{said:?}");
    assert!(said[0].contains("replaced"), "{said:?}");
    assert!(said[0].contains("from its start"), "{said:?}");
    assert!(report.to_string().contains("replaced"), "{report}");
    nothing_more(jsonl(&path), &store).await;
}

#[tokio::test]
async fn a_file_replaced_by_a_larger_one_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let store = first_version(&path, jsonl(&path)).await;
    write(&path, &lines(200..400));

    let (landed, report) = sync(jsonl(&path), &store).await;
    assert_eq!(landed, range(200..400));
    let said = notices(&report);
    assert!(said.len() == 1 && said[0].contains("replaced"), "{said:?}");
    nothing_more(jsonl(&path), &store).await;
}

#[tokio::test]
async fn a_file_replaced_by_a_smaller_one_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let store = first_version(&path, jsonl(&path)).await;
    write(&path, &lines(200..250));

    let (landed, report) = sync(jsonl(&path), &store).await;
    assert_eq!(landed, range(200..250));
    let said = notices(&report);
    assert!(said.len() == 1 && said[0].contains("shorter"), "{said:?}");
    nothing_more(jsonl(&path), &store).await;

    // It grows again: read on from where the new version was read to.
    append(&path, &lines(250..260));
    let (landed, report) = sync(jsonl(&path), &store).await;
    assert_eq!(landed, range(250..260));
    assert!(report.notices.is_empty(), "{:?}", notices(&report));
}

#[tokio::test]
async fn copytruncate_reads_the_copy_on_from_the_old_position_and_the_file_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("events");
    std::fs::create_dir(&logs).unwrap();
    let live = logs.join("events.jsonl");
    let store = first_version(&live, jsonl(&logs)).await;
    // Written after the last read, before the rotation.
    append(&live, &lines(200..220));
    // logrotate's copytruncate: copy, then truncate in place; the writer goes on.
    let rotated = logs.join("events.2024-05-01.jsonl");
    std::fs::copy(&live, &rotated).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&live, &lines(300..400));

    let (mut landed, report) = sync(jsonl(&logs), &store).await;
    landed.sort();
    let mut expected = range(200..220);
    expected.extend(300..400);
    assert_eq!(landed, expected);
    let said = notices(&report);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said.iter()
            .any(|n| n.starts_with("events.2024-05-01.jsonl: is `events.jsonl` copied")),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|n| n.starts_with("events.jsonl: ") && n.contains("from its start")),
        "{said:?}"
    );
    nothing_more(jsonl(&logs), &store).await;
}

#[tokio::test]
async fn a_file_truncated_mid_line_is_a_new_version_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let store = first_version(&path, jsonl(&path)).await;
    let read = file_len(&path);
    // Cut in the middle of the line of id 147; the writer, appending, goes on after the cut
    // and writes past the old position, so the file is longer than what was read and starts
    // with the same bytes: only the bytes before the old position tell it apart.
    let cut = lines(100..147).len() as u64 + 7;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    append(&path, &lines(300..400));
    assert!(file_len(&path) > read);

    let (landed, report) = sync(jsonl(&path), &store).await;
    // The new version's rows: the ones before the cut, then (after the line the cut broke,
    // which is a dead letter) the new ones.
    let mut expected = range(100..147);
    expected.extend(301..400);
    assert_eq!(landed, expected);
    assert_eq!(report.dead_letters, 1);
    let said = notices(&report);
    assert!(said.len() == 1 && said[0].contains("replaced"), "{said:?}");
    nothing_more(jsonl(&path), &store).await;
}

#[tokio::test]
async fn a_file_rotated_by_rename_is_read_on_and_the_new_file_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("events");
    std::fs::create_dir(&logs).unwrap();
    let live = logs.join("events.jsonl");
    let store = first_version(&live, jsonl(&logs)).await;
    append(&live, &lines(200..220));
    std::fs::rename(&live, logs.join("events.2024-05-01.jsonl")).unwrap();
    write(&live, &lines(300..450));

    let (mut landed, report) = sync(jsonl(&logs), &store).await;
    landed.sort();
    let mut expected = range(200..220);
    expected.extend(300..450);
    assert_eq!(landed, expected);
    let said = notices(&report);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(
        said.iter()
            .any(|n| n.starts_with("events.2024-05-01.jsonl: is `events.jsonl` renamed")),
        "{said:?}"
    );
    nothing_more(jsonl(&logs), &store).await;

    // The rotated file goes away: its entry is dropped, nothing is read again.
    std::fs::remove_file(logs.join("events.2024-05-01.jsonl")).unwrap();
    nothing_more(jsonl(&logs), &store).await;
}

#[tokio::test]
async fn a_parquet_file_replaced_under_its_name_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("scores");
    std::fs::create_dir(&lake).unwrap();
    let path = lake.join("part-0.parquet");
    let source = || ParquetSource::new(&lake).with_stream("scores");
    crate::parquet_source::write_parquet(&path, 0..40);
    let store = Arc::new(MemoryStateStore::new());
    let (landed, _) = sync(source(), &store).await;
    assert_eq!(landed, range(0..40));

    // The same number of rows, other content.
    crate::parquet_source::write_parquet(&path, 100..140);
    let (landed, report) = sync(source(), &store).await;
    assert_eq!(landed, range(100..140));
    let said = notices(&report);
    assert!(said.len() == 1 && said[0].contains("replaced"), "{said:?}");
    nothing_more(source(), &store).await;
}

#[tokio::test]
async fn a_cursor_from_before_identities_still_resumes_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    write(&path, &lines(100..150));
    let offset = lines(100..120).len();
    let rest = read_all(
        &jsonl(&path),
        resume(
            "events",
            serde_json::json!({"files": {"events.jsonl": offset}}),
        ),
    )
    .await;
    assert_eq!(rest.ids("id"), range(120..150));
    // The cursor it leaves fingerprints the file.
    assert!(rest.last_cursor()["identity"]["events.jsonl"]["head"].is_string());
}
