//! Event-time progress: per-partition watermarks merged as the minimum.
//!
//! Each partition's watermark is the largest event time seen there minus the allowed
//! out-of-orderness. The merged watermark is the minimum over partitions, except that a
//! partition without events for `idle_timeout` stops holding it back — the one place the
//! pipeline looks at a clock, passed in explicitly so tests and replays control it.

use std::collections::BTreeMap;
use std::time::Duration;

/// Watermarks of the partitions one processor reads.
#[derive(Debug, Clone)]
pub struct Watermarks {
    max_out_of_orderness: i64,
    idle_timeout: Duration,
    /// partition -> (max event time, wall-clock time of its last event).
    partitions: BTreeMap<u32, (i64, std::time::Instant)>,
    merged: i64,
}

impl Watermarks {
    pub fn new(max_out_of_orderness: Duration, idle_timeout: Duration) -> Self {
        Watermarks {
            max_out_of_orderness: i64::try_from(max_out_of_orderness.as_micros())
                .unwrap_or(i64::MAX),
            idle_timeout,
            partitions: BTreeMap::new(),
            merged: i64::MIN,
        }
    }

    /// Registers a partition before its first event, so it holds the watermark back.
    pub fn assign(&mut self, partition: u32, now: std::time::Instant) {
        self.partitions.entry(partition).or_insert((i64::MIN, now));
    }

    /// Forgets a partition (revoked by a rebalance).
    pub fn revoke(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    /// Records an event time seen on `partition`.
    pub fn observe(&mut self, partition: u32, event_time: i64, now: std::time::Instant) {
        let entry = self.partitions.entry(partition).or_insert((i64::MIN, now));
        entry.0 = entry.0.max(event_time);
        entry.1 = now;
    }

    /// The merged watermark (µs), never moving backwards.
    pub fn current(&mut self, now: std::time::Instant) -> i64 {
        let active = self
            .partitions
            .values()
            .filter(|(_, last)| now.saturating_duration_since(*last) < self.idle_timeout)
            .map(|(max, _)| max.saturating_sub(self.max_out_of_orderness));
        let candidate = match active.min() {
            Some(m) => m,
            // Everything idle: the furthest partition decides.
            None => self
                .partitions
                .values()
                .map(|(max, _)| max.saturating_sub(self.max_out_of_orderness))
                .max()
                .unwrap_or(i64::MIN),
        };
        self.merged = self.merged.max(candidate);
        self.merged
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the tests play the runtime, which hands in the clock
mod tests {
    use std::time::{Duration, Instant};

    use super::Watermarks;

    #[test]
    fn minimum_over_partitions_until_one_goes_idle() {
        let t0 = Instant::now();
        let mut w = Watermarks::new(Duration::from_micros(10), Duration::from_secs(30));
        w.assign(0, t0);
        w.assign(1, t0);
        w.observe(0, 1_000, t0);
        // Partition 1 has seen nothing: it holds everything back.
        assert_eq!(w.current(t0), i64::MIN);
        w.observe(1, 500, t0);
        assert_eq!(w.current(t0), 490);
        w.observe(0, 2_000, t0 + Duration::from_secs(40));
        // Partition 1 idle for 40 s > 30 s: no longer holds the watermark back.
        assert_eq!(w.current(t0 + Duration::from_secs(40)), 1_990);
        // It never goes backwards, even when the idle partition wakes up behind.
        w.observe(1, 600, t0 + Duration::from_secs(41));
        assert_eq!(w.current(t0 + Duration::from_secs(41)), 1_990);
        w.revoke(1);
        assert_eq!(w.current(t0 + Duration::from_secs(41)), 1_990);
    }
}
