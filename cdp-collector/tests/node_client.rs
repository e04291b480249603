//! The official Segment Node.js client (`@segment/analytics-node`, installed from npm by
//! this test) pointed at the collector: its identify, track, page, group and alias calls
//! arrive once each as rows with the right fields, and identity stitching joins them into
//! one profile (the alias links the anonymous visitor to the user).
//!
//! Needs Node.js and npm: run with `--features node-client-tests`. The package is installed
//! once into `CDP_NODE_CLIENT_DIR` (default `target/node-client`).

#![cfg(feature = "node-client-tests")]
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use cdp_collector::{Collector, EventLog, LogConfig, log_source};
use cdp_core::Pipeline;
use cdp_core::arrow::array::{AsArray, RecordBatch};
use cdp_core::memory::MemoryDestination;
use cdp_core::path::FieldPath;
use cdp_identity::{ColumnMapping, IdentifierColumn, ResolverConfig, RulesConfig};

const KEY: &str = "node-client-key";

fn client_dir() -> PathBuf {
    let dir = std::env::var_os("CDP_NODE_CLIENT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/node-client"),
        PathBuf::from,
    );
    let module = dir.join("node_modules/@segment/analytics-node");
    if !module.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                "@segment/analytics-node@3",
            ])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(
            status.success(),
            "npm install @segment/analytics-node failed"
        );
    }
    module
}

const SCRIPT: &str = r#"
const { Analytics } = require(process.argv[2]);
const analytics = new Analytics({
  writeKey: process.argv[4],
  host: process.argv[3],
  flushAt: 2,
  flushInterval: 100,
  maxRetries: 3,
});
analytics.on('error', (err) => { console.error('analytics error', err); process.exitCode = 1; });
analytics.identify({ userId: 'user-1', traits: { email: 'ada@example.com', name: 'Ada' } });
analytics.track({ anonymousId: 'anon-1', event: 'Product Viewed', properties: { sku: 'A-1', price: 12.5 } });
analytics.page({ anonymousId: 'anon-1', name: 'Pricing', properties: { url: 'https://example.com/pricing' } });
analytics.group({ userId: 'user-1', groupId: 'acme', traits: { plan: 'enterprise' } });
analytics.alias({ userId: 'user-1', previousId: 'anon-1' });
analytics.closeAndFlush({ timeout: 20000 }).then(() => console.log('flushed'));
"#;

fn text(batch: &RecordBatch, path: &str) -> String {
    let column = FieldPath::parse(path).unwrap().column(batch).unwrap();
    let column =
        cdp_core::arrow::compute::cast(&column, &cdp_core::arrow::datatypes::DataType::Utf8)
            .unwrap();
    column.as_string::<i32>().value(0).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_node_client_calls_arrive_once_each_and_stitch_into_one_profile() {
    let module = client_dir();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(LogConfig::new(dir.path().join("log"))).unwrap();
    let collector = Collector::new(vec![KEY.into()], log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let router = collector.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let script = dir.path().join("client.js");
    std::fs::write(&script, SCRIPT).unwrap();
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&module)
        .arg(&host)
        .arg(KEY)
        .output()
        .await
        .expect("node runs");
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("flushed"),
        "the client failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    server.abort();

    let rules: RulesConfig = serde_json::from_value(serde_json::json!({
        "identifiers": [
            {"name": "user_id", "priority": 1, "limit": 1},
            {"name": "email", "priority": 2, "normaliser": "email"},
            {"name": "anonymous_id", "priority": 3, "anonymous": true}
        ]
    }))
    .unwrap();
    let resolver = ResolverConfig {
        rules,
        mapping: ColumnMapping::new(vec![
            IdentifierColumn::new("userId", "user_id"),
            IdentifierColumn::new("anonymousId", "anonymous_id"),
            IdentifierColumn::new("previousId", "anonymous_id"),
            IdentifierColumn::new("traits.email", "email"),
        ]),
        events: Default::default(),
    }
    .build()
    .unwrap();
    let resolver = Arc::new(resolver);
    let memory = MemoryDestination::new("profiles");
    let handle = memory.handle();
    Pipeline::builder("segment-node")
        .source(log_source(&dir.path().join("log")))
        .identity(resolver.clone())
        .destination(memory)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();

    let rows = |stream: &str| -> RecordBatch {
        let batches: Vec<RecordBatch> = handle
            .batches()
            .into_iter()
            .filter(|b| &*b.stream == stream)
            .map(|b| b.data)
            .collect();
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, 1, "{stream}: {total} rows, one call was made");
        batches.into_iter().find(|b| b.num_rows() == 1).unwrap()
    };
    let identify = rows("identify");
    assert_eq!(text(&identify, "userId"), "user-1");
    assert_eq!(text(&identify, "traits.email"), "ada@example.com");
    assert_eq!(
        text(&identify, "context.library.name"),
        "@segment/analytics-node"
    );
    let track = rows("track");
    assert_eq!(text(&track, "event"), "Product Viewed");
    assert_eq!(text(&track, "anonymousId"), "anon-1");
    assert_eq!(text(&track, "properties.sku"), "A-1");
    let page = rows("page");
    assert_eq!(text(&page, "name"), "Pricing");
    let group = rows("group");
    assert_eq!(text(&group, "groupId"), "acme");
    assert_eq!(text(&group, "traits.plan"), "enterprise");
    let alias = rows("alias");
    assert_eq!(text(&alias, "previousId"), "anon-1");
    for batch in [&identify, &track, &page, &group, &alias] {
        assert!(!text(batch, "messageId").is_empty());
        assert!(!text(batch, "receivedAt").is_empty());
    }
    // Rows carry the profile their identifiers had when they arrived; after the alias the
    // visitor and the user are one profile, with the identify's email.
    let profiles: HashSet<_> = [
        ("user_id", "user-1"),
        ("anonymous_id", "anon-1"),
        ("email", "ada@example.com"),
    ]
    .iter()
    .map(|(kind, raw)| resolver.profile_of(kind, raw))
    .collect();
    assert_eq!(profiles.len(), 1, "one person, one profile: {profiles:?}");
    assert!(profiles.iter().all(Option::is_some));
    for batch in [&identify, &track, &page, &group, &alias] {
        assert!(!text(batch, cdp_core::PROFILE_ID_COLUMN).is_empty());
    }
}
