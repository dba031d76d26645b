//! The sink loop on the embedded Parquet store, queried with DataFusion: rows land in the
//! same tables as in ClickHouse, a replay leaves query results unchanged, compaction and
//! retention keep the results, and a crash's leftovers are ignored.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use helios_log::Record;
use helios_sinks::parquet::query::{self, collect, pretty, scalar_u64};
use helios_sinks::parquet::{ParquetConfig, ParquetStore};
use helios_sinks::{AggregateSpec, Retention, SinkConfig, StoreSpec};

fn open_store(dir: &Path, spec: StoreSpec) -> ParquetStore {
    ParquetStore::open(ParquetConfig::new(dir), spec).unwrap()
}

fn start_parquet_sink(stage: &Stage, store: &ParquetStore, config: SinkConfig) -> Running {
    start_sink(stage, Arc::new(store.clone()), config)
}

/// Every table as the deduplicating views show it, ordered by id.
async fn snapshot(store: &ParquetStore) -> Vec<String> {
    let ctx = store.session().await.unwrap();
    let mut out = Vec::new();
    for (table, order) in [
        ("events", "id"),
        ("agg_ci_runs", "id"),
        ("alerts", "id"),
        ("insights", "id"),
        ("dead_letters", "id"),
        ("late_events", "late_id"),
    ] {
        out.push(
            pretty(&ctx, &format!("SELECT * FROM {table} ORDER BY {order}"))
                .await
                .unwrap(),
        );
    }
    out
}

async fn count(store: &ParquetStore, sql: &str) -> u64 {
    let ctx = store.session().await.unwrap();
    scalar_u64(&ctx, sql).await.unwrap()
}

fn parquet_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in walk(dir) {
        if entry.extension().is_some_and(|x| x == "parquet") {
            n += 1;
        }
    }
    n
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_stream_lands_in_the_same_tables_as_clickhouse() {
    let stage = Stage::new().await;
    let s = scripted_stream();
    stage.write(&s).await;
    stage
        .append(EVENTS, vec![Record::keyed("bad", b"not avro".to_vec())])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), spec());
    let sink = start_parquet_sink(&stage, &store, sink_config("landing"));
    flushed(&sink.metrics, script_rows(&s) + 1).await;
    sink.stop().await;

    let ctx = store.session().await.unwrap();
    assert_eq!(
        scalar_u64(&ctx, "SELECT count(*) FROM events")
            .await
            .unwrap(),
        30
    );
    assert_eq!(
        scalar_u64(&ctx, "SELECT count(*) FROM events WHERE source = 'github'")
            .await
            .unwrap(),
        15
    );
    // Every field of an event survives, attrs as parallel arrays like in ClickHouse.
    let one = pretty(
        &ctx,
        "SELECT id, kind, subject, time, attr_keys, attr_values, value, payload \
         FROM events WHERE id = 'ev-github-6'",
    )
    .await
    .unwrap();
    assert!(one.contains("| ev-github-6 | ci.run | repo-0  | 1767225606000000 | [branch, n] | [main, 6]   | 9.0   | {\"i\":6} |"), "{one}");
    // Aggregates: one row per window id, the newest version.
    let windows = pretty(
        &ctx,
        "SELECT id, repo, duration_sum, \"count\", version, \"final\" FROM agg_ci_runs ORDER BY window_start, id",
    )
    .await
    .unwrap();
    let expected = "\
+-----------------------+--------+--------------+-------+---------+-------+
| id                    | repo   | duration_sum | count | version | final |
+-----------------------+--------+--------------+-------+---------+-------+
| ci_runs|repo=atlas|0  | atlas  | 5.0          | 1     | 1       | 0     |
| ci_runs|repo=helios|0 | helios | 30.0         | 3     | 2       | 1     |
| ci_runs|repo=helios|1 | helios | 7.0          | 1     | 1       | 0     |
+-----------------------+--------+--------------+-------+---------+-------+";
    assert_eq!(windows, expected);
    // Alerts: the latest state of each.
    let alerts = pretty(&ctx, "SELECT id, state FROM alerts ORDER BY id")
        .await
        .unwrap();
    assert!(
        alerts.contains("| ci_failing|repo=atlas|1  | firing   |")
            && alerts.contains("| ci_failing|repo=helios|1 | resolved |"),
        "{alerts}"
    );
    assert_eq!(
        scalar_u64(&ctx, "SELECT count(*) FROM insights")
            .await
            .unwrap(),
        3
    );
    // The garbage record became a dead letter of this sink, next to the one from the topic.
    let dl = pretty(&ctx, "SELECT stage, topic FROM dead_letters ORDER BY stage")
        .await
        .unwrap();
    assert!(
        dl.contains("| ingest       |") && dl.contains("| sink/parquet | helios.events |"),
        "{dl}"
    );
    // Late events: the event's columns, the aggregate (or rule), the window from the
    // aggregate's spec and the lateness from the watermark in the record; as on ClickHouse.
    let late = pretty(
        &ctx,
        "SELECT aggregate, id, subject, time, window_start, window_end, late_by, late_id \
         FROM late_events ORDER BY aggregate, time, late_id",
    )
    .await
    .unwrap();
    let expected = "\
+-----------------+-------------+---------+------------------+------------------+------------------+-----------+---------------------------------------------------+
| aggregate       | id          | subject | time             | window_start     | window_end       | late_by   | late_id                                           |
+-----------------+-------------+---------+------------------+------------------+------------------+-----------+---------------------------------------------------+
| ci_runs         | ev-ci-7     | repo-1  | 1767225607000000 | 1767225600000000 | 1767225660000000 | 180000000 | pipeline/late/ci_runs/helios.events/0/107         |
| ci_runs         | ev-github-8 | repo-2  | 1767225608000000 | 1767225600000000 | 1767225660000000 | 300000000 | pipeline/late/ci_runs/helios.events/0/108         |
| rule/ci_failing | ev-ci-7     | repo-1  | 1767225607000000 |                  |                  | 120000000 | pipeline/late/rule/ci_failing/helios.events/0/107 |
+-----------------+-------------+---------+------------------+------------------+------------------+-----------+---------------------------------------------------+";
    assert_eq!(late, expected);
    // Files sit in day folders of the time column.
    assert!(dir.path().join("events/day=2026-01-01").is_dir());
    assert!(dir.path().join("late_events/day=2026-01-01").is_dir());
}

/// Done-when 3 on the embedded store: the same output records replayed (as after a crash,
/// by a member that lost its offsets) leave every query result unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_same_records_leaves_results_unchanged() {
    let stage = Stage::new().await;
    let s = scripted_stream();
    stage.write(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), spec());
    let first = start_parquet_sink(&stage, &store, sink_config("replay-1"));
    flushed(&first.metrics, script_rows(&s)).await;
    first.stop().await;
    let before = snapshot(&store).await;

    stage.write(&s).await;
    let second = start_parquet_sink(&stage, &store, sink_config("replay-2"));
    flushed(&second.metrics, 2 * script_rows(&s)).await;
    second.stop().await;

    let after = snapshot(&store).await;
    assert_eq!(after, before);
    assert_eq!(count(&store, "SELECT count(*) FROM events").await, 30);
    assert_eq!(count(&store, "SELECT count(*) FROM late_events").await, 3);
    assert_eq!(
        count(&store, "SELECT count(*) FROM raw.late_events").await,
        9
    );
    // The copies are on disk (three of each event); the views keep one.
    assert_eq!(count(&store, "SELECT count(*) FROM raw.events").await, 90);
    assert_eq!(
        count(&store, "SELECT count(DISTINCT id) FROM raw.events").await,
        30
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_merges_small_files_and_keeps_results() {
    let stage = Stage::new().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), spec());
    let sink = start_parquet_sink(&stage, &store, sink_config("compact"));
    // Ten flushes, ten small files in one day of events.
    for round in 0..10 {
        let part = Script {
            events: (round * 5..round * 5 + 5).map(|i| event(i, "ci")).collect(),
            ..Script::default()
        };
        stage.write(&part).await;
        flushed(&sink.metrics, (round as u64 + 1) * 5).await;
    }
    sink.stop().await;
    let day = dir.path().join("events/day=2026-01-01");
    let files = parquet_files(&day);
    assert!(files >= 10, "{files}");
    let before = snapshot(&store).await;

    assert_eq!(store.compact_now().await.unwrap(), files);
    assert_eq!(parquet_files(&day), 1);
    assert_eq!(snapshot(&store).await, before);
    assert_eq!(count(&store, "SELECT count(*) FROM raw.events").await, 50);
    // Nothing left to merge.
    assert_eq!(store.compact_now().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measure_added_to_the_spec_reads_as_null_in_old_files() {
    let stage = Stage::new().await;
    let dir = tempfile::tempdir().unwrap();
    let small = StoreSpec {
        aggregates: vec![AggregateSpec::new("ci_runs", &["repo"], &["duration_sum"])],
        ..StoreSpec::default()
    };
    let mut old = window("helios", 0, 1, 3.0, 1);
    old.measures.remove("duration_max");
    stage
        .write(&Script {
            windows: vec![old],
            ..Script::default()
        })
        .await;
    let store = open_store(dir.path(), small);
    let sink = start_parquet_sink(&stage, &store, sink_config("evolve"));
    flushed(&sink.metrics, 1).await;
    sink.stop().await;

    let store = open_store(dir.path(), spec());
    let ctx = store.session().await.unwrap();
    let got = pretty(
        &ctx,
        "SELECT id, duration_sum, duration_max FROM agg_ci_runs",
    )
    .await
    .unwrap();
    assert!(
        got.contains("| ci_runs|repo=helios|0 | 3.0          |              |"),
        "{got}"
    );
    // And compaction of old and new files shapes them to the new columns.
    let config = ParquetConfig {
        compact_min_files: 2,
        ..ParquetConfig::new(dir.path())
    };
    let store = ParquetStore::open(config, spec()).unwrap();
    let sink = start_parquet_sink(&stage, &store, sink_config("evolve-2"));
    stage
        .write(&Script {
            windows: vec![window("helios", 0, 2, 9.0, 2)],
            ..Script::default()
        })
        .await;
    flushed(&sink.metrics, 2).await;
    sink.stop().await;
    assert!(store.compact_now().await.unwrap() >= 2);
    let ctx = store.session().await.unwrap();
    let got = pretty(
        &ctx,
        "SELECT duration_sum, duration_max, version FROM agg_ci_runs",
    )
    .await
    .unwrap();
    assert!(
        got.contains("| 9.0          | 4.5          | 2       |"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_crash_are_ignored_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), spec());
    let day = dir.path().join("events/day=2026-01-01");
    std::fs::create_dir_all(&day).unwrap();
    let tmp = day.join("part-1-1-000000.parquet.tmp");
    std::fs::write(&tmp, b"PAR1 half a file").unwrap();
    assert_eq!(count(&store, "SELECT count(*) FROM events").await, 0);
    drop(store);
    let _store = open_store(dir.path(), spec());
    assert!(!tmp.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_days_past_the_cutoff() {
    let stage = Stage::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut recent = event(1, "ci");
    recent.id = "recent".into();
    recent.time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    stage
        .write(&Script {
            events: vec![event(0, "ci"), recent],
            ..Script::default()
        })
        .await;
    let spec = StoreSpec {
        retention: Retention {
            events: Some(Duration::from_secs(7 * 86_400)),
            ..Retention::default()
        },
        ..spec()
    };
    let store = open_store(dir.path(), spec);
    let sink = start_parquet_sink(&stage, &store, sink_config("retention"));
    flushed(&sink.metrics, 2).await;
    sink.stop().await;
    let removed = store.expire_now().await.unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    let ctx = store.session().await.unwrap();
    let ids = collect(&ctx, "SELECT id FROM events").await.unwrap();
    assert_eq!(ids.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(
        query::scalar_u64(&ctx, "SELECT count(*) FROM events WHERE id = 'recent'")
            .await
            .unwrap(),
        1
    );
}

/// Issue 12: an event is `(source, id)`. Two sources using one id both show; one source's
/// repeated delivery of it is one row, the last received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_identified_by_source_and_id() {
    let stage = Stage::new().await;
    let s = shared_id_events();
    stage.write(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), spec());
    let sink = start_parquet_sink(&stage, &store, sink_config("identity"));
    flushed(&sink.metrics, script_rows(&s)).await;
    sink.stop().await;
    let ctx = store.session().await.unwrap();
    let rows = pretty(
        &ctx,
        "SELECT source, id, time FROM events WHERE id = 'shared-1' ORDER BY source",
    )
    .await
    .unwrap();
    let expected = "\
+--------+----------+------------------+
| source | id       | time             |
+--------+----------+------------------+
| ci     | shared-1 | 1767225603000000 |
| github | shared-1 | 1767225601000000 |
+--------+----------+------------------+";
    assert_eq!(rows, expected);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM raw.events WHERE id = 'shared-1'"
        )
        .await,
        4
    );
}

/// With a size cap, the store's files stay within it as days of events arrive: the
/// oldest days go first, each table keeps its newest day, and `usage` reports per table
/// what is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_cap_keeps_the_store_within_it_oldest_days_first() {
    let stage = Stage::new().await;
    let dir = tempfile::tempdir().unwrap();
    let cap: u64 = 64 * 1024;
    let config = ParquetConfig::new(dir.path()).max_bytes(Some(cap));
    let store = ParquetStore::open(config, spec()).unwrap();
    let sink = start_parquet_sink(&stage, &store, sink_config("capped"));
    const DAYS: usize = 30;
    const PER_DAY: usize = 200;
    let mut written = 0u64;
    for day in 0..DAYS {
        let events = (0..PER_DAY)
            .map(|i| {
                let mut e = event(day * PER_DAY + i, "ci");
                e.time += day as i64 * 86_400_000_000;
                e
            })
            .collect();
        stage
            .write(&Script {
                events,
                ..Script::default()
            })
            .await;
        written += PER_DAY as u64;
        flushed(&sink.metrics, written).await;
        let on_disk: u64 = walk(dir.path())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(
            on_disk <= cap,
            "after day {day}: {on_disk} bytes on disk, cap {cap}"
        );
    }
    sink.stop().await;
    let ctx = store.session().await.unwrap();
    let kept = query::scalar_u64(&ctx, "SELECT count(*) FROM events")
        .await
        .unwrap();
    assert!(
        kept > 0 && kept < written,
        "old days went, recent ones stayed: {kept}"
    );
    let newest = format!("ev-ci-{}", DAYS * PER_DAY - 1);
    assert_eq!(
        query::scalar_u64(
            &ctx,
            &format!("SELECT count(*) FROM events WHERE id = '{newest}'")
        )
        .await
        .unwrap(),
        1
    );
    let usage = helios_sinks::parquet::usage(dir.path()).unwrap();
    let events = usage.iter().find(|(t, _)| t == "events").unwrap().1;
    let total: u64 = usage.iter().map(|(_, b)| b).sum();
    assert!(events > 0 && total <= cap, "{usage:?}");
}
