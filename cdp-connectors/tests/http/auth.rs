//! Authentication: OAuth tokens refreshed before they expire and once on a 401, rotated
//! refresh tokens persisted so a restart uses the newest; secrets never shown.

use std::sync::Arc;
use std::time::Duration;

use cdp_connectors::HttpSourceConfig;
use cdp_connectors::http::{Secret, SecretSource};
use cdp_core::{MemoryStateStore, PipelineState, Source, StateStore};
use cdp_testkit::saas::{CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH_TOKEN, FakeSaas, SaasConfig};

use crate::support::{FAST_RETRY, config, ids, key_file, read, try_read};

fn secret_file(value: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), value).unwrap();
    file
}

/// The HubSpot-like contacts stream behind OAuth refresh tokens.
fn contacts(
    server: &FakeSaas,
    secret: &std::path::Path,
    refresh: &std::path::Path,
    top: &str,
) -> HttpSourceConfig {
    config(&format!(
        r#"base_url = "{url}"
{FAST_RETRY}
{top}

[auth]
type = "oauth2_refresh_token"
token_url = "{url}/oauth/token"
client_id = "{CLIENT_ID}"
client_secret = {{ file = "{secret}" }}
refresh_token = {{ file = "{refresh}" }}

[[streams]]
name = "contacts"
path = "/crm/v3/objects/contacts"
records = "/results"
page_size = {{ param = "limit", size = 5 }}
paginate = {{ type = "cursor", param = "after", cursor = "/paging/next/after" }}
"#,
        url = server.url(),
        secret = secret.display(),
        refresh = refresh.display(),
    ))
}

#[tokio::test]
async fn revoked_tokens_are_refreshed_once_and_a_restart_uses_the_rotated_refresh_token() {
    // Access tokens are revoked after three uses: the source meets 401s and refreshes.
    let server = FakeSaas::start(SaasConfig {
        customers: 40,
        token_uses: 3,
        ..SaasConfig::default()
    })
    .await;
    let secret = secret_file(CLIENT_SECRET);
    let refresh = secret_file(FIRST_REFRESH_TOKEN);
    let store: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
    let config = contacts(&server, secret.path(), refresh.path(), "");
    let source = config
        .build_source()
        .unwrap()
        .with_state_store(store.clone(), "crm-sync");
    let read1 = read(&source, PipelineState::default()).await;
    assert_eq!(read1.values("contacts", "id"), ids(&server.customers()));
    let stats = server.stats();
    assert!(stats.unauthorized >= 2, "{stats:?}");
    let (current, rotations) = server.refresh_token();
    assert!(rotations >= 3, "the refresh token rotated at every refresh");
    assert_eq!(stats.refresh_refused, 0);
    // The newest refresh token is in the state store, not the revoked one.
    let kept = store.load("crm-sync/http/oauth").await.unwrap();
    assert_eq!(kept.streams["refresh_token"], current.as_str());

    // A restart with the same configuration (whose refresh token is revoked by now) reads
    // on with the persisted one.
    let restarted = config
        .build_source()
        .unwrap()
        .with_state_store(store.clone(), "crm-sync");
    let read2 = read(&restarted, PipelineState::default()).await;
    assert_eq!(read2.values("contacts", "id").len(), 40);
    assert_eq!(server.stats().refresh_refused, 0);

    // Without the store a restart starts from the revoked token and is refused, saying so
    // without showing any secret.
    let forgetful = config.build_source().unwrap();
    let error = try_read(&forgetful, PipelineState::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("invalid_grant"), "{error}");
    for secret in [FIRST_REFRESH_TOKEN, CLIENT_SECRET, current.as_str()] {
        assert!(!error.contains(secret), "{error}");
    }
    assert!(!format!("{forgetful:?}").contains(CLIENT_SECRET));
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let server = FakeSaas::start(SaasConfig {
        customers: 30,
        token_lifetime: Duration::from_secs(2),
        ..SaasConfig::default()
    })
    .await;
    let secret = secret_file(CLIENT_SECRET);
    let refresh = secret_file(FIRST_REFRESH_TOKEN);
    // Two requests a second: the read outlives the first token.
    let config = contacts(
        &server,
        secret.path(),
        refresh.path(),
        "rate_limit = { per_second = 2, burst = 1 }",
    );
    let read = read(&config.build_source().unwrap(), PipelineState::default()).await;
    assert_eq!(read.values("contacts", "id").len(), 30);
    let stats = server.stats();
    assert!(stats.tokens_granted >= 2, "{stats:?}");
    assert_eq!(
        stats.unauthorized, 0,
        "refreshed ahead of expiry: {stats:?}"
    );
}

#[tokio::test]
async fn client_credentials_fetch_one_token_for_many_requests() {
    let server = FakeSaas::start(SaasConfig {
        customers: 30,
        ..SaasConfig::default()
    })
    .await;
    let secret = secret_file(CLIENT_SECRET);
    let config = config(&format!(
        r#"base_url = "{url}"
auth = {{ type = "oauth2_client_credentials", token_url = "{url}/oauth/token", client_id = "{CLIENT_ID}", client_secret = {{ file = "{secret}" }}, scopes = ["crm.read"] }}

[[streams]]
name = "contacts"
path = "/crm/v3/objects/contacts"
records = "/results"
page_size = {{ param = "limit", size = 5 }}
paginate = {{ type = "cursor", param = "after", cursor = "/paging/next/after" }}
"#,
        url = server.url(),
        secret = secret.path().display(),
    ));
    let read = read(&config.build_source().unwrap(), PipelineState::default()).await;
    assert_eq!(read.values("contacts", "id").len(), 30);
    assert_eq!(server.stats().tokens_granted, 1);
}

#[tokio::test]
async fn secrets_stay_out_of_errors_and_debug_output() {
    let server = FakeSaas::start(SaasConfig::default()).await;
    // The key sent as a query parameter, which this API does not take: a 401 whose error
    // names the request without the key. A secret a stream put in its own parameters
    // (`token`) is redacted too.
    let config = config(&format!(
        r#"base_url = "{}"
auth = {{ type = "api_key", key = {{ file = "{}" }}, query = "api_key" }}
retry = {{ max_attempts = 1 }}

[[streams]]
name = "s"
path = "/items/offset"
records = "/items"
params = {{ token = "tok_inline_secret", limit = "5" }}
"#,
        server.url(),
        key_file().display()
    ));
    let source = config.build_source().unwrap();
    let error = source.check().await.unwrap_err().to_string();
    let key = cdp_testkit::saas::API_KEY;
    assert!(
        error.contains("/items/offset?limit=5&token=REDACTED returned 401"),
        "{error}"
    );
    assert!(
        !error.contains(key) && !error.contains("tok_inline_secret"),
        "{error}"
    );

    // A secret given in code prints as stars wherever it goes.
    let mut config = config;
    config.http.auth = cdp_connectors::http::AuthConfig::Bearer {
        token: SecretSource::Value(Secret::new("sk_live_do_not_print")),
    };
    let source = config.build_source().unwrap();
    assert!(!format!("{source:?} {config:?}").contains("sk_live_do_not_print"));
}
