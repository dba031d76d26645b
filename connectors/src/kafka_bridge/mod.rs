//! The Kafka topic bridge: a pull source consuming external topics (any Kafka-protocol
//! cluster, as a consumer group) and mapping their records to events with the same rules
//! as the generic webhooks ([`crate::webhook::mapping`]).
//!
//! Values are JSON, or Avro in the Confluent wire format decoded with the writer schema
//! from a registry and turned into JSON before mapping. A record that cannot be decoded or
//! mapped goes to the dead-letter topic (id `topic/partition/offset`). Offsets are
//! committed only after the batch's events and dead letters are durable, so a crash
//! repeats records (deduplicated downstream by their ids) but never loses one.

mod config;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use async_trait::async_trait;
use helios_log::kafka::KafkaLog;
use helios_log::{ConsumedRecord, ConsumerConfig, LogConsumer, TopicPartition};
use helios_schemas::{RemoteRegistry, SchemaSource, wire};
use serde_json::Value;
use tracing::{debug, info};

pub use config::{KafkaBridgeConfig, ValueFormat};

use crate::runtime::{PullSource, SourceContext, now_micros};
use crate::secret::SecretString;
use crate::webhook::mapping::{Input, Mapper};
use crate::{ConnectorError, Result};

/// One run of a bridge source.
pub struct KafkaBridge {
    config: KafkaBridgeConfig,
    /// The SASL password, read when the run starts (never printed).
    password: Option<helios_log::kafka::Secret>,
    mapper: Mapper,
    schemas: Option<Arc<dyn SchemaSource>>,
}

impl std::fmt::Debug for KafkaBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBridge")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaBridge {
    /// A bridge reading Avro schemas from `config.registry_url` (Avro values only).
    pub fn new(config: KafkaBridgeConfig) -> Result<Self> {
        let schemas: Option<Arc<dyn SchemaSource>> = match (&config.format, &config.registry_url) {
            (ValueFormat::Avro, Some(url)) => {
                // `with_schemas` checks the rest of the settings; the key's own origin is
                // checked as it is read.
                let key = config.resolve_registry_key()?;
                let registry = RemoteRegistry::connect(
                    url,
                    key.as_ref().map(SecretString::expose),
                    &config.registry_tls,
                )
                .map_err(|e| {
                    ConnectorError::config(&config.name, format!("`registry_url`: {e}"))
                })?;
                Some(Arc::new(registry))
            }
            _ => None,
        };
        Self::with_schemas(config, schemas)
    }

    /// A bridge with an explicit schema source (the embedded registry, or a test's).
    pub fn with_schemas(
        config: KafkaBridgeConfig,
        schemas: Option<Arc<dyn SchemaSource>>,
    ) -> Result<Self> {
        config.check(schemas.is_none())?;
        if config.format == ValueFormat::Avro && schemas.is_none() {
            return Err(ConnectorError::config(
                &config.name,
                "format = \"avro\" needs `registry_url`: the writer schemas come from a registry",
            ));
        }
        let mapper = Mapper::new(&config.name, config.preset, config.mapping.as_ref())?;
        config.check_files()?;
        let password = config.resolve_sasl_password()?;
        Ok(KafkaBridge {
            config,
            password,
            mapper,
            schemas,
        })
    }

    /// The record's value as JSON (and its text), or why it cannot be read.
    async fn decode(&self, value: &[u8]) -> std::result::Result<(Value, String), String> {
        match self.config.format {
            ValueFormat::Json => {
                let doc: Value = serde_json::from_slice(value)
                    .map_err(|e| format!("the value is not JSON: {e}"))?;
                let text = String::from_utf8_lossy(value).into_owned();
                Ok((doc, text))
            }
            ValueFormat::Avro => {
                let (id, mut body) = wire::split(value)
                    .map_err(|e| format!("the value is not Confluent-framed Avro: {e}"))?;
                let schemas = self
                    .schemas
                    .as_ref()
                    .ok_or_else(|| "no schema registry configured".to_string())?;
                let schema = schemas
                    .schema_by_id(id)
                    .await
                    .map_err(|e| format!("schema id {id} could not be fetched: {e}"))?;
                let reader = GenericDatumReader::builder(&schema)
                    .build()
                    .map_err(|e| format!("schema id {id} is unusable: {e}"))?;
                let avro = reader
                    .read_value(&mut body)
                    .map_err(|e| format!("the Avro body does not match schema id {id}: {e}"))?;
                let doc = Value::try_from(avro)
                    .map_err(|e| format!("the Avro value has no JSON form: {e}"))?;
                let text = doc.to_string();
                Ok((doc, text))
            }
        }
    }

    /// Maps one record, or says why it cannot be.
    async fn map_record(
        &self,
        r: &ConsumedRecord,
        received_at: i64,
    ) -> std::result::Result<Vec<helios_schemas::Event>, String> {
        let (doc, text) = self.decode(&r.value).await?;
        let seed = record_id(r);
        let input = Input {
            raw: &text,
            id_seed: &seed,
            received_at,
            default_time: if r.timestamp_ms > 0 {
                r.timestamp_ms.saturating_mul(1000)
            } else {
                received_at
            },
        };
        self.mapper.map(&doc, &input).map_err(|e| e.to_string())
    }
}

/// `topic/partition/offset`: the record's identity, used for derived event ids and dead
/// letters.
fn record_id(r: &ConsumedRecord) -> String {
    format!("{}/{}/{}", r.topic, r.partition, r.offset)
}

#[async_trait]
impl PullSource for KafkaBridge {
    async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        let name = ctx.name().to_string();
        let kafka = self
            .config
            .kafka_config(format!("helios-bridge-{name}"), self.password.clone());
        let log = KafkaLog::connect(kafka).await.map_err(|e| {
            ConnectorError::external(&name, format!("cannot reach the Kafka cluster: {e}"))
        })?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        let group = self.config.group_name();
        let mut consumer = log
            .consumer(
                &topics,
                ConsumerConfig::new(&group).offset_reset(self.config.offset_reset),
            )
            .await
            .map_err(|e| {
                ConnectorError::external(&name, format!("cannot join group {group}: {e}"))
            })?;
        info!(source = %name, topics = ?self.config.topics, group = %group, "Kafka bridge consuming.");
        loop {
            let batch = tokio::select! {
                b = consumer.poll(self.config.batch_size, Duration::from_millis(500)) => b,
                () = ctx.stopped() => return Ok(()),
            };
            let batch = batch
                .map_err(|e| ConnectorError::external(&name, format!("polling failed: {e}")))?;
            if batch.is_empty() {
                continue;
            }
            self.process(ctx, consumer.as_mut(), &batch).await?;
        }
    }
}

impl KafkaBridge {
    /// Maps a batch, writes its events and dead letters, then commits its offsets.
    async fn process(
        &self,
        ctx: &SourceContext,
        consumer: &mut dyn LogConsumer,
        batch: &[ConsumedRecord],
    ) -> Result<()> {
        let received_at = now_micros();
        let mut events = Vec::with_capacity(batch.len());
        let mut next: BTreeMap<TopicPartition, u64> = BTreeMap::new();
        for r in batch {
            match self.map_record(r, received_at).await {
                Ok(mapped) => events.extend(mapped),
                Err(reason) => {
                    ctx.dead_letter(record_id(r), r.value.to_vec(), reason)
                        .await?;
                }
            }
            let slot = next.entry(r.topic_partition()).or_default();
            *slot = (*slot).max(r.offset + 1);
        }
        ctx.emit(&events).await?;
        let offsets: Vec<(TopicPartition, u64)> = next.into_iter().collect();
        consumer.commit(&offsets).await.map_err(|e| {
            ConnectorError::external(ctx.name(), format!("committing offsets failed: {e}"))
        })?;
        debug!(
            source = ctx.name(),
            records = batch.len(),
            events = events.len(),
            "Bridged a batch."
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
