//! The log conformance suite on a Kafka-protocol broker.
//!
//! The broker address comes from `HELIOS_TEST_KAFKA` (default `127.0.0.1:9092`);
//! `scripts/test` starts tansu and sets it (by hand: `eval "$(scripts/services/tansu.sh start)"`).
//! Every test uses fresh, uniquely named topics and groups.

use std::time::Duration;

use crate::conformance::Retention;
use helios_log::Log;
use helios_log::kafka::{KafkaConfig, KafkaLog};

async fn kafka() -> Log {
    let addr = std::env::var("HELIOS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let config = KafkaConfig::new(&addr).request_timeout(Duration::from_secs(10));
    KafkaLog::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "no Kafka-protocol broker at {addr} (from HELIOS_TEST_KAFKA, default 127.0.0.1:9092): {e}\n\
             Run the tests through scripts/test, which starts tansu, or start one with \
             `eval \"$(scripts/services/tansu.sh start)\"` and rerun."
        )
    })
}

async fn open() -> ((), Log) {
    ((), kafka().await)
}

// tansu 0.6 stores retention settings but deletes nothing (its in-memory engine has no
// retention; its SQLite engine only applies `retention.ms` in periodic maintenance and
// never `retention.bytes`).
conformance_suite!(open, Retention::NotEnforced);
