//! Test support for `cdp`: fixtures and sample data shared by tests, examples and benches.
//!
//! - [`sample`]: a deterministic, realistic company dataset (web and mobile events, a CRM
//!   export, billing invoices) with the identity overlaps real data has, plus its ground
//!   truth.

pub mod sample;
