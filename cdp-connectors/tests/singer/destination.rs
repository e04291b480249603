//! The Singer destination with the fake target: what a target is sent, a target that
//! fails or does not confirm, and a pipeline from a tap to a target.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_core::{Batch, Destination, MemoryStateStore, OpenContext, Pipeline, RunMode, StreamSpec};
use serde_json::{Value, json};

use crate::support::{Fakes, Script, received};

fn batch(ids: &[i64], scores: &[f64]) -> Batch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
    ]));
    let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
    let data = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names)),
            Arc::new(Float64Array::from(scores.to_vec())),
        ],
    )
    .unwrap();
    Batch::new("people", data, "test").stamp().unwrap()
}

fn open(epoch: u64) -> OpenContext {
    OpenContext {
        pipeline_id: "p".into(),
        committed_epoch: epoch,
    }
}

async fn write_epoch(destination: &mut dyn Destination, epoch: u64, ids: &[i64]) {
    let scores: Vec<f64> = ids.iter().map(|&i| i as f64 / 2.0).collect();
    let batch = batch(ids, &scores);
    let spec = StreamSpec::new("people", batch.data.schema()).with_primary_key(["id"]);
    destination.prepare(&spec).await.unwrap();
    destination.write(&batch).await.unwrap();
    destination.flush(epoch).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_gets_a_schema_records_and_the_epochs_state() {
    let fakes = Fakes::new();
    let out = fakes.path("out.singer");
    let mut destination = fakes.destination(&out, "ok");
    destination.open(&open(0)).await.unwrap();
    let scores = [0.5, f64::NAN, 2.0];
    let stamped = batch(&[1, 2, 3], &scores);
    let spec = StreamSpec::new("people", stamped.data.schema()).with_primary_key(["id"]);
    destination.prepare(&spec).await.unwrap();
    let outcome = destination.write(&stamped).await.unwrap();
    assert_eq!(outcome.rejected.len(), 1, "NaN has no JSON number");
    assert_eq!(outcome.rejected[0].row, 1);
    destination.flush(1).await.unwrap();
    assert!(
        !out.exists(),
        "nothing reaches the target before the commit"
    );
    destination.commit(1).await.unwrap();

    let messages: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(messages[0]["type"], "SCHEMA");
    assert_eq!(messages[0]["key_properties"], json!(["id"]));
    assert_eq!(
        messages[0]["schema"]["properties"]["id"],
        json!({"type": "integer"})
    );
    assert_eq!(
        messages[0]["schema"]["properties"]["_cdp_synced_at"]["format"],
        "date-time"
    );
    let ids: Vec<i64> = received(&out, "people")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3]);
    assert_eq!(received(&out, "people")[1]["score"], 2.0);
    // Delivered and confirmed: nothing stays staged.
    let staged = std::fs::read_dir(fakes.path("staging/p/fake-target"))
        .unwrap()
        .count();
    assert_eq!(staged, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_stays_staged_and_the_next_open_sends_it() {
    let fakes = Fakes::new();
    let out = fakes.path("out.singer");
    let mut failing = fakes.destination(&out, "fail");
    failing.open(&open(0)).await.unwrap();
    write_epoch(&mut failing, 1, &[1, 2]).await;
    let error = failing.commit(1).await.unwrap_err().to_string();
    assert!(error.contains("exited with status 4"), "{error}");
    assert!(
        error.contains("| target: the warehouse refused the load"),
        "{error}"
    );
    drop(failing);
    // What the failed target wrote before it failed is its own business.
    std::fs::remove_file(&out).unwrap();
    let ids = || -> Vec<i64> {
        received(&out, "people")
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };

    // The pipeline had committed epoch 1: the next open sends it.
    let mut next = fakes.destination(&out, "ok");
    next.open(&open(1)).await.unwrap();
    assert_eq!(ids(), [1, 2]);
    // Epoch 2 flushed, then a crash before the pipeline committed it: dropped on open.
    write_epoch(&mut next, 2, &[3]).await;
    drop(next);
    let mut again = fakes.destination(&out, "ok");
    again.open(&open(1)).await.unwrap();
    assert_eq!(ids(), [1, 2], "epoch 1 once, epoch 2 never");
    let staged = std::fs::read_dir(fakes.path("staging/p/fake-target"))
        .unwrap()
        .count();
    assert_eq!(staged, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_writes_no_state_does_not_confirm() {
    let fakes = Fakes::new();
    let out = fakes.path("out.singer");
    let mut silent = fakes.destination(&out, "silent");
    silent.open(&open(0)).await.unwrap();
    write_epoch(&mut silent, 1, &[1]).await;
    let error = silent.commit(1).await.unwrap_err().to_string();
    assert!(
        error.contains("without writing back the state of epoch 1"),
        "{error}"
    );

    let mut trusting = fakes.destination(&out, "silent").with_confirm_state(false);
    trusting.open(&open(1)).await.unwrap();
    assert_eq!(
        received(&out, "people").len(),
        2,
        "sent twice: once unconfirmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_runs_from_a_tap_to_a_target() {
    let fakes = Fakes::new();
    let mut script = Script::new();
    script.schema(
        "users",
        json!({"id": {"type": "integer"}, "traits": {"type": "object"}}),
    );
    for id in 0..7 {
        script.record(
            "users",
            json!({"id": id, "traits": {"plan": "pro", "n": id}}),
        );
        if id % 2 == 1 {
            script.state();
        }
    }
    script.state();
    let out = fakes.path("out.singer");
    let report = Pipeline::builder("tap-to-target")
        .source(fakes.source(&script, None))
        .destination(fakes.destination(&out, "ok"))
        .state_store(Arc::new(MemoryStateStore::new()))
        .mode(RunMode::Batch)
        .commit_every_rows(2)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(report.rows_out(), 7);
    let records = received(&out, "users");
    let ids: Vec<i64> = records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (0..7).collect::<Vec<_>>());
    // JSON text from the tap goes to the target as the JSON it was.
    assert_eq!(records[3]["traits"], json!({"n": 3, "plan": "pro"}));
}
