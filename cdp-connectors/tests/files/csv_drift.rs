//! The CSV source's inference and drift: values kept as their text says, headers that
//! change between files, ragged and malformed rows, a last row still being written.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use cdp_connectors::{
    CsvSource, CsvSourceConfig, DuplicateHeaders, JsonlDestination, NewFields, ParquetDestination,
    TypeConflicts,
};
use cdp_core::{DriftAction, Error, MemoryStateStore, Pipeline, ReadRequest, RunMode, Source};
use serde_json::json;

use crate::drift::{landed_json, landed_parquet};
use crate::support::*;

fn texts(read: &cdp_testkit::read::SourceRead, column: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for batch in read.records() {
        let c = batch.column_by_name(column).unwrap();
        let c = arrow::compute::cast(c, &DataType::Utf8).unwrap();
        out.extend(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)));
    }
    out
}

pub(crate) const ZONED: &str = "id,at,local\n\
    1,2020-01-01T00:01:22Z,2020-01-01T00:01:22\n\
    2,2020-01-01T02:01:23+02:00,2020-01-01 00:01:23\n\
    3,2024-05-01T10:00:00.123456Z,2024-05-01T10:00:00.5\n";

/// The instants of `ZONED`, microseconds since the epoch.
pub(crate) const INSTANTS: [i64; 3] = [
    1_577_836_882_000_000,
    1_577_836_883_000_000,
    1_714_557_600_123_456,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoned_timestamps_stay_utc_instants_in_every_landing_zone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("times.csv");
    write(&path, ZONED);
    let source = CsvSource::new(&path);
    let schema = source.schema().unwrap();
    assert_eq!(
        schema.field_with_name("at").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(
        schema.field_with_name("local").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    let read = read_all(&source, ReadRequest::default()).await;
    let at = read.records()[0]
        .column_by_name("at")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>()
        .clone();
    assert_eq!(at.values().to_vec(), INSTANTS);

    Pipeline::builder("times")
        .source(source)
        .destination(JsonlDestination::new(dir.path().join("jsonl")))
        .destination(ParquetDestination::new(dir.path().join("parquet")))
        .state_store(Arc::new(MemoryStateStore::new()))
        .mode(RunMode::Batch)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let json = landed_json(&dir.path().join("jsonl"));
    let zoned: Vec<_> = json
        .iter()
        .map(|v| v["at"].as_str().unwrap().to_string())
        .collect();
    // The zone is kept: each instant is written in UTC, marked as such.
    for (text, micros) in zoned.iter().zip(INSTANTS) {
        let parsed = chrono::DateTime::parse_from_rfc3339(text).unwrap();
        assert_eq!(parsed.timestamp_micros(), micros, "{text}");
        assert!(text.ends_with('Z'), "{text}");
    }
    let local: Vec<_> = json
        .iter()
        .map(|v| v["local"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(local[0], "2020-01-01T00:01:22");
    assert!(
        local.iter().all(|t| !t.ends_with('Z') && !t.contains('+')),
        "{local:?}"
    );
    let parquet = landed_parquet(&dir.path().join("parquet"));
    let at = parquet[0].column_by_name("at").unwrap();
    assert!(
        matches!(at.data_type(), DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if &**tz == "UTC"),
        "{}",
        at.data_type()
    );
    assert_eq!(
        at.as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec(),
        INSTANTS
    );
}

#[tokio::test]
async fn identifiers_with_leading_zeros_or_exponents_stay_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("people.csv");
    write(
        &path,
        "id,zip,sku,phone,score,ratio\n\
         1,02134,1E5,0044123456,10,0.5\n\
         2,10001,2E7,0044987654,-3,1.25\n",
    );
    let source = CsvSource::new(&path);
    let schema = source.schema().unwrap();
    let types: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Int64,
            DataType::Float64
        ]
    );
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(
        texts(&read, "zip"),
        [Some("02134".into()), Some("10001".into())]
    );
    assert_eq!(
        texts(&read, "sku"),
        [Some("1E5".into()), Some("2E7".into())]
    );
    assert_eq!(texts(&read, "phone")[0].as_deref(), Some("0044123456"));
}

#[tokio::test]
async fn duplicate_headers_are_an_error_or_suffixed_by_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.csv");
    write(&path, "id,email,email,email_2\n1,a@x.com,b@x.com,c@x.com\n");
    let err = CsvSource::new(&path).discover().await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("`email` twice (columns 2 and 3)"),
        "{message}"
    );
    assert!(message.contains("duplicate_headers"), "{message}");

    let config: CsvSourceConfig =
        serde_json::from_value(json!({"path": path, "duplicate_headers": "suffix"})).unwrap();
    let source = config.build_source().unwrap();
    let names: Vec<_> = source
        .schema()
        .unwrap()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "email", "email_3", "email_2"]);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 1);
    assert_eq!(texts(&read, "email_3"), [Some("b@x.com".into())]);
    assert!(read.dead_letters().is_empty());
    let _ = DuplicateHeaders::Suffix;
}

fn rows_with_a_stray_quote_and_a_short_row(n: usize) -> (String, Vec<i64>) {
    let mut text = String::from("id,email,note\n");
    let mut good = Vec::new();
    for i in 0..n as i64 {
        match i {
            1000 => text.push_str("1000,\"oops@x.com,stray quote\n"),
            3000 => text.push_str("3000,short\n"),
            _ => {
                good.push(i);
                text.push_str(&format!("{i},user{i}@x.com,\"note, {i}\"\n"));
            }
        }
    }
    (text, good)
}

#[tokio::test]
async fn a_stray_quote_and_a_short_row_are_one_dead_letter_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    let (text, good) = rows_with_a_stray_quote_and_a_short_row(5000);
    write(&path, &text);
    for batch_size in [100, 8192] {
        let source = CsvSource::new(&path).with_batch_size(batch_size);
        let read = read_all(&source, ReadRequest::default()).await;
        assert_eq!(read.ids("id"), good, "batch size {batch_size}");
        let dead: Vec<_> = read
            .dead_letters()
            .into_iter()
            .map(|d| (d.position.unwrap(), d.payload))
            .collect();
        assert_eq!(
            dead,
            [
                (
                    "users.csv:1002".to_string(),
                    "1000,\"oops@x.com,stray quote".to_string()
                ),
                ("users.csv:3002".to_string(), "3000,short".to_string()),
            ],
            "batch size {batch_size}"
        );
        // A rerun from the cursor adds nothing and fails nothing.
        let again = read_all(&source, resume("users", read.last_cursor())).await;
        assert_eq!(again.rows(), 0);
        assert!(again.dead_letters().is_empty());
    }

    // The same near the end of the file, where the quote runs to the end.
    let mut text = String::from("id,email\n");
    for i in 0..20 {
        text.push_str(&format!("{i},u{i}@x.com\n"));
    }
    text.push_str("20,\"oops\n21,u21@x.com\n22,u22@x.com\n");
    write(&path, &text);
    let read = read_all(&CsvSource::new(&path), ReadRequest::default()).await;
    assert_eq!(read.ids("id"), (0..20).chain([21, 22]).collect::<Vec<_>>());
    let dead = read.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, "20,\"oops");
    assert!(
        dead[0].reason.contains("never closed"),
        "{}",
        dead[0].reason
    );
}

#[tokio::test]
async fn an_unterminated_last_row_waits_for_its_line_break() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.csv");
    write(&path, "id,email\n1,a@x.com\n2,b@x.c");
    let source = CsvSource::new(&path);
    let first = read_all(&source, ReadRequest::default()).await;
    assert_eq!(first.ids("id"), [1]);
    assert!(first.dead_letters().is_empty());
    assert_eq!(first.last_cursor()["files"], json!({"live.csv": 19}));

    append(&path, "om\n");
    let second = read_all(&source, resume("live", first.last_cursor())).await;
    assert_eq!(second.ids("id"), [2]);
    assert_eq!(texts(&second, "email"), [Some("b@x.com".into())]);
    assert!(second.dead_letters().is_empty());

    // Exports that end without a line break can say so.
    write(&path, "id,email\n1,a@x.com\n2,b@x.com");
    let complete = CsvSource::new(&path).with_wait_for_newline(false);
    assert_eq!(
        read_all(&complete, ReadRequest::default()).await.ids("id"),
        [1, 2]
    );
    // A quoted value still open at the end waits too.
    write(&path, "id,email\n1,a@x.com\n2,\"b@x.com\nand more");
    let read = read_all(&CsvSource::new(&path), ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1]);
    assert!(read.dead_letters().is_empty());
}

fn two_exports(dir: &Path) -> std::path::PathBuf {
    let exports = dir.join("exports");
    std::fs::create_dir(&exports).unwrap();
    write(&exports.join("2024-01.csv"), "id,name\n1,a\n2,b\n");
    write(
        &exports.join("2024-02.csv"),
        "name,plan,id\nc,premium,3\nd,,4\n",
    );
    exports
}

#[tokio::test]
async fn a_column_a_later_file_adds_evolves_the_schema_or_overflows_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let exports = two_exports(dir.path());
    let source = CsvSource::new(&exports).with_infer_records(2);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 2, 3, 4]);
    assert_eq!(
        texts(&read, "name"),
        ["a", "b", "c", "d"].map(|s| Some(s.to_string()))
    );
    let changes = read
        .events
        .iter()
        .filter(|e| matches!(e, cdp_core::SourceEvent::SchemaChange { .. }))
        .count();
    assert_eq!(changes, 1);
    let last = read.records().pop().unwrap();
    assert_eq!(last.schema().field(2).name(), "plan");
    let plan = last
        .column_by_name("plan")
        .unwrap()
        .as_string::<i32>()
        .clone();
    assert_eq!(plan.value(0), "premium");
    assert!(plan.is_null(1));

    let overflow = CsvSource::new(&exports)
        .with_infer_records(2)
        .with_new_fields(NewFields::Overflow);
    let read = read_all(&overflow, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 2, 3, 4]);
    assert_eq!(
        texts(&read, "_overflow"),
        [None, None, Some(r#"{"plan":"premium"}"#.to_string()), None]
    );
    let drift: Vec<_> = read
        .events
        .iter()
        .filter_map(|e| match e {
            cdp_core::SourceEvent::Drift(d) => Some((d.path.clone(), d.action)),
            _ => None,
        })
        .collect();
    assert_eq!(drift, [("plan".to_string(), DriftAction::Overflowed)]);

    let refuse = CsvSource::new(&exports)
        .with_infer_records(2)
        .with_new_fields(NewFields::DeadLetter);
    let read = read_all(&refuse, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 2, 4]);
    let dead = read.dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("column `plan`"),
        "{}",
        dead[0].reason
    );
}

#[tokio::test]
async fn ragged_rows_are_dead_letters_or_overflow_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ragged.csv");
    write(&path, "id,name\n1,a\n2,b,extra,more\n3\n4,d\n");
    let read = read_all(&CsvSource::new(&path), ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 4]);
    let reasons: Vec<_> = read.dead_letters().into_iter().map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        [
            "the row has 4 fields; the header names 2",
            "the row has 1 fields; the header names 2"
        ]
    );
    let overflow = CsvSource::new(&path).with_new_fields(NewFields::Overflow);
    let read = read_all(&overflow, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 2, 4]);
    assert_eq!(
        texts(&read, "_overflow"),
        [None, Some(r#"{"3":"extra","4":"more"}"#.to_string()), None]
    );
}

#[tokio::test]
async fn a_value_its_column_cannot_hold_widens_it_or_is_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.csv");
    let mut text = String::from("id,score\n");
    for i in 0..50 {
        text.push_str(&format!("{i},{i}\n"));
    }
    text.push_str("50,2.5\n51,n/a\n52,007\n");
    write(&path, &text);
    let source = CsvSource::new(&path)
        .with_infer_records(10)
        .with_batch_size(16);
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.rows(), 53);
    let scores = texts(&read, "score");
    assert_eq!(scores[50].as_deref(), Some("2.5"));
    assert_eq!(scores[51].as_deref(), Some("n/a"));
    assert_eq!(scores[52].as_deref(), Some("007"));
    let last = read.records().pop().unwrap();
    assert_eq!(
        last.column_by_name("score").unwrap().data_type(),
        &DataType::Utf8
    );

    let strict = CsvSource::new(&path)
        .with_infer_records(10)
        .with_type_conflicts(TypeConflicts::DeadLetter);
    let read = read_all(&strict, ReadRequest::default()).await;
    assert_eq!(read.rows(), 50);
    let reasons: Vec<_> = read.dead_letters().into_iter().map(|d| d.reason).collect();
    assert_eq!(reasons.len(), 3);
    assert_eq!(
        reasons[2],
        "`score` is Int64 but the value \"007\" does not fit (type_conflicts = \"dead_letter\")"
    );
}

#[tokio::test]
async fn a_byte_order_mark_and_crlf_line_breaks_are_read_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("excel.csv");
    std::fs::write(&path, b"\xEF\xBB\xBFid,name\r\n1,\"a\r\nb\"\r\n2,c\r\n").unwrap();
    let source = CsvSource::new(&path);
    assert_eq!(source.schema().unwrap().field(0).name(), "id");
    let read = read_all(&source, ReadRequest::default()).await;
    assert_eq!(read.ids("id"), [1, 2]);
    assert_eq!(
        texts(&read, "name"),
        [Some("a\r\nb".into()), Some("c".into())]
    );
    assert_eq!(source.name(), "csv");
}

/// Regression (found by the CSV property test): a quoted value spanning lines in a row with
/// a field too many was refused line by line, and its second line landed as a row.
#[tokio::test]
async fn a_ragged_row_with_a_value_spanning_lines_is_one_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ragged.csv");
    write(&path, "id\n0,\"\na\"\n1\n");
    for new_fields in [NewFields::Evolve, NewFields::DeadLetter] {
        let source = CsvSource::new(&path).with_new_fields(new_fields);
        let read = read_all(&source, ReadRequest::default()).await;
        assert_eq!(read.ids("id"), [1]);
        let dead = read.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].payload, "0,\"\na\"");
    }
}
