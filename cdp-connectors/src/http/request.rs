//! Sending one request with retries: the rate limit before it, credentials on it, backoff
//! honouring `Retry-After` and `X-RateLimit-Reset` after a 429 or 5xx, a new token once
//! after a 401, and an error that names the request (secrets redacted) and the response
//! (truncated) when retrying cannot help.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cdp_core::{Error, RateLimit, RateLimiter, Result, RetryPolicy, StateStore};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::auth::{AuthConfig, Authenticator};
use crate::config::ConfigErrors;

/// Bytes of a response body quoted in an error.
const QUOTED_BODY: usize = 512;

/// Query parameters whose values are redacted from every URL in errors and logs, besides
/// the one an API key is configured in.
const SECRET_PARAMS: [&str; 9] = [
    "api_key",
    "apikey",
    "key",
    "token",
    "access_token",
    "client_secret",
    "password",
    "secret",
    "signature",
];

/// What to do with a response of a given status (`on_status = { "404" = "ignore" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusAction {
    /// Try again after a backoff (the default for 408, 429 and 5xx).
    Retry,
    /// Treat it as an empty answer: a source reads no records from it and goes on; a
    /// destination counts the delivery as done.
    Ignore,
    /// Stop with an error naming the request and the response (the default for other 4xx).
    Fail,
    /// A source dead-letters the response (naming its URL) and goes on; a destination
    /// dead-letters the records of the request.
    DeadLetter,
}

/// The HTTP client settings every HTTP connector shares; their keys sit in the
/// connector's own table.
///
/// ```toml
/// [sources.billing]
/// type = "http"
/// base_url = "https://api.example.com/v1"
/// auth = { type = "api_key", key = { env = "BILLING_KEY" }, header = "X-Api-Key" }
/// headers = { "Api-Version" = "2024-06-01" }
/// timeout_secs = 30
/// connect_timeout_secs = 10
/// retry = { max_attempts = 6, initial_delay = 200, max_delay = 30000 }
/// rate_limit = { per_second = 20, burst = 20 }   # a budget kept before the API says no
/// on_status = { "404" = "ignore", "409" = "retry", "5xx" = "retry" }
///
/// [[sources.billing.streams]]
/// name = "invoices"
/// path = "/invoices"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// How requests are authenticated. Default none.
    #[serde(default, skip_serializing_if = "is_none_auth")]
    pub auth: AuthConfig,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Longest a request may take, response body included, in seconds. Default 30.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Longest connecting may take, in seconds. Default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Retries of timeouts, dropped connections, 429s and 5xx (delays in milliseconds).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// A request budget (token bucket) spent before each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// What to do per status code (`"404"`) or class (`"4xx"`), overriding the defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub on_status: BTreeMap<String, StatusAction>,
    /// A PEM file of certificates to trust instead of the system's (a private API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The `User-Agent` header. Default `cdp/<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

fn is_none_auth(auth: &AuthConfig) -> bool {
    *auth == AuthConfig::None
}

fn default_timeout() -> u64 {
    30
}

fn default_connect_timeout() -> u64 {
    10
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            auth: AuthConfig::None,
            headers: BTreeMap::new(),
            timeout_secs: default_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            retry: RetryPolicy::default(),
            rate_limit: None,
            on_status: BTreeMap::new(),
            ca_file: None,
            user_agent: None,
        }
    }
}

impl HttpOptions {
    /// Checks the values without side effects.
    pub(crate) fn check(&self, errors: &mut ConfigErrors) {
        self.auth.check(errors);
        if self.timeout_secs == 0 {
            errors.push("timeout_secs", "must be at least 1");
        }
        if self.connect_timeout_secs == 0 {
            errors.push("connect_timeout_secs", "must be at least 1");
        }
        if self.retry.max_attempts == 0 {
            errors.push("retry.max_attempts", "must be at least 1 (1: no retries)");
        }
        for key in self.on_status.keys() {
            if parse_status_key(key).is_none() {
                errors.push(
                    format!("on_status.{key}"),
                    "expected a status code (`404`) or a class (`4xx`)",
                );
            }
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(format!("headers.{name:?}"), "not a valid header name");
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                errors.push(format!("headers.{name:?}"), "not a valid header value");
            }
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            errors.push(
                "ca_file",
                "must name a PEM file; omit it for the system's roots",
            );
        }
    }
}

/// `404` → (404, 404); `4xx` → (400, 499).
fn parse_status_key(key: &str) -> Option<(u16, u16)> {
    if let Some(class) = key.strip_suffix("xx") {
        let class: u16 = class.parse().ok().filter(|c| (1..=5).contains(c))?;
        return Some((class * 100, class * 100 + 99));
    }
    let code: u16 = key.parse().ok().filter(|c| (100..=599).contains(c))?;
    Some((code, code))
}

/// A response read to its end.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// How a request ended, when it did not fail.
#[derive(Debug)]
pub(crate) enum Sent {
    /// A success (2xx), or a status configured `ignore` (`ignored` set).
    Reply { reply: Reply, ignored: bool },
    /// A status configured `dead_letter`; the message says which.
    DeadLetter { reply: Reply, reason: String },
}

/// One request to make (possibly several times).
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<(bytes::Bytes, &'static str)>,
    /// Signs the body anew at each attempt (header name, secret), so a retry long after
    /// the first try still carries a fresh timestamp.
    pub(crate) signature: Option<(String, super::Secret)>,
}

impl Request {
    pub(crate) fn get(url: Url) -> Self {
        Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
            signature: None,
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Sent),
    Unauthorized(Reply),
}

/// The HTTP client of one connector: one connection pool, one rate limit, one token.
#[derive(Debug)]
pub(crate) struct HttpClient {
    connector: String,
    options: HttpOptions,
    client: OnceLock<reqwest::Client>,
    auth: Authenticator,
    limiter: Option<RateLimiter>,
    /// When the server said its budget is spent (`X-RateLimit-Remaining: 0`), until when.
    paused_until: Mutex<Option<Instant>>,
    statuses: Vec<((u16, u16), StatusAction)>,
}

impl HttpClient {
    /// A client for `options`; builds its connection pool (and reads the trust store) on
    /// first use. `store` keeps rotated OAuth refresh tokens under the given id.
    pub(crate) fn new(
        connector: &str,
        options: HttpOptions,
        store: Option<(Arc<dyn StateStore>, String)>,
    ) -> Self {
        // Exact codes before classes.
        let mut statuses: Vec<((u16, u16), StatusAction)> = options
            .on_status
            .iter()
            .filter_map(|(key, action)| Some((parse_status_key(key)?, *action)))
            .collect();
        statuses.sort_by_key(|((lo, hi), _)| hi - lo);
        HttpClient {
            connector: connector.to_string(),
            auth: Authenticator::new(options.auth.clone(), connector, store),
            limiter: options.rate_limit.map(RateLimiter::new),
            client: OnceLock::new(),
            paused_until: Mutex::new(None),
            statuses,
            options,
        }
    }

    /// The reqwest client, built on first use.
    pub(crate) fn client(&self) -> Result<&reqwest::Client> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = build_client(&self.connector, &self.options)?;
        Ok(self.client.get_or_init(|| client))
    }

    /// `url` as errors and logs show it: secret query values and passwords replaced.
    pub(crate) fn redact(&self, url: &Url) -> String {
        redact(url, self.options.auth.secret_query())
    }

    /// Sends `request` until it succeeds, fails for good, or runs out of attempts.
    pub(crate) async fn send(&self, request: &Request) -> Result<Sent> {
        // Named only when something goes wrong: most requests succeed at once.
        let what = std::sync::OnceLock::new();
        let what =
            || what.get_or_init(|| format!("{} {}", request.method, self.redact(&request.url)));
        let mut attempts = None;
        let mut refreshed = false;
        loop {
            match self.attempt(request).await {
                Ok(Attempt::Done(sent)) => return Ok(sent),
                Ok(Attempt::Unauthorized(reply)) if self.auth.refreshes() && !refreshed => {
                    // The token may have been revoked early: fetch a new one, once.
                    refreshed = true;
                    self.auth.invalidate().await;
                    tracing::debug!(request = %what(), "401: fetching a new access token");
                    let _ = reply;
                }
                Ok(Attempt::Unauthorized(reply)) => {
                    return Err(Error::external(
                        self.connector.as_str(),
                        self.describe(request, &reply),
                    ));
                }
                Err(error) => {
                    attempts
                        .get_or_insert_with(|| self.options.retry.start(what()))
                        .backoff(error)
                        .await?
                }
            }
        }
    }

    async fn attempt(&self, request: &Request) -> Result<Attempt> {
        let pause = self
            .paused_until
            .lock()
            .ok()
            .and_then(|mut p| p.take())
            .and_then(|until| until.checked_duration_since(Instant::now()));
        if let Some(pause) = pause {
            tracing::debug!(connector = %self.connector, ?pause, "the API's budget is spent; waiting for its reset");
            tokio::time::sleep(pause).await;
        }
        if let Some(limiter) = &self.limiter {
            limiter.acquire().await;
        }
        let client = self.client()?;
        let mut builder = client.request(request.method.clone(), request.url.clone());
        for (name, value) in &self.options.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some((body, content_type)) = &request.body {
            if let Some((header, secret)) = &request.signature {
                let now = chrono::Utc::now().timestamp();
                let signature = super::signature::sign(secret.expose().as_bytes(), now, &body[..]);
                builder = builder.header(header.as_str(), signature);
            }
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        let builder = self.auth.apply(client, builder).await?;
        let redacted = || self.redact(&request.url);
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error(&self.connector, &request.method, &redacted(), e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(&self.connector, &request.method, &redacted(), e))?;
        let reply = Reply {
            status,
            headers,
            body: body.into(),
        };
        self.note_budget(&reply.headers);
        if status == StatusCode::UNAUTHORIZED && !self.configured(status) {
            return Ok(Attempt::Unauthorized(reply));
        }
        match self.action(status) {
            None => Ok(Attempt::Done(Sent::Reply {
                reply,
                ignored: false,
            })),
            Some(StatusAction::Ignore) => Ok(Attempt::Done(Sent::Reply {
                reply,
                ignored: true,
            })),
            Some(StatusAction::DeadLetter) => {
                let reason = self.describe(request, &reply);
                Ok(Attempt::Done(Sent::DeadLetter { reply, reason }))
            }
            Some(StatusAction::Retry) => {
                let message = self.describe(request, &reply);
                Err(match retry_after(&reply.headers) {
                    Some(delay) => Error::throttled(self.connector.as_str(), message, delay),
                    None => Error::transient(self.connector.as_str(), message),
                })
            }
            Some(StatusAction::Fail) => Err(Error::external(
                self.connector.as_str(),
                self.describe(request, &reply),
            )),
        }
    }

    fn configured(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.statuses
            .iter()
            .any(|((lo, hi), _)| (*lo..=*hi).contains(&code))
    }

    /// The action for `status`; `None` for a success.
    fn action(&self, status: StatusCode) -> Option<StatusAction> {
        let code = status.as_u16();
        if let Some((_, action)) = self
            .statuses
            .iter()
            .find(|((lo, hi), _)| (*lo..=*hi).contains(&code))
        {
            return match (action, status.is_success()) {
                (StatusAction::Ignore, true) => None,
                (action, _) => Some(*action),
            };
        }
        if status.is_success() {
            None
        } else if code == 408 || code == 429 || status.is_server_error() {
            Some(StatusAction::Retry)
        } else {
            Some(StatusAction::Fail)
        }
    }

    /// Remembers a spent budget the server announced, to wait for its reset.
    fn note_budget(&self, headers: &HeaderMap) {
        let remaining = header_number(headers, "x-ratelimit-remaining");
        if remaining == Some(0)
            && let Some(delay) = rate_limit_reset(headers)
            && let Ok(mut paused) = self.paused_until.lock()
        {
            *paused = Some(Instant::now() + delay);
        }
    }

    /// `GET https://…?api_key=REDACTED returned 400 Bad Request: {"error":…}`.
    pub(crate) fn describe(&self, request: &Request, reply: &Reply) -> String {
        format!(
            "{} {} returned {}: {}",
            request.method,
            self.redact(&request.url),
            reply.status,
            truncate(&reply.body)
        )
    }
}

/// A request that got no complete response (timeout, refused or dropped connection, a
/// body cut short) is worth another try; a request reqwest could not even build is not.
fn transport_error(connector: &str, method: &Method, url: &str, error: reqwest::Error) -> Error {
    let retryable = error.is_timeout()
        || error.is_connect()
        || error.is_request()
        || error.is_body()
        || error.is_decode();
    let cause = std::error::Error::source(&error)
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    let builder = error.is_builder();
    let message = format!("{method} {url}: {}{cause}", error.without_url());
    if retryable && !builder {
        Error::transient(connector, message)
    } else {
        Error::external(connector, message)
    }
}

fn build_client(connector: &str, options: &HttpOptions) -> Result<reqwest::Client> {
    let tls = tls_config(connector, options)?;
    let user_agent = options
        .user_agent
        .clone()
        .unwrap_or_else(|| format!("cdp/{}", env!("CARGO_PKG_VERSION")));
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(options.timeout_secs))
        .connect_timeout(Duration::from_secs(options.connect_timeout_secs))
        .user_agent(user_agent)
        .build()
        .map_err(|e| Error::Config(format!("{connector}: cannot build the HTTP client: {e}")))
}

/// rustls on `ring` with the system's roots or `ca_file`: no OpenSSL, and no process-wide
/// crypto provider installed behind the host's back.
fn tls_config(connector: &str, options: &HttpOptions) -> Result<rustls::ClientConfig> {
    let tls_error = |what: &str, e: &dyn std::fmt::Display| {
        Error::Config(format!("{connector}: TLS: {what}: {e}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_error(&format!("ca_file {}", path.display()), &e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| tls_error(&format!("ca_file {}", path.display()), &e))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::Config(format!(
                    "{connector}: TLS: ca_file {} holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(connector, error = %e, "skipped part of the system trust store");
            }
            // An empty store still serves plain-HTTP endpoints; an HTTPS one fails with
            // an unknown-issuer error that says what is missing.
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", &e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `url` with secret query values and any password replaced by `REDACTED`.
pub(crate) fn redact(url: &Url, secret_param: Option<&str>) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("REDACTED"));
    }
    let secret = |name: &str| {
        Some(name) == secret_param || SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
    };
    if url.query_pairs().any(|(name, _)| secret(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if secret(&name) {
                    "REDACTED".to_string()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// At most [`QUOTED_BODY`] bytes of a body, as text, for an error.
pub(crate) fn truncate(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty body)".into();
    }
    let mut end = body.len().min(QUOTED_BODY);
    while end < body.len() && end > 0 && std::str::from_utf8(&body[..end]).is_err() {
        end -= 1;
    }
    let text = String::from_utf8_lossy(&body[..end]);
    if end < body.len() {
        format!("{text}… ({} bytes in all)", body.len())
    } else {
        text.into_owned()
    }
}

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// How long the server asked to wait: `Retry-After` (seconds or an HTTP date), else
/// `X-RateLimit-Reset` / `RateLimit-Reset`.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(value) = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<f64>()
            && seconds.is_finite()
            && seconds >= 0.0
        {
            return Some(Duration::from_secs_f64(seconds));
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value) {
            let wait = at.signed_duration_since(chrono::Utc::now());
            return Some(wait.to_std().unwrap_or(Duration::ZERO));
        }
    }
    rate_limit_reset(headers)
}

/// `X-RateLimit-Reset`: epoch seconds when large, else seconds to wait.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset = header_number(headers, "x-ratelimit-reset")
        .or_else(|| header_number(headers, "ratelimit-reset"))?;
    // Beyond a billion it is a Unix time (2001 onwards), not a delay.
    if reset > 1_000_000_000 {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        Some(Duration::from_secs(reset.saturating_sub(now)))
    } else {
        Some(Duration::from_secs(reset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_from_urls() {
        let url = Url::parse("https://u:pw@api.example.com/x?api_key=abc&limit=5&sig=1").unwrap();
        let shown = redact(&url, Some("sig"));
        assert!(!shown.contains("abc") && !shown.contains("pw"), "{shown}");
        assert!(shown.contains("limit=5"), "{shown}");
    }

    #[test]
    fn waits_come_from_retry_after_or_the_reset() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        let mut headers = HeaderMap::new();
        let reset = chrono::Utc::now().timestamp() + 5;
        headers.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait <= Duration::from_secs(5) && wait >= Duration::from_secs(3));
        headers.insert("x-ratelimit-reset", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
    }

    #[test]
    fn status_keys_are_codes_or_classes() {
        assert_eq!(parse_status_key("404"), Some((404, 404)));
        assert_eq!(parse_status_key("5xx"), Some((500, 599)));
        assert_eq!(parse_status_key("7xx"), None);
        assert_eq!(parse_status_key("abc"), None);
    }

    #[test]
    fn bodies_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = truncate(long.as_bytes());
        assert!(cut.ends_with("(800 bytes in all)"), "{cut}");
        assert_eq!(truncate(b""), "(empty body)");
    }
}
