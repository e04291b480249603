//! Configuration of the webhook destination.

use cdp_core::{Destination, Result};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::WebhookDestination;
use crate::config::{BuildDestination, ConfigErrors, from_table_parts};
use crate::http::{HttpOptions, SecretSource};

/// POSTs records to a URL as JSON, signed: the destination's own keys
/// ([`WebhookOptions`]) and the client keys every HTTP connector shares ([`HttpOptions`]).
///
/// ```toml
/// [destinations.crm_hook]
/// type = "webhook"
/// url = "https://hooks.example.com/cdp"
/// format = "json_array"          # or "json" (one record per request), "ndjson"
/// batch_size = 100               # records per request (json_array, ndjson)
/// signing = { secret = { env = "CRM_HOOK_SECRET" } }
/// rejected = "/rejected"         # where the receiver lists records it refused
/// rate_limit = { per_second = 50, burst = 50 }
/// retry = { max_attempts = 8, initial_delay = 500, max_delay = 60000 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDestinationConfig {
    /// The destination's own keys.
    #[serde(flatten)]
    pub webhook: WebhookOptions,
    /// The client keys every HTTP connector shares.
    #[serde(flatten)]
    pub http: HttpOptions,
}

/// How records travel in a request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// One record per request, a JSON object.
    Json,
    /// `batch_size` records per request, a JSON array.
    #[default]
    JsonArray,
    /// `batch_size` records per request, one JSON object per line.
    Ndjson,
}

/// Request signing: `signing = { secret = { env = "…" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// The shared secret.
    pub secret: SecretSource,
    /// The header the signature goes in. Default `Cdp-Signature`.
    #[serde(default = "default_signature_header")]
    pub header: String,
}

fn default_signature_header() -> String {
    "Cdp-Signature".into()
}

/// The webhook destination's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookOptions {
    /// Where records are POSTed.
    pub url: String,
    /// Instance name. Default `webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How records travel. Default `json_array`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Records per request with `json_array` and `ndjson`. Default 100.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Wrap each record as `{"id": <idempotency key>, "stream", "op", "data": <record>}`
    /// (default), or send the record's columns alone.
    #[serde(default = "default_true")]
    pub envelope: bool,
    /// Signs every request with HMAC-SHA-256 over its timestamp and body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningConfig>,
    /// The header carrying the idempotency key: the record's (from its record hash), or
    /// for a request of several, one derived from theirs. Default `Idempotency-Key`.
    #[serde(default = "default_idempotency_header")]
    pub idempotency_header: String,
    /// A JSON pointer into a response where the receiver lists the records it refused,
    /// as `[{"id": "<idempotency key>", "reason": "…"}]` (or `"index"`: a position in the
    /// request); they go to the dead letters and the others count as delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Requests in flight at once. Default 1, which keeps the order of records; more
    /// deliver faster but may reorder two versions of one record.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Records held before they are sent without waiting for the next flush. Default
    /// 10000.
    #[serde(default = "default_buffer_rows")]
    pub buffer_rows: usize,
}

fn default_batch_size() -> usize {
    100
}

fn default_true() -> bool {
    true
}

fn default_idempotency_header() -> String {
    "Idempotency-Key".into()
}

fn default_concurrency() -> usize {
    1
}

fn default_buffer_rows() -> usize {
    10_000
}

impl WebhookOptions {
    /// Options posting to `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookOptions {
            url: url.into(),
            name: None,
            format: WebhookFormat::default(),
            batch_size: default_batch_size(),
            envelope: true,
            signing: None,
            idempotency_header: default_idempotency_header(),
            rejected: None,
            concurrency: default_concurrency(),
            buffer_rows: default_buffer_rows(),
        }
    }
}

impl WebhookDestinationConfig {
    /// A config posting to `url`, with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookDestinationConfig {
            webhook: WebhookOptions::new(url),
            http: HttpOptions::default(),
        }
    }

    /// Reads one destination table; errors name key paths relative to it.
    pub fn from_table(table: &Value) -> Result<Self, ConfigErrors> {
        let (webhook, http) = from_table_parts::<WebhookOptions, HttpOptions>(table)?;
        Ok(WebhookDestinationConfig { webhook, http })
    }

    /// Checks the values without side effects.
    pub(crate) fn check(&self) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        self.http.check(&mut errors);
        let w = &self.webhook;
        match reqwest::Url::parse(&w.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => errors.push("url", format!("`{}` is not an absolute http(s) URL", w.url)),
        }
        if w.name.as_deref() == Some("") {
            errors.push("name", "must not be empty; omit it for the default");
        }
        for (key, value) in [
            ("batch_size", w.batch_size),
            ("concurrency", w.concurrency),
            ("buffer_rows", w.buffer_rows),
        ] {
            if value == 0 {
                errors.push(key, "must be at least 1");
            }
        }
        if let Some(signing) = &w.signing {
            if let Some(problem) = signing.secret.problem() {
                errors.push("signing.secret", problem);
            }
            if reqwest::header::HeaderName::from_bytes(signing.header.as_bytes()).is_err() {
                errors.push("signing.header", "not a valid header name");
            }
        }
        if reqwest::header::HeaderName::from_bytes(w.idempotency_header.as_bytes()).is_err() {
            errors.push("idempotency_header", "not a valid header name");
        }
        if let Some(rejected) = &w.rejected
            && !rejected.is_empty()
            && !rejected.starts_with('/')
        {
            errors.push(
                "rejected",
                format!("`{rejected}` is not a JSON pointer: write `/{rejected}`"),
            );
        }
        errors.into_result()
    }

    /// Validates, then builds the destination (connecting to nothing).
    pub fn build_destination(&self) -> Result<WebhookDestination> {
        self.check()?;
        Ok(WebhookDestination::from_config(self.clone()))
    }
}

impl BuildDestination for WebhookDestinationConfig {
    fn validate(&self) -> Result<(), ConfigErrors> {
        self.check()
    }

    fn build(&self) -> Result<Box<dyn Destination>> {
        Ok(Box::new(self.build_destination()?))
    }
}

impl<'de> Deserialize<'de> for WebhookDestinationConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = Value::deserialize(deserializer)?;
        WebhookDestinationConfig::from_table(&table).map_err(serde::de::Error::custom)
    }
}
