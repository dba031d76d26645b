//! The exact set of remembered identity hashes: open addressing over bare `u64`s with
//! linear probing, so a probe reads one cache line (a general hash set reads a control
//! array and a data array). A probe starts at the first slot of a cache line (slots sit
//! in 64-byte aligned lines of eight), so the line the runtime fetches ahead
//! ([`IdTable::slot`]) holds the whole probe unless its line is full: a probe that
//! started mid-line would run into the next, unfetched line about a quarter of the time.
//! Inserts and removals come in batches: a first pass touches every home line of the
//! batch, so the batch's cache misses overlap instead of queueing one after another, and
//! the second pass finds its lines in cache.

use std::hint::black_box;

/// The empty slot. An identity hashing to it is stored as [`ZERO_STANDIN`].
const EMPTY: u64 = 0;
const ZERO_STANDIN: u64 = 0x9e37_79b9_7f4a_7c15;
/// Slots are at most this many eighths full before the table doubles.
const MAX_LOAD_EIGHTHS: usize = 6;
/// Keys handled per touch-then-apply pass: their lines fit in L2, and their pages in the
/// second-level TLB, with room to spare.
const BATCH: usize = 1024;
/// Slots per line.
const LINE: usize = 8;
/// Bytes per cache line.
const LINE_BYTES: usize = 64;

#[derive(Debug)]
pub(super) struct IdTable {
    /// The slots from `base` on, 64-byte aligned there (a zeroed allocation, so pages the
    /// table never touches cost no memory; a line's worth longer than the slots).
    words: Vec<u64>,
    base: usize,
    /// Slots - 1 (slots are a power of two, at least one line).
    mask: usize,
    len: usize,
}

impl Clone for IdTable {
    /// A copy aligned in its own allocation (a plain copy of `words` would not be).
    fn clone(&self) -> Self {
        let mut copy = IdTable::with_slots(self.slots());
        let n = self.slots();
        copy.words[copy.base..copy.base + n].copy_from_slice(&self.words[self.base..self.base + n]);
        copy.len = self.len;
        copy
    }
}

fn key(h: u64) -> u64 {
    if h == EMPTY { ZERO_STANDIN } else { h }
}

impl Default for IdTable {
    fn default() -> Self {
        IdTable::with_capacity(0)
    }
}

impl IdTable {
    /// A table that holds `n` keys without growing.
    pub(super) fn with_capacity(n: usize) -> Self {
        IdTable::with_slots((n * 8 / MAX_LOAD_EIGHTHS + 1).next_power_of_two().max(64))
    }

    fn with_slots(slots: usize) -> Self {
        let words = vec![EMPTY; slots + LINE - 1];
        let misaligned = (words.as_ptr() as usize) % LINE_BYTES;
        IdTable {
            base: (LINE_BYTES - misaligned) % LINE_BYTES / 8,
            words,
            mask: slots - 1,
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn slots(&self) -> usize {
        self.mask + 1
    }

    fn get(&self, i: usize) -> u64 {
        self.words[self.base + i]
    }

    fn set(&mut self, i: usize, k: u64) {
        self.words[self.base + i] = k;
    }

    /// The slot a key's probe starts at: the first of the line the hash's low bits pick
    /// (identities are well mixed).
    fn home(&self, k: u64) -> usize {
        (k as usize) & self.mask & !(LINE - 1)
    }

    pub(super) fn contains(&self, h: u64) -> bool {
        let k = key(h);
        let mut i = self.home(k);
        loop {
            match self.get(i) {
                s if s == k => return true,
                EMPTY => return false,
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    /// The first slot of `h`'s home line: reading it brings the line (and its page's
    /// translation) into cache, and the probe for `h` starts there.
    pub(super) fn slot(&self, h: u64) -> &u64 {
        &self.words[self.base + self.home(key(h))]
    }

    /// Inserts `h`; `false` if it was there already. One probe sequence for both answers.
    pub(super) fn insert(&mut self, h: u64) -> bool {
        if (self.len + 1) * 8 > self.slots() * MAX_LOAD_EIGHTHS {
            self.grow(self.len + 1);
        }
        let k = key(h);
        let mut i = self.home(k);
        loop {
            match self.get(i) {
                s if s == k => return false,
                EMPTY => break,
                _ => i = (i + 1) & self.mask,
            }
        }
        self.set(i, k);
        self.len += 1;
        true
    }

    /// Reads and writes `h`'s home line and nothing else ([`super::floor`]).
    #[cfg(feature = "memory-floor")]
    pub(super) fn touch_one(&mut self, h: u64) {
        let i = self.base + self.home(key(h));
        self.words[i] ^= h;
    }

    /// Reads every key's home line without using the value, so the misses overlap.
    fn touch(&self, keys: &[u64]) {
        let mut acc = 0u64;
        for &h in keys {
            acc ^= *self.slot(h);
        }
        black_box(acc);
    }

    /// Inserts keys known to be absent (the caller checked), in batches.
    pub(super) fn insert_new(&mut self, keys: &[u64]) {
        if (self.len + keys.len()) * 8 > self.slots() * MAX_LOAD_EIGHTHS {
            self.grow(self.len + keys.len());
        }
        for chunk in keys.chunks(BATCH) {
            self.touch(chunk);
            for &h in chunk {
                self.place(key(h));
            }
        }
        self.len += keys.len();
    }

    fn place(&mut self, k: u64) {
        let mut i = self.home(k);
        while self.get(i) != EMPTY {
            debug_assert_ne!(self.get(i), k, "inserted twice");
            i = (i + 1) & self.mask;
        }
        self.set(i, k);
    }

    /// Removes keys (each present at most once), in batches; absent keys are ignored.
    pub(super) fn remove(&mut self, keys: &[u64]) {
        for chunk in keys.chunks(BATCH) {
            self.touch(chunk);
            for &h in chunk {
                self.remove_one(key(h));
            }
        }
    }

    /// Linear probing's deletion without tombstones: later keys of the run that may move
    /// back into the hole (their home is not cyclically after it) are shifted back.
    fn remove_one(&mut self, k: u64) {
        let mut i = self.home(k);
        loop {
            match self.get(i) {
                s if s == k => break,
                EMPTY => return,
                _ => i = (i + 1) & self.mask,
            }
        }
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.get(j);
            if s == EMPTY {
                break;
            }
            // Distances along the probe sequence, modulo the table size.
            let from_home_to_j = j.wrapping_sub(self.home(s)) & self.mask;
            let from_hole_to_j = j.wrapping_sub(i) & self.mask;
            if from_home_to_j >= from_hole_to_j {
                self.set(i, s);
                i = j;
            }
        }
        self.set(i, EMPTY);
    }

    /// Rebuilds for `need` keys: the next power of two of slots, which doubles them (a
    /// further doubling of `need` here would make the table four times what it holds).
    /// Keys are placed in slot order: a key's home in the bigger table is its home here
    /// or that plus the old size, so the writes run along two sequences, not at random.
    fn grow(&mut self, need: usize) {
        let mut bigger = IdTable::with_capacity(need);
        for &s in &self.words[self.base..=self.base + self.mask] {
            if s != EMPTY {
                bigger.place(s);
            }
        }
        bigger.len = self.len;
        *self = bigger;
    }

    /// Bytes held.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.slots() * 8
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::{IdTable, ZERO_STANDIN};

    proptest! {
        /// Any interleaving of batched inserts and removals answers as a `HashSet` does,
        /// with keys crowded into few home slots so probe runs wrap and shift.
        #[test]
        fn answers_as_a_hash_set(ops in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(0u64..300, 0..40)), 0..60)) {
            let mut table = IdTable::default();
            let mut model = HashSet::new();
            for (insert, keys) in ops {
                // Spread over the top bits too, but share low bits (the home slot).
                let keys: Vec<u64> = keys.iter().map(|k| (k % 7) | (k << 40)).collect();
                if insert {
                    let mut fresh = Vec::new();
                    for k in keys {
                        if model.insert(k) {
                            fresh.push(k);
                        }
                    }
                    table.insert_new(&fresh);
                } else {
                    let mut gone = Vec::new();
                    for k in keys {
                        if model.remove(&k) {
                            gone.push(k);
                        }
                    }
                    table.remove(&gone);
                }
                prop_assert_eq!(table.len(), model.len());
                for k in 0u64..300 {
                    let k = (k % 7) | (k << 40);
                    prop_assert_eq!(table.contains(k), model.contains(&k), "key {}", k);
                }
            }
        }
    }

    #[test]
    fn a_probe_starts_at_a_cache_line_in_copies_and_grown_tables_too() {
        let mut table = IdTable::with_capacity(10);
        let keys: Vec<u64> = (1..=5000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for &k in &keys[..2500] {
            assert!(table.insert(k));
        }
        let mut copy = table.clone();
        for &k in &keys[2500..] {
            assert!(copy.insert(k));
        }
        for t in [&table, &copy] {
            for &k in &keys {
                assert_eq!((t.slot(k) as *const u64 as usize) % 64, 0, "key {k}");
            }
        }
        assert!(keys.iter().all(|&k| copy.contains(k)));
        assert!(keys[..2500].iter().all(|&k| table.contains(k)));
        assert!(!keys[2500..].iter().any(|&k| table.contains(k)));
    }

    #[test]
    fn zero_is_a_key_like_any_other() {
        let mut table = IdTable::default();
        assert!(!table.contains(0));
        table.insert_new(&[0]);
        assert!(table.contains(0));
        assert!(table.contains(ZERO_STANDIN), "the stand-in shares its slot");
        table.remove(&[0]);
        assert!(!table.contains(0));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn grows_past_its_first_size_and_keeps_every_key() {
        let mut table = IdTable::with_capacity(10);
        let small = table.bytes();
        // A million keys take 2^21 slots (16 MiB) at most three-quarters full, not more.
        let mut million = IdTable::default();
        let keys: Vec<u64> = (1..=1_000_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for &k in &keys {
            assert!(million.insert(k));
        }
        assert_eq!(million.bytes(), 8 << 21);
        assert!(!million.insert(keys[0]), "present already");
        let keys: Vec<u64> = (1..=100_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        table.insert_new(&keys[..50_000]);
        table.insert_new(&keys[50_000..]);
        assert!(table.bytes() > small);
        assert_eq!(table.len(), 100_000);
        assert!(keys.iter().all(|&k| table.contains(k)));
        table.remove(&keys[..99_000]);
        assert_eq!(table.len(), 1000);
        assert!(keys[99_000..].iter().all(|&k| table.contains(k)));
        assert!(!keys[..99_000].iter().any(|&k| table.contains(k)));
    }
}
