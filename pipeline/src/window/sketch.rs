//! Mergeable sketches for the two aggregates that cannot be exact in bounded memory.
//!
//! - [`Hll`]: HyperLogLog with 2^12 registers for `count_distinct`; standard error
//!   1.04/√4096 ≈ 1.6 % (linear counting below 2.5·m for small sets, which is exact-ish).
//! - [`DdSketch`]: DDSketch for `quantile` with relative accuracy 1 %: the returned value is
//!   within 1 % of the true quantile's value.
//!
//! Both hash and bucket deterministically (no random seeds), so a replay produces the same
//! sketch bytes and the same results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const HLL_P: u32 = 12;
const HLL_M: usize = 1 << HLL_P;

/// HyperLogLog with fixed precision. Stored sparsely until dense is smaller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Hll {
    /// Register index -> rank; at most `HLL_M` entries.
    registers: BTreeMap<u16, u8>,
}

impl Hll {
    pub fn insert(&mut self, item: &[u8]) {
        let h = hash64(item);
        let idx = (h >> (64 - HLL_P)) as u16;
        let rest = (h << HLL_P) | (1 << (HLL_P - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        let r = self.registers.entry(idx).or_insert(0);
        *r = (*r).max(rank);
    }

    pub fn merge(&mut self, other: &Hll) {
        for (i, r) in &other.registers {
            let mine = self.registers.entry(*i).or_insert(0);
            *mine = (*mine).max(*r);
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = HLL_M as f64;
        let zeros = HLL_M - self.registers.len();
        let sum: f64 = self
            .registers
            .values()
            .map(|r| 2f64.powi(-i32::from(*r)))
            .sum::<f64>()
            + zeros as f64;
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

/// DDSketch over positive and negative values with relative accuracy [`DdSketch::ALPHA`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DdSketch {
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
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
        if !v.is_finite() {
            return;
        }
        self.count += 1;
        if v.abs() < 1e-12 {
            self.zeros += 1;
        } else if v > 0.0 {
            *self.positive.entry(Self::key(v)).or_insert(0) += 1;
        } else {
            *self.negative.entry(Self::key(-v)).or_insert(0) += 1;
        }
    }

    pub fn merge(&mut self, other: &DdSketch) {
        for (k, n) in &other.positive {
            *self.positive.entry(*k).or_insert(0) += n;
        }
        for (k, n) in &other.negative {
            *self.negative.entry(*k).or_insert(0) += n;
        }
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
        for (k, n) in self.negative.iter().rev() {
            seen += n;
            if seen > rank {
                return Some(-Self::value(*k));
            }
        }
        seen += self.zeros;
        if seen > rank {
            return Some(0.0);
        }
        for (k, n) in &self.positive {
            seen += n;
            if seen > rank {
                return Some(Self::value(*k));
            }
        }
        self.positive.keys().next_back().map(|k| Self::value(*k))
    }
}

/// A fixed 64-bit hash (FNV-1a folded through a SplitMix finaliser): stable across runs
/// and platforms, unlike std's randomly seeded hasher.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
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
}
