//! Every counter and gauge of the processor runtime, in one place.
//!
//! Plain atomics updated once per batch (not per event), read through
//! [`Metrics::snapshot`] and [`Metrics::partitions`] by whoever exposes them (`/metrics`,
//! logs, benchmarks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// Sources whose repeats are counted each on its own (`helios_pipeline_duplicates_total`,
/// `GET /v1/sources`); the repeats of any further source count under [`OTHER_SOURCES`].
pub const DUPLICATE_SOURCES: usize = 1000;

/// The entry that counts the repeats of sources past the first [`DUPLICATE_SOURCES`]. Not
/// a valid CloudEvents `source` (which is a URI-reference) nor a spec source's name.
pub const OTHER_SOURCES: &str = "<other sources>";

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
    commit_errors: AtomicU64,
    fatal_errors: AtomicU64,
    watermark_marks: AtomicU64,
    /// Identities remembered for de-duplication now, all assigned partitions.
    dedupe_ids: AtomicU64,
    /// Buckets of identities forgotten early at the `max_ids` bound.
    dedupe_evicted: AtomicU64,
    repartitioned_out: AtomicU64,
    repartitioned_in: AtomicU64,
    repartition_repeats: AtomicU64,
    /// Repeats dropped, by source (a handful of sources; updated once per batch).
    duplicates: RwLock<BTreeMap<String, u64>>,
    /// What each operator refused at its bounds, by operator (`aggregate/<name>`, ...).
    refused: RwLock<BTreeMap<String, u64>>,
    /// Per operator (`aggregate/<name>`, `rule/<name>`): its state in its fullest
    /// assigned partition, and its bound (updated once per batch).
    operator_state: RwLock<BTreeMap<String, (u64, u64)>>,
    /// Per assigned partition; the map changes only on assignment changes, the counters
    /// inside once per batch.
    partitions: RwLock<BTreeMap<u32, Arc<PartitionCounters>>>,
    /// Per assigned partition of a repartition topic: the next offset to process.
    repartition_positions: RwLock<BTreeMap<(String, u32), u64>>,
}

#[derive(Debug)]
struct PartitionCounters {
    events_in: AtomicU64,
    next_offset: AtomicU64,
    /// `i64::MIN` until the partition has a watermark.
    watermark_delay_ms: AtomicI64,
}

/// What one assigned partition of the events topic did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionSnapshot {
    pub partition: u32,
    /// Records read from this partition (decoded or not).
    pub events_in: u64,
    /// Offset of the next record to process: everything before it is processed and its
    /// outputs are durable. Log end minus this is the processor's lag.
    pub next_offset: u64,
    /// Wall clock minus this partition's watermark (its newest event time minus the
    /// allowed out-of-orderness) at its last batch, ms; `None` before its first event.
    pub watermark_delay_ms: Option<i64>,
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
    /// Failed commits of the group offsets (informational; checkpoints are the truth).
    pub commit_errors: u64,
    /// Times the processor stopped on an error.
    pub fatal_errors: u64,
    /// Watermark marks written into quiet partitions of the events topic.
    pub watermark_marks: u64,
    /// Identities remembered for de-duplication now.
    pub dedupe_ids: u64,
    /// Buckets of identities forgotten early because `[dedupe] max_ids` was reached.
    pub dedupe_evicted: u64,
    /// Events forwarded to repartition topics (for aggregates and rules not grouped by
    /// subject).
    pub repartitioned_out: u64,
    /// Forwarded events applied by the repartition stages.
    pub repartitioned_in: u64,
    /// Forwarded events written again after a crash of the events stage, and dropped.
    pub repartition_repeats: u64,
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

    pub(crate) fn duplicates(&self, by_source: &BTreeMap<String, u64>) {
        if by_source.is_empty() {
            return;
        }
        let mut all = self.duplicates.write().unwrap_or_else(|p| p.into_inner());
        for (source, n) in by_source {
            // A producer names its events' source (a CloudEvent's `source`): past the
            // first DUPLICATE_SOURCES, repeats count under one entry, so a producer that
            // varies it cannot grow this map, `/metrics` or `/v1/sources` without end.
            let counted = all.len() < DUPLICATE_SOURCES || all.contains_key(source);
            let key = if counted {
                source.as_str()
            } else {
                OTHER_SOURCES
            };
            match all.get_mut(key) {
                Some(count) => *count += n,
                None => {
                    all.insert(key.to_owned(), *n);
                }
            }
        }
    }

    /// Adds refusals at the operators' bounds, by operator (the spec's operators only).
    pub(crate) fn refused(&self, by_operator: &BTreeMap<String, u64>) {
        if by_operator.is_empty() {
            return;
        }
        let mut all = self.refused.write().unwrap_or_else(|p| p.into_inner());
        for (operator, n) in by_operator {
            *all.entry(operator.clone()).or_default() += n;
        }
    }

    /// Refusals at the operators' bounds so far, by operator.
    pub fn refused_by_operator(&self) -> BTreeMap<String, u64> {
        self.refused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn repartitioned(&self, out: u64, applied: u64, repeats: u64) {
        self.repartitioned_out.fetch_add(out, Relaxed);
        self.repartitioned_in.fetch_add(applied, Relaxed);
        self.repartition_repeats.fetch_add(repeats, Relaxed);
    }

    /// The state and bound of each operator of one stage, in its fullest partition.
    pub(crate) fn operator_state(&self, states: BTreeMap<String, (u64, u64)>) {
        self.operator_state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(states);
    }

    /// Each operator's state in its fullest assigned partition, and its bound.
    pub fn operator_states(&self) -> BTreeMap<String, (u64, u64)> {
        self.operator_state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn seen(&self, remembered: u64, evicted: u64) {
        self.dedupe_ids.store(remembered, Relaxed);
        self.dedupe_evicted.fetch_add(evicted, Relaxed);
    }

    /// Repeats dropped so far, by source.
    pub fn duplicates_by_source(&self) -> BTreeMap<String, u64> {
        self.duplicates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn marks_written(&self, n: u64) {
        self.watermark_marks.fetch_add(n, Relaxed);
    }

    pub(crate) fn commit_failed(&self) {
        self.commit_errors.fetch_add(1, Relaxed);
    }

    /// Counts a stop on an error (called by whoever runs the processor).
    pub fn record_fatal_error(&self) {
        self.fatal_errors.fetch_add(1, Relaxed);
    }

    /// Records one partition's progress after a batch: `events` more records read, the
    /// next offset to process, and its watermark delay (ms) if it has a watermark.
    pub(crate) fn partition(
        &self,
        partition: u32,
        events: u64,
        next_offset: u64,
        watermark_delay_ms: Option<i64>,
    ) {
        let known = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&partition)
            .cloned();
        let counters = known.unwrap_or_else(|| {
            self.partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(partition)
                .or_insert_with(|| {
                    Arc::new(PartitionCounters {
                        events_in: AtomicU64::new(0),
                        next_offset: AtomicU64::new(0),
                        watermark_delay_ms: AtomicI64::new(i64::MIN),
                    })
                })
                .clone()
        });
        counters.events_in.fetch_add(events, Relaxed);
        counters.next_offset.store(next_offset, Relaxed);
        if let Some(ms) = watermark_delay_ms {
            counters.watermark_delay_ms.store(ms, Relaxed);
        }
    }

    /// Forgets a revoked partition: its new owner reports it.
    pub(crate) fn forget_partition(&self, partition: u32) {
        self.partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
    }

    pub(crate) fn repartition_position(&self, topic: &str, partition: u32, next_offset: u64) {
        let mut all = self
            .repartition_positions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match all.get_mut(&(topic.to_owned(), partition)) {
            Some(at) => *at = next_offset,
            None => {
                all.insert((topic.to_owned(), partition), next_offset);
            }
        }
    }

    pub(crate) fn forget_repartition_partition(&self, topic: &str, partition: u32) {
        self.repartition_positions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(topic.to_owned(), partition));
    }

    /// The assigned partitions of repartition topics now: (topic, partition, next offset
    /// to process); log end minus it is the repartition stage's lag.
    pub fn repartition_positions(&self) -> Vec<(String, u32, u64)> {
        self.repartition_positions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect()
    }

    /// The assigned partitions now, by partition.
    pub fn partitions(&self) -> Vec<PartitionSnapshot> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(&partition, c)| {
                let delay = c.watermark_delay_ms.load(Relaxed);
                PartitionSnapshot {
                    partition,
                    events_in: c.events_in.load(Relaxed),
                    next_offset: c.next_offset.load(Relaxed),
                    watermark_delay_ms: (delay != i64::MIN).then_some(delay),
                }
            })
            .collect()
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
            commit_errors: self.commit_errors.load(Relaxed),
            fatal_errors: self.fatal_errors.load(Relaxed),
            watermark_marks: self.watermark_marks.load(Relaxed),
            dedupe_ids: self.dedupe_ids.load(Relaxed),
            dedupe_evicted: self.dedupe_evicted.load(Relaxed),
            repartitioned_out: self.repartitioned_out.load(Relaxed),
            repartitioned_in: self.repartitioned_in.load(Relaxed),
            repartition_repeats: self.repartition_repeats.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_report_events_position_and_watermark_delay_until_revoked() {
        let m = Metrics::default();
        m.partition(2, 5, 5, None);
        m.partition(0, 3, 10, Some(1_500));
        m.partition(2, 4, 9, Some(250));
        // A batch without a watermark keeps the last known delay.
        m.partition(0, 0, 10, None);
        assert_eq!(
            m.partitions(),
            [
                PartitionSnapshot {
                    partition: 0,
                    events_in: 3,
                    next_offset: 10,
                    watermark_delay_ms: Some(1_500),
                },
                PartitionSnapshot {
                    partition: 2,
                    events_in: 9,
                    next_offset: 9,
                    watermark_delay_ms: Some(250),
                },
            ]
        );
        m.forget_partition(0);
        assert_eq!(m.partitions().len(), 1);
        assert_eq!(m.partitions()[0].partition, 2);
    }

    #[test]
    fn repeats_are_counted_per_source_up_to_a_bound_and_the_rest_together() {
        let m = Metrics::default();
        let batch = |sources: std::ops::Range<usize>| -> BTreeMap<String, u64> {
            sources.map(|i| (format!("src-{i:05}"), 2)).collect()
        };
        m.duplicates(&batch(0..DUPLICATE_SOURCES));
        // A producer that names a new source in every event: one more entry, not many.
        m.duplicates(&batch(DUPLICATE_SOURCES..DUPLICATE_SOURCES + 5000));
        // Sources counted before keep their own count.
        m.duplicates(&batch(0..1));
        let counts = m.duplicates_by_source();
        assert_eq!(counts.len(), DUPLICATE_SOURCES + 1);
        assert_eq!(counts["src-00000"], 4);
        assert_eq!(counts[OTHER_SOURCES], 10_000);
        assert_eq!(
            counts.values().sum::<u64>(),
            2 * (DUPLICATE_SOURCES as u64 + 5000) + 2
        );
    }
}
