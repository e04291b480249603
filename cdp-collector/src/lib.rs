//! A Segment-compatible event collector for `cdp`: the tracking API your apps' Segment
//! libraries already speak, a durable log behind it, and the source a pipeline reads it
//! with.
//!
//! * [`Collector::router`] is an axum [`Router`](axum::Router) with Segment's endpoints
//!   (`/v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`,
//!   `/v1/batch` and the browser library's short forms), write-key authentication (HTTP
//!   basic with the key as user, or `writeKey` in the body), gzip bodies, CORS, Segment's
//!   limits (32 KB per event, 500 KB and 2,500 events per batch) and clear 400s naming the
//!   problem. Mount it in your own server.
//! * An event is acknowledged only once it is in the [`EventLog`] on disk: a writer thread
//!   group-commits every waiting request with one `fsync`, answers 429 with `Retry-After`
//!   when the queue is full rather than buffering without bound, and drops `messageId`s
//!   already seen within the deduplication window (rebuilt from the log after a restart).
//! * [`log_source`] reads the log back as one stream per call type, with checkpoints, so a
//!   pipeline lands every acknowledged event exactly once.
//! * With the `jetstream` feature, `JetStreamLog` makes NATS JetStream the durable log
//!   instead: an event is acknowledged once JetStream has acknowledged it, published to
//!   `<prefix>.<call type>` with its `messageId` as `Nats-Msg-Id`, so JetStream's duplicate
//!   window drops a client's retries.
//!
//! The `cdp-collector` binary serves the router and, with `--landing DIR`, runs a pipeline
//! from the log into a Parquet landing zone.
//!
//! # Example
//!
//! ```
//! use cdp_collector::{Collector, EventLog, LogConfig};
//! use axum::http::HeaderMap;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let log = EventLog::open(LogConfig::new(dir.path().join("log")))?;
//! let collector = Collector::new(vec!["KEY".into()], log);
//! // In a server: axum::serve(listener, collector.router()).
//! let body = br#"{"writeKey": "KEY", "userId": "u1", "event": "Signed Up"}"#;
//! let appended = collector.handle("track", &HeaderMap::new(), body).await?;
//! assert_eq!(appended.written, 1);
//! # Ok(()) }
//! ```

mod api;
mod error;
pub mod event;
#[cfg(feature = "jetstream")]
mod jetstream;
mod log;
mod source;

pub use api::Collector;
pub use error::Rejection;
pub use event::{CallType, Limits};
#[cfg(feature = "jetstream")]
pub use jetstream::JetStreamLog;
pub use log::{Appended, DurableLog, EventLog, LogConfig, stream_dir};
pub use source::log_source;
