//! TLS for PostgreSQL connections: rustls with the `ring` provider, checking the server's
//! certificate the way libpq does for each `sslmode`.

use std::path::Path;
use std::sync::Arc;

use cdp_core::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connection::{RootCert, TlsSettings};

/// The rustls connector for `settings`: which roots to trust, what to check, and the client
/// certificate to present, if any. Reads the PEM files each time, so a rotated certificate
/// is picked up on the next connection.
pub(crate) fn make_tls_connect(
    settings: &TlsSettings,
    connector: &str,
) -> Result<MakeRustlsConnect> {
    let tls_error = |what: &str, e: &dyn std::fmt::Display| {
        Error::Config(format!("{connector}: TLS: {what}: {e}"))
    };
    // An explicit provider, so another crate in the build turning on rustls' `aws_lc_rs`
    // cannot make the process-wide default ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("protocol versions", &e))?;
    let verifier: Arc<dyn ServerCertVerifier> = if settings.checks_chain() {
        let roots = Arc::new(root_store(settings.root_cert.as_ref(), connector)?);
        if settings.checks_host_name() {
            WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| tls_error("certificate verifier", &e))?
        } else {
            Arc::new(WithoutHostName {
                roots: Some(roots),
                provider,
            })
        }
    } else {
        Arc::new(WithoutHostName {
            roots: None,
            provider,
        })
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&settings.client_cert, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert, "sslcert", connector)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| tls_error(&format!("sslkey {}", key.display()), &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_error("client certificate and key", &e))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The trust anchors: the certificates of `sslrootcert`, or the system's.
fn root_store(root_cert: Option<&RootCert>, connector: &str) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(RootCert::File(path)) => {
            let (added, _ignored) =
                store.add_parsable_certificates(load_certs(path, "sslrootcert", connector)?);
            if added == 0 {
                return Err(Error::Config(format!(
                    "{connector}: TLS: sslrootcert {}: no certificate usable as a trust anchor",
                    path.display()
                )));
            }
        }
        None | Some(RootCert::System) => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(connector, error = %e, "skipped part of the system trust store");
            }
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(Error::Config(format!(
                    "{connector}: TLS: no system root certificates found (install \
                     ca-certificates, set SSL_CERT_FILE, or give `sslrootcert`)"
                )));
            }
        }
    }
    Ok(store)
}

/// Every certificate in a PEM file; an error if there is none.
fn load_certs(path: &Path, what: &str, connector: &str) -> Result<Vec<CertificateDer<'static>>> {
    let error = |e: &dyn std::fmt::Display| {
        Error::Config(format!("{connector}: TLS: {what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(&e))?;
    if certs.is_empty() {
        return Err(error(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The verifier of the modes that do not compare host names: `verify-ca` (and
/// `prefer`/`require` given a root certificate) checks that the chain leads to a trusted
/// root within its validity period; `prefer` and `require` without a root certificate
/// (`roots` is `None`) accept any certificate, as libpq does — the session is encrypted and
/// the handshake signature still checked against the presented key, but nothing proves who
/// holds that key.
#[derive(Debug)]
struct WithoutHostName {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for WithoutHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
