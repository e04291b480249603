//! Values kept or refused, never changed (issue 14), from a PostgreSQL table: `time
//! '24:00:00'`, NaN and ±infinity, integers beyond i64 and bounded text, through a
//! PostgreSQL table, a JSONL zone and a Parquet zone (and from it back to PostgreSQL).

use std::path::Path;
use std::sync::Arc;

use cdp_connectors::{
    JsonlDestination, ParquetDestination, ParquetSource, PostgresDestination, PostgresSourceConfig,
};
use cdp_core::{Destination, MemoryStateStore, Pipeline, RunReport, Source, StateStore};

use crate::support::*;

async fn run(
    id: &str,
    source: impl Source + 'static,
    destination: impl Destination + 'static,
) -> RunReport {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    Pipeline::builder(id)
        .source(source)
        .destination(destination)
        .state_store(store)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

async fn source_table(db: &TestDb) -> PostgresSourceConfig {
    db.exec(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, at time, ratio double precision,
                          big numeric(20,0), code varchar(5));
         INSERT INTO {t} VALUES
           (1, '24:00:00', 'NaN', 12345678901234567890, 'ABCDE'),
           (2, '12:34:56.789', 'Infinity', -12345678901234567890, 'A'),
           (3, '00:00:00', '-Infinity', 0, NULL),
           (4, NULL, 10.75, NULL, 'xyz');",
        t = db.table("src")
    ))
    .await;
    PostgresSourceConfig::new(db.connection("cdp-test-values-src"))
        .with_schema(&db.schema)
        .with_tables(["src"])
}

fn files(root: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == extension) {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_postgres_keeps_every_value() {
    let db = TestDb::new().await;
    let source = source_table(&db).await.build_source().unwrap();
    let destination = PostgresDestination::new(db.connection("cdp-test-values"))
        .with_schema(&db.schema)
        .with_table_prefix("copy_");
    let report = run("pg-values", source, destination).await;
    assert_eq!(report.rows_out(), 4);
    assert_eq!(report.dead_letters, 0);
    let want = db.rows("src", "id").await;
    assert!(want[0].contains(r#""at": "24:00:00""#), "{want:?}");
    assert!(want[0].contains(r#""ratio": "NaN""#), "{want:?}");
    assert_eq!(db.rows("copy_src", "id").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_jsonl_writes_the_values_not_an_error_text() {
    let db = TestDb::new().await;
    let source = source_table(&db).await.build_source().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = run("jsonl-values", source, JsonlDestination::new(dir.path())).await;
    assert_eq!(report.dead_letters, 0, "{report}");
    let mut lines: Vec<serde_json::Value> = Vec::new();
    let mut text = String::new();
    for path in files(dir.path(), "jsonl") {
        let content = std::fs::read_to_string(path).unwrap();
        lines.extend(
            content
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
        );
        text.push_str(&content);
    }
    assert!(!text.contains("rror"), "{text}");
    lines.sort_by_key(|l| l["id"].as_i64());
    assert_eq!(lines[0]["at"], "24:00:00");
    assert_eq!(lines[1]["at"], "12:34:56.789");
    assert_eq!(lines[0]["ratio"], "NaN");
    assert_eq!(lines[1]["ratio"], "Infinity");
    assert_eq!(lines[2]["ratio"], "-Infinity");
    assert_eq!(lines[3]["ratio"], 10.75);
    assert!(text.contains(r#""big":12345678901234567890"#), "{text}");
    assert!(text.contains(r#""big":-12345678901234567890"#), "{text}");
    assert_eq!(lines[0]["code"], "ABCDE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_parquet_and_back_keeps_every_value() {
    let db = TestDb::new().await;
    let source = source_table(&db).await.build_source().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let report = run("parquet-values", source, ParquetDestination::new(&lake)).await;
    assert_eq!(report.dead_letters, 0, "{report}");

    let back = ParquetSource::new(lake.join("src")).with_stream("src");
    let destination = PostgresDestination::new(db.connection("cdp-test-values-back"))
        .with_schema(&db.schema)
        .with_table_prefix("back_");
    let report = run("parquet-back", back, destination).await;
    assert_eq!(report.rows_out(), 4);
    assert_eq!(report.dead_letters, 0, "{report}");
    assert_eq!(db.rows("back_src", "id").await, db.rows("src", "id").await);
}
