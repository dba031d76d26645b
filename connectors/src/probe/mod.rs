//! Uptime probes: owns sending `GET` to an HTTP(S) URL on an interval and turning each
//! attempt into one `probe.http` event: value = latency in ms (until the whole body is
//! read), attrs `url`, `status`, `ok` and, when not ok, `error`. An unreachable URL is an
//! event with `ok = false`, not a failure of the source.
//!
//! HTTP goes through hyper's client with `hyper-rustls` and the TLS of
//! `helios_schemas::tls` (rustls on `ring`, the Mozilla root certificates compiled in, and
//! the probe's `ca_file` for a private CA): no OpenSSL, no aws-lc/cmake build, no system
//! certificate store needed (ADR-018).
//! Connections are not pooled, so every probe measures a fresh connect (and handshake).

mod config;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use helios_schemas::Event;
use helios_schemas::tls::IdentityFiles;
use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tracing::debug;

pub use config::ProbeConfig;

use crate::runtime::{PullSource, SourceContext, now_micros};
use crate::{ConnectorError, Result};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The running probe.
#[derive(Debug)]
pub struct ProbeSource {
    config: ProbeConfig,
    uri: Uri,
    subject: String,
    client: HttpsClient,
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    status: Option<u16>,
    latency_ms: Option<f64>,
    error: Option<String>,
}

impl ProbeSource {
    /// Fails on settings that `validate()` refuses.
    pub fn new(config: ProbeConfig) -> Result<Self> {
        config
            .validate()
            .map_err(|m| ConnectorError::config(&config.name, m))?;
        let uri = config
            .uri()
            .map_err(|m| ConnectorError::config(&config.name, m))?;
        let subject = config
            .subject
            .clone()
            .or_else(|| uri.host().map(str::to_string))
            .unwrap_or_default();
        // The one outbound TLS setup of Helios (ADR-018); hyper-rustls sets ALPN itself.
        // A `ca_file` that cannot be read or holds no certificate stops the start, named.
        // So does a client certificate or key that cannot be used.
        let identity = config
            .identity()
            .map_err(|m| ConnectorError::config(&config.name, m))?;
        let mut tls = helios_schemas::tls::client_config_with(
            config.ca_file.as_deref(),
            identity.as_ref().map(IdentityFiles::identity),
        )
        .map_err(|e| {
            let setting = match e {
                helios_schemas::Error::ClientIdentity { .. } => "`cert_file`/`key_file`",
                _ => "`ca_file`",
            };
            ConnectorError::config(&config.name, format!("{setting}: {e}"))
        })?;
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Ok(ProbeSource {
            config,
            uri,
            subject,
            client,
        })
    }

    async fn attempt(&self) -> Outcome {
        let started = Instant::now();
        let request = hyper::Request::get(self.uri.clone())
            .header(hyper::header::USER_AGENT, "helios-probe")
            .body(Empty::<Bytes>::new());
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                return Outcome {
                    status: None,
                    latency_ms: None,
                    error: Some(format!("cannot build the request: {e}")),
                };
            }
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(describe)?;
            let status = response.status().as_u16();
            // Read the whole body so the latency covers the full answer.
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the body failed: {e}"))?;
            Ok::<u16, String>(status)
        };
        match tokio::time::timeout(self.config.timeout, exchange).await {
            Ok(Ok(status)) => {
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                let error = (status != self.config.expected_status).then(|| {
                    format!(
                        "expected status {}, got {status}",
                        self.config.expected_status
                    )
                });
                Outcome {
                    status: Some(status),
                    latency_ms: Some(latency_ms),
                    error,
                }
            }
            Ok(Err(error)) => Outcome {
                status: None,
                latency_ms: None,
                error: Some(error),
            },
            Err(_) => Outcome {
                status: None,
                latency_ms: None,
                error: Some(format!(
                    "no complete answer within {}",
                    humantime::format_duration(self.config.timeout)
                )),
            },
        }
    }

    fn event(&self, source: &str, time: i64, outcome: Outcome) -> Event {
        let mut attrs = BTreeMap::new();
        attrs.insert("url".to_string(), self.config.url.clone());
        attrs.insert("ok".to_string(), outcome.error.is_none().to_string());
        if let Some(status) = outcome.status {
            attrs.insert("status".to_string(), status.to_string());
        }
        if let Some(error) = outcome.error {
            attrs.insert("error".to_string(), error);
        }
        Event {
            id: format!("{source}@{time}"),
            source: source.to_string(),
            kind: "probe.http".to_string(),
            subject: self.subject.clone(),
            time,
            received_at: now_micros(),
            attrs,
            value: outcome.latency_ms,
            payload: None,
        }
    }
}

/// A client error with its causes ("Connection refused"), a TLS failure explained first
/// (an untrusted certificate, a refused client certificate).
fn describe(e: hyper_util::client::legacy::Error) -> String {
    helios_schemas::tls::describe(&e)
}

#[async_trait]
impl PullSource for ProbeSource {
    async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        loop {
            let time = now_micros();
            let outcome = self.attempt().await;
            debug!(source = ctx.name(), ?outcome, "Probed.");
            if let Some(error) = &outcome.error {
                // Shown in the status and logs; the event records it too.
                ctx.report_error(format!("probe of {} failed: {error}", self.config.url));
            }
            ctx.emit(&[self.event(ctx.name(), time, outcome)]).await?;
            if !ctx.sleep(self.config.interval).await {
                return Ok(());
            }
        }
    }
}
