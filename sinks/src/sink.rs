//! The sink loop, shared by every store ([`crate::store::Store`]): one consumer-group
//! member reading the output topics and loading them into the store's tables.
//!
//! The loop: poll up to the room left in the buffer, decode each record into its table's
//! rows, and flush when the buffer holds `batch_rows` rows or its oldest row is
//! `batch_interval` old. A flush hands the rows to the store, and only when the store
//! acknowledged all of them commits the offsets past the flushed records. A failed write is
//! retried with exponential backoff and jitter, and while it fails the sink does not poll:
//! the buffer never grows past `max_buffered_rows`, the log keeps the records, and nothing
//! is dropped. A repeat after a crash or a retried write is harmless: rows carry the
//! records' deterministic ids and every table deduplicates by id (and version) on read.
//!
//! A record that cannot be decoded, or a window result that does not fit its aggregate's
//! table, is not skipped: it becomes a row of `dead_letters` (stage `sink/<store>`, the
//! original bytes, topic, partition and offset) and its offset is committed with the rest.
//!
//! On Kafka a member that does not poll for `max.poll.interval.ms` leaves its group; after
//! a long outage it rejoins and re-reads from the last commit, which the ids make harmless.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helios_log::{ConsumedRecord, ConsumerConfig, Log, LogConsumer, TopicPartition, TraceLinks};
use helios_schemas::{
    Alert, DeadLetter, EventCodec, Insight, RecordCodec, SchemaSource, WindowResult,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, warn};

use crate::backoff::RetryPolicy;
use crate::clickhouse::rows::{AggregateRows, DeadLetterRow};
use crate::error::{Result, SinkError};
use crate::store::{Rows, Store};

/// Which topic feeds which table. A `None` topic is not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkTopics {
    /// `Event`s into `events`.
    #[serde(default)]
    pub events: Option<String>,
    /// `WindowResult`s into `agg_<aggregate>`.
    #[serde(default)]
    pub aggregates: Option<String>,
    /// `Alert`s into `alerts`.
    #[serde(default)]
    pub alerts: Option<String>,
    /// `Insight`s into `insights`.
    #[serde(default)]
    pub insights: Option<String>,
    /// `DeadLetter`s into `dead_letters`.
    #[serde(default)]
    pub dead_letters: Option<String>,
}

impl Default for SinkTopics {
    fn default() -> Self {
        SinkTopics {
            events: Some("helios.events".into()),
            aggregates: Some("helios.aggregates".into()),
            alerts: Some("helios.alerts".into()),
            insights: Some("helios.insights".into()),
            dead_letters: Some("helios.dlq".into()),
        }
    }
}

impl SinkTopics {
    fn all(&self) -> Vec<&str> {
        [
            &self.events,
            &self.aggregates,
            &self.alerts,
            &self.insights,
            &self.dead_letters,
        ]
        .into_iter()
        .filter_map(|t| t.as_deref())
        .collect()
    }

    fn kind_of(&self, topic: &str) -> Option<TopicKind> {
        let is = |t: &Option<String>| t.as_deref() == Some(topic);
        if is(&self.events) {
            Some(TopicKind::Events)
        } else if is(&self.aggregates) {
            Some(TopicKind::Aggregates)
        } else if is(&self.alerts) {
            Some(TopicKind::Alerts)
        } else if is(&self.insights) {
            Some(TopicKind::Insights)
        } else if is(&self.dead_letters) {
            Some(TopicKind::DeadLetters)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicKind {
    Events,
    Aggregates,
    Alerts,
    Insights,
    DeadLetters,
}

/// How the sink batches and retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Consumer group; every sink process with the same group shares the partitions.
    #[serde(default = "default_group")]
    pub group: String,
    /// Topics to read.
    #[serde(default)]
    pub topics: SinkTopics,
    /// Flush once this many rows are buffered (ClickHouse prefers thousands per insert,
    /// and Parquet files of thousands of rows compress well).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// Flush once the oldest buffered row is this old, ms (about one insert per second).
    #[serde(default = "default_batch_interval_ms")]
    pub batch_interval_ms: u64,
    /// Upper bound on buffered rows; polling stops at this bound. At least `batch_rows`.
    #[serde(default = "default_max_buffered_rows")]
    pub max_buffered_rows: usize,
    /// Records asked for per poll.
    #[serde(default = "default_poll_max")]
    pub poll_max: usize,
    /// Spacing of retries of inserts and commits.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How often the store's upkeep (retention, compaction) runs, s.
    #[serde(default = "default_retention_every_s")]
    pub retention_every_s: u64,
}

fn default_group() -> String {
    "helios-sink".to_owned()
}
fn default_batch_rows() -> usize {
    5_000
}
fn default_batch_interval_ms() -> u64 {
    1_000
}
fn default_max_buffered_rows() -> usize {
    20_000
}
fn default_poll_max() -> usize {
    1_000
}
fn default_retention_every_s() -> u64 {
    3_600
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            group: default_group(),
            topics: SinkTopics::default(),
            batch_rows: default_batch_rows(),
            batch_interval_ms: default_batch_interval_ms(),
            max_buffered_rows: default_max_buffered_rows(),
            poll_max: default_poll_max(),
            retry: RetryPolicy::default(),
            retention_every_s: default_retention_every_s(),
        }
    }
}

impl SinkConfig {
    /// Checks the bounds without touching the network.
    pub fn validate(&self) -> Result<()> {
        if self.batch_rows == 0 || self.poll_max == 0 {
            return Err(SinkError::config(
                "batch_rows and poll_max must be positive",
                format!("batch_rows={} poll_max={}", self.batch_rows, self.poll_max),
                "use thousands of rows per batch",
            ));
        }
        if self.max_buffered_rows < self.batch_rows {
            return Err(SinkError::config(
                "max_buffered_rows is smaller than batch_rows",
                format!("{} < {}", self.max_buffered_rows, self.batch_rows),
                "raise max_buffered_rows to at least batch_rows",
            ));
        }
        if self.topics.all().is_empty() {
            return Err(SinkError::config(
                "the sink reads no topic",
                "",
                "name at least one topic",
            ));
        }
        Ok(())
    }
}

/// Decoders for the five record types; writer schemas are fetched from the registry.
#[derive(Debug)]
pub struct Decoders {
    events: EventCodec,
    windows: RecordCodec<WindowResult>,
    alerts: RecordCodec<Alert>,
    insights: RecordCodec<Insight>,
    dead_letters: RecordCodec<DeadLetter>,
}

impl Decoders {
    /// Decoders that look every writer schema id up in `source` (a registry never hands
    /// out id 0, which these decoders use as their own write id; they never write).
    pub fn new(source: Arc<dyn SchemaSource>) -> Self {
        Decoders {
            events: EventCodec::with_source(0, source.clone()),
            windows: RecordCodec::with_source(0, source.clone()),
            alerts: RecordCodec::with_source(0, source.clone()),
            insights: RecordCodec::with_source(0, source.clone()),
            dead_letters: RecordCodec::with_source(0, source),
        }
    }
}

/// Upper bounds (seconds) of the flush latency histogram's buckets: a flush is one insert
/// and one commit, from milliseconds on a quiet store to a minute of retries.
pub const BATCH_LATENCY_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counters of one sink, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    records_in: AtomicU64,
    rows_out: AtomicU64,
    batches: AtomicU64,
    batch_latency_us_sum: AtomicU64,
    batch_latency_us_max: AtomicU64,
    /// Flushes per latency bucket (not cumulative); the last slot is over the last bound.
    batch_latency_buckets: [AtomicU64; BATCH_LATENCY_BUCKETS.len() + 1],
    errors: AtomicU64,
    poll_errors: AtomicU64,
    flush_errors: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    buffered_rows: AtomicU64,
    /// Rows acknowledged per table; updated once per flush.
    table_rows: Mutex<BTreeMap<String, u64>>,
    /// Committed offset (next to read) per topic and partition; updated once per flush.
    committed: Mutex<BTreeMap<(String, u32), u64>>,
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

    fn flushed(&self, us: u64, tables: &[(String, u64)]) {
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
}

/// Rows per table of `rows`, tables without rows left out.
fn rows_per_table(rows: &Rows) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = [
        ("events", rows.events.len()),
        ("alerts", rows.alerts.len()),
        ("insights", rows.insights.len()),
        ("dead_letters", rows.dead_letters.len()),
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

/// Rows waiting for the next flush, per table, and the offsets they came from.
#[derive(Debug, Default)]
struct Batch {
    tables: Rows,
    /// Next offset to read per partition once this batch is stored.
    offsets: BTreeMap<TopicPartition, u64>,
    rows: usize,
    oldest: Option<Instant>,
    /// Trace contexts of the records in the batch, for the insert span's links.
    links: TraceLinks,
}

/// How long a poll waits while a batch is in flight, so its commit follows its
/// acknowledgement closely.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

/// A batch handed to the store, written on its own task.
#[derive(Debug)]
struct InFlight {
    rows: usize,
    /// Rows per table, counted before the write drained them.
    tables: Vec<(String, u64)>,
    started: Instant,
    task: tokio::task::JoinHandle<(Batch, Result<()>)>,
}

/// Writes `batch` to `store`; with `shutdown`, retries what retrying can fix, with
/// backoff and jitter, until stored or shutdown. A retry sends only the tables the store
/// has not acknowledged yet.
async fn write_with_retries(
    store: &dyn Store,
    batch: &mut Batch,
    retry: &RetryPolicy,
    metrics: &SinkMetrics,
    mut shutdown: Option<watch::Receiver<bool>>,
) -> Result<()> {
    let mut backoff = retry.backoff();
    loop {
        let Err(e) = store.write(&mut batch.tables).await else {
            return Ok(());
        };
        metrics.errors.fetch_add(1, Ordering::Relaxed);
        metrics.flush_errors.fetch_add(1, Ordering::Relaxed);
        let Some(stop) = shutdown.as_mut() else {
            return Err(e);
        };
        if *stop.borrow() {
            return Err(e);
        }
        if !e.retryable() {
            warn!(error = %e, "Sink stopping: the error will not go away by retrying.");
            return Err(e);
        }
        let delay = backoff.next_delay();
        metrics.retries.fetch_add(1, Ordering::Relaxed);
        warn!(error = %e, attempt = backoff.attempts(), held_rows = batch.rows,
            retry_in_ms = delay.as_millis() as u64,
            "Write failed; holding the batch, and polling no more than the buffer allows, until it succeeds.");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return Err(e),
        }
    }
}

/// A sink: the loop above, writing to one [`Store`]. Build with [`Sink::new`], run with
/// [`Sink::run`].
#[derive(Debug)]
pub struct Sink {
    store: Arc<dyn Store>,
    config: SinkConfig,
    decoders: Decoders,
    metrics: Arc<SinkMetrics>,
}

impl Sink {
    /// A sink writing to `store`, decoding with `decoders`.
    pub fn new(store: Arc<dyn Store>, config: SinkConfig, decoders: Decoders) -> Result<Self> {
        store.spec().validate()?;
        config.validate()?;
        Ok(Sink {
            store,
            config,
            decoders,
            metrics: Arc::new(SinkMetrics::default()),
        })
    }

    /// The sink's counters.
    pub fn metrics(&self) -> Arc<SinkMetrics> {
        self.metrics.clone()
    }

    /// Joins the consumer group and loads records until `shutdown` turns true; then flushes
    /// what it holds (one attempt) and returns. Errors that retrying cannot fix (a rejected
    /// statement, an invalid schema) stop the sink; nothing is committed past them.
    pub async fn run(self, log: &Log, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let group = self.config.group.clone();
        let topics = self.config.topics.all();
        let mut consumer = log
            .consumer(&topics, ConsumerConfig::new(&group))
            .await
            .map_err(|source| SinkError::Log {
                action: "join",
                group: group.clone(),
                source,
            })?;
        info!(group, ?topics, store = %self.store.describe(), "Sink started.");
        let interval = Duration::from_millis(self.config.batch_interval_ms);
        let retention_every = Duration::from_secs(self.config.retention_every_s.max(1));
        let mut next_retention = Instant::now();
        let mut batch = Batch::default();
        // The batch the store is writing while the loop decodes the next one; at most one,
        // so offsets are committed in order and only after their rows were acknowledged.
        let mut in_flight: Option<InFlight> = None;
        loop {
            if *shutdown.borrow() {
                // The batch in flight stops retrying once it sees the shutdown; what the
                // store acknowledged is committed, and nothing after a failure.
                let mut stored = Ok(());
                if let Some(f) = in_flight.take() {
                    stored = self.finish(consumer.as_mut(), f, None).await;
                }
                if stored.is_ok() && (batch.rows > 0 || !batch.offsets.is_empty()) {
                    let f = self.start(&mut batch, None);
                    let _ = self.finish(consumer.as_mut(), f, None).await;
                }
                info!(group, stats = ?self.metrics.snapshot(), "Sink stopped.");
                return Ok(());
            }
            if in_flight.as_ref().is_some_and(|f| f.task.is_finished()) {
                if let Some(f) = in_flight.take() {
                    self.finish(consumer.as_mut(), f, Some(&mut shutdown))
                        .await?;
                }
                continue;
            }
            if in_flight.is_none() && Instant::now() >= next_retention {
                next_retention = Instant::now() + retention_every;
                if let Err(e) = self.store.maintain().await {
                    warn!(error = %e, "Store upkeep (retention, compaction) failed; trying again later.");
                }
            }
            let due = batch.oldest.is_some_and(|t| t.elapsed() >= interval);
            if batch.rows >= self.config.batch_rows || (due && !batch.offsets.is_empty()) {
                if let Some(f) = in_flight.take() {
                    self.finish(consumer.as_mut(), f, Some(&mut shutdown))
                        .await?;
                }
                in_flight = Some(self.start(&mut batch, Some(shutdown.clone())));
                continue;
            }
            let held = batch.rows + in_flight.as_ref().map_or(0, |f| f.rows);
            let room = self.config.max_buffered_rows.saturating_sub(held);
            if room == 0
                && let Some(f) = in_flight.take()
            {
                // Backpressure: the buffer is full until the store acknowledges.
                self.finish(consumer.as_mut(), f, Some(&mut shutdown))
                    .await?;
                continue;
            }
            let max = room.min(self.config.poll_max).max(1);
            let mut wait = batch
                .oldest
                .map_or(interval, |t| interval.saturating_sub(t.elapsed()))
                .max(Duration::from_millis(10));
            if in_flight.is_some() {
                // Come back soon to commit the batch in flight; the poll itself is never
                // cancelled for it (a cancelled poll could drop records already fetched).
                wait = wait.min(IN_FLIGHT_POLL);
            }
            let polled = tokio::select! {
                r = consumer.poll(max, wait) => r,
                _ = shutdown.changed() => continue,
            };
            let records = match polled {
                Ok(r) => r,
                Err(source) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    self.metrics.poll_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(group, error = %source, "Poll failed; retrying.");
                    tokio::time::sleep(self.config.retry.backoff().next_delay()).await;
                    continue;
                }
            };
            for record in records {
                self.metrics.records_in.fetch_add(1, Ordering::Relaxed);
                self.add(&mut batch, record, &mut shutdown).await?;
            }
            self.metrics.buffered_rows.store(
                (batch.rows + in_flight.as_ref().map_or(0, |f| f.rows)) as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Decodes `record` into `batch`. Bad records become dead-letter rows; a registry that
    /// cannot be reached is waited for.
    async fn add(
        &self,
        batch: &mut Batch,
        record: ConsumedRecord,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<()> {
        let tp = record.topic_partition();
        let next = record.offset + 1;
        let mut backoff = self.config.retry.backoff();
        let outcome = loop {
            match self.decode_into(batch, &record).await {
                Err(e) if transient_decode_error(&e) && !*shutdown.borrow() => {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(topic = %record.topic, partition = record.partition, offset = record.offset,
                        error = %e, "Schema registry unavailable; waiting before decoding again.");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                other => break other,
            }
        };
        match outcome {
            Ok(added) => batch.rows += added,
            Err(e) => {
                let reason = e.to_string();
                self.dead_letter(batch, &record, reason);
            }
        }
        batch.links.add(&record);
        batch.oldest.get_or_insert_with(Instant::now);
        let slot = batch.offsets.entry(tp).or_insert(next);
        *slot = (*slot).max(next);
        Ok(())
    }

    /// Adds the rows of one record; `Err` carries why it cannot be stored.
    async fn decode_into(
        &self,
        batch: &mut Batch,
        record: &ConsumedRecord,
    ) -> std::result::Result<usize, DecodeError> {
        let Some(kind) = self.config.topics.kind_of(&record.topic) else {
            return Err(DecodeError::Unfit(format!(
                "topic `{}` is not one the sink reads",
                record.topic
            )));
        };
        let d = &self.decoders;
        let bytes = &record.value;
        match kind {
            TopicKind::Events => batch
                .tables
                .events
                .push(d.events.decode_async(bytes).await?.into()),
            TopicKind::Alerts => batch
                .tables
                .alerts
                .push(d.alerts.decode_async(bytes).await?.into()),
            TopicKind::Insights => batch
                .tables
                .insights
                .push(d.insights.decode_async(bytes).await?.into()),
            TopicKind::DeadLetters => batch
                .tables
                .dead_letters
                .push(d.dead_letters.decode_async(bytes).await?.into()),
            TopicKind::Aggregates => {
                let result = d.windows.decode_async(bytes).await?;
                let Some(spec) = self.store.spec().aggregate(&result.aggregate) else {
                    return Err(DecodeError::Unfit(format!(
                        "aggregate `{}` is not in the sink spec; add it to the spec and run migrations",
                        result.aggregate
                    )));
                };
                let rows = batch
                    .tables
                    .aggregates
                    .entry(spec.name.clone())
                    .or_insert_with(|| AggregateRows::new(spec.clone()));
                rows.push(&result).map_err(|m| DecodeError::Unfit(m.0))?;
            }
        }
        Ok(1)
    }

    fn dead_letter(&self, batch: &mut Batch, record: &ConsumedRecord, reason: String) {
        self.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
        warn!(topic = %record.topic, partition = record.partition, offset = record.offset,
            reason, "Record cannot be stored; writing it to dead_letters.");
        let stage = self.store.stage();
        batch.tables.dead_letters.push(DeadLetterRow {
            id: format!(
                "{stage}:{}:{}:{}",
                record.topic, record.partition, record.offset
            ),
            stage: stage.to_owned(),
            reason,
            original: record.value.to_vec(),
            topic: Some(record.topic.to_string()),
            partition: i32::try_from(record.partition).ok(),
            offset: i64::try_from(record.offset).ok(),
            // The record's own time, so a replay writes the same row.
            at: record.timestamp_ms.saturating_mul(1_000),
        });
        batch.rows += 1;
    }

    /// Hands `batch` (taken, leaving an empty one) to the store on a task of its own. With
    /// `shutdown`, the task retries a failed write with backoff until it is stored, the
    /// error is one retrying cannot fix, or shutdown; without, it makes one attempt. When
    /// traces are exported, the write runs inside a `sink.insert` span linked to the trace
    /// context of every record in the batch.
    fn start(&self, batch: &mut Batch, shutdown: Option<watch::Receiver<bool>>) -> InFlight {
        let mut batch = std::mem::take(batch);
        // Counted before the write, which drains the tables.
        let tables = rows_per_table(&batch.tables);
        let span = if helios_log::trace_propagation_enabled() && batch.rows > 0 {
            let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
            let offsets: Vec<String> = batch
                .offsets
                .iter()
                .map(|(tp, next)| format!("{tp}:{next}"))
                .collect();
            let span = tracing::info_span!(
                "sink.insert",
                store = %self.store.describe(),
                group = %self.config.group,
                rows = batch.rows,
                tables = names.join(","),
                table = tracing::field::Empty,
                next_offsets = offsets.join(","),
                linked = batch.links.len(),
            );
            if let [(table, _)] = tables.as_slice() {
                span.record("table", table.as_str());
            }
            batch.links.link(&span);
            span
        } else {
            tracing::Span::none()
        };
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let retry = self.config.retry;
        let rows = batch.rows;
        let write = async move {
            let stored = write_with_retries(&*store, &mut batch, &retry, &metrics, shutdown).await;
            (batch, stored)
        };
        InFlight {
            rows,
            tables,
            started: Instant::now(),
            task: tokio::spawn(write.instrument(span)),
        }
    }

    /// Waits for the batch in flight and commits its offsets once the store acknowledged
    /// it (retrying the commit like the write, when `shutdown` is given). An error means
    /// nothing of the batch was committed.
    async fn finish(
        &self,
        consumer: &mut dyn LogConsumer,
        in_flight: InFlight,
        mut shutdown: Option<&mut watch::Receiver<bool>>,
    ) -> Result<()> {
        let InFlight {
            rows,
            tables,
            started,
            task,
        } = in_flight;
        let batch = match task.await {
            Ok((batch, Ok(()))) => batch,
            Ok((_, Err(e))) => return Err(e),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(SinkError::Interrupted { rows }),
        };
        let mut backoff = self.config.retry.backoff();
        while let Err(e) = self.commit(consumer, &batch).await {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            self.metrics.flush_errors.fetch_add(1, Ordering::Relaxed);
            let Some(stop) = shutdown.as_deref_mut() else {
                return Err(e);
            };
            let delay = backoff.next_delay();
            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, attempt = backoff.attempts(), retry_in_ms = delay.as_millis() as u64,
                "Commit failed after the store acknowledged the batch; retrying the commit.");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return Err(e),
            }
        }
        let us = started.elapsed().as_micros() as u64;
        let m = &self.metrics;
        m.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
        m.batches.fetch_add(1, Ordering::Relaxed);
        m.batch_latency_us_sum.fetch_add(us, Ordering::Relaxed);
        m.batch_latency_us_max.fetch_max(us, Ordering::Relaxed);
        m.flushed(us, &tables);
        debug!(rows, latency_us = us, "Flushed a batch.");
        Ok(())
    }

    async fn commit(&self, consumer: &mut dyn LogConsumer, batch: &Batch) -> Result<()> {
        if batch.offsets.is_empty() {
            return Ok(());
        }
        let offsets: Vec<(TopicPartition, u64)> = batch
            .offsets
            .iter()
            .map(|(tp, o)| (tp.clone(), *o))
            .collect();
        consumer
            .commit(&offsets)
            .await
            .map_err(|source| SinkError::Log {
                action: "commit",
                group: self.config.group.clone(),
                source,
            })?;
        let mut committed = self
            .metrics
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (tp, offset) in offsets {
            committed.insert((tp.topic.to_string(), tp.partition), offset);
        }
        Ok(())
    }
}

/// Why a record could not be turned into rows.
#[derive(Debug)]
enum DecodeError {
    Schema(helios_schemas::Error),
    Unfit(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Schema(e) => write!(f, "cannot decode: {e}"),
            DecodeError::Unfit(why) => f.write_str(why),
        }
    }
}

impl From<helios_schemas::Error> for DecodeError {
    fn from(e: helios_schemas::Error) -> Self {
        DecodeError::Schema(e)
    }
}

fn transient_decode_error(e: &DecodeError) -> bool {
    matches!(
        e,
        DecodeError::Schema(
            helios_schemas::Error::Remote { .. } | helios_schemas::Error::Io { .. }
        )
    )
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    #[test]
    fn flush_latencies_land_in_cumulative_buckets_and_rows_add_up_per_table() {
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
}
