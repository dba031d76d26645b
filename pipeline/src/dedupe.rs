//! Repeats of an event: the identities (`source`, `id`) a partition has applied within a
//! horizon of event time, so a producer's retry, a webhook redelivery or a re-read Kafka
//! record is dropped before any aggregate, rule or insight sees it (issue 13).
//!
//! An identity is a 64-bit hash of `source` and `id` ([`identity`], pinned in `ids.rs`). A set
//! answers "seen?" in one lookup; the same hashes sit in buckets of event time (a
//! sixty-fourth of the horizon each) that expire as the watermark passes their end plus
//! the horizon, and, past `max_ids`, oldest first. Like the operators, this is a pure
//! state machine of the partition's log: what it drops does not depend on batches,
//! timing or where a crash cut the run, and its state is checkpointed with theirs.
//!
//! Two identities share a hash with odds of about n²/2⁶⁵ (under 3·10⁻⁸ for a million
//! remembered): such an event would be dropped as a repeat.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::pair_hash64;

/// Buckets per horizon: the granularity of expiry and of eviction at the bound.
const BUCKETS: i64 = 64;

/// The identities one partition remembers.
#[derive(Debug, Clone)]
pub struct Seen {
    horizon_us: i64,
    width_us: i64,
    max_ids: usize,
    set: HashSet<u64, BuildHasherDefault<PassThrough>>,
    state: SeenState,
    /// Buckets dropped because `max_ids` was reached, not yet taken by the runtime.
    evicted: u64,
}

/// The checkpointed part: the buckets (the set is rebuilt from them on restore).
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

/// The hash is already a hash: the set uses it as is.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (keys are u64); fold anything else deterministically.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The identity hash of an event ([`pair_hash64`] of `source` and `id`).
pub fn identity(source: &str, id: &str) -> u64 {
    pair_hash64(source.as_bytes(), id.as_bytes())
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
        let mut seen = Seen {
            horizon_us,
            width_us: (horizon_us / BUCKETS).max(1),
            max_ids: max_ids.max(1),
            set: HashSet::default(),
            state: SeenState::default(),
            evicted: 0,
        };
        seen.set.reserve(state.buckets.values().map(Vec::len).sum());
        for hashes in state.buckets.values() {
            seen.set.extend(hashes.iter().copied());
        }
        seen.state = state;
        seen
    }

    /// `true` the first time an identity comes (it is remembered if its time is within
    /// the horizon), `false` for a repeat of one remembered.
    pub fn admit(&mut self, source: &str, id: &str, time: i64) -> bool {
        let h = identity(source, id);
        let bucket = time.div_euclid(self.width_us);
        if bucket < self.state.frontier {
            // Too old to remember (late for every window); a repeat only if remembered.
            return !self.set.contains(&h);
        }
        // One probe: `insert` says whether it was there.
        if !self.set.insert(h) {
            return false;
        }
        self.state.buckets.entry(bucket).or_default().push(h);
        while self.set.len() > self.max_ids {
            let Some((b, hashes)) = self.state.buckets.pop_first() else {
                break;
            };
            for h in hashes {
                self.set.remove(&h);
            }
            self.state.frontier = self.state.frontier.max(b.saturating_add(1));
            self.evicted += 1;
        }
        true
    }

    /// Forgets the identities whose bucket ended `horizon` or more before `watermark`.
    pub fn expire(&mut self, watermark: i64) {
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
            for h in entry.remove() {
                self.set.remove(&h);
            }
        }
    }

    /// Identities remembered now.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
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
    use std::time::Duration;

    use super::{Seen, identity};

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
