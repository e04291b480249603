//! NATS JetStream as the collector's durable log.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures::future::join_all;

use crate::error::Rejection;
use crate::event::Event;
use crate::log::{Appended, DurableLog};

/// A [`DurableLog`] on NATS JetStream: each event is published to `<prefix>.<call type>`
/// with its `messageId` as `Nats-Msg-Id`, and the request is acknowledged once JetStream
/// has acknowledged every event of it (stored, and replicated as the stream says). A
/// `messageId` already seen within the stream's duplicate window is dropped by JetStream
/// and counted as a duplicate.
#[derive(Debug, Clone)]
pub struct JetStreamLog {
    context: jetstream::Context,
    stream: String,
    prefix: String,
}

impl JetStreamLog {
    /// Connects to `url` and makes sure the stream `stream` exists, capturing
    /// `<prefix>.>` with `duplicate_window` (created with file storage if missing; an
    /// existing stream is used as it is).
    pub async fn connect(
        url: &str,
        stream_name: &str,
        prefix: &str,
        duplicate_window: Duration,
    ) -> Result<JetStreamLog, async_nats::Error> {
        let client = async_nats::connect(url).await?;
        let context = jetstream::new(client);
        context
            .get_or_create_stream(stream::Config {
                name: stream_name.to_string(),
                subjects: vec![format!("{prefix}.>")],
                storage: stream::StorageType::File,
                duplicate_window,
                ..Default::default()
            })
            .await?;
        Ok(JetStreamLog {
            context,
            stream: stream_name.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The subject events of `call` go to.
    pub fn subject(&self, call: crate::CallType) -> String {
        format!("{}.{}", self.prefix, call.as_str())
    }
}

#[cdp_core::async_trait]
impl DurableLog for JetStreamLog {
    async fn append(&self, events: Vec<Event>) -> Result<Appended, Rejection> {
        let unavailable = |e: &dyn std::fmt::Display| Rejection::Unavailable(e.to_string());
        // Publish everything first, then wait for the acknowledgements together: one round
        // trip for the request, not one per event.
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.message_id.as_str());
            let ack = self
                .context
                .publish_with_headers(
                    self.subject(event.call),
                    headers,
                    bytes::Bytes::from(event.line),
                )
                .await
                .map_err(|e| unavailable(&e))?;
            pending.push(ack);
        }
        let mut appended = Appended::default();
        for ack in join_all(
            pending
                .into_iter()
                .map(std::future::IntoFuture::into_future),
        )
        .await
        {
            let ack = ack.map_err(|e| unavailable(&e))?;
            if ack.duplicate {
                appended.duplicates += 1;
            } else {
                appended.written += 1;
            }
        }
        Ok(appended)
    }

    fn describe(&self) -> String {
        format!("JetStream stream {} ({}.>)", self.stream, self.prefix)
    }
}
