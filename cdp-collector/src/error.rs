//! Why a request was refused, as the HTTP answer a client gets.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A refused request: nothing of it was logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is not JSON, or not a JSON object.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body, or one event in it, is over a limit.
    #[error("{what} is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// What was too large (`the request body`, `event 3`).
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch holds more events than allowed.
    #[error("the batch holds {count} events; the limit is {limit}")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An event breaks the tracking API's rules.
    #[error("{}{message}", index.map(|i| format!("event {i}: ")).unwrap_or_default())]
    Invalid {
        /// The event's position in the batch.
        index: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// No write key, or not one this collector accepts.
    #[error("{0}")]
    Unauthorized(String),
    /// The endpoint does not exist.
    #[error(
        "no endpoint `{0}`; use /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias or /v1/batch"
    )]
    NotFound(String),
    /// The log is backed up: try again after the delay.
    #[error("the collector is backed up; retry after {} s", .0.as_secs())]
    Busy(Duration),
    /// The log could not be written; nothing was acknowledged.
    #[error("the event log could not be written: {0}")]
    Unavailable(String),
}

impl Rejection {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::MalformedJson(_)
            | Rejection::TooLarge { .. }
            | Rejection::TooManyEvents { .. }
            | Rejection::Invalid { .. } => StatusCode::BAD_REQUEST,
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::NotFound(_) => StatusCode::NOT_FOUND,
            Rejection::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Rejection::MalformedJson(_) => "malformed_json",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::TooManyEvents { .. } => "too_many_events",
            Rejection::Invalid { .. } => "invalid_event",
            Rejection::Unauthorized(_) => "unauthorized",
            Rejection::NotFound(_) => "not_found",
            Rejection::Busy(_) => "busy",
            Rejection::Unavailable(_) => "unavailable",
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "success": false,
            "code": self.code(),
            "message": self.to_string(),
        });
        let mut response = (self.status(), body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Rejection::Busy(after) = &self
            && let Ok(value) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        response
    }
}
