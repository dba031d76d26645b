//! [`LogProducer`] on an idempotent rdkafka `FutureProducer`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::admin::KafkaAdmin;
use super::context::HeliosContext;
use super::{KafkaConfig, REACH_HINT, error_code, kafka_err};
use crate::{LogError, LogProducer, Record, RecordPosition, Result};

/// How long to back off when librdkafka's local queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

/// librdkafka's default `message.max.bytes`, reported when a record is too large.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

pub(crate) struct KafkaProducer {
    producer: FutureProducer<HeliosContext>,
    /// Used to look up partition counts when reporting a bad explicit partition.
    admin: Arc<KafkaAdmin>,
    delivery_timeout: Duration,
    message_max_bytes: usize,
}

impl KafkaProducer {
    pub(crate) fn new(
        config: &KafkaConfig,
        admin: Arc<KafkaAdmin>,
        context: HeliosContext,
    ) -> Result<Self> {
        let mut c = config.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            // Java-compatible key hashing (see `crate::partition_for_key`); keyless records get
            // a random partition each.
            .set("partitioner", "murmur2_random")
            // Without this librdkafka sends keyless records to one "sticky" partition per
            // batch; the log contract spreads them record by record.
            .set("sticky.partitioning.linger.ms", "0")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string());
        config.apply_options(&mut c);
        let producer = c
            .create_with_context(context)
            .map_err(|e| LogError::Config(format!("cannot create the Kafka producer: {e}")))?;
        let message_max_bytes = config
            .options
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        Ok(KafkaProducer {
            producer,
            admin,
            delivery_timeout: Duration::from_millis(config.delivery_timeout_ms),
            message_max_bytes,
        })
    }

    /// Turns a produce error for `record` into the crate's error.
    async fn map_error(&self, topic: &str, record: &Record, err: KafkaError) -> LogError {
        let size = record.value.len() + record.key.as_ref().map_or(0, |k| k.len());
        match error_code(&err) {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                LogError::UnknownTopic(topic.to_owned())
            }
            Some(RDKafkaErrorCode::UnknownPartition) => {
                let partition = record.partition.unwrap_or(0);
                match self.admin.partition_count(topic).await {
                    Ok(partitions) => LogError::UnknownPartition {
                        topic: topic.to_owned(),
                        partition,
                        partitions,
                    },
                    Err(e) => e,
                }
            }
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => LogError::RecordTooLarge {
                size,
                limit: self.message_max_bytes,
            },
            Some(RDKafkaErrorCode::MessageTimedOut) => LogError::Kafka(format!(
                "appending to topic `{topic}` timed out after {:?} ({err}); {REACH_HINT}, \
                 or raise kafka.delivery_timeout_ms",
                self.delivery_timeout
            )),
            _ => kafka_err(
                format_args!("appending to topic `{topic}` failed"),
                format_args!("{err}; {REACH_HINT}"),
            ),
        }
    }
}

fn headers(record: &Record) -> Option<OwnedHeaders> {
    if record.headers.is_empty() {
        return None;
    }
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_ref()),
        });
    }
    Some(headers)
}

#[async_trait]
impl LogProducer for KafkaProducer {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<RecordPosition>> {
        let deadline = Instant::now() + self.delivery_timeout;
        // Enqueue every record first, in order (the idempotent producer keeps per-partition
        // order), then wait for all deliveries together.
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let mut fr = FutureRecord::<[u8], [u8]>::to(topic).payload(record.value.as_ref());
            if let Some(key) = &record.key {
                fr = fr.key(key.as_ref());
            }
            if let Some(partition) = record.partition {
                let Ok(partition) = i32::try_from(partition) else {
                    let partitions = self.admin.partition_count(topic).await?;
                    return Err(LogError::UnknownPartition {
                        topic: topic.to_owned(),
                        partition,
                        partitions,
                    });
                };
                fr = fr.partition(partition);
            }
            if let Some(ts) = record.timestamp_ms {
                fr = fr.timestamp(ts);
            }
            if let Some(h) = headers(record) {
                fr = fr.headers(h);
            }
            loop {
                match self.producer.send_result(fr) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((err, back))
                        if error_code(&err) == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < deadline =>
                    {
                        fr = back;
                        tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                    }
                    Err((err, _)) => return Err(self.map_error(topic, record, err).await),
                }
            }
        }

        let results = futures::future::join_all(deliveries).await;
        let mut positions = Vec::with_capacity(results.len());
        for (result, record) in results.into_iter().zip(&records) {
            match result {
                Ok(Ok(delivery)) => positions.push(RecordPosition {
                    partition: u32::try_from(delivery.partition).map_err(|_| {
                        LogError::Kafka(format!(
                            "the broker reported partition {} for a record appended to `{topic}`",
                            delivery.partition
                        ))
                    })?,
                    offset: u64::try_from(delivery.offset).map_err(|_| {
                        LogError::Kafka(format!(
                            "the broker reported offset {} for a record appended to `{topic}`; \
                             is the broker acknowledging with acks=all?",
                            delivery.offset
                        ))
                    })?,
                }),
                Ok(Err((err, _message))) => return Err(self.map_error(topic, record, err).await),
                Err(_canceled) => return Err(LogError::Closed),
            }
        }
        Ok(positions)
    }
}
