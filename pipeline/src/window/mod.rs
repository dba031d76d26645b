//! Event-time windowed aggregation: one spec `[[aggregate]]` over a stream of events.
//!
//! The operator is a pure state machine: events and watermarks go in, `WindowResult`
//! records and late events come out. It reads no clock, so the same input in the same
//! order always yields the same output (ids included). A window emits its final result
//! when the watermark passes its end + allowed lateness; with `emit_every`, earlier
//! non-final results carry increasing versions. Events for windows that are already
//! closed are returned as late, never dropped silently.

mod accumulate;
pub mod sketch;
mod watermark;

use std::collections::BTreeMap;
use std::sync::Arc;

use helios_schemas::{Event, WindowResult};
use serde::{Deserialize, Serialize};

pub use accumulate::Accumulator;
pub use watermark::Watermarks;

use crate::expr::Value;
use crate::spec::{Aggregate, Window};

/// Group key values in spec order; `None` is NULL.
pub type GroupKey = Vec<Option<String>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowState {
    start: i64,
    accumulators: Vec<Accumulator>,
    count: u64,
    /// Versions emitted so far (early results).
    versions: i32,
    /// Changed since the last early emission.
    dirty: bool,
}

/// Why an event did not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    pub aggregate: String,
    pub reason: String,
}

/// The serializable state of one [`WindowedAggregate`]: open windows and sessions in key
/// order (so equal states serialize to equal bytes) and the event-time progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateState {
    windows: Vec<(i64, GroupKey, WindowState)>,
    sessions: Vec<(GroupKey, Vec<(i64, i64)>)>,
    watermark: i64,
    last_early: i64,
}

/// The state of one aggregate.
#[derive(Debug)]
pub struct WindowedAggregate {
    spec: Arc<Aggregate>,
    lateness_us: i64,
    emit_every_us: Option<i64>,
    /// window end -> group key -> state. Ordered by end so closing windows is a prefix
    /// scan; nested (rather than keyed by `(end, key)`) so an event finds its window with
    /// a borrowed key, without allocating one per window it belongs to.
    windows: BTreeMap<i64, BTreeMap<GroupKey, WindowState>>,
    /// The current event's group key, reused from event to event (its strings keep their
    /// capacity), so the common case (the window exists) allocates nothing for the key.
    scratch: GroupKey,
    /// Sessions only: group key -> (start -> end) of its open sessions.
    sessions: BTreeMap<GroupKey, BTreeMap<i64, i64>>,
    watermark: i64,
    last_early: i64,
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl WindowedAggregate {
    pub fn new(spec: Arc<Aggregate>) -> Self {
        WindowedAggregate {
            lateness_us: micros(spec.allowed_lateness),
            emit_every_us: spec.emit_every.map(micros),
            spec,
            windows: BTreeMap::new(),
            scratch: Vec::new(),
            sessions: BTreeMap::new(),
            watermark: i64::MIN,
            last_early: i64::MIN,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec this operator runs.
    pub fn spec(&self) -> &Arc<Aggregate> {
        &self.spec
    }

    /// The event-time watermark this operator has seen (µs; `i64::MIN` before any).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// A copy of the operator's state, for a checkpoint.
    pub fn snapshot(&self) -> AggregateState {
        AggregateState {
            windows: self
                .windows
                .iter()
                .flat_map(|(end, keys)| {
                    keys.iter().map(|(key, st)| (*end, key.clone(), st.clone()))
                })
                .collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(k, s)| (k.clone(), s.iter().map(|(a, b)| (*a, *b)).collect()))
                .collect(),
            watermark: self.watermark,
            last_early: self.last_early,
        }
    }

    /// An operator for `spec` continuing from a [`WindowedAggregate::snapshot`] of the same
    /// spec.
    pub fn restore(spec: Arc<Aggregate>, state: AggregateState) -> Self {
        let mut op = WindowedAggregate::new(spec);
        for (end, key, st) in state.windows {
            op.windows.entry(end).or_default().insert(key, st);
        }
        op.sessions = state
            .sessions
            .into_iter()
            .map(|(k, s)| (k, s.into_iter().collect()))
            .collect();
        op.watermark = state.watermark;
        op.last_early = state.last_early;
        op
    }

    /// Windows currently open (for metrics and memory bounds).
    pub fn open_windows(&self) -> usize {
        self.windows.values().map(BTreeMap::len).sum()
    }

    /// Adds one event. `seq` is its arrival position (for first/last ties). Returns `Err`
    /// when the event matched but every window it belongs to has closed.
    pub fn on_event(&mut self, event: &Event, seq: u64) -> Result<(), Late> {
        if let Some(cond) = &self.spec.condition
            && !cond.matches(event)
        {
            return Ok(());
        }
        let mut key = std::mem::take(&mut self.scratch);
        key.resize(self.spec.group_by.len(), None);
        for (slot, k) in key.iter_mut().zip(&self.spec.group_by) {
            k.expr.eval(event).write_key(slot);
        }
        let t = event.time;
        let args: Vec<Option<Value<'_>>> = self
            .spec
            .measures
            .iter()
            .map(|m| m.argument.as_ref().map(|a| a.eval(event)))
            .collect();
        let closed_before = self.watermark.saturating_sub(self.lateness_us);
        let outcome = match self.spec.window {
            Window::Tumbling { size } => {
                let size = micros(size);
                let start = t.div_euclid(size) * size;
                self.update(start, start + size, closed_before, &key, &args, t, seq)
            }
            Window::Hopping { size, slide } => {
                let (size, slide) = (micros(size), micros(slide));
                let last_start = t.div_euclid(slide) * slide;
                let mut counted = false;
                let mut start = last_start;
                while start > t - size {
                    counted |= self
                        .update(start, start + size, closed_before, &key, &args, t, seq)
                        .is_ok();
                    start -= slide;
                }
                if counted { Ok(()) } else { Err(self.late(t)) }
            }
            Window::Session { gap } => {
                self.session(t, micros(gap), closed_before, &key, &args, seq)
            }
        };
        self.scratch = key;
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &mut self,
        start: i64,
        end: i64,
        closed_before: i64,
        key: &GroupKey,
        args: &[Option<Value<'_>>],
        t: i64,
        seq: u64,
    ) -> Result<(), Late> {
        if end <= closed_before {
            return Err(self.late(t));
        }
        let add = |state: &mut WindowState| {
            for (acc, arg) in state.accumulators.iter_mut().zip(args) {
                acc.update(arg.as_ref(), t, seq);
            }
            state.count += 1;
            state.dirty = true;
        };
        let keys = self.windows.entry(end).or_default();
        // One lookup when the window exists (the common case); the key is cloned only
        // for a new window.
        if let Some(state) = keys.get_mut(key) {
            add(state);
            return Ok(());
        }
        let mut fresh = WindowState {
            start,
            accumulators: self
                .spec
                .measures
                .iter()
                .map(|m| Accumulator::new(m.function))
                .collect(),
            count: 0,
            versions: 0,
            dirty: false,
        };
        add(&mut fresh);
        keys.insert(key.clone(), fresh);
        Ok(())
    }

    fn session(
        &mut self,
        t: i64,
        gap: i64,
        closed_before: i64,
        key: &GroupKey,
        args: &[Option<Value<'_>>],
        seq: u64,
    ) -> Result<(), Late> {
        let (mut start, mut end) = (t, t.saturating_add(gap));
        if !self.sessions.contains_key(key) {
            self.sessions.insert(key.clone(), BTreeMap::new());
        }
        let Some(sessions) = self.sessions.get_mut(key) else {
            unreachable!("inserted above")
        };
        // Every open session this event touches merges into one.
        let touching: Vec<(i64, i64)> = sessions
            .range(..=end)
            .filter(|(_, e)| **e >= start)
            .map(|(s, e)| (*s, *e))
            .collect();
        if touching.is_empty() && end <= closed_before {
            return Err(self.late(t));
        }
        let mut merged: Option<WindowState> = None;
        for (s, e) in touching {
            sessions.remove(&s);
            start = start.min(s);
            end = end.max(e);
            if let Some(st) = take_window(&mut self.windows, e, key) {
                merged = Some(match merged {
                    None => st,
                    Some(mut m) => {
                        for (a, b) in m.accumulators.iter_mut().zip(&st.accumulators) {
                            a.merge(b);
                        }
                        m.count += st.count;
                        m.versions = m.versions.max(st.versions);
                        m
                    }
                });
            }
        }
        sessions.insert(start, end);
        if let Some(mut st) = merged {
            st.start = start;
            self.windows.entry(end).or_default().insert(key.clone(), st);
        }
        self.update(start, end, i64::MIN, key, args, t, seq)
    }

    fn late(&self, t: i64) -> Late {
        Late {
            aggregate: self.spec.name.clone(),
            reason: format!(
                "event time {t} is behind the watermark {} by more than the allowed lateness of {:?}: its window is closed",
                self.watermark, self.spec.allowed_lateness
            ),
        }
    }

    /// Advances the watermark and emits results: finals for windows that closed, and
    /// early results when `emit_every` boundaries were crossed.
    pub fn on_watermark(&mut self, watermark: i64, out: &mut Vec<WindowResult>) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        let closed_before = watermark.saturating_sub(self.lateness_us);
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() > closed_before {
                break;
            }
            let (end, keys) = entry.remove_entry();
            for (key, mut state) in keys {
                if let Window::Session { .. } = self.spec.window
                    && let Some(s) = self.sessions.get_mut(&key)
                {
                    s.remove(&state.start);
                    if s.is_empty() {
                        self.sessions.remove(&key);
                    }
                }
                state.versions += 1;
                out.push(self.result(end, &key, &state, true));
            }
        }
        if let Some(every) = self.emit_every_us {
            let boundary = watermark.div_euclid(every) * every;
            if boundary > self.last_early {
                self.last_early = boundary;
                let spec = self.spec.clone();
                for (end, keys) in self.windows.iter_mut() {
                    for (key, state) in keys.iter_mut() {
                        if state.dirty {
                            state.dirty = false;
                            state.versions += 1;
                            out.push(result(&spec, *end, key, state, false));
                        }
                    }
                }
            }
        }
    }

    fn result(
        &self,
        end: i64,
        key: &GroupKey,
        state: &WindowState,
        is_final: bool,
    ) -> WindowResult {
        result(&self.spec, end, key, state, is_final)
    }
}

/// Removes the window `(end, key)`, dropping the end's map when it becomes empty.
fn take_window(
    windows: &mut BTreeMap<i64, BTreeMap<GroupKey, WindowState>>,
    end: i64,
    key: &GroupKey,
) -> Option<WindowState> {
    let keys = windows.get_mut(&end)?;
    let state = keys.remove(key);
    if keys.is_empty() {
        windows.remove(&end);
    }
    state
}

fn result(
    spec: &Aggregate,
    end: i64,
    key: &GroupKey,
    state: &WindowState,
    is_final: bool,
) -> WindowResult {
    let group: BTreeMap<String, String> = spec
        .group_by
        .iter()
        .zip(key)
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.name.clone(), v.clone())))
        .collect();
    let measures: BTreeMap<String, f64> = spec
        .measures
        .iter()
        .zip(&state.accumulators)
        .filter_map(|(m, a)| a.result().map(|v| (m.name.clone(), v)))
        .collect();
    WindowResult {
        id: result_id(&spec.name, state.start, end, key),
        aggregate: spec.name.clone(),
        window_start: state.start,
        window_end: end,
        group,
        measures,
        count: state.count as i64,
        version: state.versions,
        is_final,
    }
}

/// The same for every version of one window and group, so stores keep the latest.
pub fn result_id(aggregate: &str, start: i64, end: i64, key: &GroupKey) -> String {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(aggregate.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&start.to_le_bytes());
    bytes.extend_from_slice(&end.to_le_bytes());
    for k in key {
        match k {
            Some(v) => {
                bytes.push(1);
                bytes.extend_from_slice(&(v.len() as u64).to_le_bytes());
                bytes.extend_from_slice(v.as_bytes());
            }
            None => bytes.push(0),
        }
    }
    let h1 = sketch::hash64(&bytes);
    bytes.push(0xff);
    let h2 = sketch::hash64(&bytes);
    format!("{h1:016x}{h2:016x}")
}

#[cfg(test)]
mod tests;
