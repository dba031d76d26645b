//! Writes sources' events to the events topic (keyed by subject) and their bad input to
//! the dead-letter topic. Appends are awaited, so a slow log slows the sources down instead
//! of growing a queue.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use helios_log::{LogProducer, Record, RecordPosition};
use helios_schemas::event_time::{self, DEFAULT_MAX_FUTURE, TooFarAhead};
use helios_schemas::{DeadLetter, Event, EventCodec, RecordCodec};
use tracing::{Instrument, warn};

use super::disk::DiskGuard;
use super::status::SourceHandle;
use crate::{ConnectorError, Result};

/// Where the emitter writes.
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Topic of `Event` records. Default `helios.events`.
    pub events_topic: String,
    /// Topic of `DeadLetter` records. Default `helios.dlq`.
    pub dead_letter_topic: String,
    /// How far after its receive time an event may be dated, for sources that do not set
    /// their own `max_future`. Default 15 minutes.
    pub max_future: Duration,
    /// The free-space check every append passes first (the data dir's disk, when the log
    /// is there). Default: none.
    pub disk: Option<DiskGuard>,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        EmitterConfig {
            events_topic: "helios.events".to_string(),
            dead_letter_topic: "helios.dlq".to_string(),
            max_future: DEFAULT_MAX_FUTURE,
            disk: None,
        }
    }
}

/// An event a source refused because of its time, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The event's id.
    pub id: String,
    /// The reason, as written in its dead letter.
    pub reason: String,
}

/// Shared by every source; cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

struct Inner {
    config: EmitterConfig,
    producer: Arc<dyn LogProducer>,
    events: EventCodec,
    dead_letters: RecordCodec<DeadLetter>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// The codecs carry the registry ids of the `Event` and `DeadLetter` schemas.
    pub fn new(
        config: EmitterConfig,
        producer: Arc<dyn LogProducer>,
        events: EventCodec,
        dead_letters: RecordCodec<DeadLetter>,
    ) -> Self {
        Emitter {
            inner: Arc::new(Inner {
                config,
                producer,
                events,
                dead_letters,
            }),
        }
    }

    pub fn events_topic(&self) -> &str {
        &self.inner.config.events_topic
    }

    /// The free-space check of every append, if there is one.
    pub fn disk(&self) -> Option<&DiskGuard> {
        self.inner.config.disk.as_ref()
    }

    /// Refuses before writing while the data dir's disk is nearly full.
    fn check_disk(&self) -> Result<()> {
        match self.disk() {
            Some(guard) => guard.check().map_err(ConnectorError::DiskFull),
            None => Ok(()),
        }
    }

    /// The event-time bound of `source`: its own `max_future`, else the default.
    pub fn max_future(&self, source: &SourceHandle) -> Duration {
        source.max_future().unwrap_or(self.inner.config.max_future)
    }

    /// The one event-time rule every source applies: `Err` with the reason when `event` is
    /// dated more than `source`'s `max_future` after it was received.
    pub fn check_time(
        &self,
        source: &SourceHandle,
        event: &Event,
    ) -> std::result::Result<(), TooFarAhead> {
        event_time::check(event, self.max_future(source))
    }

    /// Takes out of `events` every one [`Emitter::check_time`] refuses, writes each to the
    /// dead-letter topic (the event as JSON, the reason) and returns them. Webhooks call it
    /// to tell the sender; every append goes through it as well, so no source can skip it.
    pub async fn dead_letter_too_far_ahead(
        &self,
        source: &SourceHandle,
        events: &mut Vec<Event>,
    ) -> Result<Vec<Refused>> {
        if events.iter().all(|e| self.check_time(source, e).is_ok()) {
            return Ok(Vec::new());
        }
        let mut refused = Vec::new();
        let mut kept = Vec::with_capacity(events.len());
        for e in events.drain(..) {
            match self.check_time(source, &e) {
                Ok(()) => kept.push(e),
                Err(why) => refused.push((e, why.to_string())),
            }
        }
        *events = kept;
        self.write_refused(source, &refused).await?;
        Ok(refused
            .into_iter()
            .map(|(e, reason)| Refused { id: e.id, reason })
            .collect())
    }

    /// Dead letters for events refused by their time. Ids are deterministic (the event's),
    /// so a redelivery writes the same dead letter again, which the stores keep once.
    async fn write_refused(
        &self,
        source: &SourceHandle,
        refused: &[(Event, String)],
    ) -> Result<()> {
        if let Some((first, reason)) = refused.first() {
            warn!(
                source = source.name(),
                events = refused.len(),
                first_id = %first.id,
                %reason,
                "Events dated too far ahead sent to the dead-letter topic."
            );
        }
        for (e, reason) in refused {
            // The event as the source made it: its input is gone by now (a line, a body).
            let original = serde_json::to_vec(e).unwrap_or_default();
            self.dead_letter(source, format!("future/{}", e.id), original, reason.clone())
                .await?;
        }
        Ok(())
    }

    /// Appends `events` keyed by subject, returning once they are durable, and counts them
    /// on the source's status. Each record carries the trace context of the current span
    /// (the ingest request) when traces are exported.
    pub async fn emit(
        &self,
        source: &SourceHandle,
        events: &[Event],
    ) -> Result<Vec<RecordPosition>> {
        let headers = helios_log::trace_headers(&tracing::Span::current());
        self.append_events(source, events, |_| headers.clone())
            .await
    }

    /// [`Emitter::emit`] for events of several requests appended together: `headers[i]`
    /// is the trace context of `events[i]`'s request (`headers` is empty when traces are
    /// not exported).
    pub(crate) async fn emit_traced(
        &self,
        source: &SourceHandle,
        events: &[Event],
        headers: &[Vec<(String, Bytes)>],
    ) -> Result<Vec<RecordPosition>> {
        self.append_events(source, events, |i| {
            headers.get(i).cloned().unwrap_or_default()
        })
        .await
    }

    /// Appends what passes [`Emitter::check_time`]; the rest become dead letters.
    async fn append_events(
        &self,
        source: &SourceHandle,
        events: &[Event],
        headers: impl Fn(usize) -> Vec<(String, Bytes)>,
    ) -> Result<Vec<RecordPosition>> {
        if events.iter().all(|e| self.check_time(source, e).is_ok()) {
            return self.append_checked(source, events, headers).await;
        }
        let mut kept = Vec::with_capacity(events.len());
        let mut refused = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match self.check_time(source, e) {
                Ok(()) => kept.push(i),
                Err(why) => refused.push((e.clone(), why.to_string())),
            }
        }
        let accepted: Vec<Event> = kept.iter().map(|&i| events[i].clone()).collect();
        let positions = self
            .append_checked(source, &accepted, |j| headers(kept[j]))
            .await?;
        self.write_refused(source, &refused).await?;
        Ok(positions)
    }

    async fn append_checked(
        &self,
        source: &SourceHandle,
        events: &[Event],
        headers: impl Fn(usize) -> Vec<(String, Bytes)>,
    ) -> Result<Vec<RecordPosition>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.check_disk()?;
        let topic = self.inner.config.events_topic.as_str();
        let mut buf = Vec::with_capacity(256);
        let records = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                buf.clear();
                self.inner.events.encode_into(e, &mut buf);
                Record {
                    key: Some(Bytes::copy_from_slice(e.subject.as_bytes())),
                    value: Bytes::copy_from_slice(&buf),
                    headers: headers(i),
                    ..Record::default()
                }
            })
            .collect();
        let positions = if helios_log::trace_propagation_enabled() {
            let span = tracing::info_span!(
                "log.append",
                topic,
                source = source.name(),
                records = events.len(),
                partition = tracing::field::Empty,
                first_offset = tracing::field::Empty,
                last_offset = tracing::field::Empty,
                positions = tracing::field::Empty,
            );
            let positions = self
                .inner
                .producer
                .append(topic, records)
                .instrument(span.clone())
                .await?;
            if let (Some(first), Some(last)) = (positions.first(), positions.last())
                && positions.iter().all(|p| p.partition == first.partition)
            {
                span.record("partition", first.partition);
                span.record("first_offset", first.offset);
                span.record("last_offset", last.offset);
            }
            span.record("positions", describe_positions(&positions));
            positions
        } else {
            self.inner.producer.append(topic, records).await?
        };
        source.record_events(events.len(), events.iter().map(|e| e.time).max());
        Ok(positions)
    }

    /// Writes bad input to the dead-letter topic with the reason, so it is never silently
    /// lost. `id` must be deterministic for the input (for example source + position); the
    /// record's id is `<stage>/<id>`, so two sources reading the same input (a file, a
    /// topic) never share a dead letter's identity.
    pub async fn dead_letter(
        &self,
        source: &SourceHandle,
        id: String,
        original: Vec<u8>,
        reason: impl Into<String>,
    ) -> Result<()> {
        self.check_disk()?;
        let stage = format!("source/{}", source.name());
        let record = DeadLetter {
            id: format!("{stage}/{id}"),
            stage,
            reason: reason.into(),
            original,
            topic: None,
            partition: None,
            offset: None,
            at: now_micros(),
        };
        let value = self.inner.dead_letters.encode(&record)?;
        let key = Bytes::copy_from_slice(source.name().as_bytes());
        self.inner
            .producer
            .append(
                &self.inner.config.dead_letter_topic,
                vec![Record::keyed(key, value)],
            )
            .await?;
        source.record_dead_letter();
        Ok(())
    }
}

/// `partition:first-last` per partition written, e.g. `0:41-43,2:7`, for span attributes.
fn describe_positions(positions: &[RecordPosition]) -> String {
    let mut ranges: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for p in positions {
        let r = ranges.entry(p.partition).or_insert((p.offset, p.offset));
        r.0 = r.0.min(p.offset);
        r.1 = r.1.max(p.offset);
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|(p, (first, last))| {
            if first == last {
                format!("{p}:{first}")
            } else {
                format!("{p}:{first}-{last}")
            }
        })
        .collect();
    parts.join(",")
}

/// Wall-clock time in µs since the epoch; sources stamp receive times with it.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
