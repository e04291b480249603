//! Secrets: where a credential comes from, and a value that never prints itself.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use cdp_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// A credential's value. `Debug` and `Display` print `***`, so a secret in a config, an
/// error or a log line shows nothing of itself; read it with [`expose`](Secret::expose)
/// only where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value (from a host's own secret manager, or a test).
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The value, for the header or form field it is sent in.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret is read from: an environment variable or a file, never the
/// configuration itself. Read when the connector is checked or read, not when it is
/// built.
///
/// ```toml
/// [sources.billing]
/// type = "http"
/// base_url = "https://api.example.com/v1"
/// auth = { type = "bearer", token = { env = "BILLING_API_KEY" } }
/// # or: token = { file = "/run/secrets/billing-api-key" }
///
/// [[sources.billing.streams]]
/// name = "customers"
/// path = "/customers"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// `{ env = "NAME" }`: the value of an environment variable.
    Env(String),
    /// `{ file = "path" }`: a file's content, without its trailing line break.
    File(PathBuf),
    /// A value given in Rust code; not readable from a configuration file.
    #[serde(skip)]
    Value(Secret),
}

impl SecretSource {
    /// What is wrong with the reference itself (an empty name), without reading it.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        match self {
            SecretSource::Env(name) if name.trim().is_empty() => {
                Some("`env` must name an environment variable")
            }
            SecretSource::File(path) if path.as_os_str().is_empty() => {
                Some("`file` must name a file")
            }
            _ => None,
        }
    }

    /// Reads the secret; the error names where it was looked for, never a value.
    pub(crate) fn resolve(&self, connector: &str, key: &str) -> Result<Secret> {
        match self {
            SecretSource::Value(secret) => Ok(secret.clone()),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
                Ok(_) => Err(Error::Config(format!(
                    "{connector}: `{key}`: environment variable `{name}` is empty"
                ))),
                Err(_) => Err(Error::Config(format!(
                    "{connector}: `{key}`: environment variable `{name}` is not set"
                ))),
            },
            SecretSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!(
                        "{connector}: `{key}`: cannot read secret file {}: {e}",
                        path.display()
                    ))
                })?;
                let value = text.trim_end_matches(['\n', '\r']);
                if value.is_empty() {
                    return Err(Error::Config(format!(
                        "{connector}: `{key}`: secret file {} is empty",
                        path.display()
                    )));
                }
                Ok(Secret::new(value))
            }
        }
    }
}

impl From<Secret> for SecretSource {
    fn from(secret: Secret) -> Self {
        SecretSource::Value(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_themselves() {
        let secret = Secret::new("sk_live_123");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        let source = SecretSource::from(secret);
        assert!(!format!("{source:?}").contains("sk_live"));
    }

    #[test]
    fn missing_secrets_name_where_they_were_looked_for() {
        let error = SecretSource::Env("CDP_TEST_SURELY_UNSET".into())
            .resolve("http", "auth.token")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`CDP_TEST_SURELY_UNSET` is not set"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = SecretSource::File(path).resolve("http", "k").unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }
}
