//! The ClickHouse store: connection ([`ClickHouse`]), schema ([`migrations`]), retention
//! ([`retention`]), the [`crate::store::Store`] the sink loop writes through ([`store`],
//! rows from [`crate::rows`]) and the deduplicating read helpers ([`query`]).
//!
//! Everything here speaks RowBinary over HTTP through the official `clickhouse` crate,
//! with validation off (ClickHouse 18.16, the Debian version used in tests, does not answer
//! the crate's schema probe) and SQL that runs on 18.16 and on current ClickHouse. Where
//! the two need different statements or settings, the code asks [`ClickHouse::server_version`]
//! and chooses; `docs/clickhouse-versions.md` lists every such place.

pub mod migrations;
pub mod query;
pub mod retention;
pub mod store;

pub use store::ClickHouseStore;

use clickhouse::Client;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SinkError};

/// Where the ClickHouse store is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding the Helios tables; created by the migrations.
    #[serde(default = "default_database")]
    pub database: String,
    /// User name; ClickHouse's `default` when unset.
    #[serde(default)]
    pub user: Option<String>,
    /// Password of `user`.
    #[serde(default)]
    pub password: Option<String>,
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
        }
    }

    /// Sets the database.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self
    }

    /// Checks the URL scheme and the database name without touching the network.
    pub fn validate(&self) -> Result<()> {
        if !self.url.starts_with("http://") {
            return Err(SinkError::config(
                "ClickHouse URL must be an http:// URL of the HTTP interface",
                &self.url,
                "use the HTTP port, e.g. http://127.0.0.1:8123 (TLS is not built in)",
            ));
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
        let mut server = Client::default()
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
