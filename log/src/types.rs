//! Plain data types shared by the log traits and both backends.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A record to append.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Partitioning key; also kept with the record.
    pub key: Option<Bytes>,
    /// The record body (for Helios topics: Confluent-framed Avro).
    pub value: Bytes,
    /// Record timestamp in milliseconds since the Unix epoch; the append time when `None`.
    pub timestamp_ms: Option<i64>,
    /// Headers (for example trace context).
    pub headers: Vec<(String, Bytes)>,
    /// Explicit partition; overrides the key's partition.
    pub partition: Option<u32>,
}

impl Record {
    /// A record with a key and a value, everything else defaulted.
    pub fn keyed(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Record {
            key: Some(key.into()),
            value: value.into(),
            ..Record::default()
        }
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordPosition {
    pub partition: u32,
    pub offset: u64,
}

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: u32) -> Self {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

impl ConsumedRecord {
    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

/// Where a consumer moves to with [`crate::LogConsumer::seek`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// The oldest retained record.
    Beginning,
    /// After the newest record: only new records are read.
    End,
    /// A given offset.
    Offset(u64),
    /// The first record whose timestamp is at or after this time (ms since the epoch); the
    /// end of the partition if there is none.
    Timestamp(i64),
}

/// Where a consumer starts in a partition its group has not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// From the oldest retained record.
    #[default]
    Earliest,
    /// Only records appended after the consumer joined.
    Latest,
}

/// Settings of one consumer-group member.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group; members of one group share partitions and committed offsets.
    pub group: String,
    /// Where to start without a committed offset.
    pub offset_reset: OffsetReset,
    /// Upper bound on bytes fetched per partition per poll.
    pub max_partition_fetch_bytes: usize,
    /// How long the broker may take to notice a dead member (Kafka only).
    pub session_timeout: Duration,
}

impl ConsumerConfig {
    /// Defaults for `group`: start at the earliest record, 1 MiB per partition fetch.
    pub fn new(group: impl Into<String>) -> Self {
        ConsumerConfig {
            group: group.into(),
            offset_reset: OffsetReset::Earliest,
            max_partition_fetch_bytes: 1 << 20,
            session_timeout: Duration::from_secs(10),
        }
    }

    /// Sets where to start without a committed offset.
    pub fn offset_reset(mut self, reset: OffsetReset) -> Self {
        self.offset_reset = reset;
        self
    }
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// Delete data older than this; `None`: the backend's default (the embedded log's
    /// `default_retention`, a Kafka broker's `log.retention.*`).
    #[serde(with = "opt_millis", default)]
    pub retention: Option<Duration>,
    /// Keep a partition within this many bytes, deleting its oldest data; `None`: the
    /// backend's default, as for `retention`.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
}

impl TopicSpec {
    /// A topic with the backend's default retention.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            retention: None,
            retention_bytes: None,
        }
    }

    /// Sets retention by age.
    pub fn retention(mut self, age: Duration) -> Self {
        self.retention = Some(age);
        self
    }

    /// Sets retention by size, per partition.
    pub fn retention_bytes(mut self, bytes: u64) -> Self {
        self.retention_bytes = Some(bytes);
        self
    }
}

/// What [`crate::LogAdmin::describe_topic`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    pub name: String,
    /// The age limit in force (the topic's own or the backend's default); `None`: none.
    #[serde(with = "opt_millis")]
    pub retention: Option<Duration>,
    /// The size limit in force per partition; `None`: none.
    pub retention_bytes: Option<u64>,
    pub partitions: Vec<PartitionInfo>,
}

/// One partition of a [`TopicInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub partition: u32,
    /// Offset of the oldest retained record.
    pub start_offset: u64,
    /// Offset the next record will get.
    pub end_offset: u64,
    /// Bytes on disk, when the backend knows.
    pub size_bytes: Option<u64>,
}

/// The W3C trace context header a record carries: the context of the span that wrote it.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C vendor trace state, carried next to [`TRACEPARENT`] when the span has one.
pub const TRACESTATE: &str = "tracestate";

/// Moves trace context between `tracing` spans and record headers.
///
/// The log crates know only `tracing`; the binary installs one propagator (with
/// [`install_trace_propagator`]) when it exports traces. Without one, stages write no trace
/// header and read none: the check is one atomic load per batch.
pub trait TracePropagator: Send + Sync + 'static {
    /// Appends the headers that carry `span`'s context; nothing when it has none.
    fn inject(&self, span: &tracing::Span, headers: &mut Vec<(String, Bytes)>);
    /// Links `span` to the context one consumed record carried.
    fn link(&self, span: &tracing::Span, link: &TraceLink);
    /// Makes `span` a child of the caller's context (W3C headers of a request), before
    /// the span is first entered.
    fn continue_trace(&self, span: &tracing::Span, traceparent: &[u8], tracestate: Option<&[u8]>);
}

static TRACE_PROPAGATOR: std::sync::OnceLock<Box<dyn TracePropagator>> = std::sync::OnceLock::new();

/// Installs the process's propagator; `false` if one was installed already (kept).
pub fn install_trace_propagator(propagator: Box<dyn TracePropagator>) -> bool {
    TRACE_PROPAGATOR.set(propagator).is_ok()
}

fn trace_propagator() -> Option<&'static dyn TracePropagator> {
    TRACE_PROPAGATOR.get().map(|p| &**p)
}

/// Whether trace context is propagated at all: stages skip their spans when it is not.
pub fn trace_propagation_enabled() -> bool {
    TRACE_PROPAGATOR.get().is_some()
}

/// The trace headers to put on records written inside `span`: empty (no allocation) when
/// no propagator is installed or the span is disabled.
pub fn trace_headers(span: &tracing::Span) -> Vec<(String, Bytes)> {
    let mut headers = Vec::new();
    if let Some(p) = trace_propagator()
        && !span.is_disabled()
    {
        p.inject(span, &mut headers);
    }
    headers
}

/// Makes `span` continue the trace of a request that sent W3C `traceparent` (and
/// `tracestate`) headers; nothing when no propagator is installed or the header is
/// malformed (the span then starts a trace of its own).
pub fn continue_trace(span: &tracing::Span, traceparent: &[u8], tracestate: Option<&[u8]>) {
    if let Some(p) = trace_propagator()
        && !span.is_disabled()
    {
        p.continue_trace(span, traceparent, tracestate);
    }
}

/// The trace context one consumed record carried, and where the record was.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceLink {
    pub traceparent: Bytes,
    pub tracestate: Option<Bytes>,
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
}

/// Gathers the distinct trace contexts of the records a batch consumed, to link the
/// batch's span to each of them (a batch has many parents, so links rather than one
/// parent). Bounded: past [`TraceLinks::MAX`] contexts the rest are not linked.
#[derive(Debug)]
pub struct TraceLinks {
    enabled: bool,
    links: Vec<TraceLink>,
}

impl Default for TraceLinks {
    fn default() -> Self {
        TraceLinks {
            enabled: trace_propagator().is_some(),
            links: Vec::new(),
        }
    }
}

impl TraceLinks {
    /// The most links one span gets (the OpenTelemetry SDK's default link limit).
    pub const MAX: usize = 128;

    /// Notes `record`'s trace context, unless it has none, it is one already noted, or the
    /// bound is reached. Records of one request share a context and lie next to each other
    /// in a partition, so most repeats are the last one noted.
    pub fn add(&mut self, record: &ConsumedRecord) {
        if !self.enabled || self.links.len() >= Self::MAX {
            return;
        }
        let mut traceparent = None;
        let mut tracestate = None;
        for (name, value) in &record.headers {
            if name == TRACEPARENT {
                traceparent = Some(value);
            } else if name == TRACESTATE {
                tracestate = Some(value);
            }
        }
        let Some(traceparent) = traceparent else {
            return;
        };
        if self
            .links
            .iter()
            .rev()
            .any(|l| l.traceparent == *traceparent)
        {
            return;
        }
        self.links.push(TraceLink {
            traceparent: traceparent.clone(),
            tracestate: tracestate.cloned(),
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        });
    }

    /// How many contexts are noted.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Links `span` to every noted context and forgets them.
    pub fn link(&mut self, span: &tracing::Span) {
        if let Some(p) = trace_propagator() {
            for l in &self.links {
                p.link(span, l);
            }
        }
        self.links.clear();
    }
}

pub(crate) mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod trace_tests {
    use std::sync::Mutex;

    use super::*;

    /// What the test propagator was asked to link: (traceparent, offset).
    static LINKED: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

    /// Writes a fixed context and records what it is asked to link.
    struct Recording;

    impl TracePropagator for Recording {
        fn inject(&self, _span: &tracing::Span, headers: &mut Vec<(String, Bytes)>) {
            headers.push((TRACEPARENT.into(), Bytes::from_static(b"00-fixed")));
        }
        fn link(&self, _span: &tracing::Span, link: &TraceLink) {
            let tp = String::from_utf8(link.traceparent.to_vec()).unwrap();
            LINKED.lock().unwrap().push((tp, link.offset));
        }
        fn continue_trace(&self, _: &tracing::Span, _: &[u8], _: Option<&[u8]>) {}
    }

    fn record(offset: u64, traceparent: Option<&str>) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from("t"),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: Bytes::new(),
            headers: traceparent
                .map(|tp| vec![(TRACEPARENT.to_string(), Bytes::from(tp.to_string()))])
                .unwrap_or_default(),
        }
    }

    // One test: the propagator is process-wide and installed once.
    #[test]
    fn links_are_distinct_bounded_and_only_with_a_propagator() {
        // Before a propagator is installed nothing is gathered or written.
        let mut off = TraceLinks::default();
        off.add(&record(0, Some("a")));
        assert!(off.is_empty());
        assert!(trace_headers(&tracing::Span::none()).is_empty());
        assert!(!trace_propagation_enabled());

        assert!(install_trace_propagator(Box::new(Recording)));
        assert!(
            !install_trace_propagator(Box::new(Recording)),
            "installed once"
        );
        assert!(trace_propagation_enabled());

        let mut links = TraceLinks::default();
        // Repeats of one request's context, a record without one, another context.
        for (offset, tp) in [
            (0, Some("a")),
            (1, Some("a")),
            (2, None),
            (3, Some("b")),
            (4, Some("a")),
        ] {
            links.add(&record(offset, tp));
        }
        assert_eq!(links.len(), 2);
        links.link(&tracing::Span::none());
        assert!(links.is_empty(), "linking forgets the contexts");
        assert_eq!(
            *LINKED.lock().unwrap(),
            vec![("a".to_string(), 0), ("b".to_string(), 3)]
        );

        for offset in 0..(TraceLinks::MAX as u64 + 10) {
            links.add(&record(offset, Some(&format!("ctx-{offset}"))));
        }
        assert_eq!(links.len(), TraceLinks::MAX);
    }
}
