//! The log conformance suite on the embedded segment log.
//!
//! Small segments and a fast retention check so the retention case sees deletions quickly;
//! everything else runs with the defaults `helios up` uses.

mod conformance;

use std::time::Duration;

use conformance::Retention;
use helios_log::Log;
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};

fn embedded() -> (tempfile::TempDir, Log) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EmbeddedConfig {
        segment_bytes: 16 * 1024,
        retention_check_interval: Duration::from_millis(50),
        ..EmbeddedConfig::default()
    };
    let log = EmbeddedLog::open(dir.path(), config)
        .expect("open embedded log")
        .log();
    (dir, log)
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (_dir, log) = embedded();
            conformance::$case(&log, stringify!($case)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention() {
    let (_dir, log) = embedded();
    conformance::retention(&log, "retention", Retention::Enforced).await;
}
