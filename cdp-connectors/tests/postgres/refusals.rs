//! Rows PostgreSQL refuses (issue 14): one bad row among thousands is one dead letter with
//! PostgreSQL's message and SQLSTATE, every other row lands in the same epoch, and a rerun
//! adds nothing and fails nothing. Values an existing column would change (a fraction into
//! `bigint`, a text longer than `varchar(5)`) are refused too, never changed.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_connectors::PostgresDestination;
use cdp_core::memory::{MemoryDestination, MemoryHandle, MemorySource};
use cdp_core::{
    Catalog, MemoryStateStore, Pipeline, ReadRequest, Result, RunMode, RunReport, Source,
    SourceEventStream, StateStore, async_trait,
};

use crate::support::*;

/// A memory source whose stream has primary key `id` (or none).
#[derive(Debug)]
struct Keyed(MemorySource, bool);

#[async_trait]
impl Source for Keyed {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn discover(&self) -> Result<Catalog> {
        let mut catalog = self.0.discover().await?;
        if self.1 {
            for stream in &mut catalog.streams {
                stream.primary_key = vec!["id".into()];
            }
        }
        Ok(catalog)
    }

    fn read(&self, request: ReadRequest) -> Result<SourceEventStream> {
        self.0.read(request)
    }
}

const ROWS: i64 = 10_000;

/// A dead letter as the dead-letter destination received it.
#[derive(Debug)]
struct Letter {
    reason: String,
    payload: serde_json::Value,
}

fn letters(handle: &MemoryHandle) -> Vec<Letter> {
    let mut out = Vec::new();
    for batch in handle.batches() {
        let reasons = batch
            .data
            .column_by_name("reason")
            .unwrap()
            .as_string::<i32>();
        let payloads = batch
            .data
            .column_by_name("payload")
            .unwrap()
            .as_string::<i32>();
        for i in 0..batch.num_rows() {
            out.push(Letter {
                reason: reasons.value(i).to_string(),
                payload: serde_json::from_str(payloads.value(i)).unwrap(),
            });
        }
    }
    out
}

/// Runs `batches` (stream `events`, key `id` if `keyed`) into the test's schema, resuming
/// from `store`.
async fn sync(
    db: &TestDb,
    batches: Vec<RecordBatch>,
    store: &Arc<MemoryStateStore>,
    commit_every: usize,
    keyed: bool,
) -> (RunReport, Vec<Letter>) {
    let source = Keyed(MemorySource::new("events", batches), keyed);
    let dead = MemoryDestination::new("dead_letters");
    let handle = dead.handle();
    let store: Arc<dyn StateStore> = store.clone();
    let report = Pipeline::builder("refusals")
        .source(source)
        .destination(
            PostgresDestination::new(db.connection("cdp-test-refusals")).with_schema(&db.schema),
        )
        .dead_letter(dead)
        .state_store(store)
        .mode(RunMode::Batch)
        .commit_every_rows(commit_every)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    (report, letters(&handle))
}

/// 10,000 rows in batches of 1,000, with one row of each kind PostgreSQL (or the
/// destination, for the NUL byte) refuses.
fn poisoned() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, true),
        Field::new("small", DataType::Int64, true),
    ]));
    (0..ROWS / 1000)
        .map(|b| {
            let ids: Vec<i64> = (b * 1000..(b + 1) * 1000).collect();
            let email = ids.iter().map(|&i| match i {
                // The same address as row 10: UNIQUE.
                4567 => Some("user10@example.com".to_string()),
                _ => Some(format!("user{i}@example.com")),
            });
            let name = ids.iter().map(|&i| match i {
                1234 => Some("nul\0byte".to_string()),
                // NOT NULL.
                3456 => None,
                _ => Some(format!("name {i}")),
            });
            // CHECK (qty >= 0).
            let qty = ids
                .iter()
                .map(|&i| Some(if i == 2345 { -1 } else { i % 7 }));
            // Out of `integer`'s range.
            let small = ids
                .iter()
                .map(|&i| Some(if i == 5678 { 5_000_000_000 } else { i }));
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
                    Arc::new(StringArray::from_iter(email)),
                    Arc::new(StringArray::from_iter(name)),
                    Arc::new(Int64Array::from_iter(qty)),
                    Arc::new(Int64Array::from_iter(small)),
                ],
            )
            .unwrap()
        })
        .collect()
}

/// The table the rows go to, with constraints; a stream without a key appends by record
/// hash, which then needs to be unique.
async fn create_constrained_table(db: &TestDb, keyed: bool) {
    let hash = if keyed {
        ""
    } else {
        ", _cdp_record_hash text UNIQUE"
    };
    db.exec(&format!(
        "CREATE TABLE {} (
             id bigint PRIMARY KEY,
             email text UNIQUE,
             name text NOT NULL,
             qty bigint CHECK (qty >= 0),
             small integer{hash}
         )",
        db.table("events")
    ))
    .await;
}

/// Asserts one dead letter per poisoned row, each with its SQLSTATE.
fn assert_one_letter_each(letters: &[Letter]) {
    let mut found: Vec<(i64, &str)> = letters
        .iter()
        .map(|l| (l.payload["id"].as_i64().unwrap(), l.reason.as_str()))
        .collect();
    found.sort();
    let expected = [
        (1234, "22021"),
        (2345, "23514"),
        (3456, "23502"),
        (4567, "23505"),
        (5678, "22003"),
    ];
    assert_eq!(found.len(), expected.len(), "{letters:#?}");
    for ((id, reason), (want_id, code)) in found.iter().zip(expected) {
        assert_eq!(*id, want_id, "{letters:#?}");
        assert!(
            reason.contains(&format!("SQLSTATE {code}")),
            "row {id}: {reason}"
        );
    }
}

async fn assert_landed(db: &TestDb) {
    assert_eq!(db.count("events").await, ROWS - 5);
    let missing: Vec<i64> = db
        .client
        .query(
            &format!(
                "SELECT g::bigint FROM generate_series(0, {}) g WHERE NOT EXISTS \
                 (SELECT 1 FROM {} e WHERE e.id = g) ORDER BY g",
                ROWS - 1,
                db.table("events")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(missing, [1234, 2345, 3456, 4567, 5678]);
    // The first holder of the address kept it.
    let holder: i64 = db
        .client
        .query_one(
            &format!(
                "SELECT id FROM {} WHERE email = 'user10@example.com'",
                db.table("events")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(holder, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refused_row_is_one_dead_letter_with_its_sqlstate_and_the_rest_land() {
    let db = TestDb::new().await;
    create_constrained_table(&db, true).await;
    let store = Arc::new(MemoryStateStore::new());
    // One flush for all 10,000 rows: the refused rows are found inside it.
    let (report, letters) = sync(&db, poisoned(), &store, 100_000, true).await;
    assert_one_letter_each(&letters);
    assert_landed(&db).await;
    assert_eq!(report.dead_letters, 5);
    let postgres = &report.destinations[0];
    assert_eq!(postgres.rows_written, (ROWS - 5) as u64);
    assert_eq!(postgres.rows_rejected, 5);
    let refused = letters.iter().find(|l| l.reason.contains("23514")).unwrap();
    assert!(
        refused.reason.contains("check constraint"),
        "{}",
        refused.reason
    );
    assert_eq!(refused.payload["qty"], -1);

    // A rerun resumes after them: nothing to add, nothing fails.
    let (again, letters) = sync(&db, poisoned(), &store, 100_000, true).await;
    assert_eq!(again.rows_out(), 0);
    assert!(letters.is_empty(), "{letters:?}");
    assert_landed(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_of_a_stream_without_a_key_in_later_flushes_are_found_too() {
    let db = TestDb::new().await;
    create_constrained_table(&db, false).await;
    let store = Arc::new(MemoryStateStore::new());
    // A flush every 2,500 rows: the duplicate address meets a row committed flushes ago.
    let (report, letters) = sync(&db, poisoned(), &store, 2_500, false).await;
    assert!(report.committed_epoch >= 4, "{report}");
    assert_one_letter_each(&letters);
    assert_landed(&db).await;
    let (again, letters) = sync(&db, poisoned(), &store, 2_500, false).await;
    assert_eq!(again.rows_out(), 0);
    assert!(letters.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_in_the_first_load_of_an_empty_table_is_isolated_too() {
    // Every column of the table has the type the destination writes, so its first flush
    // into the empty table is a COPY straight in, which the CHECK fails.
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {} (id bigint PRIMARY KEY, qty bigint CHECK (qty >= 0))",
        db.table("events")
    ))
    .await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("qty", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..500)) as ArrayRef,
            Arc::new(Int64Array::from_iter_values(
                (0..500).map(|i| if i == 321 { -5 } else { i }),
            )),
        ],
    )
    .unwrap();
    let store = Arc::new(MemoryStateStore::new());
    let (_, letters) = sync(&db, vec![batch], &store, 100_000, true).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].payload["id"], 321);
    assert!(
        letters[0].reason.contains("SQLSTATE 23514"),
        "{}",
        letters[0].reason
    );
    assert_eq!(db.count("events").await, 499);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_an_existing_column_would_change_are_refused_not_changed() {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {} (id bigint PRIMARY KEY, code varchar(5), amount bigint, price numeric(8,2))",
        db.table("events")
    ))
    .await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("code", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("price", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])) as ArrayRef,
            Arc::new(StringArray::from(vec![
                Some("ABC"),
                Some("TOOLONGCODE"),
                Some("ABCDE"),
                Some("X"),
                Some("Y"),
                Some("Z"),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(12.0),
                Some(1.0),
                Some(10.75),
                Some(0.4),
                Some(-3.0),
                Some(7.0),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(2.25),
                Some(3.0),
                Some(4.0),
                Some(9.125),
                None,
            ])),
        ],
    )
    .unwrap();
    let store = Arc::new(MemoryStateStore::new());
    let (report, letters) = sync(&db, vec![batch], &store, 100_000, true).await;
    let mut refused: Vec<(i64, String)> = letters
        .iter()
        .map(|l| (l.payload["id"].as_i64().unwrap(), l.reason.clone()))
        .collect();
    refused.sort();
    let ids: Vec<i64> = refused.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [2, 3, 4, 5], "{refused:#?}");
    assert!(
        refused[0].1.contains("character varying(5)"),
        "{}",
        refused[0].1
    );
    assert!(
        refused[1].1.contains("10.75 is not a whole number"),
        "{}",
        refused[1].1
    );
    assert!(
        refused[2].1.contains("0.4 is not a whole number"),
        "{}",
        refused[2].1
    );
    assert!(
        refused[3].1.contains("9.125 has more than 2 decimals"),
        "{}",
        refused[3].1
    );
    assert_eq!(report.dead_letters, 4);
    assert_eq!(
        db.rows("events", "id").await,
        [
            r#"{"id": 1, "code": "ABC", "price": 1.50, "amount": 12}"#,
            r#"{"id": 6, "code": "Z", "price": null, "amount": 7}"#,
        ]
    );
}
