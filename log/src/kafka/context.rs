//! The librdkafka client context: routes librdkafka's own logs and errors to `tracing`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;

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

/// The context of a consumer-group member: [`HeliosContext`]'s logging, and what the
/// member's rebalances did (see `KafkaConsumer::rejoin_if_stale`).
#[derive(Debug, Default)]
pub(crate) struct MemberContext {
    /// The partitions given up by the last revoke, until the assignment that follows.
    revoked: Mutex<Option<BTreeSet<(String, i32)>>>,
    /// Set when an assignment handed back exactly the partitions just revoked.
    stale: AtomicBool,
}

impl MemberContext {
    /// Whether a rebalance handed back exactly what it revoked since the last call.
    pub(crate) fn take_stale(&self) -> bool {
        self.stale.swap(false, Ordering::Relaxed)
    }
}

fn partitions(tpl: &TopicPartitionList) -> BTreeSet<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for MemberContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        HeliosContext.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        HeliosContext.error(error, reason);
    }
}

impl ConsumerContext for MemberContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::debug!(
                    partitions = tpl.count(),
                    "Kafka consumer partitions assigned"
                );
                let assigned = partitions(tpl);
                if revoked
                    .take()
                    .is_some_and(|r| !r.is_empty() && r == assigned)
                {
                    self.stale.store(true, Ordering::Relaxed);
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::debug!(
                    partitions = tpl.count(),
                    "Kafka consumer partitions revoked"
                );
                *revoked = Some(partitions(tpl));
            }
            Rebalance::Error(error) => {
                tracing::warn!(%error, "Kafka consumer rebalance failed")
            }
        }
    }
}
