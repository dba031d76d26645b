//! `helios run pipeline`: the pipeline stage on its own (`crate::stages::pipeline`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tracing::info;

use crate::backend::LogArgs;
use crate::stages::pipeline::{PipelineSetup, register_schemas, start_pipeline, state_dir};
use crate::stages::sources::EventTimeArgs;
use crate::stages::supervision::Failures;

/// Run the spec's aggregates and rules over `helios.events` (scaled out: one per machine,
/// partitions shared through the consumer group).
///
/// Results go to `helios.aggregates`, alerts to `helios.alerts`, insights found in the
/// aggregates' results to `helios.insights`, late events to `helios.late`, undecodable
/// records to `helios.dlq`. State is checkpointed with the input offsets every
/// `--checkpoint-interval` and on Ctrl-C/SIGTERM; a restart resumes from there.
///
/// Example:
///   helios run pipeline --spec helios.toml --kafka 127.0.0.1:9092 \
///     --registry http://127.0.0.1:8081 --checkpoints /var/lib/helios/state
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PipelineArgs {
    /// The spec file (`helios.toml`).
    #[arg(long, env = "HELIOS_SPEC")]
    pub spec: PathBuf,

    #[command(flatten)]
    pub log: LogArgs,

    /// Directory of the checkpoint store (default: `[checkpoints] dir` of the settings
    /// file, else `<data dir>/state`). Every process of a group must see the same directory
    /// (a shared or network mount): a partition's new owner restores what the previous
    /// owner checkpointed there.
    #[arg(long, env = "HELIOS_CHECKPOINTS")]
    pub checkpoints: Option<PathBuf>,

    /// Consumer group; every `helios run pipeline` with the same group shares partitions.
    #[arg(long, env = "HELIOS_PIPELINE_GROUP", default_value = "helios-pipeline")]
    pub group: String,

    /// How often state and offsets are checkpointed.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: Duration,

    #[command(flatten)]
    pub metrics: crate::stages::http::MetricsListenArgs,

    #[command(flatten)]
    pub event_time: EventTimeArgs,

    #[command(flatten)]
    pub retention: crate::stages::disk::LogRetentionArgs,
}

pub async fn run_pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    let mut spec = crate::spec::load_or_report(&args.spec, crate::spec::Limits::default())?;
    let backend = args.log.resolve()?;
    let (log, embedded) = backend
        .open_writable_log("a pipeline", args.retention.default_retention())
        .await?;
    let metrics_log = log.clone();
    let topics = backend.topics.clone();
    let schemas = crate::stages::schemas::writable(&backend)?;
    let ids = register_schemas(&schemas, &topics).await?;
    let checkpoints = args
        .checkpoints
        .clone()
        .or_else(|| backend.checkpoints.clone())
        .unwrap_or_else(|| state_dir(&backend.data_dir));
    info!(checkpoints = %checkpoints.display(), "Checkpoint store (shared by every process of the group).");
    let failures = Failures::default();
    let max_future = args
        .event_time
        .pipeline_bound(spec.sources.iter().map(|s| &s.value));
    let handle = start_pipeline(PipelineSetup {
        log,
        max_future,
        watermark: spec.watermark,
        dedupe: spec.dedupe,
        aggregates: std::mem::take(&mut spec.aggregates),
        rules: std::mem::take(&mut spec.rules),
        ids,
        schemas: schemas.source(),
        checkpoints,
        group: args.group.clone(),
        checkpoint_interval: args.checkpoint_interval,
        topics,
        failures: failures.clone(),
    })
    .await?;
    let Some(handle) = handle else {
        anyhow::bail!(
            "{} has no [[aggregate]] or [[rule]] sections: nothing to run",
            args.spec.display()
        );
    };
    crate::metrics::export_pipeline(Some(&handle), &metrics_log);
    args.metrics
        .serve(|| {
            let registry = helios_query_api::metrics::MetricsRegistry::new();
            crate::metrics::register_pipeline(&registry, Some(&handle), &metrics_log);
            registry
        })
        .await?;
    info!(group = %args.group, "Pipeline running; Ctrl-C stops.");
    failures.stop_requested().await;
    info!("Shutting down: checkpointing.");
    let stopped = handle.shutdown().await;
    if let Some(embedded) = embedded {
        embedded.close().context("flushing the log")?;
    }
    failures.outcome()?;
    stopped?;
    info!("Stopped cleanly.");
    Ok(())
}
