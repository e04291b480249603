//! TLS against the local server (`ssl = on` with the Debian snakeoil certificate, a
//! self-signed certificate for `localhost`). The connector's own connection reports whether
//! it is encrypted: the source reads a view of `pg_stat_ssl` for its own backend.
//!
//! `CDP_TEST_POSTGRES_TLS_NAME` is the host name in the server's certificate (default
//! `localhost`); the certificate is found through the server's `ssl_cert_file`.

use std::path::PathBuf;

use arrow::array::{Array, BooleanArray};
use cdp_connectors::{
    PostgresConnection, PostgresSourceConfig, PostgresSslMode, PostgresStreamConfig,
};
use cdp_core::{ReadRequest, Source};

use crate::support::*;

/// The server's certificate file, as the server reports it.
async fn server_certificate(db: &TestDb) -> PathBuf {
    let setting = |name: &'static str| async move {
        let row = db
            .client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap();
        row.get::<_, String>(0)
    };
    assert_eq!(
        setting("ssl").await,
        "on",
        "the test server must have ssl = on"
    );
    let file = PathBuf::from(setting("ssl_cert_file").await);
    if file.is_relative() {
        PathBuf::from(setting("data_directory").await).join(file)
    } else {
        file
    }
}

/// Debian's bundle of public certificate authorities.
const PUBLIC_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

fn certificate_name() -> String {
    std::env::var("CDP_TEST_POSTGRES_TLS_NAME").unwrap_or_else(|_| "localhost".into())
}

/// A view, in the test's schema, of the TLS state of the backend that reads it.
async fn create_ssl_view(db: &TestDb) {
    db.exec(&format!(
        "CREATE VIEW {} AS
             SELECT pid, ssl, coalesce(version, '') AS version
             FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        db.table("my_ssl")
    ))
    .await;
}

/// Whether the connection `connection` opens is encrypted, read over that connection.
async fn encrypted(db: &TestDb, connection: PostgresConnection) -> bool {
    let source = PostgresSourceConfig::new(connection)
        .with_schema(&db.schema)
        .with_stream(
            "my_ssl",
            PostgresStreamConfig::default().with_primary_key(["pid"]),
        )
        .build_source()
        .unwrap();
    let read = read_all(&source, ReadRequest::default()).await;
    let batches = read.batches();
    assert_eq!(batches.len(), 1, "one row for the reading backend");
    let ssl = batches[0].data.column_by_name("ssl").unwrap();
    let ssl = ssl.as_any().downcast_ref::<BooleanArray>().unwrap();
    assert_eq!(ssl.len(), 1);
    ssl.value(0)
}

/// The error from opening a connection with `connection` (through `check`).
async fn connect_error(connection: PostgresConnection) -> cdp_core::Error {
    let source = PostgresSourceConfig::new(connection)
        .build_source()
        .unwrap();
    source
        .check()
        .await
        .expect_err("the connection must be refused")
}

fn with_host(mut connection: PostgresConnection, host: &str) -> PostgresConnection {
    connection.host = Some(host.into());
    connection
}

#[tokio::test]
async fn require_encrypts_the_connection() {
    let db = TestDb::new().await;
    create_ssl_view(&db).await;
    let connection = db
        .connection("cdp-test-tls-require")
        .with_sslmode(PostgresSslMode::Require);
    assert!(encrypted(&db, connection).await);
}

#[tokio::test]
async fn prefer_the_default_encrypts_when_the_server_offers_tls() {
    let db = TestDb::new().await;
    create_ssl_view(&db).await;
    assert!(encrypted(&db, db.connection("cdp-test-tls-prefer")).await);
}

#[tokio::test]
async fn disable_stays_in_the_clear() {
    let db = TestDb::new().await;
    create_ssl_view(&db).await;
    let connection = db
        .connection("cdp-test-tls-disable")
        .with_sslmode(PostgresSslMode::Disable);
    assert!(!encrypted(&db, connection).await);
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_that_does_not_name_the_host() {
    let db = TestDb::new().await;
    let root = server_certificate(&db).await;
    let connection = db
        .connection("cdp-test-tls-verify-full-ip")
        .with_sslmode(PostgresSslMode::VerifyFull)
        .with_sslrootcert(root);
    let err = connect_error(with_host(connection, "127.0.0.1")).await;
    let text = err.to_string();
    assert!(
        text.contains("certificate not valid for name") && text.contains("127.0.0.1"),
        "{text}"
    );
    assert!(
        !err.is_retryable(),
        "a certificate error is not retried: {text}"
    );
}

#[tokio::test]
async fn verify_full_accepts_the_certificate_that_names_the_host() {
    let db = TestDb::new().await;
    create_ssl_view(&db).await;
    let root = server_certificate(&db).await;
    let connection = db
        .connection("cdp-test-tls-verify-full")
        .with_sslmode(PostgresSslMode::VerifyFull)
        .with_sslrootcert(root);
    assert!(encrypted(&db, with_host(connection, &certificate_name())).await);
}

/// The snakeoil certificate is self-signed and marked `CA:FALSE`; webpki still accepts it as
/// its own trust anchor (a trust anchor is only a name and a key), so `verify-ca` with it as
/// the root connects, whatever host name is used.
#[tokio::test]
async fn verify_ca_accepts_the_servers_own_certificate_as_root_whatever_the_host_name() {
    let db = TestDb::new().await;
    create_ssl_view(&db).await;
    let root = server_certificate(&db).await;
    let connection = db
        .connection("cdp-test-tls-verify-ca")
        .with_sslmode(PostgresSslMode::VerifyCa)
        .with_sslrootcert(root);
    assert!(encrypted(&db, with_host(connection, "127.0.0.1")).await);
}

/// The public CAs of the Debian bundle do not vouch for a self-signed certificate.
#[tokio::test]
async fn verify_full_with_public_roots_refuses_a_self_signed_certificate() {
    let db = TestDb::new().await;
    let connection = db
        .connection("cdp-test-tls-public-roots")
        .with_sslmode(PostgresSslMode::VerifyFull)
        .with_sslrootcert(PUBLIC_ROOTS);
    let err = connect_error(with_host(connection, &certificate_name())).await;
    let text = err.to_string();
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    assert!(!err.is_retryable(), "{text}");
}

/// The system roots, as OpenSSL reads them (the bundle and `/etc/ssl/certs/*`), may include
/// the snakeoil certificate itself: Debian's `ssl-cert` puts it in `/etc/ssl/certs` and
/// `update-ca-certificates` gives it a hash link. Whether the chain is refused
/// (`UnknownIssuer`) or accepted, the host name 127.0.0.1 is not in it, so `verify-full`
/// refuses either way.
#[tokio::test]
async fn verify_full_with_system_roots_refuses_the_certificate_for_an_unnamed_host() {
    let db = TestDb::new().await;
    let connection = db
        .connection("cdp-test-tls-system-roots")
        .with_sslmode(PostgresSslMode::VerifyFull);
    let err = connect_error(with_host(connection, "127.0.0.1")).await;
    let text = err.to_string();
    assert!(
        text.contains("invalid peer certificate: UnknownIssuer")
            || text.contains("certificate not valid for name \"127.0.0.1\""),
        "{text}"
    );
    assert!(!err.is_retryable(), "{text}");
}

#[tokio::test]
async fn a_missing_root_certificate_file_is_named() {
    let db = TestDb::new().await;
    let connection = db
        .connection("cdp-test-tls-missing-root")
        .with_sslmode(PostgresSslMode::VerifyCa)
        .with_sslrootcert("/nonexistent/cdp-root.pem");
    let text = connect_error(connection).await.to_string();
    assert!(
        text.contains("sslrootcert /nonexistent/cdp-root.pem"),
        "{text}"
    );
}
