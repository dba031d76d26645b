//! Settings of the Kafka backend.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{LogError, Result};

/// Client options the backend sets itself because its guarantees depend on them; they cannot
/// be overridden through [`KafkaConfig::options`].
const RESERVED_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "partitioner",
];

/// How Helios reaches a Kafka-protocol cluster (Apache Kafka, Redpanda, tansu, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,

    /// Client id the brokers see in their logs and metrics.
    pub client_id: String,

    /// Upper bound, in milliseconds, on one admin or metadata request (create topic, list,
    /// describe, seek lookups, commits) and on the connectivity check in
    /// [`super::KafkaLog::connect`].
    pub request_timeout_ms: u64,

    /// How long, in milliseconds, an append may take in total, retries included, before it
    /// fails (librdkafka `message.timeout.ms`).
    pub delivery_timeout_ms: u64,

    /// How long, in milliseconds, the producer waits to fill a batch (librdkafka `linger.ms`).
    pub linger_ms: u64,

    /// Replication factor of topics created through the admin side; `None` leaves it to the
    /// broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,

    /// Extra librdkafka client options (`security.protocol`, `sasl.*`, `ssl.*`,
    /// `compression.type`, ...) applied to the producer, consumers and admin client after the
    /// backend's defaults. Options the backend depends on (`group.id`, `enable.auto.commit`,
    /// `enable.idempotence`, `acks`, `partitioner`, `bootstrap.servers`) are rejected.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            client_id: "helios".to_owned(),
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 60_000,
            linger_ms: 5,
            replication_factor: None,
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Defaults with the given bootstrap servers.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            ..KafkaConfig::default()
        }
    }

    /// Adds an extra librdkafka option (see [`KafkaConfig::options`]).
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Sets [`KafkaConfig::request_timeout_ms`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Checks the settings without contacting any broker.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(LogError::Config(
                "kafka.bootstrap_servers is empty; give at least one host:port".to_owned(),
            ));
        }
        for (name, value) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("delivery_timeout_ms", self.delivery_timeout_ms),
        ] {
            if value == 0 || value > i32::MAX as u64 {
                return Err(LogError::Config(format!(
                    "kafka.{name} = {value} is out of range; use 1..={}",
                    i32::MAX
                )));
            }
        }
        if let Some(rf) = self.replication_factor
            && rf < 1
        {
            return Err(LogError::Config(format!(
                "kafka.replication_factor = {rf}; use at least 1, or leave it unset for the broker default"
            )));
        }
        for key in self.options.keys() {
            if RESERVED_OPTIONS.contains(&key.as_str()) {
                return Err(LogError::Config(format!(
                    "kafka.options.{key} is set by Helios itself and cannot be overridden"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn request_timeout_duration(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The librdkafka settings shared by every client.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("socket.timeout.ms", self.request_timeout_ms.to_string())
            // Surface configuration problems through `tracing` rather than stderr.
            .set("log.connection.close", "false");
        c
    }

    /// Applies [`KafkaConfig::options`] last.
    pub(crate) fn apply_options(&self, c: &mut rdkafka::ClientConfig) {
        for (k, v) in &self.options {
            c.set(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        KafkaConfig::default().validate().unwrap();
        KafkaConfig::new("a:1,b:2").validate().unwrap();
    }

    #[test]
    fn rejects_bad_settings() {
        let check = |c: KafkaConfig, needle: &str| {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        };
        check(KafkaConfig::new(" "), "bootstrap_servers");
        check(KafkaConfig::new("a:1").option("group.id", "x"), "group.id");
        check(
            KafkaConfig::new("a:1").option("enable.auto.commit", "true"),
            "enable.auto.commit",
        );
        let mut c = KafkaConfig::new("a:1");
        c.replication_factor = Some(0);
        check(c, "replication_factor");
        let mut c = KafkaConfig::new("a:1");
        c.request_timeout_ms = 0;
        check(c, "request_timeout_ms");
    }

    #[test]
    fn deserializes_with_defaults_and_denies_unknown_fields() {
        let c: KafkaConfig = serde_json::from_str(
            r#"{"bootstrap_servers":"k:9092","options":{"compression.type":"lz4"}}"#,
        )
        .unwrap();
        assert_eq!(c.bootstrap_servers, "k:9092");
        assert_eq!(c.linger_ms, 5);
        assert_eq!(c.options["compression.type"], "lz4");
        assert!(serde_json::from_str::<KafkaConfig>(r#"{"bootstrap":"k"}"#).is_err());
    }
}
