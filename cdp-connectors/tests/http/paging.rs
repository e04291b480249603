//! Every paging style reads exactly the server's records, through 500s, dropped
//! connections and 429s.

use std::time::{Duration, Instant};

use cdp_core::PipelineState;
use cdp_testkit::saas::{FakeSaas, Faults, SaasConfig};

use crate::support::{ids, read, source};

fn faulty() -> SaasConfig {
    SaasConfig {
        customers: 61,
        faults: Faults {
            rate_limit_every: 11,
            retry_after_secs: 0,
            error_every: 7,
            drop_every: 5,
        },
        ..SaasConfig::default()
    }
}

/// (style, stream table, whether the order is by `created` rather than `updated`).
const STYLES: [(&str, &str, bool); 5] = [
    (
        "cursor from the last record (Stripe)",
        r#"[[streams]]
name = "s"
path = "/v1/customers"
records = "/data"
page_size = { param = "limit", size = 7 }
paginate = { type = "cursor", param = "starting_after", last_record = "/id", has_more = "/has_more" }"#,
        true,
    ),
    (
        "next URL in the body",
        r#"[[streams]]
name = "s"
path = "/items/next"
records = "/items"
page_size = { param = "limit", size = 7 }
paginate = { type = "next_url", pointer = "/next" }"#,
        false,
    ),
    (
        "Link header",
        r#"[[streams]]
name = "s"
path = "/items/link"
page_size = { param = "per_page", size = 7 }
paginate = { type = "link_header" }"#,
        false,
    ),
    (
        "offset and limit, stopping at the total",
        r#"[[streams]]
name = "s"
path = "/items/offset"
records = "/items"
total = "/total"
page_size = { param = "limit", size = 7 }
paginate = { type = "offset" }"#,
        false,
    ),
    (
        "page number, stopping at the total",
        r#"[[streams]]
name = "s"
path = "/items/pages"
records = "/items"
total = "/total"
page_size = { param = "per_page", size = 7 }
paginate = { type = "page_number", param = "page", start = 1 }"#,
        false,
    ),
];

#[tokio::test]
async fn every_paging_style_reads_exactly_the_servers_records_through_faults() {
    for (style, streams, by_created) in STYLES {
        let server = FakeSaas::start(faulty()).await;
        let mut expected = server.customers();
        if by_created {
            expected.sort_by_key(|c| c["created"].as_i64());
        }
        let read = read(&source(&server, "", streams), PipelineState::default()).await;
        assert_eq!(read.values("s", "id"), ids(&expected), "{style}");
        assert!(read.dead.is_empty(), "{style}: {:?}", read.dead);
        let stats = server.stats();
        assert!(
            stats.errors > 0 && stats.dropped > 0 && stats.rate_limited > 0,
            "{style}: the faults struck: {stats:?}"
        );
        // Nested objects are kept as structs by default.
        assert_eq!(
            read.rows["s"][0]["address"]["city"],
            expected[0]["address"]["city"]
        );
    }
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_budget_is_kept_before_the_server_says_no() {
    let server = FakeSaas::start(SaasConfig {
        customers: 20,
        faults: Faults {
            rate_limit_every: 3,
            retry_after_secs: 1,
            ..Faults::default()
        },
        ..SaasConfig::default()
    })
    .await;
    let streams = STYLES[3].1;
    let started = Instant::now();
    let first = read(&source(&server, "", streams), PipelineState::default()).await;
    assert_eq!(first.values("s", "id").len(), 20);
    let limited = server.stats().rate_limited;
    assert!(limited >= 1);
    assert!(
        started.elapsed() >= Duration::from_secs(limited),
        "{limited} 429s with Retry-After: 1 took only {:?}",
        started.elapsed()
    );

    // A budget of 10 requests a second (burst 1) spaces 4 requests over 0.3 s at least.
    let server = FakeSaas::start(SaasConfig {
        customers: 28,
        ..SaasConfig::default()
    })
    .await;
    let started = Instant::now();
    let limited = source(
        &server,
        "rate_limit = { per_second = 10, burst = 1 }",
        streams,
    );
    let second = read(&limited, PipelineState::default()).await;
    assert_eq!(second.values("s", "id").len(), 28);
    assert_eq!(server.stats().requests, 4);
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
}
