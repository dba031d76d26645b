//! [`LogAdmin`] on rdkafka's `AdminClient`, plus the metadata lookups the other parts share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;

use super::context::{HeliosContext, SecurityFailure, SecurityWatch};
use super::security::{authentication_error, tls_error};
use super::{KafkaConfig, REACH_HINT, blocking, kafka_err};
use crate::{LogAdmin, LogError, PartitionInfo, Result, TopicInfo, TopicSpec};

/// Pause between metadata lookups while waiting for a new topic to become visible.
const VISIBLE_POLL: Duration = Duration::from_millis(50);

/// How often the reachability check at connect looks for a TLS or SASL failure.
const SECURITY_POLL: Duration = Duration::from_millis(50);
/// The reachability check's metadata request is made in attempts this long (see
/// `check_reachable`).
const REACH_ATTEMPT: Duration = Duration::from_millis(250);

pub(crate) struct KafkaAdmin {
    client: Arc<AdminClient<HeliosContext>>,
    config: Arc<KafkaConfig>,
}

/// One topic as the cluster metadata describes it.
#[derive(Debug)]
pub(crate) struct TopicMeta {
    pub name: String,
    /// Partition ids, and whether each has a leader.
    pub partitions: Vec<(u32, bool)>,
    pub error: Option<RDKafkaErrorCode>,
}

impl KafkaAdmin {
    pub(crate) fn new(config: Arc<KafkaConfig>, context: HeliosContext) -> Result<Self> {
        let mut c = config.client_config();
        config.apply_options(&mut c);
        let client = c
            .create_with_context(context)
            .map_err(|e| LogError::Config(format!("cannot create the Kafka admin client: {e}")))?;
        Ok(KafkaAdmin {
            client: Arc::new(client),
            config,
        })
    }

    fn timeout(&self) -> Duration {
        self.config.request_timeout_duration()
    }

    /// Fails with a clear message when no broker answers a metadata request in time, and
    /// at once, naming the cause, when a client of this log (`security`) sees the brokers
    /// refuse its TLS handshake or SASL credentials (librdkafka reports those only to the
    /// error callback; the metadata request itself would just time out).
    pub(crate) async fn check_reachable(&self, security: &SecurityWatch) -> Result<()> {
        let security_error = |f: SecurityFailure| {
            let ctx = self.config.security_context();
            match f {
                SecurityFailure::Authentication(reason) => authentication_error(&ctx, &reason),
                SecurityFailure::Tls(reason) => tls_error(&ctx, &reason),
            }
        };
        // The request runs on a thread of its own, not tokio's blocking pool: a librdkafka
        // call cannot be cancelled, and one left waiting in the pool after a security
        // failure would hold up the runtime's shutdown, so the process's exit with the
        // error, for the whole request timeout. It asks in short attempts and stops when
        // told: a thread still inside librdkafka when the process exits can crash it
        // (SIGSEGV in its teardown), so a security failure waits for the current attempt.
        let (tx, mut answer) = tokio::sync::oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let client = self.client.clone();
        let timeout = self.timeout();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("kafka-reach".to_owned())
            .spawn(move || {
                let deadline = Instant::now() + timeout;
                let reached = loop {
                    let started = Instant::now();
                    let left = deadline.saturating_duration_since(started);
                    match client.inner().fetch_metadata(None, left.min(REACH_ATTEMPT)) {
                        // As one request of the whole timeout would: librdkafka keeps
                        // connecting meanwhile, and the caller reads why it fails.
                        Err(_) if left > REACH_ATTEMPT && !stopped.load(Ordering::Relaxed) => {
                            std::thread::sleep(REACH_ATTEMPT.saturating_sub(started.elapsed()));
                        }
                        other => break other,
                    }
                };
                // Destroyed here, before the answer lets the caller return.
                drop(client);
                let _ = tx.send(reached.map(drop).map_err(|e| {
                    kafka_err(
                        "fetching cluster metadata failed",
                        format_args!("{e}; {REACH_HINT}"),
                    )
                }));
            })
            .map_err(|e| LogError::Kafka(format!("cannot start a thread: {e}")))?;
        let mut tick = tokio::time::interval(SECURITY_POLL);
        let reached = loop {
            tokio::select! {
                reached = &mut answer => break reached.unwrap_or_else(|_| {
                    Err(LogError::Kafka("the metadata request's thread ended without an answer".to_owned()))
                }),
                _ = tick.tick() => {
                    if let Some(f) = security.last() {
                        stop.store(true, Ordering::Relaxed);
                        let _ = (&mut answer).await;
                        return Err(security_error(f));
                    }
                }
            }
        };
        reached.map(drop).map_err(|e| {
            // A failure seen meanwhile says more than the timeout.
            if let Some(f) = security.last() {
                return security_error(f);
            }
            let e = match e {
                LogError::Kafka(message) => message,
                other => other.to_string(),
            };
            let seen = security
                .last_other()
                .map(|reason| format!(" (last client error: {reason})"))
                .unwrap_or_default();
            LogError::Kafka(format!(
                "cannot reach the Kafka cluster at `{}` within {:?}{seen}: {e}",
                self.config.bootstrap_servers,
                self.timeout()
            ))
        })
    }

    /// Cluster metadata for one topic or for all.
    pub(crate) async fn metadata(&self, topic: Option<&str>) -> Result<Vec<TopicMeta>> {
        let client = self.client.clone();
        let topic = topic.map(str::to_owned);
        let timeout = self.timeout();
        blocking("fetching Kafka metadata", move || {
            fetch_metadata(&client, topic.as_deref(), timeout)
        })
        .await
    }

    /// The metadata of one existing topic, or [`LogError::UnknownTopic`].
    pub(crate) async fn topic(&self, topic: &str) -> Result<TopicMeta> {
        let meta = self
            .metadata(Some(topic))
            .await?
            .into_iter()
            .find(|t| t.name == topic);
        match meta {
            Some(t) if t.error.is_none() && !t.partitions.is_empty() => Ok(t),
            Some(TopicMeta {
                error:
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic),
                ..
            })
            | None => Err(LogError::UnknownTopic(topic.to_owned())),
            Some(TopicMeta {
                error: Some(code), ..
            }) => Err(LogError::Kafka(format!(
                "the cluster reports topic `{topic}` with error {code}; {REACH_HINT}"
            ))),
            Some(_) => Err(LogError::UnknownTopic(topic.to_owned())),
        }
    }

    /// Number of partitions of an existing topic.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic).await?.partitions.len() as u32)
    }

    /// Waits until a created topic shows all its partitions with leaders in the metadata, so
    /// producers and consumers started right after `create_topic` find it.
    async fn wait_visible(&self, name: &str, partitions: u32) -> Result<()> {
        let deadline = Instant::now() + self.timeout();
        loop {
            match self.topic(name).await {
                Ok(t)
                    if t.partitions.len() as u32 == partitions
                        && t.partitions.iter().all(|p| p.1) =>
                {
                    return Ok(());
                }
                Ok(_) | Err(LogError::UnknownTopic(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(VISIBLE_POLL).await;
                }
                Ok(_) | Err(LogError::UnknownTopic(_)) => {
                    return Err(LogError::Kafka(format!(
                        "topic `{name}` was created but did not show {partitions} partitions with \
                         leaders within {:?}; check the brokers' health",
                        self.timeout()
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The topic's `retention.ms` and `retention.bytes`, negative values meaning unlimited.
    async fn retention(&self, topic: &str) -> Result<(Option<Duration>, Option<u64>)> {
        let opts = AdminOptions::new().request_timeout(Some(self.timeout()));
        let results = self
            .client
            .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
            .await
            .map_err(|e| {
                kafka_err(
                    format_args!("describing the configs of topic `{topic}` failed"),
                    e,
                )
            })?;
        let Some(result) = results.into_iter().next() else {
            return Ok((None, None));
        };
        let resource = result.map_err(|code| {
            kafka_err(
                format_args!("describing the configs of topic `{topic}` failed"),
                code,
            )
        })?;
        let number = |name: &str| -> Option<i64> {
            resource
                .get(name)
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let retention = number("retention.ms")
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        let retention_bytes = number("retention.bytes").and_then(|b| u64::try_from(b).ok());
        Ok((retention, retention_bytes))
    }
}

/// The same rule Kafka applies, checked before asking the cluster.
/// A metadata request (blocking).
fn fetch_metadata(
    client: &AdminClient<HeliosContext>,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Vec<TopicMeta>> {
    let md = client.inner().fetch_metadata(topic, timeout).map_err(|e| {
        kafka_err(
            "fetching cluster metadata failed",
            format_args!("{e}; {REACH_HINT}"),
        )
    })?;
    Ok(md
        .topics()
        .iter()
        .map(|t| TopicMeta {
            name: t.name().to_owned(),
            partitions: t
                .partitions()
                .iter()
                .map(|p| (p.id() as u32, p.leader() >= 0))
                .collect(),
            error: t.error().map(Into::into),
        })
        .collect())
}

fn validate_topic_name(name: &str) -> Result<()> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." || !valid_chars {
        return Err(LogError::InvalidTopicName(name.to_owned()));
    }
    Ok(())
}

#[async_trait]
impl LogAdmin for KafkaAdmin {
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        validate_topic_name(&spec.name)?;
        let partitions = i32::try_from(spec.partitions)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                LogError::Config(format!(
                    "topic `{}`: {} partitions; use 1..={}",
                    spec.name,
                    spec.partitions,
                    i32::MAX
                ))
            })?;
        let retention_ms = spec.retention.map(|d| d.as_millis().to_string());
        let retention_bytes = spec.retention_bytes.map(|b| b.to_string());
        let replication = TopicReplication::Fixed(self.config.replication_factor.unwrap_or(-1));
        let mut topic = NewTopic::new(&spec.name, partitions, replication);
        if retention_ms.is_some() || retention_bytes.is_some() {
            // Kafka's default, stated explicitly: some brokers only apply retention to topics
            // that say so.
            topic = topic.set("cleanup.policy", "delete");
        }
        if let Some(ms) = &retention_ms {
            topic = topic.set("retention.ms", ms);
        }
        if let Some(bytes) = &retention_bytes {
            topic = topic.set("retention.bytes", bytes);
        }
        let opts = AdminOptions::new()
            .request_timeout(Some(self.timeout()))
            .operation_timeout(Some(self.timeout()));
        let results = self
            .client
            .create_topics([&topic], &opts)
            .await
            .map_err(|e| {
                kafka_err(
                    format_args!("creating topic `{}` failed", spec.name),
                    format_args!("{e}; {REACH_HINT}"),
                )
            })?;
        match results.into_iter().next() {
            Some(Ok(_)) | None => self.wait_visible(&spec.name, spec.partitions).await,
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                let existing = self.partition_count(&spec.name).await?;
                if existing == spec.partitions {
                    Ok(())
                } else {
                    tracing::warn!(
                        topic = %spec.name,
                        existing,
                        wanted = spec.partitions,
                        "Topic exists with a different partition count"
                    );
                    Err(LogError::TopicConflict(spec.name.clone()))
                }
            }
            Some(Err((_, RDKafkaErrorCode::InvalidTopic))) => {
                Err(LogError::InvalidTopicName(spec.name.clone()))
            }
            Some(Err((
                _,
                code @ (RDKafkaErrorCode::InvalidPartitions
                | RDKafkaErrorCode::InvalidReplicationFactor),
            ))) => Err(LogError::Config(format!(
                "the cluster refused topic `{}` ({} partitions, replication factor {}): {code}; \
                     check kafka.replication_factor against the number of brokers",
                spec.name,
                spec.partitions,
                self.config
                    .replication_factor
                    .map_or_else(|| "broker default".to_owned(), |rf| rf.to_string())
            ))),
            Some(Err((_, code))) => Err(kafka_err(
                format_args!("creating topic `{}` failed", spec.name),
                code,
            )),
        }
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .metadata(None)
            .await?
            .into_iter()
            .filter(|t| t.error.is_none() && !t.name.starts_with("__"))
            .map(|t| t.name)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicInfo> {
        let meta = self.topic(topic).await?;
        let client = self.client.clone();
        let name = topic.to_owned();
        let timeout = self.timeout();
        let mut ids: Vec<u32> = meta.partitions.iter().map(|p| p.0).collect();
        ids.sort_unstable();
        let partitions = blocking("fetching Kafka watermarks", move || {
            ids.into_iter()
                .map(|p| {
                    let (low, high) = client
                        .inner()
                        .fetch_watermarks(&name, p as i32, timeout)
                        .map_err(|e| {
                            kafka_err(
                                format_args!("fetching the offsets of {name}/{p} failed"),
                                format_args!("{e}; {REACH_HINT}"),
                            )
                        })?;
                    Ok(PartitionInfo {
                        partition: p,
                        start_offset: low.max(0) as u64,
                        end_offset: high.max(0) as u64,
                        size_bytes: None,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        let (retention, retention_bytes) = self.retention(topic).await?;
        Ok(TopicInfo {
            name: topic.to_owned(),
            retention,
            retention_bytes,
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in ["a", "helios.events", "A_b-9", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap();
        }
        for bad in ["", ".", "..", "a b", "ü", "a/b", &"x".repeat(250)] {
            assert!(
                validate_topic_name(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
