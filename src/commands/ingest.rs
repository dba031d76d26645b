//! `helios run ingest`: the sources on their own (scaled out): HTTP ingest, webhooks and
//! pull sources writing to `helios.events` on Kafka (or a data dir's embedded log), behind
//! the API keys, with `/healthz` and `/metrics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use clap::Args;
use helios_connectors::spec::default_sources;
use helios_schemas::{AvroRecord, DeadLetter, Event, Registry, SchemaSource};
use tracing::info;

use crate::backend::{LogArgs, registry_dir};
use crate::commands::keys::AuthArgs;
use crate::commands::up::{DEAD_LETTER_TOPIC, EVENTS_TOPIC, SourcesSetup};

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
    pub http: crate::http::HttpArgs,

    #[command(flatten)]
    pub webhooks: crate::http::WebhookArgs,
}

pub async fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let backend = args.log.resolve()?;
    let sources = match &args.spec {
        Some(path) => crate::commands::up::load_spec(path)?.0.sources,
        None => default_sources(args.listen, &backend.data_dir),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (is another process using it? try --listen)",
                args.listen
            )
        })?;
    std::fs::create_dir_all(&backend.data_dir)
        .with_context(|| format!("creating the data dir {}", backend.data_dir.display()))?;
    let (log, embedded) = backend.open_writable_log("ingest").await?;
    let topics = &backend.topics;
    let subject = |base: &str| format!("{}-value", topics.name(base));
    // The registry: a remote one, or the data dir's, which this role then serves.
    let (schemas, served, event_id, dead_letter_id): (Arc<dyn SchemaSource>, _, u32, u32) =
        match backend.remote_registry()? {
            Some(remote) => {
                let register = |subject: String, schema: &'static str| {
                    let remote = remote.clone();
                    async move {
                        remote.register(&subject, schema).await.with_context(|| {
                            format!(
                                "registering {subject} at {} (a registry behind Helios' API \
                                 keys needs an admin key in HELIOS_REGISTRY_KEY)",
                                remote.url()
                            )
                        })
                    }
                };
                let event = register(subject(EVENTS_TOPIC), Event::SCHEMA_JSON).await?;
                let dead = register(subject(DEAD_LETTER_TOPIC), DeadLetter::SCHEMA_JSON).await?;
                (remote, None, event, dead)
            }
            None => {
                let dir = registry_dir(&backend.data_dir);
                let registry = Arc::new(
                    Registry::open(&dir)
                        .with_context(|| format!("opening the registry in {}", dir.display()))?,
                );
                let event = registry
                    .register(&subject(EVENTS_TOPIC), Event::SCHEMA_JSON)
                    .context("registering the Event schema")?;
                let dead = registry
                    .register(&subject(DEAD_LETTER_TOPIC), DeadLetter::SCHEMA_JSON)
                    .context("registering the DeadLetter schema")?;
                (
                    registry.clone() as Arc<dyn SchemaSource>,
                    Some(registry),
                    event.id,
                    dead.id,
                )
            }
        };
    let (supervisor, routes, metrics) = crate::commands::up::start_sources(SourcesSetup {
        log: log.clone(),
        event_schema: event_id,
        dead_letter_schema: dead_letter_id,
        schemas,
        sources: &sources,
        data_dir: &backend.data_dir,
        topics,
        unverified_bodies: args.webhooks.budget(),
    })
    .await?;
    let app: Router = match served {
        Some(registry) => helios_query_api::router(routes, registry),
        None => Router::new().route("/healthz", get(healthz)).merge(routes),
    };
    let app = app.merge(helios_query_api::metrics::router(metrics));
    let addr = listener.local_addr()?;
    let app = crate::commands::keys::protect_app(app, &args.auth, &backend.data_dir, addr)?;
    let server = args.http.config(args.auth.metrics_auth)?;
    info!(
        url = %format!("http://{addr}"),
        topic = %topics.name(EVENTS_TOPIC),
        log = if backend.kafka.is_some() { "kafka" } else { "embedded" },
        registry = backend.registry.as_deref().unwrap_or("embedded, served here"),
        "Ingest running; Ctrl-C stops."
    );
    crate::http::serve(
        listener,
        app,
        server,
        crate::commands::up::shutdown_signal(),
    )
    .await?;
    info!("Shutting down: stopping the sources.");
    supervisor.shutdown().await;
    // Graceful shutdown waited for in-flight requests, so every append has returned.
    if let Some(embedded) = embedded {
        embedded.close().context("flushing the log")?;
    }
    info!("Stopped cleanly.");
    Ok(())
}

/// `GET /healthz` when the registry routes (which bring their own) are not served here.
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}
