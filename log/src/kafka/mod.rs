//! The Kafka backend: the log traits on any Kafka-protocol cluster through rdkafka.
//!
//! [`KafkaLog::connect`] checks the cluster is reachable and returns a [`Log`] made of three
//! parts, each its own librdkafka client:
//!
//! - the producer ([`producer`]): one idempotent `FutureProducer` (`acks=all`,
//!   `partitioner=murmur2_random` so keys land on [`crate::partition_for_key`], keyless records
//!   spread per record rather than sticky batches);
//! - the admin side ([`admin`]): an `AdminClient` for topic creation plus metadata, watermark
//!   and config lookups;
//! - consumers ([`consumer`]): one `StreamConsumer` per group member, manual commits only.
//!
//! librdkafka calls that block (metadata, watermarks, commits, seeks) run on tokio's blocking
//! pool so they never stall the async workers.
//!
//! TLS and SASL ([`security`]): librdkafka is built with Debian's OpenSSL (ADR-017); the
//! settings are [`KafkaConfig`]'s, and a refused handshake or login fails the connect at
//! once with [`LogError::KafkaTls`] or [`LogError::KafkaAuthentication`].

mod admin;
mod config;
mod consumer;
mod context;
mod naming;
mod producer;
mod security;

use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use config::KafkaConfig;
pub use naming::Naming;
pub use security::{Pem, SaslMechanism, Secret, SecurityProtocol, check_pem_file};

use crate::{Log, LogError, Result};

/// Entry point of the Kafka backend.
#[derive(Debug)]
pub struct KafkaLog;

impl KafkaLog {
    /// Validates `config`, checks its TLS files and reads its password file, creates the
    /// clients and checks the cluster answers a metadata request within
    /// [`KafkaConfig::request_timeout_ms`]. A refused TLS handshake or SASL login fails at
    /// once with [`LogError::KafkaTls`] or [`LogError::KafkaAuthentication`].
    pub async fn connect(mut config: KafkaConfig) -> Result<Log> {
        config.validate()?;
        config.load_security_files()?;
        let config = Arc::new(config);
        let security = context::SecurityWatch::default();
        let context = context::HeliosContext::new(security.clone());
        let admin = Arc::new(admin::KafkaAdmin::new(config.clone(), context.clone())?);
        // The producer connects at once (its idempotence needs a producer id), and its
        // polling thread is what delivers librdkafka's error events, TLS and SASL failures
        // among them, while the metadata request below waits.
        let producer = Arc::new(producer::KafkaProducer::new(
            &config,
            admin.clone(),
            context,
        )?);
        admin.check_reachable(&security).await?;
        let consumers = Arc::new(consumer::KafkaConsumerFactory::new(config, security));
        Ok(Log::from_parts(producer, admin, consumers))
    }
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
async fn blocking<T, F>(what: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Kafka(format!("{what}: the blocking task failed: {e}")))?
}

/// The librdkafka error code inside `err`, when there is one.
fn error_code(err: &KafkaError) -> Option<RDKafkaErrorCode> {
    err.rdkafka_error_code()
}

/// Wraps a librdkafka error with what we were doing and a hint.
fn kafka_err(context: impl std::fmt::Display, err: impl std::fmt::Display) -> LogError {
    LogError::Kafka(format!("{context}: {err}"))
}

/// Hint appended to errors that usually mean the cluster cannot be reached.
const REACH_HINT: &str =
    "check that the brokers in kafka.bootstrap_servers are running and reachable";
