//! Schema drift of the file sources reaching PostgreSQL tables: a key first seen after the
//! inference sample becomes a column (or lands in the overflow column), and CSV timestamps
//! with a zone land as the same instants in a `timestamptz` column.

use std::sync::Arc;

use cdp_connectors::{CsvSource, JsonlSource, NewFields, PostgresDestination};
use cdp_core::{MemoryStateStore, Pipeline, RunMode, RunReport, Source};
use serde_json::json;

use crate::support::*;

/// Flat Segment-like events; from record 2,000 on they carry `"plan": "premium"`.
fn events() -> String {
    let mut out = String::new();
    for i in 0..3000 {
        let mut event = json!({
            "id": i,
            "type": "track",
            "event": "Order Completed",
            "userId": format!("u-{}", i % 50),
            "revenue": 1.5,
        });
        if i >= 2000 {
            event["plan"] = json!("premium");
        }
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out
}

async fn land(db: &TestDb, source: impl Source + 'static) -> RunReport {
    Pipeline::builder("drift")
        .source(source)
        .destination(
            PostgresDestination::new(db.connection("cdp-test-drift")).with_schema(&db.schema),
        )
        .state_store(Arc::new(MemoryStateStore::new()))
        .mode(RunMode::Batch)
        .commit_every_rows(700)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_first_seen_after_the_sample_becomes_a_postgres_column() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    std::fs::write(&path, events()).unwrap();
    let report = land(&db, JsonlSource::new(&path).with_batch_size(500)).await;
    let stream = report.stream("track").unwrap();
    assert_eq!(stream.rows_out, 3000);
    assert_eq!(stream.drift_events, 1, "{report}");
    assert_eq!(report.drift[0].path, "plan");
    assert_eq!(db.count("track").await, 3000);
    let table = db.table("track");
    let premium = count(
        &db,
        &format!("SELECT count(*) FROM {table} WHERE plan = 'premium'"),
    )
    .await;
    assert_eq!(premium, 1000);
    let before = count(
        &db,
        &format!("SELECT count(*) FROM {table} WHERE plan IS NULL AND id < 2000"),
    )
    .await;
    assert_eq!(before, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_first_seen_after_the_sample_lands_in_the_overflow_column_by_policy() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("track.jsonl");
    std::fs::write(&path, events()).unwrap();
    let source = JsonlSource::new(&path)
        .with_batch_size(500)
        .with_new_fields(NewFields::Overflow);
    let report = land(&db, source).await;
    assert_eq!(report.stream("track").unwrap().drift_events, 1, "{report}");
    let table = db.table("track");
    let premium = count(
        &db,
        &format!(
            "SELECT count(*) FROM {table} WHERE (_overflow::jsonb) ->> 'plan' = 'premium' AND id >= 2000"
        ),
    )
    .await;
    assert_eq!(premium, 1000);
    let columns = count(
        &db,
        &format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{}' \
             AND table_name = 'track' AND column_name = 'plan'",
            db.schema
        ),
    )
    .await;
    assert_eq!(columns, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoned_csv_timestamps_land_as_the_same_instants_in_timestamptz() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("times.csv");
    std::fs::write(
        &path,
        "id,at,local\n\
         1,2020-01-01T00:01:22Z,2020-01-01T00:01:22\n\
         2,2020-01-01T02:01:23+02:00,2020-01-01 00:01:23\n\
         3,2024-05-01T10:00:00.123456Z,2024-05-01T10:00:00.5\n",
    )
    .unwrap();
    land(&db, CsvSource::new(&path)).await;
    let types: Vec<(String, String)> = db
        .client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = 'times' AND column_name IN ('at', 'local') \
             ORDER BY column_name",
            &[&db.schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        types,
        [
            ("at".to_string(), "timestamp with time zone".to_string()),
            (
                "local".to_string(),
                "timestamp without time zone".to_string()
            ),
        ]
    );
    let table = db.table("times");
    let rows = db
        .client
        .query(
            &format!(
                "SELECT (extract(epoch FROM at) * 1000000)::bigint, local::text FROM {table} ORDER BY id"
            ),
            &[],
        )
        .await
        .unwrap();
    let instants: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        instants,
        [
            1_577_836_882_000_000,
            1_577_836_883_000_000,
            1_714_557_600_123_456
        ]
    );
    let local: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(
        local,
        [
            "2020-01-01 00:01:22",
            "2020-01-01 00:01:23",
            "2024-05-01 10:00:00.5"
        ]
    );
}
