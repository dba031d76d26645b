//! Settings of a Kafka topic bridge source.

use std::collections::BTreeMap;

use helios_log::OffsetReset;
use serde::{Deserialize, Serialize};

use crate::webhook::mapping::{Mapper, MappingSpec, Preset};
use crate::{ConnectorError, Result};

/// How record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// A JSON document per record.
    #[default]
    Json,
    /// Avro in the Confluent wire format (magic byte, schema id, body); the writer
    /// schema comes from `registry_url`.
    Avro,
}

/// `[[source]] type = "kafka_bridge"` in the spec: consume external topics into events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaBridgeConfig {
    /// Name of the source in `/v1/sources`. Default `kafka`.
    pub name: String,
    /// Comma-separated `host:port` brokers of the external cluster. Default
    /// `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Topics to consume (at least one).
    pub topics: Vec<String>,
    /// Consumer group; offsets are committed there. Default `helios-bridge-<name>`.
    pub group: Option<String>,
    /// Where to start when the group has no committed offset: `earliest` (default) or
    /// `latest`.
    pub offset_reset: OffsetReset,
    /// Encoding of record values: `json` (default) or `avro`.
    pub format: ValueFormat,
    /// Confluent-compatible schema registry URL; required for `format = "avro"`.
    pub registry_url: Option<String>,
    /// Records read per poll and committed together. Default 500.
    pub batch_size: usize,
    /// A built-in mapping (`alertmanager`); excludes `mapping`.
    pub preset: Option<Preset>,
    /// How the JSON value becomes events (the generic webhook rules). Unmapped ids are
    /// `topic/partition/offset`; an unmapped time is the record timestamp.
    pub mapping: Option<MappingSpec>,
    /// Extra librdkafka options for the consumer (`security.protocol`, `sasl.*`, ...).
    pub options: BTreeMap<String, String>,
    /// Refuse events dated more than this after Helios received them (they go to the
    /// dead-letter topic with the reason; `POST /v1/events` rejects the item instead), so
    /// one event from the far future cannot move the watermark. Default: the process's
    /// `--max-future` (`HELIOS_MAX_FUTURE`, 15m).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_future: Option<std::time::Duration>,
}

impl Default for KafkaBridgeConfig {
    fn default() -> Self {
        KafkaBridgeConfig {
            name: "kafka".to_string(),
            bootstrap_servers: "127.0.0.1:9092".to_string(),
            topics: Vec::new(),
            group: None,
            offset_reset: OffsetReset::Earliest,
            format: ValueFormat::Json,
            registry_url: None,
            batch_size: 500,
            preset: None,
            mapping: None,
            options: BTreeMap::new(),
            max_future: None,
        }
    }
}

impl KafkaBridgeConfig {
    /// The consumer group.
    pub fn group_name(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("helios-bridge-{}", self.name))
    }

    /// Checks the settings without contacting anything.
    pub fn validate(&self) -> Result<()> {
        self.check(true)
    }

    /// `validate`, except that a schema source given in code may replace `registry_url`.
    pub(crate) fn check(&self, needs_registry_url: bool) -> Result<()> {
        let err = |m: &str| Err(ConnectorError::config(&self.name, m));
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return err("`topics` must list at least one non-empty topic name");
        }
        if self.bootstrap_servers.trim().is_empty() {
            return err("`bootstrap_servers` is empty; give at least one host:port");
        }
        if self.batch_size == 0 {
            return err("`batch_size` must be positive");
        }
        if needs_registry_url && self.format == ValueFormat::Avro && self.registry_url.is_none() {
            return err(
                "format = \"avro\" needs `registry_url`: the writer schemas come from a registry",
            );
        }
        Mapper::new(&self.name, self.preset, self.mapping.as_ref()).map(drop)
    }
}
