//! Integration tests of the PostgreSQL connectors against a real server.
//!
//! Needs the `postgres-integration` feature and a server at `CDP_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`). Every test works in a schema of its
//! own, `cdp_test_<pid>_<n>`, dropped when the test ends.

#![cfg(feature = "postgres-integration")]
// Helpers outside `#[test]` functions panic on failure too; that is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "postgres/support.rs"]
mod support;

#[path = "postgres/destination.rs"]
mod destination;
#[path = "postgres/destination_conformance.rs"]
mod destination_conformance;
#[path = "postgres/drift.rs"]
mod drift;
#[path = "postgres/pipeline.rs"]
mod pipeline;
#[path = "postgres/refusals.rs"]
mod refusals;
#[path = "postgres/source.rs"]
mod source;
#[path = "postgres/state_store.rs"]
mod state_store;
#[path = "postgres/tls.rs"]
mod tls;
#[path = "postgres/values.rs"]
mod values;
