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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use helios_schemas::{Event, WindowResult};
use serde::{Deserialize, Serialize};

pub use accumulate::{Accumulator, Input};

use crate::ids::IdBuilder;
use crate::spec::{Aggregate, Window};

/// Group key values in spec order; `None` is NULL.
pub type GroupKey = Vec<Option<String>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WindowState {
    start: i64,
    accumulators: Box<[Accumulator]>,
    count: u64,
    /// Versions emitted so far (early results).
    versions: i32,
    /// Changed since the last early emission.
    dirty: bool,
}

/// A group key with its hash, ordered by the hash first: looking a key up among 1000s
/// compares integers and reads the key's strings only on a hash match, instead of
/// comparing strings (which share long prefixes, e.g. repository URLs) at every step.
/// The order is as deterministic as the key order it replaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Keyed {
    hash: u64,
    key: GroupKey,
}

impl Keyed {
    fn new(key: GroupKey) -> Self {
        Keyed {
            hash: key_hash(&key),
            key,
        }
    }
}

/// The bytes of a key's values together (what `max_key_bytes` bounds).
pub(crate) fn key_bytes(key: &GroupKey) -> usize {
    key.iter().flatten().map(String::len).sum()
}

/// A fixed hash of a group key (word at a time, multiply-rotate, SplitMix finaliser):
/// the same on every run and platform.
fn key_hash(key: &GroupKey) -> u64 {
    #[inline]
    fn mix(h: u64, word: u64) -> u64 {
        (h.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95)
    }
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for part in key {
        let Some(s) = part else {
            h = mix(h, u64::MAX);
            continue;
        };
        let bytes = s.as_bytes();
        h = mix(h, bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            h = mix(h, u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            h = mix(h, u64::from_le_bytes(b));
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// One group's open windows as (end, state), ordered by end: one or two for a tumbling
/// window, size/slide (+ lateness) for a hopping one, the open sessions of a key.
type Group = Vec<(i64, WindowState)>;

/// Why an event was not applied to an aggregate, or not to all its windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotApplied {
    /// Every window it belongs to has closed.
    Late(Late),
    /// Over one of the aggregate's bounds: a window it belongs to would have been one
    /// more than `max_open_windows` (it was applied to those of its windows that were
    /// open), or its group key is longer than `max_key_bytes` (applied nowhere).
    Full(Full),
}

/// An event that opened no window because the aggregate holds its bound of open windows,
/// or whose group key is over the aggregate's bound of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub aggregate: String,
    pub reason: String,
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

/// [`AggregateState`] as written: the same fields, serialized straight from the live
/// operator (no copy of the state, so a checkpoint of 1M open windows needs only the
/// encoded bytes on top of the state). Deserializes as [`AggregateState`].
#[derive(Debug, Serialize)]
#[serde(rename = "AggregateState")]
pub struct AggregateStateRef<'a> {
    windows: WindowsRef<'a>,
    sessions: SessionsRef<'a>,
    watermark: i64,
    last_early: i64,
}

/// Every open window as `(end, key, state)`, by key then end.
#[derive(Debug)]
struct WindowsRef<'a>(&'a BTreeMap<Keyed, Group>);

impl Serialize for WindowsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let len = self.0.values().map(Vec::len).sum();
        let mut seq = s.serialize_seq(Some(len))?;
        for (k, group) in self.0 {
            for (end, state) in group {
                seq.serialize_element(&(end, &k.key, state))?;
            }
        }
        seq.end()
    }
}

/// Session windows only: every key's open sessions as `(key, [(start, end)])`.
#[derive(Debug)]
struct SessionsRef<'a>(Option<&'a BTreeMap<Keyed, Group>>);

impl Serialize for SessionsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        struct Spans<'a>(&'a Group);
        impl Serialize for Spans<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|(end, st)| (st.start, *end)))
            }
        }
        let Some(groups) = self.0 else {
            return s.serialize_seq(Some(0))?.end();
        };
        let mut seq = s.serialize_seq(Some(groups.len()))?;
        for (k, group) in groups {
            seq.serialize_element(&(&k.key, Spans(group)))?;
        }
        seq.end()
    }
}

/// The state of one aggregate.
#[derive(Debug)]
pub struct WindowedAggregate {
    spec: Arc<Aggregate>,
    lateness_us: i64,
    emit_every_us: Option<i64>,
    /// group key -> its open windows. Keyed by group first so an event looks its key up
    /// once whatever the number of windows it falls in (ten for a 10 min / 1 min hopping
    /// window), and a key is stored once however many windows it has open.
    groups: BTreeMap<Keyed, Group>,
    /// window end -> number of open windows ending there: tells, without visiting the
    /// groups, whether a watermark closes anything; and the open windows in all.
    ends: Ends,
    /// Session windows only: session end -> the keys with a session ending there, so a
    /// closing session is found directly (session ends differ from key to key; tumbling
    /// and hopping windows end together and are closed by one pass over the groups).
    session_ends: BTreeMap<i64, BTreeSet<Keyed>>,
    /// The current event's group key, reused from event to event (its strings keep their
    /// capacity), so the common case (the window exists) allocates nothing for the key.
    scratch: Keyed,
    watermark: i64,
    last_early: i64,
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Measure inputs computed into an inline array up to this many measures (no
/// allocation per event); specs with more use a `Vec`.
const INLINE_ARGS: usize = 4;

impl WindowedAggregate {
    pub fn new(spec: Arc<Aggregate>) -> Self {
        WindowedAggregate {
            lateness_us: micros(spec.allowed_lateness),
            emit_every_us: spec.emit_every.map(micros),
            spec,
            groups: BTreeMap::new(),
            ends: Ends::default(),
            session_ends: BTreeMap::new(),
            scratch: Keyed::default(),
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

    fn is_session(&self) -> bool {
        matches!(self.spec.window, Window::Session { .. })
    }

    /// The operator's state for a checkpoint, serialized in place.
    pub fn state(&self) -> AggregateStateRef<'_> {
        AggregateStateRef {
            windows: WindowsRef(&self.groups),
            sessions: SessionsRef(self.is_session().then_some(&self.groups)),
            watermark: self.watermark,
            last_early: self.last_early,
        }
    }

    /// A copy of the operator's state (what [`WindowedAggregate::state`] writes).
    pub fn snapshot(&self) -> AggregateState {
        AggregateState {
            windows: self
                .groups
                .iter()
                .flat_map(|(k, group)| {
                    group
                        .iter()
                        .map(|(end, st)| (*end, k.key.clone(), st.clone()))
                })
                .collect(),
            sessions: if self.is_session() {
                self.groups
                    .iter()
                    .map(|(k, group)| {
                        let spans = group.iter().map(|(end, st)| (st.start, *end)).collect();
                        (k.key.clone(), spans)
                    })
                    .collect()
            } else {
                Vec::new()
            },
            watermark: self.watermark,
            last_early: self.last_early,
        }
    }

    /// An operator for `spec` continuing from a [`WindowedAggregate::snapshot`] of the same
    /// spec. Sessions are the session windows' spans, so the windows alone rebuild them.
    pub fn restore(spec: Arc<Aggregate>, state: AggregateState) -> Self {
        let mut op = WindowedAggregate::new(spec);
        for (end, key, st) in state.windows {
            let group = op.groups.entry(Keyed::new(key)).or_insert_with(new_group);
            let at = group.partition_point(|(e, _)| *e < end);
            group.insert(at, (end, st));
            op.ends.add(end);
        }
        if op.is_session() {
            for (key, group) in &op.groups {
                for (end, _) in group {
                    op.session_ends.entry(*end).or_default().insert(key.clone());
                }
            }
        }
        op.watermark = state.watermark;
        op.last_early = state.last_early;
        op
    }

    /// Windows currently open (for metrics and memory bounds).
    pub fn open_windows(&self) -> usize {
        self.ends.open
    }

    /// The bound of [`Self::open_windows`] (`max_open_windows`).
    pub fn max_open_windows(&self) -> usize {
        self.spec.max_open_windows
    }

    /// Adds one event. `seq` is its arrival position (for first/last ties). Returns `Err`
    /// when the event matched but every window it belongs to has closed.
    pub fn on_event(&mut self, event: &Event, seq: u64) -> Result<(), NotApplied> {
        self.on_event_at(event, seq, self.watermark)
    }

    /// [`Self::on_event`] with the event judged late against `watermark` (or the
    /// operator's own, if further): a repartitioned event carries the watermark of the
    /// partition it came from, so it joins exactly the windows it would have joined
    /// there, whatever other partitions' records arrived in between.
    pub fn on_event_at(
        &mut self,
        event: &Event,
        seq: u64,
        watermark: i64,
    ) -> Result<(), NotApplied> {
        let watermark = watermark.max(self.watermark);
        if let Some(cond) = &self.spec.condition
            && !cond.matches(event)
        {
            return Ok(());
        }
        let mut key = std::mem::take(&mut self.scratch);
        key.key.resize(self.spec.group_by.len(), None);
        for (slot, k) in key.key.iter_mut().zip(&self.spec.group_by) {
            k.expr.eval(event).write_key(slot);
        }
        let bytes = key_bytes(&key.key);
        if bytes > self.spec.max_key_bytes {
            self.scratch = key;
            return Err(NotApplied::Full(self.key_too_long(bytes)));
        }
        key.hash = key_hash(&key.key);
        let spec = self.spec.clone();
        let measures = &spec.measures;
        let input = |m: &crate::spec::Measure| {
            let arg = m.argument.as_ref().map(|a| a.eval(event));
            Input::new(m.function, arg.as_ref())
        };
        let mut inline = [Input::default(); INLINE_ARGS];
        let heap: Vec<Input>;
        let args: &[Input] = if measures.len() <= INLINE_ARGS {
            for (slot, m) in inline.iter_mut().zip(measures) {
                *slot = input(m);
            }
            &inline[..measures.len()]
        } else {
            heap = measures.iter().map(input).collect();
            &heap
        };
        let t = event.time;
        let closed_before = watermark.saturating_sub(self.lateness_us);
        let max_open = spec.max_open_windows;
        let outcome = match spec.window {
            Window::Tumbling { size } => {
                let size = micros(size);
                let start = t.div_euclid(size) * size;
                if start + size <= closed_before {
                    Err(NotApplied::Late(self.late(t, watermark)))
                } else {
                    let ends = &mut self.ends;
                    let added = with_group(&mut self.groups, &key, |group| {
                        add(
                            group,
                            ends,
                            max_open,
                            &spec,
                            start,
                            start + size,
                            args,
                            t,
                            seq,
                        )
                    });
                    match added {
                        Some(_) => Ok(()),
                        None => Err(NotApplied::Full(self.full())),
                    }
                }
            }
            Window::Hopping { size, slide } => {
                let (size, slide) = (micros(size), micros(slide));
                let last_start = t.div_euclid(slide) * slide;
                // The event's windows start at last_start, last_start - slide, ... while
                // they still contain t; the oldest of them may be closed already.
                let mut first_start = last_start;
                while first_start - slide > t - size {
                    first_start -= slide;
                }
                let mut start = first_start;
                while start + size <= closed_before && start <= last_start {
                    start += slide;
                }
                if start > last_start {
                    Err(NotApplied::Late(self.late(t, watermark)))
                } else {
                    // One key lookup for all of the event's windows.
                    let ends = &mut self.ends;
                    let complete = with_group(&mut self.groups, &key, |group| {
                        // The event's windows are consecutive in the group (ends ordered,
                        // one slide apart): one search for the first, then a walk.
                        let mut at = group.partition_point(|(e, _)| *e < start + size);
                        let mut complete = true;
                        while start <= last_start {
                            let end = start + size;
                            match add_at(group, at, ends, max_open, &spec, start, end, args, t, seq)
                            {
                                Some(_) => at += 1,
                                // Not opened: the next window's place is this one's.
                                None => complete = false,
                            }
                            start += slide;
                        }
                        complete
                    });
                    if complete {
                        Ok(())
                    } else {
                        Err(NotApplied::Full(self.full()))
                    }
                }
            }
            Window::Session { gap } => self.session(t, micros(gap), closed_before, &key, args, seq),
        };
        self.scratch = key;
        outcome
    }

    fn session(
        &mut self,
        t: i64,
        gap: i64,
        closed_before: i64,
        key: &Keyed,
        args: &[Input],
        seq: u64,
    ) -> Result<(), NotApplied> {
        let (lo, hi) = (t, t.saturating_add(gap));
        // The open sessions this event touches (overlapping [t, t + gap]) merge into one.
        let touches = |e: i64, st: &WindowState| st.start <= hi && e >= lo;
        let any = self
            .groups
            .get(key)
            .is_some_and(|g| g.iter().any(|(e, st)| touches(*e, st)));
        if !any && hi <= closed_before {
            let late = self.late(t, closed_before.saturating_add(self.lateness_us));
            return Err(NotApplied::Late(late));
        }
        // A new session is one more open window; merging never adds one.
        if !any && self.ends.open >= self.spec.max_open_windows {
            return Err(NotApplied::Full(self.full()));
        }
        let spec = self.spec.clone();
        let group = group_of(&mut self.groups, key);
        let (mut start, mut end) = (lo, hi);
        let mut merged: Option<WindowState> = None;
        let mut removed = Vec::new();
        let mut i = 0;
        while i < group.len() {
            if !touches(group[i].0, &group[i].1) {
                i += 1;
                continue;
            }
            let (e, st) = group.remove(i);
            start = start.min(st.start);
            end = end.max(e);
            removed.push(e);
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
        if let Some(mut st) = merged {
            st.start = start;
            let at = group.partition_point(|(e, _)| *e < end);
            group.insert(at, (end, st));
            self.ends.add(end);
        }
        // Never refused: the bound was checked above.
        add(
            group,
            &mut self.ends,
            usize::MAX,
            &spec,
            start,
            end,
            args,
            t,
            seq,
        );
        for e in removed {
            self.ends.forget(e);
            if e == end {
                continue;
            }
            if let Some(keys) = self.session_ends.get_mut(&e) {
                keys.remove(key);
                if keys.is_empty() {
                    self.session_ends.remove(&e);
                }
            }
        }
        if !self.session_ends.get(&end).is_some_and(|k| k.contains(key)) {
            self.session_ends
                .entry(end)
                .or_default()
                .insert(key.clone());
        }
        Ok(())
    }

    fn key_too_long(&self, bytes: usize) -> Full {
        Full {
            aggregate: self.spec.name.clone(),
            reason: format!(
                "the event's group key is {bytes} bytes, over the aggregate's limit of {} \
                 (max_key_bytes): it was not counted; raise max_key_bytes, or group by a \
                 shorter value",
                self.spec.max_key_bytes
            ),
        }
    }

    fn full(&self) -> Full {
        Full {
            aggregate: self.spec.name.clone(),
            reason: format!(
                "the aggregate holds its limit of {} open windows (max_open_windows) and the \
                 event would open another: it was not counted there; raise max_open_windows, or \
                 narrow group_by if its keys are unbounded (a request id, a random value)",
                self.spec.max_open_windows
            ),
        }
    }

    fn late(&self, t: i64, watermark: i64) -> Late {
        Late {
            aggregate: self.spec.name.clone(),
            reason: format!(
                "event time {t} is behind the watermark {watermark} by more than the allowed lateness of {:?}: its window is closed",
                self.spec.allowed_lateness
            ),
        }
    }

    /// The smallest watermark at which [`Self::on_watermark`] would emit something (a
    /// window closes, or an `emit_every` boundary passes with windows open); `None` when
    /// nothing is open. The runtime writes a watermark mark into a quiet partition only
    /// when one of its operators has a deadline behind the wall clock.
    pub fn next_deadline(&self) -> Option<i64> {
        let closes = [
            self.ends.first(),
            self.session_ends.first_key_value().map(|(end, _)| *end),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|end| end.saturating_add(self.lateness_us));
        // The first watermark whose boundary (a multiple of `every`) is past the last one.
        let early = self
            .emit_every_us
            .filter(|_| !self.groups.is_empty())
            .map(|every| {
                self.last_early
                    .div_euclid(every)
                    .saturating_add(1)
                    .saturating_mul(every)
            });
        closes.into_iter().chain(early).min()
    }

    /// Advances the watermark and emits results: finals for windows that closed, and
    /// early results when `emit_every` boundaries were crossed.
    pub fn on_watermark(&mut self, watermark: i64, out: &mut Vec<WindowResult>) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        let closed_before = watermark.saturating_sub(self.lateness_us);
        if self.ends.first().is_some_and(|end| end <= closed_before) {
            self.close(closed_before, out);
        }
        if let Some(every) = self.emit_every_us {
            let boundary = watermark.div_euclid(every) * every;
            if boundary > self.last_early {
                self.last_early = boundary;
                // In (end, key) order, as the finals.
                let mut dirty: Vec<(i64, &GroupKey, &mut WindowState)> = self
                    .groups
                    .iter_mut()
                    .flat_map(|(k, group)| {
                        group
                            .iter_mut()
                            .filter(|(_, st)| st.dirty)
                            .map(move |(end, st)| (*end, &k.key, st))
                    })
                    .collect();
                dirty.sort_by_key(|(end, _, _)| *end);
                for (end, key, state) in dirty {
                    state.dirty = false;
                    state.versions += 1;
                    out.push(result(&self.spec, end, key, state, false));
                }
            }
        }
    }

    /// Emits the final results of every window ending at or before `closed_before`, in
    /// (end, key) order, and drops them.
    fn close(&mut self, closed_before: i64, out: &mut Vec<WindowResult>) {
        self.ends.close_through(closed_before);
        if self.is_session() {
            while let Some(entry) = self.session_ends.first_entry() {
                if *entry.key() > closed_before {
                    break;
                }
                let (end, keys) = entry.remove_entry();
                for key in keys {
                    let Some(group) = self.groups.get_mut(&key) else {
                        continue;
                    };
                    let Ok(at) = group.binary_search_by_key(&end, |(e, _)| *e) else {
                        continue;
                    };
                    let (_, mut state) = group.remove(at);
                    if group.is_empty() {
                        self.groups.remove(&key);
                    }
                    state.versions += 1;
                    out.push(result(&self.spec, end, &key.key, &state, true));
                }
            }
            return;
        }
        // Tumbling and hopping windows end on the same boundaries for every key: one pass
        // over the groups takes each one's closed windows (a prefix, ends are ordered).
        let mut closing: Vec<(i64, &GroupKey, WindowState)> = Vec::new();
        let mut emptied = false;
        for (k, group) in self.groups.iter_mut() {
            let n = group.partition_point(|(e, _)| *e <= closed_before);
            closing.extend(group.drain(..n).map(|(end, st)| (end, &k.key, st)));
            emptied |= group.is_empty();
        }
        // Stable: keys stay in order within one end.
        closing.sort_by_key(|(end, _, _)| *end);
        for (end, key, mut state) in closing {
            state.versions += 1;
            out.push(result(&self.spec, end, key, &state, true));
        }
        if emptied {
            self.groups.retain(|_, g| !g.is_empty());
        }
    }
}

/// Adds the event to the window `(start, end)` of `group`, creating it when new (and
/// counting it in `ends`) unless `max_open` windows are open. Returns whether the window
/// is new, or `None` when it was not opened.
#[allow(clippy::too_many_arguments)]
fn add(
    group: &mut Group,
    ends: &mut Ends,
    max_open: usize,
    spec: &Aggregate,
    start: i64,
    end: i64,
    args: &[Input],
    t: i64,
    seq: u64,
) -> Option<bool> {
    let at = group.partition_point(|(e, _)| *e < end);
    add_at(group, at, ends, max_open, spec, start, end, args, t, seq)
}

/// [`add`] when the window's position in `group` is known: `at` is the first window
/// ending at or after `end`.
#[allow(clippy::too_many_arguments)]
fn add_at(
    group: &mut Group,
    at: usize,
    ends: &mut Ends,
    max_open: usize,
    spec: &Aggregate,
    start: i64,
    end: i64,
    args: &[Input],
    t: i64,
    seq: u64,
) -> Option<bool> {
    let new = group.get(at).is_none_or(|(e, _)| *e != end);
    if new && ends.open >= max_open {
        return None;
    }
    if new {
        group.insert(
            at,
            (
                end,
                WindowState {
                    start,
                    accumulators: spec
                        .measures
                        .iter()
                        .map(|m| Accumulator::new(m.function))
                        .collect(),
                    count: 0,
                    versions: 0,
                    dirty: false,
                },
            ),
        );
        ends.add(end);
    }
    let state = &mut group[at].1;
    for (acc, arg) in state.accumulators.iter_mut().zip(args) {
        acc.update(arg, t, seq);
    }
    state.count += 1;
    state.dirty = true;
    Some(new)
}

/// The open windows of `key`, created empty (the key cloned) when it has none.
fn group_of<'g>(groups: &'g mut BTreeMap<Keyed, Group>, key: &Keyed) -> &'g mut Group {
    // Two lookups for a new key rather than a clone of the key per event.
    if !groups.contains_key(key) {
        groups.insert(key.clone(), new_group());
    }
    match groups.get_mut(key) {
        Some(g) => g,
        None => unreachable!("inserted above"),
    }
}

/// Runs `f` on the open windows of `key`, created empty (the key cloned) when it has
/// none: one lookup when the key is known.
fn with_group<R>(
    groups: &mut BTreeMap<Keyed, Group>,
    key: &Keyed,
    f: impl FnOnce(&mut Group) -> R,
) -> R {
    if let Some(group) = groups.get_mut(key) {
        return f(group);
    }
    let group = groups.entry(key.clone()).or_insert_with(new_group);
    let r = f(group);
    // Nothing was opened (the aggregate holds its bound): no empty group stays behind.
    if group.is_empty() {
        groups.remove(key);
    }
    r
}

/// Room for one window: most keys of a tumbling window never have more, and `Vec`'s first
/// growth would reserve four (192 bytes a key with 1M keys open).
fn new_group() -> Group {
    Vec::with_capacity(1)
}

/// The open windows by end, and how many there are in all (what `max_open_windows`
/// bounds), kept together so the total is never recounted.
#[derive(Debug, Default)]
struct Ends {
    by_end: BTreeMap<i64, usize>,
    open: usize,
}

impl Ends {
    /// One more window ends at `end`.
    fn add(&mut self, end: i64) {
        *self.by_end.entry(end).or_default() += 1;
        self.open += 1;
    }

    /// One window ending at `end` is gone.
    fn forget(&mut self, end: i64) {
        if let Some(n) = self.by_end.get_mut(&end) {
            *n -= 1;
            self.open -= 1;
            if *n == 0 {
                self.by_end.remove(&end);
            }
        }
    }

    /// The earliest end of an open window.
    fn first(&self) -> Option<i64> {
        self.by_end.first_key_value().map(|(end, _)| *end)
    }

    /// Every window ending at or before `closed_before` is gone.
    fn close_through(&mut self, closed_before: i64) {
        while let Some(entry) = self.by_end.first_entry() {
            if *entry.key() > closed_before {
                break;
            }
            self.open -= entry.remove();
        }
    }
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
    IdBuilder::new()
        .raw(aggregate.as_bytes())
        .raw(&[0])
        .int(start)
        .int(end)
        .key(key)
        .finish()
}

#[cfg(test)]
mod tests;
