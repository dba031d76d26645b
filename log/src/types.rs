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
    /// Delete data older than this; `None` keeps it forever.
    #[serde(with = "opt_millis", default)]
    pub retention: Option<Duration>,
    /// Delete the oldest data once a partition is larger than this; `None` for no limit.
    #[serde(default)]
    pub retention_bytes: Option<u64>,
}

impl TopicSpec {
    /// A topic kept forever.
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
    #[serde(with = "opt_millis")]
    pub retention: Option<Duration>,
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

mod opt_millis {
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
