//! The state one input partition owns: its operators (windows, rules, insights), its
//! event-time progress and the offset it resumes from, and how that state becomes a
//! checkpoint payload and back.
//!
//! Payload formats, newest first. In a version 2 checkpoint object ([`crate::checkpoint`])
//! the payload is [`PayloadRef`]: the remembered identities are a [`SeenCheckpoint`] whose
//! hashes mostly sit in the checkpoint's parts, each written once (issue 13: rewriting a
//! million identities every checkpoint cost the processor a fifth of its time and wrote
//! tens of MB every few seconds). A version 1 object holds one of the payloads written
//! before: [`PayloadV3`] (identities inline), [`PayloadV2`] (before de-duplication) or
//! [`PayloadV1`] (before rules and insights); they restore as they always did.

use std::sync::Arc;
use std::time::Instant;

use helios_log::TopicPartition;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::repartition::UpstreamState;
use crate::checkpoint::{CheckpointStore, Restored};
use crate::dedupe::{Seen, SeenCheckpoint, SeenState};
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

/// The checkpoint payload of one partition, as read (any format).
#[derive(Debug)]
struct Payload {
    max_event_time: i64,
    aggregates: Vec<OperatorState>,
    rules: Vec<RuleSnapshot>,
    insights: Vec<InsightSnapshot>,
    seen: SavedSeen,
    progress: Progress,
}

/// What a partition's watermark and its repartition stage's inputs had reached (in
/// [`PayloadV4`]; new in it, so older payloads restore with the default).
#[derive(Debug, Deserialize)]
struct Progress {
    /// In a repartition stage: how far each events partition feeding it has come.
    upstream: Option<UpstreamState>,
    /// The largest watermark mark applied (`i64::MIN` for none).
    mark: i64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            upstream: None,
            mark: i64::MIN,
        }
    }
}

/// [`Progress`] as written.
#[derive(Serialize)]
struct ProgressRef<'a> {
    upstream: Option<&'a UpstreamState>,
    mark: i64,
}

/// The remembered identities of a payload as read.
#[derive(Debug)]
enum SavedSeen {
    /// None (written without de-duplication or before it).
    None,
    /// Inline ([`PayloadV3`]).
    Inline(SeenState),
    /// In the checkpoint's parts and the payload ([`PayloadV4`]).
    Parts(SeenCheckpoint<Vec<u64>>),
}

/// The payload of a version 2 checkpoint object, as read ([`PayloadRef`] as written).
#[derive(Debug, Deserialize)]
struct PayloadV4 {
    max_event_time: i64,
    aggregates: Vec<OperatorState>,
    rules: Vec<RuleSnapshot>,
    insights: Vec<InsightSnapshot>,
    seen: Option<SeenCheckpoint<Vec<u64>>>,
    progress: Progress,
}

/// The payload written with de-duplication before checkpoint parts: every remembered
/// identity inline.
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

/// The payload as written ([`PayloadV4`] as read): window, rule and insight state
/// serialized in place, not copied (a copy of 1M open windows would double the memory a
/// checkpoint needs). `E`: the fields after `seen` ([`ProgressRef`]; `()`, which writes
/// nothing, for the older format in tests).
#[derive(Serialize)]
struct PayloadRef<'a, S, E> {
    max_event_time: i64,
    aggregates: Vec<OperatorStateRef<'a>>,
    rules: Vec<RuleSnapshot<&'a str, &'a RuleState>>,
    insights: Vec<InsightSnapshot<&'a str, &'a InsightOperator>>,
    seen: Option<S>,
    progress: E,
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
    fn seen(
        &self,
        saved: SavedSeen,
        r: Option<&Restored>,
    ) -> std::result::Result<Option<Seen>, String> {
        if !self.dedupe.enabled() {
            return Ok(None);
        }
        let (horizon, max_ids) = (self.dedupe.horizon, self.dedupe.max_ids);
        Ok(Some(match saved {
            SavedSeen::None => Seen::new(horizon, max_ids),
            SavedSeen::Inline(state) => Seen::restore(horizon, max_ids, state),
            SavedSeen::Parts(cp) => {
                Seen::restore_parts(horizon, max_ids, cp, r.map_or(&[][..], |r| &r.parts))?
            }
        }))
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
            seen: specs
                .dedupe
                .enabled()
                .then(|| Seen::new(specs.dedupe.horizon, specs.dedupe.max_ids)),
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

    /// State from a checkpoint (its payload in the format of its version, and its parts).
    /// An aggregate or rule whose definition changed since the checkpoint (or is new)
    /// starts empty, with a warning.
    pub fn restore(
        tp: TopicPartition,
        specs: Specs<'_>,
        r: &Restored,
        now: Instant,
    ) -> Result<Self> {
        let p = if r.version >= 2 {
            let p: PayloadV4 =
                postcard::from_bytes(&r.payload).map_err(|e| PipelineError::CheckpointState {
                    partition: tp.to_string(),
                    reason: format!("cannot decode the state: {e}"),
                })?;
            Payload {
                max_event_time: p.max_event_time,
                aggregates: p.aggregates,
                rules: p.rules,
                insights: p.insights,
                seen: p.seen.map_or(SavedSeen::None, SavedSeen::Parts),
                progress: p.progress,
            }
        } else {
            Self::decode_v1_object(&tp, &r.payload)?
        };
        Self::from_payload(tp, specs, r, p, now)
    }

    /// The payload of a version 1 checkpoint object: the newest format that decodes.
    fn decode_v1_object(tp: &TopicPartition, payload: &[u8]) -> Result<Payload> {
        Ok(match postcard::from_bytes::<PayloadV3>(payload) {
            Ok(p) => Payload {
                max_event_time: p.max_event_time,
                aggregates: p.aggregates,
                rules: p.rules,
                insights: p.insights,
                seen: p.seen.map_or(SavedSeen::None, SavedSeen::Inline),
                progress: Progress::default(),
            },
            Err(e) => match postcard::from_bytes::<PayloadV2>(payload) {
                Ok(old) => {
                    warn!(partition = %tp, "Checkpoint written before de-duplication; it remembers events from here.");
                    Payload {
                        max_event_time: old.max_event_time,
                        aggregates: old.aggregates,
                        rules: old.rules,
                        insights: old.insights,
                        seen: SavedSeen::None,
                        progress: Progress::default(),
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
                            seen: SavedSeen::None,
                            progress: Progress::default(),
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
        })
    }

    fn from_payload(
        tp: TopicPartition,
        specs: Specs<'_>,
        r: &Restored,
        p: Payload,
        now: Instant,
    ) -> Result<Self> {
        let seen =
            specs
                .seen(p.seen, Some(r))
                .map_err(|reason| PipelineError::CheckpointState {
                    partition: tp.to_string(),
                    reason: format!(
                        "the remembered identities do not fit the checkpoint: {reason}"
                    ),
                })?;
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
            seen,
            upstream: specs
                .upstream
                .then(|| p.progress.upstream.unwrap_or_default()),
            forwarded: i64::MIN,
            next_offset: r.offset,
            max_event_time: p.max_event_time,
            mark: p.progress.mark,
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

    /// Checkpoints the current state to `store`: the identities' new parts first, then
    /// the checkpoint that refers to them. Returns the bytes written.
    pub async fn save(&mut self, store: &CheckpointStore) -> Result<usize> {
        let mut bytes = 0;
        if let Some(seen) = &mut self.seen {
            for part in seen.new_parts() {
                bytes += part.bytes.len();
                let written = store.put_part(&self.tp, &part.name, part.bytes).await?;
                seen.part_written(part.bucket, part.end, written);
            }
        }
        let (payload, parts) = self.payload()?;
        Ok(bytes
            + store
                .save_with_parts(&self.tp, self.next_offset, &payload, &parts)
                .await?)
    }

    /// The checkpoint payload of the current state and the parts it refers to (call
    /// after the identities' new parts are written: see [`PartitionState::save`]).
    pub fn payload(&self) -> Result<(Vec<u8>, Vec<crate::checkpoint::PartRef>)> {
        let (seen, parts) = match &self.seen {
            Some(s) => {
                let (cp, parts) = s.checkpoint();
                (Some(cp), parts)
            }
            None => (None, Vec::new()),
        };
        let progress = ProgressRef {
            upstream: self.upstream.as_ref(),
            mark: self.mark,
        };
        let payload = self.encode(seen, progress)?;
        Ok((payload, parts))
    }

    /// The payload in the format written before checkpoint parts ([`PayloadV3`]), for
    /// the tests of restoring old checkpoints.
    #[cfg(test)]
    pub fn payload_v3(&self) -> Result<Vec<u8>> {
        self.encode(self.seen.as_ref().map(Seen::state), ())
    }

    fn encode<S: Serialize, E: Serialize>(&self, seen: Option<S>, progress: E) -> Result<Vec<u8>> {
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
            seen,
            progress,
        };
        postcard::to_allocvec(&p).map_err(|e| PipelineError::CheckpointState {
            partition: self.tp.to_string(),
            reason: format!("cannot encode the state: {e}"),
        })
    }
}
