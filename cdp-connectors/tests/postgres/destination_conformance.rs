//! The PostgreSQL destination passes the destination conformance harness: upserts by key,
//! visible at flush and idempotent on replay, tombstones delete, and rows PostgreSQL cannot
//! store are refused one by one.

use cdp_connectors::PostgresDestination;
use cdp_core::Destination;
use cdp_testkit::conformance::{
    BadRow, DestinationKind, DestinationUnderTest, Publishes, VisibleRows, check_destination,
};

use crate::support::TestDb;

/// A schema of its own on the test server; every instance writes into it.
#[derive(Debug)]
struct Table {
    db: TestDb,
}

#[cdp_core::async_trait]
impl DestinationUnderTest for Table {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Upsert
    }

    fn publishes(&self) -> Publishes {
        Publishes::OnFlush
    }

    async fn fresh(&mut self) -> Result<Box<dyn Destination>, String> {
        let connection = self.db.connection("cdp-test-conformance");
        Ok(Box::new(
            PostgresDestination::new(connection).with_schema(&self.db.schema),
        ))
    }

    async fn visible(&self, stream: &str) -> Result<VisibleRows, String> {
        let sql = format!("SELECT to_jsonb(t)::text FROM {} t", self.db.table(stream));
        let rows = self
            .db
            .client
            .query(&sql, &[])
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
        let mut visible = VisibleRows::new();
        for row in rows {
            let text: String = row.try_get(0).map_err(|e| e.to_string())?;
            visible.push_json_text(&text)?;
        }
        Ok(visible)
    }

    fn unacceptable_rows(&self) -> Vec<BadRow> {
        vec![
            BadRow {
                id: None,
                name: Some("no key".into()),
                what: "a null primary key".into(),
            },
            BadRow {
                id: Some(200),
                name: Some("nul \0 byte".into()),
                what: "a NUL byte in text".into(),
            },
        ]
    }
}

#[tokio::test]
async fn postgres_destination_conforms() {
    let mut table = Table {
        db: TestDb::new().await,
    };
    let report = check_destination(&mut table)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.steps.len(), 7, "{:?}", report.steps);
    assert_eq!(report.rejected_rows, 2);
    // Ids 1..=10 and 100..=102, less the deleted id 2; id 3 updated in place.
    assert_eq!(report.visible_rows, 12);
    assert_eq!(table.db.count("conformance").await, 12);
}

/// Regression: text with a NUL byte, which PostgreSQL cannot store, was sent in the COPY of
/// the flush, where the server refused the whole flush (`invalid byte sequence for encoding
/// "UTF8": 0x00`), so one such row stopped the pipeline. It is now refused row by row, keyed
/// stream or not, and the rest of the batch lands.
#[tokio::test]
async fn a_nul_byte_in_text_is_refused_row_by_row() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::record::stamped_schema;
    use cdp_core::{Batch, StreamSpec};

    let db = TestDb::new().await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let data = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b\0"),
                None,
                Some("d"),
            ])),
            Arc::new(StringArray::from(vec![
                None,
                Some("x"),
                Some("\0y"),
                Some("z"),
            ])),
        ],
    )
    .unwrap();
    for (table, key) in [("keyed", true), ("keyless", false)] {
        let mut dest =
            PostgresDestination::new(db.connection("cdp-test-nul")).with_schema(&db.schema);
        let spec = StreamSpec::new(table, stamped_schema(&schema).unwrap());
        let spec = if key {
            spec.with_primary_key(["id"])
        } else {
            spec
        };
        dest.prepare(&spec).await.unwrap();
        let batch = Batch::new(table, data.clone(), "test").stamp().unwrap();
        let outcome = dest.write(&batch).await.unwrap();
        let rejected: Vec<(usize, &str)> = outcome
            .rejected
            .iter()
            .map(|r| (r.row, r.reason.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [
                (
                    1,
                    "column `name` holds a NUL byte, which PostgreSQL text cannot store \
                     (the server refuses it with SQLSTATE 22021)"
                ),
                (
                    2,
                    "column `note` holds a NUL byte, which PostgreSQL text cannot store \
                     (the server refuses it with SQLSTATE 22021)"
                ),
            ],
            "{table}"
        );
        dest.flush(1).await.unwrap();
        assert_eq!(
            db.rows(table, "id").await,
            [
                r#"{"id": 1, "name": "a", "note": null}"#,
                r#"{"id": 4, "name": "d", "note": "z"}"#
            ],
            "{table}"
        );
    }
}
