//! The bundled example configs (`cdp-connectors/examples/http/`), parsed through the
//! registry and read against the fake API with its URLs and secrets swapped in.

use std::sync::Arc;

use cdp_connectors::config::{ConnectorRegistry, SourceConfig};
use cdp_core::{MemoryStateStore, PipelineState};
use cdp_testkit::saas::{CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH_TOKEN, FakeSaas, SaasConfig};
use serde_json::{Value, json};

use crate::support::{ids, key_file, read};

fn document(text: &str) -> Value {
    toml::from_str(text).unwrap()
}

fn secret_file(value: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), value).unwrap();
    file
}

fn http_config(document: &Value, name: &str) -> cdp_connectors::HttpSourceConfig {
    let connectors = ConnectorRegistry::new().parse_connectors(document).unwrap();
    match connectors.sources[name].clone() {
        SourceConfig::Http(config) => config,
        other => panic!("not an http source: {other:?}"),
    }
}

#[tokio::test]
async fn the_stripe_like_example_reads_customers_and_their_invoices() {
    let text = include_str!("../../examples/http/stripe.toml");
    // As shipped, it parses and validates.
    http_config(&document(text), "billing");

    let server = FakeSaas::start(SaasConfig {
        customers: 45,
        ..SaasConfig::default()
    })
    .await;
    let mut doc = document(text);
    let table = &mut doc["sources"]["billing"];
    table["base_url"] = json!(format!("{}/v1", server.url()));
    table["auth"]["token"] = json!({"file": key_file()});
    table["rate_limit"] = json!({"per_second": 1000, "burst": 1000});
    table["retry"] = json!({"initial_delay": 2, "max_delay": 20, "jitter": false});
    let source = http_config(&doc, "billing").build_source().unwrap();
    let first = read(&source, PipelineState::default()).await;
    let mut customers = server.customers();
    customers.sort_by_key(|c| c["created"].as_i64());
    assert_eq!(first.values("customers", "id"), ids(&customers));
    let invoices = server.invoices();
    assert!(!invoices.is_empty());
    let mut got = first.values("invoices", "id");
    got.sort();
    assert_eq!(got, ids(&invoices));
    // Flattened: the amount's fields are columns of their own.
    assert!(first.rows["invoices"][0].get("amount_value").is_some());

    // Incremental: a new customer is read next time; no customer twice.
    server.add_customer(server.last_updated() + 60);
    let second = read(&source, first.state.clone()).await;
    assert_eq!(second.values("customers", "id").len(), 1);
}

#[tokio::test]
async fn the_hubspot_like_example_pages_with_after_and_refreshes_its_token() {
    let text = include_str!("../../examples/http/hubspot.toml");
    http_config(&document(text), "crm");

    let server = FakeSaas::start(SaasConfig {
        customers: 33,
        token_uses: 2,
        ..SaasConfig::default()
    })
    .await;
    let secret = secret_file(CLIENT_SECRET);
    let refresh = secret_file(FIRST_REFRESH_TOKEN);
    let mut doc = document(text);
    let table = &mut doc["sources"]["crm"];
    table["base_url"] = json!(server.url());
    table["auth"]["token_url"] = json!(format!("{}/oauth/token", server.url()));
    table["auth"]["client_id"] = json!(CLIENT_ID);
    table["auth"]["client_secret"] = json!({"file": secret.path()});
    table["auth"]["refresh_token"] = json!({"file": refresh.path()});
    table["rate_limit"] = json!({"per_second": 1000, "burst": 1000});
    table["streams"][0]["page_size"]["size"] = json!(4);
    let store = Arc::new(MemoryStateStore::new());
    let source = http_config(&doc, "crm")
        .build_source()
        .unwrap()
        .with_state_store(store, "crm");
    let first = read(&source, PipelineState::default()).await;
    assert_eq!(first.values("contacts", "id"), ids(&server.customers()));
    assert!(server.stats().unauthorized > 0 && server.refresh_token().1 > 1);
    let again = read(&source, first.state.clone()).await;
    assert!(again.rows.is_empty(), "{:?}", again.rows);
}
