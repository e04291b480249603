//! The PostgreSQL source: discovery, sync modes, keyset paging, deletes.

use arrow::datatypes::{DataType, TimeUnit};
use cdp_connectors::postgres::PG_TYPE_METADATA;
use cdp_connectors::{
    FullRefreshDeletes, PostgresSource, PostgresSourceConfig, PostgresStreamConfig,
};
use cdp_core::{ReadRequest, Source, SyncMode};

use crate::support::*;

fn config(db: &TestDb, app: &str) -> PostgresSourceConfig {
    PostgresSourceConfig::new(db.connection(app)).with_schema(&db.schema)
}

#[tokio::test]
async fn discovers_tables_views_keys_types_and_cursor_candidates() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (
             id bigint PRIMARY KEY, name varchar(40) NOT NULL, price numeric(12,2),
             ratio numeric, doc jsonb, uid uuid, tags text[], created_at timestamptz NOT NULL,
             updated_at timestamptz, born date, seq integer);
         CREATE VIEW {v} AS SELECT id, name FROM {t};",
        t = db.table("products"),
        v = db.table("product_names")
    ))
    .await;
    let source = config(&db, "cdp-test-discover")
        .with_stream("products", PostgresStreamConfig::cursor("updated_at"))
        .with_stream(
            "product_names",
            PostgresStreamConfig::default().with_primary_key(["id"]),
        )
        .build_source()
        .unwrap();
    let catalog = source.discover().await.unwrap();
    let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["product_names", "products"]);
    let products = catalog.stream("products").unwrap();
    assert_eq!(products.primary_key, ["id"]);
    assert_eq!(products.cursor_field.as_deref(), Some("updated_at"));
    assert!(products.supports(SyncMode::IncrementalDedup));
    let types: Vec<DataType> = products
        .schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(types[0], DataType::Int64);
    assert_eq!(types[1], DataType::Utf8);
    assert_eq!(types[2], DataType::Decimal128(12, 2));
    assert_eq!(types[3], DataType::Utf8, "unconstrained numeric is text");
    assert_eq!(types[4], DataType::Utf8);
    assert_eq!(types[5], DataType::Utf8);
    assert!(matches!(&types[6], DataType::List(f) if f.data_type() == &DataType::Utf8));
    assert_eq!(
        types[7],
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(types[9], DataType::Date32);
    let doc = products.schema.field_with_name("doc").unwrap();
    assert_eq!(doc.metadata()[PG_TYPE_METADATA], "jsonb");
    assert!(
        !products
            .schema
            .field_with_name("created_at")
            .unwrap()
            .is_nullable()
    );

    let tables = source.discover_tables().await.unwrap();
    let products = tables.iter().find(|t| t.name == "products").unwrap();
    assert_eq!(
        products.cursor_candidates,
        ["updated_at", "created_at", "id", "price", "born", "seq"]
    );
    let view = tables.iter().find(|t| t.name == "product_names").unwrap();
    assert!(view.is_view);
    assert!(view.primary_key.is_empty());
    assert_eq!(catalog.stream("product_names").unwrap().primary_key, ["id"]);
}

#[tokio::test]
async fn full_refresh_reads_every_row_in_key_order_and_resumes_after_any_checkpoint() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, name text);
         INSERT INTO {t} SELECT i, 'n' || i FROM generate_series(1, 50) i;",
        t = db.table("people")
    ))
    .await;
    let source = config(&db, "cdp-test-full")
        .with_batch_size(7)
        .with_page_size(10)
        .build_source()
        .unwrap();
    let read = read_all(&source, ReadRequest::default()).await;
    read.assert_aligned(7);
    let ids: Vec<i64> = read.ids_with_ops("id").iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=50).collect::<Vec<_>>());
    let checkpoints = read.checkpoints();
    let last = checkpoints.last().unwrap();
    assert_eq!(last.cursor["done"], true);

    // Resuming from the k-th checkpoint reads exactly the rows after it.
    let mut seen = 0;
    for (k, batch) in read.batches().iter().enumerate() {
        seen += batch.num_rows();
        let resumed = read_all(&source, resume("people", checkpoints[k].cursor.clone())).await;
        let ids: Vec<i64> = resumed
            .ids_with_ops("id")
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(
            ids,
            ((seen as i64 + 1)..=50).collect::<Vec<_>>(),
            "after checkpoint {k}"
        );
    }
    // After a complete refresh, the next one starts over.
    let again = read_all(&source, resume("people", last.cursor.clone())).await;
    assert_eq!(again.ids_with_ops("id").len(), 50);
    assert_eq!(again.checkpoints().last().unwrap().cursor["run"], 2);
}

#[tokio::test]
async fn incremental_keyset_pages_split_a_hundred_equal_cursor_values_without_loss_or_repeat() {
    let db = TestDb::new().await;
    // 100 rows share one cursor value, with rows before and after it, keys interleaved.
    db.exec(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, updated_at timestamptz NOT NULL, v text);
         INSERT INTO {t}
         SELECT i,
                CASE WHEN i % 7 = 0 THEN timestamptz '2024-01-01 00:00:00+00'
                     WHEN i % 7 = 1 THEN timestamptz '2024-03-01 00:00:00+00'
                     ELSE timestamptz '2024-02-01 12:00:00.123456+00' END,
                'v' || i
         FROM generate_series(1, 140) i;",
        t = db.table("events")
    ))
    .await;
    let equal: i64 = db
        .client
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE updated_at = '2024-02-01 12:00:00.123456+00'",
                db.table("events")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(equal, 100);
    let source = config(&db, "cdp-test-incremental")
        .with_stream("events", PostgresStreamConfig::cursor("updated_at"))
        .with_batch_size(5)
        .with_page_size(7)
        .build_source()
        .unwrap();
    let read = read_all(&source, ReadRequest::default()).await;
    read.assert_aligned(5);
    let expected: Vec<i64> = db
        .client
        .query(
            &format!(
                "SELECT id::bigint FROM {} ORDER BY updated_at, id",
                db.table("events")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ids: Vec<i64> = read.ids_with_ops("id").iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, expected);
    // And the generic harness agrees: aligned checkpoints, exact resume from each.
    let report = cdp_testkit::conformance::check_source(&source, 100)
        .await
        .unwrap();
    assert_eq!(report.rows, expected.len());

    // Resume after every checkpoint: the rows before it plus the resumed ones are every row
    // exactly once, in order.
    let checkpoints = read.checkpoints();
    let mut seen = 0;
    for (k, batch) in read.batches().iter().enumerate() {
        seen += batch.num_rows();
        let resumed = read_all(&source, resume("events", checkpoints[k].cursor.clone())).await;
        let mut all = ids[..seen].to_vec();
        all.extend(resumed.ids_with_ops("id").iter().map(|(id, _)| *id));
        assert_eq!(all, expected, "resumed after checkpoint {k}");
    }

    // New rows at the last cursor value (with larger keys) and later ones are read next
    // time; nothing else is.
    let last = checkpoints.last().unwrap().cursor.clone();
    assert_eq!(last["mode"], "incremental");
    db.exec(&format!(
        "INSERT INTO {t} VALUES (200, '2024-03-01 00:00:00+00', 'new'),
                                (201, '2024-04-01 00:00:00+00', 'new');
         UPDATE {t} SET updated_at = '2024-05-01 00:00:00+00', v = 'changed' WHERE id = 3;",
        t = db.table("events")
    ))
    .await;
    let next = read_all(&source, resume("events", last)).await;
    let ids: Vec<i64> = next.ids_with_ops("id").iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [200, 201, 3]);
}

#[tokio::test]
async fn soft_deleted_rows_come_out_as_tombstones_with_only_the_key() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, name text NOT NULL, deleted_at timestamptz);
         INSERT INTO {t} SELECT i, 'n' || i, CASE WHEN i % 4 = 0 THEN now() END
         FROM generate_series(1, 12) i;",
        t = db.table("users")
    ))
    .await;
    let source = config(&db, "cdp-test-soft")
        .with_stream(
            "users",
            PostgresStreamConfig::default().with_soft_delete("deleted_at"),
        )
        .with_batch_size(5)
        .build_source()
        .unwrap();
    let catalog = source.discover().await.unwrap();
    // A tombstone has no name, so the column is nullable in the stream's schema.
    assert!(
        catalog.streams[0]
            .schema
            .field_with_name("name")
            .unwrap()
            .is_nullable()
    );
    let read = read_all(&source, ReadRequest::default()).await;
    let rows = read.ids_with_ops("id");
    assert_eq!(rows.len(), 12);
    for (id, op) in &rows {
        assert_eq!(*op, u8::from(id % 4 == 0), "row {id}");
    }
    for batch in read.batches() {
        let ops = batch.ops().unwrap();
        let names = batch.data.column_by_name("name").unwrap();
        for (i, op) in ops.iter().enumerate() {
            assert_eq!(names.is_null(i), *op == cdp_core::Op::Delete);
        }
    }
}

#[tokio::test]
async fn full_refresh_emits_tombstones_for_keys_gone_since_the_last_complete_refresh() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (id int, region text, name text, PRIMARY KEY (region, id));
         INSERT INTO {t} SELECT i, CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, 'n' || i
         FROM generate_series(1, 30) i;",
        t = db.table("accounts")
    ))
    .await;
    let source = config(&db, "cdp-test-deletes")
        .with_batch_size(4)
        .with_page_size(9)
        .with_full_refresh_deletes(FullRefreshDeletes {
            schema: db.schema.clone(),
            ..FullRefreshDeletes::default()
        })
        .build_source()
        .unwrap();
    let first = read_all(&source, ReadRequest::default()).await;
    assert!(first.ids_with_ops("id").iter().all(|(_, op)| *op == 0));
    assert_eq!(first.ids_with_ops("id").len(), 30);
    let done = first.checkpoints().last().unwrap().cursor.clone();

    db.exec(&format!(
        "DELETE FROM {t} WHERE id IN (3, 8, 30); INSERT INTO {t} VALUES (31, 'us', 'n31');",
        t = db.table("accounts")
    ))
    .await;
    let second = read_all(&source, resume("accounts", done)).await;
    second.assert_aligned(4);
    let rows = second.ids_with_ops("id");
    let mut deleted: Vec<i64> = rows
        .iter()
        .filter(|(_, op)| *op == 1)
        .map(|(id, _)| *id)
        .collect();
    deleted.sort();
    assert_eq!(deleted, [3, 8, 30]);
    assert_eq!(rows.iter().filter(|(_, op)| *op == 0).count(), 28);
    // Tombstones carry the whole key.
    let tombstone = second.batches().into_iter().last().unwrap();
    assert_eq!(
        tombstone
            .data
            .column_by_name("region")
            .unwrap()
            .null_count(),
        0
    );
    assert_eq!(
        tombstone.data.column_by_name("name").unwrap().null_count(),
        tombstone.num_rows()
    );

    // Nothing changed: no tombstones.
    let done = second.checkpoints().last().unwrap().cursor.clone();
    let third = read_all(&source, resume("accounts", done)).await;
    assert!(third.ids_with_ops("id").iter().all(|(_, op)| *op == 0));
}

#[tokio::test]
async fn incremental_needs_a_key_and_names_what_is_missing() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (id int, updated_at timestamptz)",
        t = db.table("logs")
    ))
    .await;
    let source: PostgresSource = config(&db, "cdp-test-nokey")
        .with_stream(
            "logs",
            PostgresStreamConfig::cursor("updated_at").with_sync_mode(SyncMode::IncrementalAppend),
        )
        .build_source()
        .unwrap();
    let error = source.discover().await.unwrap_err().to_string();
    assert!(error.contains("primary_key"), "{error}");
}
