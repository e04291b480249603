//! The identity log and the profile store of `cdp-identity` in PostgreSQL, so that resolvers
//! on several machines share one identity history and one profile store (feature
//! `postgres-identity`).
//!
//! They live in the umbrella crate because they join two families that stay apart below it:
//! the identity traits (`cdp-identity`) and the PostgreSQL plumbing (`cdp-postgres`), so
//! neither the connectors nor the identity crate depends on the other.
//!
//! - [`PostgresIdentityLog`] implements [`IdentityLog`](cdp_identity::IdentityLog): one row
//!   per record in `<prefix>identity_log`, keyed by `seq`. Appends are optimistic: a writer
//!   whose records another writer has already appended at the same sequence numbers gets
//!   [`BackendErrorKind::Conflict`] and nothing is written, so the log never forks or gets a
//!   gap.
//! - [`PostgresProfileStore`] implements [`ProfileStore`](cdp_identity::ProfileStore) with
//!   the semantics of [`MemoryProfileStore`](cdp_identity::MemoryProfileStore) (the same
//!   survivorship rules) over `<prefix>profiles` and `<prefix>profile_index`. Each delta is
//!   applied in one transaction under an advisory lock, so concurrent writers take turns;
//!   lookups read the database, so every handle sees every committed write.
//!
//! The traits are synchronous and the resolver calls them from async tasks, where blocking
//! on a runtime would panic. Each handle therefore owns a thread running a single-threaded
//! tokio runtime and its own connection; a call sends the work to that thread and waits for
//! the answer, which works the same inside and outside a runtime. The thread stops when the
//! handle is dropped. A connection that breaks is opened again on the next call; a read
//! that failed on a broken connection is tried once more on a new one.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use cdp::identity::{ResolverConfig, StoreConfig};
//! use cdp::postgres::PostgresConnection;
//! use cdp::postgres_identity::{
//!     PostgresIdentityLog, PostgresIdentityOptions, PostgresProfileStore,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let config: ResolverConfig = serde_json::from_str("{}")?;
//! let connection = PostgresConnection::url("postgres://cdp@db.internal/cdp");
//! let options = PostgresIdentityOptions {
//!     schema: "identity".into(),
//!     ..PostgresIdentityOptions::default()
//! };
//! let log = PostgresIdentityLog::open(&connection, &options)?;
//! let store = PostgresProfileStore::open(&connection, &options, StoreConfig::default())?;
//! // A restarted worker rebuilds its graph from the shared log, then keeps both up to date.
//! let resolver = config
//!     .build()?
//!     .with_log(Box::new(log))?
//!     .with_store(Arc::new(store))?;
//! # let _ = resolver; Ok(()) }
//! ```
//!
//! # Several writers
//!
//! Each resolver holds its graph in memory and appends to the log what its graph recorded.
//! Two resolvers may therefore not both extend one log: the second one to flush gets a
//! conflict, and must be rebuilt from the log (which now holds the first one's records)
//! before it resolves again. Route the writes of one graph to one writer at a time (one
//! partition per worker, or a leader), and let the others serve lookups from the store.
//!
//! [`BackendErrorKind::Conflict`]: cdp_identity::error::BackendErrorKind::Conflict

mod log;
mod profile;
mod worker;

use cdp_identity::Error;
use cdp_identity::error::BackendErrorKind;
use cdp_postgres::is_transient;
use serde::{Deserialize, Serialize};

pub use log::PostgresIdentityLog;
pub use profile::PostgresProfileStore;

/// PostgreSQL truncates longer identifiers, which could make two table names one.
const MAX_IDENTIFIER_LEN: usize = 63;

/// Where the identity tables live.
///
/// The log is `<schema>.<table_prefix>identity_log`; the profile store uses
/// `<table_prefix>profiles` and `<table_prefix>profile_index`. Schema and tables are
/// created on open when missing. Give each identity graph its own prefix (or schema) when
/// several share a database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresIdentityOptions {
    /// Schema of the tables. Default `public`.
    pub schema: String,
    /// Prefix of the table names. Default `cdp_`.
    pub table_prefix: String,
}

impl Default for PostgresIdentityOptions {
    fn default() -> Self {
        PostgresIdentityOptions {
            schema: "public".into(),
            table_prefix: "cdp_".into(),
        }
    }
}

impl PostgresIdentityOptions {
    /// The (unquoted) name of a table with the prefix, refused if PostgreSQL would truncate
    /// it.
    fn table(&self, suffix: &str) -> Result<String, Error> {
        let name = format!("{}{suffix}", self.table_prefix);
        if name.len() > MAX_IDENTIFIER_LEN {
            return Err(Error::Config(format!(
                "postgres identity: table name `{name}` is longer than {MAX_IDENTIFIER_LEN} \
                 bytes; use a shorter `table_prefix`"
            )));
        }
        if self.schema.is_empty() || self.schema.len() > MAX_IDENTIFIER_LEN {
            return Err(Error::Config(format!(
                "postgres identity: schema `{}` must be 1 to {MAX_IDENTIFIER_LEN} bytes",
                self.schema
            )));
        }
        Ok(name)
    }
}

/// A backend error of kind `kind`.
fn backend(backend: &'static str, kind: BackendErrorKind, message: impl Into<String>) -> Error {
    Error::Backend {
        backend,
        message: message.into(),
        kind,
    }
}

/// A driver error, with what was being done and the server's message, detail and hint.
fn pg_error(name: &'static str, context: &str, e: &tokio_postgres::Error) -> Error {
    let kind = if is_transient(e) {
        BackendErrorKind::Transient
    } else {
        BackendErrorKind::Failed
    };
    backend(name, kind, format!("{context}: {}", describe(e)))
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// A connector error from connecting: configuration stays a configuration error.
fn connect_error(name: &'static str, e: cdp_core::Error) -> Error {
    match e {
        cdp_core::Error::Config(message) => Error::Config(message),
        other => {
            let kind = if other.is_retryable() {
                BackendErrorKind::Transient
            } else {
                BackendErrorKind::Failed
            };
            // The connector error's text already carries the driver's cause.
            backend(name, kind, other.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<PostgresIdentityLog>();
        send_sync::<PostgresProfileStore>();
        send_sync::<PostgresIdentityOptions>();
    }

    #[test]
    fn long_table_names_are_refused_rather_than_truncated() {
        let options = PostgresIdentityOptions {
            table_prefix: "x".repeat(60),
            ..PostgresIdentityOptions::default()
        };
        let error = options.table("profile_index").unwrap_err();
        assert!(error.to_string().contains("table_prefix"), "{error}");
        assert_eq!(
            PostgresIdentityOptions::default()
                .table("identity_log")
                .unwrap(),
            "cdp_identity_log"
        );
    }

    #[test]
    fn options_deserialize_with_defaults() {
        let options: PostgresIdentityOptions =
            serde_json::from_value(serde_json::json!({"schema": "identity"})).unwrap();
        assert_eq!(options.schema, "identity");
        assert_eq!(options.table_prefix, "cdp_");
        assert!(
            serde_json::from_value::<PostgresIdentityOptions>(serde_json::json!({"x": 1})).is_err()
        );
    }
}
