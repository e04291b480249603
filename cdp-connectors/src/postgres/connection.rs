//! Connection settings, connecting, and the mapping of driver errors onto [`cdp_core::Error`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use cdp_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

/// Default connect timeout.
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 10;

/// Where and how to connect to PostgreSQL: a URL, separate fields, or both (fields override
/// the URL).
///
/// Credentials can stay out of configuration files: `url_env` names an environment variable
/// holding the whole URL, `password_env` one holding the password, and `password_file` a
/// secrets file (its content, trailing newline stripped, is the password, as with Docker or
/// Kubernetes secrets). Passwords are never logged: `Debug` redacts them, including one
/// inside the URL.
///
/// TLS is not built in yet: connections are plain TCP or a Unix socket. A URL that asks
/// for `sslmode=require` is refused rather than silently downgraded; use a local socket,
/// a private network or an SSH/stunnel tunnel.
///
/// ```toml
/// [sources.crm.connection]
/// url = "postgres://etl@db.internal:5432/crm"
/// password_file = "/run/secrets/crm_password"
/// application_name = "cdp-crm"
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConnection {
    /// `postgres://user:password@host:port/dbname?option=value`, or libpq's
    /// `host=… user=…` form.
    #[serde(default)]
    pub url: Option<String>,
    /// Name of an environment variable holding the URL (e.g. `DATABASE_URL`); used when
    /// `url` is not set.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Host name, IP address, or the directory of a Unix socket (starts with `/`).
    #[serde(default)]
    pub host: Option<String>,
    /// Port. Default 5432.
    #[serde(default)]
    pub port: Option<u16>,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
    /// Database name. Default: the user name.
    #[serde(default)]
    pub dbname: Option<String>,
    /// Password in clear. Prefer `password_env` or `password_file`.
    #[serde(default)]
    pub password: Option<String>,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file whose content is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `application_name` reported to the server (visible in `pg_stat_activity`).
    /// Default `cdp`.
    #[serde(default)]
    pub application_name: Option<String>,
    /// Seconds to wait for a connection. Default 10.
    #[serde(default)]
    pub connect_timeout_secs: Option<u64>,
}

impl fmt::Debug for PostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConnection")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("url_env", &self.url_env)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .field("application_name", &self.application_name)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .finish()
    }
}

/// `url` with any password replaced by `<redacted>`, for logs and `Debug`.
pub(crate) fn redact_url(url: &str) -> String {
    // URL form: scheme://user:password@host/…
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:<redacted>{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        return url.to_string();
    }
    // key=value form: blank out the value of `password=`.
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                format!("{key}=<redacted>")
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl PostgresConnection {
    /// Settings from a URL (`postgres://user@host:port/dbname`).
    pub fn url(url: impl Into<String>) -> Self {
        PostgresConnection {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Sets the `application_name` reported to the server.
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Resolves the settings (environment, secrets file) into a driver configuration.
    pub(crate) fn to_config(&self, connector: &str) -> Result<tokio_postgres::Config> {
        let url = match (&self.url, &self.url_env) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "{connector}: environment variable `{var}` (url_env) is not set"
                ))
            })?),
            (None, None) => None,
        };
        let mut config = match url {
            Some(url) => url.parse::<tokio_postgres::Config>().map_err(|e| {
                Error::Config(format!(
                    "{connector}: invalid connection URL `{}`: {e}",
                    redact_url(&url)
                ))
            })?,
            None => tokio_postgres::Config::new(),
        };
        if let Some(host) = &self.host {
            config.host(host);
        }
        if let Some(port) = self.port {
            config.port(port);
        }
        if let Some(user) = &self.user {
            config.user(user);
        }
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname);
        }
        if let Some(password) = self.password()? {
            config.password(password);
        }
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_user().is_none() {
            return Err(Error::Config(format!(
                "{connector}: no user given (set `user` or put it in the URL)"
            )));
        }
        config.application_name(self.application_name.as_deref().unwrap_or("cdp"));
        config.connect_timeout(Duration::from_secs(
            self.connect_timeout_secs
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
        ));
        config.keepalives(true);
        if config.get_ssl_mode() == SslMode::Require {
            return Err(Error::Config(format!(
                "{connector}: sslmode=require, but TLS is not built into this connector yet; \
                 connect over a Unix socket, a private network or a tunnel"
            )));
        }
        Ok(config)
    }

    fn password(&self) -> Result<Option<String>> {
        if let Some(password) = &self.password {
            return Ok(Some(password.clone()));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var).map(Some).map_err(|_| {
                Error::Config(format!(
                    "environment variable `{var}` (password_env) is not set"
                ))
            });
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("password file {}", path.display()), e))?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(None)
    }

    /// Opens a connection; its driver task runs on the tokio runtime until the client is
    /// dropped or the server goes away.
    pub(crate) async fn connect(&self, connector: &str) -> Result<Client> {
        let config = self.to_config(connector)?;
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(connector, "connect", e))?;
        let connector = connector.to_string();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(connector, error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }
}

/// A driver error with what was being done when it happened.
#[derive(Debug)]
pub(crate) struct PgError {
    context: String,
    source: tokio_postgres::Error,
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)?;
        if let Some(cause) = std::error::Error::source(&self.source) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether a driver error is worth retrying: the connection broke or timed out, or the
/// server refused for a reason that passes (serialization failure, deadlock, shutdown,
/// too many connections, lock timeout).
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08")
            || matches!(
                code,
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03"
            );
    }
    if e.as_db_error().is_some() {
        return false;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    e.to_string() == "timeout waiting for server"
}

/// Wraps a driver error as [`Error::transient`] or [`Error::external`].
pub(crate) fn pg_error(
    connector: &str,
    context: impl Into<String>,
    e: tokio_postgres::Error,
) -> Error {
    let transient = is_transient(&e);
    let error = PgError {
        context: context.into(),
        source: e,
    };
    if transient {
        Error::transient(connector, error)
    } else {
        Error::external(connector, error)
    }
}

/// `name` as a quoted SQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.name`, both quoted.
pub(crate) fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// `value` as a quoted SQL string literal (connections run with
/// `standard_conforming_strings = on`, the default since PostgreSQL 9.1).
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_passwords() {
        let connection = PostgresConnection {
            url: Some("postgres://etl:s3cret@db:5432/crm".into()),
            password: Some("hunter2".into()),
            ..PostgresConnection::default()
        };
        let text = format!("{connection:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("postgres://etl:<redacted>@db:5432/crm"),
            "{text}"
        );
        assert_eq!(
            redact_url("host=db user=etl password=s3cret"),
            "host=db user=etl password=<redacted>"
        );
        assert_eq!(redact_url("postgres://etl@db/crm"), "postgres://etl@db/crm");
    }

    #[test]
    fn fields_override_the_url_and_secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "from-file\n").unwrap();
        let connection = PostgresConnection {
            url: Some("postgres://etl@db:5432/crm".into()),
            dbname: Some("other".into()),
            password_file: Some(secret),
            ..PostgresConnection::default()
        };
        let config = connection.to_config("pg").unwrap();
        assert_eq!(config.get_dbname(), Some("other"));
        assert_eq!(config.get_password(), Some(&b"from-file"[..]));
        assert_eq!(config.get_user(), Some("etl"));
        assert!(!format!("{config:?}").contains("from-file"));
    }

    #[test]
    fn tls_required_is_refused_not_downgraded() {
        let err = PostgresConnection::url("postgres://etl@db/crm?sslmode=require")
            .to_config("pg")
            .unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
