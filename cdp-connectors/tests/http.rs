//! Integration tests of the HTTP connectors against a fake SaaS API and a webhook receiver
//! (cdp-testkit's `saas`, on axum, in this process): every paging style, OAuth with
//! expiring tokens and rotating refresh tokens, rate limits with `Retry-After`, 500s and
//! dropped connections, equal cursors across page boundaries, partitions and substreams,
//! the bundled example configs, and signed webhook deliveries.

#![cfg(feature = "http")]
// Helpers outside `#[test]` functions panic on failure too; that is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "http/support.rs"]
mod support;

#[path = "http/auth.rs"]
mod auth;
#[path = "http/conformance.rs"]
mod conformance;
#[path = "http/errors.rs"]
mod errors;
#[path = "http/examples.rs"]
mod examples;
#[path = "http/incremental.rs"]
mod incremental;
#[path = "http/paging.rs"]
mod paging;
#[path = "http/records.rs"]
mod records;
#[path = "http/webhook.rs"]
mod webhook;
