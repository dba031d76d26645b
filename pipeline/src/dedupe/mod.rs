//! Repeats of an event: the identities (`source`, `id`) a partition has applied within a
//! horizon of event time, so a producer's retry, a webhook redelivery or a re-read Kafka
//! record is dropped before any aggregate, rule or insight sees it (issue 13).
//!
//! An identity is a 64-bit hash of `source` and `id` ([`identity`], pinned in `ids.rs`). The
//! same hashes sit in buckets of event time (a sixty-fourth of the horizon each) that
//! expire as the watermark passes their end plus the horizon, and, past `max_ids`, oldest
//! first. Like the operators, this is a pure state machine of the partition's log: what it
//! drops does not depend on batches, timing or where a crash cut the run, and its state
//! (the buckets) is checkpointed with theirs.
//!
//! "Seen?" runs once per event on the hot path, over a million identities per partition
//! that no cache holds (issue 13's cost bar). The set ([`table`]) is open addressing over
//! bare `u64`s, so the question and the insert of a new identity read one cache line, and
//! the runtime reads the lines of a run of records ([`Prefetch`]) before it decodes them,
//! so their misses overlap instead of stalling one event each.
//!
//! Two identities share a hash with odds of about n²/2⁶⁵ (under 3·10⁻⁸ for a million
//! remembered): such an event would be dropped as a repeat.

#[cfg(feature = "memory-floor")]
pub mod floor;
mod table;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::checkpoint::PartRef;
use crate::ids::pair_hash64;
use table::IdTable;

/// Buckets per horizon: the granularity of expiry and of eviction at the bound.
const BUCKETS: i64 = 64;
/// A bucket's hashes not yet in a checkpoint part go into one (8 bytes each) once there
/// are this many; fewer ride in the checkpoint's payload. Hashes only ever join a bucket,
/// so each is written to a part once, however many checkpoints follow.
const PART_MIN: usize = 16_384;

/// The identities one partition remembers.
#[derive(Debug, Clone)]
pub struct Seen {
    horizon_us: i64,
    width_us: i64,
    max_ids: usize,
    /// Every hash in `state`'s buckets, for the question.
    table: IdTable,
    state: SeenState,
    /// Buckets dropped because `max_ids` was reached, not yet taken by the runtime.
    evicted: u64,
    /// Per bucket, its hashes already in checkpoint parts: consecutive ranges from the
    /// start, each the end of its range and the part.
    written: BTreeMap<i64, Vec<(usize, PartRef)>>,
    /// The start of the last bucket an event fell in, and its index: most events fall in
    /// the same bucket as the one before, and a 64-bit division per event is dear.
    last_bucket: Option<(i64, i64)>,
    /// Identities in the buckets under [`floor::Floor::Durable`], whose table holds none.
    #[cfg(feature = "memory-floor")]
    floor_kept: usize,
}

/// The remembered identities as a checkpoint payload holds them (since checkpoint
/// version 2): per bucket, how many of the checkpoint's parts hold its first hashes (in
/// order, 8 little-endian bytes each), and the hashes after those.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SeenCheckpoint<T> {
    frontier: i64,
    buckets: Vec<BucketCheckpoint<T>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BucketCheckpoint<T> {
    bucket: i64,
    parts: u32,
    tail: T,
}

/// A part to write before the next checkpoint: `bytes` hold a bucket's hashes up to
/// `end` from where its last part ended.
#[derive(Debug)]
pub(crate) struct NewPart {
    pub bucket: i64,
    pub end: usize,
    pub name: String,
    pub bytes: Bytes,
}

/// The checkpointed part: the buckets (the sets are rebuilt from them on restore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenState {
    /// Buckets below this index are forgotten (expired or evicted).
    frontier: i64,
    /// Bucket index (event time / width) -> the hashes first seen in it.
    buckets: BTreeMap<i64, Vec<u64>>,
}

impl Default for SeenState {
    fn default() -> Self {
        SeenState {
            frontier: i64::MIN,
            buckets: BTreeMap::new(),
        }
    }
}

/// The set's lines of a run of identities, read together before the run is processed:
/// [`Prefetch::add`] each identity (with the set of its partition), then
/// [`Prefetch::fetch`]. A hint only: it changes nothing.
///
/// Why two passes: a load that misses holds up the retirement of everything after it, so
/// when each load sits among the work of finding the record's partition, peeking its
/// identity and hashing it, the core's reorder buffer holds two or three of them at a time
/// and the misses mostly queue. Reading the collected slots in a loop of bare loads keeps
/// dozens in flight (bench/RESULTS.md).
#[derive(Debug, Default)]
pub struct Prefetch<'a> {
    lines: Vec<&'a u64>,
}

impl<'a> Prefetch<'a> {
    /// Room for `n` identities without growing.
    pub fn with_capacity(n: usize) -> Self {
        Prefetch {
            lines: Vec::with_capacity(n),
        }
    }

    /// Identity `h` will be asked of `seen`.
    pub fn add(&mut self, seen: &'a Seen, h: u64) {
        self.lines.push(seen.table.slot(h));
    }

    /// Reads every collected slot (folded into one `black_box`, so the loads happen), which
    /// brings their lines and page translations into cache.
    pub fn fetch(self) {
        let mut acc = 0u64;
        for &word in &self.lines {
            acc ^= *word;
        }
        std::hint::black_box(acc);
    }
}

/// The identity hash of an event ([`pair_hash64`] of `source` and `id`).
pub fn identity(source: &str, id: &str) -> u64 {
    identity_of_bytes(source.as_bytes(), id.as_bytes())
}

/// [`identity`] of the raw bytes (as peeked from an undecoded record).
pub fn identity_of_bytes(source: &[u8], id: &[u8]) -> u64 {
    pair_hash64(source, id)
}

impl Seen {
    /// Remembers identities over `horizon` (non-zero) of event time, at most `max_ids`.
    pub fn new(horizon: Duration, max_ids: usize) -> Self {
        Seen::restore(horizon, max_ids, SeenState::default())
    }

    /// From a checkpoint's state.
    pub fn restore(horizon: Duration, max_ids: usize, state: SeenState) -> Self {
        let horizon_us = i64::try_from(horizon.as_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        let count: usize = state.buckets.values().map(Vec::len).sum();
        #[cfg(feature = "memory-floor")]
        let count = floor::table_capacity(count);
        let mut table = IdTable::with_capacity(count, max_ids);
        for hashes in state.buckets.values() {
            table.insert_new(hashes);
        }
        Seen {
            horizon_us,
            width_us: (horizon_us / BUCKETS).max(1),
            max_ids: max_ids.max(1),
            table,
            state,
            evicted: 0,
            written: BTreeMap::new(),
            last_bucket: None,
            #[cfg(feature = "memory-floor")]
            floor_kept: 0,
        }
    }

    /// From a checkpoint payload's identities and the checkpoint's parts (all of them,
    /// in order; the identities' come first). Errors say what does not fit.
    pub(crate) fn restore_parts(
        horizon: Duration,
        max_ids: usize,
        saved: SeenCheckpoint<Vec<u64>>,
        parts: &[(PartRef, Bytes)],
    ) -> Result<Self, String> {
        let mut parts = parts.iter();
        let mut state = SeenState {
            frontier: saved.frontier,
            buckets: BTreeMap::new(),
        };
        let mut written: BTreeMap<i64, Vec<(usize, PartRef)>> = BTreeMap::new();
        for b in saved.buckets {
            let mut hashes = Vec::new();
            for _ in 0..b.parts {
                let Some((part, bytes)) = parts.next() else {
                    return Err(format!(
                        "bucket {} names more parts than the checkpoint has",
                        b.bucket
                    ));
                };
                if bytes.len() % 8 != 0 {
                    return Err(format!(
                        "part {} holds {} bytes, not a whole number of 8-byte hashes",
                        part.name,
                        bytes.len()
                    ));
                }
                hashes.extend(
                    bytes
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
                );
                written
                    .entry(b.bucket)
                    .or_default()
                    .push((hashes.len(), part.clone()));
            }
            hashes.extend_from_slice(&b.tail);
            if state.buckets.insert(b.bucket, hashes).is_some() {
                return Err(format!("bucket {} appears twice", b.bucket));
            }
        }
        let mut seen = Seen::restore(horizon, max_ids, state);
        seen.written = written;
        Ok(seen)
    }

    /// The parts the next checkpoint needs written first: every bucket's hashes since its
    /// last part, where there are at least [`PART_MIN`] of them. Record each written one
    /// with [`Seen::part_written`].
    pub(crate) fn new_parts(&self) -> Vec<NewPart> {
        let mut out = Vec::new();
        for (&bucket, hashes) in &self.state.buckets {
            let start = self.written_end(bucket);
            if hashes.len() - start < PART_MIN {
                continue;
            }
            let mut bytes = Vec::with_capacity((hashes.len() - start) * 8);
            for h in &hashes[start..] {
                bytes.extend_from_slice(&h.to_le_bytes());
            }
            out.push(NewPart {
                bucket,
                end: hashes.len(),
                name: format!("seen_{bucket}_{start}_{}", hashes.len()),
                bytes: Bytes::from(bytes),
            });
        }
        out
    }

    /// `part` now holds the hashes of `bucket` up to `end` (from its last part's end).
    pub(crate) fn part_written(&mut self, bucket: i64, end: usize, part: PartRef) {
        if self.state.buckets.contains_key(&bucket) {
            self.written.entry(bucket).or_default().push((end, part));
        }
    }

    fn written_end(&self, bucket: i64) -> usize {
        self.written
            .get(&bucket)
            .and_then(|w| w.last())
            .map_or(0, |(end, _)| *end)
    }

    /// What a checkpoint holds of the identities: the payload's part and the parts it
    /// refers to (written already), in order.
    pub(crate) fn checkpoint(&self) -> (SeenCheckpoint<&[u64]>, Vec<PartRef>) {
        let mut parts = Vec::new();
        let buckets = self
            .state
            .buckets
            .iter()
            .map(|(&bucket, hashes)| {
                let written = self.written.get(&bucket).map_or(&[][..], Vec::as_slice);
                parts.extend(written.iter().map(|(_, p)| p.clone()));
                BucketCheckpoint {
                    bucket,
                    parts: written.len() as u32,
                    tail: &hashes[self.written_end(bucket)..],
                }
            })
            .collect();
        (
            SeenCheckpoint {
                frontier: self.state.frontier,
                buckets,
            },
            parts,
        )
    }

    /// Bytes a first checkpoint of these identities writes (parts and payload part).
    pub fn checkpoint_bytes(&self) -> usize {
        let parts: usize = self.new_parts().iter().map(|p| p.bytes.len()).sum();
        let mut fresh = self.clone();
        for p in self.new_parts() {
            fresh.part_written(
                p.bucket,
                p.end,
                PartRef {
                    name: p.name,
                    len: p.bytes.len() as u64,
                    crc: 0,
                },
            );
        }
        parts + postcard::to_allocvec(&fresh.checkpoint().0).map_or(0, |v| v.len())
    }

    /// `true` the first time an identity comes (it is remembered if its time is within
    /// the horizon), `false` for a repeat of one remembered.
    pub fn admit(&mut self, source: &str, id: &str, time: i64) -> bool {
        self.admit_identity(identity(source, id), time)
    }

    /// [`Seen::admit`] of an identity hashed already ([`identity`]).
    pub fn admit_identity(&mut self, h: u64, time: i64) -> bool {
        #[cfg(feature = "memory-floor")]
        if let Some(mode) = floor::mode() {
            self.table.touch_one(h);
            if mode == floor::Floor::Durable {
                self.floor_keep(h, time);
            }
            return true;
        }
        let bucket = self.bucket(time);
        if bucket < self.state.frontier {
            // Too old to remember (late for every window); a repeat only if remembered.
            return !self.table.contains(h);
        }
        if !self.table.insert(h) {
            return false;
        }
        self.keep(bucket, h);
        while self.table.len() > self.max_ids {
            let Some(hashes) = self.drop_oldest() else {
                break;
            };
            self.table.remove(&hashes);
            self.evicted += 1;
        }
        true
    }

    /// Forgets the oldest bucket at the `max_ids` bound (the frontier moves past it) and
    /// returns its hashes, for the caller to take out of the table.
    fn drop_oldest(&mut self) -> Option<Vec<u64>> {
        let (b, hashes) = self.state.buckets.pop_first()?;
        self.written.remove(&b);
        self.state.frontier = self.state.frontier.max(b.saturating_add(1));
        Some(hashes)
    }

    /// Adds `h` to `bucket`'s hashes.
    fn keep(&mut self, bucket: i64, h: u64) {
        match self.state.buckets.last_entry() {
            // Most events fall in the newest bucket: no search.
            Some(mut newest) if *newest.key() == bucket => newest.get_mut().push(h),
            _ => self.push_other(bucket, h),
        }
    }

    /// [`floor::Floor::Durable`]: `h` in its bucket as [`Seen::admit_identity`] keeps it,
    /// the oldest buckets dropped whole past `max_ids`.
    #[cfg(feature = "memory-floor")]
    fn floor_keep(&mut self, h: u64, time: i64) {
        let bucket = self.bucket(time);
        if bucket < self.state.frontier {
            return;
        }
        self.keep(bucket, h);
        self.floor_kept += 1;
        while self.floor_kept > self.max_ids {
            let Some(hashes) = self.drop_oldest() else {
                break;
            };
            self.floor_kept -= hashes.len();
        }
    }

    /// The index of the bucket `time` falls in.
    fn bucket(&mut self, time: i64) -> i64 {
        match self.last_bucket {
            Some((start, bucket))
                if time
                    .checked_sub(start)
                    .is_some_and(|d| (0..self.width_us).contains(&d)) =>
            {
                bucket
            }
            _ => {
                let bucket = time.div_euclid(self.width_us);
                self.last_bucket = bucket
                    .checked_mul(self.width_us)
                    .map(|start| (start, bucket));
                bucket
            }
        }
    }

    /// The watermark from which [`Seen::expire`] moves the frontier on, found without a
    /// division; `None` where it is out of range (the division then decides).
    fn next_expiry(&self) -> Option<i64> {
        self.state
            .frontier
            .checked_add(1)?
            .checked_mul(self.width_us)?
            .checked_add(self.horizon_us)
    }

    /// Adds `h` to a bucket other than the newest. A new newest bucket starts with room
    /// for as many hashes as the one before it held: buckets cover equal spans of event
    /// time, so it mostly never reallocates (a doubling vector copies its hashes again
    /// and again, through the caches the set's lines are fetched into).
    fn push_other(&mut self, bucket: i64, h: u64) {
        let room = match self.state.buckets.last_key_value() {
            Some((&newest, hashes)) if newest < bucket => hashes.len(),
            _ => 0,
        };
        self.state
            .buckets
            .entry(bucket)
            .or_insert_with(|| Vec::with_capacity(room))
            .push(h);
    }

    /// Forgets the identities whose bucket ended `horizon` or more before `watermark`.
    pub fn expire(&mut self, watermark: i64) {
        if self.next_expiry().is_some_and(|at| watermark < at) {
            return;
        }
        let frontier = watermark
            .saturating_sub(self.horizon_us)
            .div_euclid(self.width_us);
        if frontier <= self.state.frontier {
            return;
        }
        self.state.frontier = frontier;
        while let Some(entry) = self.state.buckets.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            self.written.remove(entry.key());
            let hashes = entry.remove();
            #[cfg(feature = "memory-floor")]
            if floor::mode().is_some() {
                self.floor_kept -= hashes.len();
                continue;
            }
            self.table.remove(&hashes);
        }
    }

    /// Identities remembered now.
    pub fn len(&self) -> usize {
        #[cfg(feature = "memory-floor")]
        if floor::mode() == Some(floor::Floor::Durable) {
            return self.floor_kept;
        }
        self.table.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buckets dropped at the `max_ids` bound since the last call (for a metric).
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// The checkpointable state.
    pub fn state(&self) -> &SeenState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    use super::{BUCKETS, Seen, SeenState, identity};

    const S: i64 = 1_000_000;

    #[test]
    fn a_repeat_within_the_horizon_is_refused_whatever_its_time() {
        let mut seen = Seen::new(Duration::from_secs(3600), 100);
        assert!(seen.admit("ci", "run-1", 1000 * S));
        assert!(!seen.admit("ci", "run-1", 1000 * S));
        // A redelivery stamped with its own receive time is still a repeat.
        assert!(!seen.admit("ci", "run-1", 1900 * S));
        // Same id, other source: another event.
        assert!(seen.admit("github", "run-1", 1000 * S));
        // The length prefix keeps these apart.
        assert_ne!(identity("a", "b\0c"), identity("a\0b", "c"));
        assert_ne!(identity("ab", "c"), identity("a", "bc"));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn identities_expire_with_the_watermark_after_the_horizon() {
        let mut seen = Seen::new(Duration::from_secs(640), 100);
        assert!(seen.admit("s", "a", 100 * S));
        seen.expire(700 * S);
        assert!(
            !seen.admit("s", "a", 100 * S),
            "within the horizon: remembered"
        );
        // Bucket [100 s, 110 s) ends at 110 s; forgotten once the watermark passes 750 s.
        seen.expire(751 * S);
        assert!(seen.is_empty());
        // Too old to remember: admitted, not remembered (it is late for every window).
        assert!(seen.admit("s", "a", 100 * S));
        assert!(seen.admit("s", "a", 100 * S));
        assert!(seen.admit("s", "b", 800 * S));
        assert!(!seen.admit("s", "b", 800 * S));
    }

    #[test]
    fn at_the_bound_the_oldest_bucket_goes_first_and_is_counted() {
        let mut seen = Seen::new(Duration::from_secs(640), 3);
        for (i, t) in [10, 20, 30].into_iter().enumerate() {
            assert!(seen.admit("s", &format!("e{i}"), t * S));
        }
        assert!(seen.admit("s", "e3", 40 * S));
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.take_evicted(), 1);
        assert_eq!(seen.take_evicted(), 0);
        // e0 (the oldest) is forgotten and its time range with it; the others are kept.
        assert!(seen.admit("s", "e0", 10 * S));
        assert!(!seen.admit("s", "e1", 20 * S));
        assert!(!seen.admit("s", "e3", 40 * S));
    }

    /// The plain definition the layered sets must answer exactly as: one hash set of the
    /// remembered identities, the same buckets.
    struct Reference {
        width_us: i64,
        horizon_us: i64,
        max_ids: usize,
        set: HashSet<u64>,
        state: SeenState,
    }

    impl Reference {
        fn new(horizon: Duration, max_ids: usize) -> Self {
            let horizon_us = horizon.as_micros() as i64;
            Reference {
                width_us: (horizon_us / BUCKETS).max(1),
                horizon_us,
                max_ids,
                set: HashSet::new(),
                state: SeenState::default(),
            }
        }

        fn admit(&mut self, source: &str, id: &str, time: i64) -> bool {
            let h = identity(source, id);
            let bucket = time.div_euclid(self.width_us);
            if bucket < self.state.frontier {
                return !self.set.contains(&h);
            }
            if !self.set.insert(h) {
                return false;
            }
            self.state.buckets.entry(bucket).or_default().push(h);
            while self.set.len() > self.max_ids {
                let (b, hashes) = self.state.buckets.pop_first().unwrap();
                for h in hashes {
                    self.set.remove(&h);
                }
                self.state.frontier = self.state.frontier.max(b + 1);
            }
            true
        }

        fn expire(&mut self, watermark: i64) {
            let frontier = (watermark - self.horizon_us).div_euclid(self.width_us);
            if frontier <= self.state.frontier {
                return;
            }
            self.state.frontier = frontier;
            while let Some(e) = self.state.buckets.first_entry() {
                if *e.key() >= frontier {
                    break;
                }
                for h in e.remove() {
                    self.set.remove(&h);
                }
            }
        }
    }

    /// Runs the same stream through both and checks every answer, the count and the state.
    fn agree(ops: &[(bool, u64, i64)], horizon: Duration, max_ids: usize) {
        let mut seen = Seen::new(horizon, max_ids);
        let mut reference = Reference::new(horizon, max_ids);
        for (n, &(expire, id, time)) in ops.iter().enumerate() {
            if expire {
                seen.expire(time);
                reference.expire(time);
            } else {
                let id = id.to_string();
                assert_eq!(
                    seen.admit("s", &id, time),
                    reference.admit("s", &id, time),
                    "op {n}: id {id} at {time}"
                );
            }
            assert_eq!(seen.len(), reference.set.len(), "op {n}");
        }
        assert_eq!(seen.state(), &reference.state);
    }

    proptest! {
        #[test]
        fn answers_exactly_as_one_hash_set(ops in proptest::collection::vec(
            (proptest::bool::weighted(0.1), 0u64..400, 0i64..2000 * S), 0..400),
            max_ids in 1usize..300) {
            agree(&ops, Duration::from_secs(640), max_ids);
        }
    }

    #[test]
    fn a_long_stream_with_repeats_expiry_and_eviction_answers_exactly_as_one_hash_set() {
        // Enough identities to fill and rebuild the filter and grow the table many times.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ops: Vec<(bool, u64, i64)> = (0..400_000i64)
            .map(|i| {
                let t = i * 5_000 + rng.random_range(0..2_000_000);
                if i % 1000 == 999 {
                    (true, 0, t - 3_000_000)
                } else if rng.random_bool(0.05) {
                    // A repeat of a recent identity (sometimes of a forgotten one).
                    (
                        false,
                        rng.random_range((i.max(1) as u64).saturating_sub(50_000)..i.max(1) as u64),
                        t,
                    )
                } else {
                    (false, i as u64, t)
                }
            })
            .collect();
        agree(&ops, Duration::from_secs(600), 60_000);
    }

    #[test]
    fn restored_state_answers_as_the_original_and_serializes_the_same() {
        let mut seen = Seen::new(Duration::from_secs(3600), 1000);
        for i in 0..200 {
            seen.admit("src", &format!("id{i}"), (i * 7) * S);
        }
        seen.expire(3700 * S);
        let bytes = postcard::to_allocvec(seen.state()).unwrap();
        let mut back = Seen::restore(
            Duration::from_secs(3600),
            1000,
            postcard::from_bytes(&bytes).unwrap(),
        );
        assert_eq!(postcard::to_allocvec(back.state()).unwrap(), bytes);
        for i in 0..200 {
            assert_eq!(
                back.admit("src", &format!("id{i}"), (i * 7) * S),
                seen.admit("src", &format!("id{i}"), (i * 7) * S),
                "id{i}"
            );
        }
    }
}
