//! Every counter and gauge of the processor runtime, in one place.
//!
//! Plain atomics updated once per batch (not per event), read through
//! [`Metrics::snapshot`] by whoever exposes them (`/metrics`, logs, benchmarks).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Live counters of one processor.
#[derive(Debug, Default)]
pub struct Metrics {
    events_in: AtomicU64,
    results_out: AtomicU64,
    alerts_out: AtomicU64,
    insights_out: AtomicU64,
    late_events: AtomicU64,
    dead_letters: AtomicU64,
    watermark_delay_ms: AtomicI64,
    batches: AtomicU64,
    batch_latency_us_total: AtomicU64,
    batch_latency_us_max: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_bytes_last: AtomicU64,
    checkpoint_us_last: AtomicU64,
    restored_partitions: AtomicU64,
}

/// A copy of [`Metrics`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Records read from the events topic (decoded or not).
    pub events_in: u64,
    /// `WindowResult` records written.
    pub results_out: u64,
    /// `Alert` records written (firing and resolved).
    pub alerts_out: u64,
    /// `Insight` records written.
    pub insights_out: u64,
    /// Events that arrived after their windows closed (written to the late topic).
    pub late_events: u64,
    /// Records that could not be decoded (written to the dead-letter topic).
    pub dead_letters: u64,
    /// Wall clock minus the merged event-time watermark, ms (how far results lag).
    pub watermark_delay_ms: i64,
    /// Batches processed.
    pub batches: u64,
    /// Sum of batch latencies (poll return to outputs durable), µs.
    pub batch_latency_us_total: u64,
    /// Largest batch latency, µs.
    pub batch_latency_us_max: u64,
    /// Partition checkpoints written.
    pub checkpoints: u64,
    /// Bytes of the last checkpoint round (all partitions).
    pub checkpoint_bytes_last: u64,
    /// Duration of the last checkpoint round, µs.
    pub checkpoint_us_last: u64,
    /// Partitions whose state came from a checkpoint.
    pub restored_partitions: u64,
}

impl Metrics {
    pub(crate) fn batch(&self, events: u64, results: u64, late: u64, dead: u64, latency_us: u64) {
        self.events_in.fetch_add(events, Relaxed);
        self.results_out.fetch_add(results, Relaxed);
        self.late_events.fetch_add(late, Relaxed);
        self.dead_letters.fetch_add(dead, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.batch_latency_us_total.fetch_add(latency_us, Relaxed);
        self.batch_latency_us_max.fetch_max(latency_us, Relaxed);
    }

    pub(crate) fn derived(&self, alerts: u64, insights: u64) {
        self.alerts_out.fetch_add(alerts, Relaxed);
        self.insights_out.fetch_add(insights, Relaxed);
    }

    pub(crate) fn watermark_delay(&self, ms: i64) {
        self.watermark_delay_ms.store(ms, Relaxed);
    }

    pub(crate) fn checkpoint_round(&self, partitions: u64, bytes: u64, us: u64) {
        self.checkpoints.fetch_add(partitions, Relaxed);
        self.checkpoint_bytes_last.store(bytes, Relaxed);
        self.checkpoint_us_last.store(us, Relaxed);
    }

    pub(crate) fn restored(&self) {
        self.restored_partitions.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            events_in: self.events_in.load(Relaxed),
            results_out: self.results_out.load(Relaxed),
            alerts_out: self.alerts_out.load(Relaxed),
            insights_out: self.insights_out.load(Relaxed),
            late_events: self.late_events.load(Relaxed),
            dead_letters: self.dead_letters.load(Relaxed),
            watermark_delay_ms: self.watermark_delay_ms.load(Relaxed),
            batches: self.batches.load(Relaxed),
            batch_latency_us_total: self.batch_latency_us_total.load(Relaxed),
            batch_latency_us_max: self.batch_latency_us_max.load(Relaxed),
            checkpoints: self.checkpoints.load(Relaxed),
            checkpoint_bytes_last: self.checkpoint_bytes_last.load(Relaxed),
            checkpoint_us_last: self.checkpoint_us_last.load(Relaxed),
            restored_partitions: self.restored_partitions.load(Relaxed),
        }
    }
}
