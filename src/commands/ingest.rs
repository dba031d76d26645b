//! `helios run ingest`: the sources on their own (scaled out): HTTP ingest, webhooks and
//! pull sources writing to `helios.events` on Kafka (or a data dir's embedded log), behind
//! the API keys, with `/healthz` and `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::Router;
use clap::Args;
use helios_connectors::spec::default_sources;
use tracing::info;

use crate::backend::LogArgs;
use crate::commands::keys::AuthArgs;
use crate::stages::http;
use crate::stages::sources::{EVENTS_TOPIC, SourcesSetup, start_sources};
use crate::stages::supervision::shutdown_signal;

/// Run the sources: the spec's HTTP ingest (`POST /v1/events`), webhooks and pull sources,
/// appending to `helios.events` (created with `[topics] partitions` if missing).
///
/// Every route but /healthz and /metrics needs an API key (`helios keys`, in the data dir
/// or --keys-file). Without --registry, the data dir's embedded schema registry is used
/// and served here (Confluent's REST API, on the same port): point the other roles'
/// --registry at this address with an admin key in HELIOS_REGISTRY_KEY. Ctrl-C or SIGTERM
/// stops accepting, finishes the requests in flight and stops the sources.
///
/// Example:
///   helios run ingest --spec helios.toml --config helios-backend.toml \
///     --listen 0.0.0.0:8080 --data-dir /var/lib/helios
///   helios run ingest --spec helios.toml --kafka 127.0.0.1:9092 --listen 127.0.0.1:8080
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct IngestArgs {
    /// Address of the HTTP listener (ingest, webhooks, registry, health, metrics).
    #[arg(long, env = "HELIOS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The spec file (`helios.toml`): its `[[source]]` tables. Without it: the default
    /// sources of `helios up` (HTTP ingest, GitHub and generic webhooks, host metrics, a
    /// probe of /healthz).
    #[arg(long, env = "HELIOS_SPEC")]
    pub spec: Option<PathBuf>,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub event_time: crate::stages::sources::EventTimeArgs,

    #[command(flatten)]
    pub http: http::HttpArgs,

    #[command(flatten)]
    pub webhooks: http::WebhookArgs,

    #[command(flatten)]
    pub retention: crate::stages::disk::LogRetentionArgs,

    #[command(flatten)]
    pub min_free: crate::stages::disk::MinFreeArgs,
}

pub async fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let backend = args.log.resolve()?;
    // Bound first, as `helios up` does: the default self probe needs the port actually
    // bound (`--listen 127.0.0.1:0` picks one).
    let listener = http::bind(args.listen, "--listen").await?;
    let tls = args.http.tls()?;
    let sources = match &args.spec {
        Some(path) => {
            crate::spec::load_spec(path, args.webhooks.limits())?
                .0
                .sources
        }
        None => default_sources(
            &http::own_url(listener.local_addr()?, tls.as_ref()),
            &backend.data_dir,
        ),
    };
    std::fs::create_dir_all(&backend.data_dir)
        .with_context(|| format!("creating the data dir {}", backend.data_dir.display()))?;
    let (log, embedded) = backend
        .open_writable_log("ingest", args.retention.default_retention())
        .await?;
    let topics = &backend.topics;
    // The registry: a remote one, or the data dir's, which this role then serves.
    let schemas = crate::stages::schemas::writable(&backend)?;
    let disk = args.min_free.guard(&backend.data_dir, embedded.is_some());
    let (supervisor, routes, metrics) = start_sources(SourcesSetup {
        log: log.clone(),
        schemas: &schemas,
        sources: &sources,
        data_dir: &backend.data_dir,
        topics,
        max_future: args.event_time.max_future,
        unverified_bodies: args.webhooks.budget(),
        disk: disk.clone(),
    })
    .await?;
    if embedded.is_some() {
        metrics.register(std::sync::Arc::new(crate::metrics::DiskCollector::new(
            crate::stages::disk::DataDirUsage {
                data_dir: backend.data_dir.clone(),
                log: Some(log.clone()),
                guard: disk,
                store: None,
            },
        )));
    }
    let app: Router = match schemas.served() {
        Some(registry) => helios_query_api::router(routes, registry),
        None => http::health_routes().merge(routes),
    };
    // `/openapi.json` describes what this process serves: health, metrics, the sources'
    // routes (the push routes of the spec's sources among them).
    let mut document = helios_query_api::openapi::operations();
    document.merge(helios_connectors::openapi::document(&sources));
    let app = app
        .merge(helios_query_api::metrics::router(metrics))
        .route(
            "/openapi.json",
            axum::routing::get(helios_query_api::openapi::openapi_json),
        )
        .layer(axum::Extension(helios_query_api::openapi::FullDocument(
            std::sync::Arc::new(document),
        )));
    let addr = listener.local_addr()?;
    let own = http::own_url(addr, tls.as_ref());
    let app = crate::commands::keys::protect_app(app, &args.auth, &backend.data_dir, &own)?;
    let server = args.http.config(args.auth.metrics_auth, tls.as_ref())?;
    info!(
        url = %own,
        topic = %topics.name(EVENTS_TOPIC),
        log = if backend.kafka.is_some() { "kafka" } else { "embedded" },
        registry = backend.registry.as_deref().unwrap_or("embedded, served here"),
        "Ingest running; Ctrl-C stops."
    );
    http::serve(listener, app, server, shutdown_signal()).await?;
    info!("Shutting down: stopping the sources.");
    supervisor.shutdown().await;
    // Graceful shutdown waited for in-flight requests, so every append has returned.
    if let Some(embedded) = embedded {
        embedded.close().context("flushing the log")?;
    }
    info!("Stopped cleanly.");
    Ok(())
}
