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

/// Creates `spec`'s topic unless it exists; `true` when this call created it. Roles start
/// together and create the topics they touch, so another one may create the same topic
/// between the check and the create: when the create fails and the topic exists by then,
/// the other role's topic stands (the stage that writes a topic decides its partitions)
/// and this is not an error.
pub async fn create_topic_if_missing(admin: &dyn LogAdmin, spec: &TopicSpec) -> Result<bool> {
    if admin.list_topics().await?.contains(&spec.name) {
        return Ok(false);
    }
    match admin.create_topic(spec).await {
        Ok(()) => Ok(true),
        Err(e) => {
            if admin.list_topics().await?.contains(&spec.name) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An admin whose topic another role creates between our check and our create.
    #[derive(Default)]
    struct Racing {
        listed: Mutex<u32>,
    }

    #[async_trait]
    impl LogAdmin for Racing {
        async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
            Err(LogError::TopicConflict(spec.name.clone()))
        }
        async fn list_topics(&self) -> Result<Vec<String>> {
            let mut n = self.listed.lock().unwrap();
            *n += 1;
            // Absent at the first look, present once the other role has created it.
            Ok(if *n == 1 {
                vec![]
            } else {
                vec!["t".to_owned()]
            })
        }
        async fn describe_topic(&self, topic: &str) -> Result<TopicInfo> {
            Err(LogError::UnknownTopic(topic.to_owned()))
        }
    }

    #[tokio::test]
    async fn a_topic_another_role_created_meanwhile_is_not_an_error() {
        let racing = Racing::default();
        let created = create_topic_if_missing(&racing, &TopicSpec::new("t", 4)).await;
        assert!(matches!(created, Ok(false)), "{created:?}");
        // Without the other role, the create's error stands.
        struct Failing;
        #[async_trait]
        impl LogAdmin for Failing {
            async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
                Err(LogError::InvalidTopicName(spec.name.clone()))
            }
            async fn list_topics(&self) -> Result<Vec<String>> {
                Ok(vec![])
            }
            async fn describe_topic(&self, topic: &str) -> Result<TopicInfo> {
                Err(LogError::UnknownTopic(topic.to_owned()))
            }
        }
        let refused = create_topic_if_missing(&Failing, &TopicSpec::new("t", 4)).await;
        assert!(
            matches!(refused, Err(LogError::InvalidTopicName(_))),
            "{refused:?}"
        );
    }
}
