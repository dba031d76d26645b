//! Per-key rate limiting: one token bucket per key id, refilled at the sustained rate up
//! to the burst. Buckets exist only for keys that authenticated, so their number is
//! bounded by the key file.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so tests can pause and advance it instead of sleeping.
use tokio::time::Instant;

/// How many requests a key may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second; `0` turns rate limiting off.
    pub per_second: u32,
    /// Requests a key may make at once after being idle (at least 1).
    pub burst: u32,
}

impl Default for RateLimit {
    /// 2000/s with bursts of 4000: the ingest benchmark (`bench/ingest.sh`, batches of
    /// 1000 events, 8 in flight) makes about 500 requests/s at 490k events/s, so one
    /// client can ingest at full speed with 4x headroom, while a runaway script or a
    /// leaked key still cannot take the whole process for itself.
    fn default() -> Self {
        RateLimit {
            per_second: 2000,
            burst: 4000,
        }
    }
}

/// The buckets of every key seen.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one request from `key_id`'s bucket, or says how long until one is there.
    pub(crate) fn take(&self, key_id: &str, now: Instant) -> Result<(), Duration> {
        if self.limit.per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.limit.per_second);
        let burst = f64::from(self.limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = match buckets.get_mut(key_id) {
            Some(b) => b,
            None => buckets.entry(key_id.to_owned()).or_insert(Bucket {
                tokens: burst,
                at: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, never 0 (a client told `0` retries at once
/// and is refused again).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> Limiter {
        Limiter::new(RateLimit { per_second, burst })
    }

    #[test]
    fn a_burst_passes_then_requests_wait_for_the_refill() {
        let l = limiter(2, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.take("k", t0), Ok(()), "request {i} of the burst");
        }
        let wait = l.take("k", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.take("k", t1), Ok(()));
        assert!(l.take("k", t1).is_err());
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let l = limiter(1, 1);
        let t0 = Instant::now();
        assert_eq!(l.take("a", t0), Ok(()));
        assert!(l.take("a", t0).is_err());
        assert_eq!(l.take("b", t0), Ok(()));
    }

    #[test]
    fn an_idle_bucket_refills_to_the_burst_not_beyond() {
        let l = limiter(10, 2);
        let t0 = Instant::now();
        assert_eq!(l.take("k", t0), Ok(()));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(l.take("k", later), Ok(()));
        assert_eq!(l.take("k", later), Ok(()));
        assert!(l.take("k", later).is_err());
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let l = limiter(0, 0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(l.take("k", t0), Ok(()));
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
    }
}
