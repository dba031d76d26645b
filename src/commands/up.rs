//! `helios up`: the embedded default in one process: every stage (`crate::stages`) on the
//! data dir's log, registry and store, behind one listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::Router;
use clap::Args;
use helios_connectors::spec::{SourcesSpec, default_sources};
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog, FsyncPolicy};
use tracing::info;

use crate::backend::{Topics, log_dir};
use crate::stages::disk::{DataDirUsage, LogRetentionArgs, MinFreeArgs, StoreCapArgs};
use crate::stages::http::{HttpArgs, WebhookArgs};
use crate::stages::pipeline::{
    Duplicates, PipelineSetup, register_schemas, start_pipeline, state_dir,
};
use crate::stages::schemas::{Schemas, open_embedded};
use crate::stages::sinks::{NotifyArgs, SinkBatching, SinksSetup, start_sinks};
use crate::stages::sources::{EventTimeArgs, SourcesSetup, start_sources};
use crate::stages::supervision::Failures;
use crate::stages::{http, read_api};

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

    #[command(flatten)]
    pub clickhouse_access: crate::backend::ClickHouseAccessArgs,

    /// How often the pipeline checkpoints its state with the input offsets.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: std::time::Duration,

    #[command(flatten)]
    pub auth: crate::commands::keys::AuthArgs,

    #[command(flatten)]
    pub batching: SinkBatching,

    #[command(flatten)]
    pub notify: NotifyArgs,

    #[command(flatten)]
    pub event_time: EventTimeArgs,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub webhooks: WebhookArgs,

    #[command(flatten)]
    pub query: read_api::QueryArgs,

    #[command(flatten)]
    pub retention: LogRetentionArgs,

    #[command(flatten)]
    pub store_cap: StoreCapArgs,

    #[command(flatten)]
    pub min_free: MinFreeArgs,
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    if s == "batch" {
        return Ok(FsyncPolicy::EveryBatch);
    }
    humantime::parse_duration(s)
        .map(FsyncPolicy::Interval)
        .map_err(|e| format!("`{s}` is neither `batch` nor a duration like `100ms`: {e}"))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Bind first: a taken port should stop us before anything starts, and the default
    // self probe needs the port actually bound (`--listen 127.0.0.1:0` picks one).
    let listener = http::bind(args.listen, "--listen").await?;
    let bound = listener.local_addr()?;
    let tls = args.http.tls()?;
    let own = http::own_url(bound, tls.as_ref());
    let (spec, store_spec, webhooks, pipeline) = match &args.spec {
        Some(path) => crate::spec::load_spec(path, args.webhooks.limits())?,
        None => (
            SourcesSpec {
                sources: default_sources(&own, &args.data_dir),
            },
            helios_sinks::StoreSpec::default(),
            Vec::new(),
            crate::spec::ProcessorSpec::default(),
        ),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating the data dir {}", args.data_dir.display()))?;
    let embedded = EmbeddedLog::open(
        log_dir(&args.data_dir),
        EmbeddedConfig {
            fsync: args.fsync,
            default_retention: args.retention.default_retention(),
            ..EmbeddedConfig::default()
        },
    )
    .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
    let log = embedded.log();
    let registry = open_embedded(&args.data_dir)?;
    let schemas = Schemas::Embedded(registry.clone());
    let topics = Topics {
        partitions: args.partitions,
        ..Topics::default()
    };
    let disk = args.min_free.guard(&args.data_dir, true);
    let (supervisor, sources, metrics) = start_sources(SourcesSetup {
        log: log.clone(),
        schemas: &schemas,
        sources: &spec.sources,
        data_dir: &args.data_dir,
        topics: &topics,
        max_future: args.event_time.max_future,
        unverified_bodies: args.webhooks.budget(),
        disk: disk.clone(),
    })
    .await?;
    let app: Router = helios_query_api::router(sources, registry)
        .merge(helios_query_api::metrics::router(metrics.clone()));
    // The read API answers about the spec's aggregates, from the store the sink writes.
    let read_catalog = read_api::catalog(&pipeline.aggregates);
    let read_store = store_spec.clone();
    let failures = Failures::default();
    let processor = start_pipeline(PipelineSetup {
        log: log.clone(),
        max_future: args.event_time.pipeline_bound(&spec.sources),
        watermark: pipeline.watermark,
        dedupe: pipeline.dedupe,
        aggregates: pipeline.aggregates,
        rules: pipeline.rules,
        ids: register_schemas(&schemas, &topics).await?,
        schemas: schemas.source(),
        checkpoints: state_dir(&args.data_dir),
        group: "helios-pipeline".to_owned(),
        checkpoint_interval: args.checkpoint_interval,
        topics: topics.clone(),
        failures: failures.clone(),
    })
    .await
    .context("starting the pipeline")?;
    if let Some(p) = &processor {
        supervisor.set_duplicate_counts(std::sync::Arc::new(Duplicates(p.metrics.clone())));
    }
    let clickhouse = args
        .clickhouse
        .as_ref()
        .map(|url| {
            let config = helios_sinks::clickhouse::ClickHouseConfig::new(url)
                .database(&args.clickhouse_database);
            args.clickhouse_access
                .apply(config, &crate::backend::ClickHouseFile::default())
        })
        .transpose()?;
    let sinks = start_sinks(SinksSetup {
        log: log.clone(),
        registry: schemas.source(),
        store: store_spec,
        webhooks,
        clickhouse: clickhouse.clone(),
        data_dir: args.data_dir.clone(),
        group: "helios-sink".to_owned(),
        aggregates_partitions: args.partitions,
        topics,
        batching: args.batching.clone(),
        notify: args.notify.clone(),
        failures: failures.clone(),
        store_max_bytes: args.store_cap.store_max_size.0,
    })
    .await
    .context("starting the sink")?;
    crate::metrics::register_pipeline(&metrics, processor.as_ref(), &log);
    crate::metrics::register_sinks(&metrics, &sinks, &log);
    // What the data dir holds: /metrics, GET /v1/storage and the dashboard.
    let usage = DataDirUsage {
        data_dir: args.data_dir.clone(),
        log: Some(log.clone()),
        guard: disk,
        store: args.clickhouse.is_none().then(|| {
            (
                crate::stages::sinks::store_dir(&args.data_dir),
                crate::stages::sinks::embedded_store_spec(&read_store).retention,
                args.store_cap.store_max_size.0,
            )
        }),
    };
    metrics.register(std::sync::Arc::new(crate::metrics::DiskCollector::new(
        usage.clone(),
    )));

    let read = read_api::read_state(
        read_catalog,
        &read_store,
        clickhouse,
        &args.data_dir,
        &args.query,
    )
    .await?;
    // `/openapi.json` describes what this process serves: the read API, the sources'
    // routes (the push routes of the spec's sources among them) and `/v1/storage`.
    let document = helios_query_api::openapi::with([
        helios_connectors::openapi::document(&spec.sources),
        helios_query_api::storage::openapi(),
    ]);
    let app = app
        .merge(helios_query_api::read_router(read))
        .merge(helios_query_api::storage::router(std::sync::Arc::new(
            usage,
        )))
        .layer(axum::Extension(helios_query_api::openapi::FullDocument(
            std::sync::Arc::new(document),
        )));
    let app = crate::commands::keys::protect_app(app, &args.auth, &args.data_dir, &own)?;
    let server = args.http.config(args.auth.metrics_auth, tls.as_ref())?;
    info!(
        url = %own, data_dir = %args.data_dir.display(),
        fsync = ?args.fsync, "Helios is up. Post CloudEvents to /v1/events; Ctrl-C stops."
    );
    // Ctrl-C, SIGTERM or a stage stopping on an error ends the process (stages::supervision).
    let stop = failures.clone();
    http::serve(
        listener,
        app,
        server,
        async move { stop.stop_requested().await },
    )
    .await?;
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
