//! Test support for `cdp`: fixtures and sample data shared by tests, examples and benches.
//!
//! - [`sample`]: a deterministic, realistic company dataset (web and mobile events, a CRM
//!   export, billing invoices) with the identity overlaps real data has, plus its ground
//!   truth.
//! - [`people`]: person records with noisy duplicates and their cluster ids, for record
//!   linkage.
//! - [`read`]: a source read to its end in a test, with views of its batches, checkpoints
//!   and dead letters.
//! - [`conformance`]: the harnesses every connector must pass — a source checkpoints after
//!   everything it emits, and a resume from any checkpoint yields exactly what came after it;
//!   a destination shows each committed row once across crashes, replays and schema changes,
//!   applies or keeps tombstones, and refuses bad rows one by one.
//! - `postgres` (feature `postgres`): the PostgreSQL test server, and a schema of its own
//!   per test.
//! - `saas` (feature `saas`): a fake SaaS API in every paging style, with OAuth, rate
//!   limits and faults, and a webhook receiver that checks signatures.
//! - [`singer`]: Singer taps and targets from PyPI, each installed once into a cached
//!   virtualenv.

pub mod conformance;
pub mod people;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod read;
#[cfg(feature = "saas")]
pub mod saas;
pub mod sample;
pub mod singer;
