//! The librdkafka client context: routes librdkafka's own logs and errors to `tracing`.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;

/// Context shared by every client of the backend.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeliosContext;

impl ClientContext for HeliosContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, message, "librdkafka error")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility, message, "librdkafka warning")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, message, "librdkafka notice")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility, message, "librdkafka debug")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for HeliosContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::debug!(
                    partitions = tpl.count(),
                    "Kafka consumer partitions assigned"
                )
            }
            Rebalance::Revoke(tpl) => {
                tracing::debug!(
                    partitions = tpl.count(),
                    "Kafka consumer partitions revoked"
                )
            }
            Rebalance::Error(error) => {
                tracing::warn!(%error, "Kafka consumer rebalance failed")
            }
        }
    }
}
