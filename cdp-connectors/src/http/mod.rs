//! What the HTTP connectors share (feature `http`): the client settings
//! ([`HttpOptions`]), authentication ([`AuthConfig`]), secrets read from the environment or
//! a file ([`SecretSource`], [`Secret`]), and what to do per response status
//! ([`StatusAction`]), and the webhook signature scheme ([`signature`]).
//!
//! Requests go through reqwest on rustls with the `ring` provider, built for each
//! connector (no process-wide provider is installed, no OpenSSL is linked). Each is sent
//! after the connector's request budget allows it ([`HttpOptions::rate_limit`], a token
//! bucket), retried with exponential backoff and jitter on timeouts, dropped connections,
//! 408, 429 and 5xx, waiting at least what `Retry-After` or `X-RateLimit-Reset` asked for;
//! a server that announces its budget is spent (`X-RateLimit-Remaining: 0`) is left alone
//! until its reset. A 4xx that retrying cannot fix fails with the request (secret query
//! parameters and passwords redacted) and the start of the response body in the error.
//! Secrets never appear in an error, a log line or a `Debug` output.

pub mod auth;
pub(crate) mod request;
pub mod secret;
pub mod signature;

pub use auth::AuthConfig;
pub use request::{HttpOptions, StatusAction};
pub use secret::{Secret, SecretSource};
