//! Exponential backoff with jitter, shared by the ClickHouse sink and the notifier.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How retries are spaced: the n-th wait is `initial * 2^n`, capped at `max`, with a random
/// part (between half and all of it) so that many clients do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// First wait, ms.
    #[serde(default = "default_initial_ms")]
    pub initial_ms: u64,
    /// Longest wait, ms.
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
}

fn default_initial_ms() -> u64 {
    100
}

fn default_max_ms() -> u64 {
    5_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_ms: default_initial_ms(),
            max_ms: default_max_ms(),
        }
    }
}

impl RetryPolicy {
    /// A fresh backoff sequence.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: *self,
            attempt: 0,
        }
    }
}

/// One sequence of waits.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    /// Attempts made so far (waits handed out).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .policy
            .initial_ms
            .max(1)
            .saturating_mul(1u64 << self.attempt.min(32))
            .min(self.policy.max_ms.max(1));
        self.attempt = self.attempt.saturating_add(1);
        let ms = rand::rng().random_range(ceiling.div_ceil(2)..=ceiling);
        Duration::from_millis(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap_with_jitter() {
        let mut b = RetryPolicy {
            initial_ms: 100,
            max_ms: 1_000,
        }
        .backoff();
        let ranges = [
            (50, 100),
            (100, 200),
            (200, 400),
            (400, 800),
            (500, 1000),
            (500, 1000),
        ];
        for (lo, hi) in ranges {
            let d = b.next_delay().as_millis() as u64;
            assert!((lo..=hi).contains(&d), "{d} not in {lo}..={hi}");
        }
        assert_eq!(b.attempts(), 6);
    }
}
