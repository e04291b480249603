//! Every file source passes the connector conformance harness: checkpoints after all it
//! emits, and a resume from any checkpoint yields exactly what came after it.

use cdp_connectors::{CsvSource, JsonlSource, ParquetSource};
use cdp_testkit::conformance::check_source;

use crate::support::{jsonl_lines, write};

#[tokio::test]
async fn jsonl_source_with_bad_lines_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = jsonl_lines(0..40);
    text.push_str("{\"id\": 40, \"name\": broken\n");
    text.push_str(&jsonl_lines(41..70));
    write(&dir.path().join("a.jsonl"), &text);
    write(&dir.path().join("b.jsonl"), &jsonl_lines(70..95));
    for batch_size in [1, 7, 64] {
        let source = JsonlSource::new(dir.path()).with_batch_size(batch_size);
        let report = check_source(&source, 40).await.unwrap();
        assert_eq!(report.rows, 94, "batch size {batch_size}");
        assert_eq!(report.dead_letters, 1);
        assert!(report.resumes_checked >= 1);
    }
}

#[tokio::test]
async fn csv_source_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("id,name\n");
    for i in 0..50 {
        text.push_str(&format!("{i},\"user, {i}\"\n"));
    }
    write(&dir.path().join("users.csv"), &text);
    for batch_size in [1, 9] {
        let source = CsvSource::new(dir.path().join("users.csv")).with_batch_size(batch_size);
        let report = check_source(&source, 30).await.unwrap();
        assert_eq!(report.rows, 50);
    }
}

#[tokio::test]
async fn parquet_source_conforms() {
    let dir = tempfile::tempdir().unwrap();
    crate::parquet_source::write_parquet(&dir.path().join("part-0.parquet"), 0..40);
    crate::parquet_source::write_parquet(&dir.path().join("part-1.parquet"), 40..75);
    let source = ParquetSource::new(dir.path()).with_batch_size(6);
    let report = check_source(&source, 20).await.unwrap();
    assert_eq!(report.rows, 75);
}
