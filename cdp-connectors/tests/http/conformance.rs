//! The HTTP source passes the source conformance harness: checkpoints after everything it
//! emits, and a resume from any checkpoint yields exactly what came after it — across
//! paging styles, partitions, a substream, dead-lettered pages, and faults.

use cdp_testkit::conformance::check_source;
use cdp_testkit::saas::{FakeSaas, Faults, SaasConfig};

use crate::support::source;

#[tokio::test]
async fn the_http_source_conforms() {
    let server = FakeSaas::start(SaasConfig {
        customers: 36,
        invoices: 2,
        faults: Faults {
            rate_limit_every: 0,
            retry_after_secs: 0,
            error_every: 9,
            drop_every: 7,
        },
        ..SaasConfig::default()
    })
    .await;
    let streams = r#"[[streams]]
name = "customers"
path = "/v1/customers"
records = "/data"
page_size = { param = "limit", size = 8 }
paginate = { type = "cursor", param = "starting_after", last_record = "/id", has_more = "/has_more" }
incremental = { cursor_field = "/created", kind = "integer", param = "created[gte]" }

[[streams]]
name = "by_update"
path = "/items/next"
records = "/items"
page_size = { param = "limit", size = 5 }
paginate = { type = "next_url", pointer = "/next" }
incremental = { cursor_field = "/updated", param = "updated_since" }

[[streams]]
name = "events"
path = "/accounts/{account}/events"
records = "/items"
partitions = [{ account = "eu" }, { account = "us" }]
page_size = { param = "limit", size = 6 }
paginate = { type = "offset" }
incremental = { cursor_field = "/updated", param = "updated_since" }

[[streams]]
name = "pages"
path = "/items/pages"
records = "/items"
params = { broken_page = "3" }
page_size = { param = "per_page", size = 7 }
paginate = { type = "page_number", param = "page" }
incremental = { cursor_field = "/updated", param = "updated_since" }

[[streams]]
name = "invoices"
path = "/v1/customers/{parent.id}/invoices"
records = "/data"
nested = "flatten"
parent = { stream = "customers", fields = { id = "/id" } }
paginate = { type = "cursor", param = "starting_after", last_record = "/id", has_more = "/has_more" }
incremental = { cursor_field = "/updated", param = "updated_since" }"#;
    let source = source(&server, "", streams);
    let report = check_source(&source, 40).await.unwrap();
    let invoices = server.invoices().len();
    // customers, by_update, events (both accounts), pages without its broken page.
    assert_eq!(report.rows, 36 + 36 + 36 + (36 - 7) + invoices);
    assert_eq!(report.dead_letters, 1);
    assert!(report.resumes_checked >= 30, "{report:?}");
    let stats = server.stats();
    assert!(stats.errors > 0 && stats.dropped > 0, "{stats:?}");
}
