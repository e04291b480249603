//! The error type of `cdp-core`, shared by connectors through [`Error::External`].

use std::time::Duration;

/// A boxed error from a connector or another crate, kept as the cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used across `cdp-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the record model, the runtime or a connector.
///
/// Every variant answers [`Error::is_retryable`]: the runtime retries retryable errors through
/// its [`RetryPolicy`](crate::retry::RetryPolicy) and stops the run on the others, keeping
/// the last committed checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An Arrow kernel or conversion failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// A file or socket operation failed.
    #[error("i/o on {context}: {source}")]
    Io {
        /// What was being read or written (usually a path).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// JSON (state, config, payload) could not be encoded or decoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// A configuration value is missing or invalid; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A batch does not have the shape an operation needs (missing column, wrong type).
    #[error("schema mismatch in stream `{stream}`: {message}")]
    Schema {
        /// The stream whose batch was rejected.
        stream: String,
        /// What was expected and what was found.
        message: String,
    },

    /// The state store could not load or commit a checkpoint.
    #[error("state store: {0}")]
    State(String),

    /// A committed cursor is not one the source can resume from (another source's state,
    /// a hand-edited state file, a format from another version).
    #[error("cursor of stream `{stream}`: {message}")]
    Cursor {
        /// The stream whose cursor was refused.
        stream: String,
        /// What was expected and what was found.
        message: String,
    },

    /// A pipeline component's task ended without reporting an error of its own: it
    /// panicked, or stopped while the pipeline still needed it.
    #[error("{component} {}", crash_reason(.panic.as_deref()))]
    Crashed {
        /// The component (`destination <name>`).
        component: String,
        /// The panic message, when it panicked.
        panic: Option<String>,
    },

    /// The dead-letter destination refused dead letters; nothing was committed, since
    /// committing would lose them.
    #[error(
        "the dead-letter destination `{destination}` refused {count} dead letters; nothing was committed"
    )]
    DeadLettersRefused {
        /// The dead-letter destination.
        destination: String,
        /// How many it refused.
        count: usize,
    },

    /// A connector or plug-in failed; `retryable` is its own judgement.
    #[error("{connector}: {source}")]
    External {
        /// The connector (or component) name.
        connector: String,
        /// The underlying error.
        #[source]
        source: BoxError,
        /// Whether trying again may succeed.
        retryable: bool,
        /// How long the remote side asked us to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },

    /// A pipeline stage failed fatally; the run stopped with the last committed state intact.
    #[error("pipeline `{pipeline}` stopped in {stage}: {source}")]
    Pipeline {
        /// The pipeline id.
        pipeline: String,
        /// The stage that failed.
        stage: Stage,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },

    /// A flow check (governance policy, contract) refused to let a stream's fields reach a
    /// destination; nothing of that stream was sent there.
    #[error("flow of stream `{stream}` to destination `{destination}` refused: {message}")]
    Policy {
        /// The stream.
        stream: String,
        /// The destination.
        destination: String,
        /// Which field, which rule, and why.
        message: String,
    },

    /// Another run of the same pipeline holds its lease (see
    /// [`Lease`](crate::checkpoint::Lease)): a second run at the same time would read the
    /// same input again and write it twice, or corrupt what the first one stages. Nothing
    /// was read or written.
    #[error(
        "pipeline `{pipeline}` is already running ({holder}){}; not starting a second run of it, which would duplicate or corrupt its output: wait for that run to end, or let this one wait for it (`lease_wait`)",
        waited_for(*.waited)
    )]
    Leased {
        /// The pipeline id.
        pipeline: String,
        /// Who holds the lease, as far as the store can tell (process id, host, since when).
        holder: String,
        /// How long this run waited for the lease.
        waited: Duration,
    },

    /// The run was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,
}

fn waited_for(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(" and did not end within {waited:?}")
    }
}

fn crash_reason(panic: Option<&str>) -> String {
    match panic {
        Some(message) => format!("panicked: {message}"),
        None => "stopped unexpectedly".to_string(),
    }
}

/// Where in a pipeline run an [`Error::Pipeline`] happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Loading or committing the pipeline's state.
    StateStore,
    /// Discovering or reading the source.
    Source,
    /// A pipeline transform, by name.
    Transform(String),
    /// Identity resolution (resolving a batch or flushing the identity state).
    Identity,
    /// Stamping the system columns.
    Stamp,
    /// Coalescing micro-batches.
    MicroBatch,
    /// A flow check (policy, contract) on a stream's way to a destination.
    FlowCheck,
    /// A destination (prepare, write, flush), by name.
    Destination(String),
    /// A destination's own transforms, by destination name.
    DestinationTransforms(String),
    /// Publishing a committed epoch at a destination, by name.
    DestinationCommit(String),
    /// Closing the destinations at the end of the run.
    DestinationClose,
    /// Turning dead letters into a batch.
    DeadLetters,
    /// The dead-letter destination, by name.
    DeadLetterDestination(String),
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::StateStore => f.write_str("state store"),
            Stage::Source => f.write_str("source"),
            Stage::Transform(name) => write!(f, "transform {name}"),
            Stage::Identity => f.write_str("identity"),
            Stage::Stamp => f.write_str("stamp"),
            Stage::MicroBatch => f.write_str("micro-batch"),
            Stage::FlowCheck => f.write_str("flow check"),
            Stage::Destination(name) => write!(f, "destination {name}"),
            Stage::DestinationTransforms(name) => write!(f, "destination {name} transforms"),
            Stage::DestinationCommit(name) => write!(f, "destination {name} commit"),
            Stage::DestinationClose => f.write_str("destination close"),
            Stage::DeadLetters => f.write_str("dead letters"),
            Stage::DeadLetterDestination(name) => write!(f, "dead-letter destination {name}"),
        }
    }
}

impl Error {
    /// The stage a pipeline run stopped in, if this is an [`Error::Pipeline`].
    pub fn stage(&self) -> Option<&Stage> {
        match self {
            Error::Pipeline { stage, .. } => Some(stage),
            _ => None,
        }
    }

    /// Wraps a connector error that is not worth retrying (bad credentials, bad request).
    pub fn external(connector: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::External {
            connector: connector.into(),
            source: source.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// Wraps a transient connector error (timeout, connection reset, 429, 503).
    pub fn transient(connector: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::External {
            connector: connector.into(),
            source: source.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// Wraps a transient error whose remote side asked for a pause (`Retry-After`).
    pub fn throttled(
        connector: impl Into<String>,
        source: impl Into<BoxError>,
        retry_after: Duration,
    ) -> Self {
        Error::External {
            connector: connector.into(),
            source: source.into(),
            retryable: true,
            retry_after: Some(retry_after),
        }
    }

    /// An I/O error with the path or endpoint it concerned.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::External { retryable, .. } => *retryable,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::BrokenPipe
            ),
            Error::Pipeline { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// The pause the remote side asked for before the next attempt, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::External { retry_after, .. } => *retry_after,
            Error::Pipeline { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}
