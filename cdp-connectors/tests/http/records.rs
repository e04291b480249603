//! Records: schemaless decoding (new keys evolve the schema or overflow), flattening,
//! filters, partitions and substreams; discover and check.

use cdp_core::{PipelineState, Source};
use cdp_testkit::saas::{FakeSaas, SaasConfig};
use serde_json::json;

use crate::support::{ids, read, source};

const CUSTOMERS: &str = r#"[[streams]]
name = "customers"
path = "/items/next"
records = "/items"
page_size = { param = "limit", size = 5 }
paginate = { type = "next_url", pointer = "/next" }
incremental = { cursor_field = "/updated", param = "updated_since" }"#;

#[tokio::test]
async fn a_new_key_evolves_the_schema_or_goes_to_the_overflow_column() {
    let server = FakeSaas::start(SaasConfig {
        customers: 12,
        ..SaasConfig::default()
    })
    .await;
    let evolving = source(&server, "", CUSTOMERS);
    let overflowing = source(&server, "new_fields = \"overflow\"", CUSTOMERS);
    let first = read(&evolving, PipelineState::default()).await;
    let first_overflow = read(&overflowing, PipelineState::default()).await;
    assert!(first.rows["customers"][0].get("tier").is_none());

    let added = server.add_customer_with(
        server.last_updated() + 60,
        json!({"tier": "gold", "address": {"city": "Oslo", "zip": "0150", "floor": 3}}),
    );
    let evolved = read(&evolving, first.state.clone()).await;
    assert_eq!(
        evolved.values("customers", "id"),
        ids(std::slice::from_ref(&added))
    );
    let row = &evolved.rows["customers"][0];
    assert_eq!(row["tier"], "gold");
    assert_eq!(row["address"]["floor"], 3);
    assert_eq!(evolved.schema_changes["customers"], 1);
    let paths: Vec<&str> = evolved.drift.iter().map(|(_, p, _)| p.as_str()).collect();
    assert!(
        paths.contains(&"tier") && paths.contains(&"address.floor"),
        "{paths:?}"
    );

    let overflowed = read(&overflowing, first_overflow.state.clone()).await;
    let row = &overflowed.rows["customers"][0];
    assert!(row.get("tier").is_none());
    let kept: serde_json::Value = serde_json::from_str(row["_overflow"].as_str().unwrap()).unwrap();
    assert_eq!(kept, json!({"tier": "gold", "address": {"floor": 3}}));
    assert!(overflowed.schema_changes.is_empty());
}

#[tokio::test]
async fn nested_objects_flatten_and_filters_keep_what_they_match() {
    let server = FakeSaas::start(SaasConfig {
        customers: 20,
        ..SaasConfig::default()
    })
    .await;
    let streams = r#"[[streams]]
name = "eu"
path = "/items/offset"
records = "/items"
nested = "flatten"
filter = { field = "/account", equals = "eu" }
page_size = { param = "limit", size = 6 }
paginate = { type = "offset" }"#;
    let read = read(&source(&server, "", streams), PipelineState::default()).await;
    let expected: Vec<_> = server
        .customers()
        .into_iter()
        .filter(|c| c["account"] == "eu")
        .collect();
    assert_eq!(read.values("eu", "id"), ids(&expected));
    let row = &read.rows["eu"][0];
    assert_eq!(row["address_city"], expected[0]["address"]["city"]);
    assert!(row.get("address").is_none());
}

#[tokio::test]
async fn partitions_and_substreams_keep_a_state_each() {
    let server = FakeSaas::start(SaasConfig {
        customers: 24,
        invoices: 2,
        ..SaasConfig::default()
    })
    .await;
    let streams = r#"[[streams]]
name = "events"
path = "/accounts/{account}/events"
records = "/items"
partitions = [{ account = "eu" }, { account = "us" }]
page_size = { param = "limit", size = 5 }
paginate = { type = "offset" }
incremental = { cursor_field = "/updated", param = "updated_since" }

[[streams]]
name = "customers"
path = "/v1/customers"
records = "/data"
page_size = { param = "limit", size = 10 }
paginate = { type = "cursor", param = "starting_after", last_record = "/id", has_more = "/has_more" }

[[streams]]
name = "invoices"
path = "/v1/customers/{parent.id}/invoices"
records = "/data"
parent = { stream = "customers", fields = { id = "/id" } }
paginate = { type = "cursor", param = "starting_after", last_record = "/id", has_more = "/has_more" }
incremental = { cursor_field = "/updated", param = "updated_since" }"#;
    let source = source(&server, "", streams);
    let first = read(&source, PipelineState::default()).await;
    let by_account = |account: &str| -> Vec<String> {
        ids(&server
            .customers()
            .into_iter()
            .filter(|c| c["account"] == account)
            .collect::<Vec<_>>())
    };
    let mut expected = by_account("eu");
    expected.extend(by_account("us"));
    assert_eq!(first.values("events", "id"), expected);
    let mut invoices = first.values("invoices", "id");
    invoices.sort();
    assert_eq!(invoices, ids(&server.invoices()));

    let events = &first.state.streams["events"]["partitions"];
    assert!(
        events["account=eu"]["cursor"].is_string() && events["account=us"]["cursor"].is_string()
    );
    let parents = first.state.streams["invoices"]["partitions"]
        .as_object()
        .unwrap();
    assert_eq!(parents.len(), 24, "one state per parent");
    assert!(parents.contains_key("parent.id=cus_00001"));

    // A new customer in one account: only its partition has something new.
    server.add_customer(server.last_updated() + 60);
    let second = read(&source, first.state.clone()).await;
    assert_eq!(second.values("events", "id").len(), 1);
}

#[tokio::test]
async fn discover_lists_the_streams_and_check_makes_one_authenticated_request() {
    let server = FakeSaas::start(SaasConfig::default()).await;
    let source = source(&server, "", CUSTOMERS);
    let catalog = source.discover().await.unwrap();
    assert_eq!(catalog.streams.len(), 1);
    let stream = &catalog.streams[0];
    assert_eq!(stream.name, "customers");
    assert_eq!(stream.cursor_field.as_deref(), Some("updated"));
    assert!(stream.schema.field_with_name("email").is_ok());
    let before = server.stats().requests;
    source.check().await.unwrap();
    assert_eq!(server.stats().requests, before + 1);
}
