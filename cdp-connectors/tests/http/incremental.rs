//! Incremental reads: from the checkpoint's cursor, with nothing repeated at the boundary
//! and nothing sharing its value lost; lookback and date windows.

use cdp_core::PipelineState;
use cdp_testkit::saas::{FakeSaas, SaasConfig};
use serde_json::Value;

use crate::support::{ids, read, source};

const STREAM: &str = r#"[[streams]]
name = "customers"
path = "/items/next"
records = "/items"
page_size = { param = "limit", size = 5 }
paginate = { type = "next_url", pointer = "/next" }
incremental = { cursor_field = "/updated", param = "updated_since" }"#;

fn updated(record: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(record["updated"].as_str().unwrap())
        .unwrap()
        .timestamp()
}

#[tokio::test]
async fn equal_cursors_across_pages_and_syncs_are_neither_lost_nor_repeated() {
    // Runs of three records share an `updated` value; pages hold five.
    let server = FakeSaas::start(SaasConfig {
        customers: 50,
        same_updated: 3,
        ..SaasConfig::default()
    })
    .await;
    let source = source(&server, "", STREAM);
    let first = read(&source, PipelineState::default()).await;
    assert_eq!(first.values("customers", "id"), ids(&server.customers()));
    let boundary = server.last_updated();
    let at_boundary = server
        .customers()
        .iter()
        .filter(|c| updated(c) == boundary)
        .count();
    assert!(at_boundary >= 2, "the last cursor value is shared");

    // Two records arrive with the checkpoint's cursor value (the ones a `>` filter
    // loses), one after it, and an old one is edited.
    let same_a = server.add_customer(boundary);
    let same_b = server.add_customer(boundary);
    let later = server.add_customer(boundary + 60);
    server.touch("cus_00004", boundary + 120);
    let second = read(&source, first.state.clone()).await;
    let mut expected = vec![same_a, same_b, later];
    expected.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut got = second.values("customers", "id");
    let edited = got.pop();
    got.sort();
    assert_eq!(
        got,
        ids(&expected),
        "the records at the boundary are each read once"
    );
    assert_eq!(edited.as_deref(), Some("cus_00004"));

    // Nothing new: nothing read, and the boundary's records are not sent again.
    let third = read(&source, second.state.clone()).await;
    assert!(third.rows.is_empty(), "{:?}", third.rows);
    let fourth = read(&source, third.state.clone()).await;
    assert!(fourth.rows.is_empty());
}

#[tokio::test]
async fn a_lookback_reads_its_window_again_but_not_the_boundary() {
    let server = FakeSaas::start(SaasConfig {
        customers: 30,
        same_updated: 2,
        ..SaasConfig::default()
    })
    .await;
    let stream = STREAM.replace(
        "param = \"updated_since\" }",
        "param = \"updated_since\", lookback = 120 }",
    );
    let source = source(&server, "", &stream);
    let first = read(&source, PipelineState::default()).await;
    assert_eq!(first.values("customers", "id").len(), 30);
    let boundary = server.last_updated();
    let again = read(&source, first.state.clone()).await;
    let expected: Vec<String> = server
        .customers()
        .iter()
        .filter(|c| updated(c) >= boundary - 120 && updated(c) < boundary)
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(again.values("customers", "id"), expected);
}

#[tokio::test]
async fn date_windows_walk_a_backfill_in_bounded_requests() {
    let server = FakeSaas::start(SaasConfig {
        customers: 12,
        ..SaasConfig::default()
    })
    .await;
    let start = server.last_updated();
    // Two records in later 30-day windows.
    server.add_customer(start + 40 * 86_400);
    server.add_customer(start + 70 * 86_400);
    let stream = STREAM.replace(
        "param = \"updated_since\" }",
        "param = \"updated_since\", end_param = \"updated_before\", start = \"2024-05-01T00:00:00Z\", window = 2592000 }",
    );
    let source = source(&server, "", &stream);
    let read = read(&source, PipelineState::default()).await;
    assert_eq!(read.values("customers", "id"), ids(&server.customers()));
    // One request series per window (at least one request each) up to now.
    let windows = (chrono::Utc::now().timestamp() - 1_714_521_600) / 2_592_000 + 1;
    assert!(server.stats().requests >= windows as u64);
}
