//! `cdp`: embeddable customer-data pipelines on Arrow — connectors, identity stitching,
//! schema evolution and governance, composed in-process.
//!
//! This umbrella crate re-exports the family behind cargo features, so `cargo add cdp` is
//! one line:
//!
//! | module | crate | feature |
//! |---|---|---|
//! | crate root, [`core`] | `cdp-core`: record model, traits, pipeline runtime, state | always |
//! | [`connectors`] | `cdp-connectors`: file sources and landing zones; PostgreSQL source, destination, state store; HTTP source for REST APIs, signed webhook destination | `jsonl`, `csv`, `parquet` (all three: `files`), `postgres`, `postgres-tls`, `http` |
//! | `postgres` | `cdp-postgres`: PostgreSQL connection settings, TLS, binary `COPY`, type mapping, quoting | `postgres`, `postgres-identity`, `postgres-tls` |
//! | [`identity`] | `cdp-identity`: identity graph, merges, profiles, probabilistic matching | `identity` |
//! | `postgres_identity` | this crate: the identity log and profile store in PostgreSQL, shared by workers on several machines | `postgres-identity` |
//! | [`schema`] | `cdp-schema`: registry, compatibility, diffs, contracts | `schema` |
//! | [`governance`] | `cdp-governance`: classes, policies, masking, audit | `governance` |
//! | [`erasure`] | this crate: the identity graph and profile store as erasure targets | `identity` + `governance` |
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cdp::arrow::array::{Int64Array, RecordBatch};
//! use cdp::arrow::datatypes::{DataType, Field, Schema};
//! use cdp::memory::{MemoryDestination, MemorySource};
//! use cdp::Pipeline;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> cdp::Result<()> {
//! let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
//! let data = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))])?;
//! let sink = MemoryDestination::new("sink");
//! let rows = sink.handle();
//! Pipeline::builder("demo")
//!     .source(MemorySource::new("numbers", vec![data]))
//!     .destination(sink)
//!     .build()?
//!     .run()
//!     .await?;
//! assert_eq!(rows.row_count(), 2);
//! # Ok(()) }
//! ```

pub use cdp_core::*;

/// The record model, traits and runtime (`cdp-core`).
pub use cdp_core as core;

/// Sources and destinations (`cdp-connectors`).
pub use cdp_connectors as connectors;

/// PostgreSQL plumbing: connection settings, TLS, binary `COPY`, type mapping, quoting
/// (`cdp-postgres`).
#[cfg(any(feature = "postgres", feature = "postgres-identity"))]
pub use cdp_postgres as postgres;

#[cfg(feature = "postgres-identity")]
pub mod postgres_identity;

/// Identity stitching (`cdp-identity`).
#[cfg(feature = "identity")]
pub use cdp_identity as identity;

/// Schema registry, compatibility and contracts (`cdp-schema`).
#[cfg(feature = "schema")]
pub use cdp_schema as schema;

/// Governance: classes, policies, masking, consent, audit (`cdp-governance`).
#[cfg(feature = "governance")]
pub use cdp_governance as governance;

#[cfg(all(feature = "identity", feature = "governance"))]
pub mod erasure;

/// The README's examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
