//! Rules: one spec `[[rule]]` over a stream of events, producing `Alert` records.
//!
//! The operator is a pure state machine like `window::WindowedAggregate`: events and
//! watermarks go in, alerts come out; it reads no clock. Decisions are made in event time:
//! a matching event is held until the watermark passes its time, then all held events and
//! due timers are applied in event-time order (ties by event id), so any arrival order
//! within the allowed out-of-orderness yields the same alerts. Events behind the
//! watermark are returned as [`Late`], never dropped silently.
//!
//! Every alert fires once per key and resolves once, as two `Alert` records with the same
//! id, a hash of (rule, group key, `since`). With `W` = `within`:
//!
//! - **threshold** (`count` = N): fires at the time t of the match that brings the number of
//!   matches in (t − W, t] to N; resolves at the first time that number is below N again
//!   (when enough matches have aged out, without new ones).
//! - **absence**: once a key has matched, fires at last match + W when no match came in
//!   between; resolves at the next match.
//! - **sequence**: a `then` event at t completes the sequence when a `first` event happened
//!   in (t − W, t] (the same event never completes with itself; a `first` can serve several
//!   `then`s). Fires at the first completion; resolves W after the last completion, that is
//!   once a whole W has passed without another completion.
//!
//! State is bounded: a key's state is dropped as soon as nothing in it can matter any more
//! (its matches are more than W behind, and it is not firing). Absence is the exception by
//! nature: a key that went silent is firing and stays until its next match.
//!
//! The state ([`RuleState`]) is plain serde data for checkpoints; [`RuleOperator::restore`]
//! puts it back together with the compiled rule.

mod kinds;
pub(crate) mod pairs;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use helios_schemas::{Alert, AlertState, Event};
use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::ids::IdBuilder;
use crate::spec::{Rule, RuleKind, Severity};
use crate::window::GroupKey;

use kinds::{Absence, Sequence, Threshold, Transition, Why};

/// At most this many event ids go into an alert's evidence (the latest ones, oldest first).
pub const MAX_EVIDENCE: usize = 10;

/// A matching event that arrived behind the watermark, so it could not be applied in
/// event-time order. The runtime sends it to `helios.late`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    pub rule: String,
    pub reason: String,
}

/// Why a matching event was not applied to a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotApplied {
    /// It arrived after the rule's watermark.
    Late(Late),
    /// Its key would have been one more than the rule's `max_keys`, or is longer than
    /// its `max_key_bytes`.
    Full(Full),
}

/// A matching event of a new key while the rule holds its bound of keys, or of a key
/// over its bound of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub rule: String,
    pub reason: String,
}

/// A matching event waiting for the watermark. Ordered by (time, id, seq): event time
/// first, then the event id so that equal times do not depend on arrival order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Pending {
    time: i64,
    id: String,
    seq: u64,
    key: GroupKey,
    /// Which conditions matched: bit 0 = `where` / `first`, bit 1 = `then`.
    role: u8,
}

const FIRST: u8 = 1;
const THEN: u8 = 2;
/// `KeyState::timer` when the key has no timer in the heap.
const NO_TIMER: i64 = i64::MAX;

/// An alert that is firing: what its resolution record needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Firing {
    since: i64,
    evidence: Vec<String>,
}

/// Per-key state of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KeyState {
    /// Time of this key's earliest entry in the timer heap, or `NO_TIMER`.
    timer: i64,
    firing: Option<Firing>,
    kind: KindState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum KindState {
    Threshold(Threshold),
    Absence(Absence),
    Sequence(Sequence),
}

/// Everything a rule remembers between events: the checkpointable part of
/// [`RuleOperator`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// The rule this state belongs to, checked on restore.
    rule: String,
    /// `threshold`, `absence` or `sequence`, checked on restore.
    kind: String,
    /// Everything before this has been applied (µs); `i64::MIN` at the start.
    watermark: i64,
    /// Ordered sets rather than heaps so that equal states serialize to equal bytes.
    pending: BTreeSet<Pending>,
    /// (due time, key); may hold stale entries, which re-evaluate harmlessly.
    timers: BTreeSet<(i64, GroupKey)>,
    #[serde(with = "pairs")]
    keys: BTreeMap<GroupKey, KeyState>,
}

/// The running state of one rule.
#[derive(Debug)]
pub struct RuleOperator {
    rule: Arc<Rule>,
    within_us: i64,
    state: RuleState,
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn kind_name(kind: &RuleKind) -> &'static str {
    match kind {
        RuleKind::Threshold { .. } => "threshold",
        RuleKind::Absence { .. } => "absence",
        RuleKind::Sequence { .. } => "sequence",
    }
}

impl RuleOperator {
    pub fn new(rule: Arc<Rule>) -> Self {
        let state = RuleState {
            rule: rule.name.clone(),
            kind: kind_name(&rule.kind).to_string(),
            watermark: i64::MIN,
            pending: BTreeSet::new(),
            timers: BTreeSet::new(),
            keys: BTreeMap::new(),
        };
        RuleOperator {
            within_us: micros(rule.within),
            rule,
            state,
        }
    }

    /// Puts a checkpointed state back together with its rule. Refuses state written for
    /// another rule name or rule type.
    pub fn restore(rule: Arc<Rule>, state: RuleState) -> Result<Self, PipelineError> {
        let kind = kind_name(&rule.kind);
        if state.rule != rule.name || state.kind != kind {
            return Err(PipelineError::CheckpointState {
                partition: format!("rule `{}`", rule.name),
                reason: format!(
                    "it holds state of the {} rule `{}`, but the spec's rule `{}` is a {kind} rule; \
                     restore the spec it was written with, or remove the checkpoint to start over",
                    state.kind, state.rule, rule.name
                ),
            });
        }
        Ok(RuleOperator {
            within_us: micros(rule.within),
            rule,
            state,
        })
    }

    /// The checkpointable state (serialize it from here without a copy).
    pub fn state(&self) -> &RuleState {
        &self.state
    }

    /// A copy of the state, for a checkpoint.
    pub fn snapshot(&self) -> RuleState {
        self.state.clone()
    }

    /// The event-time watermark applied so far (µs; `i64::MIN` before any).
    pub fn watermark(&self) -> i64 {
        self.state.watermark
    }

    pub fn name(&self) -> &str {
        &self.rule.name
    }

    /// The rule this operator runs.
    pub fn rule(&self) -> &Arc<Rule> {
        &self.rule
    }

    /// Keys with state (for metrics and memory bounds).
    pub fn keys(&self) -> usize {
        self.state.keys.len()
    }

    /// Matching events waiting for the watermark.
    pub fn pending(&self) -> usize {
        self.state.pending.len()
    }

    /// Offers one event. Events that match none of the rule's conditions are ignored.
    /// `seq` is the arrival position (a last tie-break between equal ids). Returns `Err`
    /// when the event matches but its time is behind the watermark already applied.
    pub fn on_event(&mut self, event: &Event, seq: u64) -> Result<(), NotApplied> {
        self.on_event_at(event, seq, self.state.watermark)
    }

    /// [`Self::on_event`] with the event judged late against `watermark` (or the rule's
    /// own, if further): a repartitioned event carries its source partition's watermark.
    pub fn on_event_at(
        &mut self,
        event: &Event,
        seq: u64,
        watermark: i64,
    ) -> Result<(), NotApplied> {
        let watermark = watermark.max(self.state.watermark);
        let role = match &self.rule.kind {
            RuleKind::Threshold { condition, .. } | RuleKind::Absence { condition } => {
                if condition.matches(event) { FIRST } else { 0 }
            }
            RuleKind::Sequence { first, then } => {
                (u8::from(first.matches(event)) * FIRST) | (u8::from(then.matches(event)) * THEN)
            }
        };
        if role == 0 {
            return Ok(());
        }
        if event.time < watermark {
            return Err(NotApplied::Late(Late {
                rule: self.rule.name.clone(),
                reason: format!(
                    "event {} at time {} matched rule `{}` but arrived after the watermark {watermark}: it is later than the allowed out-of-orderness",
                    event.id, event.time, self.rule.name
                ),
            }));
        }
        let key: GroupKey = self
            .rule
            .per
            .iter()
            .map(|k| k.expr.eval(event).to_key())
            .collect();
        let bytes = crate::window::key_bytes(&key);
        if bytes > self.rule.max_key_bytes {
            return Err(NotApplied::Full(Full {
                rule: self.rule.name.clone(),
                reason: format!(
                    "the event's key is {bytes} bytes, over the rule's limit of {} \
                     (max_key_bytes): it was not applied there; raise max_key_bytes, or key \
                     `per` by a shorter value",
                    self.rule.max_key_bytes
                ),
            }));
        }
        // A new key is one more state; the keys held for the watermark may take the rule
        // past its bound by at most the events waiting there.
        if self.state.keys.len() >= self.rule.max_keys && !self.state.keys.contains_key(&key) {
            return Err(NotApplied::Full(Full {
                rule: self.rule.name.clone(),
                reason: format!(
                    "the rule holds its limit of {} keys (max_keys) and event {} is of another: \
                     it was not applied there; raise max_keys, or narrow `per` if its keys are \
                     unbounded (a request id, a random value)",
                    self.rule.max_keys, event.id
                ),
            }));
        }
        self.state.pending.insert(Pending {
            time: event.time,
            id: event.id.clone(),
            seq,
            key,
            role,
        });
        Ok(())
    }

    /// The smallest watermark at which [`Self::on_watermark`] would apply something (a held
    /// event or a due timer: both apply once they are strictly before the watermark);
    /// `None` when nothing waits on event time.
    pub fn next_deadline(&self) -> Option<i64> {
        let event = self.state.pending.first().map(|p| p.time);
        let timer = self.state.timers.first().map(|t| t.0);
        event
            .into_iter()
            .chain(timer)
            .min()
            .map(|t| t.saturating_add(1))
    }

    /// Advances the watermark: applies every held event and due timer before it, in event
    /// time order (events before timers at the same time), and appends the alerts.
    pub fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Alert>) {
        if watermark <= self.state.watermark {
            return;
        }
        loop {
            let event = self
                .state
                .pending
                .first()
                .map(|p| p.time)
                .filter(|t| *t < watermark);
            let timer = self
                .state
                .timers
                .first()
                .map(|t| t.0)
                .filter(|t| *t < watermark);
            match (event, timer) {
                (Some(e), Some(t)) if e <= t => self.apply_event(out),
                (Some(_), None) => self.apply_event(out),
                (_, Some(_)) => self.apply_timer(out),
                (None, None) => break,
            }
        }
        self.state.watermark = watermark;
    }

    fn apply_event(&mut self, out: &mut Vec<Alert>) {
        let Some(p) = self.state.pending.pop_first() else {
            return;
        };
        let w = self.within_us;
        let n = self.threshold_n();
        let key = p.key;
        if !self.state.keys.contains_key(&key) {
            let kind = match &self.rule.kind {
                RuleKind::Threshold { .. } => KindState::Threshold(Threshold::default()),
                RuleKind::Absence { .. } => KindState::Absence(Absence::default()),
                RuleKind::Sequence { .. } => KindState::Sequence(Sequence::default()),
            };
            let fresh = KeyState {
                timer: NO_TIMER,
                firing: None,
                kind,
            };
            self.state.keys.insert(key.clone(), fresh);
        }
        let Some(ks) = self.state.keys.get_mut(&key) else {
            return;
        };
        let firing = ks.firing.is_some();
        let transition = match &mut ks.kind {
            KindState::Threshold(s) => s.on_match(firing, p.time, p.id, n, w),
            KindState::Absence(s) => s.on_match(firing, p.time, p.id),
            KindState::Sequence(s) => s.on_match(firing, p.time, p.id, p.role, w),
        };
        self.settle(key, transition, out);
    }

    fn apply_timer(&mut self, out: &mut Vec<Alert>) {
        let Some((now, key)) = self.state.timers.pop_first() else {
            return;
        };
        let w = self.within_us;
        let n = self.threshold_n();
        // A key dropped since the timer was set has nothing left to decide.
        let Some(ks) = self.state.keys.get_mut(&key) else {
            return;
        };
        if ks.timer == now {
            ks.timer = NO_TIMER;
        }
        let firing = ks.firing.is_some();
        let transition = match &mut ks.kind {
            KindState::Threshold(s) => s.on_time(firing, now, n, w),
            KindState::Absence(s) => s.on_time(firing, now, w),
            KindState::Sequence(s) => s.on_time(firing, now, w),
        };
        self.settle(key, transition, out);
    }

    /// `count` of a threshold rule (unused by the other types).
    fn threshold_n(&self) -> u64 {
        match &self.rule.kind {
            RuleKind::Threshold { count, .. } => *count,
            _ => 1,
        }
    }

    /// Applies a key's transition (emitting its alert), then drops the key if nothing in
    /// it can matter any more, or makes sure a timer is set for its next deadline.
    fn settle(&mut self, key: GroupKey, transition: Option<Transition>, out: &mut Vec<Alert>) {
        let w = self.within_us;
        let n = self.threshold_n();
        let Some(ks) = self.state.keys.get_mut(&key) else {
            return;
        };
        match transition {
            Some(Transition::Fire { at, evidence, why }) if ks.firing.is_none() => {
                let firing = Firing {
                    since: at,
                    evidence,
                };
                out.push(alert(
                    &self.rule,
                    &key,
                    AlertState::Firing,
                    &firing,
                    at,
                    &why,
                ));
                ks.firing = Some(firing);
            }
            Some(Transition::Resolve { at, why }) => {
                if let Some(firing) = ks.firing.take() {
                    out.push(alert(
                        &self.rule,
                        &key,
                        AlertState::Resolved,
                        &firing,
                        at,
                        &why,
                    ));
                }
            }
            _ => {}
        }
        let firing = ks.firing.is_some();
        let (idle, deadline) = match &ks.kind {
            KindState::Threshold(s) => (s.idle(firing), s.deadline(firing, n, w)),
            // A key once seen keeps its absence state: its silence is what the rule is for.
            KindState::Absence(s) => (false, s.deadline(firing, w)),
            KindState::Sequence(s) => (s.idle(firing), s.deadline(firing, w)),
        };
        if idle {
            self.state.keys.remove(&key);
        } else if let Some(d) = deadline
            && d < ks.timer
        {
            ks.timer = d;
            self.state.timers.insert((d, key));
        }
    }
}

/// The same for the firing and the resolved record of one alert.
pub fn alert_id(rule: &str, key: &GroupKey, since: i64) -> String {
    IdBuilder::new()
        .raw(b"alert\0")
        .raw(rule.as_bytes())
        .raw(&[0])
        .int(since)
        .key(key)
        .finish()
}

fn severity(s: Severity) -> helios_schemas::Severity {
    match s {
        Severity::Info => helios_schemas::Severity::Info,
        Severity::Warning => helios_schemas::Severity::Warning,
        Severity::Critical => helios_schemas::Severity::Critical,
    }
}

/// `subject=repo-a, conclusion=failure`; NULL keys are left out of `group` (as in window
/// results) but shown here.
fn describe_group(rule: &Rule, key: &GroupKey) -> String {
    if rule.per.is_empty() {
        return "all events".to_string();
    }
    rule.per
        .iter()
        .zip(key)
        .map(|(k, v)| format!("{}={}", k.name, v.as_deref().unwrap_or("NULL")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn duration(us: i64) -> String {
    let us = u64::try_from(us).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_micros(us)).to_string()
}

fn summary(rule: &Rule, key: &GroupKey, why: &Why) -> String {
    let group = describe_group(rule, key);
    let w = duration(micros(rule.within));
    match why {
        Why::Reached { count, n } => {
            format!("{count} matching events within {w} for {group} (threshold {n})")
        }
        Why::Cleared { count, n } => format!(
            "resolved: {count} matching events within {w} for {group}, below the threshold of {n}"
        ),
        Why::Silent { last_id } => {
            format!("no matching event for {w} for {group} since event {last_id}")
        }
        Why::Heard { id, silent_for } => format!(
            "resolved: event {id} matched for {group} after {} without one",
            duration(*silent_for)
        ),
        Why::Completed {
            first_id,
            then_id,
            gap,
        } => format!(
            "event {then_id} followed event {first_id} after {} (within {w}) for {group}",
            duration(*gap)
        ),
        Why::NoCompletion { completions } => format!(
            "resolved: no further sequence within {w} for {group} ({completions} while firing)"
        ),
    }
}

fn alert(
    rule: &Rule,
    key: &GroupKey,
    state: AlertState,
    firing: &Firing,
    at: i64,
    why: &Why,
) -> Alert {
    Alert {
        id: alert_id(&rule.name, key, firing.since),
        rule: rule.name.clone(),
        group: rule
            .per
            .iter()
            .zip(key)
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.name.clone(), v.clone())))
            .collect(),
        state,
        since: firing.since,
        at,
        severity: severity(rule.severity),
        summary: format!("{}: {}", rule.name, summary(rule, key, why)),
        evidence: firing.evidence.clone(),
    }
}

#[cfg(test)]
mod tests;
