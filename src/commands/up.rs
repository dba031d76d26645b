//! `helios up`: the embedded default in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use clap::Args;
use helios_connectors::runtime::{Emitter, EmitterConfig, Supervisor};
use helios_connectors::spec::{SourceSpec, SourcesSpec, default_sources};
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog, FsyncPolicy};
use helios_log::{Log, TopicSpec};
use helios_query_api::metrics::MetricsRegistry;
use helios_schemas::{
    AvroRecord, DeadLetter, Event, EventCodec, RecordCodec, Registry, SchemaSource,
};
use tracing::info;

use crate::backend::{Topics, log_dir, registry_dir};
use crate::commands::pipeline::PipelineSetup;
use helios_pipeline::spec::{Aggregate, Rule, Watermark};

/// Run Helios in one process: embedded log, schema registry and HTTP ingest.
///
/// Everything lives in the data dir; nothing else needs to be installed or running.
///
/// Example:
///   helios up --listen 127.0.0.1:8080 --data-dir ./helios-data
///   curl -X POST http://127.0.0.1:8080/v1/events \
///     -H "Authorization: Bearer $HELIOS_API_KEY" \
///     -H 'content-type: application/cloudevents-batch+json' \
///     -d '[{"specversion":"1.0","id":"1","source":"ci","type":"ci.run","subject":"helios"}]'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct UpArgs {
    /// Address of the HTTP listener (ingest, registry, health).
    #[arg(long, env = "HELIOS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where the log, registry and state live.
    #[arg(long, env = "HELIOS_DATA_DIR", default_value = "./helios-data")]
    pub data_dir: PathBuf,

    /// When appended events are fsynced: `batch` (before every acknowledgement) or an
    /// interval such as `100ms` (faster; a machine crash may lose that much).
    #[arg(long, env = "HELIOS_FSYNC", default_value = "batch", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,

    /// Partitions of `helios.events` when it is first created.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,

    /// The spec file (`helios.toml`): which sources run, the store's aggregates and
    /// retention, the alert webhooks. Without it: default sources, fixed tables only.
    #[arg(long, env = "HELIOS_SPEC")]
    pub spec: Option<PathBuf>,

    /// Store results in ClickHouse at this HTTP endpoint (migrated on start) instead of
    /// the embedded Parquet store under `<data dir>/store`.
    #[arg(long, env = "HELIOS_CLICKHOUSE")]
    pub clickhouse: Option<String>,

    /// ClickHouse database, with `--clickhouse`.
    #[arg(long, env = "HELIOS_CLICKHOUSE_DATABASE", default_value = "helios")]
    pub clickhouse_database: String,

    /// How often the pipeline checkpoints its state with the input offsets.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: std::time::Duration,

    #[command(flatten)]
    pub auth: crate::commands::keys::AuthArgs,

    #[command(flatten)]
    pub query: crate::api::QueryArgs,

    #[command(flatten)]
    pub batching: crate::commands::run::SinkBatching,
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    if s == "batch" {
        return Ok(FsyncPolicy::EveryBatch);
    }
    humantime::parse_duration(s)
        .map(FsyncPolicy::Interval)
        .map_err(|e| format!("`{s}` is neither `batch` nor a duration like `100ms`: {e}"))
}

pub const EVENTS_TOPIC: &str = "helios.events";
pub const DEAD_LETTER_TOPIC: &str = "helios.dlq";

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let (spec, store_spec, webhooks, pipeline) = match &args.spec {
        Some(path) => load_spec(path)?,
        None => (
            SourcesSpec {
                sources: default_sources(args.listen, &args.data_dir),
            },
            helios_sinks::StoreSpec::default(),
            Vec::new(),
            (Watermark::default(), Vec::new(), Vec::new()),
        ),
    };
    // Bind first: a taken port should stop us before anything starts.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (is another process using it? try --listen)",
                args.listen
            )
        })?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    let embedded = EmbeddedLog::open(
        log_dir(&args.data_dir),
        EmbeddedConfig {
            fsync: args.fsync,
            ..EmbeddedConfig::default()
        },
    )
    .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
    let log = embedded.log();
    let registry = Arc::new(
        Registry::open(&registry_dir(&args.data_dir)).context("opening the schema registry")?,
    );
    let event_schema = registry
        .register(&format!("{EVENTS_TOPIC}-value"), Event::SCHEMA_JSON)
        .context("registering the Event schema")?;
    let dead_letter_schema = registry
        .register(
            &format!("{DEAD_LETTER_TOPIC}-value"),
            DeadLetter::SCHEMA_JSON,
        )
        .context("registering the DeadLetter schema")?;
    let topics = Topics {
        partitions: args.partitions,
        ..Topics::default()
    };
    let (supervisor, sources, metrics) = start_sources(SourcesSetup {
        log: log.clone(),
        event_schema: event_schema.id,
        dead_letter_schema: dead_letter_schema.id,
        schemas: registry.clone(),
        sources: &spec.sources,
        data_dir: &args.data_dir,
        topics: &topics,
    })
    .await?;
    let app: Router = helios_query_api::router(sources, registry.clone())
        .merge(helios_query_api::metrics::router(metrics.clone()));
    // The read API answers about the spec's aggregates, from the store the sink writes.
    let read_catalog = crate::api::catalog(&pipeline.1);
    let read_store = store_spec.clone();
    let failures = crate::stages::Failures::default();
    let processor = crate::commands::pipeline::start_pipeline(PipelineSetup {
        log: log.clone(),
        watermark: pipeline.0,
        aggregates: pipeline.1,
        rules: pipeline.2,
        ids: crate::commands::pipeline::register_embedded(&registry)?,
        schemas: registry.clone(),
        checkpoints: crate::commands::pipeline::state_dir(&args.data_dir),
        group: "helios-pipeline".to_owned(),
        checkpoint_interval: args.checkpoint_interval,
        topics: topics.clone(),
        failures: failures.clone(),
    })
    .await
    .context("starting the pipeline")?;
    let sinks = crate::commands::run::start_sinks(crate::commands::run::SinksSetup {
        log: log.clone(),
        registry: registry.clone(),
        store: store_spec,
        webhooks,
        clickhouse: args.clickhouse.as_ref().map(|url| {
            helios_sinks::clickhouse::ClickHouseConfig::new(url).database(&args.clickhouse_database)
        }),
        data_dir: args.data_dir.clone(),
        group: "helios-sink".to_owned(),
        aggregates_partitions: args.partitions,
        topics,
        batching: args.batching.clone(),
        failures: failures.clone(),
    })
    .await
    .context("starting the sink")?;
    crate::metrics::register_pipeline(&metrics, processor.as_ref(), &log);
    crate::metrics::register_sinks(&metrics, &sinks, &log);

    let addr = listener.local_addr()?;
    let read = crate::api::read_state(
        read_catalog,
        &read_store,
        args.clickhouse.as_ref().map(|url| {
            helios_sinks::clickhouse::ClickHouseConfig::new(url).database(&args.clickhouse_database)
        }),
        &args.data_dir,
        &args.query,
    )
    .await?;
    let app = app.merge(helios_query_api::read_router(read));
    let app = crate::commands::keys::protect_app(app, &args.auth, &args.data_dir, addr)?;
    info!(
        url = %format!("http://{addr}"), data_dir = %args.data_dir.display(),
        fsync = ?args.fsync, "Helios is up. Post CloudEvents to /v1/events; Ctrl-C stops."
    );
    // Ctrl-C, SIGTERM or a stage stopping on an error ends the process (crate::stages).
    let stop = failures.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.stop_requested().await })
        .await
        .context("serving HTTP")?;
    info!("Shutting down: stopping sources, flushing the sink and the log.");
    supervisor.shutdown().await;
    let processor_stopped = match processor {
        Some(p) => p.shutdown().await,
        None => Ok(()),
    };
    // The sink stores what it holds and commits its offsets before the log closes.
    sinks.shutdown().await;
    // Graceful shutdown has waited for in-flight requests, so every append has returned.
    embedded.close().context("flushing the log")?;
    failures.outcome()?;
    processor_stopped?;
    info!("Stopped cleanly.");
    Ok(())
}

/// What [`start_sources`] needs.
pub struct SourcesSetup<'a> {
    pub log: Log,
    /// Registry ids of the `Event` and `DeadLetter` schemas the sources write with.
    pub event_schema: u32,
    pub dead_letter_schema: u32,
    pub schemas: Arc<dyn SchemaSource>,
    pub sources: &'a [SourceSpec],
    /// Pull sources keep their checkpoints under `<data dir>/sources`.
    pub data_dir: &'a Path,
    pub topics: &'a Topics,
}

/// Creates the events and dead-letter topics if missing, and starts the sources: pull
/// sources under a supervisor, push sources (HTTP ingest, webhooks) as the returned
/// routes. The metrics registry already reports the sources. Shared by `helios up` and
/// `helios run ingest`.
pub async fn start_sources(
    setup: SourcesSetup<'_>,
) -> anyhow::Result<(Arc<Supervisor>, Router, MetricsRegistry)> {
    let events_topic = setup.topics.name(EVENTS_TOPIC);
    let dead_letter_topic = setup.topics.name(DEAD_LETTER_TOPIC);
    let admin = setup.log.admin();
    let existing = admin.list_topics().await.context("listing topics")?;
    for (topic, partitions) in [
        (&events_topic, setup.topics.partitions),
        (&dead_letter_topic, 1),
    ] {
        // An existing topic keeps its partitions (another role may have created it).
        if !existing.contains(topic) {
            admin
                .create_topic(&TopicSpec::new(topic.clone(), partitions))
                .await
                .with_context(|| format!("creating the topic {topic}"))?;
        }
    }
    let emitter = Emitter::new(
        EmitterConfig {
            events_topic,
            dead_letter_topic,
        },
        setup.log.producer(),
        EventCodec::with_source(setup.event_schema, setup.schemas.clone()),
        RecordCodec::with_source(setup.dead_letter_schema, setup.schemas.clone()),
    );
    let supervisor = Supervisor::new(emitter, setup.data_dir.join("sources"));
    let sources = helios_connectors::spec::build(setup.sources, &supervisor)
        .context("starting the sources")?;
    let metrics = MetricsRegistry::new();
    crate::metrics::export_registry(&metrics);
    metrics.register(Arc::new(crate::metrics::SourcesCollector::new(
        supervisor.clone(),
    )));
    Ok((supervisor, sources, metrics))
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The spec's sources, the store's tables, the alert webhooks, the aggregations and the
/// rules.
pub type LoadedSpec = (
    SourcesSpec,
    helios_sinks::StoreSpec,
    Vec<helios_sinks::notify::WebhookConfig>,
    (Watermark, Vec<Aggregate>, Vec<Rule>),
);

/// Loads and validates the spec; refuses to start on any problem, with the same report
/// as `helios validate`. Returns the sources, the store's tables and the webhooks.
pub fn load_spec(path: &std::path::Path) -> anyhow::Result<LoadedSpec> {
    let mut spec = match crate::spec::load(path) {
        Ok(spec) => spec,
        Err(Ok(diagnostics)) => {
            anyhow::bail!(
                "the spec has {} problem(s):\n{diagnostics}",
                diagnostics.len()
            )
        }
        Err(Err(e)) => return Err(e),
    };
    helios_pipeline::runtime::check_co_partitioned(&spec.aggregates, &spec.rules)
        .with_context(|| format!("{}", path.display()))?;
    let store = crate::spec::store_spec(&spec);
    let webhooks = crate::spec::webhooks(&spec);
    let aggregates = std::mem::take(&mut spec.aggregates);
    let rules = std::mem::take(&mut spec.rules);
    Ok((
        SourcesSpec {
            sources: spec.sources.into_iter().map(|s| s.value).collect(),
        },
        store,
        webhooks,
        (spec.watermark, aggregates, rules),
    ))
}
