//! Logs, traces and metrics setup; the only place a tracing subscriber is installed.
//!
//! Logs go to stderr as text or JSON lines (`--log-format`). With an OTLP endpoint
//! (`--otlp-endpoint`, or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`) the `tracing` spans
//! of the Helios crates are also exported as OpenTelemetry traces, the `/metrics`
//! families as OpenTelemetry metrics (see [`crate::metrics::install_otlp`]), both over
//! OTLP/HTTP protobuf, and a [`TraceContext`] propagator is installed so the stages carry
//! W3C trace context in record headers. Without an endpoint none of that exists: no OTel
//! layer, no exporter thread, and the stages' one check finds no propagator.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::ValueEnum;
use helios_log::{TRACEPARENT, TRACESTATE, TraceLink, TracePropagator};
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::{Level, info, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object per line: timestamp, level, message, fields and spans.
    Json,
}

/// What [`init`] sets up.
#[derive(Debug)]
pub struct Settings<'a> {
    /// Log filter (`RUST_LOG` wins when set).
    pub filter: &'a str,
    pub format: LogFormat,
    /// OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; `None` exports nothing.
    pub otlp_endpoint: Option<&'a str>,
    /// `service.name` of the exported telemetry, e.g. `helios-up` (`OTEL_SERVICE_NAME` wins).
    pub service: String,
    /// How often spans and metrics are exported; `None` for the SDK's defaults (5 s for
    /// spans, 60 s for metrics, or `OTEL_BSP_SCHEDULE_DELAY` and
    /// `OTEL_METRIC_EXPORT_INTERVAL`).
    pub interval: Option<Duration>,
}

/// The exporters, flushed and stopped by [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporters. Call it while the runtime
    /// the exporters send through is still running, but from outside it (it blocks).
    pub fn shutdown(self) {
        if let Some(t) = self.tracer
            && let Err(e) = t.shutdown()
        {
            warn!(error = %e, "Flushing the trace exporter failed; the last spans are lost.");
        }
        if let Some(m) = self.meter
            && let Err(e) = m.shutdown()
        {
            warn!(error = %e, "Flushing the metric exporter failed; the last points are lost.");
        }
    }
}

/// Installs the subscriber and, with an endpoint, the OTLP exporters. Exports are sent
/// from `runtime`, which must outlive [`Telemetry::shutdown`].
pub fn init(settings: Settings<'_>, runtime: &tokio::runtime::Handle) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(settings.filter));
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(true)
            // Every enclosing span too (`spans`), outermost first: a line inside a request's
            // `api_key` span still names its connection's client certificate (`tls_client`).
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    let Some(endpoint) = settings.otlp_endpoint.filter(|e| !e.trim().is_empty()) else {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry::default());
    };
    let endpoint = endpoint.trim().trim_end_matches('/');
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or(settings.service);
    let resource = Resource::builder()
        .with_service_name(service.clone())
        .build();
    let client = OtlpClient::new(runtime.clone())?;

    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .build()
        .with_context(|| {
            format!("the OTLP trace exporter for {endpoint} (check --otlp-endpoint)")
        })?;
    let mut batch = BatchConfigBuilder::default();
    if let Some(every) = settings.interval {
        batch = batch.with_scheduled_delay(every);
    }
    let spans = BatchSpanProcessor::builder(spans)
        .with_batch_config(batch.build())
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(spans)
        .with_resource(resource.clone())
        .build();
    let tracer = tracer_provider.tracer("helios");
    // Spans of the Helios crates only, whatever the log filter says: traces are asked
    // for by configuring an endpoint, and dependency spans would only add noise.
    let traced = Targets::new().with_target("helios", Level::INFO);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(traced);

    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/metrics"))
        .build()
        .with_context(|| {
            format!("the OTLP metric exporter for {endpoint} (check --otlp-endpoint)")
        })?;
    let mut reader = PeriodicReader::builder(metrics);
    if let Some(every) = settings.interval {
        reader = reader.with_interval(every);
    }
    let reader = reader.build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();

    tracing_subscriber::registry().with(logs).with(otel).init();
    helios_log::install_trace_propagator(Box::new(TraceContext::default()));
    let _guard = runtime.enter();
    crate::metrics::install_otlp(
        &opentelemetry::metrics::MeterProvider::meter(&meter_provider, "helios"),
        settings.interval.unwrap_or_else(metric_interval),
    );
    info!(
        endpoint,
        service, "Exporting traces and metrics over OTLP/HTTP."
    );
    Ok(Telemetry {
        tracer: Some(tracer_provider),
        meter: Some(meter_provider),
    })
}

/// The metric export interval the SDK's reader uses by default
/// (`OTEL_METRIC_EXPORT_INTERVAL`, ms).
fn metric_interval() -> Duration {
    std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(60), Duration::from_millis)
}

/// W3C trace context between `tracing` spans (through the OpenTelemetry layer) and
/// record headers.
#[derive(Debug, Default)]
struct TraceContext {
    propagator: TraceContextPropagator,
}

impl TracePropagator for TraceContext {
    fn inject(&self, span: &tracing::Span, headers: &mut Vec<(String, Bytes)>) {
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return;
        }
        self.propagator
            .inject_context(&cx, &mut HeaderInjector(headers));
    }

    fn link(&self, span: &tracing::Span, link: &TraceLink) {
        let cx = self.propagator.extract(&W3cHeaders {
            traceparent: &link.traceparent,
            tracestate: link.tracestate.as_deref(),
        });
        let remote = cx.span().span_context().clone();
        if !remote.is_valid() {
            return;
        }
        span.add_link_with_attributes(
            remote,
            vec![
                KeyValue::new("messaging.destination.name", link.topic.to_string()),
                KeyValue::new(
                    "messaging.destination.partition.id",
                    i64::from(link.partition),
                ),
                KeyValue::new(
                    "messaging.kafka.offset",
                    i64::try_from(link.offset).unwrap_or(i64::MAX),
                ),
            ],
        );
    }

    fn continue_trace(&self, span: &tracing::Span, traceparent: &[u8], tracestate: Option<&[u8]>) {
        let cx = self.propagator.extract(&W3cHeaders {
            traceparent,
            tracestate,
        });
        if !cx.span().span_context().is_valid() {
            return;
        }
        if let Err(e) = span.set_parent(cx) {
            tracing::debug!(error = %e, "Could not continue the caller's trace.");
        }
    }
}

struct HeaderInjector<'a>(&'a mut Vec<(String, Bytes)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), Bytes::from(value)));
    }
}

/// The W3C headers of a record or a request, as the propagator reads them.
struct W3cHeaders<'a> {
    traceparent: &'a [u8],
    tracestate: Option<&'a [u8]>,
}

impl Extractor for W3cHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match key {
            TRACEPARENT => Some(self.traceparent),
            TRACESTATE => self.tracestate,
            _ => None,
        }?;
        std::str::from_utf8(value).ok()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// Sends the exporters' requests with the process's own reqwest, on the runtime: the
/// SDK exports from its own threads, outside any runtime, so each request is spawned
/// onto `runtime` and awaited from there.
#[derive(Debug, Clone)]
struct OtlpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Whether the last export failed, so a collector outage is logged once, not per export.
static EXPORT_FAILING: AtomicBool = AtomicBool::new(false);

/// The collector's TLS files: OTel's standard variables (OTEL_EXPORTER_OTLP_CERTIFICATE
/// for its CA, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE with OTEL_EXPORTER_OTLP_CLIENT_KEY for
/// mutual TLS), each replacing the process's own (--ca-file, --client-cert-file and
/// --client-key-file).
fn otlp_tls() -> anyhow::Result<helios_schemas::tls::Outbound> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    let process = crate::backend::outbound();
    let identity = match helios_schemas::tls::IdentityFiles::pair(
        var("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        var("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
    ) {
        // Its files are read once, by the client built from them (the error names them).
        Ok(Some(own)) => Some(own),
        Ok(None) => process.identity.clone(),
        Err(missing) => anyhow::bail!(
            "OTLP export's client certificate needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE \
             and OTEL_EXPORTER_OTLP_CLIENT_KEY; the {missing} is missing"
        ),
    };
    Ok(helios_schemas::tls::Outbound {
        ca_file: var("OTEL_EXPORTER_OTLP_CERTIFICATE").or_else(|| process.ca_file.clone()),
        identity,
    })
}

impl OtlpClient {
    fn new(runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let builder = otlp_tls()?.http_client_builder().context(
            "setting up TLS for OTLP export (check OTEL_EXPORTER_OTLP_CERTIFICATE, \
             OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY, else \
             --ca-file, --client-cert-file and --client-key-file)",
        )?;
        let http = builder
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the OTLP HTTP client")?;
        Ok(OtlpClient { http, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let uri = request.uri().to_string();
        let sent = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let resp = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            let mut out = Response::builder().status(status).body(body)?;
            *out.headers_mut() = headers;
            Ok::<_, HttpError>(out)
        });
        let outcome = match sent.await {
            Ok(r) => r,
            Err(e) => Err(Box::new(e) as HttpError),
        };
        let failed = match &outcome {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the collector answered {}", r.status())),
            // An untrusted collector certificate says so (and how to trust it).
            Err(e) => Some(helios_schemas::tls::describe(e.as_ref())),
        };
        match failed {
            Some(error) => {
                if !EXPORT_FAILING.swap(true, Ordering::Relaxed) {
                    warn!(
                        url = uri,
                        error,
                        "OTLP export failed; telemetry is dropped until the collector answers again."
                    );
                }
            }
            None => {
                if EXPORT_FAILING.swap(false, Ordering::Relaxed) {
                    info!(url = uri, "OTLP export works again.");
                }
            }
        }
        outcome
    }
}
