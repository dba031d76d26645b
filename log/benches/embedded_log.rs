//! Embedded log throughput: append (fsync per batch, fsync off) and read.
//!
//! Run: `cargo bench -p helios-log --bench embedded_log -- [DIR] [MIB] [append|read]`
//! (`bench/log.sh` runs it next to `dd` on the same disk and records the ratio).
//! Prints one JSON object per scenario on stdout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use helios_log::embedded::{EmbeddedConfig, EmbeddedLog, FsyncPolicy};
use helios_log::{ConsumerConfig, Log, Record, TopicSpec};

const RECORD_BYTES: usize = 200;
const BATCH: usize = 1000;

fn main() {
    // `cargo bench` passes `--bench`; positional arguments are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let mib: usize = args.get(1).and_then(|m| m.parse().ok()).unwrap_or(256);
    let only = args.get(2).map(String::as_str);
    let batches = (mib << 20) / (RECORD_BYTES * BATCH);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let scenarios = [
        (
            "append_fsync_per_batch_1_appender",
            FsyncPolicy::EveryBatch,
            1,
        ),
        (
            "append_fsync_per_batch_8_appenders",
            FsyncPolicy::EveryBatch,
            8,
        ),
        (
            "append_fsync_off",
            FsyncPolicy::Interval(Duration::from_secs(3600)),
            1,
        ),
    ];
    for (name, fsync, appenders) in scenarios {
        if only.is_some_and(|o| o != "append") {
            continue;
        }
        let tmp = tempfile::tempdir_in(&dir).expect("temp dir in the bench dir");
        let config = EmbeddedConfig {
            fsync,
            ..EmbeddedConfig::default()
        };
        let log = EmbeddedLog::open(tmp.path(), config).unwrap().log();
        let secs = runtime.block_on(append(&log, batches, appenders));
        report(name, batches * BATCH, secs);
    }
    if only.is_none_or(|o| o == "read") {
        // Written without fsync, then read back from the page cache by one consumer.
        let tmp = tempfile::tempdir_in(&dir).expect("temp dir in the bench dir");
        let config = EmbeddedConfig {
            fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
            ..EmbeddedConfig::default()
        };
        let log = EmbeddedLog::open(tmp.path(), config).unwrap().log();
        runtime.block_on(append(&log, batches, 1));
        let started = Instant::now();
        let n = runtime.block_on(async {
            let mut c = log
                .consumer(&["bench"], ConsumerConfig::new("bench"))
                .await
                .unwrap();
            let mut n = 0usize;
            while n < batches * BATCH {
                n += c.poll(50_000, Duration::from_secs(1)).await.unwrap().len();
            }
            n
        });
        report("read", n, started.elapsed().as_secs_f64());
    }
}

/// Appends `batches` batches from `appenders` concurrent tasks; returns the seconds taken.
async fn append(log: &Log, batches: usize, appenders: usize) -> f64 {
    log.admin()
        .create_topic(&TopicSpec::new("bench", 1))
        .await
        .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let producer = log.producer();
            let batch = records(a);
            let mine = batches / appenders + usize::from(a < batches % appenders);
            tokio::spawn(async move {
                for _ in 0..mine {
                    producer.append("bench", batch.clone()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn records(seed: usize) -> Vec<Record> {
    (0..BATCH)
        .map(|i| {
            let key = format!("subject-{}", (seed + i) % 64);
            let mut value = format!("{seed}-{i}-").into_bytes();
            value.resize(RECORD_BYTES - key.len(), b'v');
            Record {
                key: Some(Bytes::from(key)),
                value: Bytes::from(value),
                ..Record::default()
            }
        })
        .collect()
}

fn report(name: &str, records: usize, secs: f64) {
    let mib = (records * RECORD_BYTES) as f64 / (1 << 20) as f64;
    println!(
        "{{\"scenario\":\"{name}\",\"records\":{records},\"record_bytes\":{RECORD_BYTES},\"batch\":{BATCH},\"seconds\":{secs:.3},\"records_per_s\":{:.0},\"mib_per_s\":{:.1}}}",
        records as f64 / secs,
        mib / secs
    );
}
