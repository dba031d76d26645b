//! The state one input partition owns: its operators (windows, rules, insights), its
//! event-time progress and the offset it resumes from, and how that state becomes a
//! checkpoint payload and back.

use std::sync::Arc;
use std::time::Instant;

use helios_log::TopicPartition;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::repartition::UpstreamState;
use crate::dedupe::{Seen, SeenState};
use crate::ids::hash64;
use crate::insights::{InsightOperator, InsightSettings};
use crate::rules::{RuleOperator, RuleState};
use crate::spec::{Aggregate, Dedupe, Rule};
use crate::window::{AggregateState, AggregateStateRef, WindowedAggregate};
use crate::{PipelineError, Result};

/// One input partition's operators and progress.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub tp: TopicPartition,
    pub aggregates: Vec<WindowedAggregate>,
    /// One per spec rule.
    pub rules: Vec<RuleOperator>,
    /// One per aggregate, in the same order as `aggregates` (empty when the processor
    /// runs without insights).
    pub insights: Vec<InsightOperator>,
    /// The identities applied here, when de-duplication is on.
    pub seen: Option<Seen>,
    /// In a repartition stage: how far each events partition feeding it has come.
    pub upstream: Option<UpstreamState>,
    /// In the events stage: the watermark last forwarded to the repartition topics
    /// (`i64::MIN` for none; not checkpointed: forwarding again is harmless).
    pub forwarded: i64,
    /// Offset of the next record to process (the checkpoint's resume point).
    pub next_offset: u64,
    /// Largest event time processed here, µs.
    pub max_event_time: i64,
    /// Largest watermark mark applied here, µs (`i64::MIN` for none); in a repartition
    /// stage, the watermark its sources agree on. Checkpointed: the watermark forwarded
    /// to repartition stages must not step back after a restart.
    pub mark: i64,
    /// A mark this processor wrote has not been read back yet (no second one meanwhile).
    pub mark_pending: bool,
    /// When this processor last wrote a mark here.
    pub last_mark: Option<Instant>,
    /// Wall-clock time of the last event record (idle detection only; marks do not count).
    pub last_record: Instant,
    /// Just sought: the next record may legitimately be past `next_offset` (retention
    /// deleted what the checkpoint pointed at).
    pub sought: bool,
    /// Something changed since the last checkpoint.
    pub dirty: bool,
}

/// The checkpoint payload of one partition, as read.
#[derive(Debug, Deserialize)]
struct Payload {
    max_event_time: i64,
    aggregates: Vec<OperatorState>,
    rules: Vec<RuleSnapshot>,
    insights: Vec<InsightSnapshot>,
    seen: Option<SeenState>,
    upstream: Option<UpstreamState>,
    mark: i64,
}

/// The payload written before repartitioning.
#[derive(Debug, Deserialize)]
struct PayloadV3 {
    max_event_time: i64,
    aggregates: Vec<OperatorState>,
    rules: Vec<RuleSnapshot>,
    insights: Vec<InsightSnapshot>,
    seen: Option<SeenState>,
}

/// The payload written before de-duplication; restored with nothing remembered.
#[derive(Debug, Deserialize)]
struct PayloadV2 {
    max_event_time: i64,
    aggregates: Vec<OperatorState>,
    rules: Vec<RuleSnapshot>,
    insights: Vec<InsightSnapshot>,
}

/// The payload written before rules and insights ran in the processor; restored with
/// empty rules and insights.
#[derive(Debug, Deserialize)]
struct PayloadV1 {
    max_event_time: i64,
    aggregates: Vec<OperatorState>,
}

/// The same payload as written: window, rule and insight state serialized in place, not
/// copied (a copy of 1M open windows would double the memory a checkpoint needs).
#[derive(Serialize)]
struct PayloadRef<'a> {
    max_event_time: i64,
    aggregates: Vec<OperatorStateRef<'a>>,
    rules: Vec<RuleSnapshot<&'a str, &'a RuleState>>,
    insights: Vec<InsightSnapshot<&'a str, &'a InsightOperator>>,
    seen: Option<&'a SeenState>,
    upstream: Option<&'a UpstreamState>,
    mark: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct RuleSnapshot<N = String, S = RuleState> {
    name: N,
    fingerprint: u64,
    state: S,
}

#[derive(Debug, Serialize, Deserialize)]
struct InsightSnapshot<N = String, S = InsightOperator> {
    aggregate: N,
    fingerprint: u64,
    state: S,
}

#[derive(Debug, Deserialize)]
struct OperatorState {
    name: String,
    fingerprint: u64,
    state: AggregateState,
}

/// [`OperatorState`] as written, borrowing the operator.
#[derive(Serialize)]
struct OperatorStateRef<'a> {
    name: &'a str,
    fingerprint: u64,
    state: AggregateStateRef<'a>,
}

/// Identifies an aggregate's definition, so state is never restored into a changed one.
pub(crate) fn fingerprint(a: &Aggregate) -> u64 {
    // Debug output covers the name, window, keys and measures (with their SQL text),
    // lateness and emit interval: everything the state's shape and meaning depend on.
    hash64(format!("{a:?}").as_bytes())
}

/// Identifies a rule's definition (name, kind with its conditions' SQL, keys, window,
/// severity).
pub(crate) fn rule_fingerprint(r: &Rule) -> u64 {
    hash64(format!("{r:?}").as_bytes())
}

/// Identifies the insight detectors of an aggregate: its definition and the settings.
fn insight_fingerprint(a: &Aggregate, settings: &InsightSettings) -> u64 {
    hash64(format!("insights {a:?} {settings:?}").as_bytes())
}

/// The specs a partition's operators are built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Specs<'a> {
    pub aggregates: &'a [Arc<Aggregate>],
    pub rules: &'a [Arc<Rule>],
    /// Whether every aggregate's results feed insight detectors.
    pub insights: bool,
    /// Which repeats are dropped.
    pub dedupe: Dedupe,
    /// A repartition stage: fed by the events stage, not by sources.
    pub upstream: bool,
}

impl Specs<'_> {
    fn seen(&self, state: Option<SeenState>) -> Option<Seen> {
        self.dedupe.enabled().then(|| {
            Seen::restore(
                self.dedupe.horizon,
                self.dedupe.max_ids,
                state.unwrap_or_default(),
            )
        })
    }

    fn new_insights(&self) -> Vec<InsightOperator> {
        if !self.insights {
            return Vec::new();
        }
        self.aggregates
            .iter()
            .map(|a| InsightOperator::new(a, InsightSettings::default()))
            .collect()
    }
}

impl PartitionState {
    /// Fresh state: nothing processed, resume from `start`.
    pub fn new(tp: TopicPartition, specs: Specs<'_>, start: u64, now: Instant) -> Self {
        PartitionState {
            tp,
            aggregates: specs
                .aggregates
                .iter()
                .map(|s| WindowedAggregate::new(s.clone()))
                .collect(),
            rules: specs
                .rules
                .iter()
                .map(|r| RuleOperator::new(r.clone()))
                .collect(),
            insights: specs.new_insights(),
            seen: specs.seen(None),
            upstream: specs.upstream.then(UpstreamState::default),
            forwarded: i64::MIN,
            next_offset: start,
            max_event_time: i64::MIN,
            mark: i64::MIN,
            mark_pending: false,
            last_mark: None,
            last_record: now,
            sought: true,
            dirty: false,
        }
    }

    /// State from a checkpoint payload. An aggregate or rule whose definition changed
    /// since the checkpoint (or is new) starts empty, with a warning.
    pub fn restore(
        tp: TopicPartition,
        specs: Specs<'_>,
        offset: u64,
        payload: &[u8],
        now: Instant,
    ) -> Result<Self> {
        let p: Payload = match postcard::from_bytes(payload) {
            Ok(p) => p,
            Err(e) => match postcard::from_bytes::<PayloadV3>(payload) {
                Ok(old) => Payload {
                    max_event_time: old.max_event_time,
                    aggregates: old.aggregates,
                    rules: old.rules,
                    insights: old.insights,
                    seen: old.seen,
                    upstream: None,
                    mark: i64::MIN,
                },
                Err(_) => match postcard::from_bytes::<PayloadV2>(payload) {
                    Ok(old) => {
                        warn!(partition = %tp, "Checkpoint written before de-duplication; it remembers events from here.");
                        Payload {
                            max_event_time: old.max_event_time,
                            aggregates: old.aggregates,
                            rules: old.rules,
                            insights: old.insights,
                            seen: None,
                            upstream: None,
                            mark: i64::MIN,
                        }
                    }
                    Err(_) => match postcard::from_bytes::<PayloadV1>(payload) {
                        Ok(old) => {
                            warn!(partition = %tp, "Checkpoint written before rules and insights ran in the processor; they start empty from here.");
                            Payload {
                                max_event_time: old.max_event_time,
                                aggregates: old.aggregates,
                                rules: Vec::new(),
                                insights: Vec::new(),
                                seen: None,
                                upstream: None,
                                mark: i64::MIN,
                            }
                        }
                        Err(_) => {
                            return Err(PipelineError::CheckpointState {
                                partition: tp.to_string(),
                                reason: format!("cannot decode the state: {e}"),
                            });
                        }
                    },
                },
            },
        };
        let mut saved = p.aggregates;
        let aggregates = specs
            .aggregates
            .iter()
            .map(|s| {
                let fp = fingerprint(s);
                match saved
                    .iter()
                    .position(|o| o.name == s.name && o.fingerprint == fp)
                {
                    Some(i) => WindowedAggregate::restore(s.clone(), saved.swap_remove(i).state),
                    None => {
                        warn!(
                            partition = %tp, aggregate = %s.name,
                            "Aggregate is new or changed since the checkpoint; it starts empty from here."
                        );
                        WindowedAggregate::new(s.clone())
                    }
                }
            })
            .collect();
        let mut saved = p.rules;
        let mut rules = Vec::with_capacity(specs.rules.len());
        for r in specs.rules {
            let fp = rule_fingerprint(r);
            let restored = match saved
                .iter()
                .position(|o| o.name == r.name && o.fingerprint == fp)
            {
                Some(i) => Some(RuleOperator::restore(
                    r.clone(),
                    saved.swap_remove(i).state,
                )?),
                None => None,
            };
            rules.push(restored.unwrap_or_else(|| {
                warn!(
                    partition = %tp, rule = %r.name,
                    "Rule is new or changed since the checkpoint; it starts empty from here."
                );
                RuleOperator::new(r.clone())
            }));
        }
        let mut saved = p.insights;
        let mut insights = specs.new_insights();
        for (op, a) in insights.iter_mut().zip(specs.aggregates) {
            let fp = insight_fingerprint(a, &InsightSettings::default());
            match saved
                .iter()
                .position(|o| o.aggregate == a.name && o.fingerprint == fp)
            {
                Some(i) => op.resume(saved.swap_remove(i).state),
                None => warn!(
                    partition = %tp, aggregate = %a.name,
                    "Insights of an aggregate that is new or changed since the checkpoint start empty from here."
                ),
            }
        }
        Ok(PartitionState {
            tp,
            aggregates,
            rules,
            insights,
            seen: specs.seen(p.seen),
            upstream: specs.upstream.then(|| p.upstream.unwrap_or_default()),
            forwarded: i64::MIN,
            next_offset: offset,
            max_event_time: p.max_event_time,
            mark: p.mark,
            mark_pending: false,
            last_mark: None,
            last_record: now,
            sought: true,
            dirty: false,
        })
    }

    /// The partition's watermark: its newest event time minus `ooo_us`, or the last mark
    /// applied if that is further; `None` before either. In a repartition stage, the
    /// watermark its sources agree on (the last one applied).
    pub fn watermark(&self, ooo_us: i64) -> Option<i64> {
        if self.upstream.is_some() {
            return (self.mark != i64::MIN).then_some(self.mark);
        }
        let from_events =
            (self.max_event_time != i64::MIN).then(|| self.max_event_time.saturating_sub(ooo_us));
        from_events
            .into_iter()
            .chain((self.mark != i64::MIN).then_some(self.mark))
            .max()
    }

    /// The smallest watermark at which one of the partition's operators would emit
    /// something; `None` when nothing here waits on event time.
    pub fn next_deadline(&self) -> Option<i64> {
        let windows = self.aggregates.iter().filter_map(|a| a.next_deadline());
        let rules = self.rules.iter().filter_map(|r| r.next_deadline());
        let insights = self.insights.iter().filter_map(|i| i.next_deadline());
        windows.chain(rules).chain(insights).min()
    }

    /// The checkpoint payload of the current state.
    pub fn payload(&self) -> Result<Vec<u8>> {
        let p = PayloadRef {
            max_event_time: self.max_event_time,
            aggregates: self
                .aggregates
                .iter()
                .map(|a| OperatorStateRef {
                    name: a.name(),
                    fingerprint: fingerprint(a.spec()),
                    state: a.state(),
                })
                .collect(),
            rules: self
                .rules
                .iter()
                .map(|r| RuleSnapshot {
                    name: r.name(),
                    fingerprint: rule_fingerprint(r.rule()),
                    state: r.state(),
                })
                .collect(),
            insights: self
                .insights
                .iter()
                .zip(&self.aggregates)
                .map(|(i, a)| InsightSnapshot {
                    aggregate: a.name(),
                    fingerprint: insight_fingerprint(a.spec(), &InsightSettings::default()),
                    state: i,
                })
                .collect(),
            seen: self.seen.as_ref().map(Seen::state),
            upstream: self.upstream.as_ref(),
            mark: self.mark,
        };
        postcard::to_allocvec(&p).map_err(|e| PipelineError::CheckpointState {
            partition: self.tp.to_string(),
            reason: format!("cannot encode the state: {e}"),
        })
    }
}
