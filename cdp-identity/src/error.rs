//! The error type of `cdp-identity`.

/// Result alias used across `cdp-identity`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building rules, resolving batches, or operating on the
/// identity graph.
///
/// Each variant says what was wrong. Problems found before anything changes (configuration,
/// schema, unknown identifiers, operations that do not apply) leave the graph as it was;
/// a capacity or storage error in the middle of a batch keeps what was linked before it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rules or the column mapping are invalid; the message names the field.
    #[error("invalid identity configuration: {0}")]
    Config(String),

    /// An identifier type that the rules do not declare.
    #[error("unknown identifier type `{0}` (declare it under `identifiers` in the rules)")]
    UnknownIdentifierType(String),

    /// A batch does not have the shape the mapping needs (missing column, wrong type).
    #[error("schema mismatch in stream `{stream}`: {message}")]
    Schema {
        /// The stream whose batch was rejected.
        stream: String,
        /// What was expected and what was found.
        message: String,
    },

    /// An Arrow kernel or conversion failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// JSON encoding or decoding of a log event or a profile failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// A profile, identifier, merge or review item that the operation names does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// The operation is valid in general but not in the graph's current state (for example
    /// unmerging a merge that was already undone). Nothing was changed.
    #[error("invalid operation: {0}")]
    InvalidOperation(String),

    /// Replaying an identity log produced a different outcome than the log recorded, which
    /// means the log was written under different rules or was altered.
    #[error("replay diverged at event {seq}: {message}")]
    ReplayDiverged {
        /// Sequence number of the log event that did not reproduce.
        seq: u64,
        /// What was recorded and what replay produced.
        message: String,
    },

    /// The graph reached a hard size limit (4 billion identifiers or 4 GiB of identifier
    /// text). Nothing past the limit was added.
    #[error("identity graph capacity exceeded: {0}")]
    Capacity(String),

    /// An identity log or profile store kept outside this crate (such as the PostgreSQL ones
    /// of `cdp-connectors`) failed, or refused a write that another writer's got ahead of.
    /// `kind` says which, and whether the same call may succeed if tried again.
    #[error("{backend}: {message}")]
    Backend {
        /// Which backend, such as `postgres identity log`.
        backend: &'static str,
        /// What was being done, what went wrong, and what was kept.
        message: String,
        /// Conflict, transient failure, or anything else.
        kind: BackendErrorKind,
    },

    /// The SQLite identity log or profile store failed.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// How an [`Error::Backend`] operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// Another writer changed the shared state first (for a log: appended at the same
    /// sequence numbers). Nothing was written. Trying the same write again fails the same
    /// way: the writer's view is stale and must be reloaded first.
    Conflict,
    /// The connection broke, timed out or the server refused for a reason that passes;
    /// nothing was written (or, for a failed commit, nothing is known to have been) and the
    /// same call may succeed.
    Transient,
    /// Anything else: a rejected statement, data the backend cannot hold, a stopped worker.
    Failed,
}

impl Error {
    /// Whether trying the same operation again may succeed: a busy or locked SQLite database
    /// and a transient backend failure qualify; everything else (a conflict included) is a
    /// bug in the input or the configuration, or needs the caller to reload first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend { kind, .. } => *kind == BackendErrorKind::Transient,
            #[cfg(feature = "sqlite")]
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}

impl From<Error> for cdp_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Schema { stream, message } => cdp_core::Error::Schema { stream, message },
            Error::Arrow(e) => cdp_core::Error::Arrow(e),
            Error::Json(e) => cdp_core::Error::Json(e),
            Error::Config(m) => cdp_core::Error::Config(m),
            other => {
                let retryable = other.is_retryable();
                cdp_core::Error::External {
                    connector: "identity".to_string(),
                    source: Box::new(other),
                    retryable,
                    retry_after: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_into_core_error_keeping_retryability() {
        let core: cdp_core::Error = Error::NotFound("profile x".into()).into();
        assert!(!core.is_retryable());
        assert!(core.to_string().contains("profile x"));
        let core: cdp_core::Error = Error::Config("bad".into()).into();
        assert!(matches!(core, cdp_core::Error::Config(_)));
    }

    #[test]
    fn only_transient_backend_errors_are_retryable() {
        let error = |kind| Error::Backend {
            backend: "postgres identity log",
            message: "append".into(),
            kind,
        };
        assert!(error(BackendErrorKind::Transient).is_retryable());
        assert!(!error(BackendErrorKind::Conflict).is_retryable());
        let core: cdp_core::Error = error(BackendErrorKind::Transient).into();
        assert!(core.is_retryable());
        assert!(core.to_string().contains("postgres identity log"), "{core}");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn busy_sqlite_is_retryable() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(Error::Sqlite(busy).is_retryable());
    }
}
