//! The PostgreSQL destination on its own: tables, upserts, tombstones, replays, failures.

use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, UInt8Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cdp_connectors::PostgresDestination;
use cdp_core::record::{OP_COLUMN, stamped_schema};
use cdp_core::{Batch, Destination, MemoryStateStore, Pipeline, RunMode, StreamSpec};

use crate::support::*;

fn user_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(12, 2), true),
    ]))
}

fn rows(ids: &[i64], tag: &str, ops: Option<&[u8]>) -> Batch {
    let mut fields: Vec<Field> = user_schema()
        .fields()
        .iter()
        .map(|f| (**f).clone())
        .collect();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.to_vec())),
        Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("{tag} {i}")),
        )),
        Arc::new(
            Decimal128Array::from_iter_values(ids.iter().map(|i| i128::from(*i) * 101))
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
    ];
    if let Some(ops) = ops {
        fields.push(Field::new(OP_COLUMN, DataType::UInt8, false));
        columns.push(Arc::new(UInt8Array::from(ops.to_vec())));
    }
    let data = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    Batch::new("accounts", data, "test").stamp().unwrap()
}

fn spec(key: bool) -> StreamSpec {
    let spec = StreamSpec::new("accounts", stamped_schema(&user_schema()).unwrap());
    if key {
        spec.with_primary_key(["id"])
    } else {
        spec
    }
}

async fn destination(db: &TestDb, app: &str) -> PostgresDestination {
    PostgresDestination::new(db.connection(app)).with_schema(&db.schema)
}

#[tokio::test]
async fn upserts_by_key_and_a_replay_changes_nothing() {
    let db = TestDb::new().await;
    let mut dest = destination(&db, "cdp-test-upsert").await;
    dest.prepare(&spec(true)).await.unwrap();
    let first = rows(&[1, 2, 3, 4, 5], "v1", None);
    let second = rows(&[3, 4, 5, 6, 7], "v2", None);
    dest.write(&first).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.write(&second).await.unwrap();
    dest.flush(2).await.unwrap();
    assert_eq!(db.count("accounts").await, 7);
    let names: Vec<String> = db
        .client
        .query(
            &format!("SELECT name FROM {} ORDER BY id", db.table("accounts")),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        names,
        ["v1 1", "v1 2", "v2 3", "v2 4", "v2 5", "v2 6", "v2 7"]
    );
    let before = db.raw_rows("accounts", "id").await;

    // A replay of the same batches (as after a crash) leaves every row as it was, system
    // columns included.
    dest.write(&first).await.unwrap();
    dest.write(&second).await.unwrap();
    dest.flush(3).await.unwrap();
    assert_eq!(db.raw_rows("accounts", "id").await, before);

    // The table has the system columns and the key.
    let columns: Vec<String> = db
        .client
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'accounts' ORDER BY ordinal_position",
            &[&db.schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        columns,
        [
            "id",
            "name",
            "amount",
            "_cdp_op",
            "_cdp_source",
            "_cdp_synced_at",
            "_cdp_record_hash",
            "_cdp_lineage_id"
        ]
    );
}

#[tokio::test]
async fn tombstones_delete_and_the_last_row_of_a_key_wins() {
    let db = TestDb::new().await;
    let mut dest = destination(&db, "cdp-test-tombstones").await;
    dest.prepare(&spec(true)).await.unwrap();
    dest.write(&rows(&[1, 2, 3, 4], "v1", None)).await.unwrap();
    dest.flush(1).await.unwrap();
    // One flush: 2 deleted then re-inserted, 3 deleted, 4 updated twice in one batch, 9
    // deleted though it never existed.
    dest.write(&rows(&[2, 3, 9], "x", Some(&[1, 1, 1])))
        .await
        .unwrap();
    dest.write(&rows(&[2, 4, 4], "v2", Some(&[0, 0, 0])))
        .await
        .unwrap();
    dest.flush(2).await.unwrap();
    assert_eq!(
        db.rows("accounts", "id").await,
        [
            r#"{"id": 1, "name": "v1 1", "amount": 1.01}"#,
            r#"{"id": 2, "name": "v2 2", "amount": 2.02}"#,
            r#"{"id": 4, "name": "v2 4", "amount": 4.04}"#,
        ]
    );
    // Deleting again (a replay) is harmless.
    dest.write(&rows(&[3], "x", Some(&[1]))).await.unwrap();
    dest.flush(3).await.unwrap();
    assert_eq!(db.count("accounts").await, 3);
}

#[tokio::test]
async fn without_a_key_rows_append_once_and_tombstones_are_refused() {
    let db = TestDb::new().await;
    let mut dest = destination(&db, "cdp-test-append").await;
    dest.prepare(&spec(false)).await.unwrap();
    let batch = rows(&[1, 2, 3], "v1", None);
    dest.write(&batch).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.write(&batch).await.unwrap();
    dest.flush(2).await.unwrap();
    assert_eq!(db.count("accounts").await, 3);
    let outcome = dest
        .write(&rows(&[1, 5], "v1", Some(&[1, 0])))
        .await
        .unwrap();
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].row, 0);
    assert!(outcome.rejected[0].reason.contains("primary key"));
    dest.flush(3).await.unwrap();
    assert_eq!(db.count("accounts").await, 4);
}

#[tokio::test]
async fn rows_with_a_null_key_are_refused_one_by_one() {
    let db = TestDb::new().await;
    let mut dest = destination(&db, "cdp-test-nullkey").await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let data = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    let batch = Batch::new("people", data, "test").stamp().unwrap();
    dest.prepare(&StreamSpec::new("people", batch.data.schema()).with_primary_key(["id"]))
        .await
        .unwrap();
    let outcome = dest.write(&batch).await.unwrap();
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].row, 1);
    dest.flush(1).await.unwrap();
    assert_eq!(db.count("people").await, 2);
}

#[tokio::test]
async fn a_connection_killed_mid_flush_is_transient_and_commits_nothing() {
    let db = TestDb::new().await;
    let app = format!("cdp-test-kill-{}", db.schema);
    let mut dest = destination(&db, &app).await.with_table_prefix("t_");
    dest.prepare(&spec(true)).await.unwrap();
    dest.write(&rows(&[1, 2], "v1", None)).await.unwrap();
    dest.flush(1).await.unwrap();

    // Hold a lock on the table so the flush stops inside its transaction, after the COPY
    // into staging and at the INSERT; then kill its connection there.
    let mut blocker = connect().await;
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        db.table("t_accounts")
    ))
    .await
    .unwrap();
    dest.write(&rows(&[3, 4, 5], "v1", None)).await.unwrap();
    dest.write(&rows(&[1], "v2", None)).await.unwrap();
    let flush = tokio::spawn(async move {
        let result = dest.flush(2).await;
        (dest, result)
    });
    let killed = wait_and_kill(&db, &app).await;
    assert!(killed, "the flush never waited on the lock");
    lock.rollback().await.unwrap();
    let (mut dest, result) = flush.await.unwrap();
    let error = result.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    // Nothing of the interrupted flush is visible.
    assert_eq!(
        db.rows("t_accounts", "id").await,
        [
            r#"{"id": 1, "name": "v1 1", "amount": 1.01}"#,
            r#"{"id": 2, "name": "v1 2", "amount": 2.02}"#,
        ]
    );
    // The retried flush reconnects and applies the same rows, once.
    dest.flush(2).await.unwrap();
    assert_eq!(db.count("t_accounts").await, 5);
    assert_eq!(
        db.rows("t_accounts", "id").await[0],
        r#"{"id": 1, "name": "v2 1", "amount": 1.01}"#
    );
}

/// Waits until a backend of `app` is blocked on a lock, then terminates it.
pub(crate) async fn wait_and_kill(db: &TestDb, app: &str) -> bool {
    for _ in 0..200 {
        let row = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) > 0 {
            db.client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = $1",
                    &[&app],
                )
                .await
                .unwrap();
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_gains_a_column_mid_run() {
    let db = TestDb::new().await;
    let narrow = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let wide = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("email", DataType::Utf8, true),
    ]));
    let batch = |schema: &SchemaRef, ids: std::ops::Range<i64>| {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("n{i}")),
            )),
        ];
        if schema.fields().len() == 3 {
            columns.push(Arc::new(StringArray::from_iter_values(
                ids.map(|i| format!("{i}@x.io")),
            )));
        }
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    };
    // Once with a flush between the two schemas, once with both in one flush.
    for (stream, commit_every) in [("split", 1), ("together", 1_000)] {
        let source = cdp_core::memory::MemorySource::new(
            stream,
            vec![
                batch(&narrow, 0..3),
                batch(&narrow, 3..5),
                batch(&wide, 5..8),
            ],
        );
        let report = Pipeline::builder(format!("evolve-{stream}"))
            .source(source)
            .destination(destination(&db, "cdp-test-evolve").await)
            .state_store(Arc::new(MemoryStateStore::new()))
            .mode(RunMode::Batch)
            .commit_every_rows(commit_every)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(report.rows_out(), 8);
        let rows = db.rows(stream, "id").await;
        assert_eq!(rows.len(), 8);
        assert_eq!(rows[0], r#"{"id": 0, "name": "n0", "email": null}"#);
        assert_eq!(rows[7], r#"{"id": 7, "name": "n7", "email": "7@x.io"}"#);
    }
}

#[tokio::test]
async fn a_first_load_into_an_empty_table_keeps_the_last_row_of_each_key() {
    let db = TestDb::new().await;
    let mut dest = destination(&db, "cdp-test-initial").await;
    dest.prepare(&spec(true)).await.unwrap();
    dest.write(&rows(&[1, 2, 3], "v1", None)).await.unwrap();
    dest.write(&rows(&[2, 7], "x", Some(&[1, 1])))
        .await
        .unwrap();
    dest.write(&rows(&[3], "v2", None)).await.unwrap();
    dest.flush(1).await.unwrap();
    assert_eq!(
        db.rows("accounts", "id").await,
        [
            r#"{"id": 1, "name": "v1 1", "amount": 1.01}"#,
            r#"{"id": 3, "name": "v2 3", "amount": 3.03}"#,
        ]
    );
}

/// A flush rewrites only the rows whose content changed (the others keep their row
/// version, `xmin`), and writes everything in one transaction.
#[tokio::test]
async fn a_flush_rewrites_only_changed_rows_in_one_transaction() {
    let db = TestDb::new().await;
    let mut dest = destination(&db, "cdp-test-rewrites").await;
    dest.prepare(&spec(true)).await.unwrap();
    dest.write(&rows(&[1, 2, 3, 4], "v1", None)).await.unwrap();
    dest.flush(1).await.unwrap();
    let versions = async || -> Vec<(i64, String)> {
        db.client
            .query(
                &format!(
                    "SELECT id, xmin::text FROM {} ORDER BY id",
                    db.table("accounts")
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let before = versions().await;
    // 1 and 4 arrive again unchanged, 2 changed, 3 deleted, 5 new.
    dest.write(&rows(&[1, 4], "v1", None)).await.unwrap();
    dest.write(&rows(&[2], "v2", None)).await.unwrap();
    dest.write(&rows(&[3], "x", Some(&[1]))).await.unwrap();
    dest.write(&rows(&[5], "v2", None)).await.unwrap();
    dest.flush(2).await.unwrap();
    let after = versions().await;
    let ids: Vec<i64> = after.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [1, 2, 4, 5]);
    assert_eq!(after[0], before[0], "unchanged row 1 was rewritten");
    assert_eq!(after[2], before[3], "unchanged row 4 was rewritten");
    assert_ne!(after[1].1, before[1].1, "changed row 2 was not rewritten");
    assert_eq!(
        after[1].1, after[3].1,
        "the flush used more than one transaction"
    );
    assert_ne!(after[1].1, before[0].1);
}

#[tokio::test]
async fn fillfactor_leaves_room_for_in_place_updates() {
    let db = TestDb::new().await;
    let mut dest = destination(&db, "cdp-test-fillfactor")
        .await
        .with_fillfactor(50);
    dest.prepare(&spec(true)).await.unwrap();
    let options: Vec<String> = db
        .client
        .query_one(
            "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1::text::regclass",
            &[&db.table("accounts")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(options, ["fillfactor=50"]);
    // Upserts behave as without it.
    let ids: Vec<i64> = (1..=500).collect();
    dest.write(&rows(&ids, "v1", None)).await.unwrap();
    dest.flush(1).await.unwrap();
    dest.write(&rows(&ids, "v2", None)).await.unwrap();
    dest.flush(2).await.unwrap();
    assert_eq!(db.count("accounts").await, 500);
    let rows = db.rows("accounts", "id").await;
    assert!(rows.iter().all(|r| r.contains("v2")), "{:?}", &rows[..3]);

    // Out of range is refused before any table is created.
    let mut bad = destination(&db, "cdp-test-fillfactor")
        .await
        .with_fillfactor(5);
    let err = bad
        .prepare(&StreamSpec::new(
            "other",
            stamped_schema(&user_schema()).unwrap(),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("fillfactor"), "{err}");
    let config: cdp_connectors::PostgresDestinationConfig = serde_json::from_value(
        serde_json::json!({"connection": {"url": url()}, "fillfactor": 101}),
    )
    .unwrap();
    assert!(config.build().is_err());
}
