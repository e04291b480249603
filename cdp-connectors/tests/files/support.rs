//! Helpers shared by the topic modules.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};

pub(crate) use cdp_testkit::read::{read_all, resume};

pub(crate) fn ids(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let col = batch.column_by_name(column).expect("id column");
    let col = arrow::compute::cast(col, &DataType::Int64).unwrap();
    let col = col.as_primitive::<Int64Type>();
    (0..col.len()).map(|i| col.value(i)).collect()
}

pub(crate) fn id_name_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

pub(crate) fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

pub(crate) fn jsonl_lines(range: std::ops::Range<i64>) -> String {
    range
        .map(|i| format!("{{\"id\":{i},\"name\":\"user {i}\"}}\n"))
        .collect()
}

pub(crate) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}
