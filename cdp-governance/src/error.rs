//! The error type of `cdp-governance`.

use cdp_core::BoxError;

/// Result alias used across `cdp-governance`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while classifying, enforcing, masking, erasing or auditing.
///
/// Converts into [`cdp_core::Error`] so governance components plug into a pipeline: a
/// refused flow becomes [`cdp_core::Error::Policy`], the rest an external error that keeps
/// its [`is_retryable`](Error::is_retryable) judgement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy file could not be parsed, or names something inconsistent.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),

    /// A flow of fields to a destination breaks the policy; nothing of the stream was sent.
    #[error("flow of stream `{stream}` to destination `{destination}` refused: {message}")]
    Refused {
        /// The stream.
        stream: String,
        /// The destination.
        destination: String,
        /// Which field, which class, which rule.
        message: String,
    },

    /// A principal asked for something its roles do not grant.
    #[error("access denied to `{principal}`: {reason}")]
    Denied {
        /// Who asked.
        principal: String,
        /// Why not, naming the role or what is missing.
        reason: String,
    },

    /// A masking method cannot be applied to a field (wrong type, missing key).
    #[error("cannot apply `{method}` to field `{field}`: {message}")]
    Masking {
        /// The field.
        field: String,
        /// The masking method.
        method: String,
        /// Why not.
        message: String,
    },

    /// A key the policy needs was not configured, or is unusable.
    #[error("key: {0}")]
    Key(String),

    /// A token could not be reversed: wrong key, wrong field, or not a token.
    #[error("token could not be reversed: {0}")]
    Token(String),

    /// The audit log could not be read or written.
    #[error("audit log: {0}")]
    Audit(String),

    /// The SQLite audit log failed.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// An Arrow kernel or conversion failed.
    #[error("arrow: {0}")]
    Arrow(#[from] cdp_core::arrow::error::ArrowError),

    /// JSON (audit details, consent payloads) could not be encoded or decoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// A batch lacks a column an operation needs, or has it with the wrong type.
    #[error("column `{column}`: {message}")]
    Column {
        /// The column.
        column: String,
        /// What was expected and what was found.
        message: String,
    },

    /// An erasure target (profile store, identity graph) failed.
    #[error("erasure target `{target}`: {source}")]
    Erasure {
        /// The target's name.
        target: String,
        /// The underlying error.
        #[source]
        source: BoxError,
        /// Whether trying again may succeed.
        retryable: bool,
    },

    /// An error from `cdp-core`.
    #[error(transparent)]
    Core(#[from] cdp_core::Error),
}

impl Error {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            #[cfg(feature = "sqlite")]
            Error::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Error::Erasure { retryable, .. } => *retryable,
            Error::Core(e) => e.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn column(column: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Column {
            column: column.into(),
            message: message.into(),
        }
    }

    pub(crate) fn masking(
        field: impl Into<String>,
        method: impl std::fmt::Display,
        message: impl Into<String>,
    ) -> Self {
        Error::Masking {
            field: field.into(),
            method: method.to_string(),
            message: message.into(),
        }
    }
}

impl From<Error> for cdp_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Refused {
                stream,
                destination,
                message,
            } => cdp_core::Error::Policy {
                stream,
                destination,
                message,
            },
            Error::Arrow(e) => cdp_core::Error::Arrow(e),
            Error::Core(e) => e,
            Error::InvalidPolicy(message) => cdp_core::Error::Config(message),
            other => {
                let retryable = other.is_retryable();
                cdp_core::Error::External {
                    connector: "governance".into(),
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
    fn refusals_become_core_policy_errors() {
        let e: cdp_core::Error = Error::Refused {
            stream: "s".into(),
            destination: "d".into(),
            message: "m".into(),
        }
        .into();
        assert!(matches!(e, cdp_core::Error::Policy { .. }));
        assert!(!e.is_retryable());
    }

    #[test]
    fn erasure_errors_keep_their_retryability() {
        let e = Error::Erasure {
            target: "profiles".into(),
            source: "timeout".into(),
            retryable: true,
        };
        assert!(e.is_retryable());
        assert!(cdp_core::Error::from(e).is_retryable());
    }
}
