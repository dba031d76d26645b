//! The ClickHouse store: connection ([`ClickHouse`]), schema ([`migrations`]), retention
//! ([`retention`]), the [`crate::store::Store`] the sink loop writes through ([`store`],
//! rows from [`crate::rows`]) and the deduplicating read helpers ([`query`]).
//!
//! Everything here speaks RowBinary over HTTP or HTTPS through the official `clickhouse`
//! crate, on a hyper client whose TLS is the one setup of `helios_schemas::tls` (rustls,
//! ring, Mozilla's roots plus an optional CA file), with a user and password when given,
//! and with validation off (ClickHouse 18.16, the Debian version used in tests, does not
//! answer the crate's schema probe), and SQL that runs on 18.16 and on current ClickHouse.
//! Where the two need different statements or settings, the code asks
//! [`ClickHouse::server_version`] and chooses; `docs/clickhouse-versions.md` lists every
//! such place.

pub mod migrations;
pub mod query;
pub mod retention;
pub mod store;

pub use store::ClickHouseStore;

use std::path::PathBuf;
use std::time::Duration;

use clickhouse::Client;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SinkError};

/// What a ClickHouse error says when the server refused our user or password, or TLS
/// refused the server's certificate (which of the two, and the setting to check); `None`
/// for every other error. The read API's errors use it too.
pub fn access_problem(e: &clickhouse::error::Error) -> Option<String> {
    crate::error::clickhouse_access_problem(e)
}

/// Where the ClickHouse store is, and as whom Helios connects.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP(S) endpoint, e.g. `http://127.0.0.1:8123` or `https://host:8443`.
    pub url: String,
    /// Database holding the Helios tables; created by the migrations.
    #[serde(default = "default_database")]
    pub database: String,
    /// User name; ClickHouse's `default` when unset.
    #[serde(default)]
    pub user: Option<String>,
    /// Password of `user` (never logged: `Debug` hides it).
    #[serde(default)]
    pub password: Option<String>,
    /// PEM file of the CA certificate(s) to trust besides Mozilla's roots, for a server
    /// whose certificate a private CA signed (`https://` URLs).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and any intermediates) to present to a server
    /// that requires mutual TLS; with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

fn default_database() -> String {
    "helios".to_owned()
}

impl ClickHouseConfig {
    /// The store at `url`, database `helios`.
    pub fn new(url: impl Into<String>) -> Self {
        ClickHouseConfig {
            url: url.into(),
            database: default_database(),
            user: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }

    /// Connects as `user` with `password` (ClickHouse's `default` user without a password
    /// when both are `None`).
    pub fn credentials(mut self, user: Option<String>, password: Option<String>) -> Self {
        self.user = user;
        self.password = password;
        self
    }

    /// Trusts the CA certificate(s) in `ca_file` (PEM) besides Mozilla's roots.
    pub fn ca_file(mut self, ca_file: Option<PathBuf>) -> Self {
        self.ca_file = ca_file;
        self
    }

    /// Presents the client certificate in `cert_file` with its key in `key_file` (PEM)
    /// to a server that requires mutual TLS.
    pub fn client_certificate(
        mut self,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> Self {
        self.cert_file = cert_file;
        self.key_file = key_file;
        self
    }

    /// The client certificate and key, when both are set.
    fn identity(&self) -> Option<helios_schemas::tls::ClientIdentity<'_>> {
        Some(helios_schemas::tls::ClientIdentity {
            cert_file: self.cert_file.as_deref()?,
            key_file: self.key_file.as_deref()?,
        })
    }

    /// Sets the database.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self
    }

    /// Checks the URL scheme and the database name without touching the network.
    pub fn validate(&self) -> Result<()> {
        // Never echo a URL that carries a password: it would reach the terminal, the logs
        // and every later error message.
        let shown = helios_schemas::tls::shown_url(&self.url);
        if helios_schemas::tls::url_has_credentials(&self.url) {
            return Err(SinkError::config(
                "the ClickHouse URL carries a user or password, which would show in logs, \
                 errors and the process list",
                shown,
                "give the URL without them and the user as --clickhouse-user \
                 (HELIOS_CLICKHOUSE_USER, [clickhouse] user), the password in \
                 HELIOS_CLICKHOUSE_PASSWORD or a file named by --clickhouse-password-file",
            ));
        }
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(SinkError::config(
                "ClickHouse URL must be an http:// or https:// URL of the HTTP interface",
                shown,
                "use the HTTP port, e.g. http://127.0.0.1:8123, or the HTTPS port, e.g. \
                 https://clickhouse.example:8443",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(SinkError::config(
                    "a ClickHouse client certificate needs both its certificate and its key",
                    if self.cert_file.is_some() {
                        "cert_file"
                    } else {
                        "key_file"
                    },
                    "set both --clickhouse-cert-file and --clickhouse-key-file ([clickhouse] \
                     cert_file and key_file), or neither",
                ));
            }
            (Some(_), Some(_)) if !self.url.starts_with("https://") => {
                return Err(SinkError::config(
                    "a ClickHouse client certificate is only presented over HTTPS",
                    &self.url,
                    "use the server's HTTPS port (https://host:8443), or drop the client \
                     certificate",
                ));
            }
            _ => {}
        }
        let ok = !self.database.is_empty()
            && self
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !self.database.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            return Err(SinkError::config(
                "ClickHouse database name is not a plain identifier",
                &self.database,
                "use ASCII letters, digits and `_`, not starting with a digit",
            ));
        }
        Ok(())
    }
}

/// TCP keepalive and idle-connection timeout of the client's pool: the `clickhouse`
/// crate's own defaults (the server closes idle connections after 3 s).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The hyper client under the `clickhouse` client: HTTP, or HTTPS with the one TLS setup
/// of `helios_schemas::tls` (ring, Mozilla's roots and `config.ca_file`; the client
/// certificate of `config.cert_file` and `key_file` for a server that asks for one).
fn base_client(config: &ClickHouseConfig) -> Result<Client> {
    let mut tls =
        helios_schemas::tls::client_config_with(config.ca_file.as_deref(), config.identity())
            .map_err(|e| {
                SinkError::config(
                    "cannot set up TLS for ClickHouse",
                    e.to_string(),
                    "check --clickhouse-ca-file, --clickhouse-cert-file and --clickhouse-key-file \
             (HELIOS_CLICKHOUSE_CA_FILE, …; [clickhouse] ca_file, cert_file, key_file)",
                )
            })?;
    // hyper-rustls announces the HTTP versions it enables itself (and refuses a preset).
    tls.alpn_protocols.clear();
    let mut tcp = HttpConnector::new();
    tcp.set_keepalive(Some(TCP_KEEPALIVE));
    tcp.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::with_http_client(
        HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector),
    ))
}

/// A connection to the store: a pooled HTTP client bound to the Helios database.
#[derive(Clone)]
pub struct ClickHouse {
    client: Client,
    server: Client,
    url: String,
    database: String,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("url", &self.url)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl ClickHouse {
    /// A client for `config`; does not connect until the first statement.
    pub fn new(config: &ClickHouseConfig) -> Result<Self> {
        config.validate()?;
        // No settings on the client: every request would carry them, and a setting the
        // server does not know fails the request (see `migrations::ddl_settings`).
        let mut server = base_client(config)?
            .with_url(&config.url)
            .with_validation(false);
        if let Some(user) = &config.user {
            server = server.with_user(user);
        }
        if let Some(password) = &config.password {
            server = server.with_password(password);
        }
        let client = server.clone().with_database(&config.database);
        Ok(ClickHouse {
            client,
            server,
            url: config.url.clone(),
            database: config.database.clone(),
        })
    }

    /// The client bound to the Helios database.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The Helios database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs one statement in the Helios database.
    pub async fn execute(&self, action: &str, sql: &str) -> Result<()> {
        self.client
            .query(sql)
            .execute()
            .await
            .map_err(|e| SinkError::clickhouse(&self.url, action, e))
    }

    /// Runs one statement in the Helios database with per-statement settings (sent as URL
    /// parameters, for this statement only).
    pub async fn execute_with(
        &self,
        action: &str,
        sql: &str,
        settings: &[(&str, &str)],
    ) -> Result<()> {
        let mut query = self.client.query(sql);
        for (name, value) in settings {
            query = query.with_option(*name, *value);
        }
        query
            .execute()
            .await
            .map_err(|e| SinkError::clickhouse(&self.url, action, e))
    }

    /// Creates the Helios database if it is missing.
    pub async fn ensure_database(&self) -> Result<()> {
        let sql = format!("CREATE DATABASE IF NOT EXISTS `{}`", self.database);
        self.server
            .query(&sql)
            .execute()
            .await
            .map_err(|e| SinkError::clickhouse(&self.url, "creating the database", e))
    }

    /// Drops the Helios database with everything in it (tests and `--reset` only).
    pub async fn drop_database(&self) -> Result<()> {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.database);
        self.server
            .query(&sql)
            .execute()
            .await
            .map_err(|e| SinkError::clickhouse(&self.url, "dropping the database", e))
    }

    /// The server version as (major, minor).
    pub async fn server_version(&self) -> Result<(u32, u32)> {
        let v: String = self
            .server
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|e| SinkError::clickhouse(&self.url, "reading the server version", e))?;
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Ok((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::ClickHouseConfig;

    #[test]
    fn a_url_that_carries_a_password_is_refused_without_showing_it() {
        for url in [
            "https://default:s3cret@abc.clickhouse.cloud:8443",
            "http://127.0.0.1:8123/?user=default&password=s3cret",
            "clickhouse://default:s3cret@abc.clickhouse.cloud:9440",
        ] {
            let e = ClickHouseConfig::new(url)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(!e.contains("s3cret"), "{e}");
            assert!(
                e.contains("--clickhouse-user") && e.contains("HELIOS_CLICKHOUSE_PASSWORD"),
                "{e}"
            );
        }
        ClickHouseConfig::new("https://abc.clickhouse.cloud:8443")
            .validate()
            .unwrap();
    }
}
