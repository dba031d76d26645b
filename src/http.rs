//! The HTTP serving settings of the commands that serve (`helios up`, `helios serve api`,
//! `helios run ingest`), and the one call every listener serves through
//! ([`helios_query_api::server::serve`]: timeouts, connection cap, `Host` check).

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use clap::Args;
use helios_connectors::body::UnverifiedBodies;
use helios_query_api::auth::MetricsAccess;
use helios_query_api::server::{AllowedHosts, ServerConfig};
use tokio::net::TcpListener;

/// How the HTTP listener treats connections.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// How long a client has to send a request's headers, counted from when it connects
    /// or its previous answer was sent (so also how long an idle kept-alive connection
    /// stays open). Slower clients are disconnected.
    #[arg(long, env = "HELIOS_HTTP_HEADER_TIMEOUT", default_value = "10s",
          value_parser = parse_positive_duration)]
    pub http_header_timeout: Duration,

    /// A connection on which no byte moved either way for this long is closed (a stalled
    /// upload, a client that stopped reading its answer). Keep it above --request-timeout.
    #[arg(long, env = "HELIOS_HTTP_IDLE_TIMEOUT", default_value = "60s",
          value_parser = parse_positive_duration)]
    pub http_idle_timeout: Duration,

    /// Connections served at once. At the cap, new connections wait in the kernel's
    /// listen queue until one closes (they are not refused). Keep it below the open-file
    /// limit (`ulimit -n`).
    #[arg(long, env = "HELIOS_HTTP_MAX_CONNECTIONS",
          default_value_t = ServerConfig::DEFAULT_MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,

    /// Host names the dashboard, /healthz, /readyz and public /metrics answer under,
    /// besides IP addresses and `localhost` (comma-separated; `*.example.com` for every
    /// subdomain). Requests to them under other names get `421` (protection against DNS
    /// rebinding). Routes that need an API key, and webhooks, are not checked.
    #[arg(
        long,
        env = "HELIOS_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<String>,
}

impl HttpArgs {
    /// The server's settings; `metrics_auth`: whether `/metrics` needs a key (then it is
    /// not host-checked).
    pub fn config(&self, metrics_auth: bool) -> anyhow::Result<ServerConfig> {
        let allowed_hosts = AllowedHosts::new(&self.allowed_hosts)
            .map_err(|e| anyhow::anyhow!("--allowed-hosts: {e}"))?;
        Ok(ServerConfig {
            header_read_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections: self.http_max_connections as usize,
            allowed_hosts,
            metrics: if metrics_auth {
                MetricsAccess::NeedsKey
            } else {
                MetricsAccess::Public
            },
        })
    }
}

/// Limits of the webhook routes that are not per source.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Bytes that webhook bodies read before their request is authenticated (GitHub
    /// deliveries: the signature covers the body) may take, all requests together. Past
    /// it, such requests get `503` with Retry-After before their body is read. At least
    /// every GitHub source's `max_body_bytes` (25 MiB by default). E.g. `64MiB`, bytes.
    #[arg(long, env = "HELIOS_UNVERIFIED_BODY_BUDGET", default_value = "64MiB",
          value_parser = crate::commands::keys::parse_size)]
    pub unverified_body_budget: usize,
}

impl WebhookArgs {
    pub fn budget(&self) -> UnverifiedBodies {
        UnverifiedBodies::new(self.unverified_body_budget)
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in
/// flight (the one place every Helios listener is served).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    helios_query_api::server::serve(listener, app, config, shutdown)
        .await
        .context("serving HTTP")
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like `10s` or `2m`: {e}"))?;
    if d.is_zero() {
        return Err("the duration must be longer than 0s".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        webhooks: WebhookArgs,
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["helios"]).unwrap();
        let config = cli.http.config(false).unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.allowed_hosts, AllowedHosts::default());
        assert_eq!(cli.webhooks.unverified_body_budget, 64 << 20);

        let cli = Cli::try_parse_from([
            "helios",
            "--http-header-timeout",
            "2s",
            "--http-max-connections",
            "10",
            "--allowed-hosts",
            "helios.lan,*.example.com",
            "--unverified-body-budget",
            "30MiB",
        ])
        .unwrap();
        let config = cli.http.config(true).unwrap();
        assert_eq!(config.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.max_connections, 10);
        assert!(config.allowed_hosts.allows(Some("x.example.com")));
        assert!(config.allowed_hosts.allows(Some("helios.lan:8080")));
        assert_eq!(config.metrics, MetricsAccess::NeedsKey);
        assert_eq!(cli.webhooks.budget().total(), 30 << 20);

        for bad in [
            &["helios", "--http-header-timeout", "0s"][..],
            &["helios", "--http-max-connections", "0"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from(["helios", "--allowed-hosts", "http://x"]).unwrap();
        assert!(cli.http.config(false).is_err());
    }
}
