//! The listeners of the serving stages, in one place: their settings (`--http-*`,
//! `--allowed-hosts`, `--tls-cert-file`/`--tls-key-file`, `--unverified-body-budget`), the
//! URL Helios gives itself (printed, and probed by the default `self` probe), binding (a taken port stops the process
//! before anything starts, saying what to do), serving a router through
//! [`helios_query_api::server::serve`] (timeouts, connection cap, `Host` check) until the
//! process is asked to stop, and the `/healthz` and `/metrics` listener of the stages that
//! serve no other HTTP (`helios run pipeline|sink --metrics-listen`), which passes the
//! auth policy like every other listener.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use clap::Args;
use helios_connectors::body::UnverifiedBodies;
use helios_query_api::auth::MetricsAccess;
use helios_query_api::metrics::MetricsRegistry;
use helios_query_api::server::{AllowedHosts, ServerConfig};
use helios_schemas::tls::{ClientCaFiles, IdentityFiles, ServerTls};
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Binds `addr`; `flag` is the option that sets it, named in the error.
pub async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} (is another process using it? try {flag})"))
}

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

    /// Serve HTTPS instead of HTTP, with this certificate (PEM: the server's own
    /// certificate first, then any intermediates). Needs --tls-key-file. Clients must
    /// trust its CA (`helios send --ca-file`, Grafana's "With CA Cert"); Helios names
    /// itself by the certificate's first DNS name (the `self` probe asks
    /// https://<that name>:<port>/healthz, trusting --ca-file).
    #[arg(long, env = "HELIOS_TLS_CERT_FILE", value_name = "PEM")]
    pub tls_cert_file: Option<PathBuf>,

    /// The private key of --tls-cert-file (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "HELIOS_TLS_KEY_FILE", value_name = "PEM")]
    pub tls_key_file: Option<PathBuf>,

    /// Admit only callers that present a TLS client certificate issued by a CA of this
    /// file (PEM; mutual TLS): a connection without one, or with one of another CA, ends
    /// in the handshake, before any request is read. Needs --tls-cert-file. API keys
    /// still decide what a caller may do. Helios' own `self` probe and `helios send` then
    /// need --client-cert-file and --client-key-file. Reloaded with the certificate.
    #[arg(long, env = "HELIOS_TLS_CLIENT_CA_FILE", value_name = "PEM")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// Refuse client certificates that these revocation lists name (PEM, one or more
    /// `X509 CRL` blocks, e.g. from `openssl ca -gencrl`): for a lost laptop's certificate,
    /// without replacing the CA. A CA without a list here is not checked for revocation.
    /// Needs --tls-client-ca-file. Reloaded with it: publish a new list and the next
    /// handshakes are checked against it.
    #[arg(long, env = "HELIOS_TLS_CLIENT_CRL_FILE", value_name = "PEM")]
    pub tls_client_crl_file: Option<PathBuf>,

    /// How often the certificate and key files (and the client CA and revocation list
    /// files) are checked for a renewal (certbot, cert-manager): when one changed, all are
    /// loaded again and new connections get them, without a restart. Files that do not
    /// load are logged and what was served stays.
    #[arg(long, env = "HELIOS_TLS_RELOAD_INTERVAL", default_value = "1m",
          value_parser = parse_positive_duration)]
    pub tls_reload_interval: Duration,

    /// Log one line per request answered (level info, target `helios::access`): method,
    /// path without its query string, status, milliseconds, the API key's id if one was
    /// accepted, and the caller's address (and, under --tls-client-ca-file, its
    /// certificate's CN and SHA-256). Off by default: webhooks at a high rate would flood
    /// the log. `--log warn,helios::access=info` keeps only these lines and warnings.
    #[arg(long, env = "HELIOS_ACCESS_LOG")]
    pub access_log: bool,
}

impl HttpArgs {
    /// The listener's certificate, read and checked now (so a bad file stops the start,
    /// named), and from now on reloaded when its files change ([`watch_certificate`]);
    /// `None` for plain HTTP.
    pub fn tls(&self) -> anyhow::Result<Option<ServerTls>> {
        load_tls(
            TlsFlags {
                cert: self.tls_cert_file.clone(),
                key: self.tls_key_file.clone(),
                client_ca: self.tls_client_ca_file.clone(),
                client_crl: self.tls_client_crl_file.clone(),
                pair: "--tls-cert-file and --tls-key-file",
                client_ca_flag: "--tls-client-ca-file",
                client_crl_flag: "--tls-client-crl-file",
            },
            self.tls_reload_interval,
        )
        .inspect(|tls| {
            if tls.is_some()
                && self.tls_client_ca_file.is_some()
                && crate::backend::outbound().identity.is_none()
            {
                warn!("--tls-client-ca-file asks every caller for a client certificate, and this process presents none: its own `self` probe of this listener (helios up, helios run ingest) will be refused. Give --client-cert-file and --client-key-file with a certificate that CA issued.");
            }
        })
    }

    /// The server's settings; `metrics_auth`: whether `/metrics` needs a key (then it is
    /// not host-checked); `tls`: from [`HttpArgs::tls`].
    pub fn config(
        &self,
        metrics_auth: bool,
        tls: Option<&ServerTls>,
    ) -> anyhow::Result<ServerConfig> {
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
            tls: tls.map(|t| t.config.clone()),
            access_log: self.access_log,
        })
    }
}

/// A listener's TLS files as given, and the flags that set them (for the errors).
struct TlsFlags {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_crl: Option<PathBuf>,
    /// The certificate and key flags, e.g. `--tls-cert-file and --tls-key-file`.
    pair: &'static str,
    client_ca_flag: &'static str,
    client_crl_flag: &'static str,
}

/// A listener's certificate from its pair of files, and the CAs (and revocation lists) of
/// its callers' client certificates if given, read and checked now (a bad file stops the
/// start, named) and reloaded every `every` when they change ([`watch_certificate`]);
/// `None` without any file. Half a pair, client CAs without a certificate, or revocation
/// lists without client CAs, is an error that names what to add.
fn load_tls(flags: TlsFlags, every: Duration) -> anyhow::Result<Option<ServerTls>> {
    let TlsFlags {
        cert,
        key,
        client_ca,
        client_crl,
        pair,
        client_ca_flag,
        client_crl_flag,
    } = flags;
    if client_crl.is_some() && client_ca.is_none() {
        anyhow::bail!(
            "{client_crl_flag} revokes client certificates, which are only asked for with {client_ca_flag}: give the CA file too"
        );
    }
    let files = IdentityFiles::pair(cert, key)
        .map_err(|missing| anyhow::anyhow!("HTTPS needs both {pair}; the {missing} is missing"))?;
    let Some(files) = files else {
        if client_ca.is_some() {
            anyhow::bail!(
                "{client_ca_flag} asks callers for client certificates, which only HTTPS can: give {pair} too"
            );
        }
        return Ok(None);
    };
    let client_cas = client_ca.map(|ca_file| ClientCaFiles {
        ca_file,
        crl_file: client_crl,
    });
    let tls = files.server_tls(client_cas.as_ref())?;
    watch_certificate(tls.clone(), every);
    Ok(Some(tls))
}

/// Checks the files of `tls` every `every`; when one changed (modification time or
/// size), loads them all again ([`ServerTls::reload`]), so a renewed certificate (or a CA
/// added to the client CA file) is served without a restart. Files that do not load (a
/// renewal written half-way, a key of another certificate) are logged and what is served
/// stays; the files are tried again when they next change.
fn watch_certificate(tls: ServerTls, every: Duration) {
    async fn stamps(paths: &[PathBuf]) -> Vec<Option<(std::time::SystemTime, u64)>> {
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let meta = tokio::fs::metadata(path).await.ok();
            out.push(meta.and_then(|m| Some((m.modified().ok()?, m.len()))));
        }
        out
    }
    tokio::spawn(async move {
        let files = tls.files().clone();
        let watched = tls.watched_files();
        let mut seen = stamps(&watched).await;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = stamps(&watched).await;
            if now == seen {
                continue;
            }
            seen = now;
            // File reads, off the runtime's threads (a slow disk must not stall requests).
            let reloading = tls.clone();
            let reloaded = tokio::task::spawn_blocking(move || reloading.reload())
                .await
                .unwrap_or_else(|e| {
                    Err(helios_schemas::Error::ServerIdentity {
                        path: files.cert_file.clone(),
                        reason: format!("reloading stopped: {e}"),
                    })
                });
            match reloaded {
                Ok(()) => info!(cert_file = %files.cert_file.display(),
                    "Reloaded the TLS certificate: new connections get the renewed one."),
                Err(e) => warn!(error = %e,
                    "The TLS files changed but do not load; still serving the previous certificate and client CAs (fix the files: they are read again when they change)."),
            }
        }
    });
}

/// The URL Helios serves on at `addr` (bound), as a client on this machine reaches it:
/// `http://<addr>`, an unspecified address (`0.0.0.0`, `::`) as loopback; with TLS,
/// `https://<the certificate's first DNS name>:<port>`, the name a client must use for the
/// certificate to match (or the address, for a certificate that names none).
pub fn own_url(addr: SocketAddr, tls: Option<&ServerTls>) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    match tls.and_then(|t| t.dns_names.first()) {
        Some(name) => format!("https://{name}:{}", addr.port()),
        None if tls.is_some() => format!("https://{addr}"),
        None => format!("http://{addr}"),
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
          value_parser = parse_size)]
    pub unverified_body_budget: usize,
}

impl WebhookArgs {
    pub fn budget(&self) -> UnverifiedBodies {
        UnverifiedBodies::new(self.unverified_body_budget)
    }

    /// What a spec's sources must fit (`crate::spec::check`).
    pub fn limits(&self) -> crate::spec::Limits {
        crate::spec::Limits {
            unverified_body_budget: Some(self.unverified_body_budget),
        }
    }
}

/// Serves `app` on `listener` with `config` until `stop` resolves, then finishes the
/// requests in flight (the one place every Helios listener is served).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    helios_query_api::server::serve(listener, app, config, stop)
        .await
        .context("serving HTTP")
}

/// A duration longer than zero, e.g. `10s` or `2m`.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like `10s` or `2m`: {e}"))?;
    if d.is_zero() {
        return Err("the duration must be longer than 0s".into());
    }
    Ok(d)
}

/// Bytes, or a number with `KiB`, `MiB` or `GiB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" => 10,
        "MiB" | "M" => 20,
        "GiB" | "G" => 30,
        other => {
            return Err(format!(
                "`{other}` is not a size unit; write bytes or a number with KiB, MiB or GiB (e.g. 2MiB)"
            ));
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size; write e.g. 2MiB, 512KiB or 1048576"))?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes == 0 {
        return Err("the size must be at least 1 byte".into());
    }
    Ok(bytes)
}

/// `GET /healthz` for a listener whose routes bring none of their own.
pub fn health_routes() -> Router {
    Router::new().route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    )
}

/// `/metrics` and `/healthz` alone, for the stages that serve no other HTTP; like every
/// listener it passes `auth::policy`, which makes both public (this listener has no keys,
/// so a route the policy keys is refused with `401`).
pub fn stage_router(registry: MetricsRegistry) -> Router {
    helios_query_api::auth::public_only(
        health_routes().merge(helios_query_api::metrics::router(registry)),
    )
}

/// The `/metrics` and `/healthz` listener of `helios run pipeline|sink`, over HTTP or
/// HTTPS.
#[derive(Debug, Clone, Args)]
pub struct MetricsListenArgs {
    /// Serve `GET /metrics` (Prometheus) and `/healthz` on this address, e.g.
    /// `0.0.0.0:9464`. Off by default.
    #[arg(long, env = "HELIOS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Serve --metrics-listen over HTTPS with this certificate (PEM: the server's own
    /// certificate first, then any intermediates). Needs --metrics-tls-key-file.
    /// Prometheus must trust its CA (`tls_config: { ca_file: ... }` in the scrape job).
    /// The files are checked every minute and a renewal is served without a restart.
    #[arg(long, env = "HELIOS_METRICS_TLS_CERT_FILE", value_name = "PEM")]
    pub metrics_tls_cert_file: Option<PathBuf>,

    /// The private key of --metrics-tls-cert-file (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "HELIOS_METRICS_TLS_KEY_FILE", value_name = "PEM")]
    pub metrics_tls_key_file: Option<PathBuf>,

    /// Admit only scrapers that present a client certificate issued by a CA of this file
    /// (PEM; mutual TLS: Prometheus's `tls_config: { cert_file: ..., key_file: ... }`).
    /// Needs --metrics-tls-cert-file.
    #[arg(long, env = "HELIOS_METRICS_TLS_CLIENT_CA_FILE", value_name = "PEM")]
    pub metrics_tls_client_ca_file: Option<PathBuf>,

    /// Refuse scrapers' client certificates that these revocation lists name (PEM).
    /// Needs --metrics-tls-client-ca-file.
    #[arg(long, env = "HELIOS_METRICS_TLS_CLIENT_CRL_FILE", value_name = "PEM")]
    pub metrics_tls_client_crl_file: Option<PathBuf>,
}

impl MetricsListenArgs {
    /// Starts the listener if one is asked for, with the registry `registry` makes
    /// (reading and checking the certificate first, so a bad file stops the start, named).
    pub async fn serve(&self, registry: impl FnOnce() -> MetricsRegistry) -> anyhow::Result<()> {
        let flags = TlsFlags {
            cert: self.metrics_tls_cert_file.clone(),
            key: self.metrics_tls_key_file.clone(),
            client_ca: self.metrics_tls_client_ca_file.clone(),
            client_crl: self.metrics_tls_client_crl_file.clone(),
            pair: "--metrics-tls-cert-file and --metrics-tls-key-file",
            client_ca_flag: "--metrics-tls-client-ca-file",
            client_crl_flag: "--metrics-tls-client-crl-file",
        };
        let Some(addr) = self.metrics_listen else {
            let given = [&flags.cert, &flags.key, &flags.client_ca, &flags.client_crl];
            if given.iter().any(|f| f.is_some()) {
                anyhow::bail!(
                    "--metrics-tls-* files are set but --metrics-listen is not: give the address to serve /metrics on"
                );
            }
            return Ok(());
        };
        let tls = load_tls(flags, Duration::from_secs(60))?;
        serve_stage(addr, tls, registry()).await
    }
}

/// Binds `addr` (so a taken port stops the stage before it starts) and serves
/// [`stage_router`], over HTTPS with `tls`, until the process ends.
pub async fn serve_stage(
    addr: SocketAddr,
    tls: Option<ServerTls>,
    registry: MetricsRegistry,
) -> anyhow::Result<()> {
    let listener = bind(addr, "another --metrics-listen").await?;
    let local = listener.local_addr()?;
    info!(url = %format!("{}/metrics", own_url(local, tls.as_ref())), "Serving metrics.");
    // Defaults of `helios up`'s listener (timeouts, cap, Host check); it serves until the
    // process ends.
    let config = ServerConfig {
        tls: tls.map(|t| t.config.clone()),
        ..ServerConfig::default()
    };
    tokio::spawn(async move {
        let stage = stage_router(registry);
        if let Err(e) = serve(listener, stage, config, std::future::pending()).await {
            warn!(error = %format!("{e:#}"), "The metrics listener stopped.");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stage_router_serves_metrics_and_health() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            async move { axum::serve(listener, stage_router(MetricsRegistry::new())).await },
        );
        helios_schemas::tls::install_default_provider();
        let client = reqwest::Client::new();
        for path in ["/metrics", "/healthz"] {
            let resp = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        }
        // The auth policy guards this listener too: a keyed route is refused, not a 404.
        let resp = client
            .get(format!("http://{addr}/v1/sources"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }

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
        let config = cli.http.config(false, None).unwrap();
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
        let config = cli.http.config(true, None).unwrap();
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
        assert!(cli.http.config(false, None).is_err());
    }

    #[test]
    fn sizes_in_bytes_and_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert!(parse_size("2MB").unwrap_err().contains("`MB`"));
        assert!(parse_size("0").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn timeouts_must_be_positive_durations() {
        assert_eq!(parse_positive_duration("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("soon").is_err());
    }

    #[test]
    fn helios_names_itself_by_loopback_when_it_listens_everywhere() {
        assert_eq!(
            own_url("127.0.0.1:8080".parse().unwrap(), None),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            own_url("0.0.0.0:9000".parse().unwrap(), None),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            own_url("[::]:9000".parse().unwrap(), None),
            "http://[::1]:9000"
        );
    }
}
