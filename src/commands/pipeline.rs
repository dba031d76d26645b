//! `helios run pipeline`, and the processor wiring `helios up` shares ([`start_pipeline`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use helios_log::Log;
use helios_pipeline::checkpoint::CheckpointStore;
use helios_pipeline::runtime::{Codecs, DerivedCodecs, Metrics, Processor, ProcessorConfig};
use helios_pipeline::spec::{Aggregate, Rule, Watermark};
use helios_schemas::{
    Alert, AvroRecord, DeadLetter, Event, EventCodec, Insight, RecordCodec, Registry,
    RemoteRegistry, SchemaSource, WindowResult,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::backend::{LogArgs, Topics, registry_dir};

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

    /// Serve `GET /metrics` (Prometheus) and `/healthz` on this address, e.g.
    /// `0.0.0.0:9464`. Off by default.
    #[arg(long, env = "HELIOS_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub event_time: EventTimeArgs,
}

/// The event-time bound (`helios up`, `run ingest`, `run pipeline`).
#[derive(Debug, Clone, Args)]
pub struct EventTimeArgs {
    /// Refuse events dated more than this after Helios received them, so one event from
    /// the far future cannot move the watermark and make every later event late. The
    /// default for every source without its own `max_future` in the spec: HTTP ingest
    /// rejects such items (400 per item), the other sources write them to helios.dlq with
    /// the reason. The pipeline applies the largest of this and the spec's source bounds
    /// to what it reads (dead letters too), so give every role the same value.
    #[arg(long, env = "HELIOS_MAX_FUTURE", default_value = "15m", value_parser = humantime::parse_duration)]
    pub max_future: Duration,
}

impl EventTimeArgs {
    /// The pipeline's bound: this default or, when larger, any source's own `max_future`,
    /// so the pipeline never refuses what a source of the same spec accepted.
    pub fn pipeline_bound<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a helios_connectors::spec::SourceSpec>,
    ) -> Duration {
        sources
            .into_iter()
            .filter_map(helios_connectors::spec::SourceSpec::max_future)
            .fold(self.max_future, Duration::max)
    }
}

/// Everything [`start_pipeline`] needs.
#[derive(Debug)]
pub struct PipelineSetup {
    pub log: Log,
    pub watermark: Watermark,
    pub aggregates: Vec<Aggregate>,
    pub rules: Vec<Rule>,
    /// Registry ids of the schemas the processor reads and writes.
    pub ids: SchemaIds,
    pub schemas: Arc<dyn SchemaSource>,
    pub checkpoints: PathBuf,
    pub group: String,
    pub checkpoint_interval: Duration,
    /// Topic names (prefix) of the deployment.
    pub topics: Topics,
    /// Where the processor reports an error it stopped on.
    pub failures: crate::stages::Failures,
    /// Events dated more than this after their `received_at` are dead letters.
    pub max_future: Duration,
}

/// Registry ids the processor reads and writes with.
#[derive(Debug, Clone, Copy)]
pub struct SchemaIds {
    pub event: u32,
    pub window_result: u32,
    pub dead_letter: u32,
    pub alert: u32,
    pub insight: u32,
}

/// A running processor.
#[derive(Debug)]
pub struct PipelineHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<helios_pipeline::Result<()>>,
    pub metrics: Arc<Metrics>,
    /// The processor's settings (its topics name the metrics' labels).
    pub config: ProcessorConfig,
}

impl PipelineHandle {
    /// Stops the processor after it checkpoints every partition.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let r = self
            .task
            .await
            .context("the processor task panicked")?
            .context("stopping the processor");
        let m = self.metrics.snapshot();
        info!(
            events_in = m.events_in,
            results_out = m.results_out,
            alerts_out = m.alerts_out,
            insights_out = m.insights_out,
            late = m.late_events,
            dead_letters = m.dead_letters,
            checkpoints = m.checkpoints,
            "Processor totals."
        );
        r
    }
}

/// Registers the output schemas in the embedded registry (as `helios up` does for its
/// other topics).
pub fn register_embedded(registry: &Registry) -> anyhow::Result<SchemaIds> {
    let event = registry
        .register("helios.events-value", Event::SCHEMA_JSON)
        .context("registering the Event schema")?;
    let results = registry
        .register("helios.aggregates-value", WindowResult::SCHEMA_JSON)
        .context("registering the WindowResult schema")?;
    let dead = registry
        .register("helios.dlq-value", DeadLetter::SCHEMA_JSON)
        .context("registering the DeadLetter schema")?;
    registry
        .register("helios.late-value", DeadLetter::SCHEMA_JSON)
        .context("registering the DeadLetter schema for helios.late")?;
    let alert = registry
        .register("helios.alerts-value", Alert::SCHEMA_JSON)
        .context("registering the Alert schema")?;
    let insight = registry
        .register("helios.insights-value", Insight::SCHEMA_JSON)
        .context("registering the Insight schema")?;
    Ok(SchemaIds {
        event: event.id,
        window_result: results.id,
        dead_letter: dead.id,
        alert: alert.id,
        insight: insight.id,
    })
}

/// Starts the processor as a task; `None` when the spec has no aggregates and no rules.
pub async fn start_pipeline(setup: PipelineSetup) -> anyhow::Result<Option<PipelineHandle>> {
    if setup.aggregates.is_empty() && setup.rules.is_empty() {
        return Ok(None);
    }
    let mut config = ProcessorConfig::new(setup.group.clone(), setup.watermark);
    config.checkpoint_interval = setup.checkpoint_interval;
    config.max_future = setup.max_future;
    for topic in [
        &mut config.events_topic,
        &mut config.aggregates_topic,
        &mut config.alerts_topic,
        &mut config.insights_topic,
        &mut config.late_topic,
        &mut config.dead_letter_topic,
    ] {
        *topic = setup.topics.name(topic);
    }
    let codecs = Codecs {
        events: Arc::new(EventCodec::with_source(
            setup.ids.event,
            setup.schemas.clone(),
        )),
        results: RecordCodec::with_source(setup.ids.window_result, setup.schemas.clone()),
        dead_letters: RecordCodec::with_source(setup.ids.dead_letter, setup.schemas.clone()),
    };
    let store = CheckpointStore::local(&setup.checkpoints, &setup.group)
        .with_context(|| format!("opening checkpoints in {}", setup.checkpoints.display()))?;
    let derived = DerivedCodecs {
        alerts: RecordCodec::with_source(setup.ids.alert, setup.schemas.clone()),
        insights: RecordCodec::with_source(setup.ids.insight, setup.schemas.clone()),
    };
    let processor_config = config.clone();
    let processor = Processor::new(config, setup.aggregates, setup.log, codecs, store)?
        .with_rules_and_insights(setup.rules, derived)?;
    processor
        .ensure_topics()
        .await
        .context("creating the output topics")?;
    let metrics = processor.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let task_metrics = metrics.clone();
    let failures = setup.failures.clone();
    let task = tokio::spawn(async move {
        let r = processor
            .run(async move {
                let _ = stopped.await;
            })
            .await;
        if let Err(e) = &r {
            task_metrics.record_fatal_error();
            error!(error = %e, "The processor stopped on an error; restart to resume from its checkpoint.");
            failures.report("pipeline", e);
        }
        r
    });
    Ok(Some(PipelineHandle {
        stop,
        task,
        metrics,
        config: processor_config,
    }))
}

pub async fn run_pipeline(args: PipelineArgs) -> anyhow::Result<()> {
    let mut spec = crate::spec::load_or_report(&args.spec)?;
    helios_pipeline::runtime::check_co_partitioned(&spec.aggregates, &spec.rules)?;
    let backend = args.log.resolve()?;
    let (log, embedded) = backend.open_writable_log("a pipeline").await?;
    let metrics_log = log.clone();
    let topics = backend.topics.clone();
    let (ids, schemas): (SchemaIds, Arc<dyn SchemaSource>) = match backend.remote_registry()? {
        Some(remote) => (register_remote(&remote, &topics).await?, remote),
        None => {
            let registry = Arc::new(
                Registry::open(&registry_dir(&backend.data_dir)).with_context(|| {
                    format!("opening the registry in {}", backend.data_dir.display())
                })?,
            );
            (register_embedded(&registry)?, registry)
        }
    };
    let checkpoints = args
        .checkpoints
        .clone()
        .or_else(|| backend.checkpoints.clone())
        .unwrap_or_else(|| state_dir(&backend.data_dir));
    info!(checkpoints = %checkpoints.display(), "Checkpoint store (shared by every process of the group).");
    let failures = crate::stages::Failures::default();
    let max_future = args
        .event_time
        .pipeline_bound(spec.sources.iter().map(|s| &s.value));
    let handle = start_pipeline(PipelineSetup {
        log,
        max_future,
        watermark: spec.watermark,
        aggregates: std::mem::take(&mut spec.aggregates),
        rules: std::mem::take(&mut spec.rules),
        ids,
        schemas,
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
    if let Some(addr) = args.metrics_listen {
        let registry = helios_query_api::metrics::MetricsRegistry::new();
        crate::metrics::register_pipeline(&registry, Some(&handle), &metrics_log);
        crate::metrics::serve_stage(addr, registry).await?;
    }
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

/// Registers the schemas the processor reads and writes in a remote registry, under the
/// subjects of the deployment's topic names (`<topic>-value`).
async fn register_remote(remote: &RemoteRegistry, topics: &Topics) -> anyhow::Result<SchemaIds> {
    let reg = |base: &'static str, schema: &'static str| {
        let subject = format!("{}-value", topics.name(base));
        async move {
            remote.register(&subject, schema).await.with_context(|| {
                format!(
                    "registering {subject} at {} (a registry behind Helios' API keys needs                      an admin key in HELIOS_REGISTRY_KEY)",
                    remote.url()
                )
            })
        }
    };
    let ids = SchemaIds {
        event: reg("helios.events", Event::SCHEMA_JSON).await?,
        window_result: reg("helios.aggregates", WindowResult::SCHEMA_JSON).await?,
        dead_letter: reg("helios.dlq", DeadLetter::SCHEMA_JSON).await?,
        alert: reg("helios.alerts", Alert::SCHEMA_JSON).await?,
        insight: reg("helios.insights", Insight::SCHEMA_JSON).await?,
    };
    reg("helios.late", DeadLetter::SCHEMA_JSON).await?;
    Ok(ids)
}

/// Where processor checkpoints live inside a data dir.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state")
}
