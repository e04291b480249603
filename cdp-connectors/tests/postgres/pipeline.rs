//! PostgreSQL to PostgreSQL through the runtime, with the PostgreSQL state store.

use std::sync::Arc;

use cdp_connectors::{
    FullRefreshDeletes, PostgresDestination, PostgresSourceConfig, PostgresStateStore,
    PostgresStreamConfig,
};
use cdp_core::{Pipeline, RunMode, RunReport, StateStore};

use crate::destination::wait_and_kill;
use crate::support::*;

async fn sync(
    db: &TestDb,
    id: &str,
    source: PostgresSourceConfig,
    destination: PostgresDestination,
) -> RunReport {
    let store: Arc<dyn StateStore> = Arc::new(
        PostgresStateStore::new(db.connection("cdp-test-state")).with_table(&db.schema, "state"),
    );
    Pipeline::builder(id)
        .source(source.build_source().unwrap())
        .destination(destination)
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(25)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap()
}

fn destination(db: &TestDb, app: &str) -> PostgresDestination {
    PostgresDestination::new(db.connection(app))
        .with_schema(&db.schema)
        .with_table_prefix("copy_")
}

async fn column_types(db: &TestDb, table: &str) -> Vec<(String, String)> {
    db.client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
               AND attname NOT LIKE '\\_cdp\\_%' ORDER BY attnum",
            &[&db.table(table)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapped_type_round_trips_into_an_equal_table() {
    let db = TestDb::new().await;
    db.exec(&format!(
        r#"CREATE TABLE {t} (
             id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer, i8 bigint,
             f4 real, f8 double precision, n numeric(12,3), nu numeric, t text,
             vc varchar(20), c char(4), j json, jb jsonb, u uuid, by bytea, d date,
             ts timestamp, tstz timestamptz, tm time, ia integer[], ta text[],
             na numeric(10,2)[], ua uuid[], ip inet, iv interval);
         INSERT INTO {t} VALUES
           (1, true, -32768, 2147483647, -9223372036854775808, 0.1, -1.5e300, -123456789.125,
            '3.14159265358979323846264338327950288419716939937510', 'héllo "wörld" 🎉',
            'short', 'ab', '{{"a": [1, 2.50, null]}}', '{{"z": 1, "a": {{"b": true}}}}',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10', '1970-01-01',
            '1999-12-31 23:59:59.999999', '2024-02-29 12:34:56.789+02', '13:14:15.161718',
            '{{1,NULL,3}}', '{{"a b","",NULL}}', '{{1.10,-2.25}}',
            '{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}}', '192.168.0.1/24', '1 day 02:03:04'),
           (2, false, 0, 0, 0, 0, 0, 0, '0', '', '', '', '[]', '{{}}',
            '00000000-0000-0000-0000-000000000000', '', '2000-01-01', '2000-01-01 00:00:00',
            '2000-01-01 00:00:00+00', '00:00:00', '{{}}', '{{}}', '{{}}', '{{}}', '::1',
            '-1 mons'),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
           (4, true, 1, 1, 1, 'NaN', 'Infinity', 99999999.999, 'NaN', 'x', 'y', 'z',
            '1', '"s"', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '\xdeadbeef', '1900-06-15',
            '1900-06-15 01:02:03', '2262-04-11 23:47:16.854775+00', '23:59:59.999999',
            '{{-1}}', '{{NULL}}', '{{NULL,0.01}}', '{{NULL}}', '10.0.0.0/8', '0');"#,
        t = db.table("types")
    ))
    .await;
    let source = PostgresSourceConfig::new(db.connection("cdp-test-types-src"))
        .with_schema(&db.schema)
        .with_tables(["types"])
        .with_batch_size(3);
    let report = sync(&db, "types", source, destination(&db, "cdp-test-types")).await;
    assert_eq!(report.rows_out(), 4);
    assert_eq!(
        column_types(&db, "copy_types").await,
        column_types(&db, "types").await
    );
    let want = db.rows("types", "id").await;
    let got = db.rows("copy_types", "id").await;
    assert_eq!(got.len(), 4);
    for (got, want) in got.iter().zip(&want) {
        assert_eq!(got, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_with_updates_and_soft_deletes_keep_the_tables_equal() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, amount numeric(10,2) NOT NULL,
             updated_at timestamptz NOT NULL, deleted_at timestamptz);
         INSERT INTO {t} SELECT i, i * 1.5, timestamptz '2024-01-01' + (i / 10) * interval '1 hour', NULL
         FROM generate_series(1, 95) i;",
        t = db.table("orders")
    ))
    .await;
    let source = || {
        PostgresSourceConfig::new(db.connection("cdp-test-orders-src"))
            .with_schema(&db.schema)
            .with_tables(["orders"])
            .with_stream(
                "orders",
                PostgresStreamConfig::cursor("updated_at").with_soft_delete("deleted_at"),
            )
            .with_batch_size(7)
            .with_page_size(20)
    };
    let expected = || async {
        db.client
            .query(
                &format!(
                    "SELECT jsonb_build_object('id', id, 'amount', amount, 'updated_at',
                         updated_at, 'deleted_at', deleted_at)::text
                     FROM {} WHERE deleted_at IS NULL ORDER BY id",
                    db.table("orders")
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let report = sync(&db, "orders", source(), destination(&db, "cdp-test-orders")).await;
    assert_eq!(report.rows_out(), 95);
    assert_eq!(db.rows("copy_orders", "id").await, expected().await);

    // Inserts, updates and soft deletes, all moving the cursor; some rows share it.
    db.exec(&format!(
        "UPDATE {t} SET amount = amount + 1, updated_at = '2024-02-01' WHERE id % 9 = 0;
         UPDATE {t} SET deleted_at = now(), updated_at = '2024-02-01' WHERE id % 11 = 0;
         INSERT INTO {t} SELECT i, i, '2024-02-01', NULL FROM generate_series(96, 130) i;",
        t = db.table("orders")
    ))
    .await;
    let report = sync(&db, "orders", source(), destination(&db, "cdp-test-orders")).await;
    assert_eq!(report.rows_out(), 10 + 8 + 35, "only changed rows are read");
    assert_eq!(db.rows("copy_orders", "id").await, expected().await);

    // Nothing changed: nothing read, nothing written.
    let report = sync(&db, "orders", source(), destination(&db, "cdp-test-orders")).await;
    assert_eq!(report.rows_out(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_refreshes_propagate_hard_deletes_and_new_columns() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, name text);
         INSERT INTO {t} SELECT i, 'n' || i FROM generate_series(1, 60) i;",
        t = db.table("people")
    ))
    .await;
    let source = || {
        PostgresSourceConfig::new(db.connection("cdp-test-people-src"))
            .with_schema(&db.schema)
            .with_tables(["people"])
            .with_batch_size(8)
            .with_page_size(30)
            .with_full_refresh_deletes(FullRefreshDeletes {
                schema: db.schema.clone(),
                ..FullRefreshDeletes::default()
            })
    };
    sync(&db, "people", source(), destination(&db, "cdp-test-people")).await;
    assert_eq!(
        db.rows("copy_people", "id").await,
        db.rows("people", "id").await
    );

    // Rows disappear, a column appears: the next refresh deletes them and widens the table.
    db.exec(&format!(
        "DELETE FROM {t} WHERE id % 7 = 3;
         ALTER TABLE {t} ADD COLUMN email text;
         UPDATE {t} SET email = id || '@example.com' WHERE id % 2 = 0;",
        t = db.table("people")
    ))
    .await;
    sync(&db, "people", source(), destination(&db, "cdp-test-people")).await;
    assert_eq!(db.count("copy_people").await, 51);
    assert_eq!(
        db.rows("copy_people", "id").await,
        db.rows("people", "id").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_write_is_retried_and_the_tables_end_equal() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, v text);
         INSERT INTO {t} SELECT i, 'a' || i FROM generate_series(1, 20) i;",
        t = db.table("items")
    ))
    .await;
    let app = format!("cdp-test-retry-{}", db.schema);
    let source = || {
        PostgresSourceConfig::new(db.connection("cdp-test-items-src"))
            .with_schema(&db.schema)
            .with_tables(["items"])
            .with_stream(
                "items",
                PostgresStreamConfig::default().with_sync_mode(cdp_core::SyncMode::FullRefresh),
            )
            .with_batch_size(6)
    };
    sync(&db, "items", source(), destination(&db, &app)).await;
    db.exec(&format!(
        "UPDATE {t} SET v = 'b' || id; INSERT INTO {t} SELECT i, 'b' || i FROM generate_series(21, 40) i;",
        t = db.table("items")
    ))
    .await;

    // Block the destination's INSERT with a lock, kill its connection while it waits inside
    // its transaction, then let go: the runtime retries the flush on a new connection.
    let mut blocker = connect().await;
    let lock = blocker.transaction().await.unwrap();
    lock.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        db.table("copy_items")
    ))
    .await
    .unwrap();
    let run = {
        let source = source().build_source().unwrap();
        let destination = destination(&db, &app);
        let store = PostgresStateStore::new(db.connection("cdp-test-state"))
            .with_table(&db.schema, "state");
        tokio::spawn(async move {
            Pipeline::builder("items")
                .source(source)
                .destination(destination)
                .state_store(Arc::new(store))
                .mode(RunMode::Batch)
                .commit_every_rows(1_000)
                .build()
                .unwrap()
                .run()
                .await
        })
    };
    assert!(
        wait_and_kill(&db, &app).await,
        "the flush never waited on the lock"
    );
    // While the lock is held nothing of the run is visible.
    assert!(
        db.rows("copy_items", "id")
            .await
            .iter()
            .all(|r| r.contains("\"a"))
    );
    lock.rollback().await.unwrap();
    let report = run.await.unwrap().unwrap();
    assert!(report.destinations[0].retries >= 1, "{report:?}");
    assert_eq!(
        db.rows("copy_items", "id").await,
        db.rows("items", "id").await
    );
}
