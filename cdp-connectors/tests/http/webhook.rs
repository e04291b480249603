//! The webhook destination against a receiver that checks signatures and counts
//! deliveries: every record at least once across crashes and exactly once after the
//! receiver dedupes by idempotency key; tampered and replayed requests refused; records
//! the receiver refuses dead-lettered; a receiver that stays down stops the run with the
//! last commit intact; and the destination conformance harness.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use cdp_connectors::WebhookDestinationConfig;
use cdp_connectors::destinations::webhook::{WebhookDestination, verify};
use cdp_connectors::http::{Secret, SecretSource};
use cdp_core::memory::{MemoryDestination, MemorySource};
use cdp_core::{Destination, MemoryStateStore, Pipeline, RetryPolicy, RunMode, StateStore};
use cdp_testkit::conformance::{
    DestinationKind, DestinationUnderTest, Publishes, VisibleRows, check_destination,
};
use cdp_testkit::saas::Receiver;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const SECRET: &str = "whsec_test_secret";

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(20),
        jitter: false,
        ..RetryPolicy::default()
    }
}

fn destination(
    receiver: &Receiver,
    tune: impl FnOnce(&mut WebhookDestinationConfig),
) -> WebhookDestination {
    let mut config = WebhookDestinationConfig::new(receiver.url());
    config.webhook.batch_size = 20;
    config.webhook.rejected = Some("/rejected".into());
    config.webhook.signing = Some(cdp_connectors::destinations::webhook::SigningConfig {
        secret: SecretSource::Value(Secret::new(SECRET)),
        header: "Cdp-Signature".into(),
    });
    config.http.retry = quick();
    tune(&mut config);
    config.build_destination().unwrap()
}

/// `batches` batches of `rows` rows: `id`, and a `name` that says `reject` where
/// `reject(id)`.
fn people(batches: usize, rows: usize, reject: impl Fn(i64) -> bool) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    (0..batches)
        .map(|b| {
            let ids: Vec<i64> = (0..rows).map(|r| (b * rows + r) as i64).collect();
            let names: Vec<String> = ids
                .iter()
                .map(|&id| {
                    if reject(id) {
                        format!("reject {id}")
                    } else {
                        format!("person {id}")
                    }
                })
                .collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn delivered_ids(receiver: &Receiver) -> Vec<i64> {
    let mut ids: Vec<i64> = receiver
        .deduped()
        .iter()
        .map(|e| e["data"]["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_crashes_every_record_arrives_at_least_once_and_once_after_dedupe() {
    let receiver = Receiver::start(SECRET, Duration::from_secs(300)).await;
    receiver.fail_every(13);
    let batches = people(40, 50, |_| false);
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let pipeline = |receiver: &Receiver| {
        // 100 requests at 400 a second: a run lasts about a quarter of a second.
        let destination = destination(receiver, |c| {
            c.http.rate_limit = Some(cdp_core::RateLimit {
                per_second: std::num::NonZeroU32::new(400).unwrap(),
                burst: std::num::NonZeroU32::new(1).unwrap(),
            })
        });
        Pipeline::builder("hooks")
            .source(MemorySource::new("people", batches.clone()))
            .destination(destination)
            .state_store(store.clone())
            .mode(RunMode::Batch)
            .commit_every_rows(200)
            .retry(quick())
            .build()
            .unwrap()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut kills = 0;
    for _ in 0..3 {
        let run = tokio::spawn(pipeline(&receiver).run());
        tokio::time::sleep(Duration::from_millis(rng.random_range(40..160))).await;
        if run.is_finished() {
            break;
        }
        run.abort();
        let _ = run.await;
        kills += 1;
        // Workers of the killed run finish what they were sending.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let report = pipeline(&receiver).run().await.unwrap();
    assert!(kills >= 2, "the runs ended before they could be killed");
    assert!(report.rows_out() > 0);

    let counts = receiver.counts();
    assert_eq!(counts.len(), 2000, "every record arrived");
    let resent = counts.values().filter(|n| **n > 1).count();
    assert!(
        resent > 0,
        "a crash between delivery and commit sends records again"
    );
    assert_eq!(delivered_ids(&receiver), (0..2000).collect::<Vec<_>>());
    assert!(receiver.stats().failed > 0, "500s were retried");
    assert_eq!(receiver.stats().bad_signatures, 0);
}

#[tokio::test]
async fn tampered_and_replayed_requests_fail_the_receivers_check() {
    let receiver = Receiver::start(SECRET, Duration::from_secs(2)).await;
    let mut hook = destination(&receiver, |_| {});
    let batch = cdp_core::Batch::new("people", people(1, 5, |_| false).remove(0), "test")
        .stamp()
        .unwrap();
    hook.write(&batch).await.unwrap();
    hook.flush(1).await.unwrap();
    let taken = receiver.requests().remove(0);
    let signature = taken.headers["cdp-signature"].clone();
    let now = chrono::Utc::now().timestamp();
    verify(
        SECRET.as_bytes(),
        &signature,
        &taken.body,
        now,
        Duration::from_secs(2),
    )
    .unwrap();

    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let send = |body: Vec<u8>| {
        client
            .post(receiver.url())
            .header("cdp-signature", signature.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // The same request again, at once: accepted, and deduped by its keys.
    assert_eq!(send(taken.body.clone()).await.unwrap().status(), 200);
    assert_eq!(receiver.deduped().len(), 5);
    assert!(receiver.counts().values().all(|n| *n == 2));
    // A changed body does not match its signature.
    let mut tampered = taken.body.clone();
    let at = tampered.iter().position(|b| *b == b'4').unwrap();
    tampered[at] = b'5';
    assert_eq!(send(tampered.clone()).await.unwrap().status(), 401);
    assert!(
        verify(
            SECRET.as_bytes(),
            &signature,
            &tampered,
            now,
            Duration::from_secs(2)
        )
        .is_err()
    );
    // Replayed after the tolerance: refused.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let replay = send(taken.body.clone()).await.unwrap();
    assert_eq!(replay.status(), 401);
    assert!(replay.text().await.unwrap().contains("tolerance"));
    let stats = receiver.stats();
    assert_eq!((stats.bad_signatures, stats.stale), (1, 1));
}

#[tokio::test]
async fn records_the_receiver_refuses_go_to_the_dead_letters_in_the_same_run() {
    let receiver = Receiver::start(SECRET, Duration::from_secs(300)).await;
    receiver.refuse_names_containing("reject");
    let rejected = |id: i64| id % 17 == 3;
    let dead = MemoryDestination::new("dead");
    let dead_rows = dead.handle();
    for format in ["json_array", "json", "ndjson"] {
        let report = Pipeline::builder(format!("refusals-{format}"))
            .source(MemorySource::new("people", people(5, 20, rejected)))
            .destination(destination(&receiver, |c| {
                c.webhook.format = serde_json::from_value(Value::from(format)).unwrap()
            }))
            .dead_letter(dead.clone())
            .state_store(Arc::new(MemoryStateStore::new()))
            .mode(RunMode::Batch)
            .retry(quick())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        let refused = (0..100).filter(|id| rejected(*id)).count() as u64;
        let hook = &report.destinations[0];
        assert_eq!(
            (hook.rows_written, hook.rows_rejected),
            (100 - refused, refused),
            "{format}"
        );
        assert_eq!(report.dead_letters, refused, "{format}");
    }
    let letters = dead_rows.batches();
    let reasons: Vec<String> = letters
        .iter()
        .flat_map(|b| {
            let reasons = cdp_core::record::string_column(&b.data, "reason")
                .unwrap()
                .clone();
            (0..arrow::array::Array::len(&reasons)).map(move |i| reasons.value(i).to_string())
        })
        .collect();
    assert_eq!(
        reasons.len(),
        3 * (0..100).filter(|id| rejected(*id)).count()
    );
    assert!(reasons.iter().all(|r| r.contains("refused")), "{reasons:?}");
    assert_eq!(
        delivered_ids(&receiver).len(),
        100 - 6,
        "refused records never land"
    );
}

#[tokio::test]
async fn a_receiver_that_stays_down_stops_the_run_with_the_last_commit_intact() {
    let receiver = Receiver::start(SECRET, Duration::from_secs(300)).await;
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let run = |receiver: &Receiver| {
        Pipeline::builder("down")
            .source(MemorySource::new("people", people(10, 20, |_| false)))
            .destination(destination(receiver, |_| {}))
            .state_store(store.clone())
            .mode(RunMode::Batch)
            .commit_every_rows(40)
            .retry(quick())
            .build()
            .unwrap()
            .run()
    };
    // Up for three requests (60 records), then down for good.
    receiver.down_after(3);
    let error = run(&receiver).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("503"), "{text}");
    let committed = store.load("down").await.unwrap();
    let cursor = committed.streams["people"].as_u64().unwrap();
    assert!(
        (2..=3).contains(&cursor),
        "the last commit covers what was delivered: {cursor}"
    );

    receiver.set_down(false);
    run(&receiver).await.unwrap();
    assert_eq!(delivered_ids(&receiver), (0..200).collect::<Vec<_>>());
}

/// The receiver as the destination's storage: what a reader of it sees is the first
/// envelope of each key, its data and its operation.
struct Hooked {
    receiver: Receiver,
}

#[cdp_core::async_trait]
impl DestinationUnderTest for Hooked {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Append
    }

    fn publishes(&self) -> Publishes {
        Publishes::OnFlush
    }

    async fn fresh(&mut self) -> Result<Box<dyn Destination>, String> {
        Ok(Box::new(destination(&self.receiver, |_| {})))
    }

    async fn visible(&self, stream: &str) -> Result<VisibleRows, String> {
        let mut rows = VisibleRows::new();
        for envelope in self.receiver.deduped() {
            if envelope["stream"] != stream {
                continue;
            }
            let mut row = envelope["data"].clone();
            let op = if envelope["op"] == "delete" { 1 } else { 0 };
            row["_cdp_op"] = Value::from(op);
            rows.push_json(row)?;
        }
        Ok(rows)
    }
}

#[tokio::test]
async fn the_webhook_destination_conforms() {
    let receiver = Receiver::start(SECRET, Duration::from_secs(300)).await;
    let mut hooked = Hooked { receiver };
    let report = check_destination(&mut hooked).await.unwrap();
    assert_eq!(report.publishes, Publishes::OnFlush);
    assert!(report.visible_rows >= 10, "{report:?}");
}
