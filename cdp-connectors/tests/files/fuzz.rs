//! Property tests of the JSONL and CSV sources over random and mutated input, each case
//! under a time limit: no panic, no hang, every record accounted for (rows landed plus
//! dead letters equal the records read), a resume from any checkpoint reads exactly what
//! followed it, and no landed value differs from its text.

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use cdp_connectors::{CsvSource, JsonlSource, NewFields, TypeConflicts};
use cdp_core::{ReadRequest, Source, SourceEvent};
use cdp_testkit::conformance::check_source;
use futures::StreamExt;
use proptest::prelude::*;
use serde_json::{Value, json};

/// How long one case may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(20);

/// Cases per property: 256, or `PROPTEST_CASES` for a longer hunt.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads `source` to its end under [`LIMIT`]: the events, or the error it stopped with.
async fn read(source: &dyn Source) -> Result<Vec<SourceEvent>, String> {
    let run = async {
        let mut stream = source
            .read(ReadRequest::default())
            .map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            events.push(event.map_err(|e| e.to_string())?);
        }
        Ok(events)
    };
    tokio::time::timeout(LIMIT, run)
        .await
        .map_err(|_| "the read hung".to_string())?
}

fn counts(events: &[SourceEvent]) -> (usize, usize) {
    let rows = events
        .iter()
        .map(|e| match e {
            SourceEvent::Batch(b) => b.num_rows(),
            _ => 0,
        })
        .sum();
    let dead = events
        .iter()
        .filter(|e| matches!(e, SourceEvent::DeadLetter(_)))
        .count();
    (rows, dead)
}

fn policies() -> impl Strategy<Value = (NewFields, TypeConflicts)> {
    (
        prop_oneof![
            Just(NewFields::Evolve),
            Just(NewFields::Overflow),
            Just(NewFields::DeadLetter)
        ],
        prop_oneof![Just(TypeConflicts::Widen), Just(TypeConflicts::DeadLetter)],
    )
}

// ---- JSONL ----

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        Just(json!(12345678901234567890u64)),
        "[a-z0-9 ,\"\\\\{}\\[\\]é😀]{0,8}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-e]", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One JSONL line, without its line break: a valid record carrying its `id`, or one of
/// the ways a line goes wrong.
fn jsonl_line(id: usize) -> impl Strategy<Value = Vec<u8>> {
    let record = || {
        prop::collection::btree_map("[a-f]|properties|plan", value(), 0..5)
            .prop_map(move |fields| {
                // `id` first, so a mutation after the first comma leaves it alone.
                let rest = Value::Object(fields.into_iter().collect()).to_string();
                match rest.strip_prefix('{').filter(|r| *r != "}") {
                    Some(rest) => format!("{{\"id\":{id},{rest}"),
                    None => format!("{{\"id\":{id}}}"),
                }
                .into_bytes()
            })
            .boxed()
    };
    prop_oneof![
        6 => record(),
        1 => (record(), any::<prop::sample::Index>()).prop_map(|(r, at)| {
            // Cut short.
            let cut = at.index(r.len().max(1));
            r[..cut.max(1)].to_vec()
        }),
        1 => (record(), record()).prop_map(|(a, b)| [a, b].concat()),
        1 => record().prop_map(|r| {
            let mut r = r;
            r.pop();
            r.extend_from_slice(b",}");
            r
        }),
        1 => prop::collection::vec(any::<u8>().prop_filter("one line", |b| *b != b'\n'), 0..12),
        1 => prop_oneof![Just(b"[1,2]".to_vec()), Just(b"42".to_vec()), Just(b"\"x\"".to_vec()), Just(b"null".to_vec()), Just(b"   ".to_vec())],
        1 => (record(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut r, at, byte)| {
            // One byte changed, after the `id`.
            let start = r.iter().position(|b| *b == b',').map_or(r.len() - 1, |p| p + 1);
            let i = start + at.index(r.len() - start);
            r[i] = if byte == b'\n' { b' ' } else { byte };
            r
        }),
    ]
}

fn jsonl_file() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (0usize..40).prop_flat_map(|n| (0..n).map(jsonl_line).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn jsonl_rows_and_dead_letters_account_for_every_line(
        lines in jsonl_file(),
        crlf in any::<bool>(),
        batch_size in 1usize..9,
        infer_records in 1usize..20,
        (new_fields, type_conflicts) in policies(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.jsonl");
        let mut text = Vec::new();
        for line in &lines {
            text.extend_from_slice(line);
            text.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        std::fs::write(&path, &text).unwrap();
        let records = lines.iter().filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
        let objects = lines
            .iter()
            .filter(|l| serde_json::from_slice::<serde_json::Map<String, Value>>(l).is_ok())
            .count();
        let source = JsonlSource::new(&path)
            .with_batch_size(batch_size)
            .with_infer_records(infer_records)
            .with_new_fields(new_fields)
            .with_type_conflicts(type_conflicts);
        let rt = runtime();
        match rt.block_on(read(&source)) {
            Ok(events) => {
                let (rows, dead) = counts(&events);
                prop_assert_eq!(rows + dead, records);
                // Rows come out in file order, each valid record's `id` its own.
                let mut ids = Vec::new();
                for event in &events {
                    // A sample of `{}` lines has no `id` yet (or puts it in the overflow).
                    if let SourceEvent::Batch(b) = event
                        && let Some(id) = b.data.column_by_name("id")
                        && let Ok(id) = arrow::compute::cast(id, &DataType::Int64)
                    {
                        ids.extend(id.as_primitive::<Int64Type>().iter().flatten());
                    }
                }
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "{:?}", ids);
                if records <= 25 {
                    let report = rt.block_on(async {
                        tokio::time::timeout(LIMIT, check_source(&source, 8)).await
                    });
                    let report = report.map_err(|_| TestCaseError::fail("conformance hung"))?;
                    let report = report.map_err(TestCaseError::fail)?;
                    prop_assert_eq!(report.rows, rows);
                    prop_assert_eq!(report.dead_letters, dead);
                }
            }
            Err(e) => {
                // Only a file without one JSON object to infer from may stop the read.
                prop_assert_eq!(objects, 0, "{}", e);
                prop_assert!(e.contains("no JSON object"), "{}", e);
            }
        }
    }
}

// ---- CSV ----

/// One CSV field as text (`Err`: bytes that are not UTF-8).
type CsvField = Result<String, Vec<u8>>;

fn csv_field() -> impl Strategy<Value = CsvField> {
    prop_oneof![
        3 => any::<i32>().prop_map(|i| Ok(i.to_string())),
        1 => prop_oneof![Just("007"), Just("+5"), Just("1E5"), Just("0044123456"), Just("-0"), Just("1.50"), Just("0.1")]
            .prop_map(|s| Ok(s.to_string())),
        2 => (-1e6f64..1e6).prop_map(|f| Ok(format!("{f:.3}"))),
        1 => prop_oneof![Just("true"), Just("FALSE"), Just("")].prop_map(|s| Ok(s.to_string())),
        1 => prop_oneof![Just("2020-01-01T00:01:22Z"), Just("2024-05-01T10:00:00.5+02:00"), Just("2020-01-01 00:01:22"), Just("2024-05-01")]
            .prop_map(|s| Ok(s.to_string())),
        // Text with delimiters, quotes, line breaks (each followed by a letter, so no line
        // of a value reads as a typed row of its own), and characters beyond ASCII.
        4 => "([a-z ,;\"é😀]|\r?\n[a-z]){0,10}".prop_map(Ok),
        1 => Just(Err(vec![b'a', 0xff, b'b'])),
    ]
}

fn quote(field: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// A CSV file: a header of `width` columns (`id` first) and rows whose field counts are
/// mostly right; returns the bytes and each row's fields.
fn csv_file() -> impl Strategy<Value = (usize, Vec<Vec<CsvField>>)> {
    (1usize..5).prop_flat_map(|width| {
        let row = prop_oneof![
            8 => Just(0i8),
            1 => Just(-1i8),
            1 => Just(1i8),
        ]
        .prop_flat_map(move |ragged| {
            let n = (width as i8 + ragged).max(1) as usize;
            prop::collection::vec(csv_field(), n - 1)
        });
        (Just(width), prop::collection::vec(row, 0..30))
    })
}

/// What a landed value reads as, to compare with its text.
fn rendered(column: &dyn Array, row: usize) -> Option<String> {
    if column.is_null(row) {
        return None;
    }
    Some(match column.data_type() {
        DataType::Utf8 => column.as_string::<i32>().value(row).to_string(),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Float64 => format!("f{}", column.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => column.as_boolean().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            format!(
                "t{}",
                column.as_primitive::<TimestampMicrosecondType>().value(row)
            )
        }
        DataType::Date32 => format!(
            "d{}",
            column
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(row)
        ),
        other => format!("unexpected type {other}"),
    })
}

/// `text` as `rendered` shows it for a column of `data_type`.
fn expected(text: &str, data_type: &DataType) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    Some(match data_type {
        DataType::Float64 => format!("f{}", text.parse::<f64>().unwrap()),
        DataType::Boolean => text.to_ascii_lowercase(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let at = arrow::compute::kernels::cast_utils::string_to_datetime(&chrono::Utc, text)
                .unwrap();
            format!("t{}", at.timestamp_micros())
        }
        DataType::Date32 => {
            let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
            format!(
                "d{}",
                (day - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days()
            )
        }
        _ => text.to_string(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn csv_rows_and_dead_letters_account_for_every_record_and_keep_their_text(
        (width, rows) in csv_file(),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        quote_all in any::<bool>(),
        batch_size in 1usize..9,
        infer_records in 1usize..20,
        (new_fields, type_conflicts) in policies(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.csv");
        let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut text = Vec::new();
        if bom {
            text.extend_from_slice(b"\xEF\xBB\xBF");
        }
        let names: Vec<String> = std::iter::once("id".to_string())
            .chain((1..width).map(|i| format!("c{i}")))
            .collect();
        text.extend_from_slice(names.join(",").as_bytes());
        text.extend_from_slice(end);
        for (id, fields) in rows.iter().enumerate() {
            text.extend_from_slice(id.to_string().as_bytes());
            for field in fields {
                text.push(b',');
                let bytes = match field {
                    Ok(s) => s.as_bytes().to_vec(),
                    Err(b) => b.clone(),
                };
                let needs = bytes.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
                if needs || (quote_all && !bytes.is_empty()) {
                    text.extend_from_slice(&quote(&bytes));
                } else {
                    text.extend_from_slice(&bytes);
                }
            }
            text.extend_from_slice(end);
        }
        std::fs::write(&path, &text).unwrap();

        let well_formed = |fields: &Vec<CsvField>, overflow: bool| {
            let count_ok = fields.len() + 1 == width || (overflow && fields.len() + 1 > width);
            count_ok && fields.iter().all(Result::is_ok)
        };
        let source = CsvSource::new(&path)
            .with_batch_size(batch_size)
            .with_infer_records(infer_records)
            .with_new_fields(new_fields)
            .with_type_conflicts(type_conflicts);
        let rt = runtime();
        let events = rt.block_on(read(&source)).map_err(TestCaseError::fail)?;
        let (landed, dead) = counts(&events);
        prop_assert_eq!(landed + dead, rows.len());

        // Every landed value reads as its text.
        let mut ids = Vec::new();
        for event in &events {
            let SourceEvent::Batch(batch) = event else { continue };
            let data = &batch.data;
            let id = data.column_by_name("id").unwrap();
            for row in 0..data.num_rows() {
                let id: usize = rendered(id.as_ref(), row).unwrap().parse().unwrap();
                ids.push(id);
                let fields = &rows[id];
                for (i, name) in names.iter().enumerate().skip(1) {
                    let column = data.column_by_name(name).unwrap();
                    let text = fields.get(i - 1).map(|f| f.clone().unwrap()).unwrap_or_default();
                    prop_assert_eq!(
                        rendered(column.as_ref(), row),
                        expected(&text, column.data_type()),
                        "row {} column {} ({})", id, name, column.data_type()
                    );
                }
            }
        }
        // With widening, exactly the well-formed rows land (and, with an overflow
        // column, those with fields past the header's too).
        if type_conflicts == TypeConflicts::Widen && new_fields != NewFields::DeadLetter {
            let overflow = new_fields == NewFields::Overflow;
            let expect: Vec<usize> = (0..rows.len()).filter(|&i| well_formed(&rows[i], overflow)).collect();
            prop_assert_eq!(ids, expect);
        }
        if rows.len() <= 15 {
            let report = rt.block_on(async {
                tokio::time::timeout(LIMIT, check_source(&source, 8)).await
            });
            let report = report.map_err(|_| TestCaseError::fail("conformance hung"))?;
            let report = report.map_err(TestCaseError::fail)?;
            prop_assert_eq!(report.rows, landed);
        }
    }
}
