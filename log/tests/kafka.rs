//! The log conformance suite on a Kafka-protocol broker.
//!
//! The broker address comes from `HELIOS_TEST_KAFKA` (default `127.0.0.1:9092`);
//! `scripts/test` starts tansu and sets it (by hand: `eval "$(scripts/services/tansu.sh start)"`).
//! Every test uses fresh, uniquely named topics and groups.

mod conformance;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conformance::Retention;
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

/// A topic/group prefix unique to this test and run.
fn prefix(case: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("helios-test.{case}.{}-{nanos}", std::process::id())
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let log = kafka().await;
            conformance::$case(&log, &prefix(stringify!($case))).await;
        }
    )*};
}

cases!(
    append_and_read,
    explicit_partition_and_keyless,
    seek_offsets,
    seek_timestamps,
    group_sharing,
    commit_and_resume,
    offset_reset,
    admin,
);

/// tansu 0.6 stores retention settings but deletes nothing here (its in-memory engine has no
/// retention; its SQLite engine only applies `retention.ms` in periodic maintenance and never
/// `retention.bytes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention() {
    let log = kafka().await;
    conformance::retention(&log, &prefix("retention"), Retention::NotEnforced).await;
}
