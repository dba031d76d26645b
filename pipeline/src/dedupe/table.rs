//! The exact set of remembered identity hashes: open addressing over bare `u64`s with
//! linear probing, so a probe reads one cache line (a general hash set reads a control
//! array and a data array). A probe starts at the first slot of a cache line (slots sit
//! in 64-byte aligned lines of eight), so the line the runtime fetches ahead
//! ([`IdTable::slot`]) holds the whole probe unless its line is full. A full line sends
//! the probe on into the next line, which nobody fetched: a wait of a whole miss. How
//! often depends on the load (about one probe in eight at 0.6, one in three at 0.75), so
//! the table doubles at half full while it is smaller than the table its bound of keys
//! needs, and fills to three-quarters only at that size (the memory per key remembered
//! at the bound is the same; below it, a table is at most that size).
//!
//! A table grows in its own allocation ([`IdTable::grow`]): the allocator widens it (a
//! large one by remapping its pages, not copying them) and the keys are rehashed in
//! place, so growing writes no second table and faults in only the new pages.
//!
//! Inserts and removals come in batches. A batch dense in the table (a whole event-time
//! bucket forgotten, a checkpoint restored) is first put in the order of its keys' lines
//! (a radix sort, a few ns per key), so the pass runs along the table: page by page, in
//! the order the hardware prefetches, instead of one random line (and page walk) per key.
//! A sparse batch gains nothing from that order: a first pass touches every home line,
//! so its cache misses overlap, and the second finds its lines in cache.

use std::hint::black_box;

/// The empty slot. An identity hashing to it is stored as [`ZERO_STANDIN`].
const EMPTY: u64 = 0;
const ZERO_STANDIN: u64 = 0x9e37_79b9_7f4a_7c15;
/// Slots are at most this many eighths full before the table doubles...
const MAX_LOAD_EIGHTHS: usize = 6;
/// ...or this many while it is smaller than the table for its bound of keys.
const ROOMY_LOAD_EIGHTHS: usize = 4;
/// Keys handled per touch-then-apply pass: their lines fit in L2, and their pages in the
/// second-level TLB, with room to spare.
const BATCH: usize = 1024;
/// Slots per line.
const LINE: usize = 8;
/// Bytes per cache line.
const LINE_BYTES: usize = 64;
/// A batch is put in line order first when it holds at least a key per this many lines
/// (four per 4 KiB page): sorting costs less than the random accesses it saves.
const DENSE_LINES: usize = 16;
/// Line-index bits sorted per radix pass (1024 counters: they stay in L1).
const RADIX_BITS: u32 = 10;

#[derive(Debug)]
pub(super) struct IdTable {
    /// The slots from `base` on, 64-byte aligned there (a zeroed allocation, so pages the
    /// table never touches cost no memory; a line's worth longer than the slots).
    words: Vec<u64>,
    base: usize,
    /// Slots - 1 (slots are a power of two, at least one line).
    mask: usize,
    len: usize,
    /// Slots for the bound of keys at [`MAX_LOAD_EIGHTHS`]: below it the table grows at
    /// [`ROOMY_LOAD_EIGHTHS`].
    bound_slots: usize,
}

impl Clone for IdTable {
    /// A copy aligned in its own allocation (a plain copy of `words` would not be).
    fn clone(&self) -> Self {
        let mut copy = IdTable::with_slots(self.slots(), self.bound_slots);
        let n = self.slots();
        copy.words[copy.base..copy.base + n].copy_from_slice(&self.words[self.base..self.base + n]);
        copy.len = self.len;
        copy
    }
}

/// The first index of `words` at a 64-byte boundary.
fn line_aligned_start(words: &[u64]) -> usize {
    let misaligned = (words.as_ptr() as usize) % LINE_BYTES;
    (LINE_BYTES - misaligned) % LINE_BYTES / 8
}

fn key(h: u64) -> u64 {
    if h == EMPTY { ZERO_STANDIN } else { h }
}

/// The fewest slots (a power of two, at least a line's worth) that hold `n` keys at most
/// `eighths` full.
fn slots_at(n: usize, eighths: usize) -> usize {
    (n.saturating_mul(8) / eighths)
        .saturating_add(1)
        .checked_next_power_of_two()
        .unwrap_or(1 << (usize::BITS - 2))
        .max(64)
}

impl IdTable {
    /// A table for at most about `bound` keys (more only grow it further), sized to hold
    /// `n` without growing.
    pub(super) fn with_capacity(n: usize, bound: usize) -> Self {
        let bound_slots = slots_at(bound, MAX_LOAD_EIGHTHS);
        IdTable::with_slots(IdTable::slots_for(n, bound_slots), bound_slots)
    }

    /// Slots for `n` keys: half full at most, unless that is more than `bound_slots`, then
    /// three-quarters.
    fn slots_for(n: usize, bound_slots: usize) -> usize {
        slots_at(n, ROOMY_LOAD_EIGHTHS)
            .min(bound_slots)
            .max(slots_at(n, MAX_LOAD_EIGHTHS))
    }

    fn with_slots(slots: usize, bound_slots: usize) -> Self {
        let words = vec![EMPTY; slots + LINE - 1];
        IdTable {
            base: line_aligned_start(&words),
            words,
            mask: slots - 1,
            len: 0,
            bound_slots,
        }
    }

    /// Whether `n` keys need more slots than the table has.
    fn full_at(&self, n: usize) -> bool {
        let eighths = if self.slots() < self.bound_slots {
            ROOMY_LOAD_EIGHTHS
        } else {
            MAX_LOAD_EIGHTHS
        };
        n * 8 > self.slots() * eighths
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
        if self.full_at(self.len + 1) {
            self.grow(self.len + 1);
        }
        let k = key(h);
        let home = self.home(k);
        // The home line in one pass with no early exit: how many of its slots are taken
        // varies from key to key, so a loop that stops at the first empty one mispredicts
        // its exit about once per insert. A line with an empty slot holds `k` or is the
        // end of its probe (removals shift keys back, so a probe sequence has no holes).
        let mut next = home;
        if let Some(line) = self.words[self.base + home..].first_chunk::<LINE>() {
            let (mut found, mut empty) = (false, 0u32);
            for (j, &s) in line.iter().enumerate() {
                found |= s == k;
                empty |= u32::from(s == EMPTY) << j;
            }
            if found {
                return false;
            }
            if empty != 0 {
                self.set(home + empty.trailing_zeros() as usize, k);
                self.len += 1;
                return true;
            }
            // A full line: the probe runs on into the next ones.
            next = (home + LINE) & self.mask;
        }
        let mut i = next;
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
        if self.full_at(self.len + keys.len()) {
            self.grow(self.len + keys.len());
        }
        self.each_batched(keys, IdTable::place);
        self.len += keys.len();
    }

    /// Applies `op` to every key of `keys` as stored ([`key`]): a dense batch in line
    /// order, a sparse one in chunks whose lines are touched first.
    fn each_batched(&mut self, keys: &[u64], op: impl Fn(&mut IdTable, u64)) {
        if self.dense(keys) {
            for k in self.in_line_order(keys) {
                op(self, k);
            }
            return;
        }
        for chunk in keys.chunks(BATCH) {
            self.touch(chunk);
            for &h in chunk {
                op(self, key(h));
            }
        }
    }

    /// Whether `keys` are dense enough in the table to be handled in line order.
    fn dense(&self, keys: &[u64]) -> bool {
        keys.len() * DENSE_LINES * LINE >= self.slots()
    }

    /// `keys` as stored ([`key`]), ordered by their home line (an LSD radix sort on the
    /// line bits: stable, linear, two passes for a table of a million lines).
    fn in_line_order(&self, keys: &[u64]) -> Vec<u64> {
        let mut from: Vec<u64> = keys.iter().map(|&h| key(h)).collect();
        let line_bits = (self.slots() / LINE).trailing_zeros();
        let mut to = vec![0u64; from.len()];
        let mut done = 0;
        while done < line_bits {
            let bits = (line_bits - done).min(RADIX_BITS);
            let shift = LINE.trailing_zeros() + done;
            let digit = |k: u64| ((k >> shift) & ((1 << bits) - 1)) as usize;
            let mut start = vec![0usize; 1 << bits];
            for &k in &from {
                start[digit(k)] += 1;
            }
            let mut sum = 0;
            for slot in &mut start {
                let n = *slot;
                *slot = sum;
                sum += n;
            }
            for &k in &from {
                let d = digit(k);
                to[start[d]] = k;
                start[d] += 1;
            }
            std::mem::swap(&mut from, &mut to);
            done += bits;
        }
        from
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
        self.each_batched(keys, IdTable::remove_one);
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

    /// Widens the table for `need` keys (the next power of two of slots: it doubles, or
    /// more for a big batch) in its own allocation. The allocator widens a large one by
    /// remapping its pages, not copying them, so growing costs no second table and no
    /// page faults of the slots it has already; the keys are then rehashed in place.
    fn grow(&mut self, need: usize) {
        let old = self.slots();
        let slots = IdTable::slots_for(need, self.bound_slots);
        let old_base = self.base;
        self.words.resize(slots + LINE - 1, EMPTY);
        let base = line_aligned_start(&self.words);
        if base != old_base {
            // Moved to an address aligned differently: the slots go back onto lines.
            self.words.copy_within(old_base..old_base + old, base);
            self.words[base + old..base + slots].fill(EMPTY);
        }
        self.base = base;
        self.mask = slots - 1;
        self.rehash_in_place(old);
    }

    /// Moves the keys of the first `old` slots to their homes under the widened mask.
    /// A key's new home is its old one or that plus a multiple of `old`. Keys are taken out
    /// and placed again in slot order, starting after an empty slot, so every run of keys is
    /// handled from its start: the slots on a key's new probe sequence are either already
    /// handled (holding keys placed for good) or beyond `old` (only placed keys go there),
    /// so no later step opens a hole in it. A key whose probe would wrap from the last slot
    /// to the first waits until every other key is placed.
    fn rehash_in_place(&mut self, old: usize) {
        let Some(empty) = (0..old).find(|&i| self.get(i) == EMPTY) else {
            // Not at the load the table keeps; placed afresh all the same.
            let keys = self.words[self.base..self.base + old].to_vec();
            self.words[self.base..self.base + old].fill(EMPTY);
            keys.into_iter().for_each(|k| self.place(k));
            return;
        };
        let mut wrapping = Vec::new();
        for step in 1..old {
            let j = (empty + step) & (old - 1);
            let k = self.get(j);
            if k == EMPTY {
                continue;
            }
            self.set(j, EMPTY);
            let mut i = self.home(k);
            loop {
                if self.get(i) == EMPTY {
                    self.set(i, k);
                    break;
                }
                if i == self.mask {
                    wrapping.push(k);
                    break;
                }
                i += 1;
            }
        }
        for k in wrapping {
            self.place(k);
        }
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

    use super::{IdTable, ROOMY_LOAD_EIGHTHS, ZERO_STANDIN};

    /// Keys spread over the top bits, but sharing their low bits (the home line): at the
    /// first line of any table, at the last (so runs wrap around the end), or at the first
    /// until the table grows past 64 to 512 slots (so a run there loses keys to the new
    /// half while others wrap into it).
    fn crowded(k: u64) -> u64 {
        let low = match k % 3 {
            0 => k % 7,
            1 => 0xf_ffff ^ (k % 7),
            _ => (1 << (6 + k % 4)) | (k % 7),
        };
        low | (k << 40)
    }

    proptest! {
        /// Any interleaving of batched inserts and removals answers as a `HashSet` does,
        /// with keys crowded into few home slots so probe runs wrap and shift. A table
        /// presized for many keys takes these batches in the sparse way (lines touched
        /// first), a small one in line order.
        #[test]
        fn answers_as_a_hash_set(presized in any::<bool>(), ops in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(0u64..300, 0..40)), 0..60)) {
            let mut table = IdTable::with_capacity(if presized { 100_000 } else { 0 }, 1000);
            let mut model = HashSet::new();
            for (insert, keys) in ops {
                // Spread over the top bits too, but share low bits (the home slot).
                let keys: Vec<u64> = keys.iter().map(|&k| crowded(k)).collect();
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
                    let k = crowded(k);
                    prop_assert_eq!(table.contains(k), model.contains(&k), "key {}", k);
                }
            }
        }
    }

    proptest! {
        /// Growing in place by any factor keeps every key findable, whatever runs of keys
        /// the table holds: homes are drawn from few lines, mostly near the end, so runs
        /// wrap around it and split between the old and the new slots.
        #[test]
        fn growing_in_place_keeps_every_key(
            lows in proptest::collection::vec(
                prop_oneof![0u64..16, 40u64..64, 100u64..128, 180u64..256, 440u64..512], 1..48),
            factor in 2usize..9,
        ) {
            let mut table = IdTable::with_slots(64, 1 << 20);
            let keys: Vec<u64> = lows.iter().enumerate().map(|(i, &low)| low | ((i as u64 + 1) << 40)).collect();
            for &k in &keys {
                prop_assert!(table.insert(k));
            }
            table.grow(table.slots() * factor * ROOMY_LOAD_EIGHTHS / 8);
            prop_assert_eq!(table.len(), keys.len());
            for &k in &keys {
                prop_assert!(table.contains(k), "key {:#x} lost growing to {} slots", k, table.slots());
            }
        }
    }

    #[test]
    fn a_probe_starts_at_a_cache_line_in_copies_and_grown_tables_too() {
        let mut table = IdTable::with_capacity(10, 1000);
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
    fn a_bound_beyond_memory_sizes_the_table_by_its_keys_alone() {
        // `max_ids` as large as a spec can set it: the table's size is never computed
        // from the bound's (it would overflow), only from the keys it holds.
        let mut table = IdTable::with_capacity(0, usize::MAX);
        assert_eq!(table.bytes(), 8 * 64);
        let keys: Vec<u64> = (1..=10_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        table.insert_new(&keys);
        assert_eq!(table.bytes(), 8 << 15, "half full at most below the bound");
        assert!(keys.iter().all(|&k| table.contains(k)));
    }

    #[test]
    fn zero_is_a_key_like_any_other() {
        let mut table = IdTable::with_capacity(0, 10);
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
        let mut table = IdTable::with_capacity(10, 1_000_000);
        let small = table.bytes();
        // A bound of a million keys: 2^21 slots (16 MiB) hold them at most three-quarters
        // full. Below that size the table doubles at half full (2^20 slots take 524 288
        // keys), at that size it fills to three-quarters and no further doubling comes.
        let mut million = IdTable::with_capacity(0, 1_000_000);
        let keys: Vec<u64> = (1..=1_200_000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        for (n, &k) in keys.iter().enumerate() {
            assert!(million.insert(k));
            match n + 1 {
                524_288 => assert_eq!(million.bytes(), 8 << 20),
                524_289 | 1_000_000 | 1_200_000 => assert_eq!(million.bytes(), 8 << 21),
                _ => {}
            }
        }
        // Past the bound's three-quarters it doubles all the same (the bound is the
        // caller's to keep).
        let mut past = IdTable::with_capacity(0, 1000);
        for &k in &keys[..1537] {
            past.insert(k);
        }
        assert_eq!(past.bytes(), 8 << 12);
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
