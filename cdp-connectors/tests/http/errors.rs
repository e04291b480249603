//! Errors: a 4xx retrying cannot fix stops the stream with the request and the response;
//! actions per status; a page that fails to parse is a dead letter and the stream goes on.

use cdp_core::PipelineState;
use cdp_testkit::saas::{FakeSaas, SaasConfig};

use crate::support::{ids, read, source, try_read};

const MISSING: &str = r#"[[streams]]
name = "invoices"
path = "/v1/customers/cus_99999/invoices"
records = "/data"
page_size = { param = "limit", size = 5 }"#;

#[tokio::test]
async fn a_4xx_stops_the_stream_with_the_request_and_the_response_body() {
    let server = FakeSaas::start(SaasConfig::default()).await;
    let error = try_read(&source(&server, "", MISSING), PipelineState::default())
        .await
        .unwrap_err();
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "GET {}/v1/customers/cus_99999/invoices?limit=5 returned 404 Not Found",
            server.url()
        )),
        "{text}"
    );
    assert!(text.contains("no such customer"), "{text}");
    assert_eq!(server.stats().requests, 1, "a 404 is not retried");
}

#[tokio::test]
async fn a_status_configured_ignore_reads_as_an_empty_page() {
    let server = FakeSaas::start(SaasConfig::default()).await;
    let read = read(
        &source(&server, "on_status = { \"404\" = \"ignore\" }", MISSING),
        PipelineState::default(),
    )
    .await;
    assert!(read.rows.is_empty() && read.dead.is_empty());
}

#[tokio::test]
async fn a_page_that_fails_to_parse_is_a_dead_letter_naming_its_url_and_the_stream_goes_on() {
    let server = FakeSaas::start(SaasConfig {
        customers: 30,
        ..SaasConfig::default()
    })
    .await;
    let streams = r#"[[streams]]
name = "s"
path = "/items/pages"
records = "/items"
params = { broken_page = "2" }
page_size = { param = "per_page", size = 7 }
paginate = { type = "page_number", param = "page" }"#;
    let read = read(&source(&server, "", streams), PipelineState::default()).await;
    assert_eq!(read.dead.len(), 1, "{:?}", read.dead);
    let (stream, reason, position) = &read.dead[0];
    assert_eq!(stream, "s");
    assert!(reason.contains("not JSON"), "{reason}");
    assert!(
        position.as_deref().unwrap().contains("page=2"),
        "{position:?}"
    );
    let mut expected = ids(&server.customers());
    expected.drain(7..14);
    assert_eq!(read.values("s", "id"), expected);
}
