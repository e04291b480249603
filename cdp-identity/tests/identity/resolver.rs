//! The resolver on Arrow batches, alone and inside a pipeline.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, StructArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use cdp_core::{Batch, IdentityEventKind, IdentityResolver, PROFILE_ID_COLUMN};
use cdp_identity::{
    ColumnMapping, EventDetail, IdentifierColumn, IdentityGraph, Resolver, ResolverConfig,
};

use super::common::rules;

/// Segment-like events: `anonymousId`, `userId`, `context.device.id`,
/// `context.traits.email`, `timestamp`.
fn events(rows: &[(&str, Option<&str>, Option<&str>, Option<&str>)]) -> RecordBatch {
    let anon: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>(),
    ));
    let user: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    let device_id: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    ));
    let email: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.3).collect::<Vec<_>>(),
    ));
    let device = StructArray::from(vec![(
        Arc::new(Field::new("id", DataType::Utf8, true)),
        device_id,
    )]);
    let traits = StructArray::from(vec![(
        Arc::new(Field::new("email", DataType::Utf8, true)),
        email,
    )]);
    let context = StructArray::from(vec![
        (
            Arc::new(Field::new("device", device.data_type().clone(), true)),
            Arc::new(device) as ArrayRef,
        ),
        (
            Arc::new(Field::new("traits", traits.data_type().clone(), true)),
            Arc::new(traits) as ArrayRef,
        ),
    ]);
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(
        (0..rows.len() as i64)
            .map(|i| 1_700_000_000_000 + i)
            .collect::<Vec<_>>(),
    ));
    let schema = Schema::new(vec![
        Field::new("anonymousId", DataType::Utf8, true),
        Field::new("userId", DataType::Utf8, true),
        Field::new("context", context.data_type().clone(), true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![anon, user, Arc::new(context), ts]).unwrap()
}

fn mapping() -> ColumnMapping {
    ColumnMapping::new(vec![
        IdentifierColumn::new("anonymousId", "anonymous_id"),
        IdentifierColumn::new("userId", "user_id"),
        IdentifierColumn::new("context.device.id", "device_id"),
        IdentifierColumn::new("context.traits.email", "email"),
    ])
    .timestamp("timestamp")
}

fn resolver() -> Resolver {
    Resolver::new(IdentityGraph::from_config(rules()).unwrap(), mapping()).unwrap()
}

fn profile_ids(batch: &RecordBatch) -> Vec<Option<String>> {
    let col = batch
        .column_by_name(PROFILE_ID_COLUMN)
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    col.iter().map(|v| v.map(str::to_string)).collect()
}

#[tokio::test]
async fn stamps_profile_ids_through_nested_paths() {
    let r = resolver();
    let data = events(&[
        ("a1", None, Some("d1"), None),
        ("a1", Some("u1"), None, Some("Ada@X.io")),
        ("a2", None, Some("d1"), None),
        ("a3", None, None, None),
    ]);
    let out = r.resolve(Batch::new("track", data, "web")).await.unwrap();
    let ids = profile_ids(&out.batch.data);
    // Row 0's profile merged with row 1's within the batch: every row shows the final id.
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2]);
    assert_ne!(ids[0], ids[3]);
    assert!(ids.iter().all(Option::is_some));
    assert_eq!(
        r.profile_of("email", "ada@x.io").map(|p| p.to_string()),
        ids[0]
    );
    assert!(out.events.iter().any(|e| e.kind == IdentityEventKind::Link));
    let g = r.graph();
    let first = g.log().into_iter().next().unwrap();
    assert_eq!(first.event.at(), 1_700_000_000_000);
}

#[tokio::test]
async fn shared_device_gives_500_profiles_with_refusals_recorded() {
    let r = resolver();
    let emails: Vec<String> = (0..500).map(|i| format!("user{i}@example.com")).collect();
    let anons: Vec<String> = (0..500).map(|i| format!("anon-{i}")).collect();
    let rows: Vec<_> = (0..500)
        .map(|i| {
            (
                anons[i].as_str(),
                None,
                Some("shared-ipad"),
                Some(emails[i].as_str()),
            )
        })
        .collect();
    let out = r
        .resolve(Batch::new("track", events(&rows), "store-kiosk"))
        .await
        .unwrap();
    let ids = profile_ids(&out.batch.data);
    let distinct: std::collections::BTreeSet<_> = ids.iter().flatten().collect();
    assert_eq!(distinct.len(), 500);
    assert_eq!(r.graph().profile_count(), 500);
    let refused: Vec<_> = out
        .events
        .iter()
        .filter(|e| e.kind == IdentityEventKind::RefusedLink)
        .collect();
    assert_eq!(refused.len(), 499);
    assert!(
        refused[0].reason.contains("`email`"),
        "{}",
        refused[0].reason
    );
    let logged = r
        .graph()
        .log()
        .iter()
        .filter(|rec| rec.event.kind_name() == "refused")
        .count();
    assert_eq!(logged, 499);
}

#[tokio::test]
async fn missing_columns_are_null_but_none_is_an_error() {
    let r = resolver();
    let crm = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "userId",
            DataType::Utf8,
            true,
        )])),
        vec![Arc::new(StringArray::from(vec![Some("u1"), None]))],
    )
    .unwrap();
    let out = r.resolve(Batch::new("crm", crm, "crm")).await.unwrap();
    let ids = profile_ids(&out.batch.data);
    assert!(ids[0].is_some() && ids[1].is_none());

    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["v"]))],
    )
    .unwrap();
    let err = r
        .resolve(Batch::new("other", other, "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, cdp_core::Error::Schema { .. }), "{err}");
}

#[tokio::test]
async fn numeric_identifiers_and_second_mapping_share_the_graph() {
    let web = resolver();
    let crm = web
        .with_mapping(ColumnMapping::new(vec![
            IdentifierColumn::new("customer_id", "user_id"),
            IdentifierColumn::new("email", "email"),
        ]))
        .unwrap();
    let data = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![42])),
            Arc::new(StringArray::from(vec!["ada@x.io"])),
        ],
    )
    .unwrap();
    let out = crm
        .resolve(Batch::new("customers", data, "crm"))
        .await
        .unwrap();
    let ids = profile_ids(&out.batch.data);
    let web_out = web
        .resolve(Batch::new(
            "track",
            events(&[("a9", None, None, Some("ADA@x.io"))]),
            "web",
        ))
        .await
        .unwrap();
    assert_eq!(profile_ids(&web_out.batch.data), ids);
    assert_eq!(
        web.profile_of("user_id", "42").map(|p| p.to_string()),
        ids[0]
    );
}

#[tokio::test]
async fn config_round_trips_and_event_detail_filters() {
    let config: ResolverConfig = serde_json::from_value(serde_json::json!({
        "rules": serde_json::to_value(rules()).unwrap(),
        "mapping": {
            "identifiers": [
                {"path": "anonymousId", "type": "anonymous_id"},
                {"path": "context.traits.email", "type": "email"}
            ],
            "timestamp": "timestamp"
        },
        "events": "changes"
    }))
    .unwrap();
    assert_eq!(config.events, EventDetail::Changes);
    let r = config.build().unwrap();
    let out = r
        .resolve(Batch::new(
            "track",
            events(&[("a1", None, None, Some("x@y.z"))]),
            "web",
        ))
        .await
        .unwrap();
    assert!(out.events.is_empty());
    assert_eq!(out.batch.data.num_columns(), 5);
    assert_eq!(out.batch.data.schema().field(4).name(), PROFILE_ID_COLUMN);
    let column = out.batch.data.column(4);
    assert_eq!(column.null_count(), 0);
}

/// Regression: zoned timestamps were cast to wall-clock time instead of read as instants.
#[tokio::test]
async fn zoned_timestamps_are_read_as_instants() {
    use arrow::array::TimestampSecondArray;
    let r = Resolver::new(
        IdentityGraph::from_config(rules()).unwrap(),
        ColumnMapping::new(vec![IdentifierColumn::new("anonymousId", "anonymous_id")])
            .timestamp("at"),
    )
    .unwrap();
    let at = TimestampSecondArray::from(vec![1_700_000_000]).with_timezone("+02:00");
    let data = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("anonymousId", DataType::Utf8, true),
            Field::new("at", at.data_type().clone(), true),
        ])),
        vec![Arc::new(StringArray::from(vec!["a1"])), Arc::new(at)],
    )
    .unwrap();
    r.resolve(Batch::new("track", data, "web")).await.unwrap();
    assert_eq!(r.graph().log()[0].event.at(), 1_700_000_000_000);
}

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Resolver>();
    send_sync::<IdentityGraph>();
    send_sync::<cdp_identity::MemoryProfileStore>();
    send_sync::<cdp_identity::MemoryLog>();
    send_sync::<cdp_identity::Explanation>();
    send_sync::<cdp_identity::HealthReport>();
    send_sync::<cdp_identity::Error>();
    fn send<T: Send>() {}
    #[cfg(feature = "sqlite")]
    send::<cdp_identity::SqliteLog>();
    send::<Box<dyn cdp_identity::IdentityLog>>();
    send_sync::<std::sync::Arc<dyn cdp_identity::ProfileStore>>();
    send_sync::<std::sync::Arc<dyn IdentityResolver>>();
}
