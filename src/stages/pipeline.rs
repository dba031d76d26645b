//! The pipeline stage: the processor over `helios.events` with the spec's aggregates and
//! rules (those not grouped by subject through `helios.repartition.<name>`), its output
//! schemas registered, its checkpoints in a shared directory. `helios
//! up` and `helios run pipeline` both start it with [`start_pipeline`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use helios_log::Log;
use helios_pipeline::checkpoint::CheckpointStore;
use helios_pipeline::runtime::{Codecs, DerivedCodecs, Metrics, Processor, ProcessorConfig};
use helios_pipeline::spec::{Aggregate, Dedupe, Rule, Watermark};
use helios_schemas::{
    Alert, AvroRecord, DeadLetter, Event, EventCodec, Insight, RecordCodec, SchemaSource,
    WindowResult,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::backend::Topics;
use crate::stages::schemas::Schemas;
use crate::stages::supervision::Failures;

/// Everything [`start_pipeline`] needs.
#[derive(Debug)]
pub struct PipelineSetup {
    pub log: Log,
    pub watermark: Watermark,
    /// Repeats of an event dropped before the operators (`[dedupe]`).
    pub dedupe: Dedupe,
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
    pub failures: Failures,
    /// Events dated more than this after their `received_at` are dead letters.
    pub max_future: Duration,
}

/// The processor's repeat counts, for `GET /v1/sources` when sources and processor share
/// a process (`helios up`).
#[derive(Debug)]
pub struct Duplicates(pub Arc<Metrics>);

impl helios_connectors::runtime::DuplicateCounts for Duplicates {
    fn duplicates_by_source(&self) -> std::collections::BTreeMap<String, u64> {
        self.0.duplicates_by_source()
    }
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
    /// The repartition topics of the aggregates and rules not grouped by subject.
    pub repartition_topics: Vec<String>,
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

/// Registers the schemas the processor reads and writes, under the subjects of the
/// deployment's topic names (`<topic>-value`), embedded or remote.
pub async fn register_schemas(schemas: &Schemas, topics: &Topics) -> anyhow::Result<SchemaIds> {
    let ids = SchemaIds {
        event: schemas
            .register(topics, "helios.events", Event::SCHEMA_JSON)
            .await?,
        window_result: (schemas)
            .register(topics, "helios.aggregates", WindowResult::SCHEMA_JSON)
            .await?,
        dead_letter: (schemas)
            .register(topics, "helios.dlq", DeadLetter::SCHEMA_JSON)
            .await?,
        alert: schemas
            .register(topics, "helios.alerts", Alert::SCHEMA_JSON)
            .await?,
        insight: (schemas)
            .register(topics, "helios.insights", Insight::SCHEMA_JSON)
            .await?,
    };
    // Late events are dead-letter records on their own topic.
    (schemas)
        .register(topics, "helios.late", DeadLetter::SCHEMA_JSON)
        .await?;
    Ok(ids)
}

/// Starts the processor as a task; `None` when the spec has no aggregates and no rules.
pub async fn start_pipeline(setup: PipelineSetup) -> anyhow::Result<Option<PipelineHandle>> {
    if setup.aggregates.is_empty() && setup.rules.is_empty() {
        return Ok(None);
    }
    let mut config = ProcessorConfig::new(setup.group.clone(), setup.watermark);
    config.checkpoint_interval = setup.checkpoint_interval;
    config.max_future = setup.max_future;
    config.dedupe = setup.dedupe;
    for topic in [
        &mut config.events_topic,
        &mut config.aggregates_topic,
        &mut config.alerts_topic,
        &mut config.insights_topic,
        &mut config.late_topic,
        &mut config.dead_letter_topic,
        &mut config.repartition_prefix,
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
    let repartition_topics = processor.repartition_topics();
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
        repartition_topics,
    }))
}

/// Where processor checkpoints live inside a data dir.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("state")
}
