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
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use helios_log::{ConsumedRecord, ConsumerConfig, Log, LogConsumer, TopicPartition, TraceLinks};
use helios_schemas::{
    Alert, DeadLetter, EventCodec, Insight, RecordCodec, SchemaSource, WindowResult,
};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, warn};

use crate::backoff::RetryPolicy;
use crate::error::{Result, SinkError};
use crate::rows::{AggregateRows, DeadLetterRow, LateEventRow};
use crate::store::{Rows, Store};

mod config;
mod metrics;

use config::TopicKind;
pub use config::{SinkConfig, SinkTopics};
pub use metrics::{BATCH_LATENCY_BUCKETS, LatencyHistogram, SinkMetrics, SinkStats};
use metrics::{late_per_aggregate, rows_per_table};

/// Decoders for the record types (late events are dead-letter records holding an event); writer schemas are fetched from the registry.
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
    /// `late_events` rows per aggregate, likewise.
    late: Vec<(String, u64)>,
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
            // A watermark mark moves event time in the processor; it is not an event.
            TopicKind::Events
                if helios_schemas::watermark_mark::read(&record.headers).is_some() =>
            {
                return Ok(0);
            }
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
            // A late record holds the event's own bytes; the row is the event and what it
            // was late for.
            TopicKind::Late => {
                let late = d.dead_letters.decode_async(bytes).await?;
                let event = d.events.decode_async(&late.original).await?;
                let row = LateEventRow::from_late(&late, event, self.store.spec())
                    .map_err(|m| DecodeError::Unfit(m.0))?;
                batch.tables.late_events.push(row);
            }
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
            id: DeadLetter::position_id(
                stage,
                None,
                &record.topic,
                record.partition,
                record.offset,
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
        let late = late_per_aggregate(&batch.tables);
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
            late,
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
            late,
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
        m.late_stored(&late);
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
    matches!(e, DecodeError::Schema(e) if e.retryable())
}
