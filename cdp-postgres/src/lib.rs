//! PostgreSQL plumbing shared by the `cdp` crates that talk to PostgreSQL: the PostgreSQL
//! source, destination and state store of `cdp-connectors`, and the identity log and
//! profile store of the `cdp` umbrella crate.
//!
//! - [`PostgresConnection`]: connection settings from a URL, fields, environment variables
//!   or a secrets file, with passwords redacted from `Debug` and errors; libpq's
//!   [`sslmode`](PostgresSslMode) values, served by rustls with the `tls` feature.
//! - [`pg_error`] and [`is_transient`]: driver errors as [`cdp_core::Error`]s that say
//!   whether trying again can help, so the runtime's retry policy applies to them.
//! - [`copy`]: PostgreSQL's binary `COPY` format decoded straight into Arrow builders and
//!   encoded straight from Arrow arrays.
//! - [`types`]: the mapping between PostgreSQL and Arrow types, and values rendered as
//!   PostgreSQL input text.
//! - [`quote`]: identifiers and literals quoted for SQL text.
//! - [`refusal`]: the server refusing rows (a value, a constraint) told apart from every
//!   other failure, and what a declared column type lets through unchanged.
//!
//! It depends on `cdp-core` only; connectors and backends build on it rather than on each
//! other.
//!
//! # Example
//!
//! Check connection settings without connecting, and quote names for a statement:
//!
//! ```
//! use cdp_postgres::{PostgresConnection, PostgresSslMode, qualified};
//!
//! # fn main() -> cdp_core::Result<()> {
//! let connection = PostgresConnection::url("postgres://etl:s3cret@db.internal:5433/crm")
//!     .with_application_name("cdp-crm")
//!     .with_sslmode(PostgresSslMode::Disable);
//! let config = connection.to_config("crm source")?;
//! assert_eq!(config.get_dbname(), Some("crm"));
//! assert_eq!(config.get_ports(), [5433]);
//! // Passwords never show in logs.
//! assert!(!format!("{connection:?}").contains("s3cret"));
//!
//! // A bad URL is a configuration error, refused before anything connects.
//! let error = PostgresConnection::url("postgres://etl@db/crm?sslmode=verify-everything")
//!     .to_config("crm source")
//!     .unwrap_err();
//! assert!(error.to_string().contains("unknown sslmode"));
//!
//! assert_eq!(
//!     format!("SELECT count(*) FROM {}", qualified("crm", "Order Lines")),
//!     r#"SELECT count(*) FROM "crm"."Order Lines""#
//! );
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `tls`: TLS for the connections (rustls with the `ring` provider; system roots or a PEM
//!   `sslrootcert`), up to `sslmode=verify-full`. Without it, `prefer` connects in the clear
//!   and the modes that require TLS are refused rather than downgraded.

mod connection;
pub mod copy;
pub mod quote;
pub mod refusal;
#[cfg(feature = "tls")]
mod tls;
pub mod types;

pub use connection::{
    ConnectionProblem, PostgresConnection, PostgresSslMode, is_transient, pg_error,
};
pub use copy::{CopyDecoder, CopyEncoder};
pub use quote::{ident, literal, qualified};
pub use refusal::RowRefusal;
pub use types::{PG_TYPE_METADATA, PgKind};
