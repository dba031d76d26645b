//! The log conformance suite on the embedded segment log.
//!
//! Small segments and a fast retention check so the retention case sees deletions quickly;
//! everything else runs with the defaults `helios up` uses.

use std::time::Duration;

use crate::conformance::Retention;
use helios_log::Log;
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};

async fn open() -> (tempfile::TempDir, Log) {
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

conformance_suite!(open, Retention::Enforced);
