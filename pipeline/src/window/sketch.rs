//! Mergeable sketches for the two aggregates that cannot be exact in bounded memory.
//!
//! - [`Hll`]: HyperLogLog with 2^12 registers for `count_distinct`; standard error
//!   1.04/√4096 ≈ 1.6 % (linear counting below 2.5·m for small sets, which is exact-ish).
//! - [`DdSketch`]: DDSketch for `quantile` with relative accuracy 1 %: the returned value is
//!   within 1 % of the true quantile's value.
//!
//! Both hash and bucket deterministically (no random seeds), so a replay produces the same
//! sketch bytes and the same results.
//!
//! In memory both are arrays (HLL registers sparse then dense, DDSketch buckets one
//! contiguous index range), because every event of a hopping window updates one sketch
//! per window it belongs to. On the wire (checkpoints) both are still what the first
//! version wrote, a map of the non-empty registers/buckets in index order: the array
//! forms serialize to exactly those bytes, so checkpoints written before and after read
//! back the same.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::ids::hash64;

const HLL_P: u32 = 12;
const HLL_M: usize = 1 << HLL_P;
/// Sparse registers past this many become the dense array: the sparse form then takes as
/// much memory (4 bytes an entry) and inserts cost a shift of the tail.
const HLL_SPARSE_MAX: usize = HLL_M / 4;

/// HyperLogLog with fixed precision. Stored sparsely until dense is smaller.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "BTreeMap<u16, u8>")]
pub struct Hll {
    registers: Registers,
}

#[derive(Debug, Clone)]
enum Registers {
    /// (register index, rank) of the non-zero registers, ordered by index.
    Sparse(Vec<(u16, u8)>),
    /// Every register's rank, 0 = empty.
    Dense(Box<[u8; HLL_M]>),
}

impl Default for Hll {
    fn default() -> Self {
        Hll {
            registers: Registers::Sparse(Vec::new()),
        }
    }
}

impl Hll {
    pub fn insert(&mut self, item: &[u8]) {
        self.insert_register(Self::register(item));
    }

    /// The (register, rank) `item` sets: computed once per event, applied to each of the
    /// event's windows with [`Hll::insert_register`].
    pub fn register(item: &[u8]) -> (u16, u8) {
        let h = hash64(item);
        let idx = (h >> (64 - HLL_P)) as u16;
        let rest = (h << HLL_P) | (1 << (HLL_P - 1));
        (idx, rest.leading_zeros() as u8 + 1)
    }

    /// Inserts an item by its [`Hll::register`].
    pub fn insert_register(&mut self, (idx, rank): (u16, u8)) {
        self.raise(idx, rank);
    }

    /// Sets register `idx` to at least `rank` (> 0).
    fn raise(&mut self, idx: u16, rank: u8) {
        match &mut self.registers {
            Registers::Dense(regs) => {
                let r = &mut regs[usize::from(idx)];
                *r = (*r).max(rank);
            }
            Registers::Sparse(entries) => match entries.binary_search_by_key(&idx, |(i, _)| *i) {
                Ok(at) => entries[at].1 = entries[at].1.max(rank),
                Err(at) => {
                    entries.insert(at, (idx, rank));
                    if entries.len() > HLL_SPARSE_MAX {
                        self.densify();
                    }
                }
            },
        }
    }

    fn densify(&mut self) {
        if let Registers::Sparse(entries) = &self.registers {
            let mut regs = Box::new([0u8; HLL_M]);
            for (i, r) in entries {
                regs[usize::from(*i)] = *r;
            }
            self.registers = Registers::Dense(regs);
        }
    }

    /// The non-zero registers as (index, rank), in index order.
    fn nonzero(&self) -> impl Iterator<Item = (u16, u8)> + '_ {
        let (sparse, dense) = match &self.registers {
            Registers::Sparse(e) => (Some(e.iter().copied()), None),
            Registers::Dense(regs) => (
                None,
                Some(
                    regs.iter()
                        .enumerate()
                        .filter(|(_, r)| **r != 0)
                        // Indexes of a 4096-entry array fit in u16.
                        .map(|(i, r)| (i as u16, *r)),
                ),
            ),
        };
        sparse
            .into_iter()
            .flatten()
            .chain(dense.into_iter().flatten())
    }

    fn nonzero_len(&self) -> usize {
        match &self.registers {
            Registers::Sparse(e) => e.len(),
            Registers::Dense(regs) => regs.iter().filter(|r| **r != 0).count(),
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        if let Registers::Dense(theirs) = &other.registers {
            self.densify();
            if let Registers::Dense(mine) = &mut self.registers {
                for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                    *m = (*m).max(*t);
                }
                return;
            }
        }
        for (i, r) in other.nonzero() {
            self.raise(i, r);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = HLL_M as f64;
        let mut nonzero = 0usize;
        // Summed in index order, as the first (map) version did, so estimates are
        // bit-for-bit what they were.
        let sum: f64 = self
            .nonzero()
            .map(|(_, r)| {
                nonzero += 1;
                2f64.powi(-i32::from(r))
            })
            .sum::<f64>();
        let zeros = HLL_M - nonzero;
        let sum = sum + zeros as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            // Linear counting is far more accurate for small cardinalities.
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// Written as the map of non-zero registers the first version stored.
impl Serialize for Hll {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.nonzero_len()))?;
        for (i, r) in self.nonzero() {
            map.serialize_entry(&i, &r)?;
        }
        map.end()
    }
}

impl TryFrom<BTreeMap<u16, u8>> for Hll {
    type Error = String;

    fn try_from(map: BTreeMap<u16, u8>) -> Result<Self, String> {
        let mut h = Hll::default();
        for (i, r) in map {
            if usize::from(i) >= HLL_M {
                return Err(format!(
                    "HyperLogLog register index {i} is out of range (there are {HLL_M} registers)"
                ));
            }
            if r != 0 {
                h.raise(i, r);
            }
        }
        Ok(h)
    }
}

/// Equal when the same registers are set, whichever form holds them.
impl PartialEq for Hll {
    fn eq(&self, other: &Self) -> bool {
        self.nonzero().eq(other.nonzero())
    }
}

impl Eq for Hll {}

/// Bucket counts of one sign. A contiguous array from the lowest to the highest non-empty
/// bucket (an insert is an index), unless that range would be wider than
/// [`DENSE_SPAN_MAX`] buckets (values spanning more than ~18 orders of magnitude), where a
/// sparse map bounds the memory instead.
#[derive(Debug, Clone)]
enum Buckets {
    Dense { offset: i32, counts: Vec<u64> },
    Sparse(BTreeMap<i32, u64>),
}

/// 2048 buckets of γ = 1.02/0.98 cover a ratio of e^(2048·0.04) ≈ 4·10^35 between the
/// smallest and largest value; 16 KiB at most per sign.
const DENSE_SPAN_MAX: i64 = 2048;

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Dense {
            offset: 0,
            counts: Vec::new(),
        }
    }
}

impl Buckets {
    /// Adds `n` (> 0) to bucket `key`.
    #[inline]
    fn add(&mut self, key: i32, n: u64) {
        match self {
            Buckets::Dense { offset, counts } => {
                let at = i64::from(key) - i64::from(*offset);
                if at >= 0 && (at as usize) < counts.len() {
                    counts[at as usize] += n;
                    return;
                }
                if counts.is_empty() {
                    *offset = key;
                    counts.push(n);
                    return;
                }
                let lo = i64::from(key).min(i64::from(*offset));
                let hi = i64::from(key).max(i64::from(*offset) + counts.len() as i64 - 1);
                if hi - lo + 1 > DENSE_SPAN_MAX {
                    let mut map: BTreeMap<i32, u64> = self.nonzero().collect();
                    *map.entry(key).or_insert(0) += n;
                    *self = Buckets::Sparse(map);
                } else if at < 0 {
                    // Below the range: shift the array up by the gap.
                    let gap = (-at) as usize;
                    counts.splice(0..0, std::iter::repeat_n(0, gap));
                    counts[0] = n;
                    *offset = key;
                } else {
                    counts.resize(at as usize + 1, 0);
                    counts[at as usize] = n;
                }
            }
            Buckets::Sparse(map) => *map.entry(key).or_insert(0) += n,
        }
    }

    /// Non-empty buckets as (key, count), ascending by key.
    fn nonzero(&self) -> Box<dyn DoubleEndedIterator<Item = (i32, u64)> + '_> {
        match self {
            Buckets::Dense { offset, counts } => {
                let offset = *offset;
                Box::new(
                    counts
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n != 0)
                        // The dense range is at most DENSE_SPAN_MAX wide from an i32 key.
                        .map(move |(i, n)| (offset + i as i32, *n)),
                )
            }
            Buckets::Sparse(map) => Box::new(map.iter().map(|(k, n)| (*k, *n))),
        }
    }

    fn nonzero_len(&self) -> usize {
        match self {
            Buckets::Dense { counts, .. } => counts.iter().filter(|n| **n != 0).count(),
            Buckets::Sparse(map) => map.values().filter(|n| **n != 0).count(),
        }
    }

    fn merge(&mut self, other: &Buckets) {
        for (k, n) in other.nonzero() {
            self.add(k, n);
        }
    }
}

impl PartialEq for Buckets {
    fn eq(&self, other: &Self) -> bool {
        self.nonzero().eq(other.nonzero())
    }
}

/// Written as the map of non-empty buckets the first version stored.
impl Serialize for Buckets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.nonzero_len()))?;
        for (k, n) in self.nonzero() {
            map.serialize_entry(&k, &n)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Buckets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<i32, u64>::deserialize(d)?;
        let mut b = Buckets::default();
        for (k, n) in map {
            if n != 0 {
                b.add(k, n);
            }
        }
        Ok(b)
    }
}

/// Where a value goes in a [`DdSketch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DdBucket {
    Zero,
    Positive(i32),
    Negative(i32),
}

/// DDSketch over positive and negative values with relative accuracy [`DdSketch::ALPHA`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DdSketch {
    positive: Buckets,
    negative: Buckets,
    zeros: u64,
    count: u64,
}

impl DdSketch {
    pub const ALPHA: f64 = 0.01;

    fn gamma_ln() -> f64 {
        ((1.0 + Self::ALPHA) / (1.0 - Self::ALPHA)).ln()
    }

    fn key(v: f64) -> i32 {
        (v.ln() / Self::gamma_ln()).ceil() as i32
    }

    fn value(key: i32) -> f64 {
        // The bucket's representative: 2·γ^k / (γ + 1), within ALPHA of every value in it.
        let gamma = Self::gamma_ln().exp();
        2.0 * (f64::from(key) * Self::gamma_ln()).exp() / (gamma + 1.0)
    }

    pub fn insert(&mut self, v: f64) {
        if let Some(b) = Self::bucket(v) {
            self.insert_bucket(b);
        }
    }

    /// The bucket `v` falls in (`None` for NaN and infinities, which are not counted):
    /// computed once per event (a logarithm), applied to each of the event's windows with
    /// [`DdSketch::insert_bucket`].
    pub fn bucket(v: f64) -> Option<DdBucket> {
        if !v.is_finite() {
            None
        } else if v.abs() < 1e-12 {
            Some(DdBucket::Zero)
        } else if v > 0.0 {
            Some(DdBucket::Positive(Self::key(v)))
        } else {
            Some(DdBucket::Negative(Self::key(-v)))
        }
    }

    /// Inserts a value by its [`DdSketch::bucket`].
    pub fn insert_bucket(&mut self, b: DdBucket) {
        self.count += 1;
        match b {
            DdBucket::Zero => self.zeros += 1,
            DdBucket::Positive(k) => self.positive.add(k, 1),
            DdBucket::Negative(k) => self.negative.add(k, 1),
        }
    }

    pub fn merge(&mut self, other: &DdSketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zeros += other.zeros;
        self.count += other.count;
    }

    /// The `q`-quantile (0..=1), or `None` when empty. Uses the lower rank ⌊q·(n−1)⌋.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Negative values, most negative first.
        for (k, n) in self.negative.nonzero().rev() {
            seen += n;
            if seen > rank {
                return Some(-Self::value(k));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0);
        }
        for (k, n) in self.positive.nonzero() {
            seen += n;
            if seen > rank {
                return Some(Self::value(k));
            }
        }
        self.positive
            .nonzero()
            .next_back()
            .map(|(k, _)| Self::value(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hll_is_within_its_stated_error() {
        for n in [0usize, 1, 10, 1_000, 20_000, 200_000] {
            let mut a = Hll::default();
            let mut b = Hll::default();
            for i in 0..n {
                let key = format!("user-{i}");
                // Half in each, with duplicates, then merged.
                if i % 2 == 0 {
                    a.insert(key.as_bytes())
                } else {
                    b.insert(key.as_bytes())
                }
                a.insert(format!("user-{}", i / 2).as_bytes());
            }
            a.merge(&b);
            let est = a.estimate();
            let err = if n == 0 {
                est
            } else {
                (est - n as f64).abs() / n as f64
            };
            // 3 standard errors.
            assert!(err <= 0.05, "n={n} estimate={est}");
        }
    }

    #[test]
    fn ddsketch_is_within_relative_accuracy() {
        let mut values: Vec<f64> = (1..=10_000)
            .map(|i| (i as f64 * 0.37).powf(1.3) - 500.0)
            .collect();
        let mut s = DdSketch::default();
        let mut t = DdSketch::default();
        for (i, v) in values.iter().enumerate() {
            if i % 3 == 0 {
                s.insert(*v)
            } else {
                t.insert(*v)
            }
        }
        s.merge(&t);
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let exact = values[(q * (values.len() - 1) as f64).floor() as usize];
            let est = s.quantile(q).unwrap();
            assert!(
                (est - exact).abs() <= DdSketch::ALPHA * exact.abs() + 1e-9,
                "q={q} exact={exact} est={est}"
            );
        }
        assert_eq!(DdSketch::default().quantile(0.5), None);
    }
    /// The first version's sketches (maps), kept here as the reference the array forms
    /// must agree with: same checkpoint bytes, same results.
    mod reference {
        use std::collections::BTreeMap;

        use serde::Serialize;

        use crate::ids::hash64;

        #[derive(Default, Serialize)]
        pub struct Hll {
            pub registers: BTreeMap<u16, u8>,
        }

        impl Hll {
            pub fn insert(&mut self, item: &[u8]) {
                let h = hash64(item);
                let idx = (h >> (64 - super::HLL_P)) as u16;
                let rest = (h << super::HLL_P) | (1 << (super::HLL_P - 1));
                let rank = rest.leading_zeros() as u8 + 1;
                let r = self.registers.entry(idx).or_insert(0);
                *r = (*r).max(rank);
            }

            pub fn estimate(&self) -> f64 {
                let m = super::HLL_M as f64;
                let zeros = super::HLL_M - self.registers.len();
                let sum: f64 = self
                    .registers
                    .values()
                    .map(|r| 2f64.powi(-i32::from(*r)))
                    .sum::<f64>()
                    + zeros as f64;
                let alpha = 0.7213 / (1.0 + 1.079 / m);
                let raw = alpha * m * m / sum;
                if raw <= 2.5 * m && zeros > 0 {
                    m * (m / zeros as f64).ln()
                } else {
                    raw
                }
            }
        }

        #[derive(Default, Serialize)]
        pub struct DdSketch {
            pub positive: BTreeMap<i32, u64>,
            pub negative: BTreeMap<i32, u64>,
            pub zeros: u64,
            pub count: u64,
        }

        impl DdSketch {
            pub fn insert(&mut self, v: f64) {
                if !v.is_finite() {
                    return;
                }
                self.count += 1;
                if v.abs() < 1e-12 {
                    self.zeros += 1;
                } else if v > 0.0 {
                    *self.positive.entry(super::DdSketch::key(v)).or_insert(0) += 1;
                } else {
                    *self.negative.entry(super::DdSketch::key(-v)).or_insert(0) += 1;
                }
            }
        }
    }

    #[test]
    fn hll_keeps_the_map_format_and_estimates_through_sparse_and_dense() {
        // 0..3000 distinct items crosses from sparse to dense registers on the way.
        let mut mine = Hll::default();
        let mut old = reference::Hll::default();
        for i in 0..3000 {
            let item = format!("user-{i}");
            mine.insert(item.as_bytes());
            old.insert(item.as_bytes());
            if i % 97 == 0 || i == 2999 {
                assert_eq!(mine.estimate().to_bits(), old.estimate().to_bits(), "i={i}");
                let bytes = postcard::to_allocvec(&mine).unwrap();
                assert_eq!(bytes, postcard::to_allocvec(&old).unwrap(), "i={i}");
                let back: Hll = postcard::from_bytes(&bytes).unwrap();
                assert_eq!(back, mine);
            }
        }
        assert!(matches!(mine.registers, Registers::Dense(_)));
        // A sparse and a dense sketch of the same items are equal and merge alike.
        let mut sparse = Hll::default();
        sparse.insert(b"x");
        let mut dense = Hll::default();
        dense.insert(b"x");
        dense.densify();
        assert_eq!(sparse, dense);
        let mut a = sparse.clone();
        a.merge(&mine);
        let mut b = mine.clone();
        b.merge(&sparse);
        assert_eq!(a, b);
        assert_eq!(a.estimate().to_bits(), b.estimate().to_bits());
    }

    #[test]
    fn hll_refuses_a_register_index_out_of_range() {
        let bad: BTreeMap<u16, u8> = BTreeMap::from([(HLL_M as u16, 3)]);
        let bytes = postcard::to_allocvec(&bad).unwrap();
        let err = postcard::from_bytes::<Hll>(&bytes).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");
    }

    #[test]
    fn ddsketch_keeps_the_map_format_and_answers_of_the_first_version() {
        let mut rng_state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng_state = rng_state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (rng_state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut mine = DdSketch::default();
        let mut old = reference::DdSketch::default();
        for i in 0..5000 {
            // Mixed signs and zeros, values from 1e-3 to 1e6 in both directions.
            let v = match i % 7 {
                0 => 0.0,
                1 | 2 => -(10f64.powf(next() * 9.0 - 3.0)),
                _ => 10f64.powf(next() * 9.0 - 3.0),
            };
            mine.insert(v);
            old.insert(v);
        }
        let bytes = postcard::to_allocvec(&mine).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
        let back: DdSketch = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, mine);
        for q in [0.0, 0.1, 0.5, 0.95, 1.0] {
            assert_eq!(back.quantile(q), mine.quantile(q));
        }
    }

    #[test]
    fn ddsketch_values_spanning_too_wide_a_range_stay_within_accuracy() {
        // 3e-10..3e100 is far wider than the dense range: the sketch goes sparse.
        let values: Vec<f64> = (-10..=100).map(|e| 3.0 * 10f64.powi(e)).collect();
        let mut s = DdSketch::default();
        for v in values.iter().rev() {
            s.insert(*v);
        }
        assert!(matches!(s.positive, Buckets::Sparse(_)));
        for q in [0.0, 0.3, 0.5, 0.77, 1.0] {
            let exact = values[(q * (values.len() - 1) as f64).floor() as usize];
            let est = s.quantile(q).unwrap();
            assert!(
                (est - exact).abs() <= DdSketch::ALPHA * exact,
                "q={q} {exact} {est}"
            );
        }
        // Equal to the same values inserted into a sketch that never was dense.
        let mut t = DdSketch {
            positive: Buckets::Sparse(BTreeMap::new()),
            ..DdSketch::default()
        };
        for v in &values {
            t.insert(*v);
        }
        assert_eq!(s, t);
    }
}
