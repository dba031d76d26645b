//! The sink's counters and flush-latency histogram, shared with whoever reports them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::store::Rows;

/// Upper bounds (seconds) of the flush latency histogram's buckets: a flush is one insert
/// and one commit, from milliseconds on a quiet store to a minute of retries.
pub const BATCH_LATENCY_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counters of one sink, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    pub(super) records_in: AtomicU64,
    pub(super) rows_out: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) batch_latency_us_sum: AtomicU64,
    pub(super) batch_latency_us_max: AtomicU64,
    /// Flushes per latency bucket (not cumulative); the last slot is over the last bound.
    pub(super) batch_latency_buckets: [AtomicU64; BATCH_LATENCY_BUCKETS.len() + 1],
    pub(super) errors: AtomicU64,
    pub(super) poll_errors: AtomicU64,
    pub(super) flush_errors: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) buffered_rows: AtomicU64,
    /// Rows acknowledged per table; updated once per flush.
    pub(super) table_rows: Mutex<BTreeMap<String, u64>>,
    /// `late_events` rows acknowledged per aggregate (`rule/<name>` for a rule).
    pub(super) late_rows: Mutex<BTreeMap<String, u64>>,
    /// Committed offset (next to read) per topic and partition; updated once per flush.
    pub(super) committed: Mutex<BTreeMap<(String, u32), u64>>,
}

/// The flush latency distribution: cumulative counts per bucket of
/// [`BATCH_LATENCY_BUCKETS`], plus the sum and count of all flushes.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyHistogram {
    /// `(upper bound in seconds, flushes that took at most that long)`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

/// A snapshot of [`SinkMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// Records read from the log.
    pub records_in: u64,
    /// Rows acknowledged by the store.
    pub rows_out: u64,
    /// Flushes completed (writes acknowledged and offsets committed).
    pub batches: u64,
    /// Sum of flush latencies (first write to commit), µs.
    pub batch_latency_us_sum: u64,
    /// Longest flush, µs.
    pub batch_latency_us_max: u64,
    /// Failed writes, commits or polls.
    pub errors: u64,
    /// Failed polls (part of `errors`).
    pub poll_errors: u64,
    /// Failed writes and commits (part of `errors`).
    pub flush_errors: u64,
    /// Retries after such failures.
    pub retries: u64,
    /// Records turned into dead letters by this sink.
    pub dead_lettered: u64,
    /// Rows buffered now.
    pub buffered_rows: u64,
}

impl SinkMetrics {
    /// The counters now.
    pub fn snapshot(&self) -> SinkStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SinkStats {
            records_in: get(&self.records_in),
            rows_out: get(&self.rows_out),
            batches: get(&self.batches),
            batch_latency_us_sum: get(&self.batch_latency_us_sum),
            batch_latency_us_max: get(&self.batch_latency_us_max),
            errors: get(&self.errors),
            poll_errors: get(&self.poll_errors),
            flush_errors: get(&self.flush_errors),
            retries: get(&self.retries),
            dead_lettered: get(&self.dead_lettered),
            buffered_rows: get(&self.buffered_rows),
        }
    }

    /// Rows acknowledged per table (`events`, `agg_<name>`, ...), by table name.
    pub fn rows_by_table(&self) -> Vec<(String, u64)> {
        let tables = self.table_rows.lock().unwrap_or_else(|p| p.into_inner());
        tables.iter().map(|(t, n)| (t.clone(), *n)).collect()
    }

    /// Late events stored per aggregate (`rule/<name>` for a rule), by name. A record
    /// stored again after a crash counts again; the table keeps it once.
    pub fn late_by_aggregate(&self) -> Vec<(String, u64)> {
        let late = self.late_rows.lock().unwrap_or_else(|p| p.into_inner());
        late.iter().map(|(a, n)| (a.clone(), *n)).collect()
    }

    /// The committed offset (next record to read) of every partition the sink committed.
    pub fn committed(&self) -> Vec<(String, u32, u64)> {
        let committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        committed
            .iter()
            .map(|((topic, partition), offset)| (topic.clone(), *partition, *offset))
            .collect()
    }

    /// The flush latency histogram.
    pub fn batch_latency(&self) -> LatencyHistogram {
        let mut cumulative = 0;
        let buckets = BATCH_LATENCY_BUCKETS
            .iter()
            .zip(&self.batch_latency_buckets)
            .map(|(&bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (bound, cumulative)
            })
            .collect();
        let over = self.batch_latency_buckets[BATCH_LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        LatencyHistogram {
            buckets,
            sum_seconds: self.batch_latency_us_sum.load(Ordering::Relaxed) as f64 / 1e6,
            // From the buckets, so the count always matches them in one read.
            count: cumulative + over,
        }
    }

    pub(super) fn flushed(&self, us: u64, tables: &[(String, u64)]) {
        let seconds = us as f64 / 1e6;
        let slot = BATCH_LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BATCH_LATENCY_BUCKETS.len());
        self.batch_latency_buckets[slot].fetch_add(1, Ordering::Relaxed);
        let mut rows = self.table_rows.lock().unwrap_or_else(|p| p.into_inner());
        for (table, n) in tables {
            *rows.entry(table.clone()).or_default() += n;
        }
    }

    /// Counts a flush's `late_events` rows, per aggregate ([`late_per_aggregate`]).
    pub(super) fn late_stored(&self, late: &[(String, u64)]) {
        let mut rows = self.late_rows.lock().unwrap_or_else(|p| p.into_inner());
        for (aggregate, n) in late {
            *rows.entry(aggregate.clone()).or_default() += n;
        }
    }
}

/// `late_events` rows of `rows` per aggregate.
pub(super) fn late_per_aggregate(rows: &Rows) -> Vec<(String, u64)> {
    let mut out: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows.late_events {
        *out.entry(r.aggregate.as_str()).or_default() += 1;
    }
    out.into_iter().map(|(a, n)| (a.to_owned(), n)).collect()
}

/// Rows per table of `rows`, tables without rows left out.
pub(super) fn rows_per_table(rows: &Rows) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = [
        ("events", rows.events.len()),
        ("alerts", rows.alerts.len()),
        ("insights", rows.insights.len()),
        ("dead_letters", rows.dead_letters.len()),
        ("late_events", rows.late_events.len()),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_owned(), n as u64))
    .collect();
    out.extend(
        rows.aggregates
            .values()
            .map(|a| (a.spec().table(), a.len() as u64)),
    );
    out.retain(|(_, n)| *n > 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn flush_latencies_land_in_cumulative_buckets_and_rows_add_up_per_table() {
        let m = SinkMetrics::default();
        m.flushed(3_000, &[("events".into(), 10)]);
        // A bound is inclusive: exactly 5 ms is in the 5 ms bucket.
        m.flushed(5_000, &[("events".into(), 5), ("agg_runs".into(), 2)]);
        m.flushed(700_000, &[]);
        m.flushed(120_000_000, &[]);
        let h = m.batch_latency();
        assert_eq!(h.count, 4);
        assert_eq!(h.buckets.len(), BATCH_LATENCY_BUCKETS.len());
        assert_eq!(h.buckets[0], (0.005, 2));
        assert_eq!(h.buckets[6], (0.5, 2));
        assert_eq!(h.buckets[7], (1.0, 3));
        assert_eq!(
            h.buckets.last(),
            Some(&(60.0, 3)),
            "two minutes is over every bound"
        );
        assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
        assert_eq!(
            m.rows_by_table(),
            [("agg_runs".to_owned(), 2), ("events".to_owned(), 15)]
        );
    }

    #[test]
    fn late_rows_add_up_per_aggregate() {
        let late = |aggregate: &str, id: &str| crate::rows::LateEventRow {
            id: id.into(),
            source: "s".into(),
            kind: "k".into(),
            subject: "x".into(),
            time: 0,
            received_at: 0,
            attr_keys: vec![],
            attr_values: vec![],
            value: None,
            payload: None,
            aggregate: aggregate.into(),
            window_start: None,
            window_end: None,
            late_by: None,
            late_id: format!("pipeline/late/{aggregate}/t/0/{id}"),
        };
        let rows = Rows {
            late_events: vec![late("a", "1"), late("rule/r", "1"), late("a", "2")],
            ..Rows::default()
        };
        let m = SinkMetrics::default();
        m.late_stored(&late_per_aggregate(&rows));
        m.late_stored(&late_per_aggregate(&Rows {
            late_events: vec![late("a", "3")],
            ..Rows::default()
        }));
        assert_eq!(
            m.late_by_aggregate(),
            [("a".to_owned(), 3), ("rule/r".to_owned(), 1)]
        );
        assert_eq!(rows_per_table(&rows), [("late_events".to_owned(), 3)]);
    }
}
