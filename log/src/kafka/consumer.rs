//! [`LogConsumer`] on an rdkafka `StreamConsumer`.
//!
//! Each member is one librdkafka consumer subscribed to its topics with automatic commits
//! off. Rebalances are librdkafka's (eager protocol, `range,roundrobin` assignors): they are
//! served while [`LogConsumer::poll`] runs, which is also when [`LogConsumer::assignment`]
//! changes.
//!
//! Timestamp seeks check the first record read (see `TimestampCheck`) because some brokers
//! answer a lookup with no match with offset 0 instead of the end.
//!
//! Seeking: librdkafka only accepts a seek once a newly assigned partition has started
//! fetching (after the group's committed offset is looked up), and resolves logical offsets
//! (beginning, end) lazily, racing with concurrent appends. So `seek` resolves every target
//! to an absolute offset first (watermarks, `offsets_for_times`) and retries the seek itself
//! while the partition is still starting, within the request timeout. Records fetched
//! before the seek are discarded by librdkafka, never returned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::context::{HeliosContext, MemberContext, SecurityWatch};
use super::{KafkaConfig, REACH_HINT, blocking, error_code, kafka_err};
use crate::{
    ConsumedRecord, ConsumerConfig, ConsumerFactory, LogConsumer, LogError, OffsetReset, Result,
    SeekTo, TopicPartition,
};

/// Pause between seek attempts while a partition is still starting.
const SEEK_RETRY: Duration = Duration::from_millis(50);

/// Least time between two rejoins of one member (see [`KafkaConsumer::rejoin_if_stale`]).
const REJOIN_PAUSE: Duration = Duration::from_secs(60);

type Inner = StreamConsumer<MemberContext>;

pub(crate) struct KafkaConsumerFactory {
    config: Arc<KafkaConfig>,
    security: SecurityWatch,
}

impl KafkaConsumerFactory {
    pub(crate) fn new(config: Arc<KafkaConfig>, security: SecurityWatch) -> Self {
        KafkaConsumerFactory { config, security }
    }
}

#[async_trait]
impl ConsumerFactory for KafkaConsumerFactory {
    async fn consumer(
        &self,
        topics: &[&str],
        config: ConsumerConfig,
    ) -> Result<Box<dyn LogConsumer>> {
        if config.group.is_empty() {
            return Err(LogError::Config(
                "the consumer group name is empty".to_owned(),
            ));
        }
        let session_ms = config
            .session_timeout
            .as_millis()
            .clamp(1, i32::MAX as u128) as u64;
        // Heartbeats well inside the session timeout so rebalances are noticed quickly.
        let heartbeat_ms = (session_ms / 10).clamp(100, 3_000);
        let mut c = self.config.client_config();
        c.set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            )
            .set(
                "max.partition.fetch.bytes",
                config.max_partition_fetch_bytes.to_string(),
            )
            .set("session.timeout.ms", session_ms.to_string())
            .set("heartbeat.interval.ms", heartbeat_ms.to_string());
        self.config.apply_options(&mut c);
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let consumer = subscribe(&c, &config.group, &topics, &self.security)?;
        Ok(Box::new(KafkaConsumer {
            consumer: Arc::new(consumer),
            group: config.group,
            timeout: self.config.request_timeout_duration(),
            timestamp_checks: HashMap::new(),
            client: c,
            security: self.security.clone(),
            topics,
            rejoined: None,
        }))
    }
}

/// Creates a group member and subscribes it.
fn subscribe(
    c: &rdkafka::ClientConfig,
    group: &str,
    topics: &[String],
    security: &SecurityWatch,
) -> Result<Inner> {
    let consumer: Inner = c
        .create_with_context(MemberContext::new(HeliosContext::new(security.clone())))
        .map_err(|e| LogError::Config(format!("cannot create the Kafka consumer: {e}")))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|e| {
        kafka_err(
            format_args!("subscribing group `{group}` to {topics:?} failed"),
            e,
        )
    })?;
    tracing::debug!(%group, ?topics, "Kafka consumer subscribed");
    Ok(consumer)
}

struct KafkaConsumer {
    consumer: Arc<Inner>,
    group: String,
    timeout: Duration,
    /// Timestamp seeks whose first record is still to be checked (see [`TimestampCheck`]).
    timestamp_checks: HashMap<TopicPartition, TimestampCheck>,
    /// What the member was created with, to rejoin as a new member.
    client: rdkafka::ClientConfig,
    security: SecurityWatch,
    topics: Vec<String>,
    /// When the member last rejoined under a new id.
    rejoined: Option<Instant>,
}

/// A seek to the first record at or after `timestamp_ms` that resolved to `offset`.
///
/// Kafka answers a timestamp lookup with no matching record with offset -1 (the end); some
/// brokers (tansu 0.6) answer 0 instead. The record read at `offset` after the seek tells:
/// if its timestamp is before `timestamp_ms` the lookup had no match, and the consumer
/// moves to `end`, the partition end when `seek` was called.
#[derive(Debug, Clone, Copy)]
struct TimestampCheck {
    timestamp_ms: i64,
    offset: i64,
    end: i64,
}

fn to_record(msg: &BorrowedMessage<'_>) -> ConsumedRecord {
    let headers = msg
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ConsumedRecord {
        topic: Arc::from(msg.topic()),
        partition: msg.partition() as u32,
        offset: msg.offset() as u64,
        timestamp_ms: msg.timestamp().to_millis().unwrap_or(-1),
        key: msg.key().map(Bytes::copy_from_slice),
        value: msg
            .payload()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
        headers,
    }
}

impl KafkaConsumer {
    /// Works around brokers that drop a dead member without starting a new generation
    /// (tansu 0.6: a member removed for missed heartbeats leaves the group "formed", so the
    /// survivors rejoin into the old generation and get their old assignment back, and the
    /// dead member's partitions stay assigned to nobody). A rebalance that hands a member
    /// exactly the partitions it just gave up is what that looks like from here; the member
    /// then leaves and joins again under a new member id, which makes every broker form a
    /// new generation and assign the whole topic among the live members. A correct broker
    /// can hand back the same set too (a join elsewhere that leaves this share unchanged),
    /// which costs one extra rebalance; [`REJOIN_PAUSE`] bounds that to once per pause, so
    /// members can never keep each other rebalancing.
    async fn rejoin_if_stale(&mut self) -> Result<()> {
        if !self.consumer.context().take_stale() {
            return Ok(());
        }
        if self.rejoined.is_some_and(|at| at.elapsed() < REJOIN_PAUSE) {
            return Ok(());
        }
        self.rejoined = Some(Instant::now());
        tracing::warn!(
            group = %self.group,
            partitions = self.assignment().len(),
            "A rebalance gave this member back exactly the partitions it revoked; the broker \
             may have kept a stale assignment after a member left. Rejoining as a new member."
        );
        let fresh = subscribe(&self.client, &self.group, &self.topics, &self.security)?;
        // Dropping the old member closes it (LeaveGroup) before the new one joins.
        let old = std::mem::replace(&mut self.consumer, Arc::new(fresh));
        self.timestamp_checks.clear();
        blocking("leaving the Kafka group", move || {
            drop(old);
            Ok(())
        })
        .await
    }

    fn is_assigned(&self, tp: &TopicPartition) -> bool {
        self.assignment().contains(tp)
    }

    /// Resolves a seek target to an absolute offset, and for timestamps what to check on the
    /// first record read.
    async fn resolve(
        &self,
        tp: &TopicPartition,
        to: SeekTo,
    ) -> Result<(i64, Option<TimestampCheck>)> {
        let consumer = self.consumer.clone();
        let topic = tp.topic.to_string();
        let partition = tp.partition as i32;
        let timeout = self.timeout;
        blocking("resolving a Kafka seek", move || {
            let watermarks = || {
                consumer
                    .fetch_watermarks(&topic, partition, timeout)
                    .map_err(|e| {
                        kafka_err(
                            format_args!("fetching the offsets of {topic}/{partition} failed"),
                            format_args!("{e}; {REACH_HINT}"),
                        )
                    })
            };
            match to {
                SeekTo::Offset(o) => i64::try_from(o)
                    .map(|o| (o, None))
                    .map_err(|_| LogError::Config(format!("offset {o} is out of Kafka's range"))),
                SeekTo::Beginning => Ok((watermarks()?.0, None)),
                SeekTo::End => Ok((watermarks()?.1, None)),
                SeekTo::Timestamp(ts) => {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&topic, partition, Offset::Offset(ts))
                        .map_err(|e| kafka_err("building an offset lookup", e))?;
                    let found = consumer.offsets_for_times(tpl, timeout).map_err(|e| {
                        kafka_err(
                            format_args!(
                                "looking up the offset for time {ts} in {topic}/{partition} failed"
                            ),
                            format_args!("{e}; {REACH_HINT}"),
                        )
                    })?;
                    let offset = found
                        .find_partition(&topic, partition)
                        .map(|e| e.offset())
                        .unwrap_or(Offset::End);
                    let end = watermarks()?.1;
                    match offset {
                        Offset::Offset(o) if o < end => Ok((
                            o,
                            Some(TimestampCheck {
                                timestamp_ms: ts,
                                offset: o,
                                end,
                            }),
                        )),
                        // No record at or after `ts`: the end of the partition.
                        _ => Ok((end, None)),
                    }
                }
            }
        })
        .await
    }

    /// Seeks an assigned partition to an absolute offset, retrying while it is starting.
    async fn seek_to(&self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(offset))
                .map_err(|e| kafka_err("building a seek", e))?;
            let consumer = self.consumer.clone();
            let timeout = self.timeout;
            let result = blocking("seeking a Kafka consumer", move || {
                let tpl = consumer
                    .seek_partitions(tpl, timeout)
                    .map_err(|e| kafka_err("seek failed", e))?;
                Ok(tpl.elements().first().map(|e| e.error()).unwrap_or(Ok(())))
            })
            .await?;
            match result {
                Ok(()) => {
                    tracing::debug!(group = %self.group, %tp, offset, "Kafka consumer seeked");
                    return Ok(());
                }
                // The partition is assigned but has not started fetching yet.
                Err(e)
                    if matches!(
                        error_code(&e),
                        Some(RDKafkaErrorCode::State | RDKafkaErrorCode::PreviousInProgress)
                    ) && Instant::now() < deadline =>
                {
                    tokio::time::sleep(SEEK_RETRY).await;
                    if !self.is_assigned(tp) {
                        return Err(LogError::NotAssigned {
                            topic: tp.topic.to_string(),
                            partition: tp.partition,
                        });
                    }
                }
                Err(e) => {
                    return Err(kafka_err(
                        format_args!("seeking {tp} to offset {offset} failed"),
                        format_args!("{e}; the partition may have been revoked by a rebalance"),
                    ));
                }
            }
        }
    }

    /// Waits until `deadline` for records and returns at most `max`.
    async fn fetch(
        &self,
        max: usize,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<ConsumedRecord>> {
        let mut stream = self.consumer.stream();
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        // Wait for the first record, then take whatever is already buffered.
        let first = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_elapsed) => return Ok(out),
            Ok(None) => return Err(LogError::Closed),
            Ok(Some(first)) => first,
        };
        match first {
            Ok(msg) => out.push(to_record(&msg)),
            Err(e) => {
                return Err(kafka_err(
                    format_args!("consumer of group `{}` failed to fetch", self.group),
                    format_args!("{e}; {REACH_HINT}"),
                ));
            }
        }
        while out.len() < max {
            match stream.next().now_or_never() {
                Some(Some(Ok(msg))) => out.push(to_record(&msg)),
                Some(Some(Err(e))) => {
                    // Return what we have; the error shows again on the next poll if it lasts.
                    tracing::warn!(group = %self.group, error = %e, "Kafka consumer fetch error");
                    break;
                }
                Some(None) | None => break,
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        self.rejoin_if_stale().await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut out = self.fetch(max, deadline).await?;
            if self.timestamp_checks.is_empty() {
                return Ok(out);
            }
            // Check the first record read after each timestamp seek (see `TimestampCheck`).
            let mut reseek = Vec::new();
            for r in &out {
                let tp = r.topic_partition();
                if let Some(check) = self.timestamp_checks.remove(&tp)
                    && r.offset as i64 == check.offset
                    && r.timestamp_ms < check.timestamp_ms
                {
                    reseek.push((tp, check.end));
                }
            }
            if reseek.is_empty() {
                return Ok(out);
            }
            out.retain(|r| !reseek.iter().any(|(tp, _)| *tp == r.topic_partition()));
            for (tp, end) in &reseek {
                tracing::debug!(%tp, end, "Broker had no record at the seek time; seeking to the end");
                self.seek_to(tp, *end).await?;
            }
            if !out.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (tp, offset) in offsets {
            let offset = i64::try_from(*offset).map_err(|_| {
                LogError::Config(format!("offset {offset} is out of Kafka's range"))
            })?;
            tpl.add_partition_offset(&tp.topic, tp.partition as i32, Offset::Offset(offset))
                .map_err(|e| kafka_err("building a commit", e))?;
        }
        let consumer = self.consumer.clone();
        let group = self.group.clone();
        blocking("committing Kafka offsets", move || {
            consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
                kafka_err(
                    format_args!("committing offsets for group `{group}` failed"),
                    format_args!(
                        "{e}; a rebalance may have moved the partitions to another member, \
                         or {REACH_HINT}"
                    ),
                )
            })
        })
        .await
    }

    async fn committed(&mut self, tp: &TopicPartition) -> Result<Option<u64>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition as i32);
        let consumer = self.consumer.clone();
        let timeout = self.timeout;
        let group = self.group.clone();
        let tp = tp.clone();
        blocking("reading Kafka committed offsets", move || {
            let found = consumer.committed_offsets(tpl, timeout).map_err(|e| {
                kafka_err(
                    format_args!("reading the committed offset of {tp} for group `{group}` failed"),
                    format_args!("{e}; {REACH_HINT}"),
                )
            })?;
            let offset = found
                .find_partition(&tp.topic, tp.partition as i32)
                .map(|e| e.offset());
            Ok(match offset {
                Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
                _ => None,
            })
        })
        .await
    }

    async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()> {
        if !self.is_assigned(tp) {
            return Err(LogError::NotAssigned {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
        self.timestamp_checks.remove(tp);
        let (offset, check) = self.resolve(tp, to).await?;
        self.seek_to(tp, offset).await?;
        if let Some(check) = check {
            self.timestamp_checks.insert(tp.clone(), check);
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        match self.consumer.assignment() {
            Ok(tpl) => {
                let mut tps: Vec<TopicPartition> = tpl
                    .elements()
                    .iter()
                    .map(|e| TopicPartition::new(e.topic(), e.partition() as u32))
                    .collect();
                tps.sort();
                tps
            }
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "Reading the Kafka assignment failed");
                Vec::new()
            }
        }
    }
}
