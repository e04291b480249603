//! Values kept or refused, never changed (issue 14), in the landing zones: NaN and
//! ±infinity, the end of the day (`24:00:00`, which PostgreSQL's `time` holds), integers
//! beyond 64 bits, and a date no text can render, written to JSONL and Parquet and read back.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    Time64MicrosecondArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float64Type, Int64Type, Schema, SchemaRef,
    Time64MicrosecondType, TimeUnit,
};
use cdp_connectors::{JsonlDestination, JsonlSource, ParquetDestination, ParquetSource};
use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_core::{MemoryStateStore, Pipeline, ReadRequest, RunReport, StateStore};

const END_OF_DAY: i64 = 86_400_000_000;
const BEYOND_I64: i128 = 12_345_678_901_234_567_890;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ratio", DataType::Float64, true),
        Field::new("at", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("big", DataType::Decimal128(20, 0), true),
        Field::new("day", DataType::Date32, true),
    ]))
}

/// Rows 0..5: NaN, +∞, −∞, an ordinary float; 24:00:00 and an ordinary time; an integer
/// beyond i64; row 4 holds a date past chrono's range (no text renders it).
fn batch() -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(vec![0, 1, 2, 3, 4])) as ArrayRef,
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                Some(0.1),
                None,
            ])),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(END_OF_DAY),
                Some(45_296_789_000),
                None,
                Some(0),
                Some(1),
            ])),
            Arc::new(
                Decimal128Array::from(vec![
                    Some(BEYOND_I64),
                    Some(-BEYOND_I64),
                    None,
                    Some(1),
                    None,
                ])
                .with_precision_and_scale(20, 0)
                .unwrap(),
            ),
            Arc::new(Date32Array::from(vec![
                Some(19_000),
                None,
                None,
                None,
                Some(i32::MAX),
            ])),
        ],
    )
    .unwrap()
}

async fn land(root: &Path, parquet: bool) -> RunReport {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let builder = Pipeline::builder("values")
        .source(MemorySource::new("values", vec![batch()]))
        .dead_letter(MemoryDestination::new("dead_letters"))
        .state_store(store);
    let builder = if parquet {
        builder.destination(ParquetDestination::new(root))
    } else {
        builder.destination(JsonlDestination::new(root))
    };
    builder.build().unwrap().run().await.unwrap()
}

fn files(root: &Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.join("values")];
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

#[tokio::test]
async fn jsonl_keeps_non_finite_floats_the_end_of_the_day_and_big_integers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("zone");
    let report = land(&root, false).await;
    // The date nothing can render is refused, with the reason, not written as an error text.
    assert_eq!(report.dead_letters, 1, "{report}");
    let paths = files(&root, "jsonl");
    assert_eq!(paths.len(), 1);
    let text = std::fs::read_to_string(&paths[0]).unwrap();
    assert!(!text.contains("ERROR") && !text.contains("error"), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["ratio"], "NaN");
    assert_eq!(lines[1]["ratio"], "Infinity");
    assert_eq!(lines[2]["ratio"], "-Infinity");
    assert_eq!(lines[3]["ratio"], 0.1);
    assert_eq!(lines[0]["at"], "24:00:00");
    assert_eq!(lines[1]["at"], "12:34:56.789");
    // The integer beyond i64 is written as the exact number.
    assert!(text.contains(r#""big":12345678901234567890"#), "{text}");
    assert!(text.contains(r#""big":-12345678901234567890"#), "{text}");

    // Read back with the schema: each value is the one written, or its row is a dead letter
    // (the JSONL decoder decides whether a float column takes the strings NaN and
    // Infinity); nothing reads back changed.
    let read_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ratio", DataType::Float64, true),
        Field::new("big", DataType::Decimal128(20, 0), true),
    ]));
    let source = JsonlSource::new(root.join("values"))
        .with_schema(read_schema)
        .with_stream("values");
    let read = cdp_testkit::read::read_all(&source, ReadRequest::default()).await;
    let dead: Vec<i64> = read
        .dead_letters()
        .iter()
        .map(|d| {
            let payload: serde_json::Value = serde_json::from_str(&d.payload).unwrap();
            payload["id"].as_i64().unwrap()
        })
        .collect();
    let expected_ratio = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.1];
    let expected_big = [Some(BEYOND_I64), Some(-BEYOND_I64), None, Some(1)];
    let mut landed = Vec::new();
    for data in read.records() {
        let ids = data
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let ratio = data
            .column_by_name("ratio")
            .unwrap()
            .as_primitive::<Float64Type>();
        let big = data
            .column_by_name("big")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        for i in 0..data.num_rows() {
            let id = ids.value(i) as usize;
            let want = expected_ratio[id];
            let got = ratio.value(i);
            assert!(
                got == want || (got.is_nan() && want.is_nan()),
                "row {id}: {got} read back for {want}"
            );
            assert_eq!(big.is_valid(i).then(|| big.value(i)), expected_big[id]);
            landed.push(id as i64);
        }
    }
    landed.extend(&dead);
    landed.sort();
    assert_eq!(
        landed,
        [0, 1, 2, 3],
        "every row lands or is a dead letter, once"
    );
    assert!(!dead.contains(&3), "an ordinary row is not refused");
}

#[tokio::test]
async fn parquet_keeps_every_value_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let report = land(&root, true).await;
    assert_eq!(report.dead_letters, 0, "{report}");
    let source = ParquetSource::new(root.join("values")).with_stream("values");
    let read = cdp_testkit::read::read_all(&source, ReadRequest::default()).await;
    let records = read.records();
    assert_eq!(read.rows(), 5);
    let data = &records[0];
    let ratio = data
        .column_by_name("ratio")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!(ratio.value(0).is_nan());
    assert_eq!(ratio.value(1), f64::INFINITY);
    assert_eq!(ratio.value(2), f64::NEG_INFINITY);
    let at = data
        .column_by_name("at")
        .unwrap()
        .as_primitive::<Time64MicrosecondType>();
    assert_eq!(at.value(0), END_OF_DAY);
    let big = data
        .column_by_name("big")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(big.value(0), BEYOND_I64);
    let day = data
        .column_by_name("day")
        .unwrap()
        .as_primitive::<Date32Type>();
    assert_eq!(day.value(4), i32::MAX);
    assert!(day.is_null(1));
}
