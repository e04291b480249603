//! The Singer source and destination pass the conformance harnesses, with the fake tap
//! and target.

use std::path::PathBuf;

use cdp_core::Destination;
use cdp_testkit::conformance::{
    DestinationKind, DestinationUnderTest, Publishes, VisibleRows, check_destination, check_source,
};
use serde_json::json;

use crate::support::{Fakes, Script, received};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_resumes_from_every_state_exactly() {
    let fakes = Fakes::new();
    let batch_file = fakes.path("batch.jsonl");
    std::fs::write(
        &batch_file,
        "{\"id\":100}\n{\"id\":101,\"extra\":true}\nbroken\n",
    )
    .unwrap();
    let mut script = Script::new();
    script
        .schema(
            "users",
            json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]}}),
        )
        .schema("orders", json!({"id": {"type": "integer"}}));
    for id in 0..20 {
        script.record("users", json!({"id": id, "name": format!("user {id}")}));
        if id % 4 == 0 {
            script.record("orders", json!({"id": 1000 + id}));
        }
        if id == 6 {
            // A key the tap never declared evolves the schema; the cursor keeps it.
            script.record("users", json!({"id": 60, "plan": "pro"}));
            script.line("not a message");
        }
        if id == 9 {
            script.record("users", json!({"id": "nine"}));
        }
        if id == 12 {
            script.schema(
                "orders",
                json!({"id": {"type": "integer"}, "total": {"type": "number"}}),
            );
            script.line(crate::support::compact(
                &json!({"type": "BATCH", "stream": "orders",
                "encoding": {"format": "jsonl", "compression": "none"},
                "manifest": [format!("file://{}", batch_file.display())]}),
            ));
        }
        if id % 3 == 2 {
            script.state();
        }
    }
    script.state();
    let source = fakes.source(&script, None).with_discover(false);
    // The harness needs the streams listed: discover from a catalog naming them.
    let catalog = json!({"streams": [
        {"tap_stream_id": "users", "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        {"tap_stream_id": "orders", "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}
    ]});
    let catalog_path = fakes.path("listed.json");
    std::fs::write(&catalog_path, catalog.to_string()).unwrap();
    let source = source.with_catalog_file(&catalog_path);
    let report = check_source(&source, 100).await.unwrap();
    assert_eq!(report.rows, 20 + 5 + 1 + 2);
    assert_eq!(report.dead_letters, 3);
    assert!(report.resumes_checked >= 7, "{report:?}");
}

/// The fake target over one output file; every instance is built the same way.
#[derive(Debug)]
struct FakeTarget {
    fakes: Fakes,
    out: PathBuf,
}

#[cdp_core::async_trait]
impl DestinationUnderTest for FakeTarget {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Append
    }

    fn publishes(&self) -> Publishes {
        Publishes::OnCommit
    }

    async fn fresh(&mut self) -> Result<Box<dyn Destination>, String> {
        Ok(Box::new(self.fakes.destination(&self.out, "ok")))
    }

    async fn visible(&self, stream: &str) -> Result<VisibleRows, String> {
        let mut rows = VisibleRows::new();
        for record in received(&self.out, stream) {
            rows.push_json(record)?;
        }
        Ok(rows)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_delivers_each_committed_epoch_once() {
    let fakes = Fakes::new();
    let out = fakes.path("received.singer");
    let mut target = FakeTarget { fakes, out };
    let report = check_destination(&mut target).await.unwrap();
    assert!(report.visible_rows > 0, "{report:?}");
}
