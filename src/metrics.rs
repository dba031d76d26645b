//! The stages' own counters as `/metrics` collectors.
//!
//! Each stage keeps its counters in its own crate (atomics, no dependency on the API);
//! this module adapts them to [`Collect`] under the names of
//! [`helios_query_api::metrics::names`], and computes consumer lag from the stages'
//! positions and the log's end offsets, fetched at scrape time.
//!
//! With an OTLP endpoint the same collectors are also read by OpenTelemetry observable
//! instruments ([`install_otlp`]): one per family, under the family's name, so both
//! exports show the same numbers from the same atomics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use helios_connectors::runtime::{RequestOutcome, SourceState, Supervisor};
use helios_log::Log;
use helios_pipeline::runtime::{Metrics, ProcessorConfig};
use helios_query_api::metrics::names::{self as n};
use helios_query_api::metrics::parse::{Sample, parse};
use helios_query_api::metrics::{Collect, Exposition, Kind, MetricsRegistry, RefreshFuture};
use helios_query_api::storage::Usage;
use helios_sinks::SinkMetrics;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{AsyncInstrument, Meter};
use tracing::{debug, warn};

use crate::stages::disk::DataDirUsage;

/// Source types that receive requests (their routes count request outcomes).
const PUSH_TYPES: [&str; 3] = ["http", "github", "webhook"];

/// Every source state, for the one-hot `helios_source_up`.
const STATES: [SourceState; 5] = [
    SourceState::Starting,
    SourceState::Running,
    SourceState::Paused,
    SourceState::Backoff,
    SourceState::Stopped,
];

fn state_label(state: SourceState) -> &'static str {
    match state {
        SourceState::Starting => "starting",
        SourceState::Running => "running",
        SourceState::Paused => "paused",
        SourceState::Backoff => "backoff",
        SourceState::Stopped => "stopped",
    }
}

/// Every source the supervisor runs: state, counters, and the push routes' requests.
#[derive(Debug)]
pub struct SourcesCollector {
    supervisor: Arc<Supervisor>,
}

impl SourcesCollector {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        SourcesCollector { supervisor }
    }
}

impl Collect for SourcesCollector {
    fn collect(&self, out: &mut Exposition) {
        let mut statuses = self.supervisor.statuses();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        let (mut errors, mut dead_letters) = (0, 0);
        let (mut invalid, mut unavailable, mut disk_full) = (0, 0, 0);
        for s in &statuses {
            let labels = [s.name.as_str(), s.kind.as_str()];
            for state in STATES {
                let label = state_label(state);
                let up = u64::from(s.state == state);
                out.gauge(&n::SOURCE_UP, &[&s.name, &s.kind, label], up);
            }
            out.counter(&n::SOURCE_EVENTS, &labels, s.events_emitted);
            out.counter(&n::SOURCE_ERRORS, &labels, s.errors);
            out.counter(&n::SOURCE_DEAD_LETTERS, &labels, s.dead_letters);
            out.counter(&n::SOURCE_RESTARTS, &labels, s.restarts);
            if let Some(t) = s.last_event_time {
                out.gauge(&n::SOURCE_LAST_EVENT, &labels, t as f64 / 1e6);
            }
            errors += s.errors;
            dead_letters += s.dead_letters;
            if !PUSH_TYPES.contains(&s.kind.as_str()) {
                continue;
            }
            // The source may have been removed since `statuses`; then it has no counters.
            let Ok(handle) = self.supervisor.get(&s.name) else {
                continue;
            };
            let requests = handle.requests();
            for outcome in RequestOutcome::ALL {
                let count = requests.requests(outcome);
                out.counter(&n::INGEST_REQUESTS, &[&s.name, outcome.as_str()], count);
                match outcome {
                    RequestOutcome::Accepted => {}
                    RequestOutcome::Invalid
                    | RequestOutcome::TooLarge
                    | RequestOutcome::UnsupportedMediaType => invalid += count,
                    RequestOutcome::Paused | RequestOutcome::Busy | RequestOutcome::LogError => {
                        unavailable += count;
                    }
                    RequestOutcome::DiskFull => disk_full += count,
                }
            }
            let (accepted, rejected) = requests.events();
            out.counter(&n::INGEST_EVENTS, &[&s.name, "accepted"], accepted);
            out.counter(&n::INGEST_EVENTS, &[&s.name, "rejected"], rejected);
        }
        out.counter(&n::ERRORS, &["ingest", "invalid_request"], invalid);
        out.counter(&n::ERRORS, &["ingest", "unavailable"], unavailable);
        out.counter(&n::ERRORS, &["ingest", "disk_full"], disk_full);
        out.counter(&n::ERRORS, &["source", "source_error"], errors);
        out.counter(&n::ERRORS, &["source", "dead_letter"], dead_letters);
    }
}

/// The end offsets of some topics, fetched from the log before each scrape, for lag.
#[derive(Debug)]
pub struct EndOffsets {
    log: Log,
    topics: Vec<String>,
    ends: Mutex<BTreeMap<(String, u32), u64>>,
}

impl EndOffsets {
    pub fn new(log: Log, topics: Vec<String>) -> Self {
        EndOffsets {
            log,
            topics,
            ends: Mutex::new(BTreeMap::new()),
        }
    }

    async fn refresh(&self) {
        let admin = self.log.admin();
        for topic in &self.topics {
            match admin.describe_topic(topic).await {
                Ok(info) => {
                    let mut ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
                    for p in info.partitions {
                        ends.insert((topic.clone(), p.partition), p.end_offset);
                    }
                }
                // A topic not created yet has no lag to report; a broker hiccup leaves
                // the previous ends in place.
                Err(e) => debug!(topic, error = %e, "No end offsets for lag this scrape."),
            }
        }
    }

    /// `end - position` (never negative), or `None` before the end is known.
    fn lag(&self, topic: &str, partition: u32, position: u64) -> Option<u64> {
        let ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        ends.get(&(topic.to_owned(), partition))
            .map(|end| end.saturating_sub(position))
    }
}

/// The processor: events in per partition, records out per topic, watermark delay,
/// batch latency, checkpoints, errors, and lag on the events topic and on the
/// repartition topics.
#[derive(Debug)]
pub struct PipelineCollector {
    metrics: Arc<Metrics>,
    config: ProcessorConfig,
    ends: EndOffsets,
}

impl PipelineCollector {
    pub fn new(
        metrics: Arc<Metrics>,
        config: ProcessorConfig,
        log: Log,
        repartition_topics: Vec<String>,
    ) -> Self {
        let mut topics = vec![config.events_topic.clone()];
        topics.extend(repartition_topics);
        let ends = EndOffsets::new(log, topics);
        PipelineCollector {
            metrics,
            config,
            ends,
        }
    }
}

impl Collect for PipelineCollector {
    fn collect(&self, out: &mut Exposition) {
        let m = self.metrics.snapshot();
        let c = &self.config;
        for p in self.metrics.partitions() {
            let partition = p.partition.to_string();
            out.counter(&n::PIPELINE_EVENTS_IN, &[&partition], p.events_in);
            if let Some(ms) = p.watermark_delay_ms {
                out.gauge(&n::PIPELINE_WATERMARK_DELAY, &[&partition], ms as f64 / 1e3);
            }
            if let Some(lag) = self.ends.lag(&c.events_topic, p.partition, p.next_offset) {
                out.gauge(
                    &n::CONSUMER_LAG,
                    &["pipeline", &c.events_topic, &partition],
                    lag,
                );
            }
        }
        for (topic, partition, next) in self.metrics.repartition_positions() {
            if let Some(lag) = self.ends.lag(&topic, partition, next) {
                let partition = partition.to_string();
                out.gauge(&n::CONSUMER_LAG, &["pipeline", &topic, &partition], lag);
            }
        }
        for (topic, count) in [
            (&c.aggregates_topic, m.results_out),
            (&c.alerts_topic, m.alerts_out),
            (&c.insights_topic, m.insights_out),
            (&c.late_topic, m.late_events),
            (&c.dead_letter_topic, m.dead_letters),
        ] {
            out.counter(&n::PIPELINE_RECORDS_OUT, &[topic], count);
        }
        out.summary(
            &n::PIPELINE_BATCH_LATENCY,
            &[],
            m.batch_latency_us_total as f64 / 1e6,
            m.batches,
        );
        out.counter(&n::PIPELINE_CHECKPOINTS, &[], m.checkpoints);
        out.counter(&n::PIPELINE_WATERMARK_MARKS, &[], m.watermark_marks);
        for (source, count) in self.metrics.duplicates_by_source() {
            out.counter(&n::PIPELINE_DUPLICATES, &[&source], count);
        }
        for (operator, count) in self.metrics.refused_by_operator() {
            out.counter(&n::PIPELINE_REFUSED, &[&operator], count);
        }
        out.gauge(&n::PIPELINE_DEDUPE_IDENTITIES, &[], m.dedupe_ids);
        out.counter(&n::PIPELINE_DEDUPE_EVICTED, &[], m.dedupe_evicted);
        for (operator, (state, limit)) in self.metrics.operator_states() {
            out.gauge(&n::PIPELINE_OPERATOR_STATE, &[&operator], state);
            out.gauge(&n::PIPELINE_OPERATOR_STATE_LIMIT, &[&operator], limit);
        }
        out.counter(&n::PIPELINE_REPARTITIONED, &["out"], m.repartitioned_out);
        out.counter(&n::PIPELINE_REPARTITIONED, &["in"], m.repartitioned_in);
        out.counter(&n::PIPELINE_REPARTITION_REPEATS, &[], m.repartition_repeats);
        out.gauge(&n::PIPELINE_CHECKPOINT_BYTES, &[], m.checkpoint_bytes_last);
        out.gauge(
            &n::PIPELINE_CHECKPOINT_DURATION,
            &[],
            m.checkpoint_us_last as f64 / 1e6,
        );
        out.counter(&n::ERRORS, &["pipeline", "dead_letter"], m.dead_letters);
        out.counter(&n::ERRORS, &["pipeline", "commit"], m.commit_errors);
        out.counter(&n::ERRORS, &["pipeline", "fatal"], m.fatal_errors);
    }

    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(self.ends.refresh())
    }
}

/// The sink: records in, rows per table, flush latency, buffer, retries, errors and lag
/// on the topics it reads.
#[derive(Debug)]
pub struct SinkCollector {
    metrics: Arc<SinkMetrics>,
    ends: EndOffsets,
}

impl SinkCollector {
    pub fn new(metrics: Arc<SinkMetrics>, log: Log, topics: Vec<String>) -> Self {
        SinkCollector {
            metrics,
            ends: EndOffsets::new(log, topics),
        }
    }
}

impl Collect for SinkCollector {
    fn collect(&self, out: &mut Exposition) {
        let s = self.metrics.snapshot();
        out.counter(&n::SINK_RECORDS_IN, &[], s.records_in);
        for (table, rows) in self.metrics.rows_by_table() {
            out.counter(&n::SINK_ROWS, &[&table], rows);
        }
        for (aggregate, rows) in self.metrics.late_by_aggregate() {
            out.counter(&n::SINK_LATE_EVENTS, &[&aggregate], rows);
        }
        let h = self.metrics.batch_latency();
        out.histogram(
            &n::SINK_BATCH_LATENCY,
            &[],
            &h.buckets,
            h.sum_seconds,
            h.count,
        );
        out.gauge(&n::SINK_BUFFERED_ROWS, &[], s.buffered_rows);
        out.counter(&n::SINK_RETRIES, &[], s.retries);
        out.counter(&n::ERRORS, &["sink", "poll"], s.poll_errors);
        out.counter(&n::ERRORS, &["sink", "flush"], s.flush_errors);
        out.counter(&n::ERRORS, &["sink", "dead_letter"], s.dead_lettered);
        for (topic, partition, committed) in self.metrics.committed() {
            if let Some(lag) = self.ends.lag(&topic, partition, committed) {
                let partition = partition.to_string();
                out.gauge(&n::CONSUMER_LAG, &["sink", &topic, &partition], lag);
            }
        }
    }

    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(self.ends.refresh())
    }
}

/// The data dir's disk: free space and the reserve, each topic's and table's size and
/// limits; measured before each scrape.
#[derive(Debug)]
pub struct DiskCollector {
    usage: DataDirUsage,
    last: Mutex<Option<Usage>>,
}

impl DiskCollector {
    pub fn new(usage: DataDirUsage) -> Self {
        DiskCollector {
            usage,
            last: Mutex::new(None),
        }
    }
}

impl Collect for DiskCollector {
    fn collect(&self, out: &mut Exposition) {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let Some(u) = last.as_ref() else { return };
        if let Some(free) = u.free_bytes {
            out.gauge(&n::DISK_FREE, &[], free);
        }
        if let Some(total) = u.total_bytes {
            out.gauge(&n::DISK_TOTAL, &[], total);
        }
        if let Some(reserve) = u.min_free_bytes {
            out.gauge(&n::DISK_MIN_FREE, &[], reserve);
        }
        for t in &u.topics {
            out.gauge(&n::LOG_SIZE, &[&t.name], t.bytes);
            if let Some(cap) = t.retention_bytes {
                out.gauge(&n::LOG_RETENTION_BYTES, &[&t.name], cap);
            }
            if let Some(age) = t.retention_seconds {
                out.gauge(&n::LOG_RETENTION_SECONDS, &[&t.name], age);
            }
        }
        for t in &u.tables {
            out.gauge(&n::STORE_SIZE, &[&t.name], t.bytes);
        }
        if let Some(cap) = u.store_max_bytes {
            out.gauge(&n::STORE_MAX_SIZE, &[], cap);
        }
    }

    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(async move {
            let usage = self.usage.measure().await;
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(usage);
        })
    }
}

/// Adds the processor's collector (when the spec runs one).
pub fn register_pipeline(
    registry: &MetricsRegistry,
    handle: Option<&crate::stages::pipeline::PipelineHandle>,
    log: &Log,
) {
    if let Some(h) = handle {
        registry.register(Arc::new(PipelineCollector::new(
            h.metrics.clone(),
            h.config.clone(),
            log.clone(),
            h.repartition_topics.clone(),
        )));
    }
}

/// Adds the sink's collector.
pub fn register_sinks(
    registry: &MetricsRegistry,
    sinks: &crate::stages::sinks::RunningSinks,
    log: &Log,
) {
    registry.register(Arc::new(SinkCollector::new(
        sinks.metrics.clone(),
        log.clone(),
        sinks.topics.clone(),
    )));
}

/// What the OTLP instruments read: the registries handed to [`export_registry`] (a
/// process's `/metrics`), and the stages' collectors handed to [`export_pipeline`] and
/// [`export_sinks`] by the commands that serve no `/metrics` of their own.
#[derive(Debug, Default)]
struct OtlpExport {
    registries: Mutex<Vec<MetricsRegistry>>,
    /// The last collection, reused by every instrument of one export.
    last: Mutex<Option<(Instant, Arc<Vec<Sample>>)>>,
}

static OTLP: OnceLock<OtlpExport> = OnceLock::new();

/// How long one collection serves the instruments: one export reads every instrument
/// within milliseconds, so each export collects once.
const OTLP_COLLECTION_TTL: Duration = Duration::from_millis(500);

impl OtlpExport {
    fn samples(&self) -> Arc<Vec<Sample>> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, samples)) = &*last
            && at.elapsed() < OTLP_COLLECTION_TTL
        {
            return samples.clone();
        }
        let registries = self
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut samples = Vec::new();
        for r in registries {
            let text = r.collect();
            match parse(&text) {
                Ok(scrape) => samples.extend(scrape.samples),
                // The writer and the parser are tested against each other; a failure
                // here is a bug, reported rather than exported half.
                Err(e) => warn!(
                    line = e.line,
                    error = e.message,
                    "The metrics text did not parse; skipping it in the OTLP export."
                ),
            }
        }
        let samples = Arc::new(samples);
        *last = Some((Instant::now(), samples.clone()));
        samples
    }

    fn add(&self, registry: MetricsRegistry) {
        self.registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(registry);
    }
}

/// Registers one observable instrument per `/metrics` family on `meter` (counters as
/// counters, gauges as gauges; a summary's or histogram's `_sum`, `_count` and `_bucket`
/// series as counters, `le` an attribute), and refreshes the collectors' lag data every
/// `every` (the export interval). Must run inside the runtime. Once per process.
pub fn install_otlp(meter: &Meter, every: Duration) {
    if OTLP.set(OtlpExport::default()).is_err() {
        return;
    }
    for family in n::ALL {
        let series: &[&str] = match family.kind {
            Kind::Counter | Kind::Gauge => &[""],
            Kind::Summary => &["_sum", "_count"],
            Kind::Histogram => &["_bucket", "_sum", "_count"],
        };
        for suffix in series {
            let name = format!("{}{suffix}", family.name);
            let wanted = name.clone();
            let observe = move |o: &dyn AsyncInstrument<f64>| {
                let Some(export) = OTLP.get() else {
                    return;
                };
                for s in export.samples().iter().filter(|s| s.name == wanted) {
                    let attributes: Vec<KeyValue> = s
                        .labels
                        .iter()
                        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                        .collect();
                    o.observe(s.value, &attributes);
                }
            };
            // The SDK keeps the callbacks; the instrument handles are not needed.
            if family.kind == Kind::Gauge {
                meter
                    .f64_observable_gauge(name)
                    .with_description(family.help)
                    .with_callback(observe)
                    .build();
            } else {
                meter
                    .f64_observable_counter(name)
                    .with_description(family.help)
                    .with_callback(observe)
                    .build();
            }
        }
    }
    // Lag needs the log's end offsets, which only a scrape fetches.
    tokio::spawn(async move {
        loop {
            let registries = match OTLP.get() {
                Some(e) => e
                    .registries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
                None => return,
            };
            for r in registries {
                r.scrape().await;
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// Exports `registry` (a process's `/metrics`) over OTLP too; nothing without an endpoint.
pub fn export_registry(registry: &MetricsRegistry) {
    if let Some(e) = OTLP.get() {
        e.add(registry.clone());
    }
}

/// Exports the processor's counters over OTLP; nothing without an endpoint.
pub fn export_pipeline(handle: Option<&crate::stages::pipeline::PipelineHandle>, log: &Log) {
    if OTLP.get().is_some() {
        let registry = MetricsRegistry::new();
        register_pipeline(&registry, handle, log);
        export_registry(&registry);
    }
}

/// Exports the sink's counters over OTLP; nothing without an endpoint.
pub fn export_sinks(sinks: &crate::stages::sinks::RunningSinks, log: &Log) {
    if OTLP.get().is_some() {
        let registry = MetricsRegistry::new();
        register_sinks(&registry, sinks, log);
        export_registry(&registry);
    }
}

#[cfg(test)]
mod tests;
