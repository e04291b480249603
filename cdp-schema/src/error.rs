//! The error type of `cdp-schema`.

/// Result alias used across `cdp-schema`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the registry, the checks and the schema transforms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An Arrow kernel or conversion failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// JSON (a contract, a policy, a sample) could not be encoded or decoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// The SQLite registry failed.
    #[cfg(feature = "sqlite")]
    #[error("sqlite registry: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// An error from `cdp-core` (the record model or the runtime).
    #[error(transparent)]
    Core(#[from] cdp_core::Error),

    /// A schema was refused because it breaks the subject's compatibility mode.
    #[error("schema for subject `{subject}` is not {mode} compatible: {}", reasons.join("; "))]
    Incompatible {
        /// The subject.
        subject: String,
        /// The mode it was checked against.
        mode: String,
        /// Each violation, with the version and field it concerns.
        reasons: Vec<String>,
    },

    /// No schema with that subject and version (or fingerprint) is registered.
    #[error("no schema registered for {0}")]
    NotFound(String),

    /// Someone else registered a version of the subject at the same moment; trying again
    /// re-reads the history and succeeds unless the schemas conflict.
    #[error("concurrent registration on subject `{subject}` (version {version} was taken)")]
    Conflict {
        /// The subject.
        subject: String,
        /// The version both registrations wanted.
        version: u32,
    },

    /// A schema guard blocked a stream because of a breaking change; nothing of the
    /// offending batch was passed on.
    #[error("stream `{stream}` blocked by breaking schema change: {message}")]
    Blocked {
        /// The stream.
        stream: String,
        /// The changes (field, kind, severity) and the consumers they break.
        message: String,
    },

    /// A tracking plan or contract refused a batch as a whole.
    #[error("stream `{stream}` violates its {rule}: {message}")]
    Violation {
        /// The stream.
        stream: String,
        /// `contract` or `tracking plan`.
        rule: String,
        /// What was violated, how often.
        message: String,
    },

    /// A configuration value (policy, mapping, plan) is invalid; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A lock guarding in-memory state was poisoned by a panic elsewhere.
    #[error("internal state of {0} is poisoned by an earlier panic")]
    Poisoned(&'static str),
}

impl Error {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Conflict { .. } => true,
            Error::Core(e) => e.is_retryable(),
            #[cfg(feature = "sqlite")]
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

impl From<Error> for cdp_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Core(e) => e,
            Error::Arrow(e) => cdp_core::Error::Arrow(e),
            Error::Json(e) => cdp_core::Error::Json(e),
            Error::Config(message) => cdp_core::Error::Config(message),
            Error::Blocked { stream, message } => cdp_core::Error::Schema {
                stream,
                message: format!("blocked by breaking schema change: {message}"),
            },
            Error::Violation {
                stream,
                rule,
                message,
            } => cdp_core::Error::Schema {
                stream,
                message: format!("violates its {rule}: {message}"),
            },
            other => {
                let retryable = other.is_retryable();
                cdp_core::Error::External {
                    connector: "cdp-schema".into(),
                    source: Box::new(other),
                    retryable,
                    retry_after: None,
                }
            }
        }
    }
}

/// Locks a mutex, turning poisoning into [`Error::Poisoned`].
pub(crate) fn lock<'a, T>(
    mutex: &'a std::sync::Mutex<T>,
    what: &'static str,
) -> Result<std::sync::MutexGuard<'a, T>> {
    mutex.lock().map_err(|_| Error::Poisoned(what))
}
