//! Authentication of HTTP requests: API keys, bearer tokens, basic auth and OAuth2 (client
//! credentials, refresh token), with tokens refreshed before they expire and once on a 401.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cdp_core::{Error, Result, StateStore};
use serde::{Deserialize, Serialize};

use super::secret::{Secret, SecretSource};
use crate::config::ConfigErrors;

/// How requests are authenticated (`auth = { type = "…", … }`).
///
/// ```toml
/// [sources.crm]
/// type = "http"
/// base_url = "https://api.example.com"
///
/// [sources.crm.auth]
/// type = "oauth2_refresh_token"
/// token_url = "https://api.example.com/oauth/v1/token"
/// client_id = "my-app"
/// client_secret = { env = "CRM_CLIENT_SECRET" }
/// refresh_token = { file = "/run/secrets/crm-refresh-token" }
///
/// [[sources.crm.streams]]
/// name = "contacts"
/// path = "/crm/v3/objects/contacts"
/// records = "/results"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No credentials.
    #[default]
    None,
    /// An API key in a header (`header = "X-Api-Key"`) or a query parameter
    /// (`query = "api_key"`), exactly one of them.
    ApiKey {
        /// The key.
        key: SecretSource,
        /// The header it goes in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// The query parameter it goes in (redacted from every error and log line).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: SecretSource,
    },
    /// `Authorization: Basic …`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: SecretSource,
    },
    /// OAuth2 client credentials: an access token from `token_url`, fetched again before
    /// it expires.
    Oauth2ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: SecretSource,
        /// Scopes asked for, space-separated on the wire.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scopes: Vec<String>,
    },
    /// OAuth2 refresh token: access tokens from `token_url` in exchange for a refresh
    /// token. When the server rotates the refresh token, the new one is persisted through
    /// the source's state store (see `HttpSource::with_state_store`) before it is used, so
    /// a restart starts from the newest one rather than one the server has revoked.
    Oauth2RefreshToken {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret, for confidential clients.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<SecretSource>,
        /// The refresh token to start from (a newer persisted one wins).
        refresh_token: SecretSource,
    },
}

impl AuthConfig {
    /// Checks the values without reading any secret.
    pub(crate) fn check(&self, errors: &mut ConfigErrors) {
        let mut secret = |key: &str, source: &SecretSource| {
            if let Some(problem) = source.problem() {
                errors.push(format!("auth.{key}"), problem);
            }
        };
        match self {
            AuthConfig::None => {}
            AuthConfig::ApiKey { key, header, query } => {
                secret("key", key);
                match (header, query) {
                    (Some(_), Some(_)) | (None, None) => errors.push(
                        "auth",
                        "an api_key goes in a `header` or a `query` parameter: give exactly one",
                    ),
                    (Some(name), None) | (None, Some(name)) if name.trim().is_empty() => {
                        errors.push("auth", "the header or query parameter name is empty")
                    }
                    _ => {}
                }
            }
            AuthConfig::Bearer { token } => secret("token", token),
            AuthConfig::Basic { password, .. } => secret("password", password),
            AuthConfig::Oauth2ClientCredentials {
                token_url,
                client_secret,
                ..
            } => {
                secret("client_secret", client_secret);
                url_problem(token_url, errors);
            }
            AuthConfig::Oauth2RefreshToken {
                token_url,
                client_secret,
                refresh_token,
                ..
            } => {
                if let Some(client_secret) = client_secret {
                    secret("client_secret", client_secret);
                }
                secret("refresh_token", refresh_token);
                url_problem(token_url, errors);
            }
        }
    }

    /// The query parameter that carries a secret, to redact from URLs.
    pub(crate) fn secret_query(&self) -> Option<&str> {
        match self {
            AuthConfig::ApiKey {
                query: Some(name), ..
            } => Some(name),
            _ => None,
        }
    }
}

fn url_problem(url: &str, errors: &mut ConfigErrors) {
    if reqwest::Url::parse(url).is_err() {
        errors.push("auth.token_url", format!("`{url}` is not an absolute URL"));
    }
}

/// Tokens are refreshed at most this long before they expire (and at most a quarter of
/// their lifetime early), so none expires in flight.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);

/// The access token in use and when to fetch the next one.
#[derive(Debug)]
struct Token {
    access: Secret,
    refresh_at: Option<Instant>,
}

/// What the OAuth flows keep between requests.
#[derive(Debug, Default)]
struct OAuthState {
    token: Option<Token>,
    /// The refresh token in use (the configured one, a persisted one, or a rotated one).
    refresh: Option<Secret>,
    /// Whether the state store was asked for a newer refresh token yet.
    loaded: bool,
}

/// Applies credentials to requests; shared by the requests of one connector.
#[derive(Debug)]
pub(crate) struct Authenticator {
    config: AuthConfig,
    connector: String,
    store: Option<(Arc<dyn StateStore>, String)>,
    oauth: tokio::sync::Mutex<OAuthState>,
}

/// The state-store entry a rotated refresh token is kept under.
const REFRESH_TOKEN_KEY: &str = "refresh_token";

impl Authenticator {
    /// `store`: where rotated refresh tokens are persisted, and under which id.
    pub(crate) fn new(
        config: AuthConfig,
        connector: &str,
        store: Option<(Arc<dyn StateStore>, String)>,
    ) -> Self {
        Authenticator {
            config,
            connector: connector.to_string(),
            store,
            oauth: tokio::sync::Mutex::new(OAuthState::default()),
        }
    }

    /// Whether a 401 may be cured by fetching a new token.
    pub(crate) fn refreshes(&self) -> bool {
        matches!(
            self.config,
            AuthConfig::Oauth2ClientCredentials { .. } | AuthConfig::Oauth2RefreshToken { .. }
        )
    }

    /// Adds the credentials to `request`.
    pub(crate) async fn apply(
        &self,
        client: &reqwest::Client,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder> {
        let connector = self.connector.as_str();
        Ok(match &self.config {
            AuthConfig::None => request,
            AuthConfig::ApiKey { key, header, query } => {
                let key = key.resolve(connector, "auth.key")?;
                match (header, query) {
                    (Some(header), _) => request.header(header.as_str(), key.expose()),
                    (None, Some(query)) => request.query(&[(query.as_str(), key.expose())]),
                    (None, None) => request,
                }
            }
            AuthConfig::Bearer { token } => {
                request.bearer_auth(token.resolve(connector, "auth.token")?.expose())
            }
            AuthConfig::Basic { username, password } => request.basic_auth(
                username,
                Some(password.resolve(connector, "auth.password")?.expose()),
            ),
            AuthConfig::Oauth2ClientCredentials { .. } | AuthConfig::Oauth2RefreshToken { .. } => {
                let token = self.access_token(client).await?;
                request.bearer_auth(token.expose())
            }
        })
    }

    /// Forgets the access token after a 401, so the next request fetches a new one.
    pub(crate) async fn invalidate(&self) {
        self.oauth.lock().await.token = None;
    }

    /// A valid access token: the one held, or a new one when it is missing or about to
    /// expire.
    async fn access_token(&self, client: &reqwest::Client) -> Result<Secret> {
        let mut state = self.oauth.lock().await;
        if let Some(token) = &state.token
            && token.refresh_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(token.access.clone());
        }
        let connector = self.connector.as_str();
        let mut form: Vec<(&str, String)> = Vec::new();
        let token_url = match &self.config {
            AuthConfig::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scopes,
            } => {
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_id", client_id.clone()));
                let secret = client_secret.resolve(connector, "auth.client_secret")?;
                form.push(("client_secret", secret.expose().to_string()));
                if !scopes.is_empty() {
                    form.push(("scope", scopes.join(" ")));
                }
                token_url
            }
            AuthConfig::Oauth2RefreshToken {
                token_url,
                client_id,
                client_secret,
                refresh_token,
            } => {
                if !state.loaded {
                    state.refresh = Some(match self.persisted_refresh_token().await? {
                        Some(newer) => newer,
                        None => refresh_token.resolve(connector, "auth.refresh_token")?,
                    });
                    state.loaded = true;
                }
                let refresh = match &state.refresh {
                    Some(refresh) => refresh.clone(),
                    None => refresh_token.resolve(connector, "auth.refresh_token")?,
                };
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", refresh.expose().to_string()));
                form.push(("client_id", client_id.clone()));
                if let Some(secret) = client_secret {
                    let secret = secret.resolve(connector, "auth.client_secret")?;
                    form.push(("client_secret", secret.expose().to_string()));
                }
                token_url
            }
            _ => {
                return Err(Error::Config(format!(
                    "{connector}: this authentication has no access token"
                )));
            }
        };
        let response = client
            .post(token_url.as_str())
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                // The error of a form post names the URL only; the form is not in it.
                Error::transient(
                    connector,
                    format!("token request to {token_url} failed: {}", e.without_url()),
                )
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Error::transient(
                connector,
                format!("token response from {token_url}: {}", e.without_url()),
            )
        })?;
        if !status.is_success() {
            let detail = super::request::truncate(&body);
            let message = format!("token request to {token_url} returned {status}: {detail}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Error::transient(connector, message)
            } else {
                // A refused refresh token or client: nothing a retry can fix.
                Error::external(connector, message)
            });
        }
        let granted: Granted = serde_json::from_slice(&body).map_err(|e| {
            Error::external(
                connector,
                format!("token response from {token_url} is not a token: {e}"),
            )
        })?;
        if let Some(rotated) = granted.refresh_token.filter(|r| !r.is_empty()) {
            let rotated = Secret::new(rotated);
            if state.refresh.as_ref() != Some(&rotated) {
                // Persist first: the server may already have revoked the old one.
                self.persist_refresh_token(&rotated).await?;
                state.refresh = Some(rotated);
            }
        }
        let access = Secret::new(granted.access_token);
        state.token = Some(Token {
            access: access.clone(),
            refresh_at: granted.expires_in.map(|seconds| {
                let lifetime = Duration::from_secs(seconds);
                Instant::now() + lifetime - REFRESH_AHEAD.min(lifetime / 4)
            }),
        });
        tracing::debug!(connector, "fetched an access token");
        Ok(access)
    }

    async fn persisted_refresh_token(&self) -> Result<Option<Secret>> {
        let Some((store, id)) = &self.store else {
            return Ok(None);
        };
        let state = store.load(id).await?;
        Ok(state
            .streams
            .get(REFRESH_TOKEN_KEY)
            .and_then(|v| v.as_str())
            .map(Secret::new))
    }

    async fn persist_refresh_token(&self, token: &Secret) -> Result<()> {
        let Some((store, id)) = &self.store else {
            tracing::warn!(
                connector = %self.connector,
                "the server rotated the refresh token but this source has no state store to \
                 keep it in: a restart will start from the configured one"
            );
            return Ok(());
        };
        let mut state = store.load(id).await?;
        state.epoch += 1;
        state.streams.insert(
            REFRESH_TOKEN_KEY.to_string(),
            serde_json::Value::String(token.expose().to_string()),
        );
        store.commit(id, &state).await
    }
}

/// The fields of a token response this client reads.
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
}
