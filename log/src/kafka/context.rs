//! The librdkafka client context: routes librdkafka's own logs and errors to `tracing`, and
//! remembers the security failures (TLS, SASL) a connect must report.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::TopicPartitionList;

/// A failure that retrying with the same settings cannot fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecurityFailure {
    /// The brokers refused the SASL credentials (librdkafka `_AUTHENTICATION`).
    Authentication(String),
    /// The TLS handshake failed (librdkafka `_SSL`).
    Tls(String),
}

/// What the clients of one [`super::KafkaLog`] last heard from librdkafka's error callback:
/// the only place it reports why a broker connection failed (a metadata request just times
/// out), so `KafkaLog::connect` checks it while it waits for the cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct SecurityWatch(Arc<Mutex<Seen>>);

#[derive(Debug, Default)]
struct Seen {
    failure: Option<SecurityFailure>,
    other: Option<String>,
}

impl SecurityWatch {
    /// The last security failure seen, if any.
    pub(crate) fn last(&self) -> Option<SecurityFailure> {
        self.seen().failure.clone()
    }

    /// The last other client error (e.g. a refused connection), if any.
    pub(crate) fn last_other(&self) -> Option<String> {
        self.seen().other.clone()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, error: &KafkaError, reason: &str) {
        let lower = reason.to_ascii_lowercase();
        let failure = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => {
                SecurityFailure::Authentication(reason.to_owned())
            }
            Some(RDKafkaErrorCode::SSL) => SecurityFailure::Tls(reason.to_owned()),
            // A TLS 1.3 server checks the client's certificate after the client's side of
            // the handshake is done: the refusal arrives as an alert on the first read.
            _ if lower.contains("ssl") && lower.contains("alert") => {
                SecurityFailure::Tls(reason.to_owned())
            }
            // "n/m brokers are down" follows the error that says why; keep that one.
            Some(RDKafkaErrorCode::AllBrokersDown) => return,
            _ => {
                self.seen().other = Some(reason.to_owned());
                return;
            }
        };
        self.seen().failure = Some(failure);
    }
}

/// Context shared by every client of the backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeliosContext {
    security: SecurityWatch,
}

impl HeliosContext {
    pub(crate) fn new(security: SecurityWatch) -> Self {
        HeliosContext { security }
    }
}

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
        self.security.record(&error, reason);
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error");
    }
}

/// The context of a consumer-group member: [`HeliosContext`]'s logging, and what the
/// member's rebalances did (see `KafkaConsumer::rejoin_if_stale`).
#[derive(Debug, Default)]
pub(crate) struct MemberContext {
    base: HeliosContext,
    /// The partitions given up by the last revoke, until the assignment that follows.
    revoked: Mutex<Option<BTreeSet<(String, i32)>>>,
    /// Set when an assignment handed back exactly the partitions just revoked.
    stale: AtomicBool,
}

impl MemberContext {
    pub(crate) fn new(base: HeliosContext) -> Self {
        MemberContext {
            base,
            ..MemberContext::default()
        }
    }

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
        self.base.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.base.error(error, reason);
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
