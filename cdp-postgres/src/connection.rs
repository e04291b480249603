//! Connection settings, connecting, and the mapping of driver errors onto [`cdp_core::Error`].
//!
//! Quoting of identifiers and literals is in [`quote`](crate::quote).

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use cdp_core::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio_postgres::config::{Host, SslMode};
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
/// ```toml
/// [sources.crm.connection]
/// url = "postgres://etl@db.internal:5432/crm"
/// password_file = "/run/secrets/crm_password"
/// application_name = "cdp-crm"
/// ```
///
/// # TLS
///
/// Built with this crate's `tls` feature (rustls; `postgres-tls` in `cdp-connectors` and
/// `cdp`), connections follow libpq's `sslmode`,
/// set as a field or in the URL (`?sslmode=verify-full&sslrootcert=/etc/cdp/db-ca.pem`):
///
/// | `sslmode` | encrypted | certificate checked |
/// |---|---|---|
/// | `disable` | no | — |
/// | `prefer` (default) | if the server offers TLS | no |
/// | `require` | yes, or no connection | no |
/// | `verify-ca` | yes | chains to a trusted root; host name not compared |
/// | `verify-full` | yes | chains to a trusted root and names the host connected to |
///
/// The trusted roots are the PEM certificates in `sslrootcert`, or the system's
/// (`/etc/ssl/certs`, `SSL_CERT_FILE`) when it is unset or `system`. As in libpq, giving a
/// `sslrootcert` makes `prefer` and `require` check the chain too. `sslcert` and `sslkey`
/// (PEM) present a client certificate. Unix-socket connections never use TLS. `require`
/// alone stops eavesdropping, not a man in the middle: use `verify-full` across networks
/// you do not control. With `hostaddr`, TCP goes to that address while the certificate is
/// checked against `host`.
///
/// ```toml
/// [destinations.warehouse.connection]
/// url = "postgres://loader@pg.example.com:5432/warehouse"
/// password_env = "WAREHOUSE_PASSWORD"
/// sslmode = "verify-full"
/// sslrootcert = "/etc/cdp/warehouse-ca.pem"
/// # sslcert = "/etc/cdp/loader.crt"    # client certificate, if the server asks for one
/// # sslkey = "/run/secrets/loader.key"
/// ```
///
/// Without the feature, `prefer` connects in the clear and `require`, `verify-ca` and
/// `verify-full` are refused (naming the feature), rather than silently downgraded.
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
    /// Whether to use TLS and what to check of the server's certificate (see the TLS
    /// section above). Overrides `sslmode` in the URL. Default `prefer`.
    #[serde(default)]
    pub sslmode: Option<PostgresSslMode>,
    /// PEM file of the certificate authorities to trust, or `system` for the system's roots
    /// (the default). Overrides `sslrootcert` in the URL.
    #[serde(default)]
    pub sslrootcert: Option<PathBuf>,
    /// PEM file of a client certificate (chain) to present; needs `sslkey`.
    #[serde(default)]
    pub sslcert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub sslkey: Option<PathBuf>,
}

/// libpq's `sslmode`: whether to use TLS, and what to check of the server's certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresSslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, else plain; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is set).
    Require,
    /// TLS, with a certificate that chains to a trusted root; the host name is not compared.
    VerifyCa,
    /// TLS, with a certificate that chains to a trusted root and names the host.
    VerifyFull,
}

impl PostgresSslMode {
    /// The name used in URLs and configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresSslMode::Disable => "disable",
            PostgresSslMode::Prefer => "prefer",
            PostgresSslMode::Require => "require",
            PostgresSslMode::VerifyCa => "verify-ca",
            PostgresSslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for PostgresSslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PostgresSslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(PostgresSslMode::Disable),
            "prefer" => Ok(PostgresSslMode::Prefer),
            "require" => Ok(PostgresSslMode::Require),
            "verify-ca" => Ok(PostgresSslMode::VerifyCa),
            "verify-full" => Ok(PostgresSslMode::VerifyFull),
            "allow" => Err(
                "sslmode `allow` (plain first, TLS as a fallback) is not supported; \
                 use `prefer` or `disable`"
                    .to_string(),
            ),
            other => Err(format!(
                "unknown sslmode `{other}` (expected disable, prefer, require, verify-ca or \
                 verify-full)"
            )),
        }
    }
}

/// A connection setting that cannot work, found without connecting by
/// [`PostgresConnection::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionProblem {
    /// The key at fault: `url`, `user`, `sslmode`, `sslrootcert`, …
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl ConnectionProblem {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        ConnectionProblem {
            key,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConnectionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RootCert {
    /// The system's trust store.
    System,
    /// A PEM file of certificates.
    File(PathBuf),
}

/// The TLS part of the settings, resolved from the fields and the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: PostgresSslMode,
    pub(crate) root_cert: Option<RootCert>,
    pub(crate) client_cert: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether the certificate chain is checked: in the `verify-*` modes, and, as libpq
    /// does, whenever a root certificate is given.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn checks_chain(&self) -> bool {
        matches!(
            self.mode,
            PostgresSslMode::VerifyCa | PostgresSslMode::VerifyFull
        ) || self.root_cert.is_some()
    }

    /// Whether the certificate must name the host connected to.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn checks_host_name(&self) -> bool {
        self.mode == PostgresSslMode::VerifyFull
    }
}

/// The libpq TLS parameters that `tokio-postgres` does not parse, taken out of a URL.
#[derive(Debug, Default, PartialEq, Eq)]
struct UrlTls {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
}

impl UrlTls {
    /// Takes `key = value` if it is one of the TLS parameters; false otherwise.
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.sslmode,
            "sslrootcert" => &mut self.sslrootcert,
            "sslcert" => &mut self.sslcert,
            "sslkey" => &mut self.sslkey,
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// Splits the TLS parameters off a connection string (URL or `key=value` form): the driver
/// only knows `sslmode` up to `require` and no certificate files. A string this cannot
/// read is returned whole, for the driver to report.
fn split_tls_params(url: &str) -> (String, UrlTls) {
    let mut tls = UrlTls::default();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), tls);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.split_once('=') {
                Some((key, value)) => !tls.take(key, percent_decode(value)),
                None => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, tls);
    }
    let Some(pairs) = parse_key_values(url) else {
        return (url.to_string(), UrlTls::default());
    };
    let kept: Vec<String> = pairs
        .into_iter()
        .filter_map(|(key, value)| {
            let quoted = format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            );
            (!tls.take(&key, value)).then_some(quoted)
        })
        .collect();
    (kept.join(" "), tls)
}

/// `%XX` escapes decoded (as the driver does for URL query values).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's `key = value` form (values optionally in single quotes, `\` escapes), or `None`
/// if `s` is not well formed.
fn parse_key_values(s: &str) -> Option<Vec<(String, String)>> {
    let mut chars = s.chars().peekable();
    let mut pairs = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if key.is_empty() || chars.next() != Some('=') {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        pairs.push((key, value));
    }
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
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("sslcert", &self.sslcert)
            .field("sslkey", &self.sslkey)
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

    /// Sets `sslmode` (overriding the URL's).
    pub fn with_sslmode(mut self, mode: PostgresSslMode) -> Self {
        self.sslmode = Some(mode);
        self
    }

    /// Sets `sslrootcert`, the PEM file of the certificate authorities to trust.
    pub fn with_sslrootcert(mut self, path: impl Into<PathBuf>) -> Self {
        self.sslrootcert = Some(path.into());
        self
    }

    /// Resolves the settings (environment, secrets file) into a driver configuration,
    /// without connecting. `connector` names the component in error messages. To check a
    /// configuration without reading its secrets, use [`validate`](Self::validate).
    ///
    /// Errors are [`Error::Config`]: a malformed URL (its password redacted), a missing
    /// user, an unset `url_env` or `password_env` variable, inconsistent TLS settings, or a
    /// TLS mode this build cannot honour.
    pub fn to_config(&self, connector: &str) -> Result<tokio_postgres::Config> {
        self.resolve(connector).map(|(config, _)| config)
    }

    /// The driver configuration and the TLS settings.
    pub(crate) fn resolve(&self, connector: &str) -> Result<(tokio_postgres::Config, TlsSettings)> {
        let url = match (&self.url, &self.url_env) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "{connector}: environment variable `{var}` (url_env) is not set"
                ))
            })?),
            (None, None) => None,
        };
        let (mut config, tls) = self
            .settings(url.as_deref(), true)
            .map_err(|problem| Error::Config(format!("{connector}: {}", problem.message)))?;
        if let Some(password) = self.password()? {
            config.password(password);
        }
        Ok((config, tls))
    }

    /// Checks the settings without connecting and without reading anything: no environment
    /// variable (`url_env`, `password_env`) and no file (`password_file`, certificates) is
    /// looked at, so a configuration can be checked where its secrets are not (`cdp
    /// validate` in CI). Found here: a URL that does not parse, a missing user (unless the
    /// URL comes from `url_env`), empty variable or file names, inconsistent TLS settings,
    /// and a TLS mode this build cannot honour. An unset variable, an unreadable file and
    /// refused credentials are found when connecting.
    ///
    /// ```
    /// use cdp_postgres::PostgresConnection;
    ///
    /// let problems = PostgresConnection::url("postgres://db/crm?sslcert=/c.pem")
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(problems[0].key, "user");
    /// ```
    pub fn validate(&self) -> std::result::Result<(), Vec<ConnectionProblem>> {
        let mut problems = Vec::new();
        let names = [
            (
                "url_env",
                self.url_env.as_deref(),
                "an environment variable",
            ),
            (
                "password_env",
                self.password_env.as_deref(),
                "an environment variable",
            ),
            (
                "password_file",
                self.password_file.as_ref().and_then(|p| p.to_str()),
                "a file",
            ),
        ];
        for (key, value, what) in names {
            if value == Some("") {
                problems.push(ConnectionProblem::new(key, format!("must name {what}")));
            }
        }
        // A URL read from the environment is not known here, nor is its user.
        let url_known = self.url.is_some() || self.url_env.is_none();
        if let Err(problem) = self.settings(self.url.as_deref(), url_known) {
            problems.push(problem);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The driver configuration (without the password) and the TLS settings from `url` and
    /// the fields; what [`resolve`](Self::resolve) and [`validate`](Self::validate) share.
    fn settings(
        &self,
        url: Option<&str>,
        user_required: bool,
    ) -> std::result::Result<(tokio_postgres::Config, TlsSettings), ConnectionProblem> {
        let (mut config, url_tls) = match url {
            Some(url) => {
                let (rest, url_tls) = split_tls_params(url);
                let config = rest.parse::<tokio_postgres::Config>().map_err(|e| {
                    ConnectionProblem::new(
                        "url",
                        format!("invalid connection URL `{}`: {e}", redact_url(url)),
                    )
                })?;
                (config, url_tls)
            }
            None => (tokio_postgres::Config::new(), UrlTls::default()),
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
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if user_required && config.get_user().is_none() {
            return Err(ConnectionProblem::new(
                "user",
                "no user given (set `user` or put it in the URL)",
            ));
        }
        config.application_name(self.application_name.as_deref().unwrap_or("cdp"));
        config.connect_timeout(Duration::from_secs(
            self.connect_timeout_secs
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS),
        ));
        config.keepalives(true);
        let tls = self.tls_settings(url_tls)?;
        // libpq never uses TLS on a Unix socket, whatever `sslmode` says.
        let unix_only = config.get_hosts().iter().all(is_unix_socket);
        config.ssl_mode(match tls.mode {
            _ if unix_only => SslMode::Disable,
            PostgresSslMode::Disable => SslMode::Disable,
            PostgresSslMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        if !cfg!(feature = "tls") && config.get_ssl_mode() == SslMode::Require {
            return Err(ConnectionProblem::new(
                "sslmode",
                format!(
                    "sslmode={}, but this build has no TLS: enable the `postgres-tls` feature of \
                     cdp-connectors or cdp (`tls` of cdp-postgres), or connect over a Unix \
                     socket, a private network or a tunnel",
                    tls.mode
                ),
            ));
        }
        Ok((config, tls))
    }

    /// The TLS settings: the fields, else the URL's parameters, else `prefer`.
    fn tls_settings(&self, url_tls: UrlTls) -> std::result::Result<TlsSettings, ConnectionProblem> {
        let mode = match (self.sslmode, &url_tls.sslmode) {
            (Some(mode), _) => mode,
            (None, Some(text)) => text.parse().map_err(|e| ConnectionProblem::new("url", e))?,
            (None, None) => PostgresSslMode::Prefer,
        };
        let root_cert = self
            .sslrootcert
            .clone()
            .or(url_tls.sslrootcert.map(PathBuf::from))
            .map(|path| {
                if path.as_os_str() == "system" {
                    RootCert::System
                } else {
                    RootCert::File(path)
                }
            });
        if root_cert == Some(RootCert::System) && mode != PostgresSslMode::VerifyFull {
            // As libpq: trusting every public CA only means something with the host name
            // checked too.
            return Err(ConnectionProblem::new(
                "sslrootcert",
                format!("sslrootcert=system needs sslmode=verify-full (got {mode})"),
            ));
        }
        let client_cert = self.sslcert.clone().or(url_tls.sslcert.map(PathBuf::from));
        let client_key = self.sslkey.clone().or(url_tls.sslkey.map(PathBuf::from));
        if client_cert.is_some() != client_key.is_some() {
            return Err(ConnectionProblem::new(
                if client_cert.is_some() {
                    "sslkey"
                } else {
                    "sslcert"
                },
                "a client certificate needs both sslcert and sslkey",
            ));
        }
        Ok(TlsSettings {
            mode,
            root_cert,
            client_cert,
            client_key,
        })
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
    /// dropped or the server goes away. `connector` names the component in errors and logs.
    ///
    /// Must be called inside a tokio runtime. Errors from the network or a server that is
    /// starting up are [retryable](cdp_core::Error::is_retryable); bad settings and refused
    /// credentials are not.
    pub async fn connect(&self, connector: &str) -> Result<Client> {
        let (config, tls) = self.resolve(connector)?;
        let error = |e| pg_error(connector, "connect", e);
        #[cfg(feature = "tls")]
        if config.get_ssl_mode() != SslMode::Disable {
            let make_tls = crate::tls::make_tls_connect(&tls, connector)?;
            // Say what was asked of the certificate, so an error names what to change.
            let roots = match &tls.root_cert {
                _ if !tls.checks_chain() => String::new(),
                Some(RootCert::File(path)) => format!(", roots from {}", path.display()),
                None | Some(RootCert::System) => ", system roots".to_string(),
            };
            let context = format!("connect with sslmode={}{roots}", tls.mode);
            let (client, connection) = config
                .connect(make_tls)
                .await
                .map_err(|e| pg_error(connector, context, e))?;
            drive(connector, connection);
            return Ok(client);
        }
        let _ = tls;
        let (client, connection) = config.connect(NoTls).await.map_err(error)?;
        drive(connector, connection);
        Ok(client)
    }
}

/// Runs a connection's driver task on the tokio runtime until the client is dropped or the
/// server goes away.
fn drive<C>(connector: &str, connection: C)
where
    C: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    let connector = connector.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(connector, error = %e, "postgres connection ended");
        }
    });
}

fn is_unix_socket(host: &Host) -> bool {
    #[cfg(unix)]
    if let Host::Unix(_) = host {
        return true;
    }
    let _ = host;
    false
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
/// too many connections, lock timeout). A failed TLS handshake is not: trying again will
/// not change the certificate.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
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
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            // A failed TLS handshake (an untrusted certificate, a wrong host name) arrives
            // as an I/O error, but trying again will not change the certificate.
            #[cfg(feature = "tls")]
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return false;
            }
            let _ = io;
            return true;
        }
        cause = c.source();
    }
    e.to_string() == "timeout waiting for server"
}

/// Wraps a driver error as [`Error::transient`] or [`Error::external`] (as
/// [`is_transient`] decides) of `connector`, with what was being done (`context`) and the
/// driver's cause in its message.
pub fn pg_error(connector: &str, context: impl Into<String>, e: tokio_postgres::Error) -> Error {
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

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_required_is_refused_not_downgraded_and_names_the_feature() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let err = PostgresConnection::url(format!("postgres://etl@db/crm?sslmode={mode}"))
                .to_config("pg")
                .unwrap_err();
            assert!(err.to_string().contains("postgres-tls"), "{err}");
            assert!(err.to_string().contains(mode), "{err}");
        }
        // `prefer` (the default) connects in the clear without the feature, as before.
        let config = PostgresConnection::url("postgres://etl@db/crm?sslmode=prefer")
            .to_config("pg")
            .unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn sslmode_parses_libpq_names() {
        for mode in [
            PostgresSslMode::Disable,
            PostgresSslMode::Prefer,
            PostgresSslMode::Require,
            PostgresSslMode::VerifyCa,
            PostgresSslMode::VerifyFull,
        ] {
            assert_eq!(mode.as_str().parse::<PostgresSslMode>(), Ok(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
            assert_eq!(
                serde_json::from_str::<PostgresSslMode>(&json).unwrap(),
                mode
            );
        }
        assert!(
            "allow"
                .parse::<PostgresSslMode>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            "VERIFY_FULL"
                .parse::<PostgresSslMode>()
                .unwrap_err()
                .contains("unknown sslmode")
        );
        assert!(serde_json::from_str::<PostgresSslMode>("\"verify_full\"").is_err());
    }

    #[test]
    fn tls_parameters_are_taken_out_of_urls() {
        let (rest, tls) = split_tls_params(
            "postgres://etl:pw@db/crm?sslmode=verify-full&application_name=x\
             &sslrootcert=%2Fetc%2Fca%20bundle.pem&sslcert=/c.pem&sslkey=/k.pem",
        );
        assert_eq!(rest, "postgres://etl:pw@db/crm?application_name=x");
        assert_eq!(
            tls,
            UrlTls {
                sslmode: Some("verify-full".into()),
                sslrootcert: Some("/etc/ca bundle.pem".into()),
                sslcert: Some("/c.pem".into()),
                sslkey: Some("/k.pem".into()),
            }
        );
        let (rest, tls) = split_tls_params("postgresql://db/crm?sslmode=require");
        assert_eq!(rest, "postgresql://db/crm");
        assert_eq!(tls.sslmode.as_deref(), Some("require"));

        let (rest, tls) = split_tls_params(
            "host=db user=etl password='it\\'s' sslmode = verify-ca sslrootcert='/a b/ca.pem'",
        );
        assert_eq!(rest, "host='db' user='etl' password='it\\'s'");
        assert_eq!(tls.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(tls.sslrootcert.as_deref(), Some("/a b/ca.pem"));
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's"[..]));
    }

    #[test]
    fn sslmode_maps_onto_the_driver_and_fields_override_the_url() {
        let resolve = |connection: PostgresConnection| connection.resolve("pg").unwrap();
        let (config, tls) = resolve(PostgresConnection::url("postgres://etl@db/crm"));
        assert_eq!(tls.mode, PostgresSslMode::Prefer);
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer);
        let (config, _) = resolve(PostgresConnection::url(
            "postgres://etl@db/crm?sslmode=disable",
        ));
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        // A Unix socket never uses TLS, as with libpq.
        let (config, _) = resolve(PostgresConnection::url(
            "postgres://etl@%2Fvar%2Frun%2Fpostgresql/crm?sslmode=require",
        ));
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);

        let connection = PostgresConnection::url(
            "postgres://etl@db/crm?sslmode=require&sslrootcert=/from/url.pem",
        )
        .with_sslmode(PostgresSslMode::Disable)
        .with_sslrootcert("/from/field.pem");
        let (config, tls) = resolve(connection);
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        assert_eq!(tls.mode, PostgresSslMode::Disable);
        assert_eq!(
            tls.root_cert,
            Some(RootCert::File("/from/field.pem".into()))
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn what_each_mode_checks() {
        let settings = |url: &str| PostgresConnection::url(url).resolve("pg").unwrap();
        let (config, tls) = settings("postgres://etl@db/crm?sslmode=require");
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert!(!tls.checks_chain() && !tls.checks_host_name());
        // As libpq: a root certificate makes `require` check the chain.
        let (_, tls) = settings("postgres://etl@db/crm?sslmode=require&sslrootcert=/ca.pem");
        assert!(tls.checks_chain() && !tls.checks_host_name());
        let (config, tls) = settings("postgres://etl@db/crm?sslmode=verify-ca");
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert!(tls.checks_chain() && !tls.checks_host_name());
        assert_eq!(tls.root_cert, None);
        let (_, tls) = settings("postgres://etl@db/crm?sslmode=verify-full&sslrootcert=system");
        assert!(tls.checks_chain() && tls.checks_host_name());
        assert_eq!(tls.root_cert, Some(RootCert::System));
    }

    #[test]
    fn validate_reads_no_variable_and_no_file_and_names_the_key() {
        let connection = PostgresConnection {
            url_env: Some("CDP_TEST_SURELY_UNSET_URL".into()),
            password_file: Some("/nonexistent/cdp/password".into()),
            ..PostgresConnection::default()
        };
        assert_eq!(connection.validate(), Ok(()));
        assert!(connection.to_config("pg").is_err());
        let key = |connection: PostgresConnection| connection.validate().unwrap_err()[0].key;
        assert_eq!(
            key(PostgresConnection::url("postgres://etl@db:port/crm")),
            "url"
        );
        assert_eq!(key(PostgresConnection::url("postgres://db/crm")), "user");
        assert_eq!(
            key(PostgresConnection::url(
                "postgres://etl@db/crm?sslmode=bogus"
            )),
            "url"
        );
        assert_eq!(
            key(PostgresConnection::url(
                "postgres://etl@db/crm?sslmode=require&sslrootcert=system"
            )),
            "sslrootcert"
        );
        assert_eq!(
            key(PostgresConnection::url(
                "postgres://etl@db/crm?sslcert=/c.pem"
            )),
            "sslkey"
        );
        let empty = PostgresConnection {
            password_env: Some(String::new()),
            ..PostgresConnection::url("postgres://etl@db/crm")
        };
        assert_eq!(key(empty), "password_env");
        #[cfg(not(feature = "tls"))]
        assert_eq!(
            key(PostgresConnection::url("postgres://etl@db/crm")
                .with_sslmode(PostgresSslMode::Require)),
            "sslmode"
        );
        // The URL's password never shows.
        let problems = PostgresConnection::url("postgres://etl:s3cret@db:port/crm")
            .validate()
            .unwrap_err();
        assert!(!problems[0].message.contains("s3cret"), "{}", problems[0]);
    }

    #[test]
    fn inconsistent_tls_settings_are_refused() {
        let err = |url: &str| {
            PostgresConnection::url(url)
                .to_config("pg")
                .unwrap_err()
                .to_string()
        };
        assert!(err("postgres://etl@db/crm?sslmode=verfy-full").contains("unknown sslmode"));
        assert!(
            err("postgres://etl@db/crm?sslmode=verify-ca&sslrootcert=system")
                .contains("verify-full")
        );
        assert!(err("postgres://etl@db/crm?sslcert=/c.pem").contains("sslkey"));
        // Errors about the URL never show its password.
        let text = err("postgres://etl:s3cret@db/crm?sslmode=bogus&sslrootcert=x");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
