//! `helios run ingest|pipeline|sink`: one stage on its own; `sink` is here (the stage
//! itself is `crate::stages::sinks`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use tracing::info;

use crate::backend::LogArgs;
use crate::stages::sinks::{NotifyArgs, SinkBatching, SinksSetup, start_sinks};
use crate::stages::supervision::Failures;

/// Run one stage of Helios on its own (scaled out: Kafka and ClickHouse).
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(subcommand)]
    pub stage: Stage,
}

#[derive(Debug, Subcommand)]
pub enum Stage {
    Ingest(crate::commands::ingest::IngestArgs),
    Sink(SinkArgs),
    Pipeline(crate::commands::pipeline::PipelineArgs),
}

/// Load the output topics into the store and send alert notifications.
///
/// The tables come from the spec's `[[aggregate]]` sections and `[retention]`, the
/// webhooks from its `[[webhook]]` sections. With `--clickhouse` the store is ClickHouse
/// (migrated on start); without it, Parquet files under `<data dir>/store`. Offsets are
/// committed only after the store acknowledged; Ctrl-C or SIGTERM flushes and commits.
///
/// Example:
///   helios run sink --spec helios.toml --kafka 127.0.0.1:9092 \
///     --registry http://127.0.0.1:8081 --clickhouse http://127.0.0.1:8123
/// Example (ClickHouse over HTTPS; the password in HELIOS_CLICKHOUSE_PASSWORD):
///   helios run sink --spec helios.toml --kafka 127.0.0.1:9092 \
///     --clickhouse https://clickhouse.example:8443 --clickhouse-user helios
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SinkArgs {
    /// The spec file (`helios.toml`).
    #[arg(long, env = "HELIOS_SPEC")]
    pub spec: PathBuf,

    /// ClickHouse HTTP endpoint (else `[clickhouse] url` of the settings file); without
    /// either the embedded Parquet store is used.
    #[arg(long, env = "HELIOS_CLICKHOUSE")]
    pub clickhouse: Option<String>,

    /// ClickHouse database (else `[clickhouse] database`) [default: helios]
    #[arg(long, env = "HELIOS_CLICKHOUSE_DATABASE")]
    pub database: Option<String>,

    #[command(flatten)]
    pub clickhouse_access: crate::backend::ClickHouseAccessArgs,

    #[command(flatten)]
    pub log: LogArgs,

    /// Consumer group of the sink; every `helios run sink` with the same group shares the
    /// partitions.
    #[arg(long, env = "HELIOS_SINK_GROUP", default_value = "helios-sink")]
    pub group: String,

    #[command(flatten)]
    pub metrics: crate::stages::http::MetricsListenArgs,

    #[command(flatten)]
    pub batching: SinkBatching,

    #[command(flatten)]
    pub notify: NotifyArgs,

    #[command(flatten)]
    pub retention: crate::stages::disk::LogRetentionArgs,

    #[command(flatten)]
    pub store_cap: crate::stages::disk::StoreCapArgs,
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    match args.stage {
        Stage::Ingest(args) => crate::commands::ingest::run_ingest(args).await,
        Stage::Sink(args) => run_sink(args).await,
        Stage::Pipeline(args) => crate::commands::pipeline::run_pipeline(args).await,
    }
}

async fn run_sink(args: SinkArgs) -> anyhow::Result<()> {
    let spec = crate::spec::load_or_report(&args.spec, crate::spec::Limits::default())?;
    let backend = args.log.resolve()?;
    let (log, embedded) = backend
        .open_writable_log("a sink", args.retention.default_retention())
        .await?;
    let registry = backend.open_registry()?;
    let clickhouse = backend
        .clickhouse_config(args.clickhouse.as_deref(), args.database.as_deref())
        .map(|config| args.clickhouse_access.apply(config, &backend.clickhouse))
        .transpose()?;
    let failures = Failures::default();
    let sinks = start_sinks(SinksSetup {
        log: log.clone(),
        registry,
        store: crate::spec::store_spec(&spec),
        webhooks: crate::spec::webhooks(&spec)?,
        clickhouse,
        data_dir: backend.data_dir.clone(),
        group: args.group,
        aggregates_partitions: backend.topics.partitions,
        topics: backend.topics.clone(),
        batching: args.batching,
        notify: args.notify,
        failures: failures.clone(),
        store_max_bytes: args.store_cap.store_max_size.0,
    })
    .await?;
    crate::metrics::export_sinks(&sinks, &log);
    args.metrics
        .serve(|| {
            let registry = helios_query_api::metrics::MetricsRegistry::new();
            crate::metrics::register_sinks(&registry, &sinks, &log);
            registry
        })
        .await?;
    info!("Sink running; Ctrl-C stops.");
    failures.stop_requested().await;
    info!("Shutting down: flushing and committing.");
    sinks.shutdown().await;
    if let Some(embedded) = embedded {
        embedded.close().context("flushing the log")?;
    }
    failures.outcome()?;
    info!("Stopped cleanly.");
    Ok(())
}
