//! Integration tests of the file connectors, on real files in temporary directories.

#![cfg(feature = "files")]
// Helpers outside `#[test]` functions panic on failure too; that is how a test fails.
#![allow(clippy::unwrap_used)]

#[path = "files/support.rs"]
mod support;

#[path = "files/conformance.rs"]
mod conformance;
#[path = "files/csv_drift.rs"]
mod csv_drift;
#[path = "files/csv_source.rs"]
mod csv_source;
#[path = "files/destination_conformance.rs"]
mod destination_conformance;
#[path = "files/destinations.rs"]
mod destinations;
#[path = "files/drift.rs"]
mod drift;
#[path = "files/fuzz.rs"]
mod fuzz;
#[path = "files/jsonl_source.rs"]
mod jsonl_source;
#[path = "files/parquet_source.rs"]
mod parquet_source;
#[path = "files/pipeline.rs"]
mod pipeline;
#[path = "files/rotation.rs"]
mod rotation;
#[path = "files/values.rs"]
mod values;
