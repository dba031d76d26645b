//! `helios-log` owns the Kafka-style log every Helios stage talks through.
//!
//! Three small traits are the seam: [`LogProducer`] appends keyed records to a topic,
//! [`LogConsumer`] reads as a member of a consumer group, and [`LogAdmin`] creates and
//! describes topics. Two backends implement them: the [`embedded`] segment log in the data
//! dir (the `helios up` default) and [`kafka`] through rdkafka. No stage knows which one
//! it runs on; [`Log::open`] picks the backend from a URL.
//!
//! Keys map to partitions with Kafka's default partitioner ([`partition_for_key`], murmur2
//! as in the Java client), so a key lands on the same partition number on every backend.

mod error;
mod partitioner;
mod types;

pub mod embedded;
pub mod kafka;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use error::{LogError, Result};
pub use partitioner::{murmur2, partition_for_key};
pub use types::{
    ConsumedRecord, ConsumerConfig, OffsetReset, PartitionInfo, Record, RecordPosition, SeekTo,
    TRACEPARENT, TRACESTATE, TopicInfo, TopicPartition, TopicSpec, TraceLink, TraceLinks,
    TracePropagator, continue_trace, install_trace_propagator, trace_headers,
    trace_propagation_enabled,
};

/// Appends records to topics.
#[async_trait]
pub trait LogProducer: Send + Sync {
    /// Appends `records` to `topic` and returns each record's partition and offset, in the
    /// order given. Records with a key go to [`partition_for_key`]; records with an explicit
    /// partition go there; the rest are spread over partitions. Returns only once the records
    /// are durable by the backend's policy (fsync policy embedded, `acks=all` on Kafka).
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<RecordPosition>>;
}

/// Reads records as one member of a consumer group.
///
/// Members of the same group share the partitions of the subscribed topics; each partition
/// is read by one member at a time. Positions start from the group's committed offset, or
/// from [`ConsumerConfig::offset_reset`] when nothing was committed.
#[async_trait]
pub trait LogConsumer: Send {
    /// Waits up to `timeout` for records and returns at most `max` of them, in offset order
    /// per partition. An empty batch means nothing arrived in time.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>>;

    /// Commits, for each partition, the offset of the next record to read (Kafka semantics:
    /// last processed offset + 1).
    async fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()>;

    /// The group's committed offset for a partition, if any.
    async fn committed(&mut self, tp: &TopicPartition) -> Result<Option<u64>>;

    /// Moves this member's position in an assigned partition.
    async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()>;

    /// The partitions currently assigned to this member. Changes when members join or leave;
    /// it is brought up to date by `poll`.
    fn assignment(&self) -> Vec<TopicPartition>;
}

/// Creates, lists and describes topics.
#[async_trait]
pub trait LogAdmin: Send + Sync {
    /// Creates a topic. Creating a topic that exists with the same partition count is a
    /// no-op, so every stage can ensure its topics on start.
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()>;

    /// Names of all topics.
    async fn list_topics(&self) -> Result<Vec<String>>;

    /// Partitions with their offsets and sizes.
    async fn describe_topic(&self, topic: &str) -> Result<TopicInfo>;
}

/// One opened log, whichever backend is behind it.
#[derive(Clone)]
pub struct Log {
    producer: Arc<dyn LogProducer>,
    admin: Arc<dyn LogAdmin>,
    consumers: Arc<dyn ConsumerFactory>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").finish_non_exhaustive()
    }
}

/// Makes consumers for a backend; kept private behind [`Log::consumer`].
#[async_trait]
pub trait ConsumerFactory: Send + Sync {
    /// A new member of `config.group` subscribed to `topics`.
    async fn consumer(
        &self,
        topics: &[&str],
        config: ConsumerConfig,
    ) -> Result<Box<dyn LogConsumer>>;
}

impl Log {
    /// Builds a `Log` from a backend's three parts.
    pub fn from_parts(
        producer: Arc<dyn LogProducer>,
        admin: Arc<dyn LogAdmin>,
        consumers: Arc<dyn ConsumerFactory>,
    ) -> Self {
        Log {
            producer,
            admin,
            consumers,
        }
    }

    /// The producer side.
    pub fn producer(&self) -> Arc<dyn LogProducer> {
        self.producer.clone()
    }

    /// The admin side.
    pub fn admin(&self) -> Arc<dyn LogAdmin> {
        self.admin.clone()
    }

    /// A new consumer-group member subscribed to `topics`.
    pub async fn consumer(
        &self,
        topics: &[&str],
        config: ConsumerConfig,
    ) -> Result<Box<dyn LogConsumer>> {
        self.consumers.consumer(topics, config).await
    }
}
