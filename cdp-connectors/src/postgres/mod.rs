//! PostgreSQL: a source, a destination and a state store, on `tokio-postgres` and binary
//! `COPY`; the connection settings, TLS, `COPY` codec and type mapping they share are the
//! `cdp-postgres` crate.
//!
//! - [`PostgresSource`](crate::PostgresSource) discovers the tables and views of a schema
//!   and reads them in full or incrementally by a cursor column, paging on
//!   (cursor, primary key), straight from binary `COPY` into Arrow builders. Deletes come
//!   out as tombstones, from a soft-delete column or, for full refreshes, from primary keys
//!   that disappeared.
//! - [`PostgresDestination`](crate::PostgresDestination) creates and widens tables from the
//!   streams' Arrow schemas and applies each flush in one transaction: binary `COPY` into a
//!   temporary staging table, then deletes for tombstones, updates of changed rows and
//!   inserts of new keys (for streams without a key, `INSERT … ON CONFLICT` on
//!   `_cdp_record_hash`).
//! - [`PostgresStateStore`] keeps pipeline checkpoints in a table several workers share.
//!
//! The identity log and profile store in PostgreSQL live in the `cdp` umbrella crate
//! (`cdp::postgres_identity`, feature `postgres-identity`): connectors do not depend on
//! `cdp-identity`.
//!
//! Type mapping: see [`types`].

mod state;

pub use cdp_postgres::types;
pub use cdp_postgres::{PG_TYPE_METADATA, PostgresConnection, PostgresSslMode};
pub use state::PostgresStateStore;
