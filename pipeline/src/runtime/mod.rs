//! The processor runtime: a consumer-group member on the events topic that runs every
//! `[[aggregate]]` and `[[rule]]` of a spec over its partitions and writes the results.
//!
//! It owns the loop around the pure operators: poll a batch, decode it (undecodable
//! records become dead letters, never drops; so do events dated more than `max_future`
//! after their receipt, which must not move a watermark), feed each partition's operators (window
//! operators, rule operators, and insight operators fed with the windows' final
//! results), write window results, alerts, insights, late events and dead letters, and
//! checkpoint each partition's state together with the offset it resumes from (see
//! [`crate::checkpoint`]).
//!
//! Exactly-once without log transactions (ADR-006): outputs of a batch are durable before
//! a checkpoint covering it is written, so a crash replays from a checkpoint and can only
//! repeat outputs, never lose them; every output has a deterministic key and id, so the
//! repeats are identical records that sinks drop.
//!
//! Determinism: state is per input partition, and a partition's operators are driven by
//! that partition's own watermark, advanced after every event and by every watermark
//! mark read there. Their output is then a function of the partition's log alone,
//! whatever the batch boundaries, the interleaving with other partitions, or where a
//! crash cut the run.
//!
//! Groups keyed by anything but `subject` (ADR-020): the aggregates and rules that group by
//! other keys, or by none, each run in a repartition stage on their own topic, fed by the
//! events stage (see [`repartition`]). A processor runs its events stage and every
//! repartition stage side by side, each a consumer-group member of its own input, with
//! the same checkpointing scheme.
//!
//! Quiet partitions (ADR-012): a partition without events for `idle_timeout` whose
//! operators wait on event time (a window to close, a held event or timer of a rule) gets
//! a watermark mark appended by [`Processor::run`]: wall clock minus the allowed
//! out-of-orderness. The clock is read when the mark is written; the mark is applied
//! when it is read back, in log order, so a replay reads the mark, never the clock
//! ([`helios_schemas::watermark_mark`]). [`Processor::run_to_end`] writes none.

// The runtime, unlike the operators it drives, runs on the clock: checkpoint intervals,
// batch latency, idle detection, and the value of the watermark marks it writes
// (pipeline/clippy.toml).
#![allow(clippy::disallowed_methods)]

mod direct;
mod metrics;
mod partition;
mod repartition;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use helios_log::{
    ConsumedRecord, ConsumerConfig, Log, LogConsumer, Record, SeekTo, TopicPartition, TopicSpec,
    TraceLinks,
};
use helios_schemas::{
    Alert, DeadLetter, Event, EventCodec, Insight, RecordCodec, WindowResult, watermark_mark,
};
use tracing::{Instrument, Span, debug, info, warn};

pub use direct::Direct;
pub use metrics::{Metrics, MetricsSnapshot, PartitionSnapshot};
use partition::{PartitionState, Specs};
use repartition::{From, Op, Rekeyed};

use crate::checkpoint::CheckpointStore;
use crate::expr::GroupKeyExpr;
use crate::spec::{Aggregate, Dedupe, Rule, Watermark, Window};
use crate::{PipelineError, Result};

/// The stage name late events carry in their `DeadLetter` record.
pub const LATE_STAGE: &str = "pipeline/late";
/// The stage name undecodable records carry in their `DeadLetter` record.
pub const DECODE_STAGE: &str = "pipeline/decode";
/// The stage name of events dated more than `max_future` after their `received_at`.
pub const FUTURE_STAGE: &str = "pipeline/future";
/// The stage name of events an aggregate or rule did not apply because it holds its
/// bound of open windows or keys (`max_open_windows`, `max_keys`).
pub const LIMIT_STAGE: &str = "pipeline/limit";
/// Records whose de-duplication lines are fetched together before they are processed:
/// enough misses in flight to hide memory latency, few enough lines to stay in L1.
const PREFETCH_RUN: usize = 64;

/// Settings of one processor.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Consumer group (and checkpoint namespace). Processors of one spec share it.
    pub group: String,
    /// Where events are read from.
    pub events_topic: String,
    /// Where `WindowResult` records go.
    pub aggregates_topic: String,
    /// Where `Alert` records go.
    pub alerts_topic: String,
    /// Where `Insight` records go.
    pub insights_topic: String,
    /// Where late events go (as `DeadLetter` records with stage `pipeline/late`).
    pub late_topic: String,
    /// Where undecodable records go.
    pub dead_letter_topic: String,
    /// Topic name prefix of the repartition topics, `<prefix><aggregate or rule name>`
    /// (names are unique across both).
    pub repartition_prefix: String,
    /// How often every partition's state is checkpointed (and on shutdown).
    pub checkpoint_interval: Duration,
    /// Records per poll.
    pub max_batch: usize,
    /// The spec's watermark settings.
    pub watermark: Watermark,
    /// An event dated more than this after its own `received_at` goes to the dead-letter
    /// topic and moves no watermark. The sources refuse such events already; this catches
    /// what reached the topic another way (an old producer, a hand-written record). It
    /// compares two fields of the record, never the clock, so a replay decides the same.
    /// Default 15 minutes; set it to the largest `max_future` of the sources.
    pub max_future: Duration,
    /// Repeats of an event (same `source` and `id`) dropped before any operator sees
    /// them: the spec's `[dedupe]`.
    pub dedupe: Dedupe,
}

impl ProcessorConfig {
    /// The standard topics, a checkpoint every 5 s, batches of up to 4096 records.
    pub fn new(group: impl Into<String>, watermark: Watermark) -> Self {
        ProcessorConfig {
            group: group.into(),
            events_topic: "helios.events".into(),
            aggregates_topic: "helios.aggregates".into(),
            alerts_topic: "helios.alerts".into(),
            insights_topic: "helios.insights".into(),
            late_topic: "helios.late".into(),
            dead_letter_topic: "helios.dlq".into(),
            repartition_prefix: "helios.repartition.".into(),
            checkpoint_interval: Duration::from_secs(5),
            max_batch: 4096,
            watermark,
            max_future: helios_schemas::event_time::DEFAULT_MAX_FUTURE,
            dedupe: Dedupe::default(),
        }
    }
}

/// The codecs a processor reads and writes with (schema ids from the registry).
#[derive(Debug)]
pub struct Codecs {
    pub events: Arc<EventCodec>,
    pub results: RecordCodec<WindowResult>,
    pub dead_letters: RecordCodec<DeadLetter>,
}

/// The codecs of the records derived from events and window results: alerts of the
/// rules, insights of the aggregates (see [`Processor::with_rules_and_insights`]).
#[derive(Debug)]
pub struct DerivedCodecs {
    pub alerts: RecordCodec<Alert>,
    pub insights: RecordCodec<Insight>,
}

/// What a run to the end of the log did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub metrics: MetricsSnapshot,
    pub elapsed: Duration,
}

/// Whether a group keyed by `keys` stays on one partition of the events topic (which is
/// keyed by subject): exactly when the keys include the bare `subject` column (ADR-006).
fn co_partitioned(keys: &[GroupKeyExpr]) -> bool {
    keys.iter()
        .any(|k| crate::spec::is_subject(k.expr.source()))
}

/// Refuses what cannot be repartitioned exactly (ADR-020): aggregates not grouped by
/// subject whose results would depend on the order partitions' records meet (session
/// windows, early results). The spec checker reports the same with a position; this guards
/// the processor's own callers.
pub fn check_repartitionable(aggregates: &[Aggregate]) -> Result<()> {
    for a in aggregates.iter().filter(|a| !co_partitioned(&a.group_by)) {
        let why = if matches!(a.window, Window::Session { .. }) {
            "session windows"
        } else if a.emit_every.is_some() {
            "early results (`emit_every`)"
        } else {
            continue;
        };
        return Err(PipelineError::NotCoPartitioned {
            kind: "aggregate",
            name: a.name.clone(),
            keys: if a.group_by.is_empty() {
                "nothing (one global group)".to_string()
            } else {
                a.group_by
                    .iter()
                    .map(|k| format!("`{}`", k.expr.source()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            why,
        });
    }
    Ok(())
}

/// A processor: build it, then [`Processor::run`] it until shutdown.
#[derive(Debug)]
pub struct Processor {
    config: ProcessorConfig,
    /// Aggregates and rules grouped by subject: run by the events stage.
    aggregates: Vec<Arc<Aggregate>>,
    rules: Vec<Arc<Rule>>,
    /// Aggregates and rules grouped by other keys: each in its own repartition stage.
    rekeyed: Vec<Rekeyed>,
    log: Log,
    codecs: Codecs,
    /// Set when rules and insights run (their outputs need these codecs).
    derived: Option<DerivedCodecs>,
    checkpoints: CheckpointStore,
    metrics: Arc<Metrics>,
}

/// Outputs of one batch, in a deterministic order.
#[derive(Default)]
struct Outputs {
    results: Vec<WindowResult>,
    alerts: Vec<Alert>,
    insights: Vec<Insight>,
    late: Vec<DeadLetter>,
    dead: Vec<DeadLetter>,
    /// Repeats dropped, by source.
    duplicates: BTreeMap<String, u64>,
    /// Events refused at an operator's bound, by operator (`aggregate/<name>`,
    /// `rule/<name>`).
    refused: BTreeMap<String, u64>,
    /// Records for each repartition topic the stage forwards to, in its order.
    forwards: Vec<Vec<Record>>,
    /// Forwarded events applied, and repeats of them dropped (repartition stages).
    repartitioned: (u64, u64),
}

impl Outputs {
    /// Empty outputs of `stage`, with a list of forwards per repartition topic.
    fn forwarding(stage: &Stage) -> Self {
        Outputs {
            forwards: vec![Vec::new(); stage.forwards.len()],
            ..Outputs::default()
        }
    }
}

impl Processor {
    /// A processor for `aggregates` (windows only; see [`Processor::with_rules_and_insights`]);
    /// those not grouped by subject run through repartition topics (refused when that
    /// cannot be exact: see [`check_repartitionable`]).
    pub fn new(
        config: ProcessorConfig,
        aggregates: Vec<Aggregate>,
        log: Log,
        codecs: Codecs,
        checkpoints: CheckpointStore,
    ) -> Result<Self> {
        check_repartitionable(&aggregates)?;
        let (aggregates, rekeyed): (Vec<_>, Vec<_>) = aggregates
            .into_iter()
            .map(Arc::new)
            .partition(|a| co_partitioned(&a.group_by));
        let rekeyed = rekeyed
            .into_iter()
            .map(|a| Rekeyed {
                topic: format!("{}{}", config.repartition_prefix, a.name),
                op: Op::Aggregate(a),
            })
            .collect();
        Ok(Processor {
            config,
            aggregates,
            rules: Vec::new(),
            rekeyed,
            log,
            codecs,
            derived: None,
            checkpoints,
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// Also runs `rules` (alerts to the alerts topic, their late events to the late topic)
    /// and the insight detectors over every aggregate's final results (insights to the
    /// insights topic), in each partition next to the window operators; rules not keyed by
    /// subject run through repartition topics.
    pub fn with_rules_and_insights(
        mut self,
        rules: Vec<Rule>,
        codecs: DerivedCodecs,
    ) -> Result<Self> {
        for r in rules.into_iter().map(Arc::new) {
            if co_partitioned(&r.per) {
                self.rules.push(r);
            } else {
                self.rekeyed.push(Rekeyed {
                    topic: format!("{}{}", self.config.repartition_prefix, r.name),
                    op: Op::Rule(r),
                });
            }
        }
        self.derived = Some(codecs);
        Ok(self)
    }

    /// The repartition topics this processor writes and reads.
    pub fn repartition_topics(&self) -> Vec<String> {
        self.rekeyed.iter().map(|r| r.topic.clone()).collect()
    }

    /// The stages this processor runs: the events stage, then one per repartition topic;
    /// partition counts as the log has them now.
    async fn stages(&self) -> Result<Vec<Stage>> {
        let partitions = self.partitions(&self.config.events_topic).await?;
        let mut forwards = Vec::with_capacity(self.rekeyed.len());
        for r in &self.rekeyed {
            forwards.push((r.clone(), self.partitions(&r.topic).await?));
        }
        let mut stages = vec![self.events_stage(forwards)];
        stages.extend(self.repartition_stages(partitions));
        Ok(stages)
    }

    /// The events stage, forwarding to `forwards` (with their partition counts).
    fn events_stage(&self, forwards: Vec<(Rekeyed, u32)>) -> Stage {
        Stage {
            topic: self.config.events_topic.clone(),
            group: self.config.group.clone(),
            aggregates: self.aggregates.clone(),
            rules: self.rules.clone(),
            forwards,
            sources: None,
        }
    }

    /// One stage per repartition topic, fed by `sources` events partitions.
    fn repartition_stages(&self, sources: u32) -> impl Iterator<Item = Stage> + '_ {
        self.rekeyed.iter().map(move |r| {
            let (aggregates, rules) = match &r.op {
                Op::Aggregate(a) => (vec![a.clone()], Vec::new()),
                Op::Rule(rule) => (Vec::new(), vec![rule.clone()]),
            };
            Stage {
                topic: r.topic.clone(),
                group: format!("{}.{}", self.config.group, r.topic),
                aggregates,
                rules,
                forwards: Vec::new(),
                sources: Some(sources),
            }
        })
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        let info = self
            .log
            .admin()
            .describe_topic(topic)
            .await
            .map_err(|e| PipelineError::log(format!("describing {topic}"), e))?;
        Ok(info.partitions.len() as u32)
    }

    fn specs<'a>(&self, stage: &'a Stage) -> Specs<'a> {
        Specs {
            aggregates: &stage.aggregates,
            rules: &stage.rules,
            insights: self.derived.is_some(),
            // A repartition stage's input is de-duplicated already, by the events stage.
            dedupe: if stage.sources.is_some() {
                Dedupe {
                    horizon: Duration::ZERO,
                    ..self.config.dedupe
                }
            } else {
                self.config.dedupe
            },
            upstream: stage.sources.is_some(),
        }
    }

    /// The processor's counters (shared; stays valid while it runs).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Creates the output topics if missing: results, late events, and (with rules and
    /// insights) alerts and insights with as many partitions as the events topic, dead
    /// letters with one (as `helios up` does).
    pub async fn ensure_topics(&self) -> Result<()> {
        let admin = self.log.admin();
        let events = admin
            .describe_topic(&self.config.events_topic)
            .await
            .map_err(|e| {
                PipelineError::log(format!("describing {}", self.config.events_topic), e)
            })?;
        let n = events.partitions.len() as u32;
        let mut topics = vec![
            (&self.config.aggregates_topic, n),
            (&self.config.late_topic, n),
            (&self.config.dead_letter_topic, 1),
        ];
        for r in &self.rekeyed {
            topics.push((&r.topic, n));
        }
        if self.derived.is_some() {
            topics.push((&self.config.alerts_topic, n));
            topics.push((&self.config.insights_topic, n));
        }
        for (topic, partitions) in topics {
            helios_log::create_topic_if_missing(
                &*admin,
                &TopicSpec::new(topic.clone(), partitions),
            )
            .await
            .map_err(|e| PipelineError::log(format!("creating {topic}"), e))?;
        }
        Ok(())
    }

    /// Runs until `stop` completes, then checkpoints every partition and returns. The
    /// events stage and each repartition stage run side by side.
    pub async fn run(self, stop: impl Future<Output = ()> + Send) -> Result<()> {
        use futures::FutureExt;
        let stop = stop.shared();
        let stages = self.stages().await?;
        let loops = stages
            .into_iter()
            .map(|stage| self.run_stage(stage, stop.clone()));
        futures::future::try_join_all(loops).await?;
        info!(group = %self.config.group, "Processor stopped; state checkpointed.");
        Ok(())
    }

    async fn run_stage(&self, stage: Stage, stop: impl Future<Output = ()>) -> Result<()> {
        let mut runner = Runner::start(self, stage).await?;
        let mut stop = std::pin::pin!(stop);
        let mut next_checkpoint = Instant::now() + self.config.checkpoint_interval;
        loop {
            let batch = tokio::select! {
                // A poll dropped by shutdown loses nothing: what it read is after the
                // checkpoint written below, and is read again on the next start.
                b = runner.consumer.poll(self.config.max_batch, Duration::from_millis(200)) => b,
                () = &mut stop => break,
            };
            let batch = batch
                .map_err(|e| PipelineError::log(format!("polling {}", runner.stage.topic), e))?;
            runner.step(self, batch).await?;
            runner.mark_quiet_partitions(self).await?;
            if Instant::now() >= next_checkpoint {
                runner.checkpoint(self, false).await?;
                next_checkpoint = Instant::now() + self.config.checkpoint_interval;
            }
        }
        runner.checkpoint(self, true).await
    }

    /// Runs until every assigned partition has been processed up to the end it had when
    /// the run started, checkpoints, and returns what was done (backtests, benchmarks,
    /// tests). The repartition stages run after the events stage, to the end of what it
    /// forwarded.
    pub async fn run_to_end(self) -> Result<RunSummary> {
        let started = Instant::now();
        for stage in self.stages().await? {
            self.run_stage_to_end(stage).await?;
        }
        Ok(RunSummary {
            metrics: self.metrics.snapshot(),
            elapsed: started.elapsed(),
        })
    }

    async fn run_stage_to_end(&self, stage: Stage) -> Result<()> {
        let topic = stage.topic.clone();
        let info = self
            .log
            .admin()
            .describe_topic(&topic)
            .await
            .map_err(|e| PipelineError::log(format!("describing {topic}"), e))?;
        let ends: BTreeMap<u32, u64> = info
            .partitions
            .iter()
            .map(|p| (p.partition, p.end_offset))
            .collect();
        let mut runner = Runner::start(self, stage).await?;
        let mut next_checkpoint = Instant::now() + self.config.checkpoint_interval;
        loop {
            let batch = runner
                .consumer
                .poll(self.config.max_batch, Duration::from_millis(50))
                .await
                .map_err(|e| PipelineError::log(format!("polling {topic}"), e))?;
            runner.step(self, batch).await?;
            if Instant::now() >= next_checkpoint {
                runner.checkpoint(self, false).await?;
                next_checkpoint = Instant::now() + self.config.checkpoint_interval;
            }
            let assigned = runner.consumer.assignment();
            let done = !assigned.is_empty()
                && assigned.iter().all(|tp| {
                    let end = ends.get(&tp.partition).copied().unwrap_or(0);
                    runner
                        .partitions
                        .get(&tp.partition)
                        .is_some_and(|p| p.next_offset >= end)
                });
            if done {
                break;
            }
        }
        runner.end_of_input(self).await?;
        runner.checkpoint(self, true).await
    }
}

/// One input of a processor: the events topic, or the repartition topic of one aggregate
/// or rule.
#[derive(Debug)]
struct Stage {
    topic: String,
    /// Consumer group (the processor's own for the events stage).
    group: String,
    aggregates: Vec<Arc<Aggregate>>,
    rules: Vec<Arc<Rule>>,
    /// Events stage: where events of the aggregates and rules not grouped by subject
    /// go, with each topic's partition count.
    forwards: Vec<(Rekeyed, u32)>,
    /// Repartition stage: the number of events partitions feeding it.
    sources: Option<u32>,
}

/// The running part of a stage: its consumer and its partitions' state.
struct Runner {
    stage: Stage,
    consumer: Box<dyn LogConsumer>,
    partitions: BTreeMap<u32, PartitionState>,
    ooo_us: i64,
    /// The event being processed, decoded into the previous one's allocations.
    event: Event,
    /// A forwarded record's key, built in place.
    key: Vec<u8>,
    /// Per record of the current run, its identity hash when it was peeked from the
    /// record's bytes ([`Runner::prefetch_identities`]); `None` to hash the decoded event.
    identities: Vec<Option<u64>>,
}

impl Runner {
    async fn start(p: &Processor, stage: Stage) -> Result<Runner> {
        let consumer = p
            .log
            .consumer(
                &[stage.topic.as_str()],
                ConsumerConfig::new(stage.group.clone()),
            )
            .await
            .map_err(|e| {
                PipelineError::log(
                    format!("joining group {} on {}", stage.group, stage.topic),
                    e,
                )
            })?;
        let w = p.config.watermark;
        info!(group = %stage.group, topic = %stage.topic, aggregates = stage.aggregates.len(), rules = stage.rules.len(), repartitioned = stage.forwards.len(), insights = p.derived.is_some(), "Processor stage started.");
        Ok(Runner {
            stage,
            consumer,
            partitions: BTreeMap::new(),
            ooo_us: i64::try_from(w.max_out_of_orderness.as_micros()).unwrap_or(i64::MAX),
            event: Event::default(),
            key: Vec::new(),
            identities: Vec::with_capacity(PREFETCH_RUN),
        })
    }

    /// The events stage (not a repartition stage).
    fn is_events(&self) -> bool {
        self.stage.sources.is_none()
    }

    /// Brings the partition map in line with the assignment: restores newly assigned
    /// partitions from their checkpoints (and seeks there), forgets revoked ones (their
    /// new owner resumes from their last checkpoint).
    async fn sync_assignment(&mut self, p: &Processor) -> Result<BTreeSet<u32>> {
        let assigned: BTreeSet<u32> = self
            .consumer
            .assignment()
            .into_iter()
            .filter(|tp| *tp.topic == *self.stage.topic)
            .map(|tp| tp.partition)
            .collect();
        let revoked: Vec<u32> = self
            .partitions
            .keys()
            .filter(|k| !assigned.contains(k))
            .copied()
            .collect();
        for k in revoked {
            self.partitions.remove(&k);
            if self.is_events() {
                p.metrics.forget_partition(k);
            } else {
                p.metrics.forget_repartition_partition(&self.stage.topic, k);
            }
            info!(
                topic = %self.stage.topic,
                partition = k,
                "Partition revoked; its state stays in its last checkpoint."
            );
        }
        let mut new = BTreeSet::new();
        let now = Instant::now();
        for k in assigned {
            if self.partitions.contains_key(&k) {
                continue;
            }
            let tp = TopicPartition::new(&self.stage.topic, k);
            let specs = p.specs(&self.stage);
            let state = match p.checkpoints.load(&tp).await? {
                Some(r) => {
                    let s = PartitionState::restore(tp.clone(), specs, &r, now)?;
                    p.metrics.restored();
                    info!(partition = %tp, offset = r.offset, bytes = r.payload.len(), "Restored partition state from its checkpoint.");
                    s
                }
                None => {
                    info!(partition = %tp, "No checkpoint: processing the partition from its beginning.");
                    PartitionState::new(tp.clone(), specs, 0, now)
                }
            };
            let to = if state.next_offset == 0 {
                SeekTo::Beginning
            } else {
                SeekTo::Offset(state.next_offset)
            };
            self.consumer
                .seek(&tp, to)
                .await
                .map_err(|e| PipelineError::log(format!("seeking {tp} to its checkpoint"), e))?;
            self.partitions.insert(k, state);
            new.insert(k);
        }
        Ok(new)
    }

    /// Reads the de-duplication set's line for each record of `run` (identities peeked
    /// from the undecoded bytes), so their cache misses overlap instead of stalling one
    /// event each, and keeps each peeked identity in `identities` (the decoded event's
    /// own, as the peek reads only the built-in layout), so it is hashed once.
    fn prefetch_identities(&mut self, p: &Processor, run: &[ConsumedRecord]) {
        let Runner {
            partitions,
            identities,
            ..
        } = self;
        identities.clear();
        let mut lines = crate::dedupe::Prefetch::with_capacity(run.len());
        // A run mostly holds one partition's records: looked up when it changes.
        let mut current = None;
        for rec in run {
            let seen = match current {
                Some((k, seen)) if k == rec.partition => seen,
                _ => {
                    let seen = partitions
                        .get(&rec.partition)
                        .and_then(|st| st.seen.as_ref());
                    current = Some((rec.partition, seen));
                    seen
                }
            };
            let h = seen.and_then(|seen| {
                #[cfg(feature = "memory-floor")]
                if crate::dedupe::floor::mode() == Some(crate::dedupe::floor::Floor::Line) {
                    let h = crate::dedupe::floor::position_key(rec.partition, rec.offset);
                    lines.add(seen, h);
                    return Some(h);
                }
                let (source, id) = p.codecs.events.peek_source_and_id(&rec.value)?;
                let h = crate::dedupe::identity_of_bytes(source, id);
                lines.add(seen, h);
                Some(h)
            });
            identities.push(h);
        }
        lines.fetch();
    }

    /// At the end of a run's input ([`Processor::run_to_end`]): see
    /// [`forward_end_of_input`].
    async fn end_of_input(&mut self, p: &Processor) -> Result<()> {
        if self.stage.forwards.is_empty() {
            return Ok(());
        }
        let mut out = Outputs::forwarding(&self.stage);
        let mut partitions: Vec<&mut PartitionState> = self.partitions.values_mut().collect();
        forward_end_of_input(&self.stage, &mut partitions, self.ooo_us, &mut out);
        write_outputs(p, &self.stage, out, &[]).await
    }

    /// Processes one polled batch and writes its outputs durably, inside a
    /// `pipeline.batch` span when traces are exported and the poll read something (an
    /// idle poll every 200 ms would only flood the traces).
    async fn step(&mut self, p: &Processor, batch: Vec<ConsumedRecord>) -> Result<()> {
        if batch.is_empty() || !helios_log::trace_propagation_enabled() {
            return self.step_in(p, batch, &Span::none()).await;
        }
        let span = tracing::info_span!(
            "pipeline.batch",
            group = %self.stage.group,
            topic = %self.stage.topic,
            records = batch.len(),
            events = tracing::field::Empty,
            offsets = tracing::field::Empty,
            results = tracing::field::Empty,
            alerts = tracing::field::Empty,
            insights = tracing::field::Empty,
            late = tracing::field::Empty,
            dead_letters = tracing::field::Empty,
            linked = tracing::field::Empty,
        );
        self.step_in(p, batch, &span).instrument(span.clone()).await
    }

    /// [`Runner::step`] inside `span`: the span is linked to the trace context of every
    /// record processed (a batch has many parents), and the records it writes carry its
    /// own context.
    async fn step_in(
        &mut self,
        p: &Processor,
        batch: Vec<ConsumedRecord>,
        span: &Span,
    ) -> Result<()> {
        let started = Instant::now();
        let traced = !span.is_disabled();
        let mut links = TraceLinks::default();
        // First and last offset processed per partition, for the span.
        let mut ranges: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        // Records of partitions just (re)assigned were read from wherever the consumer
        // stood; the seek to the checkpoint makes the next poll read them again.
        let fresh = self.sync_assignment(p).await?;
        let mut out = Outputs::forwarding(&self.stage);
        let mut events = 0u64;
        // Records per partition, indexed by partition number (a handful of partitions).
        let mut per_partition: Vec<u64> = Vec::new();
        let mut reseek: BTreeSet<u32> = BTreeSet::new();
        for run in batch.chunks(PREFETCH_RUN) {
            self.prefetch_identities(p, run);
            for (j, rec) in run.iter().enumerate() {
                if fresh.contains(&rec.partition) || reseek.contains(&rec.partition) {
                    continue;
                }
                let Some(st) = self.partitions.get_mut(&rec.partition) else {
                    continue;
                };
                if rec.offset < st.next_offset {
                    // Already processed (read again around a seek).
                    continue;
                }
                if rec.offset > st.next_offset {
                    if st.sought {
                        warn!(partition = %st.tp, expected = st.next_offset, got = rec.offset,
                        "Records between the checkpoint and the retained log were deleted by retention; continuing.");
                    } else {
                        reseek.insert(rec.partition);
                        continue;
                    }
                }
                st.sought = false;
                events += 1;
                let i = rec.partition as usize;
                if per_partition.len() <= i {
                    per_partition.resize(i + 1, 0);
                }
                per_partition[i] += 1;
                if traced {
                    links.add(rec);
                    let r = ranges
                        .entry(rec.partition)
                        .or_insert((rec.offset, rec.offset));
                    r.1 = rec.offset;
                }
                let ctx = Ctx {
                    p,
                    stage: &self.stage,
                    ooo_us: self.ooo_us,
                    polled: started,
                };
                if self.stage.sources.is_some() {
                    process_forwarded(&ctx, st, rec, &mut self.event, &mut out).await?;
                } else {
                    let peeked = self.identities.get(j).copied().flatten();
                    process_record(
                        &ctx,
                        st,
                        rec,
                        peeked,
                        &mut self.event,
                        &mut self.key,
                        &mut out,
                    )
                    .await?;
                }
            }
        }
        for k in reseek {
            if let Some(st) = self.partitions.get_mut(&k) {
                let tp = st.tp.clone();
                self.consumer
                    .seek(&tp, SeekTo::Offset(st.next_offset))
                    .await
                    .map_err(|e| PipelineError::log(format!("seeking {tp}"), e))?;
                st.sought = true;
            }
        }
        forward_watermarks(
            &self.stage,
            self.partitions.values_mut(),
            self.ooo_us,
            &mut out,
        );
        // How far results lag: the furthest-behind partition that has a watermark.
        let merged = self
            .partitions
            .values()
            .filter_map(|st| st.watermark(self.ooo_us))
            .min();
        if let Some(merged) = merged
            && self.is_events()
        {
            p.metrics
                .watermark_delay(wall_clock_us().saturating_sub(merged) / 1000);
        }
        let (results, late, dead) = (
            out.results.len() as u64,
            out.late.len() as u64,
            out.dead.len() as u64,
        );
        let (alerts, insights) = (out.alerts.len() as u64, out.insights.len() as u64);
        let trace = if traced {
            span.record("events", events);
            let offsets: Vec<String> = ranges
                .iter()
                .map(|(k, (first, last))| format!("{k}:{first}-{last}"))
                .collect();
            span.record("offsets", offsets.join(","));
            span.record("results", results);
            span.record("alerts", alerts);
            span.record("insights", insights);
            span.record("late", late);
            span.record("dead_letters", dead);
            span.record("linked", links.len());
            links.link(span);
            helios_log::trace_headers(span)
        } else {
            Vec::new()
        };
        let duplicates = std::mem::take(&mut out.duplicates);
        let forwarded: u64 = out
            .forwards
            .iter()
            .flatten()
            .filter(|r| r.partition.is_none())
            .count() as u64;
        let (applied, repeats) = out.repartitioned;
        let refused = std::mem::take(&mut out.refused);
        write_outputs(p, &self.stage, out, &trace).await?;
        p.metrics.repartitioned(forwarded, applied, repeats);
        p.metrics.refused(&refused);
        if !self.is_events() {
            for (&k, st) in &self.partitions {
                p.metrics
                    .repartition_position(&self.stage.topic, k, st.next_offset);
            }
            // The events stage reports identities, partitions and events in.
            let latency = started.elapsed().as_micros() as u64;
            p.metrics.batch(0, results, late, dead, latency);
            p.metrics.derived(alerts, insights);
            return Ok(());
        }
        p.metrics.duplicates(&duplicates);
        report_state(&p.metrics, self.partitions.values_mut());
        // After the outputs are durable: `next_offset` is now fully processed.
        let wall_us = wall_clock_us();
        for (&k, st) in &self.partitions {
            let delay = st
                .watermark(self.ooo_us)
                .map(|w| wall_us.saturating_sub(w) / 1000);
            let n = per_partition.get(k as usize).copied().unwrap_or(0);
            p.metrics.partition(k, n, st.next_offset, delay);
        }
        if events > 0 || results > 0 || alerts > 0 || insights > 0 {
            let latency = started.elapsed().as_micros() as u64;
            p.metrics.batch(events, results, late, dead, latency);
            p.metrics.derived(alerts, insights);
            debug!(
                events,
                results,
                alerts,
                insights,
                late,
                dead_letters = dead,
                latency_us = latency,
                "Batch processed."
            );
        }
        Ok(())
    }

    /// Appends a watermark mark to every partition that has been quiet for `idle_timeout`
    /// while one of its operators waits for a watermark the wall clock (minus the allowed
    /// out-of-orderness) has passed, unless a mark of ours is still on its way there.
    /// The mark moves the partition when it is read back (see the module docs).
    ///
    /// A partition whose events are also forwarded to repartition topics gets a mark at
    /// most every `idle_timeout` while it is quiet (what waits there is in another stage),
    /// so the repartition stages' watermark, the smallest of all partitions', moves on.
    /// Repartition stages write no marks: their watermark comes from the events stage.
    async fn mark_quiet_partitions(&mut self, p: &Processor) -> Result<()> {
        if !self.is_events() {
            return Ok(());
        }
        let now = Instant::now();
        let idle = p.config.watermark.idle_timeout;
        let watermark = wall_clock_us().saturating_sub(self.ooo_us);
        let forwards = !self.stage.forwards.is_empty();
        let mut marks = Vec::new();
        for (&k, st) in &mut self.partitions {
            let quiet = now.saturating_duration_since(st.last_record) >= idle;
            let behind = st.watermark(self.ooo_us).is_none_or(|w| w < watermark);
            let due = st.next_deadline().is_some_and(|d| d <= watermark)
                || (forwards
                    && st
                        .last_mark
                        .is_none_or(|t| now.saturating_duration_since(t) >= idle));
            if quiet && behind && due && !st.mark_pending {
                st.mark_pending = true;
                st.last_mark = Some(now);
                marks.push(Record {
                    headers: watermark_mark::headers(watermark),
                    partition: Some(k),
                    ..Record::default()
                });
            }
        }
        if marks.is_empty() {
            return Ok(());
        }
        let n = marks.len() as u64;
        let topic = &p.config.events_topic;
        p.log
            .producer()
            .append(topic, marks)
            .await
            .map_err(|e| PipelineError::log(format!("appending a watermark mark to {topic}"), e))?;
        p.metrics.marks_written(n);
        debug!(
            partitions = n,
            watermark, "Watermark marks written to quiet partitions."
        );
        Ok(())
    }

    /// Writes every changed partition's state with its resume offset, then commits those
    /// offsets to the group (informational: the checkpoint is the source of truth).
    async fn checkpoint(&mut self, p: &Processor, all: bool) -> Result<()> {
        let started = Instant::now();
        let mut bytes = 0u64;
        let mut written = 0u64;
        let mut commits = Vec::new();
        for st in self.partitions.values_mut() {
            if !st.dirty && !all {
                continue;
            }
            bytes += st.save(&p.checkpoints).await? as u64;
            written += 1;
            st.dirty = false;
            commits.push((st.tp.clone(), st.next_offset));
        }
        if written == 0 {
            return Ok(());
        }
        if let Err(e) = self.consumer.commit(&commits).await {
            p.metrics.commit_failed();
            // Only informational; the next checkpoint commits again.
            warn!(error = %e, "Committing the group offsets failed; the checkpoints are written.");
        }
        let us = started.elapsed().as_micros() as u64;
        p.metrics.checkpoint_round(written, bytes, us);
        debug!(partitions = written, bytes, us, "Checkpoint written.");
        Ok(())
    }
}

/// Reports the identities the partitions remember, and those forgotten early since the
/// last report; and each operator's state in its fullest partition, with its bound.
fn report_state<'a>(metrics: &Metrics, partitions: impl Iterator<Item = &'a mut PartitionState>) {
    let (mut remembered, mut evicted) = (0u64, 0u64);
    let mut states: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut unfollowed: BTreeMap<String, u64> = BTreeMap::new();
    let mut fullest = |name: String, size: usize, bound: usize| {
        let s = states.entry(name).or_insert((0, bound as u64));
        s.0 = s.0.max(size as u64);
    };
    for st in partitions {
        if let Some(seen) = st.seen.as_mut() {
            evicted += seen.take_evicted();
            remembered += seen.len() as u64;
        }
        for a in &st.aggregates {
            fullest(
                format!("aggregate/{}", a.name()),
                a.open_windows(),
                a.max_open_windows(),
            );
        }
        for r in &st.rules {
            fullest(format!("rule/{}", r.name()), r.keys(), r.rule().max_keys);
        }
        for i in &mut st.insights {
            let (groups, bound) = i.groups();
            fullest(format!("insights/{}", i.aggregate()), groups, bound);
            let n = i.take_unfollowed();
            if n > 0 {
                *unfollowed
                    .entry(format!("insights/{}", i.aggregate()))
                    .or_default() += n;
            }
        }
    }
    metrics.seen(remembered, evicted);
    metrics.operator_state(states);
    metrics.refused(&unfollowed);
}

/// What every record of a stage is processed with.
struct Ctx<'a> {
    p: &'a Processor,
    stage: &'a Stage,
    ooo_us: i64,
    /// When the batch was taken (idle detection: one clock read per batch, not per record).
    polled: Instant,
}

/// Decodes `rec` into `event` (the previous record's, its allocations reused); `false`
/// when it is undecodable (then a dead letter).
async fn decode(
    p: &Processor,
    rec: &ConsumedRecord,
    event: &mut Event,
    out: &mut Outputs,
) -> Result<bool> {
    if p.codecs.events.decode_into(&rec.value, event).is_ok() {
        return Ok(true);
    }
    match p.codecs.events.decode_async(&rec.value).await {
        Ok(e) => {
            *event = e;
            Ok(true)
        }
        Err(e) if e.retryable() => Err(PipelineError::Encode {
            what: "an event (the schema registry is unavailable; retry)",
            source: e,
        }),
        Err(e) => {
            out.dead.push(dead_letter(
                DECODE_STAGE,
                &Pos::of(rec),
                format!("undecodable event: {e}"),
                None,
            ));
            Ok(false)
        }
    }
}

/// Feeds one record of the events stage to its partition's operators, and forwards it
/// to the repartition topics whose operators want it. `peeked` is the record's identity
/// hash if it was read from its bytes ahead (then it is the decoded event's).
async fn process_record(
    ctx: &Ctx<'_>,
    st: &mut PartitionState,
    rec: &ConsumedRecord,
    peeked: Option<u64>,
    event: &mut Event,
    key: &mut Vec<u8>,
    out: &mut Outputs,
) -> Result<()> {
    let p = ctx.p;
    st.next_offset = rec.offset + 1;
    st.dirty = true;
    if let Some(mark) = watermark_mark::read(&rec.headers) {
        apply_mark(p, st, rec, mark, out);
        return Ok(());
    }
    st.last_record = ctx.polled;
    if !decode(p, rec, event, out).await? {
        return Ok(());
    }
    let event = &*event;
    // Only accepted events reach the operators and the partition's watermark.
    if let Err(why) = helios_schemas::event_time::check(event, p.config.max_future) {
        out.dead.push(dead_letter(
            FUTURE_STAGE,
            &Pos::of(rec),
            why.to_string(),
            None,
        ));
        return Ok(());
    }
    // A producer's retry, a redelivery, a re-read record: applied once.
    if let Some(seen) = &mut st.seen
        && !seen.admit_identity(
            peeked.unwrap_or_else(|| crate::dedupe::identity(&event.source, &event.id)),
            event.time,
        )
    {
        match out.duplicates.get_mut(&event.source) {
            Some(n) => *n += 1,
            None => {
                out.duplicates.insert(event.source.clone(), 1);
            }
        }
        return Ok(());
    }
    if !ctx.stage.forwards.is_empty() {
        forward_event(ctx.stage, st, ctx.ooo_us, event, rec, key, out);
    }
    let refused = feed(st, event, rec.offset, i64::MIN);
    refusal_letters(refused, &Pos::of(rec), out);
    if event.time > st.max_event_time {
        st.max_event_time = event.time;
        advance(st, event.time.saturating_sub(ctx.ooo_us), out);
    }
    Ok(())
}

/// Feeds one record of a repartition stage: a forwarded event (applied once, judged late
/// against its source partition's watermark) or a source partition's watermark (the
/// operators move when every source partition has passed it).
async fn process_forwarded(
    ctx: &Ctx<'_>,
    st: &mut PartitionState,
    rec: &ConsumedRecord,
    event: &mut Event,
    out: &mut Outputs,
) -> Result<()> {
    st.next_offset = rec.offset + 1;
    st.dirty = true;
    let from = match repartition::read(rec) {
        Ok(from) => from,
        Err(why) => {
            out.dead
                .push(dead_letter(DECODE_STAGE, &Pos::of(rec), why, None));
            return Ok(());
        }
    };
    let upstream = st.upstream.get_or_insert_default();
    match from {
        From::Mark {
            partition,
            watermark,
        } => {
            // As on the events topic: a mark dated past its own log time (not written by
            // a processor) is a dead letter and moves nothing.
            let logged = rec.timestamp_ms.saturating_mul(1000);
            if let Err(why) =
                helios_schemas::event_time::check_times(watermark, logged, ctx.p.config.max_future)
            {
                let reason = format!("watermark mark: {why}");
                out.dead
                    .push(dead_letter(FUTURE_STAGE, &Pos::of(rec), reason, None));
                return Ok(());
            }
            upstream.mark(partition, watermark);
            let sources = ctx.stage.sources.unwrap_or(0);
            if let Some(w) = upstream.watermark(sources)
                && w > st.mark
            {
                st.mark = w;
                advance(st, w, out);
            }
        }
        From::Event {
            partition,
            offset,
            watermark,
        } => {
            if !upstream.admit(partition, offset) {
                out.repartitioned.1 += 1;
                return Ok(());
            }
            out.repartitioned.0 += 1;
            st.last_record = ctx.polled;
            if !decode(ctx.p, rec, event, out).await? {
                return Ok(());
            }
            // A late event's dead letter names its place in the events topic, as it
            // would without repartitioning.
            let source = Pos {
                topic: &ctx.p.config.events_topic,
                partition,
                offset,
                ..Pos::of(rec)
            };
            let refused = feed(st, event, From::seq(partition, offset), watermark);
            refusal_letters(refused, &source, out);
        }
    }
    Ok(())
}

/// Operators that did not apply an event: each one's reason and name.
#[derive(Debug, Default)]
struct Refusals {
    /// Found it late: late dead letters (`helios.late`, the `late_events` table).
    late: Vec<(String, String)>,
    /// Hold their bound of open windows or keys: dead letters (`helios.dlq`), with the
    /// operator as `helios_pipeline_refused_total` names it (`aggregate/<name>`,
    /// `rule/<name>`).
    full: Vec<(String, String, String)>,
}

impl Refusals {
    /// Every operator applied the event.
    fn is_empty(&self) -> bool {
        self.late.is_empty() && self.full.is_empty()
    }
}

/// Offers an accepted event to a partition's aggregates and rules; `seq` is its stable
/// position (tie-breaks) and `late_at` a watermark to judge it late against besides the
/// operators' own. Returns, for each operator that did not apply it, the reason and the
/// name its dead letter carries (the caller knows the record's position).
fn feed(st: &mut PartitionState, event: &Event, seq: u64, late_at: i64) -> Refusals {
    use crate::rules::NotApplied as R;
    use crate::window::NotApplied as W;
    let mut skipped = Refusals::default();
    for op in &mut st.aggregates {
        match op.on_event_at(event, seq, late_at) {
            Ok(()) => {}
            Err(W::Late(late)) => {
                let reason = format!("aggregate `{}`: {}", late.aggregate, late.reason);
                skipped.late.push((reason, late.aggregate));
            }
            Err(W::Full(full)) => {
                let reason = format!("aggregate `{}`: {}", full.aggregate, full.reason);
                let operator = format!("aggregate/{}", full.aggregate);
                skipped.full.push((reason, full.aggregate, operator));
            }
        }
    }
    for op in &mut st.rules {
        match op.on_event_at(event, seq, late_at) {
            Ok(()) => {}
            Err(R::Late(late)) => {
                let reason = format!("rule `{}`: {}", late.rule, late.reason);
                skipped.late.push((reason, format!("rule/{}", late.rule)));
            }
            Err(R::Full(full)) => {
                let reason = format!("rule `{}`: {}", full.rule, full.reason);
                let name = format!("rule/{}", full.rule);
                skipped.full.push((reason, name.clone(), name));
            }
        }
    }
    skipped
}

/// Dead letters for what [`feed`] did not apply, at `pos`: late ones to the late topic,
/// those over an operator's bound to the dead-letter topic.
fn refusal_letters(skipped: Refusals, pos: &Pos<'_>, out: &mut Outputs) {
    for (reason, name) in skipped.late {
        out.late
            .push(dead_letter(LATE_STAGE, pos, reason, Some(&name)));
    }
    for (reason, name, operator) in skipped.full {
        *out.refused.entry(operator).or_default() += 1;
        out.dead
            .push(dead_letter(LIMIT_STAGE, pos, reason, Some(&name)));
    }
}

/// The events stage's forwards of an accepted event at `rec`: to each repartition topic
/// whose operator wants it, with the partition's watermark before it.
fn forward_event(
    stage: &Stage,
    st: &PartitionState,
    ooo_us: i64,
    event: &Event,
    rec: &ConsumedRecord,
    key: &mut Vec<u8>,
    out: &mut Outputs,
) {
    // Judged late there against what it would be judged against here.
    let w = st.watermark(ooo_us).unwrap_or(i64::MIN);
    for (i, (r, _)) in stage.forwards.iter().enumerate() {
        if r.op.wants(event) {
            r.op.partition_key(event, key);
            out.forwards[i].push(repartition::forward(key, rec, w));
        }
    }
}

/// Forwards each partition's watermark, where it moved, to every partition of every
/// repartition topic (after the partition's forwarded events so far).
fn forward_watermarks<'a>(
    stage: &Stage,
    partitions: impl Iterator<Item = &'a mut PartitionState>,
    ooo_us: i64,
    out: &mut Outputs,
) {
    if stage.forwards.is_empty() {
        return;
    }
    for st in partitions {
        let Some(w) = st.watermark(ooo_us) else {
            continue;
        };
        if w <= st.forwarded {
            continue;
        }
        st.forwarded = w;
        for (i, (_, n)) in stage.forwards.iter().enumerate() {
            out.forwards[i].extend((0..*n).map(|to| repartition::mark(st.tp.partition, to, w)));
        }
    }
}

/// At the end of a run's input: a partition of the events stage that never had an event
/// forwards the furthest watermark of the others, since nothing more comes from it in
/// this run, so the repartition stages can close what the rest of the input closes.
fn forward_end_of_input(
    stage: &Stage,
    partitions: &mut [&mut PartitionState],
    ooo_us: i64,
    out: &mut Outputs,
) {
    let Some(furthest) = partitions
        .iter()
        .filter_map(|st| st.watermark(ooo_us))
        .max()
    else {
        return;
    };
    for st in partitions.iter_mut() {
        if st.watermark(ooo_us).is_none() && st.forwarded < furthest {
            st.forwarded = furthest;
            for (i, (_, n)) in stage.forwards.iter().enumerate() {
                out.forwards[i]
                    .extend((0..*n).map(|to| repartition::mark(st.tp.partition, to, furthest)));
            }
        }
    }
}

/// Applies a watermark mark read at `rec`: moves the partition's operators to its
/// watermark. A mark that cannot be read, or dated more than `max_future` after the
/// record's log time (one not written by a processor), becomes a dead letter and moves
/// nothing; both checks read only the record, so a replay decides the same.
fn apply_mark(
    p: &Processor,
    st: &mut PartitionState,
    rec: &ConsumedRecord,
    mark: std::result::Result<i64, String>,
    out: &mut Outputs,
) {
    st.mark_pending = false;
    let watermark = match mark {
        Ok(w) => w,
        Err(why) => {
            out.dead
                .push(dead_letter(DECODE_STAGE, &Pos::of(rec), why, None));
            return;
        }
    };
    let logged = rec.timestamp_ms.saturating_mul(1000);
    if let Err(why) =
        helios_schemas::event_time::check_times(watermark, logged, p.config.max_future)
    {
        let reason = format!("watermark mark: {why}");
        out.dead
            .push(dead_letter(FUTURE_STAGE, &Pos::of(rec), reason, None));
        return;
    }
    if watermark > st.mark {
        st.mark = watermark;
        advance(st, watermark, out);
    }
}

/// Microseconds since the epoch by the wall clock (metrics and watermark marks only).
fn wall_clock_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Moves a partition's operators to `watermark`: each window operator, then its insight
/// operator with the results that produced (final ones count), then every rule.
fn advance(st: &mut PartitionState, watermark: i64, out: &mut Outputs) {
    for (i, op) in st.aggregates.iter_mut().enumerate() {
        let before = out.results.len();
        op.on_watermark(watermark, &mut out.results);
        if let Some(insights) = st.insights.get_mut(i) {
            for r in &out.results[before..] {
                insights.on_result(r, &mut out.insights);
            }
            insights.on_watermark(watermark, &mut out.insights);
        }
    }
    for op in &mut st.rules {
        op.on_watermark(watermark, &mut out.alerts);
    }
    if let Some(seen) = &mut st.seen {
        seen.expire(watermark);
    }
}

/// The log position a dead letter names, with the record's bytes and log time.
struct Pos<'a> {
    topic: &'a str,
    partition: u32,
    offset: u64,
    value: &'a Bytes,
    timestamp_ms: i64,
}

impl<'a> Pos<'a> {
    fn of(rec: &'a ConsumedRecord) -> Self {
        Pos {
            topic: &rec.topic,
            partition: rec.partition,
            offset: rec.offset,
            value: &rec.value,
            timestamp_ms: rec.timestamp_ms,
        }
    }
}

/// A dead letter for the record at `pos` with a deterministic id (stage, aggregate or
/// `rule/<name>`, position) and time (the record's log timestamp), so a replay writes the
/// same bytes.
fn dead_letter(stage: &str, pos: &Pos<'_>, reason: String, aggregate: Option<&str>) -> DeadLetter {
    DeadLetter {
        id: DeadLetter::position_id(stage, aggregate, pos.topic, pos.partition, pos.offset),
        stage: stage.to_string(),
        reason,
        original: pos.value.to_vec(),
        topic: Some(pos.topic.to_string()),
        partition: i32::try_from(pos.partition).ok(),
        offset: i64::try_from(pos.offset).ok(),
        at: pos.timestamp_ms.saturating_mul(1000),
    }
}

/// A record keyed by an output's id, carrying the batch's trace context.
fn output(id: &str, value: Bytes, trace: &[(String, Bytes)]) -> Record {
    Record {
        headers: trace.to_vec(),
        ..Record::keyed(Bytes::copy_from_slice(id.as_bytes()), value)
    }
}

/// Appends a batch's outputs and waits until they are durable; each record carries
/// `trace`, the batch span's context (empty when traces are not exported).
async fn write_outputs(
    p: &Processor,
    stage: &Stage,
    out: Outputs,
    trace: &[(String, Bytes)],
) -> Result<()> {
    let (c, codecs) = (&p.config, &p.codecs);
    let producer = p.log.producer();
    // Forwards first: a repartition stage may read them as soon as they are there.
    for ((r, _), records) in stage.forwards.iter().zip(out.forwards) {
        if !records.is_empty() {
            producer
                .append(&r.topic, records)
                .await
                .map_err(|e| PipelineError::log(format!("appending to {}", r.topic), e))?;
        }
    }
    let mut batches = vec![(
        &c.aggregates_topic,
        encode_all(&out.results, "a window result", trace, |r| {
            (&r.id, codecs.results.encode(r))
        })?,
    )];
    if let Some(derived) = &p.derived {
        batches.push((
            &c.alerts_topic,
            encode_all(&out.alerts, "an alert", trace, |a| {
                (&a.id, derived.alerts.encode(a))
            })?,
        ));
        batches.push((
            &c.insights_topic,
            encode_all(&out.insights, "an insight", trace, |i| {
                (&i.id, derived.insights.encode(i))
            })?,
        ));
    }
    for (topic, dead) in [
        (&c.late_topic, &out.late),
        (&c.dead_letter_topic, &out.dead),
    ] {
        let records = encode_all(dead, "a dead letter", trace, |d| {
            (&d.id, codecs.dead_letters.encode(d))
        })?;
        batches.push((topic, records));
    }
    for (topic, records) in batches {
        if !records.is_empty() {
            producer
                .append(topic, records)
                .await
                .map_err(|e| PipelineError::log(format!("appending to {topic}"), e))?;
        }
    }
    Ok(())
}

/// Encodes `items` (`what` names one in errors) as records keyed by their ids.
fn encode_all<T>(
    items: &[T],
    what: &'static str,
    trace: &[(String, Bytes)],
    encode: impl Fn(&T) -> (&str, helios_schemas::Result<Bytes>),
) -> Result<Vec<Record>> {
    items
        .iter()
        .map(|item| {
            let (id, value) = encode(item);
            let value = value.map_err(|e| PipelineError::Encode { what, source: e })?;
            Ok(output(id, value, trace))
        })
        .collect()
}

#[cfg(test)]
mod tests;
