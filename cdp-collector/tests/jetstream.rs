//! NATS JetStream as the durable log, against the real server (`CDP_TEST_NATS_URL`,
//! default `nats://127.0.0.1:4222`): acknowledged events are in the stream under
//! `<prefix>.<call type>`, stamped like the file log's, and a resent `messageId` is
//! dropped by JetStream's duplicate window.

#![cfg(feature = "jetstream-integration")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_nats::jetstream;
use axum::http::HeaderMap;
use cdp_collector::{Collector, JetStreamLog};
use futures::StreamExt;

#[tokio::test]
async fn acknowledged_events_are_in_jetstream_once() {
    let url = std::env::var("CDP_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let unique = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (stream, prefix) = (format!("CDP_TEST_{unique}"), format!("cdptest{unique}"));
    let log = JetStreamLog::connect(&url, &stream, &prefix, Duration::from_secs(120))
        .await
        .unwrap();
    let collector = Collector::new(vec!["KEY".into()], log);
    let batch = br#"{"writeKey":"KEY","batch":[
        {"type":"track","messageId":"m1","userId":"u1","event":"Signed Up"},
        {"type":"identify","messageId":"m2","userId":"u1","traits":{"email":"a@x.io"}},
        {"type":"page","messageId":"m3","anonymousId":"a1","name":"Home"}]}"#;
    let first = collector
        .handle("batch", &HeaderMap::new(), batch)
        .await
        .unwrap();
    assert_eq!((first.written, first.duplicates), (3, 0));
    // A client retrying the same batch: every event is a duplicate.
    let again = collector
        .handle("batch", &HeaderMap::new(), batch)
        .await
        .unwrap();
    assert_eq!((again.written, again.duplicates), (0, 3));

    let context = jetstream::new(async_nats::connect(&url).await.unwrap());
    let mut handle = context.get_stream(&stream).await.unwrap();
    assert_eq!(handle.info().await.unwrap().state.messages, 3);
    let consumer = handle
        .create_consumer(jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer.fetch().max_messages(10).messages().await.unwrap();
    let mut subjects = Vec::new();
    while let Some(Ok(message)) = messages.next().await {
        let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert!(event["receivedAt"].is_string());
        assert!(event["messageId"].is_string());
        subjects.push(message.subject.to_string());
    }
    subjects.sort();
    assert_eq!(
        subjects,
        [
            format!("{prefix}.identify"),
            format!("{prefix}.page"),
            format!("{prefix}.track")
        ]
    );
    context.delete_stream(&stream).await.unwrap();
}
