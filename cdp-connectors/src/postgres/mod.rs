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

use cdp_core::RetryPolicy;

use crate::config::ConfigErrors;

/// Records what is wrong with connection settings, under `prefix` (`connection`), without
/// reading their secrets or connecting.
pub(crate) fn check_connection(
    connection: &PostgresConnection,
    prefix: &str,
    errors: &mut ConfigErrors,
) {
    if let Err(problems) = connection.validate() {
        for problem in problems {
            errors.push(format!("{prefix}.{}", problem.key), problem.message);
        }
    }
}

/// Records what is wrong with the keys every PostgreSQL connector has: `connection`,
/// `name` and `schema`.
pub(crate) fn check_instance(
    connection: &PostgresConnection,
    name: Option<&str>,
    schema: &str,
    errors: &mut ConfigErrors,
) {
    check_connection(connection, "connection", errors);
    if name == Some("") {
        errors.push("name", "must not be empty; omit it for the default");
    }
    if schema.is_empty() {
        errors.push("schema", "must name a schema");
    }
}

/// Records what is wrong with a retry policy, under `prefix` (`retry`).
pub(crate) fn check_retry(retry: &RetryPolicy, prefix: &str, errors: &mut ConfigErrors) {
    if retry.max_attempts == 0 {
        errors.push(
            format!("{prefix}.max_attempts"),
            "must be at least 1 (1 disables retrying)",
        );
    }
    if !(retry.factor.is_finite() && retry.factor >= 1.0) {
        errors.push(
            format!("{prefix}.factor"),
            format!("must be a number of at least 1, got {}", retry.factor),
        );
    }
    if retry.initial_delay > retry.max_delay {
        errors.push(
            format!("{prefix}.initial_delay"),
            "must not be longer than `max_delay`",
        );
    }
}
